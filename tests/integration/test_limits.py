"""Limits on a real agent (in-process server on loopback): per-tenant and agent-wide
concurrency answer RESOURCE_EXHAUSTED at once instead of queueing, requests stop at their
deadline, and the plan and message limits are settings that take effect."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pyarrow as pa
import pytest

from bpfstore.connector import Client, col, count_star, sum_
from bpfstore.connector.transport import Transport
from bpfstore.contract import keysets, wire
from bpfstore.contract.errors import ResourceExhausted
from bpfstore.contract.plan import In, Literal, Not, Plan
from bpfstore.node_agent.auth import hash_token
from bpfstore.node_agent.config import Tenant
from bpfstore.v1 import agent_pb2 as pb
from bpfstore.v1 import agent_pb2_grpc
from conftest import RunningAgent

TABLE = pa.table({"x": pa.array(range(30), pa.int64())})


class Hold:
    """Makes DescribeDataset of `dataset` wait inside the agent until released, counting the
    requests that are waiting: a way to have exactly N requests running."""

    def __init__(self, agent: RunningAgent, dataset: str = "held") -> None:
        self.inside = 0
        self.release = threading.Event()
        self._cond = threading.Condition()
        storage = agent.service.storage
        self._orig = storage.get

        def get(name: str) -> Any:
            if name == dataset:
                with self._cond:
                    self.inside += 1
                    self._cond.notify_all()
                self.release.wait(30)
            return self._orig(name)
        storage.get = get
        self._storage = storage

    def wait_inside(self, n: int) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: self.inside >= n, timeout=30), self.inside

    def restore(self) -> None:
        self.release.set()
        self._storage.get = self._orig


def _describe(address: str, dataset: str, token: str | None = None) -> Callable[[], Any]:
    stub = agent_pb2_grpc.AgentStub(grpc.insecure_channel(address))
    metadata = [("authorization", f"Bearer {token}")] if token else []
    return lambda: stub.DescribeDataset(pb.DescribeDatasetRequest(dataset=dataset),
                                        metadata=metadata, timeout=30)


def _code(call: Callable[[], Any]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


@pytest.fixture()
def tenant_agent(tmp_path) -> Iterator[RunningAgent]:
    tenants = (Tenant("busy", (hash_token("busy"),), read=("*",), max_concurrent=2),
               Tenant("other", (hash_token("other"),), read=("*",), write=("*",)))
    agent = RunningAgent(str(tmp_path), tenants=tenants, workers=8)
    with Client([agent.address], transport=Transport(token="other"), timeout=30) as c:
        for name in ("held", "free"):
            c.write(name, TABLE)
    yield agent
    agent.stop()


def test_tenant_over_its_limit_is_refused_at_once(tenant_agent: RunningAgent) -> None:
    hold = Hold(tenant_agent)
    address = tenant_agent.address
    try:
        with ThreadPoolExecutor(4) as pool:
            running = [pool.submit(_code, _describe(address, "held", "busy")) for _ in range(2)]
            hold.wait_inside(2)
            # a third request of the same tenant: refused while the two are still running
            assert _code(_describe(address, "free", "busy")) == \
                grpc.StatusCode.RESOURCE_EXHAUSTED
            assert not any(f.done() for f in running)
            # another tenant is not held back by the busy one
            assert _code(_describe(address, "free", "other")) == grpc.StatusCode.OK
            hold.release.set()
            assert [f.result() for f in running] == [grpc.StatusCode.OK] * 2
        # the slots were given back
        assert _code(_describe(address, "free", "busy")) == grpc.StatusCode.OK
    finally:
        hold.restore()


def test_agent_wide_bound_refuses_instead_of_queueing(tmp_path) -> None:
    agent = RunningAgent(str(tmp_path), workers=2, max_concurrent_requests=2)
    with Client([agent.address], transport=Transport(), timeout=30) as c:
        c.write("held", TABLE)
    hold = Hold(agent)
    try:
        with ThreadPoolExecutor(2) as pool:
            running = [pool.submit(_code, _describe(agent.address, "held")) for _ in range(2)]
            hold.wait_inside(2)
            refused = [_code(_describe(agent.address, "held")) for _ in range(3)]
            assert refused == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 3
            hold.release.set()
            assert [f.result() for f in running] == [grpc.StatusCode.OK] * 2
    finally:
        hold.restore()
        agent.stop()


@pytest.fixture()
def slow_agent(tmp_path) -> Iterator[RunningAgent]:
    """An agent whose max deadline is 0.3 s and whose partitions each take 0.5 s to read."""
    agent = RunningAgent(str(tmp_path), max_deadline_seconds=0.3)
    with Client([agent.address], transport=Transport(), timeout=30) as c:
        c.write("slow", TABLE, partition_rows=10)
    storage = agent.service.storage
    orig = storage.read

    def read(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.5)
        return orig(*args, **kwargs)
    storage.read = read
    yield agent
    storage.read = orig
    agent.stop()


@pytest.mark.parametrize("kind", ["Aggregate", "Scan"])
def test_requests_stop_at_the_agents_max_deadline(slow_agent: RunningAgent, kind: str) -> None:
    stub = agent_pb2_grpc.AgentStub(grpc.insecure_channel(slow_agent.address))
    plan = wire.plan_to_proto(Plan("slow", filter=col("x") > 1, aggregates=(sum_("x"),)))
    if kind == "Aggregate":
        call = lambda: stub.Aggregate(pb.AggregateRequest(plan=plan))  # noqa: E731 - no deadline
    else:
        plan = wire.plan_to_proto(Plan("slow", filter=col("x") > 1))
        call = lambda: list(stub.Scan(pb.ScanRequest(plan=plan)))  # noqa: E731
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "max_deadline_seconds" in info.value.details()  # the agent's answer, not the client's
    info_reply = stub.GetInfo(pb.GetInfoRequest(), timeout=10)  # and it keeps serving
    assert info_reply.version


@pytest.fixture(scope="module")
def strict_agent(tmp_path_factory) -> Iterator[RunningAgent]:
    agent = RunningAgent(str(tmp_path_factory.mktemp("strict")), max_in_list=3,
                         max_plan_nodes=6, max_plan_depth=4, max_message_bytes=32 << 10,
                         max_write_bytes=4 << 10, max_key_set_keys=5,
                         max_key_set_bytes=4 << 10)
    with Client([agent.address], transport=Transport(), timeout=30) as c:
        c.write("small", TABLE)
    yield agent
    agent.stop()


def _nested_not(levels: int) -> Any:
    e = col("x") > 1
    for _ in range(levels):
        e = Not(e)
    return e


@pytest.mark.parametrize(("where", "words"), [
    (In(col("x"), tuple(Literal(i) for i in range(4))),
     "IN list of 4 values exceeds the limit of 3"),
    ((col("x") > 1) & (col("x") < 5) & (col("x") > 3), "the limit is 6"),
    (_nested_not(5), "too deeply"),
    (col("x").isin_keys(range(6)), "key set of 6 keys exceeds the limit of 5 (max_key_set_keys)"),
    (col("s").isin_keys(["y" * 1000 + str(i) for i in range(5)]),
     "exceeds the limit of 4096 (max_key_set_bytes)"),
])
def test_plan_limits_are_settings(strict_agent: RunningAgent, where: Any, words: str) -> None:
    stub = agent_pb2_grpc.AgentStub(grpc.insecure_channel(strict_agent.address))
    plan = wire.plan_to_proto(Plan("small", filter=where, aggregates=(count_star(),)))
    with pytest.raises(grpc.RpcError) as info:
        stub.Aggregate(pb.AggregateRequest(plan=plan), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in info.value.details()
    # just under each limit the same plan shape runs
    ok = wire.plan_to_proto(Plan("small", filter=In(col("x"), (Literal(1), Literal(2))),
                                 aggregates=(count_star(),)))
    assert stub.Aggregate(pb.AggregateRequest(plan=ok), timeout=10).partials


def test_a_compressed_key_set_is_refused_from_its_headers(strict_agent: RunningAgent) -> None:
    """A key set that is small as sent but expands past max_key_set_bytes is refused before
    it is decompressed (its IPC headers say how large it becomes)."""
    stub = agent_pb2_grpc.AgentStub(grpc.insecure_channel(strict_agent.address))
    keys = pa.table({"k": pa.array(["z" * 3000 + str(i) for i in range(3)])})
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    with pa.ipc.new_stream(sink, keys.schema, options=options) as writer:
        writer.write_table(keys)
    data = sink.getvalue().to_pybytes()
    assert len(data) < 1 << 10  # well under the limit as sent
    plan = wire.plan_to_proto(Plan("small", filter=col("x").isin_keys([1]),
                                   aggregates=(count_star(),)))
    plan.filter.key_set.keys = data
    with pytest.raises(grpc.RpcError) as info:
        stub.Aggregate(pb.AggregateRequest(plan=plan), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "max_key_set_bytes" in info.value.details()
    # within the limits, the same key set runs (x is 0..29)
    plan.filter.key_set.keys = keysets.to_ipc(pa.array([1, 2, 99]))
    with Client([strict_agent.address], transport=Transport(), timeout=30) as c:
        assert c.aggregate("small", [count_star()], col("x").isin_keys(range(1, 6))
                           ).column(0)[0].as_py() == 5
    assert stub.Aggregate(pb.AggregateRequest(plan=plan), timeout=10).partials


def test_get_info_lists_the_limits(strict_agent: RunningAgent) -> None:
    with Client([strict_agent.address], transport=Transport(), timeout=30) as c:
        (info,) = c.info()
    assert info["limits"] == {
        "max_message_bytes": 32 << 10, "max_write_bytes": 4 << 10, "max_plan_nodes": 6,
        "max_plan_depth": 4, "max_in_list": 3, "max_key_set_keys": 5,
        "max_key_set_bytes": 4 << 10, "max_concurrent_requests": 256,
        "tenant_max_concurrent": 0, "max_deadline_ms": 600_000}


def test_message_size_limits_are_settings(strict_agent: RunningAgent) -> None:
    stub = agent_pb2_grpc.AgentStub(grpc.insecure_channel(
        strict_agent.address, options=[("grpc.max_send_message_length", 1 << 20)]))
    big = pb.DescribeDatasetRequest(dataset="x" * (40 << 10))  # over the 32 KiB message limit
    with pytest.raises(grpc.RpcError) as info:
        stub.DescribeDataset(big, timeout=10)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # one partition's stream over max_write_bytes (4 KiB)
    with Client([strict_agent.address], transport=Transport(), timeout=30) as c, \
            pytest.raises(ResourceExhausted, match="max_write_bytes|limit"):
        c.write("big", pa.table({"x": pa.array(range(2000), pa.int64())}))  # 16 KB
