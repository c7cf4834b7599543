"""The in-kernel engine on real agents: same answers as the arrow engine and DuckDB, reported
per partition, with fallbacks that keep every answer right."""

from __future__ import annotations

import ctypes
import datetime as dt
import decimal as D
import random
import time

import pyarrow as pa
import pytest

from bpfstore.connector import (
    Client,
    Unsupported,
    avg,
    col,
    count,
    count_star,
    max_,
    min_,
    sum_,
)
from bpfstore.contract.combine import Avg
from bpfstore.node_agent.engines.bpf import codegen
from bpfstore.node_agent.engines.bpf.engine import ArenaCache
from conftest import RunningAgent, reported, require_bpf
from oracle import assert_same_rows, duckdb_answer

pytestmark = pytest.mark.bpf
ROWS = 150_000  # three partitions of 50,000 rows, and a partition of 150,000 in 3 batches


def make_table(seed: int = 3) -> pa.Table:
    rnd = random.Random(seed)
    n = ROWS
    return pa.table({
        "i8": pa.array([rnd.randint(-128, 127) for _ in range(n)], pa.int8()),
        "i16": pa.array([rnd.randint(-30000, 30000) for _ in range(n)], pa.int16()),
        "i32": pa.array([rnd.randint(-10**9, 10**9) for _ in range(n)], pa.int32()),
        "i64": pa.array([rnd.choice([2**62, -(2**62), rnd.randint(-10**12, 10**12)])
                         for _ in range(n)], pa.int64()),
        "u8": pa.array([rnd.randint(0, 255) for _ in range(n)], pa.uint8()),
        "u32": pa.array([rnd.randint(0, 2**32 - 1) for _ in range(n)], pa.uint32()),
        "flag": pa.array([rnd.random() < 0.3 for _ in range(n)], pa.bool_()),
        "day": pa.array([dt.date(1992, 1, 1) + dt.timedelta(days=rnd.randint(0, 2500))
                         for _ in range(n)], pa.date32()),
        "ts": pa.array([dt.datetime(2020, 1, 1) + dt.timedelta(seconds=rnd.randint(0, 10**8))
                        for _ in range(n)], pa.timestamp("us")),
        "price": pa.array([D.Decimal(rnd.randint(90000, 10**7)).scaleb(-2) for _ in range(n)],
                          pa.decimal128(15, 2)),
        "disc": pa.array([D.Decimal(rnd.randint(0, 10)).scaleb(-2) for _ in range(n)],
                         pa.decimal128(15, 2)),
        "qty": pa.array([D.Decimal(rnd.randint(1, 50)) for _ in range(n)], pa.decimal128(15, 2)),
        "maybe": pa.array([None if rnd.random() < 0.1 else rnd.randint(0, 9) for _ in range(n)],
                          pa.int64()),
        "f": pa.array([rnd.choice([None, float("nan"), float("inf"), -float("inf"), -0.0, 0.0,
                                   rnd.uniform(-1e6, 1e6), rnd.uniform(-10, 10)])
                       for _ in range(n)], pa.float64()),
    })


Q6_WHERE = ((col("day") >= dt.date(1994, 1, 1)) & (col("day") < dt.date(1995, 1, 1))
            & col("disc").between(D.Decimal("0.05"), D.Decimal("0.07")) & (col("qty") < 24))
