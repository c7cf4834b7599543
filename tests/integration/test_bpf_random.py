"""Random plans on random data: the bpf engine's partials equal the arrow engine's exactly
(or the bpf engine refuses with Unsupported, and then auto uses arrow)."""

from __future__ import annotations

import datetime as dt
import decimal as D
import itertools

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpfstore.contract.binding import bind_plan
from bpfstore.contract.errors import Unsupported
from bpfstore.contract.plan import (
    Arith,
    ArithOp,
    Between,
    Column,
    Compare,
    CompareOp,
    Dialect,
    IsNull,
    Literal,
    Negate,
    Not,
    Plan,
    and_all,
    count,
    count_star,
    max_,
    min_,
    sum_,
    walk,
)
from bpfstore.node_agent.engines.arrow_engine import aggregate_table
from bpfstore.node_agent.engines.base import Partition
from bpfstore.node_agent.engines.bpf.engine import BpfEngine
from bpfstore.node_agent.engines.evaluate import Evaluator
from bpfstore.node_agent.normalize import normalize
from bpfstore.node_agent.stats import column_stats, may_match

pytestmark = pytest.mark.bpf
INT_TYPES = {"a8": (pa.int8(), -128, 127), "b16": (pa.int16(), -(2**15), 2**15 - 1),
             "c32": (pa.int32(), -(2**31), 2**31 - 1), "d64": (pa.int64(), -(2**62), 2**62),
             "u8": (pa.uint8(), 0, 255), "k": (pa.int8(), 0, 5)}
ran = {"hot": 0, "cold": 0, "refused": 0, "pairs": 0}
PATHS: list[str] = []  # the data paths the engine has (the fixture)
KEYS = itertools.count()


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> BpfEngine:
    from conftest import require_bpf  # skip/fail exactly as the agent tests do

    class _Agent:
        class service:  # noqa: N801 - the shape require_bpf reads
            class engines:  # noqa: N801
                status = []

    from bpfstore.node_agent.engines.select import EngineStatus

    try:
        engine = BpfEngine(str(tmp_path_factory.mktemp("bpf-random")), 64 << 20)
    except Unsupported as exc:
        _Agent.service.engines.status = [EngineStatus("bpf", False, str(exc))]
        require_bpf(_Agent)  # type: ignore[arg-type]
        raise
    # each path the engine has (a kernel without arena maps has no hot path: conftest)
    _Agent.service.engines.status = [EngineStatus(f"bpf-{path}", not why, why)
                                     for path, why in engine.paths.items()]
    require_bpf(_Agent)  # type: ignore[arg-type]
    PATHS[:] = [path for path, why in engine.paths.items() if not why]
    return engine


@st.composite
def tables(draw) -> pa.Table:
    n = draw(st.integers(min_value=1, max_value=300))
    cols = {name: pa.array(draw(st.lists(st.integers(lo, hi), min_size=n, max_size=n)), t)
            for name, (t, lo, hi) in INT_TYPES.items()}
    cols["z"] = pa.array(draw(st.lists(st.one_of(st.none(), st.integers(-500, 500)),
                                       min_size=n, max_size=n)), pa.int16())  # with NULLs
    cols["day"] = pa.array(draw(st.lists(st.dates(dt.date(1990, 1, 1), dt.date(2000, 1, 1)),
                                         min_size=n, max_size=n)), pa.date32())
    cols["dec"] = pa.array(draw(st.lists(st.decimals(D.Decimal("-1000"), D.Decimal("1000"),
                                                     places=2), min_size=n, max_size=n)),
                           pa.decimal128(12, 2))
    # for column-against-column tests: int64 extremes and NULLs, a finer scale, a second date
    edges = st.one_of(st.none(), st.sampled_from([-(2**63), 2**63 - 1, 0, 1, -1]),
                      st.integers(-(2**63), 2**63 - 1))
    cols["x64"] = pa.array(draw(st.lists(edges, min_size=n, max_size=n)), pa.int64())
    cols["dec4"] = pa.array(draw(st.lists(st.one_of(st.none(), st.decimals(
        D.Decimal("-1000"), D.Decimal("1000"), places=4)), min_size=n, max_size=n)),
        pa.decimal128(18, 4))
    cols["day2"] = pa.array(draw(st.lists(st.one_of(st.none(), st.dates(
        dt.date(1990, 1, 1), dt.date(2000, 1, 1))), min_size=n, max_size=n)), pa.date32())
    if draw(st.booleans()):  # equal values on both sides, often
        cols["dec4"] = cols["dec"].cast(pa.decimal128(18, 4))
        cols["day2"] = cols["day"]
    return pa.table(cols)


