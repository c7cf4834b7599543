"""TPC-H Q1 and Q6 through Spark with plain DataFrame code and SQL: pushed down as partial
aggregates, with exactly the values and types of the same query with pushdown disabled, of
plain Spark on the same Parquet file, and of DuckDB — with ANSI on and off."""

from __future__ import annotations

import datetime as dt
import decimal
from decimal import Decimal
from typing import Any

import duckdb
import pytest
from spark_support import (
    recording,
    rows,
    rule_counters,
    schema_of,
    settings,
    spark_session,
    tpch_lineitem,
)

from bpfstore.connector import Client

pytestmark = pytest.mark.spark
pytest.importorskip("pyspark")

Q6_SQL = """select sum(l_extendedprice * l_discount) as revenue from lineitem
 where l_shipdate >= date '1994-01-01' and l_shipdate < date '1995-01-01'
   and l_discount between 0.05 and 0.07 and l_quantity < 24"""

Q1_SQL = """select l_returnflag, l_linestatus, sum(l_quantity) as sum_qty,
  sum(l_extendedprice) as sum_base_price, sum(l_extendedprice * (1 - l_discount)) as sum_disc_price,
  sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)) as sum_charge,
  avg(l_quantity) as avg_qty, avg(l_extendedprice) as avg_price, avg(l_discount) as avg_disc,
  count(*) as count_order
 from lineitem where l_shipdate <= date '1998-12-01' - interval '90' day
 group by l_returnflag, l_linestatus order by l_returnflag, l_linestatus"""


def q6_df(df: Any, decimals: bool) -> Any:
    from pyspark.sql import functions as F

    lo, hi = (Decimal("0.05"), Decimal("0.07")) if decimals else (0.05, 0.07)
    return (df.filter((F.col("l_shipdate") >= dt.date(1994, 1, 1))
                      & (F.col("l_shipdate") < F.lit("1995-01-01").cast("date"))
                      & F.col("l_discount").between(lo, hi) & (F.col("l_quantity") < 24))
            .agg(F.sum(F.col("l_extendedprice") * F.col("l_discount")).alias("revenue")))


def q1_df(df: Any) -> Any:
    from pyspark.sql import functions as F

    price, disc, tax = F.col("l_extendedprice"), F.col("l_discount"), F.col("l_tax")
    return (df.filter(F.col("l_shipdate") <= F.date_sub(F.lit("1998-12-01").cast("date"), 90))
            .groupBy("l_returnflag", "l_linestatus")
            .agg(F.sum("l_quantity").alias("sum_qty"), F.sum(price).alias("sum_base_price"),
                 F.sum(price * (1 - disc)).alias("sum_disc_price"),
                 F.sum(price * (1 - disc) * (1 + tax)).alias("sum_charge"),
                 F.avg("l_quantity").alias("avg_qty"), F.avg(price).alias("avg_price"),
                 F.avg(disc).alias("avg_disc"), F.count("*").alias("count_order"))
            .orderBy("l_returnflag", "l_linestatus"))


@pytest.fixture(scope="module")
def tpch(agents, client: Client, tmp_path_factory) -> dict[str, Any]:
    parquet = tpch_lineitem(tmp_path_factory.mktemp("spark-tpch"))
    import pyarrow.parquet as pq

    client.write("spark_lineitem", pq.read_table(parquet), partition_rows=25_000,
                 overwrite=True)
    spark = spark_session()
    addresses = ",".join(a.address for a in agents)
    ours = spark.read.format("bpfstore").option("agents", addresses).load("spark_lineitem")
    plain = spark.read.parquet(str(parquet))
    return {"spark": spark, "ours": ours, "plain": plain, "parquet": parquet,
            "agents": agents, "addresses": addresses}


def _duckdb_q6(parquet) -> list[tuple]:
    con = duckdb.connect()
    q = Q6_SQL.replace("from lineitem", f"from read_parquet('{parquet}')")
    return [tuple(r) for r in con.execute(q).fetchall()]


def _duckdb_q1(parquet) -> list[tuple]:
    """DuckDB's exact sums and counts; averages finished as Spark does (HALF_UP, scale 6)."""
    con = duckdb.connect()
    q = f"""select l_returnflag, l_linestatus, sum(l_quantity), sum(l_extendedprice),
      sum(l_extendedprice * (1 - l_discount)),
      sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)),
      count(*) from read_parquet('{parquet}') where l_shipdate <= date '1998-09-02'
      group by all order by all"""
    out = []
    six = Decimal("0.000001")
    for f, s, qty, price, disc_price, charge, n in con.execute(q).fetchall():
        (disc,) = con.execute(f"select sum(l_discount) from read_parquet('{parquet}') where "
                              f"l_shipdate <= date '1998-09-02' and l_returnflag = '{f}' "
                              f"and l_linestatus = '{s}'").fetchone()
        avg = [(Decimal(x) / n).quantize(six, rounding=decimal.ROUND_HALF_UP)
               for x in (qty, price, disc)]
        out.append((f, s, qty, price, disc_price, charge, *avg, n))
    return out


@pytest.mark.parametrize("ansi", ["true", "false"])
def test_q6_and_q1_pushed_down_exactly(tpch, ansi: str) -> None:
    spark, ours, plain = tpch["spark"], tpch["ours"], tpch["plain"]
    ours.createOrReplaceTempView("lineitem")
    plain.createOrReplaceTempView("lineitem_plain")
    queries = {
        "q6_sql": lambda: spark.sql(Q6_SQL),
        "q6_df_float": lambda: q6_df(ours, decimals=False),
        "q6_df_decimal": lambda: q6_df(ours, decimals=True),
        "q1_sql": lambda: spark.sql(Q1_SQL),
        "q1_df": lambda: q1_df(ours),
    }
    plain_queries = {
        "q6_sql": lambda: spark.sql(Q6_SQL.replace("lineitem", "lineitem_plain")),
        "q6_df_float": lambda: q6_df(plain, decimals=False),
        "q6_df_decimal": lambda: q6_df(plain, decimals=True),
        "q1_sql": lambda: spark.sql(Q1_SQL.replace("lineitem", "lineitem_plain")),
        "q1_df": lambda: q1_df(plain),
    }
    oracle = {"q6": _duckdb_q6(tpch["parquet"]), "q1": _duckdb_q1(tpch["parquet"])}
    with settings(spark, spark__sql__ansi__enabled=ansi):
        for name, query in queries.items():
            before = rule_counters(spark)[0]
            with recording(tpch["agents"]) as rec:
                df = query()
                pushed_rows, pushed_schema = rows(df), schema_of(df)
                plan = df._jdf.queryExecution().executedPlan().toString()
            assert rule_counters(spark)[0] > before, name
            assert rec.kinds() == {"Aggregate"}, (name, rec.kinds())  # partials, never rows
            # explain() shows the pushed aggregates as the partial columns of the bpfstore scan
            partial = "sum(l_extendedprice * l_discount)" if name[:2] == "q6" else "count(*)"
            assert "BatchScan bpfstore[" in plan and partial in plan, plan
            with settings(spark, spark__bpfstore__pushdown="false"):
                with recording(tpch["agents"]) as rec:
                    off = query()
                    off_rows, off_schema = rows(off), schema_of(off)
                assert rec.kinds() == {"Scan"}, name
            base = plain_queries[name]()
            assert pushed_schema == off_schema == schema_of(base), name
            assert pushed_rows == off_rows == rows(base), name
            assert pushed_rows == oracle[name[:2]], name
