"""Fuzzing a real agent process: every RPC's request messages (hypothesis, generated from the
protobuf descriptors), raw garbage bytes as request bodies, raw garbage on TCP. The agent must
answer each call with a status code in time (no hang), never crash, never fail with INTERNAL
(an unexpected exception), and keep serving correct answers afterwards.

Run with -s to see the figures (inputs tried per RPC, status codes)."""

from __future__ import annotations

import collections
import functools
import os
import random
import socket
from collections.abc import Iterator
from typing import Any

import grpc
import pyarrow as pa
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_process import AgentProcess
from bpfstore.connector import Client, col, count_star, sum_
from bpfstore.node_agent.server import ipc_bytes
from bpfstore.v1 import agent_pb2 as pb
from bpfstore.v1 import agent_pb2_grpc

EXAMPLES = int(os.environ.get("BPFSTORE_FUZZ_EXAMPLES", "100"))  # per RPC
GARBAGE = int(os.environ.get("BPFSTORE_FUZZ_GARBAGE", "100"))  # per method, and TCP connections
MAX_DEPTH = 5  # message nesting (the agent refuses deeper plans anyway)
KEEP = "fz"  # the dataset whose answer is checked after the fuzzing
DATASETS = [KEEP, "fz_w"]
COLUMNS = ["i", "v", "s", "d", "f", "t"]
# A hang or a crash (UNAVAILABLE, DEADLINE_EXCEEDED), an exception escaping a handler
# (UNKNOWN) or an unexpected one inside it (INTERNAL): never acceptable answers.
BAD = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
       grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
TIMEOUT = 20.0

figures: collections.Counter[str] = collections.Counter()


def _table() -> pa.Table:
    import datetime as dt
    import decimal as D

    n = 200
    return pa.table({
        "i": pa.array(range(n), pa.int64()),
        "v": pa.array([None if i % 9 == 0 else i - 100 for i in range(n)], pa.int32()),
        "s": [f"s{i % 5}" for i in range(n)],
        "d": pa.array([D.Decimal(i).scaleb(-2) for i in range(n)], pa.decimal128(10, 2)),
        "f": [float("nan") if i % 17 == 0 else i / 3 for i in range(n)],
        "t": [dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(n)],
    })



VALID_IPC = ipc_bytes(_table().slice(0, 20))


# -- request messages from the descriptors -------------------------------------------------


def _scalar(f: FieldDescriptor) -> st.SearchStrategy[Any]:
    t = f.type
    if t == FieldDescriptor.TYPE_STRING:
        if f.name == "dataset":
            return st.one_of(st.sampled_from(DATASETS), st.text(max_size=12))
        if f.name in ("name", "column", "columns", "group_by", "partitions", "partition"):
            return st.one_of(st.sampled_from(COLUMNS), st.text(max_size=8))
        return st.text(max_size=12)
    if t == FieldDescriptor.TYPE_BYTES:
        if f.name == "arrow_ipc":
            return st.one_of(st.just(VALID_IPC), st.binary(max_size=64),
                             st.integers(0, len(VALID_IPC)).map(lambda n: VALID_IPC[:n]))
        return st.binary(max_size=32)
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t == FieldDescriptor.TYPE_ENUM:  # proto3 enums are open: unknown numbers decode too
        known = [v.number for v in f.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(-3, 200))
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(width=64 if t == FieldDescriptor.TYPE_DOUBLE else 32)
    signed = t in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32,
                   FieldDescriptor.TYPE_SFIXED32, FieldDescriptor.TYPE_INT64,
                   FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64)
    bits = 32 if f.cpp_type in (FieldDescriptor.CPPTYPE_INT32, FieldDescriptor.CPPTYPE_UINT32) \
        else 64
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    return st.one_of(st.integers(-3, 300).filter(lambda n: lo <= n <= hi),
                     st.sampled_from([lo, hi, 0]), st.integers(lo, hi))


