"""Exact arithmetic under any input, through real agents: 38-digit decimal sums, overflow of
decimal128(38) and int64 in every grouped / ungrouped, single- / multi-partition path, on
every engine, each answer checked against exact Python integers (issue 18, W1 and W2)."""

from __future__ import annotations

import decimal as D
from fractions import Fraction

import grpc
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpfstore.connector import Client, Query, col, count_star, sum_
from bpfstore.contract import wire
from bpfstore.contract.combine import avg
from bpfstore.contract.errors import ArithmeticOverflow, PlanInvalid, Unsupported
from bpfstore.contract.plan import Arith, ArithOp, Column, Literal, Plan, count, max_, min_
from bpfstore.v1 import agent_pb2 as pb
from bpfstore.v1 import agent_pb2_grpc
from conftest import require_bpf

ENGINES = ["arrow", "auto", "bpf-hot", "bpf-cold", "bcc"]
ANSWERED: dict[str, int] = {}  # engine -> property-test examples it answered itself
BCC_SHAPES: set[tuple] = set()
EXACT = D.Context(prec=100)  # the oracle's own context: never the 28-digit default
BIG = 12345678901234567890123456789012
I64_MIN, I64_MAX = -(2**63), 2**63 - 1


def _dec(unscaled: int, scale: int = 0) -> D.Decimal:
    return D.Decimal(unscaled).scaleb(-scale, context=EXACT)


def _write(client: Client, name: str, table: pa.Table, partition_rows: int) -> None:
    client.write(name, table, partition_rows=partition_rows, overwrite=True)


def _one(client: Client, name: str, aggregates, **kw) -> list:
    return [tuple(r.values()) for r in client.aggregate(name, aggregates, **kw).to_pylist()]


# -- W1: sums keep all 38 digits ------------------------------------------------------------


@pytest.mark.parametrize("partition_rows", [2, 1])
def test_decimal_sum_keeps_38_digits(client: Client, partition_rows: int) -> None:
    table = pa.table({"v": pa.array([_dec(BIG), _dec(1)], pa.decimal128(38, 0)),
                      "k": [1, 1]})
    _write(client, "w1", table, partition_rows)
    exact = _dec(BIG + 1)
    for engine in ("arrow", "auto"):
        assert _one(client, "w1", [sum_("v")], engine=engine) == [(exact,)]
        assert _one(client, "w1", [sum_("v")], group_by=["k"], engine=engine) == [(1, exact)]
    assert client.sql("SELECT SUM(v) AS s FROM w1").column("s").to_pylist() == [exact]


def test_sum_of_decimal_products_is_exact(client: Client) -> None:
    values = [D.Decimal("9999999999999.99"), D.Decimal("9876543210987.65"),
              D.Decimal("1234567890123.45")]
    _write(client, "w1d", pa.table({"d": pa.array(values, pa.decimal128(15, 2))}), 2)
    with D.localcontext(EXACT):
        exact = sum(x * x for x in values)
    assert str(exact) == "199070263673829906815744692.4251"
    for engine in ("arrow", "auto"):
        assert _one(client, "w1d", [sum_(col("d") * col("d"))], engine=engine) == [(exact,)]


def test_product_over_a_partition_the_filter_empties_is_no_overflow(client: Client) -> None:
    """decimal(38,0) * 2 typed decimal(38,0) (as Spark sends it) over a partition where the
    filter matches nothing: no value overflows, so neither may the empty product."""
    table = pa.table({"k": ["c", "c", "b", "d"],  # b..d: the statistics cannot prune 'c'
                      "v": pa.array([D.Decimal(1), D.Decimal(2), D.Decimal(9 * 10**37),
                                     D.Decimal(9 * 10**37)], pa.decimal128(38, 0))})
    client.write("empty_product", table, partition_rows=2, overwrite=True)
    product = Arith(ArithOp.MUL, Column("v"),
                    Literal(D.Decimal(2), result_type=pa.decimal128(10, 0)),
                    result_type=pa.decimal128(38, 0))
    got = client.aggregate("empty_product", [sum_(product)], where=col("k").eq("c"),
                           engine="arrow")
    assert got.column(0).to_pylist() == [D.Decimal(6)]


def test_decimal_plus_wide_literal_is_exact(client: Client) -> None:
    wide = 123456789012345678901234567890
    _write(client, "w1l", pa.table({"v": pa.array([_dec(wide + 1)], pa.decimal128(38, 0))}), 1)
    got = _one(client, "w1l", [sum_(col("v") + D.Decimal(wide))])
    assert got == [(_dec(2 * wide + 1),)]


