"""Key sets (x IN <keys>) against DuckDB's `x IN (SELECT k FROM keys)`, property-based:
hostile values (NaN, -0.0, NULL keys and rows, 38-digit decimals, nanosecond timestamps,
dictionary-encoded strings, empty sets, constant partitions) written through real agents in
partitions of random sizes; COUNT(*) of the filter and of its negation, and the rows a scan
returns, equal DuckDB's. Partitions the statistics prune hold no matching row (else the
answers would differ), and the pruning test shows they are pruned at all."""

from __future__ import annotations

import datetime as dt
import decimal as D
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpfstore.connector import Client, Query, col, count_star
from bpfstore.contract.plan import describe
from oracle import to_duckdb

WIDE = D.Decimal("9" * 28 + "." + "9" * 10)
WIDE_NEG = D.Decimal("-" + "9" * 28 + "." + "9" * 10)  # not -WIDE: that rounds to 28 digits
NS_LO, NS_HI = -(2**62), 2**62

KINDS: dict[str, tuple[pa.DataType, pa.DataType, st.SearchStrategy[Any]]] = {
    # column type, key type, values
    "int64": (pa.int64(), pa.int64(), st.integers(-(2**63), 2**63 - 1) | st.integers(-3, 3)),
    "int32 with int64 keys": (pa.int32(), pa.int64(), st.integers(-(2**31), 2**31 - 1)
                              | st.integers(-3, 3)),
    "float64": (pa.float64(), pa.float64(), st.sampled_from(
        [0.0, -0.0, float("nan"), float("inf"), float("-inf"), 1.5, -2.25, 5e-324])
        | st.floats(-1e6, 1e6)),
    "decimal(38, 10)": (pa.decimal128(38, 10), pa.decimal128(38, 10), st.sampled_from(
        [WIDE, WIDE_NEG, D.Decimal("0E-10"), D.Decimal("1.5000000000")]) | st.integers(
        -(10**38) + 1, 10**38 - 1).map(lambda i: D.Decimal(f"{i}E-10"))),  # exact: no context
    "decimal(38, 0)": (pa.decimal128(38, 0), pa.decimal128(38, 0), st.integers(
        -(10**38) + 1, 10**38 - 1).map(D.Decimal) | st.integers(-3, 3).map(D.Decimal)),
    "timestamp ns": (pa.timestamp("ns"), pa.timestamp("ns"), st.integers(NS_LO, NS_HI)
                     | st.integers(-3, 3)),
    "date32": (pa.date32(), pa.date32(), st.dates(dt.date(1900, 1, 1), dt.date(2100, 1, 1))),
    "string": (pa.string(), pa.string(), st.sampled_from(["", "a", "A", "ünï", "a\0b", "zz"])
               | st.text(max_size=4)),
}


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, list[Any], list[Any], int]:
    kind = draw(st.sampled_from(sorted(KINDS)))
    values = KINDS[kind][2]
    maybe = st.none() | values
    if draw(st.booleans()):  # constant partitions: few distinct values
        pool = draw(st.lists(maybe, min_size=1, max_size=2))
        rows = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=30))
    else:
        rows = draw(st.lists(maybe, min_size=1, max_size=30))
    present = [v for v in rows if v is not None]
    hits = st.sampled_from(present) if present else values
    keys = draw(st.lists(st.none() | values | hits, max_size=12))
    return kind, rows, keys, draw(st.integers(1, 12))


def _duck_count(table: pa.Table, where: str, con: duckdb.DuckDBPyConnection) -> int:
    con.register("t", table)
    [(n,)] = con.sql(f"SELECT count(*) FROM t WHERE {where}").fetchall()
    return int(n)


@settings(max_examples=60, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=cases())
def test_key_sets_equal_duckdb_in_subquery(client: Client, case: tuple) -> None:
    kind, rows, keys, partition_rows = case
    column_type, key_type, _ = KINDS[kind]
    data = pa.table({"x": pa.array(rows, column_type)})
    key_array = pa.array(keys, key_type)
    client.write("ks_prop", data, overwrite=True, partition_rows=partition_rows)
    con = duckdb.connect()
    for where in (col("x").isin_keys(key_array), ~col("x").isin_keys(key_array)):
        want = _duck_count(data, to_duckdb(where, con), con)
        answer = client.run(Query.aggregate("ks_prop", [count_star()], where))
        what = f"{kind}: {describe(where)} over {data.column('x').to_pylist()} with keys {keys}"
        assert answer.table.column(0)[0].as_py() == want, what
        assert client.scan_table("ks_prop", where=where).num_rows == want, what


def _partitions(client: Client, data: pa.Table, rows: int) -> None:
    client.write("ks_prune", data, overwrite=True, partition_rows=rows)


@pytest.mark.parametrize(("kind", "column", "keys", "matching"), [
    ("int", pa.array(range(1000), pa.int64()), [5, 950, 2000], {5, 950}),
    ("string", pa.array([f"k{i:04}" for i in range(1000)]), ["k0005", "k0950", "zz"],
     {"k0005", "k0950"}),
    ("decimal", pa.array([D.Decimal(i).scaleb(-2) for i in range(1000)], pa.decimal128(20, 2)),
     [D.Decimal("0.05"), D.Decimal("9.50"), D.Decimal("99.99")],
     {D.Decimal("0.05"), D.Decimal("9.50")}),
    ("timestamp ns", pa.array([10**18 + i for i in range(1000)], pa.timestamp("ns")),
     pa.array([10**18 + 5, 10**18 + 950, 10**18 + 2000], pa.timestamp("ns")),
     {10**18 + 5, 10**18 + 950}),
])
def test_statistics_prune_partitions_whose_range_holds_no_key(
        client: Client, kind: str, column: pa.Array, keys: Any, matching: set) -> None:
    """Ten partitions of 100 sorted rows: only the two holding a key are read (a key beyond
    every partition prunes nothing more); two keys inside one partition's range read only
    it; an empty key set reads nothing."""
    _partitions(client, pa.table({"x": column}), 100)
    where = col("x").isin_keys(keys)
    result = client.run(Query.aggregate("ks_prune", [count_star()], where))
    assert result.table.column(0)[0].as_py() == len(matching)
    read = [p for p in result.report.partitions if not p.pruned]
    assert len(result.report.partitions) == 10 and len(read) == 2, result.report.partitions
    # a key inside partition 3's range [300, 399] (here: its neighbours) keeps it
    inside = column.take([301, 399])
    result = client.run(Query.aggregate("ks_prune", [count_star()], col("x").isin_keys(inside)))
    assert result.table.column(0)[0].as_py() == 2
    assert sum(not p.pruned for p in result.report.partitions) == 1
    # nothing in range at all: every partition pruned, nothing scanned
    empty = client.run(Query.aggregate("ks_prune", [count_star()],
                                       col("x").isin_keys(pa.array([], column.type))))
    assert empty.table.column(0)[0].as_py() == 0
    assert all(p.pruned for p in empty.report.partitions) and empty.report.bytes_scanned == 0