@functools.cache
def messages(desc: Descriptor, depth: int = 0) -> st.SearchStrategy[Any]:
    """Any message of this type: each field set or not (several members of a oneof may be
    tried; the last one set wins), nested messages down to MAX_DEPTH."""
    cls = message_factory.GetMessageClass(desc)
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for f in desc.fields:
        if f.type == FieldDescriptor.TYPE_MESSAGE:
            if f.message_type.GetOptions().map_entry or depth >= MAX_DEPTH:
                continue
            one = messages(f.message_type, depth + 1)
        else:
            one = _scalar(f)
        fields[f.name] = st.lists(one, max_size=4) if f.is_repeated else one

    def build(values: dict[str, Any]) -> Any:
        msg = cls()
        for name, value in values.items():
            f = desc.fields_by_name[name]
            target = getattr(msg, name) if f.is_repeated or f.message_type else None
            if f.is_repeated and f.message_type:
                for v in value:
                    target.add().CopyFrom(v)
            elif f.is_repeated:
                target.extend(value)
            elif f.message_type:
                target.CopyFrom(value)
            else:
                setattr(msg, name, value)
        return msg

    return st.fixed_dictionaries({}, optional=fields).map(build)


# -- the agent under fuzz -----------------------------------------------------------------


@pytest.fixture(scope="module")
def agent(tmp_path_factory) -> Iterator[AgentProcess]:
    a = AgentProcess(tmp_path_factory.mktemp("fuzz") / "agent")
    with Client([a.address]) as c:
        c.write(KEEP, _table(), partition_rows=50)
    yield a
    try:
        _still_serving(a)
    finally:
        a.stop()
        print("\nfuzz figures: " + ", ".join(f"{k}={v}" for k, v in sorted(figures.items())))


@pytest.fixture(scope="module")
def channel(agent) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(agent.address, options=[
            ("grpc.max_receive_message_length", 64 << 20)]) as ch:
        yield ch


def _still_serving(agent: AgentProcess) -> None:
    assert agent.alive(), "the agent died:\n" + agent.log()[-3000:]
    with grpc.insecure_channel(agent.address) as ch:
        status = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    with Client([agent.address]) as c:
        got = c.aggregate(KEEP, [count_star(), sum_("i")], where=col("i") >= 0).to_pylist()
    assert got == [{"count(*)": 200, "sum(i)": sum(range(200))}]


def _answered(rpc: str, call: Any) -> None:
    """Run one call; it must end with OK or a status code that is not a failure."""
    try:
        call()
        figures[f"{rpc}:OK"] += 1
    except grpc.RpcError as exc:
        code = exc.code()
        figures[f"{rpc}:{code.name}"] += 1
        assert code not in BAD, f"{rpc}: {code.name}: {exc.details()}"


FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
UNARY = ["GetInfo", "ListDatasets", "DescribeDataset", "Aggregate", "DropDataset"]


@pytest.mark.parametrize("rpc", UNARY)
def test_fuzzed_unary_requests(agent, channel, rpc) -> None:
    method = pb.DESCRIPTOR.services_by_name["Agent"].methods_by_name[rpc]
    stub = agent_pb2_grpc.AgentStub(channel)
    strategy = messages(method.input_type)
    if rpc == "DropDataset":  # never drop the dataset the checks read
        strategy = strategy.filter(lambda m: m.dataset != KEEP)

    @FUZZ
    @given(strategy)
    def run(request: Any) -> None:
        _answered(rpc, lambda: getattr(stub, rpc)(request, timeout=TIMEOUT))

    run()
    _still_serving(agent)


def test_fuzzed_scan_requests(agent, channel) -> None:
    stub = agent_pb2_grpc.AgentStub(channel)

    @FUZZ
    @given(messages(pb.ScanRequest.DESCRIPTOR))
    def run(request: pb.ScanRequest) -> None:
        if request.batch_rows <= 0 or request.batch_rows > 100_000:
            request.batch_rows = 0 if request.batch_rows <= 0 else 100_000
        _answered("Scan", lambda: list(stub.Scan(request, timeout=TIMEOUT)))

    run()
    _still_serving(agent)


def test_fuzzed_write_streams(agent, channel) -> None:
    stub = agent_pb2_grpc.AgentStub(channel)
    chunk = messages(pb.WriteChunk.DESCRIPTOR)

    @FUZZ
    @given(st.lists(chunk, max_size=4))
    def run(chunks: list[pb.WriteChunk]) -> None:
        for c in chunks:
            if c.dataset == KEEP:  # writes go elsewhere: the checks read KEEP
                c.dataset = "fz_w"
        _answered("Write", lambda: stub.Write(iter(chunks), timeout=TIMEOUT))

    run()
    _still_serving(agent)