QUERIES = [
    ("TPC-H Q6 shape", Q6_WHERE, [sum_(col("price") * col("disc")), count_star()]),
    ("Q1 sums", col("day") <= dt.date(1998, 9, 2),
     [sum_("qty"), sum_("price"), sum_(col("price") * (1 - col("disc"))),
      sum_(col("price") * (1 - col("disc")) * (1 + col("disc"))), avg("qty"), count_star()]),
    ("every integer type", (col("i8") > -50) & (col("i16") <= 1000) & (col("u8") >= 17)
     & (col("u32") < 3_000_000_000) & col("i32").between(-5 * 10**8, 10**9),
     [sum_("i8"), sum_("i16"), sum_("i32"), sum_("u8"), sum_("u32"), count("i8")]),
    ("int64 extremes: sum beyond 64 bits", col("i64") > 0, [sum_("i64"), min_("i64"),
                                                            max_("i64")]),
    ("negative sums and negation", col("i32") < 0, [sum_(-col("i32")), sum_(col("i16") - 100),
                                                    min_("i32"), max_("i8")]),
    ("bool, date and timestamp", col("flag").eq(True) & (col("ts") >= dt.datetime(2021, 6, 1)),
     [count_star(), min_("day"), max_("ts"), min_("flag")]),
    ("decimal literal finer than the column", col("price") < D.Decimal("5000.005"),
     [count_star(), max_("price")]),
    ("float literal against a decimal", col("disc") > 0.055, [count_star(), sum_("disc")]),
    ("literal outside the column's type", (col("i8") < 1000) & (col("u8") > -1),
     [count_star()]),
    ("empty by statistics", col("i8") > 500, [count_star(), sum_("i8"), min_("day")]),
    ("equality", col("disc").eq(D.Decimal("0.04")), [count_star(), sum_("qty")]),
    ("no filter", None, [sum_("qty"), sum_(col("qty") * col("disc"))]),
    ("NULLs in a filtered, aggregated column", col("maybe") > 3,
     [sum_("maybe"), count("maybe"), min_("maybe"), max_("maybe"), count_star()]),
    ("IS NULL", col("maybe").is_null(), [count_star(), sum_("i8"), count("maybe")]),
    ("NOT IS NULL and NULL propagation", ~col("maybe").is_null() & (col("i8") < 0),
     [sum_(col("maybe") * col("i8")), count(col("maybe") + col("i8")), max_("maybe")]),
    ("NULLs and no filter", None, [sum_("maybe"), count("maybe"), min_("maybe")]),
    ("OR, NOT, != and IN", ((col("i8") > 100) | ~(col("u8") < 200) | col("maybe").ne(4))
     & col("disc").isin([D.Decimal("0.01"), D.Decimal("0.05")]) & ~col("maybe").isin([1, 2]),
     [count_star(), sum_("i16"), count("maybe")]),
    ("IN with NULL and NOT of NULLs (three-valued)", ~col("maybe").isin([3, None])
     | ~(col("maybe") > 5), [count_star(), sum_("maybe")]),
    ("float comparisons, NaN and infinities", col("f") > 1.5,
     [count_star(), min_("f"), max_("f"), count("f")]),
    ("float equality with -0.0 and IN", col("f").eq(-0.0) | col("f").isin([float("inf"), 2.5]),
     [count_star(), count("f")]),
    ("float range and NaN order", col("f").between(-100.0, 1e300) | (col("f") > 1e308),
     [count_star(), max_("f"), min_("f")]),
    ("NOT BETWEEN on dates", ~col("day").between(dt.date(1993, 1, 1), dt.date(1997, 1, 1)),
     [count_star(), min_("day"), max_("day")]),
]


def _rows(table: pa.Table) -> list[tuple]:
    """Rows with NaN made comparable (NaN != NaN would fail equal answers)."""
    return [tuple("NaN" if isinstance(v, float) and v != v else v for v in r.values())
            for r in table.to_pylist()]



@pytest.fixture(scope="module")
def bpf_data(agents: list[RunningAgent], client: Client) -> pa.Table:
    require_bpf(agents[0])
    table = make_table()
    client.write("bpf_t", table.slice(0, 100_000), partition_rows=50_000, overwrite=True)
    client.write("bpf_t", table.slice(100_000), partition_rows=50_000)
    return table


