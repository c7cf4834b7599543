"""Spark's `compression` option and Dask's `compression=` keyword reach the agents' Scan
calls: the same rows, fewer bytes sent (counted by the agent's metrics)."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pytest

from bpfstore.connector import Client
from conftest import RunningAgent

N = 60_000


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAgent]:
    running = RunningAgent(str(tmp_path_factory.mktemp("frontend-compression")))
    table = pa.table({"x": pa.array(range(N), pa.int64()),
                      "k": pa.array([["AIR", "MAIL", "SHIP"][i % 3] for i in range(N)]),
                      "v": pa.array([float(i % 50) for i in range(N)])})
    with Client([running.address], timeout=30) as c:
        c.write("packed", table, partition_rows=20_000, overwrite=True)
    yield running
    running.stop()


def sent(agent: RunningAgent) -> int:
    return int(agent.service.metrics.registry.get_sample_value(
        "bpfstore_agent_bytes_returned_total", {"method": "Scan"}) or 0)


@pytest.mark.dask
def test_dask_compression_keyword(agent: RunningAgent) -> None:
    from bpfstore.connector.dask import read_bpfstore

    moved, frames = {}, {}
    for compression in ("none", "zstd"):
        before = sent(agent)
        ddf = read_bpfstore("packed", [agent.address], compression=compression)
        frames[compression] = ddf.compute(scheduler="sync").sort_values("x")
        moved[compression] = sent(agent) - before
    assert frames["zstd"].reset_index(drop=True).equals(frames["none"].reset_index(drop=True))
    assert len(frames["zstd"]) == N
    assert 0 < moved["zstd"] < moved["none"] / 2, moved


@pytest.mark.spark
def test_spark_compression_option(agent: RunningAgent) -> None:
    pytest.importorskip("pyspark")
    from spark_support import spark_session

    spark = spark_session()
    moved, rows = {}, {}
    for compression in ("none", "lz4"):
        before = sent(agent)
        df = (spark.read.format("bpfstore").option("agents", agent.address)
              .option("compression", compression).load("packed"))
        rows[compression] = sorted(tuple(r) for r in df.collect())
        moved[compression] = sent(agent) - before
    assert rows["lz4"] == rows["none"] and len(rows["lz4"]) == N
    assert 0 < moved["lz4"] < moved["none"] / 2, moved
