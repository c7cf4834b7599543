"""The 22 TPC-H queries as Spark SQL over `format("bpfstore")` temp views (a session made with
`configure`), with ANSI on and off: each answer equals Spark's over the same rows as Parquet
(the same values and types) and DuckDB's on the same data (decimals exactly, doubles within
rounding)."""

from __future__ import annotations

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
    for name in t.TABLES:
        spark.read.format("bpfstore").option("agents", agents).load(name) \
            .createOrReplaceTempView(name)
        spark.read.parquet(str(parquet / name)).createOrReplaceTempView(f"{name}_parquet")
    return {"spark": spark, "oracle": tpch.data.duckdb()}


def on_parquet(text: str) -> str:
    import re

    return re.sub(rf"\b({'|'.join(t.TABLES)})\b(?!\.)", r"\1_parquet", text)


@pytest.mark.parametrize("ansi", ["true", "false"])
@pytest.mark.parametrize("name", t.NAMES)
def test_tpch_query(name: str, ansi: str, views: dict[str, Any]) -> None:
    spark, text = views["spark"], t.query(name)
    with settings(spark, spark__sql__ansi__enabled=ansi):
        ours = spark.sql(text)
        ours_rows, ours_schema = rows(ours), schema_of(ours)
        plain = spark.sql(on_parquet(text))
        assert ours_schema == schema_of(plain)
        assert t.differences(name, ours_rows, rows(plain)) == []
        assert t.differences(name, ours_rows, views["oracle"].sql(text).fetchall()) == []
