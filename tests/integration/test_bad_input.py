"""Hostile or broken requests get a clear gRPC error naming the problem; the agent keeps
serving and no partial dataset ever becomes visible."""

from __future__ import annotations

import datetime as dt
import re

import grpc
import pyarrow as pa
import pytest

from bpfstore.connector import Client, col, count_star, sum_
from bpfstore.contract import wire
from bpfstore.contract.errors import DatasetNotFound, PlanInvalid
from bpfstore.contract.plan import In, Literal, Not, Plan
from bpfstore.node_agent.server import ipc_bytes
from bpfstore.v1 import agent_pb2 as pb
from bpfstore.v1 import agent_pb2_grpc
from bpfstore.v1 import plan_pb2 as plan_pb


@pytest.fixture(scope="module")
def stub(agents) -> agent_pb2_grpc.AgentStub:
    return agent_pb2_grpc.AgentStub(grpc.insecure_channel(agents[0].address))


@pytest.fixture(scope="module")
def small(client: Client) -> str:
    table = pa.table({"a": pa.array([1, 2, 3], pa.int64()), "d": pa.array(
        [dt.date(2020, 1, 1)] * 3), "s": ["x", "y", "z"]})
    client.write("small", table, partition_rows=1, replicas=3, overwrite=True)
    return "small"


def _status(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def _agg(stub, plan: plan_pb.Plan):
    return lambda: stub.Aggregate(pb.AggregateRequest(plan=plan), timeout=10)


def _still_serving(stub) -> None:
    assert stub.GetInfo(pb.GetInfoRequest(), timeout=10).version


@pytest.mark.parametrize(("make_plan", "code", "words"), [
    (lambda: plan_pb.Plan(dataset="nope", aggregates=[plan_pb.Aggregate(func=plan_pb.COUNT_STAR)]),
     grpc.StatusCode.NOT_FOUND, "no dataset named 'nope'"),
    (lambda: wire.plan_to_proto(Plan("small", aggregates=(sum_("zz"),))),
     grpc.StatusCode.INVALID_ARGUMENT, "unknown column 'zz'"),
    (lambda: wire.plan_to_proto(Plan("small", filter=col("d") > 5,
                                     aggregates=(count_star(),))),
     grpc.StatusCode.INVALID_ARGUMENT, r"type mismatch in \(d > 5\)"),
    (lambda: wire.plan_to_proto(Plan("small", filter=col("s") + 1 > 2,
                                     aggregates=(count_star(),))),
     grpc.StatusCode.INVALID_ARGUMENT, "arithmetic needs numbers"),
    (lambda: plan_pb.Plan(dataset="small", aggregates=[plan_pb.Aggregate(func=plan_pb.SUM)]),
     grpc.StatusCode.INVALID_ARGUMENT, "needs an argument"),
    (lambda: plan_pb.Plan(dataset="small", filter=plan_pb.Expr(compare=plan_pb.Compare(
        op=plan_pb.LT, left=plan_pb.Expr(column=plan_pb.Column(name="a")))),
        aggregates=[plan_pb.Aggregate(func=plan_pb.COUNT_STAR)]),
     grpc.StatusCode.INVALID_ARGUMENT, "missing operand 'right'"),
    (lambda: plan_pb.Plan(dataset="../../etc", aggregates=[
        plan_pb.Aggregate(func=plan_pb.COUNT_STAR)]),
     grpc.StatusCode.INVALID_ARGUMENT, "invalid dataset name"),
    (lambda: plan_pb.Plan(dataset="small"), grpc.StatusCode.INVALID_ARGUMENT,
     "at least one aggregate"),
    (lambda: wire.plan_to_proto(Plan("small", filter=In(col("a"), tuple(
        Literal(i) for i in range(100_001))), aggregates=(count_star(),))),
     grpc.StatusCode.INVALID_ARGUMENT, "IN list of 100001 values exceeds"),
    (lambda: plan_pb.Plan(dataset="small", partitions=["no-such-partition"],
                          aggregates=[plan_pb.Aggregate(func=plan_pb.COUNT_STAR)]),
     grpc.StatusCode.NOT_FOUND, "no partition 'no-such-partition'"),
    (lambda: plan_pb.Plan(dataset="small", engine=99,
                          aggregates=[plan_pb.Aggregate(func=plan_pb.COUNT_STAR)]),
     grpc.StatusCode.INVALID_ARGUMENT, "unknown dialect or engine"),
])
def test_bad_plans_get_clear_errors(stub, small, make_plan, code, words) -> None:
    got_code, details = _status(_agg(stub, make_plan()))
    assert got_code == code
    assert re.search(words, details), details
    _still_serving(stub)


def _nested_not(levels: int):
    e = col("a") > 1
    for _ in range(levels):
        e = Not(e)
    return e


def test_too_deep_plan(stub, small) -> None:
    plan = wire.plan_to_proto(Plan("small", filter=_nested_not(45), aggregates=(count_star(),)))
    code, details = _status(_agg(stub, plan))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "too deeply" in details
    _still_serving(stub)


def test_undecodable_request_bytes(agents, stub, small) -> None:
    """Bytes protobuf cannot parse (nested far too deep) never reach the servicer."""
    inner = b"\x0a\x03\x0a\x01a"  # Expr{column{name:"a"}}
    for _ in range(300):  # Expr{not{arg: ...}} nests two messages per level
        body = b"\x0a" + _varint(len(inner)) + inner
        inner = b"\x32" + _varint(len(body)) + body
    call = grpc.insecure_channel(agents[0].address).unary_unary(
        "/bpfstore.v1.Agent/Aggregate", request_serializer=None, response_deserializer=None)
    plan = b"\x0a\x05small" + b"\x1a" + _varint(len(inner)) + inner
    code, _ = _status(lambda: call(b"\x0a" + _varint(len(plan)) + plan, timeout=10))
    assert code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT)
    _still_serving(stub)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)