NUMERIC = ["a8", "b16", "c32", "u8", "k", "dec", "z"]
small_literals = st.one_of(st.integers(-300, 300).map(Literal),
                           st.decimals(D.Decimal("-500"), D.Decimal("500"), places=3)
                           .map(Literal))
terms = st.one_of(
    st.builds(lambda c, op, v: Compare(op, Column(c), v), st.sampled_from(NUMERIC + ["d64"]),
              st.sampled_from([o for o in CompareOp if o is not CompareOp.NE]), small_literals),
    st.builds(lambda c, a, b: Between(Column(c), a, b), st.sampled_from(NUMERIC),
              small_literals, small_literals),
    st.builds(lambda d: Compare(CompareOp.GE, Column("day"), Literal(d)),
              st.dates(dt.date(1989, 1, 1), dt.date(2001, 1, 1))),
    st.just(IsNull(Column("z"))), st.just(Not(IsNull(Column("z")))),
    st.builds(lambda op, a, b: Compare(op, Column(a), Column(b)), st.sampled_from(CompareOp),
              st.sampled_from(NUMERIC + ["d64", "x64", "dec4"]),
              st.sampled_from(NUMERIC + ["d64", "x64", "dec4"])),
    st.builds(lambda op, a, b: Compare(op, Column(a), Column(b)), st.sampled_from(CompareOp),
              st.sampled_from(["day", "day2"]), st.sampled_from(["day", "day2"])),
)
PAIR_OR_NOT = st.builds(lambda a, b: Not(a) | b, terms, terms)  # nested: the word pairs
leaf = st.one_of(st.sampled_from(NUMERIC).map(Column), st.integers(-9, 9).map(Literal))
expressions = st.recursive(leaf, lambda e: st.one_of(
    st.builds(Arith, st.sampled_from([ArithOp.ADD, ArithOp.SUB, ArithOp.MUL]), e, e),
    st.builds(Negate, e)), max_leaves=4)
aggregate_lists = st.lists(st.one_of(
    st.just(count_star()), expressions.map(sum_), expressions.map(count),
    st.sampled_from(NUMERIC + ["day", "d64"]).map(min_),
    st.sampled_from(NUMERIC + ["day", "d64"]).map(max_)), min_size=1, max_size=3)


@given(tables(), st.lists(st.one_of(terms, PAIR_OR_NOT), max_size=3), aggregate_lists,
       st.sampled_from([(), ("k",), ("k", "u8")]), st.sampled_from(Dialect))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
def test_bpf_partials_equal_arrow(engine, raw, where_terms, aggregates, group_by,
                                  dialect) -> None:
    table = normalize(raw)
    plan = bind_plan(Plan("t", filter=and_all(where_terms), group_by=group_by,
                          aggregates=tuple(aggregates), dialect=dialect), table.schema)
    stats = {f.name: column_stats(table.column(f.name)) for f in table.schema}
    # the arena cache trusts its keys as the agent trusts (dataset, partition, checksum):
    # every generated table needs its own (id() of a freed table can come back)
    key = ("t", next(KEYS))
    if not may_match(plan.filter, stats, table.num_rows, table.schema, dialect):
        # statistics pruning (column against column too) skips only what matches nothing
        assert table.filter(Evaluator(table, dialect).predicate(plan.filter)).num_rows == 0
    try:
        expected = aggregate_table(table, plan).partials
    except Exception:  # e.g. an int8 product that overflows: arrow raises, bpf must refuse
        for path in PATHS:
            with pytest.raises(Unsupported):
                engine.aggregate_one(plan, Partition.of(table, stats, key), path)
        return
    for path in PATHS:  # every data path, each equal to arrow
        try:
            got = engine.aggregate_one(plan, Partition.of(table, stats, key), path)
        except Unsupported:
            ran["refused"] += 1
            continue
        assert got.report.path == path
        ran[path] += 1
        ran["pairs"] += any(isinstance(n, Compare) and isinstance(n.right, Column)
                            for t in where_terms for n in walk(t))
        partials = got.partials
        if group_by:
            order = [(k, "ascending") for k in group_by]
            partials, expected = partials.sort_by(order), expected.sort_by(order)
        assert partials.to_pylist() == expected.to_pylist(), path


def test_most_random_plans_really_ran_in_the_kernel() -> None:
    assert PATHS, "the engine fixture did not run"
    assert all(ran[path] >= 8 for path in PATHS), (PATHS, ran)  # mostly plans it can run
    assert ran["pairs"] >= 4, ran  # column against column, among them
