"""Runs of the bpf engine go on at once (every core): concurrent requests on the hot and cold
paths, grouped and not, over more column data than the arena holds (placement evicts while
other runs read), each answer equal to the same query answered alone on arrow."""

from __future__ import annotations

import datetime as dt
import threading

import numpy as np
import pyarrow as pa
import pytest

from bpfstore.connector import Client, col, count_star, max_, min_, sum_
from conftest import RunningAgent, reported, require_bpf

pytestmark = pytest.mark.bpf
PARTITIONS, ROWS = 12, 50_000  # 12 x 3 int64 columns x 400 kB: 14 MB, the arena 2 MB
QUERIES = {
    "filter-sum": ([sum_("x"), count_star()], col("y") < 600, []),
    "grouped": ([sum_("x"), min_("y"), max_("z"), count_star()], col("z") >= 3, ["g"]),
    "dates": ([sum_("y"), count_star()], col("day") > dt.date(2000, 6, 1), []),
}


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory):
    agent = RunningAgent(str(tmp_path_factory.mktemp("concurrency")),
                         bpf_arena_bytes=2 << 20, workers=8)  # ~1.6 runs
    require_bpf(agent)
    rng = np.random.default_rng(15)
    n = PARTITIONS * ROWS
    table = pa.table({
        "x": rng.integers(-10**12, 10**12, n), "y": rng.integers(0, 1000, n),
        "z": rng.integers(0, 8, n), "g": rng.integers(0, 5, n).astype(np.int8),
        "day": pa.array(rng.integers(10_000, 12_000, n).astype(np.int32), pa.int32())
        .cast(pa.date32()),
    })
    with Client([agent.address]) as client:
        client.write("crowded", table, partition_rows=ROWS, overwrite=True)
        alone = {name: _sorted(reported(client, "crowded", *q[:2], group_by=q[2],
                                        engine="arrow")[0], q[2])
                 for name, q in QUERIES.items()}
        # the forced paths this agent has (a kernel without arena maps has no hot path)
        paths = [s.name for s in agent.service.engines.status
                 if s.name in ("bpf-hot", "bpf-cold") and s.available]
        yield client, alone, paths
    agent.stop()


def _sorted(table: pa.Table, keys: list[str]) -> list[tuple]:
    rows = list(zip(*[c.to_pylist() for c in table.columns], strict=True))
    return sorted(rows) if keys else rows


def test_concurrent_requests_answer_as_alone(crowded) -> None:
    client, alone, paths = crowded
    wrong: list[str] = []
    engines: set[str] = set()
    lock = threading.Lock()

    def worker(i: int) -> None:
        engine = (*paths, "auto")[i % (len(paths) + 1)]
        for j in range(12):
            name = list(QUERIES)[(i + j) % len(QUERIES)]
            aggs, where, keys = QUERIES[name]
            got, report = reported(client, "crowded", aggs, where=where, group_by=keys,
                                   engine=engine)
            with lock:
                engines.update(f"{p.engine}-{p.path}" for p in report.partitions)
                if _sorted(got, keys) != alone[name]:
                    wrong.append(f"{name} on {engine}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong, wrong
    assert set(paths) <= engines and "bpf-cold" in paths, engines  # each path really ran
