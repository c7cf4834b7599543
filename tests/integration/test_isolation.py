"""No tenant can stall another, cancelled and expired work stops, and amplifying inputs are
refused cheaply — against real agent processes on loopback (issue 19: H1, H2, M1-M4).

A "noisy" tenant stalls Write streams, leaves Scans unread and storms the agent with
cancelled queries while a "normal" tenant's requests must keep answering (within generous
bounds: these are liveness checks, not speed checks). The slow query is SUM(x * x) with
overflow mode NULL over a column where one product overflows: the arrow engine then
evaluates row by row (~80 us a row), seconds of work in one partition.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pyarrow as pa
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agent_process import AgentProcess
from bpfstore.connector import Client, col, count_star, max_, min_, sum_
from bpfstore.connector.transport import Transport
from bpfstore.contract import wire
from bpfstore.contract.binding import bind_plan
from bpfstore.contract.errors import DeadlineExceeded
from bpfstore.contract.plan import Arith, ArithOp, In, Literal, Overflow, Plan
from bpfstore.node_agent.auth import hash_token
from bpfstore.node_agent.budget import Budget
from bpfstore.node_agent.budget import current as current_budget
from bpfstore.node_agent.config import AgentConfig
from bpfstore.node_agent.engines import arrow_engine
from bpfstore.node_agent.engines.base import Partition, Served
from bpfstore.node_agent.engines.bpf import engine as bpf_engine
from bpfstore.node_agent.engines.select import Engines
from bpfstore.node_agent.server import ipc_bytes
from bpfstore.node_agent.stats import column_stats
from bpfstore.v1 import agent_pb2 as pb
from bpfstore.v1 import agent_pb2_grpc
from conftest import RunningAgent, require_bpf

IDLE_SECONDS = 2.0  # the agent's stream_idle_seconds
MAX_DEADLINE = 3.0  # the agent's max_deadline_seconds
BOUND = 5.0  # every normal request must answer within this
SLOW_ROWS = 300_000  # 8 s or more of row-by-row evaluation
WORST: dict[str, float] = {}  # the normal tenant's worst latency per scenario (printed)


def _config(path: Path, **settings: Any) -> Path:
    lines = [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    for name in ("noisy", "normal"):
        lines += [f"[tenants.{name}]", f'tokens = ["{hash_token(name)}"]',
                  'read = ["*"]', 'write = ["*"]']
    path.write_text("\n".join(lines) + "\n")
    return path


def _meta(tenant: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {tenant}")]


def _slow_plan() -> pb.Plan:
    square = Arith(ArithOp.MUL, col("x"), col("x"), overflow=Overflow.NULL)
    return wire.plan_to_proto(Plan("slow", aggregates=(sum_(square),), engine="arrow"))


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _seconds_until_idle(pid: int, timeout: float = 10.0) -> float:
    """How long until the process spends under 10% of a core over a 0.5 s window."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        before = _cpu_seconds(pid)
        time.sleep(0.5)
        if _cpu_seconds(pid) - before < 0.05:
            return time.monotonic() - start
    raise AssertionError(f"the agent kept computing for {timeout} s")


@pytest.fixture(scope="module")
def agent(tmp_path_factory) -> Iterator[AgentProcess]:
    base = tmp_path_factory.mktemp("isolation")
    config = _config(base / "agent.toml", workers=4, stream_idle_seconds=IDLE_SECONDS,
                     max_deadline_seconds=MAX_DEADLINE)
    proc = AgentProcess(base / "data", "--config", str(config))
    x = np.arange(SLOW_ROWS, dtype=np.int64)
    x[0] = 2**40  # x * x overflows int64 here: overflow mode NULL goes row by row
    with Client([proc.address], transport=Transport(token="normal"), timeout=30) as c:
        c.write("slow", pa.table({"x": x}))
        c.write("small", pa.table({"x": pa.array(range(1000), pa.int64())}))
        c.write("wide", pa.table({"x": np.arange(2_000_000, dtype=np.int64),
                                  "y": np.arange(2_000_000, dtype=np.float64)}))
    yield proc
    proc.stop()
    print(f"\nnormal tenant's worst latency (s): {WORST}")