def test_fuzzed_well_formed_plans(agent, channel) -> None:
    """Plans that decode and bind (random filters and aggregates from the unit tests'
    strategies), so the engines run them on data with nulls, NaN and int64 extremes."""
    from unit.test_random_plans import aggregate_lists, predicates

    from bpfstore.contract import wire
    from bpfstore.contract.combine import expand
    from bpfstore.contract.plan import Dialect, Plan

    with Client([agent.address]) as c:
        c.write("fzp", _plan_data(), partition_rows=7, overwrite=True)
    stub = agent_pb2_grpc.AgentStub(channel)

    @FUZZ
    @given(st.one_of(st.none(), predicates), aggregate_lists,
           st.sampled_from([(), ("s",), ("i",)]), st.sampled_from(list(Dialect)),
           st.sampled_from(["auto", "arrow"]))
    def run(where, aggregates, group_by, dialect, engine) -> None:  # type: ignore[no-untyped-def]
        plan_aggs, _ = expand(list(aggregates), None)
        plan = Plan("fzp", filter=where, group_by=group_by, aggregates=tuple(plan_aggs),
                    dialect=dialect, engine=engine)
        request = pb.AggregateRequest(plan=wire.plan_to_proto(plan))
        _answered("plan-Aggregate", lambda: stub.Aggregate(request, timeout=TIMEOUT))
        scan = pb.ScanRequest(plan=wire.plan_to_proto(Plan("fzp", filter=where,
                                                           columns=group_by)))
        _answered("plan-Scan", lambda: list(stub.Scan(scan, timeout=TIMEOUT)))

    run()
    _still_serving(agent)


def _plan_data() -> pa.Table:
    """The columns of tests/unit/test_random_plans.py, with nulls, NaN, infinities, extremes."""
    import decimal as D

    rng = random.Random(5)

    def column(values: list[Any]) -> list[Any]:
        return [None if rng.random() < 0.15 else rng.choice(values) for _ in range(40)]

    return pa.table({
        "i": pa.array(column(list(range(-1000, 1001, 37))), pa.int32()),
        "big": pa.array(column([2**63 - 1, -(2**63), 0, 7]), pa.int64()),
        "f": pa.array(column([float("nan"), float("inf"), -0.0, 1.5, -3e5]), pa.float64()),
        "dec": pa.array(column([D.Decimal("-9999.99"), D.Decimal("0.01"), D.Decimal("12.5")]),
                        pa.decimal128(9, 2)),
        "s": pa.array(column(["A", "N", "R", "é", ""]), pa.string()),
    })


# -- raw bytes ----------------------------------------------------------------------------


def _valid_requests() -> dict[str, bytes]:
    plan = {"dataset": KEEP}
    return {
        "GetInfo": b"", "ListDatasets": b"",
        "DescribeDataset": pb.DescribeDatasetRequest(dataset=KEEP).SerializeToString(),
        "Aggregate": pb.AggregateRequest(plan=plan).SerializeToString(),
        "Scan": pb.ScanRequest(plan=plan).SerializeToString(),
        "Write": pb.WriteChunk(dataset="fz_w", arrow_ipc=VALID_IPC).SerializeToString(),
        "DropDataset": pb.DropDatasetRequest(dataset="fz_x").SerializeToString(),
    }


def _garbage(rng: random.Random, valid: bytes) -> bytes:
    """Random bytes, or a valid request with bytes flipped, cut or appended."""
    kind = rng.randrange(4)
    if kind == 0 or not valid:
        return rng.randbytes(rng.randrange(0, 200))
    data = bytearray(valid)
    if kind == 1:
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return bytes(data)
    if kind == 2:
        return bytes(data[:rng.randrange(len(data))])
    return bytes(data) + rng.randbytes(rng.randrange(1, 20))


