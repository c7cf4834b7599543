"""Issue 18, W3/W4 and -0.0: one comparison semantics for statistics and every engine, and
statistics that keep every value exactly (a pruned partition never hides a matching row)."""

from __future__ import annotations

import decimal as D

import duckdb
import pyarrow as pa
import pytest

from bpfstore.connector import Client, Query, QueryReport, col, count_star, max_, min_
from bpfstore.contract.errors import Unsupported

ENGINES = ["arrow", "auto", "bpf-hot", "bpf-cold", "bcc"]
DIALECTS = ["sql", "pandas"]


def _count(client: Client, dataset: str, where, dialect: str, engine: str
           ) -> tuple[int, QueryReport]:
    result = client.run(Query.aggregate(dataset, [count_star()], where, dialect=dialect,
                                        engine=engine))
    return result.table.column(0)[0].as_py(), result.report


def _forced_ran(report: QueryReport, engine: str) -> None:
    if engine.startswith("bpf-") or engine == "bcc":
        path = ("bcc", "read") if engine == "bcc" else ("bpf", engine.removeprefix("bpf-"))
        assert {(p.engine, p.path) for p in report.partitions} <= {path, ("stats", "")}, report


@pytest.fixture(scope="module")
def cents(client: Client, agents) -> pa.Table:
    from conftest import require_bpf

    require_bpf(agents[0])
    table = pa.table({"d": pa.array([D.Decimal("0.05")] * 3, pa.decimal128(12, 2)),
                      "i": pa.array([2**53 + 1] * 3, pa.int64())})
    client.write("cents", table, overwrite=True)
    return table


W3_FILTERS = [
    ("d >= 0.05", col("d") >= 0.05, "d >= 0.05"),
    ("d = 0.05", col("d").eq(0.05), "d = 0.05"),
    ("d <= 0.05", col("d") <= 0.05, "d <= 0.05"),
    ("0.05 <= d", col("d").between(0.05, 0.07), "d BETWEEN 0.05 AND 0.07"),
    ("d in", col("d").isin([0.05, 0.5]), "d IN (0.05, 0.5)"),
    ("d > 0.049", col("d") > 0.049, "d > 0.049"),
    ("d != 0.05", col("d").ne(0.05), "d <> 0.05"),
    ("i = 2^53", col("i").eq(float(2**53)), f"i = {float(2**53)!r}::DOUBLE"),
    ("i >= 2^53", col("i") >= float(2**53), f"i >= {float(2**53)!r}::DOUBLE"),
    ("i <= 2^53", col("i") <= float(2**53), f"i <= {float(2**53)!r}::DOUBLE"),
]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(("name", "where", "sql"), W3_FILTERS, ids=[f[0] for f in W3_FILTERS])
def test_float_literal_against_decimal_and_int_is_not_pruned(
        client: Client, cents: pa.Table, name: str, where, sql: str, dialect: str,
        engine: str) -> None:
    """W3: statistics compared the float exactly, the engines in float64 (DuckDB's rule)."""
    expected = duckdb.sql(f"SELECT count(*) FROM cents WHERE {sql}").fetchall()[0][0]
    got, report = _count(client, "cents", where, dialect, engine)
    assert got == expected
    _forced_ran(report, engine)
    if engine == "arrow":
        assert client.scan_table("cents", where=where, dialect=dialect).num_rows == expected


@pytest.fixture(scope="module")
def nanos(client: Client) -> str:
    table = pa.table({"ts": pa.array([1_000_000_999], pa.timestamp("ns"))})
    client.write("nanos", table, overwrite=True)
    pair = pa.table({"ts": pa.array([1_000_000_000, 1_000_000_999], pa.timestamp("ns"))})
    client.write("nanos_pair", pair, overwrite=True)
    return "nanos"


@pytest.mark.parametrize("engine", ENGINES)
def test_nanosecond_statistics_are_exact(client: Client, agents, nanos: str,
                                         engine: str) -> None:
    """W4: statistics kept microseconds; a later row hid behind them."""
    import datetime as dt

    from conftest import require_bpf

    require_bpf(agents[0], engine)
    second = dt.datetime(1970, 1, 1, 0, 0, 1)
    for dataset, where in [("nanos", col("ts") > second), ("nanos_pair", col("ts").eq(second))]:
        got, report = _count(client, dataset, where, "sql", engine)
        assert got == 1
        _forced_ran(report, engine)
    top = client.aggregate("nanos", [max_("ts"), min_("ts")], engine=engine)
    assert top.column(0).cast(pa.int64()).to_pylist() == [1_000_000_999]
    assert top.column(1).cast(pa.int64()).to_pylist() == [1_000_000_999]