class Normal:
    """The normal tenant's requests: each must answer within BOUND; the worst is kept."""

    def __init__(self, agent: AgentProcess, scenario: str) -> None:
        self.channel = grpc.insecure_channel(agent.address)
        self.stub = agent_pb2_grpc.AgentStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)
        self.scenario = scenario

    def _timed(self, call: Callable[[], Any]) -> None:
        start = time.monotonic()
        call()
        elapsed = time.monotonic() - start
        WORST[self.scenario] = max(WORST.get(self.scenario, 0.0), elapsed)

    def every_kind(self) -> None:
        m = _meta("normal")
        plan = wire.plan_to_proto(Plan("small", filter=col("x") > 10,
                                       aggregates=(count_star(),)))
        self._timed(lambda: self.health.Check(health_pb2.HealthCheckRequest(), timeout=BOUND))
        self._timed(lambda: self.stub.GetInfo(pb.GetInfoRequest(), metadata=m, timeout=BOUND))
        self._timed(lambda: self.stub.ListDatasets(pb.ListDatasetsRequest(), metadata=m,
                                                   timeout=BOUND))
        reply: list[Any] = []
        self._timed(lambda: reply.append(self.stub.Aggregate(
            pb.AggregateRequest(plan=plan), metadata=m, timeout=BOUND)))
        got = pa.ipc.open_stream(reply[0].partials).read_all().to_pylist()
        assert list(got[0].values()) == [989]
        scan = wire.plan_to_proto(Plan("small", filter=col("x") < 3))
        self._timed(lambda: list(self.stub.Scan(pb.ScanRequest(plan=scan), metadata=m,
                                                timeout=BOUND)))

    def close(self) -> None:
        self.channel.close()


def _stalled_write(gate: threading.Event, i: int) -> Iterator[pb.WriteChunk]:
    data = ipc_bytes(pa.table({"x": pa.array(range(1000), pa.int64())}))
    yield pb.WriteChunk(dataset="stalled", partition=f"p{i}", arrow_ipc=data[:100])
    gate.wait(60)  # and go quiet


def test_stalled_write_streams_do_not_starve_a_normal_tenant(agent: AgentProcess) -> None:
    gate = threading.Event()
    channel = grpc.insecure_channel(agent.address)
    stub = agent_pb2_grpc.AgentStub(channel)
    normal = Normal(agent, "stalled writes")
    try:
        stalled = [stub.Write.future(_stalled_write(gate, i), metadata=_meta("noisy"),
                                     timeout=60) for i in range(8)]
        time.sleep(0.5)  # all eight are in the agent, holding their streams open
        assert not any(f.done() for f in stalled)
        normal.every_kind()
        # the agent drops a stream silent for stream_idle_seconds (long before the client's 60 s)
        started = time.monotonic()
        for f in stalled:
            assert f.exception(timeout=IDLE_SECONDS + 10) is not None
            assert f.code() != grpc.StatusCode.OK
        assert time.monotonic() - started < IDLE_SECONDS + 10
        normal.every_kind()  # and it still serves
    finally:
        gate.set()
        normal.close()
        channel.close()


def test_unread_scans_are_dropped_and_do_not_starve_a_normal_tenant(
        agent: AgentProcess) -> None:
    # No BDP probing: with it the client's window may grow until a whole 32 MB answer sits
    # in its buffers unread (seen on a loaded machine: the stream then simply ends OK).
    channel = grpc.insecure_channel(agent.address, options=[("grpc.http2.bdp_probe", 0)])
    stub = agent_pb2_grpc.AgentStub(channel)
    normal = Normal(agent, "unread scans")
    plan = wire.plan_to_proto(Plan("wide"))  # 32 MB each: far more than the stream's window
    try:
        unread = [stub.Scan(pb.ScanRequest(plan=plan), metadata=_meta("noisy"), timeout=60)
                  for _ in range(8)]  # started, never read
        time.sleep(1.0)
        normal.every_kind()
        # a reader that never reads is dropped, not waited for: read now, after the agent's
        # stream_idle_seconds, each stream gives what was in flight, then ends in CANCELLED
        time.sleep(IDLE_SECONDS + 3)
        for call in unread:
            with pytest.raises(grpc.RpcError) as info:
                for _ in call:
                    pass
            assert info.value.code() == grpc.StatusCode.CANCELLED
        normal.every_kind()
    finally:
        normal.close()
        channel.close()


