"""The executor without gRPC: real partition files in a real Storage, real engines (bpf and
bcc in the kernel), answers against exact Python arithmetic over the same rows."""

from __future__ import annotations

import dataclasses
import decimal
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from bpfstore.contract.binding import bind_plan
from bpfstore.contract.errors import DeadlineExceeded, PlanInvalid, Unsupported
from bpfstore.contract.plan import (
    EngineName,
    Plan,
    col,
    count_star,
    max_,
    min_,
    sum_,
)
from bpfstore.node_agent import metrics
from bpfstore.node_agent.budget import Budget
from bpfstore.node_agent.budget import current as current_budget
from bpfstore.node_agent.catalog import DatasetMeta
from bpfstore.node_agent.engines.base import Report
from bpfstore.node_agent.engines.select import Engines
from bpfstore.node_agent.executor import Executor
from bpfstore.node_agent.server import ipc_bytes
from bpfstore.node_agent.storage import Storage
from conftest import require_engine

STARTS = {"p0": 0, "p1": 5000, "p2": 10_000}  # partition -> first x; 1000 rows each
ROWS = 1000


def _rows(pid: str) -> dict[str, list]:
    xs = [STARTS[pid] + i for i in range(ROWS)]
    return {"x": xs, "y": [x / 2 for x in xs], "g": [x % 3 for x in xs]}  # halves: exact sums


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Executor, Storage]]:
    root = tmp_path_factory.mktemp("executor")
    storage = Storage(str(root))
    for pid in STARTS:
        table = pa.table({k: pa.array(v, pa.float64() if k == "y" else pa.int64())
                          for k, v in _rows(pid).items()})
        storage.write("t", [ipc_bytes(table)], pid)
    engines = Engines(EngineName.AUTO, str(root), 64 << 20)
    yield Executor(storage, engines), storage


def _plan(meta: DatasetMeta, engine: str = "auto", **fields: object) -> Plan:
    return bind_plan(Plan("t", engine=engine, **fields), meta.schema)  # type: ignore[arg-type]


def _by_partition(reports: list[Report]) -> dict[str, Report]:
    return {r.partition: r for r in reports}


@pytest.mark.bpf
@pytest.mark.parametrize("engine", [e.value for e in EngineName])
def test_pruned_answered_and_read_partitions_give_the_exact_answer(
        setup: tuple[Executor, Storage], engine: str) -> None:
    executor, storage = setup
    if engine not in ("auto", "arrow"):
        require_engine(executor.engines, engine)
    meta = storage.get("t")
    where = (col("x") >= 4990) & (col("x") < 5500)  # p1 only; p0 and p2 excluded by stats
    plan = _plan(meta, engine, filter=where, aggregates=(count_star(), sum_("x"), max_("x")))
    result = executor.aggregate(plan, meta)
    xs = [x for pid in STARTS for x in _rows(pid)["x"] if 4990 <= x < 5500]
    assert result.partials.to_pylist() == [
        {"__agg_0": len(xs), "__agg_1": decimal.Decimal(sum(xs)), "__agg_2": max(xs)}]
    reports = _by_partition(result.reports)
    assert [r.partition for r in result.reports] == list(STARTS)
    assert reports["p0"].pruned and reports["p2"].pruned
    assert reports["p0"].engine == reports["p2"].engine == "stats"
    read = reports["p1"]
    want = {"auto": "bpf", "bpf-hot": "bpf", "bpf-cold": "bpf"}.get(engine, engine)
    assert not read.pruned and read.engine == want, read
    assert engine not in ("bpf-hot", "bpf-cold") or read.path == engine.removeprefix("bpf-")
    assert (read.rows_scanned, read.rows_matched) == (ROWS, 500)
    assert read.bytes_scanned == ROWS * 8  # the int64 column x, nothing else
    assert reports["p0"].rows_scanned == reports["p0"].bytes_scanned == 0