@pytest.fixture(scope="module")
def zeros(client: Client) -> str:
    client.write("zeros", pa.table({"f": pa.array([-0.0, 0.0, -0.0], pa.float64()),
                                    "g": pa.array([-0.0, -0.0, -0.0], pa.float64()),
                                    "k": pa.array([1, 1, 1], pa.int64())}), overwrite=True)
    return "zeros"


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("where", [None, col("k") > 0], ids=["stats", "scanned"])
def test_negative_zero_min_max_is_positive_zero_on_every_engine(
        client: Client, agents, zeros: str, engine: str, dialect: str, where) -> None:
    """-0.0 equals 0.0 (DuckDB, Spark), which zero MIN/MAX return depends on row order there;
    here every engine answers 0.0 so engines and partitions never disagree."""
    from conftest import require_bpf

    require_bpf(agents[0], engine)
    try:
        result = client.aggregate("zeros", [min_("f"), max_("f"), min_("g"), max_("g")],
                                  where=where, dialect=dialect, engine=engine)
    except Unsupported as exc:  # bcc reads the file, and float order keys are not in it
        assert engine == "bcc" and "float column" in str(exc), exc
        return
    values = [c[0].as_py() for c in result.columns]
    assert values == [0.0] * 4
    assert [str(v) for v in values] == ["0.0"] * 4, values
    assert _count(client, "zeros", col("f").eq(0.0), dialect, engine)[0] == 3
    assert _count(client, "zeros", col("g").eq(0.0), dialect, engine)[0] == 3


# -- statistics reach the client exactly (catalog file -> DescribeDataset -> client) --------

STAT_TYPES = [pa.int8(), pa.int64(), pa.uint64(), pa.decimal128(38, 10), pa.decimal128(12, 2),
              pa.float32(), pa.float64(), pa.date32(), pa.string(), pa.bool_(),
              pa.timestamp("s"), pa.timestamp("ms", "UTC"), pa.timestamp("us", "Asia/Tokyo"),
              pa.timestamp("ns"), pa.timestamp("ns", "+05:30")]


def _stat_values(t: pa.DataType):
    from hypothesis import strategies as st

    if pa.types.is_integer(t):
        lo, hi = (0, 2**t.bit_width - 1) if pa.types.is_unsigned_integer(t) else (
            -(2 ** (t.bit_width - 1)), 2 ** (t.bit_width - 1) - 1)
        return st.one_of(st.sampled_from([lo, hi]), st.integers(lo, hi))
    if pa.types.is_decimal(t):
        top = 10**t.precision - 1
        return st.one_of(st.sampled_from([top, -top]), st.integers(-top, top)).map(
            lambda u: D.Decimal(f"{u}E-{t.scale}"))
    if pa.types.is_floating(t):
        return st.floats(width=32 if t == pa.float32() else 64, allow_nan=True)
    if pa.types.is_date32(t):
        return st.dates()
    if pa.types.is_string(t):
        return st.text(max_size=5)
    if pa.types.is_boolean(t):
        return st.booleans()
    if t.unit == "ns":  # every instant of timestamp[ns] (-2**63 is pandas' NaT)
        return st.one_of(st.integers(-(2**63) + 1, 2**63 - 1),
                         st.integers(-(2**52), 2**52).map(lambda us: us * 1000))
    per_second = {"s": 1, "ms": 10**3, "us": 10**6}[t.unit]  # years 1..9999, as datetime holds
    return st.integers(-62135596800 * per_second, 253402300799 * per_second)


def _exact(v, t: pa.DataType):
    """A value compared exactly: timestamps as their integers, floats with the sign of 0."""
    if pa.types.is_timestamp(t):
        return pa.scalar(v, t).cast(pa.int64()).as_py()
    if isinstance(v, float):
        return (v, str(v))
    return v


