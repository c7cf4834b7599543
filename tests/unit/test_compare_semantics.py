"""Issue 18, deliverables 3 and 4: one comparison semantics and exact statistics.

Property: for random column types, values (edges included) and literals of another type,
the arrow engine's count equals a row-by-row oracle in exact Python following the documented
rules (a float on either side: compare in float64; otherwise exactly), and statistics pruning
never removes a partition the engine would find a row in. And statistics round-trip exactly.
"""

from __future__ import annotations

import datetime as dt
import decimal as D
import json
import math

import pyarrow as pa
from compare_oracle import UNITS, cases, column_type, filter_of, oracle_count, values_of
from hypothesis import HealthCheck, example, given, reject, settings
from hypothesis import strategies as st

from bpfstore.contract.binding import bind_plan
from bpfstore.contract.errors import PlanInvalid
from bpfstore.contract.plan import Column, Compare, CompareOp, Dialect, Literal, Plan, count_star
from bpfstore.node_agent.engines.arrow_engine import aggregate_table
from bpfstore.node_agent.normalize import normalize
from bpfstore.node_agent.stats import (
    ColumnStats,
    column_stats,
    decode,
    may_match,
    stored_timestamp,
)


def _table(t: pa.DataType, xs: list) -> pa.Table:
    return normalize(pa.table({"x": pa.array(xs, t)}))


EQ, GE, LE = CompareOp.EQ, CompareOp.GE, CompareOp.LE
SQL = Dialect.SQL


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
# issue 18 W3, and what this test found: each failed before its fix
@example((pa.decimal128(12, 2), [D.Decimal("0.05")] * 3, "compare", GE, [0.05], SQL))
@example((pa.decimal128(12, 2), [D.Decimal("0.05")], "between", EQ, [0.05, 0.07], SQL))
@example((pa.int64(), [2**53 + 1], "compare", EQ, [float(2**53)], Dialect.PANDAS))
@example((pa.timestamp("s"), [-2046], "compare", EQ, [dt.datetime(1969, 12, 31, 23, 25, 54,
                                                                  999999)], SQL))
@example((pa.timestamp("s"), [1], "compare", GE, [dt.datetime(1970, 1, 1, 0, 0, 0, 1)], SQL))
@example((pa.date32(), [dt.date(1969, 12, 31)], "in", EQ,
          [dt.datetime(1969, 12, 31, 23, 59, 59, 999999)], SQL))
@example((pa.decimal128(37, 0), [D.Decimal(10**37 - 1)], "compare", EQ, [D.Decimal("0.33")],
          SQL))
@example((pa.uint64(), [2**63], "compare", EQ, [0], SQL))
@example((pa.uint64(), [2**63], "in", EQ, [2**63, -1], SQL))
@example((pa.float32(), [-0.0], "in", EQ, [0.0], SQL))
@example((pa.int8(), [None], "compare", LE, [-1.7976931348623157e308], SQL))
@example((pa.int8(), [127], "between", EQ, [math.inf, 127.0], SQL))  # an empty side
def test_pruning_never_drops_a_row_the_engine_keeps(case) -> None:
    t, xs, form, op, lits, dialect = case
    where = filter_of(form, op, lits)
    table = _table(t, xs)
    try:
        plan = bind_plan(Plan("p", filter=where, aggregates=(count_star(),), dialect=dialect),
                         table.schema)
    except PlanInvalid:
        reject()  # e.g. a date column against a float: no comparison to make
    expected = oracle_count(form, op, xs, lits, t, dialect)
    got = aggregate_table(table, plan).partials.column(0)[0].as_py()
    assert got == expected, (plan.filter, xs)
    stats = {"x": column_stats(table.column("x"))}
    stats = {"x": ColumnStats(**json.loads(json.dumps(vars(stats["x"]))))}  # as stored
    if expected:
        assert may_match(plan.filter, stats, table.num_rows, table.schema, dialect), (
            plan.filter, stats)


# -- statistics round-trip exactly ------------------------------------------------------------

ROUND_TRIP_TYPES = st.one_of(
    column_type(), st.sampled_from([pa.string(), pa.bool_()]),
    st.tuples(st.sampled_from(UNITS), st.sampled_from(["UTC", "Europe/Paris", "+05:30"])).map(
        lambda u: pa.timestamp(*u)))


@st.composite
def stored_column(draw):
    t = draw(ROUND_TRIP_TYPES)
    if pa.types.is_string(t):
        values = st.text()
    elif pa.types.is_boolean(t):
        values = st.booleans()
    else:
        values = values_of(t)
    return t, draw(st.lists(st.one_of(st.none(), values), min_size=1, max_size=8))


def _key(v):
    """Values compared with -0.0 and 0.0 told apart, NaN equal to NaN."""
    if isinstance(v, float):
        return ("f", math.copysign(1.0, v), v) if not math.isnan(v) else ("nan",)
    return v


@settings(max_examples=150, deadline=None)
@given(stored_column())
def test_statistics_round_trip_exactly(column) -> None:
    t, xs = column
    table = _table(t, xs)
    data = table.column("x")
    s = column_stats(data)
    stored = ColumnStats(**json.loads(json.dumps(vars(s))))  # the catalog file is JSON
    assert stored == s
    st_type = data.type
    if all(v is None or (isinstance(v, float) and math.isnan(v)) for v in xs):
        assert stored.min is None and stored.max is None
        return
    if pa.types.is_timestamp(t):  # integers in the unit (a datetime holds years 1..9999)
        ints = pa.array(xs, t).cast(pa.int64()).drop_null().to_pylist()
        assert stored_timestamp(stored.min, t) == min(ints)
        assert stored_timestamp(stored.max, t) == max(ints)
        return
    plain = [v for v in pa.array(xs, t).to_pylist() if v is not None and not (
        isinstance(v, float) and math.isnan(v))]
    lo, hi = decode(stored.min, st_type), decode(stored.max, st_type)
    if pa.types.is_floating(t):  # -0.0 equals 0.0 and MIN/MAX answer 0.0
        plain = [v + 0.0 for v in plain]
    assert _key(lo) == _key(min(plain)) and _key(hi) == _key(max(plain)), (lo, hi, plain)
    assert stored.has_nan == any(isinstance(v, float) and math.isnan(v) for v in xs)
    assert stored.null_count == sum(v is None for v in xs)


def test_catalogs_with_isoformat_timestamps_still_read() -> None:
    """Catalogs written before statistics kept integers hold isoformat text: it still reads,
    prunes and answers (to the microsecond those catalogs kept)."""
    t = pa.timestamp("us")
    s = ColumnStats(0, "1970-01-01T00:00:01.000002", "1970-01-01T00:00:03")
    assert stored_timestamp(s.min, t) == 1_000_002
    schema = pa.schema([("ts", t)])
    second = dt.datetime(1970, 1, 1, 0, 0, 1)
    assert may_match(Compare(CompareOp.GE, Column("ts"), Literal(second)), {"ts": s}, 2, schema,
                     Dialect.SQL)
    assert not may_match(Compare(CompareOp.LT, Column("ts"), Literal(second)), {"ts": s}, 2,
                         schema, Dialect.SQL)
