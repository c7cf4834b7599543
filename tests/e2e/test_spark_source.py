"""`spark.read.format("bpfstore")` end to end: discovery without `register`, schema, filter
pushdown (and what stays with Spark), SQL views, column pruning, aggregate pushdown of every
supported shape against pushdown disabled and against plain Spark on the same rows, fallback,
overflow under ANSI on/off, the stale-reader guard, and writes."""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from spark_support import (
    recording,
    rows,
    rule_counters,
    schema_of,
    settings,
    spark_session,
)

from bpfstore.connector import Client, count_star, sum_

pytestmark = pytest.mark.spark
pytest.importorskip("pyspark")
N = 3000


def mixed_table() -> pa.Table:
    """Ints, floats with NaN and nulls, decimals with nulls, strings with nulls, dates, bools."""
    return pa.table({
        "id": pa.array(range(N), pa.int64()),
        "i": pa.array([i % 97 - 40 for i in range(N)], pa.int32()),
        "x": pa.array([math.nan if i % 50 == 0 else None if i % 7 == 0 else (i % 113) / 8 - 3
                       for i in range(N)], pa.float64()),
        "d": pa.array([None if i % 11 == 0 else Decimal(i * 37 % 100_003).scaleb(-2)
                       for i in range(N)], pa.decimal128(15, 2)),
        "k": pa.array([None if i % 13 == 0 else f"k{i % 4}" for i in range(N)], pa.string()),
        "day": pa.array([dt.date(1994, 1, 1) + dt.timedelta(days=i % 900) for i in range(N)]),
        "flag": pa.array([i % 3 == 0 for i in range(N)]),
    })


@pytest.fixture(scope="module")
def env(agents, client: Client, tmp_path_factory) -> dict[str, Any]:
    table = mixed_table()
    parquet = tmp_path_factory.mktemp("spark-mixed") / "mixed.parquet"
    pq.write_table(table, parquet)
    # 12 partitions, 4 per agent: aggregate tasks group several partitions of one agent
    client.write("spark_mixed", table, partition_rows=250, overwrite=True)
    spark = spark_session()
    addresses = ",".join(a.address for a in agents)
    ours = spark.read.format("bpfstore").option("agents", addresses).load("spark_mixed")
    plain = spark.read.parquet(str(parquet))  # plain Spark on the same rows
    ours.createOrReplaceTempView("mixed")
    spark.udf.register("plus_one", lambda v: None if v is None else v + 1, "int")
    plain.createOrReplaceTempView("mixed_plain")
    return {"spark": spark, "ours": ours, "plain": plain, "agents": agents,
            "addresses": addresses, "client": client, "table": table,
            "tmp": parquet.parent}


def _same(a: list[tuple], b: list[tuple]) -> bool:
    """Row sets equal; doubles within 1e-12 relative (Spark sums them in task order)."""
    def key(r: tuple) -> tuple:
        return tuple((v is None, str(type(v)), v if not isinstance(v, float) else 0) for v in r)
    a, b = sorted(a, key=key), sorted(b, key=key)
    if len(a) != len(b):
        return False
    for ra, rb in zip(a, b, strict=True):
        for x, y in zip(ra, rb, strict=True):
            if isinstance(x, float) and isinstance(y, float):
                if not (math.isnan(x) and math.isnan(y)) and not math.isclose(x, y, rel_tol=1e-12):
                    return False
            elif x != y or type(x) is not type(y):
                return False
    return True


def test_discovered_without_register_with_spark_types(env) -> None:
    assert schema_of(env["ours"]) == [("id", "bigint"), ("i", "int"), ("x", "double"),
                                      ("d", "decimal(15,2)"), ("k", "string"), ("day", "date"),
                                      ("flag", "boolean")]
    assert _same(rows(env["ours"]), rows(env["plain"]))