def test_cancel_storm_stops_its_work_and_the_normal_tenant_answers(
        agent: AgentProcess) -> None:
    channel = grpc.insecure_channel(agent.address)
    stub = agent_pb2_grpc.AgentStub(channel)
    normal = Normal(agent, "cancel storm")
    request = pb.AggregateRequest(plan=_slow_plan())
    try:
        for _ in range(50):
            f = stub.Aggregate.future(request, metadata=_meta("noisy"), timeout=60)
            time.sleep(0.02)
            f.cancel()
        normal.every_kind()
        # the cancelled queries stopped: the agent goes idle (each would compute for ~8 s)
        idle_after = _seconds_until_idle(agent.proc.pid)
        WORST["cancel storm: agent idle after (s)"] = idle_after
        # and the noisy tenant itself gets its workers back
        small = wire.plan_to_proto(Plan("small", aggregates=(count_star(),), engine="arrow",
                                        filter=col("x") >= 0))
        assert stub.Aggregate(pb.AggregateRequest(plan=small), metadata=_meta("noisy"),
                              timeout=BOUND).partials
    finally:
        normal.close()
        channel.close()


def test_expired_query_stops_and_releases_its_worker(agent: AgentProcess) -> None:
    channel = grpc.insecure_channel(agent.address)
    stub = agent_pb2_grpc.AgentStub(channel)
    request = pb.AggregateRequest(plan=_slow_plan())
    try:
        # as many expired queries as there are workers: each must give its worker back
        futures = [stub.Aggregate.future(request, metadata=_meta("normal"), timeout=1.0)
                   for _ in range(4)]
        for f in futures:
            assert f.exception(timeout=30).code() == grpc.StatusCode.DEADLINE_EXCEEDED
        WORST["client deadline: agent idle after (s)"] = _seconds_until_idle(agent.proc.pid)
        # without a client deadline, the agent's max_deadline_seconds ends it: an error, not OK
        start = time.monotonic()
        with pytest.raises(grpc.RpcError) as info:
            stub.Aggregate(request, metadata=_meta("normal"))
        WORST["max deadline: answered after (s)"] = time.monotonic() - start
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "max_deadline_seconds" in info.value.details()
        assert time.monotonic() - start < MAX_DEADLINE + BOUND
        # the next request runs at once
        small = wire.plan_to_proto(Plan("small", aggregates=(count_star(),), engine="arrow",
                                        filter=col("x") >= 0))
        assert stub.Aggregate(pb.AggregateRequest(plan=small), metadata=_meta("normal"),
                              timeout=BOUND).partials
    finally:
        channel.close()


# -- amplification: refused from sizes and headers, with the agent's memory bounded ----------


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.fixture(scope="module")
def strict(tmp_path_factory) -> Iterator[AgentProcess]:
    base = tmp_path_factory.mktemp("amplify")
    config = _config(base / "agent.toml", max_write_bytes=1 << 20,
                     max_catalog_bytes=64 << 10)
    proc = AgentProcess(base / "data", "--config", str(config))
    with Client([proc.address], transport=Transport(token="normal"), timeout=30) as c:
        c.write("kept", pa.table({"x": pa.array(range(100), pa.int64())}))
    yield proc
    proc.stop()


def _write(agent: AgentProcess, dataset: str, data: bytes, replicas: list[str] | None = None,
           partition: str = "p0") -> grpc.RpcError | None:
    options = [("grpc.max_send_message_length", 64 << 20)]
    with grpc.insecure_channel(agent.address, options=options) as channel:
        stub = agent_pb2_grpc.AgentStub(channel)
        pieces = [data[i:i + (1 << 20)] for i in range(0, len(data), 1 << 20)] or [b""]
        chunks = [pb.WriteChunk(dataset=dataset, partition=partition, replicas=replicas or [],
                                arrow_ipc=pieces[0])] + \
            [pb.WriteChunk(arrow_ipc=p) for p in pieces[1:]]
        try:
            stub.Write(iter(chunks), metadata=_meta("noisy"), timeout=60)
        except grpc.RpcError as exc:
            return exc
    return None


def _still_serves(agent: AgentProcess) -> None:
    """The other tenant lists datasets and queries its own."""
    with grpc.insecure_channel(agent.address) as channel:
        stub = agent_pb2_grpc.AgentStub(channel)
        listed = stub.ListDatasets(pb.ListDatasetsRequest(), metadata=_meta("normal"),
                                   timeout=BOUND)
        assert "kept" in [d.name for d in listed.datasets]
        plan = wire.plan_to_proto(Plan("kept", aggregates=(count_star(),)))
        reply = stub.Aggregate(pb.AggregateRequest(plan=plan), metadata=_meta("normal"),
                               timeout=BOUND)
        assert list(pa.ipc.open_stream(reply.partials).read_all().to_pylist()[0].values()) \
            == [100]


