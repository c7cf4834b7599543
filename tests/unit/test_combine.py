"""Combine laws: partials of any split of the data merge to the partials of the whole."""

from __future__ import annotations

import decimal as D

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bpfstore.contract.binding import bind_plan
from bpfstore.contract.combine import avg, expand, finish, merge_partials
from bpfstore.contract.errors import ArithmeticOverflow
from bpfstore.contract.plan import Dialect, Plan, col, count, count_star, max_, min_, sum_
from bpfstore.node_agent.engines.arrow_engine import ArrowEngine, aggregate_table
from bpfstore.node_agent.engines.base import Partition
from bpfstore.node_agent.normalize import normalize

I64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=False, width=64),
                   st.sampled_from([0.0, -0.0, float("nan")]))
DECS = st.decimals(min_value=D.Decimal("-99999999.99"), max_value=D.Decimal("99999999.99"),
                   places=2, allow_nan=False)


@st.composite
def tables(draw):
    n = draw(st.integers(min_value=0, max_value=40))

    def column(values):
        return draw(st.lists(st.one_of(st.none(), values), min_size=n, max_size=n))

    return pa.table({
        "k": pa.array(column(st.sampled_from(["a", "b", "c"])), pa.string()),
        "i": pa.array(column(I64), pa.int64()),
        "f": pa.array(column(FLOATS), pa.float64()),
        "d": pa.array(column(DECS), pa.decimal128(10, 2)),
    })


AGGREGATES = [count_star(), count("f"), sum_("i"), sum_("d"), min_("f"), max_("f"), min_("d"),
              max_("i"), max_("k"), avg("d"), avg("i")]


def _plan(table: pa.Table, dialect: Dialect, group_by: tuple[str, ...], where) -> tuple:
    aggs, finishers = expand(AGGREGATES, None)
    plan = Plan("t", filter=where, group_by=group_by, aggregates=tuple(aggs), dialect=dialect)
    return bind_plan(plan, table.schema), finishers


def _rows(table: pa.Table) -> list:
    rows = [tuple("NaN" if isinstance(v, float) and v != v else v for v in r.values())
            for r in table.to_pylist()]
    return sorted(rows, key=lambda r: [str(v) for v in r])


@given(tables(), st.lists(st.integers(min_value=0, max_value=40), max_size=4),
       st.sampled_from(list(Dialect)), st.sampled_from([(), ("k",)]),
       st.sampled_from([None, col("i") > 0, col("f") < 1.5, col("d").between(D.Decimal(-5),
                                                                            D.Decimal(5000))]))
@settings(max_examples=150, deadline=None)
def test_split_partials_merge_to_the_whole(raw, cuts, dialect, group_by, where) -> None:
    table = normalize(raw)
    plan, finishers = _plan(table, dialect, group_by, where)
    whole = aggregate_table(table, plan).partials
    bounds = sorted({0, table.num_rows, *[c for c in cuts if c <= table.num_rows]})
    pieces = [s.partials for s in ArrowEngine().aggregate(plan, [
        Partition.of(table.slice(a, b - a), {}, ("t", str(a)))
        for a, b in zip(bounds, bounds[1:], strict=False)])]
    if not pieces:
        return
    merged = merge_partials(pieces, plan)
    assert _rows(finish(merged, plan, finishers)) == _rows(finish(whole, plan, finishers))
    # merging is order-independent
    reordered = merge_partials(list(reversed(pieces)), plan)
    assert _rows(finish(reordered, plan, finishers)) == _rows(finish(whole, plan, finishers))


EXACT = D.Context(prec=100)
WIDE = st.one_of(st.integers(-(10**38) + 1, 10**38 - 1),
                 st.sampled_from([10**38 - 1, -(10**38) + 1, 9 * 10**37, 2**127 - 1]))


@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.one_of(st.none(), WIDE)),
                min_size=1, max_size=12),
       st.sampled_from([(), ("k",)]), st.integers(0, 6))
@settings(max_examples=150, deadline=None)
def test_merged_decimal_sums_are_exact_or_overflow(rows, group_by, scale) -> None:
    """Partial sums of decimal128(38, s) merge exactly (no 28-digit rounding, no wrap-around);
    a total beyond 38 digits is ArithmeticOverflow, grouped or not."""
    t = pa.decimal128(38, scale)
    rows = [(k, v) for k, v in rows if v is None or abs(v) < 10**38]
    if not rows:
        return
    plan = bind_plan(Plan("t", group_by=group_by, aggregates=(sum_("v"),)),
                     pa.schema([("k", pa.string()), ("v", t)]))
    pieces = [pa.table({"k": [k], "__agg_0": pa.array(
        [None if v is None else D.Decimal(v).scaleb(-scale, EXACT)], t)}).select(
        [*group_by, "__agg_0"]) for k, v in rows]
    exact: dict = {}
    for k, v in rows:
        key = k if group_by else None
        exact[key] = exact.get(key) if v is None else (exact.get(key) or 0) + v
    if any(total is not None and abs(total) >= 10**38 for total in exact.values()):
        with pytest.raises(ArithmeticOverflow, match="exceeds 38 digits"):
            merge_partials(pieces, plan)
        return
    merged = merge_partials(pieces, plan)
    got = {(r["k"] if group_by else None): r["__agg_0"] for r in merged.to_pylist()}
    assert got == {k: None if v is None else D.Decimal(v).scaleb(-scale, EXACT)
                   for k, v in exact.items()}


def test_merge_reads_partials_by_position() -> None:
    """A group key may be named like a partial (`__agg_0`, `__agg_0_sum`)."""
    schema = pa.schema([("__agg_0_sum", pa.int64()), ("__agg_0", pa.int64()),
                        ("x", pa.int64())])
    plan = bind_plan(Plan("t", group_by=("__agg_0_sum", "__agg_0"),
                          aggregates=(sum_("x"), count_star())), schema)
    part = pa.Table.from_arrays(
        [pa.array([1]), pa.array([2]), pa.array([D.Decimal(5)], pa.decimal128(38, 0)),
         pa.array([1])], names=["__agg_0_sum", "__agg_0", "__agg_0", "__agg_1"])
    merged = merge_partials([part, part], plan)
    assert [merged.column(i).to_pylist() for i in range(4)] == [[1], [2], [D.Decimal(10)], [2]]