@pytest.mark.parametrize(("name", "where", "aggs"), QUERIES, ids=[q[0] for q in QUERIES])
@pytest.mark.parametrize("dialect", ["sql", "pandas"])
@pytest.mark.parametrize("engine", ["bpf-hot", "bpf-cold"])
def test_bpf_equals_arrow_and_duckdb(client: Client, bpf_data: pa.Table, name, where, aggs,
                                     dialect, engine) -> None:
    result, report = reported(client, "bpf_t", aggs, where=where, dialect=dialect, engine=engine)
    served = {(p.engine, p.path) for p in report.partitions}
    assert served <= {("bpf", engine[4:]), ("stats", "")} and served, served
    arrow = client.aggregate("bpf_t", aggs, where=where, dialect=dialect, engine="arrow")
    assert result.schema == arrow.schema
    assert _rows(result) == _rows(arrow), f"{name}: bpf {_rows(result)} != arrow {_rows(arrow)}"
    if dialect == "sql":  # (the PANDAS dialect's oracle runs in the differential table)
        ours = list(zip(*[c.to_pylist() for c in result.columns], strict=True))
        approx = {i for i, a in enumerate(aggs) if isinstance(a, Avg)}
        assert_same_rows(ours, duckdb_answer(bpf_data, where, aggs, []), approx, name)


