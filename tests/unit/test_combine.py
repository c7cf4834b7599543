"""Combine laws: partials of any split of the data merge to the partials of the whole."""

from __future__ import annotations

import decimal as D

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from bpfstore.connector.binding import bind_plan
from bpfstore.connector.combine import avg, expand, finish, merge_partials
from bpfstore.connector.plan import Dialect, Plan, col, count, count_star, max_, min_, sum_
from bpfstore.node_agent.engines.arrow_engine import ArrowEngine
from bpfstore.node_agent.storage import normalize

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
    engine = ArrowEngine()
    whole = engine.aggregate(table, plan).partials
    bounds = sorted({0, table.num_rows, *[c for c in cuts if c <= table.num_rows]})
    pieces = [engine.aggregate(table.slice(a, b - a), plan).partials
              for a, b in zip(bounds, bounds[1:], strict=False)]
    if not pieces:
        return
    merged = merge_partials(pieces, plan)
    assert _rows(finish(merged, plan, finishers)) == _rows(finish(whole, plan, finishers))
    # merging is order-independent
    reordered = merge_partials(list(reversed(pieces)), plan)
    assert _rows(finish(reordered, plan, finishers)) == _rows(finish(whole, plan, finishers))