def test_garbage_request_bodies(agent, channel) -> None:
    rng = random.Random(1234)
    valid = _valid_requests()
    paths = {m: f"/bpfstore.v1.Agent/{m}" for m in valid}
    for name, body in valid.items():
        for _ in range(GARBAGE):
            junk = _garbage(rng, body)
            if name == "DropDataset" and KEEP.encode() in junk:
                continue  # it could name the dataset the checks read
            path = paths[name]
            if name == "Scan":
                call = channel.unary_stream(path)
                _answered(f"raw-{name}", lambda c=call, j=junk: list(c(j, timeout=TIMEOUT)))
            elif name == "Write":
                call = channel.stream_unary(path)
                pieces = [junk, _garbage(rng, body)][:rng.randrange(1, 3)]
                _answered(f"raw-{name}", lambda c=call, p=pieces: c(iter(p), timeout=TIMEOUT))
            else:
                call = channel.unary_unary(path)
                _answered(f"raw-{name}", lambda c=call, j=junk: c(j, timeout=TIMEOUT))
    health = channel.unary_unary("/grpc.health.v1.Health/Check")
    unknown = channel.unary_unary("/bpfstore.v1.Agent/NoSuchMethod")
    for _ in range(GARBAGE):
        junk = rng.randbytes(rng.randrange(50))
        _answered("raw-Health", lambda j=junk: health(j, timeout=TIMEOUT))
    with pytest.raises(grpc.RpcError) as info:
        unknown(b"", timeout=TIMEOUT)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    _still_serving(agent)


def test_every_single_byte_corruption_of_a_write(agent, channel) -> None:
    """Each byte of a small valid Write stream flipped in turn: a damaged stream is refused
    (INVALID_ARGUMENT), never stored with broken buffers (a fuzzing find)."""
    stub = agent_pb2_grpc.AgentStub(channel)
    data = ipc_bytes(pa.table({"i": pa.array([1, 2, 3], pa.int64()), "s": ["a", "b", None]}))
    for n in range(len(data)):
        damaged = bytearray(data)
        damaged[n] ^= 0xFF
        chunk = pb.WriteChunk(dataset="fz_flip", arrow_ipc=bytes(damaged), overwrite=True)
        _answered("flip-Write", lambda c=chunk: stub.Write(iter([c]), timeout=TIMEOUT))
    with Client([agent.address]) as c:  # whatever was accepted reads back whole
        c.scan_table("fz_flip")
    _still_serving(agent)


def test_out_of_range_temporal_literals_are_invalid_argument(agent, channel) -> None:
    """Dates and timestamps beyond Python's years 1-9999 (a fuzzing find: was INTERNAL)."""
    import grpc as g

    from bpfstore.v1 import plan_pb2

    stub = agent_pb2_grpc.AgentStub(channel)
    for literal in (plan_pb2.Literal(date_value=2**31 - 1),
                    plan_pb2.Literal(timestamp_value=-(2**63))):
        where = plan_pb2.Expr(compare=plan_pb2.Compare(
            op=plan_pb2.EQ, left=plan_pb2.Expr(column=plan_pb2.Column(name="t")),
            right=plan_pb2.Expr(literal=literal)))
        request = pb.ScanRequest(plan=plan_pb2.Plan(dataset=KEEP, filter=where))
        with pytest.raises(g.RpcError) as info:
            list(stub.Scan(request, timeout=TIMEOUT))
        assert info.value.code() == g.StatusCode.INVALID_ARGUMENT
        assert "out of range" in info.value.details()


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def test_garbage_on_tcp(agent) -> None:
    """Connections that send random bytes (some after a valid HTTP/2 preface): the agent
    closes them or ignores them, and goes on serving."""
    rng = random.Random(99)
    closed = 0
    for n in range(GARBAGE):
        payload = rng.randbytes(rng.randrange(1, 300))
        if n % 2:
            payload = PREFACE + payload
        with socket.create_connection(("127.0.0.1", agent.port), timeout=5) as s:
            s.settimeout(2)
            try:
                s.sendall(payload)
                while s.recv(4096):
                    pass
                closed += 1
            except (TimeoutError, ConnectionResetError, BrokenPipeError):
                pass  # still open (waiting for more) or reset: both fine
        figures["tcp-connections"] += 1
        if n % 25 == 0:
            assert agent.alive()
    figures["tcp-closed-by-agent"] += closed
    _still_serving(agent)
