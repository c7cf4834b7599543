"""Random filters and aggregates on random data (nulls, NaN, infinities, extremes) against
DuckDB: the arrow engine, partition by partition and merged, must give DuckDB's answers."""

from __future__ import annotations

import decimal as D

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpfstore.contract.binding import bind_plan
from bpfstore.contract.combine import Avg, avg, expand, finish, merge_partials
from bpfstore.contract.plan import (
    And,
    Arith,
    ArithOp,
    Between,
    Column,
    Compare,
    CompareOp,
    Dialect,
    In,
    IsNull,
    Literal,
    Not,
    Or,
    Plan,
    count,
    count_star,
    max_,
    min_,
    sum_,
)
from bpfstore.node_agent.engines.arrow_engine import aggregate_table
from bpfstore.node_agent.normalize import normalize
from oracle import assert_same_rows, duckdb_answer

SMALL_INTS = st.integers(min_value=-1000, max_value=1000)
FLOATS = st.one_of(st.floats(min_value=-1e6, max_value=1e6),
                   st.sampled_from([float("nan"), float("inf"), float("-inf"), -0.0]))
DECS = st.decimals(min_value=D.Decimal("-9999.99"), max_value=D.Decimal("9999.99"), places=2,
                   allow_nan=False)
STRINGS = st.sampled_from(["A", "N", "R", "é", ""])


@st.composite
def data(draw) -> pa.Table:
    n = draw(st.integers(min_value=0, max_value=60))

    def column(values):
        return draw(st.lists(st.one_of(st.none(), values), min_size=n, max_size=n))

    return pa.table({
        "i": pa.array(column(SMALL_INTS), pa.int32()),
        "big": pa.array(column(st.sampled_from([2**63 - 1, -(2**63), 0, 7])), pa.int64()),
        "f": pa.array(column(FLOATS), pa.float64()),
        "dec": pa.array(column(DECS), pa.decimal128(9, 2)),
        "s": pa.array(column(STRINGS), pa.string()),
    })


NUMERIC_COLUMNS = ["i", "f", "dec"]
numeric_literals = st.one_of(SMALL_INTS.map(Literal), DECS.map(Literal),
                             st.floats(min_value=-1e3, max_value=1e3).map(Literal))


def numeric(depth: int = 2):
    leaf = st.one_of(st.sampled_from(NUMERIC_COLUMNS).map(Column), numeric_literals)
    if depth == 0:
        return leaf
    return st.one_of(leaf, st.builds(Arith, st.sampled_from([ArithOp.ADD, ArithOp.SUB,
                                                             ArithOp.MUL]),
                                     numeric(depth - 1), numeric(depth - 1)))


atoms = st.one_of(
    st.builds(Compare, st.sampled_from(list(CompareOp)), numeric(1), numeric(1)),
    st.builds(lambda c, vs: In(Column(c), tuple(Literal(v) for v in vs)),
              st.just("s"), st.lists(st.one_of(st.none(), STRINGS), min_size=1, max_size=3)),
    st.builds(lambda vs: In(Column("i"), tuple(Literal(v) for v in vs)),
              st.lists(st.one_of(st.none(), SMALL_INTS), min_size=1, max_size=3)),
    st.builds(lambda c: IsNull(Column(c)), st.sampled_from(["i", "f", "dec", "s"])),
    st.builds(Between, numeric(0), numeric(0), numeric(0)),
    st.builds(lambda v: Compare(CompareOp.EQ, Column("s"), Literal(v)), STRINGS),
)
predicates = st.recursive(atoms, lambda p: st.one_of(
    st.builds(lambda a: And(tuple(a)), st.lists(p, min_size=2, max_size=3)),
    st.builds(lambda a: Or(tuple(a)), st.lists(p, min_size=2, max_size=3)),
    st.builds(Not, p)), max_leaves=5)
aggregate_lists = st.lists(st.one_of(
    st.just(count_star()),
    st.sampled_from(["i", "f", "dec", "s", "big"]).map(count),
    st.sampled_from(["i", "dec", "big"]).map(sum_),
    numeric(1).map(sum_),
    st.sampled_from(["i", "f", "dec", "s", "big"]).map(min_),
    st.sampled_from(["i", "f", "dec", "s", "big"]).map(max_),
    st.sampled_from(["i", "dec"]).map(avg),
), min_size=1, max_size=4)


@given(data(), st.one_of(st.none(), predicates), aggregate_lists,
       st.sampled_from([[], ["s"], ["i"]]), st.integers(min_value=1, max_value=4))
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_plans_match_duckdb(raw, where, aggregates, group_by, pieces) -> None:
    table = normalize(raw)
    aggs, finishers = expand(aggregates, None)
    plan = bind_plan(Plan("t", filter=where, group_by=tuple(group_by),
                          aggregates=tuple(aggs), dialect=Dialect.SQL), table.schema)
    step = max(1, -(-table.num_rows // pieces))
    partials = [aggregate_table(table.slice(o, step), plan).partials
                for o in range(0, max(table.num_rows, 1), step)]
    ours = finish(merge_partials(partials, plan), plan, finishers)
    rows = list(zip(*[c.to_pylist() for c in ours.columns], strict=True))
    float_sums = {len(group_by) + i for i, a in enumerate(aggregates)
                  if isinstance(a, Avg) or (getattr(a, "arg", None) is not None
                                            and "f" in str(a.arg))}
    assert_same_rows(rows, duckdb_answer(raw, where, aggregates, group_by), float_sums,
                     f"random plan {where} {aggregates}")