def test_pushFilters_and_what_stays_with_spark(env) -> None:
    from pyspark.sql import functions as F

    ours, plain, spark = env["ours"], env["plain"], env["spark"]
    cases = [
        lambda df: df.filter((F.col("id") > 2500) & (F.col("k") == "k1")),
        lambda df: df.filter(F.col("k").isin("k0", "k3") & F.col("d").isNull()),
        lambda df: df.filter(~(F.col("i") == 5) & (F.col("day") >= dt.date(1995, 6, 1))),
        lambda df: df.filter(F.col("k").eqNullSafe(None) & F.col("flag")),
        lambda df: df.filter(F.col("k").startswith("k2") & (F.col("id") < 300)),
        lambda df: df.filter((F.col("x") > 10.0) | F.col("x").isNaN()),
    ]
    filtering = (spark.read.format("bpfstore").option("agents", env["addresses"])
                 .option("pushFilters", "true").load("spark_mixed"))
    with settings(spark, spark__bpfstore__pushdown="false"):  # pushFilters alone
        for case in cases:
            assert _same(rows(case(filtering)), rows(case(plain)))
        plan = cases[4](filtering)._jdf.queryExecution().explainString(
            spark._jvm.org.apache.spark.sql.execution.ExplainMode.fromString("formatted"))
        assert "PushedFilters: [IsNotNull(k), IsNotNull(id), LessThan(id,300)]" in plan, plan
        assert "StartsWith" in plan  # rejected: Spark filters it after the scan
    for case in cases:  # with the extension: whole trees (OR, NaN, casts) reach the agents
        assert _same(rows(case(ours)), rows(case(plain)))


def test_sql_view_using_bpfstore(env) -> None:
    spark = env["spark"]
    spark.sql(f"""CREATE OR REPLACE TEMPORARY VIEW mixed_sql USING bpfstore
                  OPTIONS (path 'spark_mixed', agents '{env["addresses"]}')""")
    q = "select k, count(*), sum(d) from {} where id < 100 or i in (1, 2) group by k"
    assert _same(rows(spark.sql(q.format("mixed_sql"))), rows(spark.sql(q.format("mixed_plain"))))


def test_column_pruning_and_filter_tree_reach_the_agents(env) -> None:
    from pyspark.sql import functions as F

    from bpfstore.connector.spark.plan_summary import pushdown_summary
    from bpfstore.contract.plan import Or

    ours, plain = env["ours"], env["plain"]

    def query(df: Any) -> Any:
        return df.filter((F.col("id") < 10) | (F.col("i") * 2 > 110)).select("id", "k")

    with recording(env["agents"]) as rec:
        got = rows(query(ours))
    assert _same(got, rows(query(plain)))
    scans = rec.plans("Scan")
    assert scans and all(set(p.columns) == {"id", "i", "k"} for p in scans), scans
    assert all(isinstance(p.filter, Or) for p in scans), [p.filter for p in scans]
    (summary,) = pushdown_summary(query(ours))
    assert "columns read: id, i, k" in summary and "OR" in summary, summary


AGG_QUERIES = [
    # (name, SQL over {t}); every one must be pushed down as partial aggregates
    ("count_star_in", "select count(*), count(1) from {t} where k in ('k1', 'k2')"),
    ("grouped_all", "select k, count(*), count(x), count(d), sum(d), min(d), max(d), avg(d),"
                    " sum(i), avg(i), min(k), max(day), min(x), max(x), sum(x), avg(x)"
                    " from {t} where id > 100 group by k"),
    ("two_keys_bool", "select flag, k, sum(d * 2), avg(d - 1), count(*) from {t}"
                      " where not (id between 10 and 2000) group by flag, k"),
    ("empty", "select count(*), sum(d), avg(d), min(k) from {t} where id < 0"),
    ("empty_grouped", "select k, count(*) from {t} where id < 0 group by k"),
    ("or_tree_cast", "select count(*), sum(d) from {t}"
                     " where cast(d as double) > 500.5 or x is null or day = date '1994-02-01'"),
    ("expr_over_aggs", "select k, sum(d) / count(*) + 1 as r, max(i) - min(i) from {t} group by k"),
]
FALLBACK_QUERIES = [
    ("distinct", "select count(distinct k) from {t}"),
    ("string_fn", "select count(*) from {t} where upper(k) = 'K1'"),
    ("group_expr", "select i % 3, count(*) from {t} group by i % 3"),
    ("rounding_product", "select sum(d * cast(1.123456789 as decimal(38,20))) from {t}"),
    ("python_udf", "select k, count(*) from {t} where plus_one(i) > 5 group by k"),
    ("join", "select count(*), sum(a.d) from {t} a join {t} b on a.id = b.id + 1"
             " where b.k = 'k1' or a.x > 3"),
]


@pytest.mark.parametrize("ansi", ["true", "false"])
def test_aggregates_pushed_down_same_answers_and_types(env, ansi: str) -> None:
    spark = env["spark"]
    with settings(spark, spark__sql__ansi__enabled=ansi):
        for name, sql in AGG_QUERIES:
            pushed_before = rule_counters(spark)[0]
            with recording(env["agents"]) as rec:
                df = spark.sql(sql.format(t="mixed"))
                got, types = rows(df), schema_of(df)
            assert rule_counters(spark)[0] > pushed_before, name
            assert rec.kinds() == {"Aggregate"}, (name, rec.kinds())  # partials, never rows
            with settings(spark, spark__bpfstore__pushdown="false"):
                off = spark.sql(sql.format(t="mixed"))
                off_rows, off_types = rows(off), schema_of(off)
            base = spark.sql(sql.format(t="mixed_plain"))
            assert types == off_types == schema_of(base), name
            assert _same(got, off_rows) and _same(got, rows(base)), (name, got, rows(base))