def test_decimal_division_rounds_once_half_away_from_zero(client: Client) -> None:
    values = [1, -1, 10, 5, 10**35 + 3]
    _write(client, "w1q", pa.table({"v": pa.array([_dec(x) for x in values],
                                                   pa.decimal128(38, 0))}), 2)
    quotient = Arith(ArithOp.DIV, col("v"), Literal(8), result_type=pa.decimal128(38, 2))
    exact = [Fraction(x * 100, 8) for x in values]
    rounded = [int(abs(q) + Fraction(1, 2)) * (1 if q >= 0 else -1) for q in exact]
    assert _one(client, "w1q", [sum_(quotient)]) == [(_dec(sum(rounded), 2),)]


@pytest.mark.parametrize("partition_rows", [2, 1])
@pytest.mark.parametrize("group_by", [[], ["k"]])
@pytest.mark.parametrize("engine", ["arrow", "auto"])
def test_partials_beyond_38_digits_whose_total_fits(client: Client, partition_rows: int,
                                                     group_by: list[str], engine: str) -> None:
    """One partition's partial may pass 38 digits although the total fits: with two rows per
    partition, -0.001 and -99999999999999999999999999999999999.999 make -10**35 there."""
    values = [_dec(-1, 3), _dec(-(10**38) + 1, 3), _dec(10**38 - 10**34 + 1, 3), _dec(0, 3)]
    table = pa.table({"v": pa.array(values, pa.decimal128(38, 3)), "k": [1, 1, 1, 1]})
    _write(client, "w1w", table, partition_rows)
    exact = _dec(-1 - 10**38 + 1 + 10**38 - 10**34 + 1, 3)
    got = _one(client, "w1w", [sum_("v"), count_star()], group_by=group_by, engine=engine)
    assert got == [(*([1] if group_by else []), exact, 4)]
    by_sql = client.sql("SELECT SUM(v) AS s, AVG(v) AS a FROM w1w").to_pylist()
    mean = Fraction(-(10**34) + 1, 4 * 10**3)  # SQL's AVG of a decimal is a double (DuckDB)
    assert by_sql == [{"s": exact, "a": float(mean)}]
    if not group_by:  # AVG in the plan is decimal(38, 7) (Spark's rule)
        assert _one(client, "w1w", [avg("v")], engine=engine) == [
            (_dec(int(mean * 10**7), 7),)]


# -- W2: decimal128(38) overflow is OUT_OF_RANGE everywhere -----------------------------------


@pytest.mark.parametrize("partition_rows", [2, 1])
@pytest.mark.parametrize("group_by", [[], ["k"]])
@pytest.mark.parametrize("engine", ["arrow", "auto"])
def test_decimal_sum_overflow_is_out_of_range(client: Client, partition_rows: int,
                                              group_by: list[str], engine: str) -> None:
    table = pa.table({"v": pa.array([_dec(9 * 10**37)] * 2, pa.decimal128(38, 0)),
                      "k": [1, 1]})
    _write(client, "w2", table, partition_rows)
    with pytest.raises(ArithmeticOverflow, match="exceeds 38 digits"):
        client.aggregate("w2", [sum_("v")], group_by=group_by, engine=engine)


def test_decimal_avg_that_does_not_fit_its_type_is_out_of_range(client: Client) -> None:
    """AVG(decimal(38, 0)) is decimal(38, 4) (Spark's rule): 10**37 does not fit it."""
    table = pa.table({"v": pa.array([_dec(10**37)] * 2, pa.decimal128(38, 0))})
    _write(client, "w2a", table, 1)
    with pytest.raises(ArithmeticOverflow, match="does not fit"):
        client.aggregate("w2a", [avg("v")])
    assert _one(client, "w2a", [avg("v")], dialect="pandas") == [(1e37,)]


@pytest.mark.parametrize("engine", ENGINES)
def test_grouped_int64_extreme_sums_do_not_wrap(agents, client: Client, engine: str) -> None:
    """int64 extremes summed per group need 128 bits on every engine (or a clear refusal)."""
    if engine != "arrow" and engine != "auto":
        require_bpf(agents[0], engine)
    v = [I64_MAX, I64_MAX, I64_MAX, I64_MIN, I64_MIN, None, -1]
    k = [0, 0, 1, 1, 1, 0, 2]
    _write(client, "w2i", pa.table({"v": pa.array(v, pa.int64()), "k": pa.array(k, pa.int8())}),
           3)
    got = _one(client, "w2i", [sum_("v"), min_("v"), count("v")], group_by=["k"],
               engine=engine)  # forced engines too: each runs it (bcc's groups in a map)
    assert sorted(got) == [(0, _dec(2 * I64_MAX), I64_MAX, 2),
                           (1, _dec(I64_MAX + 2 * I64_MIN), I64_MIN, 3), (2, _dec(-1), -1, 1)]


# -- hand-built plans ----------------------------------------------------------------------


