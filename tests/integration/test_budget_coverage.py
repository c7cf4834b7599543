"""The request budget (cancel + deadline) covers the long steps outside the engines' loops:
a partition's first-open SHA-256 check, normalize() and the rest of a write's staging, and
the clang compile of a new bpf program shape (issue 19, deliverable 2). Real files, a real
clang, real bpf; the budget is the one the agent's interceptor gives a request."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from bpfstore.connector import col, count_star, sum_
from bpfstore.contract.binding import bind_plan
from bpfstore.contract.errors import DeadlineExceeded
from bpfstore.contract.plan import Plan
from bpfstore.node_agent.budget import Budget
from bpfstore.node_agent.budget import current as current_budget
from bpfstore.node_agent.engines.arrow_engine import aggregate_table
from bpfstore.node_agent.engines.base import Partition
from bpfstore.node_agent.server import ipc_bytes
from bpfstore.node_agent.stats import column_stats
from bpfstore.node_agent.storage import Storage
from conftest import RunningAgent, require_bpf

CLANG_DELAY = 6.0  # seconds the slowed clang sleeps before compiling
BOUND = 3.0  # a cancelled request stops waiting well within CLANG_DELAY (liveness, not speed)


@pytest.fixture
def budget() -> Iterator[Budget]:
    budget = Budget(time.monotonic() + 60)
    token = current_budget.set(budget)
    yield budget
    current_budget.reset(token)


def _table(rows: int = 400_000) -> pa.Table:
    rng = np.random.default_rng(19)
    return pa.table({"x": rng.integers(-2**62, 2**62, rows),
                     "s": pa.array([f"v{i % 1000}" for i in range(rows)])})


def test_first_open_checksum_stops_when_the_request_is_cancelled(tmp_path: Path,
                                                                 budget: Budget) -> None:
    table = _table()
    Storage(tmp_path).write("d", [ipc_bytes(table)], "p0")
    storage = Storage(tmp_path)  # a restarted agent: the file is hashed on first open
    assert storage.partition_path("d", "p0").stat().st_size > 3 << 20  # several blocks
    budget.cancelled.set()
    with pytest.raises(DeadlineExceeded, match="cancelled"):
        storage.read("d", "p0")
    current_budget.set(None)  # the next request still gets the checked partition, whole
    assert storage.read("d", "p0").column("x").equals(table.column("x"))


def test_expired_first_open_checksum_stops(tmp_path: Path, budget: Budget) -> None:
    Storage(tmp_path).write("d", [ipc_bytes(_table())], "p0")
    budget.deadline = time.monotonic() - 1
    with pytest.raises(DeadlineExceeded, match="deadline"):
        Storage(tmp_path).read("d", "p0")


def test_write_cancelled_after_its_stream_stops_while_normalizing(tmp_path: Path,
                                                                  budget: Budget) -> None:
    """The client cancels once it has sent everything: the agent, normalizing (and then
    writing, hashing) the partition, stops instead of committing a write nobody waits for."""
    storage = Storage(tmp_path)
    storage.write("d", [ipc_bytes(_table(10))], "old")

    def pieces() -> Iterator[bytes]:
        yield ipc_bytes(_table())
        budget.cancelled.set()

    with pytest.raises(DeadlineExceeded, match="cancelled"):
        storage.write("d", pieces(), "new", overwrite=True)
    assert [p.id for p in storage.get("d").partitions] == ["old"]  # nothing of it committed
    assert sorted(os.listdir(tmp_path / "datasets" / "d")) == ["_dataset.json", "old.arrow"]


@pytest.fixture
def slow_clang_agent(tmp_path: Path) -> Iterator[tuple[RunningAgent, Path]]:
    agent = RunningAgent(str(tmp_path / "data"))
    require_bpf(agent, "bpf-cold")
    bpf = agent.service.engines.bpf
    calls = tmp_path / "clang-calls"
    wrapper = tmp_path / "slow-clang"
    wrapper.write_text(f"#!/bin/sh\necho run >> {calls}\nsleep {CLANG_DELAY}\n"
                       f'exec {bpf.clang} "$@"\n')
    wrapper.chmod(0o755)
    bpf.clang = str(wrapper)
    yield agent, calls
    agent.stop()


@pytest.mark.bpf
def test_cancelled_request_stops_waiting_for_clang(slow_clang_agent: tuple[RunningAgent, Path],
                                                   budget: Budget) -> None:
    agent, calls = slow_clang_agent
    engines = agent.service.engines
    table = pa.table({"x": pa.array(range(5000), pa.int64())})
    stats = {"x": column_stats(table.column("x"))}
    # a shape no probe compiled (a filter constant of its own, sum and count), on one data
    # path (each path has its own program)
    plan = bind_plan(Plan("d", filter=col("x") > 4321, aggregates=(count_star(), sum_("x")),
                          engine="bpf-cold"), table.schema)
    threading.Timer(0.3, budget.cancelled.set).start()
    start = time.monotonic()
    with pytest.raises(DeadlineExceeded, match="cancelled"):
        list(engines.aggregate(plan, [Partition.of(table, stats, ("d", "p0", "c"))]))
    assert time.monotonic() - start < BOUND  # it did not wait for the compile
    # the compile finished in the background: the next request of the shape uses it
    current_budget.set(None)
    [served] = engines.aggregate(plan, [Partition.of(table, stats, ("d", "p0", "c"))])
    assert served.report.engine == "bpf"
    assert served.partials.to_pylist() == aggregate_table(table, plan).partials.to_pylist()
    assert calls.read_text().split() == ["run"]  # one clang run for both requests