def test_statistics_answer_without_reading(setup: tuple[Executor, Storage],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    executor, storage = setup
    meta = storage.get("t")

    def unread(*args: object) -> None:
        raise AssertionError("a partition was read")

    monkeypatch.setattr(storage, "read", unread)
    plan = _plan(meta, "arrow", aggregates=(count_star(), min_("x"), max_("y")))
    result = executor.aggregate(plan, meta)
    assert result.partials.to_pylist() == [
        {"__agg_0": 3 * ROWS, "__agg_1": 0, "__agg_2": (STARTS["p2"] + ROWS - 1) / 2}]
    assert {(r.engine, r.pruned) for r in result.reports} == {("stats", False)}


def test_auto_falls_back_to_arrow_per_partition_and_says_why(
        setup: tuple[Executor, Storage]) -> None:
    executor, storage = setup
    meta = storage.get("t")
    plan = _plan(meta, filter=col("x") < 5100, aggregates=(sum_("y"),), group_by=("g",))
    result = executor.aggregate(plan, meta)
    sums: dict[int, float] = {}
    for pid in STARTS:
        rows = _rows(pid)
        for x, y, g in zip(rows["x"], rows["y"], rows["g"], strict=True):
            if x < 5100:
                sums[g] = sums.get(g, 0.0) + y
    got = {r["g"]: r["__agg_0"] for r in result.partials.to_pylist()}
    assert got == sums
    reports = _by_partition(result.reports)
    assert reports["p2"].pruned
    for pid in ("p0", "p1"):
        assert reports[pid].engine == "arrow"
        if executor.engines.bpf is not None:  # bpf refused the float sum: the note says so
            assert "float" in reports[pid].note, reports[pid]


@pytest.mark.bpf
def test_a_named_engine_that_cannot_run_the_plan_is_an_error(
        setup: tuple[Executor, Storage]) -> None:
    executor, storage = setup
    require_engine(executor.engines, "bpf")
    meta = storage.get("t")
    plan = _plan(meta, "bpf", aggregates=(sum_("y"),))
    with pytest.raises(Unsupported, match="float") as refused:
        executor.aggregate(plan, meta)
    first = meta.partitions[0].id  # the error names the engine and where it refused
    assert f"engine 'bpf' cannot run this plan on partition {first}: " in str(refused.value)


def test_a_missing_engine_is_refused_even_when_statistics_prune_every_partition(
        tmp_path: Path, setup: tuple[Executor, Storage]) -> None:
    _, storage = setup
    executor = Executor(storage, Engines(EngineName.AUTO, str(tmp_path), enable_bpf=False))
    meta = storage.get("t")
    plan = _plan(meta, "bpf-hot", filter=col("x") < -1, aggregates=(count_star(),))
    with pytest.raises(Unsupported, match="bpf-hot.*disabled by configuration"):
        executor.aggregate(plan, meta)
    auto = executor.aggregate(dataclasses.replace(plan, engine=EngineName.AUTO), meta)
    assert auto.partials.num_rows == 0 and all(r.pruned for r in auto.reports)


def test_partitions_run_in_the_plans_order(setup: tuple[Executor, Storage]) -> None:
    executor, storage = setup
    meta = storage.get("t")
    plan = _plan(meta, "arrow", partitions=("p2", "p0"), filter=col("g").eq(1),
                 aggregates=(count_star(),))
    result = executor.aggregate(plan, meta)
    assert [r.partition for r in result.reports] == ["p2", "p0"]
    want = sum(1 for pid in ("p2", "p0") for g in _rows(pid)["g"] if g == 1)
    assert result.partials.to_pylist() == [{"__agg_0": want}]


def test_an_aggregate_without_aggregates_is_invalid(setup: tuple[Executor, Storage]) -> None:
    executor, storage = setup
    meta = storage.get("t")
    with pytest.raises(PlanInvalid, match="at least one aggregate"):
        executor.aggregate(_plan(meta, group_by=("g",)), meta)


def test_scan_yields_each_partitions_rows_then_its_report(
        setup: tuple[Executor, Storage]) -> None:
    executor, storage = setup
    meta = storage.get("t")
    where = (col("x") < 3) | ((col("x") >= 5995) & (col("x") < 6000))
    plan = _plan(meta, filter=where, columns=("x",))
    out = list(executor.scan(plan, meta, batch_rows=2))
    reports = [o for o in out if isinstance(o, Report)]
    assert [r.partition for r in reports] == list(STARTS)
    assert [r.pruned for r in reports] == [False, False, True]
    rows: dict[str, list[int]] = {pid: [] for pid in STARTS}
    pending: list[int] = []
    for o in out:
        if isinstance(o, Report):
            rows[o.partition], pending = pending, []
            assert o.rows_matched == len(rows[o.partition])
        else:
            assert o.num_rows <= 2 and o.schema.names == ["x"]
            pending += o.column("x").to_pylist()
    assert rows == {"p0": [0, 1, 2], "p1": [5995, 5996, 5997, 5998, 5999], "p2": []}


def test_a_cancelled_request_stops_between_partitions(setup: tuple[Executor, Storage]) -> None:
    executor, storage = setup
    meta = storage.get("t")
    plan = _plan(meta, "arrow", aggregates=(sum_("x"),))
    budget = Budget(time.monotonic() + 60)
    token = current_budget.set(budget)
    try:
        scan = executor.scan(plan, meta, batch_rows=100)
        next(scan)  # the first batch
        budget.cancelled.set()
        with pytest.raises(DeadlineExceeded, match="cancelled"):
            list(scan)
        with pytest.raises(DeadlineExceeded, match="cancelled"):
            executor.aggregate(plan, meta)
    finally:
        current_budget.reset(token)


def test_partitions_are_counted_in_the_requests_metrics(
        setup: tuple[Executor, Storage], monkeypatch: pytest.MonkeyPatch) -> None:
    executor, storage = setup
    meta = storage.get("t")
    record = metrics.RequestRecord("Aggregate", metrics.AgentMetrics())
    monkeypatch.setattr(metrics._local, "record", record, raising=False)
    plan = _plan(meta, "arrow", filter=col("x") >= 5000, aggregates=(sum_("x"),))
    executor.aggregate(plan, meta)
    assert record.engines == {"stats": 1, "arrow": 2}
    assert record.rows_scanned == 2 * ROWS and record.bytes_scanned == 2 * ROWS * 8