def _in_list_plan(n: int) -> pb.Plan:
    """x IN (n values), built on the message itself (Python literals would take seconds)."""
    plan = wire.plan_to_proto(Plan("kept", filter=In(col("x"), (Literal(2**62 + 1),)),
                                   aggregates=(count_star(),)))
    values = getattr(plan.filter, "in").values
    values.extend([values[0]] * (n - 1))
    return plan


def test_huge_in_list_is_refused_before_decoding(strict: AgentProcess) -> None:
    before = _peak_rss_mb(strict.proc.pid)
    # past the agent's receive limit (plan limits + a key set's bytes: 39 MiB), under 64 MiB
    huge = _in_list_plan(4_500_000)  # 55 MiB on the wire
    assert huge.ByteSize() > AgentConfig().max_receive_bytes()
    over = _in_list_plan(150_000)  # 1.9 MiB
    options = [("grpc.max_send_message_length", 64 << 20)]
    with grpc.insecure_channel(strict.address, options=options) as channel:
        stub = agent_pb2_grpc.AgentStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.Aggregate(pb.AggregateRequest(plan=huge), metadata=_meta("noisy"), timeout=30)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # under the message limit, over max_in_list: refused naming the IN list
        with pytest.raises(grpc.RpcError) as info:
            stub.Aggregate(pb.AggregateRequest(plan=over), metadata=_meta("noisy"), timeout=30)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "IN list of 150000 values exceeds the limit of 100000" in info.value.details()
    growth = _peak_rss_mb(strict.proc.pid) - before
    WORST["peak RSS growth, IN lists (MB)"] = growth
    WORST["agent's peak RSS (MB)"] = _peak_rss_mb(strict.proc.pid)
    assert growth < 500, growth
    _still_serves(strict)


def test_compressed_and_null_bombs_are_refused_from_their_headers(
        strict: AgentProcess) -> None:
    before = _peak_rss_mb(strict.proc.pid)
    zeros = pa.array(np.zeros(32 << 20, dtype=np.int64))  # 256 MiB, of the zero page only
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, pa.schema([("x", pa.int64())]),
                           options=pa.ipc.IpcWriteOptions(compression="zstd")) as w:
        for _ in range(4):  # 1 GiB decompressed
            w.write_batch(pa.record_batch([zeros], names=["x"]))
    bomb = sink.getvalue().to_pybytes()
    assert len(bomb) < (1 << 20)  # under max_write_bytes as sent
    error = _write(strict, "bomb", bomb)
    assert error is not None and error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_write_bytes" in error.details()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, pa.schema([("n", pa.null())])) as w:
        for _ in range(2):  # 4.29 billion rows of a column that has no buffers
            w.write_batch(pa.record_batch([pa.nulls(2**31 - 1)], names=["n"]))
    nulls = sink.getvalue().to_pybytes()
    assert len(nulls) < 1000
    error = _write(strict, "nulls", nulls)
    assert error is not None and error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_write_rows" in error.details()
    growth = _peak_rss_mb(strict.proc.pid) - before
    WORST["peak RSS growth, compressed/null writes (MB)"] = growth
    WORST["agent's peak RSS (MB)"] = _peak_rss_mb(strict.proc.pid)
    assert growth < 500, growth
    assert not (strict.data_dir / "datasets" / "bomb").exists()
    _still_serves(strict)


def test_replica_lists_cannot_bloat_the_catalog(strict: AgentProcess) -> None:
    small = ipc_bytes(pa.table({"x": pa.array(range(10), pa.int64())}))
    error = _write(strict, "bloat", small, replicas=[f"10.0.{i // 256}.{i % 256}:7340"
                                                     for i in range(300_000)])
    assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "max_replicas" in error.details()
    error = _write(strict, "bloat", small, replicas=["h" * 300])
    assert error is not None and "max_replica_name_bytes" in error.details()
    # within both bounds, partition after partition: the catalog's own bound stops it
    replicas = [f"{'h' * 200}-{i}:7340" for i in range(16)]
    for i in range(100):
        error = _write(strict, "bloat", small, replicas=replicas, partition=f"p{i}")
        if error is not None:
            break
    assert error is not None and error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_catalog_bytes" in error.details()
    catalog = strict.data_dir / "datasets" / "bloat" / "_dataset.json"
    assert catalog.stat().st_size <= 64 << 10
    assert f"p{i}.arrow" not in os.listdir(catalog.parent)  # the refused partition is gone
    _still_serves(strict)
    with grpc.insecure_channel(strict.address) as channel:  # and the bloated one still answers
        stub = agent_pb2_grpc.AgentStub(channel)
        plan = wire.plan_to_proto(Plan("bloat", aggregates=(count_star(),)))
        reply = stub.Aggregate(pb.AggregateRequest(plan=plan), metadata=_meta("noisy"),
                               timeout=BOUND)
        assert list(pa.ipc.open_stream(reply.partials).read_all().to_pylist()[0].values()) \
            == [10 * i]