def test_unsupported_falls_back_to_scans(env) -> None:
    spark = env["spark"]
    for name, sql in FALLBACK_QUERIES:
        pushed_before = rule_counters(spark)[0]
        with recording(env["agents"]) as rec:
            df = spark.sql(sql.format(t="mixed"))
            got, types = rows(df), schema_of(df)
        assert rule_counters(spark)[0] == pushed_before, name
        assert rec.kinds() == {"Scan"}, (name, rec.kinds())
        base = spark.sql(sql.format(t="mixed_plain"))
        assert types == schema_of(base), name
        assert _same(got, rows(base)), (name, got, rows(base))


@pytest.fixture(scope="module", params=["spread", "one_agent"])
def huge(env, request) -> Any:
    """decimal(38,0) values near the limit: group a overflows inside one partition, group b
    only when partitions are merged, c and d never, e beyond even 128 bits (2 x 9e37) inside
    one partition. `one_agent`: the partitions on one agent, so one Spark task merges them
    before Spark does."""
    big, bigger = Decimal(6 * 10**37), Decimal(9 * 10**37)
    keys = ["a", "a", "b", "c", "c", "d", "b", "d", "e", "e"]
    vals = [big, big, big, Decimal(1), Decimal(2), -big, big, Decimal(5), bigger, bigger]
    table = pa.table({"k": keys, "v": pa.array(vals, pa.decimal128(38, 0))})
    holders = env["agents"] if request.param == "spread" else env["agents"][:1]
    env["client"].drop("spark_huge")
    with Client([a.address for a in holders]) as writer:
        writer.write("spark_huge", table, partition_rows=5, overwrite=True)
    assert len({p.agents for p in env["client"].describe("spark_huge").partitions}) \
        == (2 if request.param == "spread" else 1)
    spark = env["spark"]
    ours = spark.read.format("bpfstore").option("agents", env["addresses"]).load("spark_huge")
    ours.createOrReplaceTempView("huge")
    pq.write_table(table, env["tmp"] / "huge.parquet")
    spark.read.parquet(str(env["tmp"] / "huge.parquet")).createOrReplaceTempView("huge_plain")
    return ours


@pytest.mark.parametrize("query", ["select k, sum(v) from {t} group by k",
                                   "select k, avg(v) from {t} group by k",
                                   "select sum(v * 2) from {t} where k = 'c'",
                                   "select sum(v), count(*) from {t} where k in ('a', 'c')"])
def test_decimal_overflow_like_spark(env, huge, query: str) -> None:
    from pyspark.errors import PySparkException

    spark = env["spark"]
    with settings(spark, spark__sql__ansi__enabled="false"):
        got = spark.sql(query.format(t="huge"))
        base = spark.sql(query.format(t="huge_plain"))
        assert schema_of(got) == schema_of(base)
        assert _same(rows(got), rows(base)), (rows(got), rows(base))
    with settings(spark, spark__sql__ansi__enabled="true"):
        base = spark.sql(query.format(t="huge_plain"))
        try:
            expected: Any = rows(base)
        except PySparkException:
            expected = "error"
        try:
            got_rows: Any = rows(spark.sql(query.format(t="huge")))
        except PySparkException:
            got_rows = "error"
        assert got_rows == expected if expected == "error" else _same(got_rows, expected)


def test_aggregate_tasks_group_partitions_of_one_agent(env) -> None:
    """12 partitions on 3 agents: by default one Aggregate call (one Spark task) per agent;
    `partitionsPerTask` splits them further; the answer is the same either way."""
    from pyspark.errors import PySparkException

    spark = env["spark"]
    sql = "select k, sum(d), avg(x), count(*) from {t} where i > -30 group by k"
    answers = {}
    for per_task, sizes in ((None, [4, 4, 4]), ("3", [2] * 6), ("1", [1] * 12)):
        reader = spark.read.format("bpfstore").option("agents", env["addresses"])
        if per_task is not None:
            reader = reader.option("partitionsPerTask", per_task)
        reader.load("spark_mixed").createOrReplaceTempView("mixed_tasks")
        with recording(env["agents"]) as rec:
            answers[per_task] = rows(spark.sql(sql.format(t="mixed_tasks")))
        assert sorted(len(p.partitions) for p in rec.plans("Aggregate")) == sizes, per_task
    assert _same(answers[None], answers["1"]) and _same(answers["3"], answers["1"])
    assert _same(answers[None], rows(spark.sql(sql.format(t="mixed_plain"))))
    bad = spark.read.format("bpfstore").option("agents", env["addresses"]) \
        .option("partitionsPerTask", "0").load("spark_mixed")
    with pytest.raises(PySparkException, match="partitionsPerTask must be a whole number"):
        bad.agg({"d": "sum"}).collect()


