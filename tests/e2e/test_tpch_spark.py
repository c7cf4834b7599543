"""The 22 TPC-H queries as Spark SQL over `format("bpfstore")` temp views (a session made with
`configure`), with ANSI on and off and join key pushdown on and off: each answer equals
Spark's over the same rows as Parquet (the same values and types) and DuckDB's on the same
data (decimals exactly, doubles within rounding)."""

from __future__ import annotations

import time
from typing import Any

import pytest
import tpch as t
from spark_support import rows, schema_of, settings, spark_session

pytestmark = pytest.mark.spark
pytest.importorskip("pyspark")


@pytest.fixture(scope="module")
def views(tpch: t.Cluster) -> dict[str, Any]:
    spark = spark_session()
    agents = ",".join(tpch.addresses)
    parquet = tpch.data.split_dir("parquet")
    ours = {n: spark.read.format("bpfstore").option("agents", agents).load(n) for n in t.TABLES}
    plain = {n: spark.read.parquet(str(parquet / n)) for n in t.TABLES}
    return {"spark": spark, "ours": ours, "plain": plain, "oracle": tpch.data.duckdb()}


def run(views: dict[str, Any], kind: str, text: str) -> Any:
    """The query over temp views named as the tables, on bpfstore ("ours") or Parquet."""
    for name, df in views[kind].items():
        df.createOrReplaceTempView(name)
    return views["spark"].sql(text)


@pytest.mark.parametrize(("ansi", "joins"), [("true", "true"), ("false", "true"),
                                             ("true", "false")])
@pytest.mark.parametrize("name", t.NAMES)
def test_tpch_query(name: str, ansi: str, joins: str, views: dict[str, Any],
                    tpch: t.Cluster) -> None:
    spark, text = views["spark"], t.query(name)
    with settings(spark, spark__sql__ansi__enabled=ansi, spark__bpfstore__pushdown__joins=joins):
        moved, started = t.bytes_returned(tpch.agents), time.perf_counter()
        ours = run(views, "ours", text)
        ours_rows, ours_schema = rows(ours), schema_of(ours)
        seconds, moved = time.perf_counter() - started, t.bytes_returned(tpch.agents) - moved
        started = time.perf_counter()
        plain = run(views, "plain", text)
        plain_rows = rows(plain)
        parquet_seconds = time.perf_counter() - started
        diff = t.differences(name, ours_rows, plain_rows) + t.differences(
            name, ours_rows, views["oracle"].sql(text).fetchall())
        t.record(frontend=f"spark-ansi-{ansi}" + ("" if joins == "true" else "-no-joins"),
                 query=name, equal=not diff, seconds=seconds,
                 parquet_seconds=parquet_seconds, bytes_moved=moved)
        assert ours_schema == schema_of(plain)
        assert diff == []