def test_reports_say_bpf_and_the_path(client: Client, agents: list[RunningAgent],
                                      bpf_data: pa.Table) -> None:
    """auto/bpf: a partition not yet in the arena runs cold and is copied in behind the
    answer; once there it runs hot."""
    require_bpf(agents[0], "bpf-hot")
    client.write("bpf_new", bpf_data, partition_rows=len(bpf_data) // 3 + 1, overwrite=True)
    aggs, where = [sum_(col("price") * col("disc"))], Q6_WHERE
    first, report = reported(client, "bpf_new", aggs, where=where, engine="bpf")
    parts = report.partitions
    assert len(parts) == 3 and all((p.engine, p.path) == ("bpf", "cold") for p in parts)
    for _ in range(100):  # the copy into the arena runs in the background
        again, report = reported(client, "bpf_new", aggs, where=where, engine="bpf")
        if all(p.path == "hot" for p in report.partitions):
            break
        time.sleep(0.05)
    assert all((p.engine, p.path) == ("bpf", "hot") for p in report.partitions)
    assert _rows(again) == _rows(first)
    assert sum(p.rows_scanned for p in parts) == ROWS


@pytest.mark.parametrize("engine", ["bpf-hot", "bpf-cold"])
def test_date_column_against_timestamps_as_dask_sends_them(client, bpf_data, engine) -> None:
    """pandas compares a date column with Timestamps: the date is its midnight."""
    import pandas as pd

    aggs = [count_star(), sum_("i32")]
    day = col("day")
    for where in [(day >= pd.Timestamp("1994-01-01")) & (day < dt.datetime(1995, 1, 1)),
                  day > pd.Timestamp("1994-03-05 00:00:00.000000001"),
                  day <= dt.datetime(1994, 3, 5, 12), day.eq(dt.datetime(1994, 3, 5)),
                  day.eq(dt.datetime(1994, 3, 5, 0, 0, 1))]:
        got, report = reported(client, "bpf_t", aggs, where=where, engine=engine)
        assert {p.engine for p in report.partitions} <= {"bpf", "stats"}
        assert _rows(got) == _rows(client.aggregate("bpf_t", aggs, where=where, engine="arrow"))


@pytest.mark.parametrize("engine", ["bpf-hot", "bpf-cold"])
def test_decimal_and_integer_columns_against_floats_as_dask_sends_them(client, bpf_data,
                                                                       engine) -> None:
    """A float literal compares with the column's correctly rounded float64 (the arrow
    engine's rule): the decimal 0.05 equals the float 0.05, which is not exactly 5/100."""
    aggs = [count_star(), sum_("price")]
    for where in [col("disc").between(0.05, 0.07), col("disc").eq(0.06), col("disc") > 0.05,
                  col("disc") < 0.07, col("disc") <= 0.1 + 0.2, col("i32") >= 2.5,
                  col("qty").eq(7.0), col("i32") < -0.5, col("qty") <= 24.000000000000004]:
        got, report = reported(client, "bpf_t", aggs, where=where, engine=engine)
        assert {p.engine for p in report.partitions} <= {"bpf", "stats"}
        want = client.aggregate("bpf_t", aggs, where=where, engine="arrow")
        assert _rows(got) == _rows(want), where
        assert want.column(0)[0].as_py() > 0, f"{where} selects no row: a weak check"


def test_forced_bpf_names_what_it_cannot_run(client: Client, bpf_data: pa.Table) -> None:
    with pytest.raises(Unsupported, match="more than 4096 possible groups"):
        client.aggregate("bpf_t", [count_star()], group_by=["i32"], engine="bpf")
    with pytest.raises(Unsupported, match="not a test of columns against literals"):
        client.aggregate("bpf_t", [sum_("maybe")], where=col("maybe") + 1 < col("i8"),
                         engine="bpf")
    with pytest.raises(Unsupported, match="group key 'maybe' has NULLs"):
        client.aggregate("bpf_t", [count_star()], group_by=["maybe"], engine="bpf")


def test_auto_falls_back_per_partition_with_a_note(client: Client, bpf_data: pa.Table) -> None:
    where = col("i8") > col("maybe") + 1  # arithmetic in a filter: not compiled
    result, report = reported(client, "bpf_t", [sum_("maybe"), count("maybe")], where=where)
    parts = report.partitions
    assert {p.engine for p in parts} == {"arrow"}
    assert all("not a test of columns against literals" in p.note for p in parts)
    expected = duckdb_answer(bpf_data, where, [sum_("maybe"), count("maybe")], [])
    assert_same_rows(list(zip(*[c.to_pylist() for c in result.columns], strict=True)),
                     expected, set(), "fallback")


def test_possible_overflow_goes_to_arrow_never_wrong(client: Client, bpf_data: pa.Table) -> None:
    # i64 * i64 can overflow 64 bits per row: statistics cannot prove otherwise
    with pytest.raises(Unsupported, match="may overflow"):
        client.aggregate("bpf_t", [sum_(col("i64") * col("i32"))], engine="bpf")
    small = col("i64").between(-(10**12), 10**12)  # the rows are small; the statistics are not
    auto, report = reported(client, "bpf_t", [sum_(col("i64") * col("i8"))], where=small)
    assert {p.engine for p in report.partitions} == {"arrow"}
    expected = duckdb_answer(bpf_data, small, [sum_(col("i64") * col("i8"))], [])
    assert auto.column(0)[0].as_py() == expected[0][0]


def test_verifier_rejection_falls_back_to_arrow(agents, client, bpf_data, monkeypatch) -> None:
    real = codegen.compile_plan

    def rejected(*args, **kwargs):
        program = real(*args, **kwargs)
        # a read above the stack frame: the verifier must refuse it
        bad = 'u64 bad; asm volatile("%0 = *(u64 *)(r10 + 8)" : "=r"(bad)); count += bad;'
        program.source = program.source.replace("c->done = ", bad + " c->done = ")  # any path
        return program

    monkeypatch.setattr(codegen, "compile_plan", rejected)
    import bpfstore.node_agent.engines.bpf.engine as engine_module

    monkeypatch.setattr(engine_module, "compile_plan", rejected)
    result, report = reported(client, "bpf_t", [count_star()], where=col("i16") > 5)
    parts = report.partitions
    assert {p.engine for p in parts} == {"arrow"}
    # the verifier's own words: loads ask for no log, and libbpf loads again with one to say why
    assert all("refused" in p.note and "invalid read from stack" in p.note for p in parts), \
        [p.note for p in parts]
    assert result.column(0)[0].as_py() == sum(1 for v in bpf_data.column("i16").to_pylist()
                                              if v > 5)


def test_arena_cache_respects_its_budget() -> None:
    memory = (ctypes.c_char * (16 * 4096))()  # stands in for the arena: 16 pages
    cache = ArenaCache(ctypes.addressof(memory), len(memory))
    columns = [pa.chunked_array([pa.array(range(k, k + 600), pa.int64()),
                                 pa.array(range(k + 600, k + 1000), pa.int64())])
               for k in range(0, 10_000, 1000)]  # 8000 B each: 2 pages
    for k, data in enumerate(columns):
        address = cache.place((k,), data, 64)
        assert cache.bytes_used <= len(memory)
        copied = (ctypes.c_int64 * 1000).from_address(address)
        assert list(copied) == data.to_pylist()  # both record batches, back to back
        cache.unpin([(k,)])  # its run is over
    assert len(cache.entries) == 8  # the two least recently used were evicted
    assert (0,) not in cache.entries and (1,) not in cache.entries and (9,) in cache.entries
    cache.place((2,), columns[2], 64)  # a hit moves it to the back of the LRU order
    cache.unpin([(2,)])
    cache.place((10,), columns[0], 64)
    assert (2,) in cache.entries and (3,) not in cache.entries
    with pytest.raises(Unsupported, match="larger than the arena"):
        cache.place((11,), pa.chunked_array([pa.array(range(10_000), pa.int64())]), 64)


def test_arena_cache_never_evicts_a_column_a_run_reads() -> None:
    """Runs go on at once: a placed column stays pinned until its run unpins it, so another
    request's placement evicts only columns nobody reads (else it is refused)."""
    memory = (ctypes.c_char * (4 * 4096))()  # room for two 2-page columns
    cache = ArenaCache(ctypes.addressof(memory), len(memory))
    columns = [pa.chunked_array([pa.array(range(k, k + 1000), pa.int64())])
               for k in range(0, 4000, 1000)]
    first = cache.place((0,), columns[0], 64)  # pinned: a run reads it
    cache.place((1,), columns[1], 64)
    cache.unpin([(1,)])
    cache.place((2,), columns[2], 64)  # evicts (1,), not the older but pinned (0,)
    assert (0,) in cache.entries and (1,) not in cache.entries
    assert list((ctypes.c_int64 * 1000).from_address(first)) == columns[0].to_pylist()
    with pytest.raises(Unsupported, match="columns that running queries read"):
        cache.place((3,), columns[3], 64)  # (0,) and (2,) are both read
    cache.unpin([(0,), (2,)])
    cache.place((3,), columns[3], 64)
    assert (0,) not in cache.entries and not cache.pins[(0,)]


GROUPED = [
    ("TPC-H Q1 shape", col("day") <= dt.date(1998, 9, 2), ["flag", "u8"],
     [sum_("qty"), sum_("price"), sum_(col("price") * (1 - col("disc"))),
      sum_(col("price") * (1 - col("disc")) * (1 + col("disc"))), avg("qty"), avg("disc"),
      count_star()]),
    ("group by date with min/max", col("i8") > 100, ["day"],
     [count_star(), min_("i32"), max_("price"), sum_("i16")]),
    ("group by decimal", col("qty") < 5, ["disc"], [count_star(), sum_("price")]),
    ("grouped NULLs", col("i8") > 0, ["flag", "disc"],
     [sum_("maybe"), count("maybe"), max_("maybe"), min_(col("maybe")), count_star()]),
]


@pytest.mark.parametrize(("name", "where", "keys", "aggs"), GROUPED, ids=[g[0] for g in GROUPED])
@pytest.mark.parametrize("engine", ["bpf-hot", "bpf-cold"])
def test_grouped_bpf_equals_arrow_and_duckdb(client, bpf_data, name, where, keys, aggs,
                                             engine) -> None:
    result, report = reported(client, "bpf_t", aggs, where=where, group_by=keys, engine=engine)
    assert {(p.engine, p.path) for p in report.partitions} == {("bpf", engine[4:])}
    arrow = client.aggregate("bpf_t", aggs, where=where, group_by=keys, engine="arrow")
    order = [(k, "ascending") for k in keys]
    assert _rows(result.sort_by(order)) == _rows(arrow.sort_by(order)), name
    ours = list(zip(*[c.to_pylist() for c in result.columns], strict=True))
    approx = {len(keys) + i for i, a in enumerate(aggs) if isinstance(a, Avg)}
    assert_same_rows(ours, duckdb_answer(bpf_data, where, aggs, keys), approx, name)


def test_group_by_dictionary_strings_and_string_equality(client: Client) -> None:
    rnd = random.Random(5)
    table = pa.table({
        "flag": [rnd.choice("ANR") for _ in range(30_000)],
        "status": [rnd.choice("FO") for _ in range(30_000)],
        "v": pa.array([rnd.randint(-1000, 1000) for _ in range(30_000)], pa.int64()),
    })
    client.write("bpf_s", table, partition_rows=10_000, overwrite=True)
    aggs = [sum_("v"), count_star(), min_("v")]
    for where in [None, col("status").eq("F"), col("flag").eq("zzz"),
                  col("flag").isin(["A", "R", "nope"]) & col("status").ne("O"),
                  ~col("flag").isin(["N"]) | col("status").eq("O")]:
        got, report = reported(client, "bpf_s", aggs, where=where, group_by=["flag", "status"],
                               engine="bpf")
        assert {p.engine for p in report.partitions} <= {"bpf", "stats"}
        ours = list(zip(*[c.to_pylist() for c in got.columns], strict=True))
        assert_same_rows(ours, duckdb_answer(table, where, aggs, ["flag", "status"]), set(),
                         f"strings {where}")


@pytest.mark.parametrize("engine", ["bpf-hot", "bpf-cold"])
def test_every_one_of_4096_groups_with_wide_accumulators(client: Client, agents, engine) -> None:
    """The most groups a program keeps (64 x 64), nine words each: every group's words
    inside its run's accumulators (the cold path's map value holds GROUP_CAP = 8192 groups)."""
    require_bpf(agents[0], engine)
    rng = random.Random(4096)
    n = 120_000
    table = pa.table({"a": pa.array([rng.randrange(64) for _ in range(n)], pa.int16()),
                      "b": pa.array([rng.randrange(64) for _ in range(n)], pa.int16()),
                      "v": pa.array([rng.randrange(-(2**40), 2**40) for _ in range(n)]),
                      "w": pa.array([None if rng.random() < 0.1 else rng.randrange(1000)
                                     for _ in range(n)], pa.int32())})
    client.write("groups4096", table, partition_rows=60_000, overwrite=True)
    aggs = [count_star(), sum_("v"), min_("v"), max_("v"), count("w"), sum_("w")]
    got, report = reported(client, "groups4096", aggs, group_by=["a", "b"], engine=engine)
    assert {(p.engine, p.path) for p in report.partitions} == {("bpf", engine[4:])}
    want = client.aggregate("groups4096", aggs, group_by=["a", "b"], engine="arrow")
    assert got.num_rows == 4096
    assert sorted(_rows(got)) == sorted(_rows(want))


def test_group_accumulators_past_a_runs_share_are_refused_on_the_cold_path(
        client: Client, agents) -> None:
    """40 sums of 4096 groups need 5.3 MiB a run on the cold path (8192 groups x 81 words):
    refused naming the limit, and auto answers on arrow."""
    require_bpf(agents[0], "bpf-cold")
    table = pa.table({"a": pa.array([i % 64 for i in range(8192)], pa.int16()),
                      "b": pa.array([i // 128 for i in range(8192)], pa.int16()),
                      "v": pa.array(range(8192), pa.int64())})
    client.write("widegroups", table, overwrite=True)
    aggs = [sum_(col("v") + k) for k in range(40)]
    with pytest.raises(Unsupported, match="MiB of accumulators a run"):
        client.aggregate("widegroups", aggs, group_by=["a", "b"], engine="bpf-cold")
    auto = client.aggregate("widegroups", aggs, group_by=["a", "b"])
    assert sorted(_rows(auto)) == sorted(_rows(client.aggregate(
        "widegroups", aggs, group_by=["a", "b"], engine="arrow")))