def test_row_scan_tasks_read_several_partitions_of_one_agent(env) -> None:
    """12 partitions of 250 rows on 3 agents: by default a row scan is one Spark task per
    agent; `rowsPerTask` splits them (500: 2 partitions a task, 1: one each); every layout
    reads the same rows, in each task in partition order."""
    from pyspark.errors import PySparkException

    spark = env["spark"]

    def scan(rows_per_task: str | None) -> Any:
        reader = spark.read.format("bpfstore").option("agents", env["addresses"])
        if rows_per_task is not None:
            reader = reader.option("rowsPerTask", rows_per_task)
        return reader.load("spark_mixed").select("id", "d", "k")

    expected = rows(env["plain"].select("id", "d", "k"))
    for rows_per_task, tasks in ((None, 3), ("500", 6), ("1", 12)):
        df = scan(rows_per_task)
        assert df.rdd.getNumPartitions() == tasks, rows_per_task
        got = rows(df)
        assert sorted(got) == sorted(expected) and len(got) == N, rows_per_task
        per_task = df.rdd.mapPartitions(lambda it: [[r.id for r in it]]).collect()
        assert all(ids == sorted(ids) for ids in per_task)  # partition order inside a task
    with pytest.raises(PySparkException, match="rowsPerTask must be a whole number"):
        scan("0").collect()


def test_stale_reader_guard(env) -> None:
    """Spark 4.1-4.3 reuse the reader (with its accepted filters) of an earlier query on the
    same DataFrame when a later query pushes nothing. The extension's guard must prevent it;
    without the guard this test's second query returns the first query's rows."""
    spark, addresses = env["spark"], env["addresses"]

    def scenario() -> tuple[int, int]:
        df = (spark.read.format("bpfstore").option("agents", addresses)
              .option("pushFilters", "true").load("spark_mixed"))
        first = len(df.filter("id between 10 and 20").collect())
        second = len(df.collect())  # pushes nothing
        return first, second

    with settings(spark, spark__bpfstore__pushdown="false"):  # the guard alone
        assert scenario() == (11, N)
        with settings(spark, spark__bpfstore__resetReadInfo="false"):
            assert scenario() == (11, 11)  # the Spark bug the guard exists for


@pytest.mark.parametrize("mode", ["append", "overwrite"])
def test_write(env, mode: str) -> None:
    spark, client = env["spark"], env["client"]
    data = env["plain"].filter("id < 1500").repartition(3)
    name = f"spark_written_{mode}"
    client.write(name, env["table"].slice(0, 10), overwrite=True)  # existing rows
    data.write.format("bpfstore").option("agents", env["addresses"]).mode(mode).save(name)
    back = spark.read.format("bpfstore").option("agents", env["addresses"]).load(name)
    expected = rows(data) + (rows(env["plain"].filter("id < 10")) if mode == "append" else [])
    assert _same(rows(back), expected)
    assert len(client.describe(name).agents) > 1  # spread over the agents


def test_overwrite_job_that_fails_keeps_the_old_data(env) -> None:
    """A task fails after others staged their rows: the job aborts and readers still see the
    old rows (the writer commits one version at the job's end, or nothing)."""
    from pyspark.sql.functions import col, udf

    client = env["client"]
    client.write("spark_failed", env["table"].slice(0, 100), overwrite=True)
    before = client.aggregate("spark_failed", [count_star(), sum_("id")]).to_pylist()
    fail = udf(lambda v: v // 0 if v == 1400 else v, "long")
    data = env["plain"].filter("id < 1500").repartition(3).withColumn("id", fail(col("id")))
    with pytest.raises(Exception, match="ZeroDivisionError"):
        data.write.format("bpfstore").option("agents", env["addresses"]).mode(
            "overwrite").save("spark_failed")
    assert client.aggregate("spark_failed", [count_star(), sum_("id")]).to_pylist() == before
