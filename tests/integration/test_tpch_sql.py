"""The 22 TPC-H queries through `bpfstore sql` (Client.sql): Q1 and Q6 as pushed-down
aggregates, every other query as one pushdown scan per table (used columns, the WHERE terms
on that table alone) plus DuckDB over the scanned rows; each answer equals DuckDB's on the
same data."""

from __future__ import annotations

import time

import duckdb
import pytest
import tpch as t

from bpfstore.connector import Client
from bpfstore.connector.sql import run_sql, sql_path

PUSHED = {"q01", "q06"}


@pytest.fixture(scope="module")
def client(tpch: t.Cluster):
    with Client(tpch.addresses) as c:
        yield c


@pytest.fixture(scope="module")
def oracle(tpch: t.Cluster):
    return tpch.data.duckdb()


def _on_parquet(tpch: t.Cluster, text: str) -> float:
    """Seconds DuckDB takes for the query over the same partitions as Parquet files."""
    con = duckdb.connect()
    for name in t.TABLES:
        files = str(tpch.data.split_dir("parquet") / name / "*.parquet")
        con.execute(f"create view {name} as select * from read_parquet('{files}')")
    started = time.perf_counter()
    con.sql(text).fetchall()
    return time.perf_counter() - started


@pytest.mark.parametrize("name", t.NAMES)
def test_tpch_query_equals_duckdb(name: str, client: Client, oracle, tpch: t.Cluster) -> None:
    text = t.query(name)
    started = time.perf_counter()
    answer = run_sql(client, text)
    seconds = time.perf_counter() - started
    result, report = answer.table, answer.report
    expected = oracle.sql(text).to_arrow_table()
    assert result.schema.names == expected.schema.names
    assert result.schema.types == expected.schema.types, (result.schema, expected.schema)
    ours = [tuple(r.values()) for r in result.to_pylist()]
    diff = t.differences(name, ours, [tuple(r) for r in oracle.sql(text).fetchall()])
    t.record(frontend="bpfstore-sql", query=name, equal=not diff, seconds=seconds,
             parquet_seconds=_on_parquet(tpch, text), bytes_moved=report.bytes_moved)
    assert diff == []
    path, reason = sql_path(result)
    assert path == ("pushdown" if name in PUSHED else "fallback"), (path, reason)
    moved = report.bytes_moved
    assert moved > 0, report
    if name not in PUSHED:  # every table was read through the agents, none twice
        assert report.rows_scanned <= sum(
            tpch.data.tables[n].num_rows for n in t.TABLES if n in text)


@pytest.mark.parametrize("text", [
    # null-extended rows of an outer join: a WHERE term on the inner side must not be pushed
    "select count(*) from customer left join orders on c_custkey = o_custkey "
    "where o_orderkey is null",
    "select c_custkey, count(o_orderkey) from customer left join orders on c_custkey = o_custkey "
    "and o_totalprice > 100000 where c_custkey < 30 group by c_custkey",
    # one table twice with different filters: the scan keeps the rows of either
    "select count(*), sum(a.o_totalprice) from orders a, orders b "
    "where a.o_orderkey = b.o_orderkey and a.o_orderkey < 100 and b.o_orderkey > 50",
    "select c_custkey from customer where c_custkey < 5 union all "
    "select o_custkey from orders where o_orderkey < 3",
    "with big as (select * from orders where o_totalprice > 300000) "
    "select count(*) from big, customer where o_custkey = c_custkey and c_acctbal < 0",
    "select count(*) from orders where exists (select count(*) from lineitem "
    "where l_orderkey = o_orderkey and l_quantity > 49)",
    "select count(*) from region",
])
def test_other_shapes_equal_duckdb(text: str, client: Client, oracle) -> None:
    ours = [tuple(r.values()) for r in client.sql(text).to_pylist()]
    assert sorted(ours) == sorted(oracle.sql(text).fetchall())


def test_statements_other_than_a_query_are_refused(client: Client) -> None:
    from bpfstore.connector.sql import SqlError

    with pytest.raises(SqlError, match="WITH clause"):
        client.sql("create view v as select * from orders")