def _stub(agents) -> agent_pb2_grpc.AgentStub:
    return agent_pb2_grpc.AgentStub(grpc.insecure_channel(agents[0].address))


def test_column_with_a_wrong_explicit_type_is_invalid(agents, client: Client) -> None:
    _write(client, "ints", pa.table({"i": pa.array([1, 2, 3], pa.int64())}), 3)
    wrong = Column("i", result_type=pa.decimal128(38, 10))
    with pytest.raises(PlanInvalid, match="column 'i' is int64, not decimal128"):
        client.aggregate("ints", [sum_(wrong)])
    plan = wire.plan_to_proto(Plan("ints", aggregates=(sum_(wrong),)))
    with pytest.raises(grpc.RpcError) as info:
        _stub(agents).Aggregate(pb.AggregateRequest(plan=plan), timeout=10)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "column 'i' is int64" in info.value.details()
    # its own type stated explicitly is fine
    assert _one(client, "ints", [sum_(Column("i", result_type=pa.int64()))]) == [(_dec(6),)]


def test_partitions_named_twice_are_read_once(agents, client: Client) -> None:
    """`partitions` selects a set of partitions (like `part IN (p0, p0)`): naming one twice
    must not count its rows twice, through the client or straight to an agent."""
    client.write("dups", pa.table({"i": pa.array([1, 2, 3], pa.int64())}), partition_rows=1,
                 replicas=3, overwrite=True)
    p0 = client.describe("dups").partitions[0].id
    got = client.run(Query.partials("dups", [count_star(), sum_("i")], partitions=[p0, p0, p0]))
    assert got.table.column(0).to_pylist() == [1]
    plan = wire.plan_to_proto(Plan("dups", partitions=(p0, p0, p0),
                                   aggregates=(count_star(),)))
    response = _stub(agents).Aggregate(pb.AggregateRequest(plan=plan), timeout=10)
    assert len(response.partitions) == 1
    assert pa.ipc.open_stream(response.partials).read_all().column(0).to_pylist() == [1]


def test_wide_decimal_literals_find_their_rows(client: Client) -> None:
    wide = 123456789012345678901234567890
    table = pa.table({"v": pa.array([_dec(wide), _dec(1)], pa.decimal128(38, 0)),
                      "w": pa.array([_dec(wide, 3), _dec(1)], pa.decimal128(38, 3))})
    _write(client, "wide", table, 1)
    for where in [col("v").eq(D.Decimal(wide)), col("v").eq(wide), col("v").isin([wide, 7]),
                  col("w").eq(_dec(wide, 3)), col("w").between(_dec(wide, 3), _dec(wide))]:
        for engine in ("arrow", "auto"):
            assert _one(client, "wide", [count_star()], where=where, engine=engine) == [(1,)]
        assert client.scan_table("wide", where=where).num_rows == 1
    assert client.sql(f"SELECT COUNT(*) AS n FROM wide WHERE v = {wide}").to_pylist() == [
        {"n": 1}]


@pytest.mark.parametrize("keys", [["__agg_0"], ["__agg_0_sum"], ["__agg_0_sum", "__agg_0"]])
def test_group_keys_named_like_partials(client: Client, keys: list[str]) -> None:
    table = pa.table({"__agg_0": [1, 2, 1], "__agg_0_sum": [1, 2, 1], "x": [5, 6, 7]})
    _write(client, "named", table, 1)  # three partitions: the agent merges them
    got = _one(client, "named", [sum_("x"), count_star()], group_by=keys)
    assert sorted(got) == sorted([(1,) * len(keys) + (_dec(12), 2),
                                  (2,) * len(keys) + (_dec(6), 1)])


# -- property: random extremes, random partitionings, every engine ---------------------------

DEC_SCALE = 3
COLUMNS = {  # name -> (type, scale, unscaled values)
    "d38": (pa.decimal128(38, DEC_SCALE), DEC_SCALE, st.one_of(
        st.integers(-(10**38) + 1, 10**38 - 1),
        st.sampled_from([10**38 - 1, -(10**38) + 1, 5 * 10**37, 0, 1, -1, BIG]))),
    "d18": (pa.decimal128(18, 2), 2, st.one_of(  # stored as decimal64: bpf runs it
        st.integers(-(10**18) + 1, 10**18 - 1), st.sampled_from([10**18 - 1, -(10**18) + 1]))),
    "u64": (pa.uint64(), 0, st.one_of(
        st.integers(0, 2**64 - 1), st.sampled_from([0, 2**63, 2**64 - 1]))),
    "i64": (pa.int64(), 0, st.one_of(
        st.integers(I64_MIN, I64_MAX), st.sampled_from([I64_MIN, I64_MAX, 0, -1, 1]))),
}