# -- the engines check the budget inside their loops, and stepping keeps answers exact --------


@pytest.fixture(scope="module")
def engines_agent(tmp_path_factory) -> Iterator[RunningAgent]:
    agent = RunningAgent(str(tmp_path_factory.mktemp("engines")))
    yield agent
    agent.stop()


def _stepped_table(agent: RunningAgent) -> pa.Table:
    """A stored partition (bcc reads the file under its memory map)."""
    storage = agent.service.storage
    if "stepped" not in storage.names():
        rng = np.random.default_rng(19)
        n = 50_003
        table = pa.table({"x": rng.integers(-2**62, 2**62, n), "g": rng.integers(0, 7, n),
                          "y": rng.integers(-1000, 1000, n)})
        storage.write("stepped", [ipc_bytes(table)], "p0")
    return storage.read("stepped", "p0")


def _served(engines: Engines, engine: str, table: pa.Table, plan: Plan, key: tuple) -> Served:
    """One partition through the agent's engines, as the executor hands them partitions."""
    stats = {f: column_stats(table.column(f)) for f in table.column_names}
    return next(engines.aggregate(dataclasses.replace(plan, engine=engine),
                                  [Partition.of(table, stats, key)]))


@pytest.mark.bpf
@pytest.mark.parametrize("engine", ["arrow", "bpf-hot", "bpf-cold", "bcc"])
def test_engines_stop_inside_a_partition_when_the_request_is_cancelled(
        engines_agent: RunningAgent, engine: str) -> None:
    if engine != "arrow":
        require_bpf(engines_agent, engine)
    engines = engines_agent.service.engines
    table = _stepped_table(engines_agent)
    plan = bind_plan(Plan("d", filter=col("y") > 3, aggregates=(count_star(), sum_("x"))),
                     table.schema)
    budget = Budget(time.monotonic() + 60)
    token = current_budget.set(budget)
    try:
        _served(engines, engine, table, plan, ("d", engine, "c"))  # runs
        budget.cancelled.set()
        with pytest.raises(DeadlineExceeded, match="cancelled"):
            _served(engines, engine, table, plan, ("d", engine, "c"))
    finally:
        current_budget.reset(token)


@pytest.mark.bpf
@pytest.mark.parametrize("engine", ["arrow", "bpf-hot", "bpf-cold"])
def test_stepped_evaluation_gives_the_whole_partitions_answer(
        engines_agent: RunningAgent, engine: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Small steps (bpf calls resumed every 1000 rows, arrow slices of 7777) merge exactly."""
    if engine != "arrow":
        require_bpf(engines_agent, engine)
    engines = engines_agent.service.engines
    table = _stepped_table(engines_agent)
    monkeypatch.setattr(bpf_engine, "RUN_ROWS", 1000)
    monkeypatch.setattr(arrow_engine, "ARROW_STEP_ROWS", 7777)
    for i, p in enumerate([
            Plan("d", filter=col("y") > 3, aggregates=(count_star(), sum_("x"), min_("x"),
                                                       max_("y"))),
            Plan("d", filter=col("y") < 100, aggregates=(count_star(), sum_("y")),
                 group_by=("g",))]):
        plan = bind_plan(p, table.schema)
        served = _served(engines, engine, table, plan, ("step", engine, str(i)))
        assert served.report.engine == engine.split("-")[0]
        whole = arrow_engine.aggregate_table(table, plan)  # the whole partition at once
        assert sorted(served.partials.to_pylist(), key=str) == \
            sorted(whole.partials.to_pylist(), key=str)
        assert served.report.rows_matched == whole.rows_matched