def test_statistics_reach_the_client_exactly(client: Client) -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=25, deadline=None)
    @given(st.sampled_from(STAT_TYPES).flatmap(lambda t: st.tuples(st.just(t), st.lists(
        st.one_of(st.none(), _stat_values(t)), min_size=1, max_size=6))))
    def check(case) -> None:
        t, xs = case
        column = pa.array(xs, t)
        client.write("stats_rt", pa.table({"x": column}), overwrite=True)
        stats = client.describe("stats_rt").partitions[0].stats["x"]
        present = [v for v in pa.chunked_array([column]).cast(pa.int64()).to_pylist()
                   if v is not None] if pa.types.is_timestamp(t) else [
            v for v in column.to_pylist() if v is not None and v == v]
        if pa.types.is_floating(t):
            present = [v + 0.0 for v in present]  # -0.0 equals 0.0: MIN/MAX answer 0.0
        if not present:
            assert stats.get("min") is None and stats.get("max") is None
            return
        assert _exact(stats["min"], t) == _exact(min(present), t) if not pa.types.is_timestamp(
            t) else _exact(stats["min"], t) == min(present), (stats, xs)
        assert _exact(stats["max"], t) == _exact(max(present), t) if not pa.types.is_timestamp(
            t) else _exact(stats["max"], t) == max(present), (stats, xs)

    check()


@pytest.mark.parametrize("engine", ENGINES)
def test_random_comparisons_of_other_types_on_every_engine(client: Client, agents,
                                                           engine: str) -> None:
    """Random column types and values, literals of another type, through a real agent:
    statistics pruning and then each engine give the exact row-by-row answer."""
    from compare_oracle import cases, filter_of, oracle_count
    from hypothesis import HealthCheck, given, reject, settings

    from bpfstore.contract.binding import bind_plan
    from bpfstore.contract.errors import PlanInvalid
    from bpfstore.contract.plan import Plan
    from conftest import require_bpf

    require_bpf(agents[0], engine)
    ran = []

    @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
    @given(cases())
    def check(case) -> None:
        t, xs, form, op, lits, dialect = case
        where = filter_of(form, op, lits)
        table = pa.table({"x": pa.array(xs, t)})
        try:
            bind_plan(Plan("cmp", filter=where), table.schema)
        except PlanInvalid:
            reject()
        client.write("cmp_random", table, overwrite=True)
        try:
            got, report = _count(client, "cmp_random", where, dialect.value, engine)
        except Unsupported as exc:  # e.g. decimal128 or float columns on a forced bpf path
            assert engine.startswith("bpf-") or engine == "bcc", exc
            return
        _forced_ran(report, engine)
        ran.append(case)
        assert got == oracle_count(form, op, xs, lits, t, dialect), (where, xs, dialect)

    check()
    assert ran, "the engine answered none of the cases itself"


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("where", [col("x").eq(0), col("x") >= 0, col("x") <= 0.5,
                                   col("x").between(-1, 1)], ids=["=", ">=", "<= float", "between"])
def test_a_test_every_value_passes_still_drops_null(client: Client, agents, engine: str,
                                                    where) -> None:
    """Found by the random test: a window covering the partition's [min, max] was dropped
    from the bpf program, and its NULL rows counted."""
    from conftest import require_bpf

    require_bpf(agents[0], engine)
    client.write("null_and_zero", pa.table({"x": pa.array([None, 0, None], pa.int8())}),
                 overwrite=True)
    got, report = _count(client, "null_and_zero", where, "sql", engine)
    assert got == 1
    _forced_ran(report, engine)


# -- column against column (issue 15: TPC-H's l_commitdate < l_receiptdate) ---------------

PAIRS = pa.table({
    "a": pa.array([1, 2, 3, None, -(2**63), 2**63 - 1, 5, 7, None], pa.int64()),
    "b": pa.array([2, 2, None, 1, 2**63 - 1, -(2**63), 5, 6, None], pa.int64()),
    "i": pa.array([1, 2, 3, 0, 3, -1, 5, 7, None], pa.int32()),
    "d2": pa.array([D.Decimal(v) if v else None for v in (
        "1.00", "2.50", None, "0.01", "3.00", "-1.00", "5.00", "6.99", None)],
        pa.decimal128(12, 2)),
    "d4": pa.array([D.Decimal(v) if v else None for v in (
        "1.0000", "2.5001", "0.0100", None, "3.0000", "-1.0000", "4.9999", "6.9900", None)],
        pa.decimal128(18, 4)),
    "day1": pa.array([0, 10, None, 8000, 9000, -1, 5, 7, None], pa.int32()).cast(pa.date32()),
    "day2": pa.array([1, 10, 3, None, 8999, 0, 5, 6, 4], pa.int32()).cast(pa.date32()),
    "ts1": pa.array([1, 10, None, 8000, 9000, -1, 5, 7, 2], pa.timestamp("ms")),
    "ts2": pa.array([1, 11, 3, None, 8999, 0, 5, 6, 2], pa.timestamp("ms")),
    "p": pa.array([True, False, None, True, False, True, None, False, True]),
    "q": pa.array([True, True, False, None, False, False, None, True, True]),
    # one dictionary (first appearance a, b, c in both), no NULLs: codes compare
    "s1": pa.array(["a", "b", "c", "a", "b", "c", "c", "a", "b"]),
    "s2": pa.array(["a", "b", "c", "c", "a", "b", "c", "a", "a"]),
    "s3": pa.array(["a", "c", "b", "c", "a", "b", "c", "a", "a"]),  # another dictionary
})
PAIR_COLUMNS = [("a", "b"), ("d2", "d4"), ("i", "d2"), ("day1", "day2"), ("ts1", "ts2"),
                ("p", "q"), ("a", "a")]