@st.composite
def cases(draw):
    name = draw(st.sampled_from(sorted(COLUMNS)))
    t, scale, values = COLUMNS[name]
    n = draw(st.integers(1, 8))
    v = draw(st.lists(st.one_of(st.none(), values), min_size=n, max_size=n))
    k = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    table = pa.table({"k": pa.array(k, pa.int8()),
                      "v": pa.array([None if x is None else _dec(x, scale) for x in v], t)})
    return (name, scale, table, draw(st.integers(1, n)), draw(st.booleans()),
            draw(st.booleans()), draw(st.sampled_from(["sql", "pandas"])))


def _oracle(v: list, k: list, name: str, scale: int, doubled: bool, grouped: bool,
            dialect: str) -> list | type[ArithmeticOverflow]:
    """Exact answers from Python ints; ArithmeticOverflow where a value does not fit."""
    if doubled and any(x is not None and not I64_MIN <= 2 * x <= I64_MAX for x in v):
        return ArithmeticOverflow  # i64 * 2 overflows int64 in some row
    groups: dict = {}
    for key, x in zip(k if grouped else [None] * len(v), v, strict=True):
        groups.setdefault(key, []).append(x)
    rows = []
    for key, xs in groups.items():
        present = [x for x in xs if x is not None]
        total = sum(2 * x if doubled else x for x in present)
        if abs(total) >= 10**38:
            return ArithmeticOverflow
        the_sum = _dec(total, scale) if present else (_dec(0) if dialect == "pandas" else None)
        mean: object = None
        if present and name.startswith("d") and dialect == "sql":
            t = COLUMNS[name][0]  # AVG is decimal(p + 4, s + 4), capped at 38
            t_scale = min(38, scale + 4)
            unscaled = Fraction(sum(present) * 10**t_scale, 10**scale * len(present))
            rounded = int(abs(unscaled) + Fraction(1, 2)) * (1 if unscaled >= 0 else -1)
            if abs(rounded) >= 10 ** min(38, t.precision + 4):
                return ArithmeticOverflow
            mean = _dec(rounded, t_scale)
        elif present:
            mean = float(Fraction(sum(present), 10**scale) / len(present))
        extremes = (min(present), max(present)) if present else (None, None)
        if name.startswith("d"):
            extremes = tuple(None if x is None else _dec(x, scale) for x in extremes)
        rows.append(((key,) if grouped else ()) + (
            len(xs), len(present), the_sum, *extremes, mean))
    return rows


def _engines(name: str, grouped: bool, doubled: bool, dialect: str, nulls: bool) -> list[str]:
    """Every engine; bcc (~0.6 s to compile each program shape) for three shapes."""
    shape = (name, grouped, doubled, nulls)
    if dialect != "sql" or name == "d38" or (
            shape not in BCC_SHAPES and len(BCC_SHAPES) >= 3):
        return ENGINES[:-1]
    BCC_SHAPES.add(shape)
    return ENGINES


@given(cases())
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_exact_aggregates_on_every_engine(agents, client: Client, case) -> None:
    name, scale, table, partition_rows, grouped, doubled, dialect = case
    doubled = doubled and name == "i64" and dialect == "sql"  # fewer program shapes to compile
    _write(client, "exact_prop", table, partition_rows)
    arg = col("v") * 2 if doubled else col("v")
    aggregates = [count_star(), count("v"), sum_(arg), min_("v"), max_("v"), avg("v")]
    v = [None if x is None else D.Decimal(x).scaleb(scale, context=EXACT)
         for x in table.column("v").to_pylist()]
    want = _oracle([None if x is None else int(x) for x in v], table.column("k").to_pylist(),
                   name, scale, doubled, grouped, dialect)
    for engine in _engines(name, grouped, doubled, dialect, table.column("v").null_count > 0):
        try:
            got = _one(client, "exact_prop", aggregates, group_by=["k"] if grouped else [],
                       dialect=dialect, engine=engine)
        except ArithmeticOverflow:
            assert want is ArithmeticOverflow, f"{engine}: overflow, exact answer {want}"
            continue
        except Unsupported as exc:  # a forced in-kernel engine may refuse, naming why
            assert engine in ("bpf-hot", "bpf-cold", "bcc"), exc
            continue
        assert want is not ArithmeticOverflow, f"{engine}: {got}, but the exact value overflows"
        assert sorted(got, key=repr) == sorted(want, key=repr), engine
        ANSWERED[engine] = ANSWERED.get(engine, 0) + 1


@pytest.mark.parametrize("engine", ["bpf-hot", "bpf-cold", "bcc"])
def test_in_kernel_engines_answered_examples(agents, engine: str) -> None:
    """The property test above is a real test of the in-kernel engines, not of refusals."""
    require_bpf(agents[0], engine)
    assert ANSWERED.get(engine, 0) >= (1 if engine == "bcc" else 3), ANSWERED
