"""The 22 TPC-H queries as ordinary Dask code (tests/tpch/dask_queries.py) over read_bpfstore:
each answer equals the same code's over dd.read_parquet of the same rows in the same
partitions, on the threaded scheduler and on a LocalCluster with worker processes."""

from __future__ import annotations

import decimal
import time
from collections.abc import Iterator
from typing import Any

import dask
import pandas as pd
import pytest
import tpch as t
from dask_support import result_rows, write_parquet_like
from tpch.dask_queries import QUERIES

from bpfstore.connector.dask import read_bpfstore

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.dask


@pytest.fixture(scope="module")
def frames(tpch: t.Cluster) -> dict[str, dict[str, Any]]:
    out = tpch.data.split_dir("dask")
    ours = {n: read_bpfstore(n, tpch.addresses) for n in t.TABLES}  # default task layout
    for name, table in tpch.data.tables.items():  # the dtypes read_bpfstore gives by default,
        # one file per Dask partition: the stored partitions each task of ours reads
        write_parquet_like(ours[name], t.pandas_types(table), out / name)
    parquet = {n: dd.read_parquet(str(out / n)) for n in t.TABLES}
    for n in t.TABLES:  # the same partitioning, so both plan the same shuffles
        assert ours[n].npartitions == parquet[n].npartitions, n
    return {"ours": ours, "parquet": parquet}


@pytest.fixture(scope="module")
def processes() -> Iterator[Any]:
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as c, distributed.Client(c) as dc:
        yield dc


def threaded(query: Any, tables: dict[str, Any]) -> Any:
    """Built and run on the threaded scheduler with the task-based shuffle (p2p, the default
    while a distributed client exists, needs its workers; drop_duplicates picks it when built)."""
    with dask.config.set({"dataframe.shuffle.method": "tasks"}):
        return query(tables).compute(scheduler="threads")


def _plain(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return value.date()
    return value.item() if hasattr(value, "item") else value  # numpy scalars


def _duckdb(tpch: t.Cluster, name: str) -> list[tuple]:
    """DuckDB's rows with decimals as floats (Dask's dtypes); SQL's NULL sum of no rows is
    pandas' 0.0."""
    rows = tpch.data.duckdb().sql(t.query(name)).fetchall()
    if rows == [(None,)]:
        return [(0.0,)]
    return [tuple(float(v) if isinstance(v, decimal.Decimal) else v for v in r) for r in rows]


@pytest.mark.parametrize("name", t.NAMES)
def test_tpch_query(name: str, frames: dict[str, Any], processes: Any,
                    tpch: t.Cluster) -> None:
    query = QUERIES[name]
    started = time.perf_counter()
    expected, expected_types = result_rows(threaded(query, frames["parquet"]))
    parquet_seconds = time.perf_counter() - started
    assert expected, f"{name}: the query selects no rows at this scale"
    # our Dask text is TPC-H: over Parquet it gives DuckDB's answer to the SQL text
    assert t.differences(name, [tuple(map(_plain, r)) for r in expected], _duckdb(tpch, name)) \
        == []
    moved = t.bytes_returned(tpch.agents)
    started = time.perf_counter()
    ours, ours_types = result_rows(threaded(query, frames["ours"]))
    seconds = time.perf_counter() - started
    moved = t.bytes_returned(tpch.agents) - moved
    diff = t.differences(name, ours, expected)
    t.record(frontend="dask-threads", query=name, equal=not diff, seconds=seconds,
             parquet_seconds=parquet_seconds, bytes_moved=moved)
    assert ours_types == expected_types
    assert diff == []
    started = time.perf_counter()
    future = processes.compute(query(frames["ours"]))
    distributed_rows, distributed_types = result_rows(future.result())
    seconds = time.perf_counter() - started
    diff = t.differences(name, distributed_rows, expected)
    t.record(frontend="dask-processes", query=name, equal=not diff, seconds=seconds)
    assert distributed_types == expected_types
    assert diff == []