PAIR_OPS = ["<", "<=", "=", "!=", ">", ">="]


def _pair_expected(left: str, op: str, right: str, dialect: str) -> int:
    """DuckDB's count in SQL; pandas' rule otherwise (missing: False, and != True)."""
    import operator

    if dialect == "sql":
        con = duckdb.connect()
        con.register("pairs", PAIRS)
        return con.sql(f"SELECT count(*) FROM pairs WHERE {left} {op} {right}").fetchall()[0][0]
    fn = {"<": operator.lt, "<=": operator.le, "=": operator.eq, "!=": operator.ne,
          ">": operator.gt, ">=": operator.ge}[op]
    xs, ys = PAIRS.column(left).to_pylist(), PAIRS.column(right).to_pylist()
    return sum(op == "!=" if x is None or y is None else fn(x, y)
               for x, y in zip(xs, ys, strict=True))


@pytest.fixture(scope="module")
def pairs(client: Client, agents) -> str:
    from conftest import require_bpf

    require_bpf(agents[0])
    client.write("pairs", PAIRS, overwrite=True)
    return "pairs"


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("op", PAIR_OPS)
@pytest.mark.parametrize(("left", "right"), PAIR_COLUMNS, ids=[f"{a}-{b}" for a, b in PAIR_COLUMNS])
def test_column_against_column_runs_in_the_kernel(client: Client, agents, pairs: str, left: str,
                                                  right: str, op: str, dialect: str,
                                                  engine: str) -> None:
    """NULLs on either side, equal values, int64 extremes, decimal scales 2 and 4 (and int
    against decimal), dates, timestamps: each forced path answers itself, exactly."""
    from bpfstore.contract.plan import Compare, CompareOp
    from conftest import require_bpf

    require_bpf(agents[0], engine)
    where = Compare(CompareOp(op), col(left), col(right))
    if engine == "bcc" and left == "p":  # bcc's reads need one column that is not bits
        with pytest.raises(Unsupported, match="only bit-packed columns"):
            _count(client, pairs, where, dialect, engine)
        return
    got, report = _count(client, pairs, where, dialect, engine)
    assert got == _pair_expected(left, op, right, dialect)
    _forced_ran(report, engine)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("op", ["=", "!="])
def test_strings_of_one_dictionary_compare_codes(client: Client, agents, pairs: str, op: str,
                                                 dialect: str, engine: str) -> None:
    from bpfstore.contract.plan import Compare, CompareOp
    from conftest import require_bpf

    require_bpf(agents[0], engine)
    got, report = _count(client, pairs, Compare(CompareOp(op), col("s1"), col("s2")), dialect,
                         engine)
    assert got == _pair_expected("s1", op, "s2", dialect)
    _forced_ran(report, engine)


@pytest.mark.parametrize("engine", ["bpf-hot", "bpf-cold", "bcc"])
@pytest.mark.parametrize("where", [col("a") < col("d2"), col("ts1") < col("day2"),
                                   col("s1").eq(col("s3")), col("s1") < col("s2")],
                         ids=["int64 extremes x 100", "timestamp against date",
                              "two dictionaries", "string order"])
def test_column_against_column_refused_where_not_exact(client: Client, agents, pairs: str,
                                                       engine: str, where) -> None:
    """a * 100 would overflow int64 (its statistics say so); a date is no timestamp; codes
    of two dictionaries, or their order, say nothing about the strings."""
    from conftest import require_bpf

    require_bpf(agents[0], engine)
    with pytest.raises(Unsupported, match="overflow|compares|one dictionary"):
        _count(client, pairs, where, "sql", engine)
    assert _count(client, pairs, where, "sql", "auto")[0] == duckdb.connect().register(
        "pairs", PAIRS).sql(f"SELECT count(*) FROM pairs WHERE {_sql(where)}").fetchall()[0][0]


def _sql(where) -> str:
    from oracle import to_duckdb

    return to_duckdb(where)