@pytest.mark.parametrize(("chunks", "words"), [
    (lambda b: [pb.WriteChunk(dataset="w1", arrow_ipc=b[: len(b) // 2])],
     "not a complete Arrow IPC stream"),
    (lambda b: [pb.WriteChunk(dataset="w1", arrow_ipc=b"\xff" * 64)],
     "not a complete Arrow IPC stream"),
    (lambda b: [pb.WriteChunk(arrow_ipc=b)], "must start with a chunk naming the dataset"),
    (lambda b: [pb.WriteChunk(dataset="a/b", arrow_ipc=b)], "invalid dataset name"),
    (lambda b: [pb.WriteChunk(dataset="w1", partition="../x", arrow_ipc=b)],
     "invalid partition name"),
    (lambda b: [], "must start with a chunk naming the dataset"),
])
def test_bad_writes_leave_nothing_visible(stub, client, chunks, words) -> None:
    data = ipc_bytes(pa.table({"a": list(range(1000))}))
    code, details = _status(lambda: stub.Write(iter(chunks(data)), timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and words in details, details
    assert "w1" not in [d.name for d in stub.ListDatasets(pb.ListDatasetsRequest()).datasets]
    with pytest.raises(DatasetNotFound):
        client.describe("w1")
    _still_serving(stub)


def test_client_disconnect_mid_write_leaves_nothing(stub, agents) -> None:
    data = ipc_bytes(pa.table({"a": list(range(100_000))}))

    def chunks():
        yield pb.WriteChunk(dataset="w2", arrow_ipc=data[:1000])
        raise RuntimeError("client dies mid-stream")

    with pytest.raises(grpc.RpcError):
        stub.Write(chunks(), timeout=10)
    assert "w2" not in [d.name for d in stub.ListDatasets(pb.ListDatasetsRequest()).datasets]
    _still_serving(stub)


def test_client_side_errors_are_typed(client, small) -> None:
    with pytest.raises(PlanInvalid, match="unknown column 'zz'"):
        client.aggregate("small", [sum_("zz")])
    with pytest.raises(DatasetNotFound):
        client.aggregate("missing", [count_star()])
    with pytest.raises(PlanInvalid, match="replicas must be between"):
        client.write("x", pa.table({"a": [1]}), replicas=9)
