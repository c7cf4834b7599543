"""Scan with Arrow IPC buffer compression (ScanRequest.compression, Transport.compression) on
real agents on loopback: every compression gives the uncompressed scan's rows bit for bit
(NULLs, 38-digit decimals, dictionary strings, ns timestamps, NaN and -0.0, empty results),
moves fewer bytes when the data compresses — the client's bytes moved and the agent's
metrics both counting the compressed bytes — and an unknown value is refused while the agent
goes on answering. Also with TLS and a tenant's token."""

from __future__ import annotations

import decimal
import math
import socket
from collections.abc import Iterator
from datetime import date, datetime

import grpc
import pyarrow as pa
import pytest
from security_support import TENANTS, TOKENS, Pki

from bpfstore.connector import Client, Query, col
from bpfstore.connector.transport import Transport, resolve_transport
from bpfstore.contract import wire
from bpfstore.contract.plan import Plan
from bpfstore.node_agent.config import AgentConfig
from bpfstore.node_agent.server import create_server, ipc_bytes
from bpfstore.v1 import agent_pb2 as pb
from bpfstore.v1 import agent_pb2_grpc
from conftest import RunningAgent

COMPRESSIONS = ("none", "lz4", "zstd")
D38 = decimal.Decimal("9" * 38)
NEG_D38 = decimal.Decimal("-" + "9" * 38)  # not -D38: that rounds to 28 digits


def hostile(n: int = 3000) -> pa.Table:
    """Every column type a scan returns, with the values that break things, n rows."""
    i = list(range(n))
    return pa.table({
        "i": pa.array([None if k % 7 == 0 else (2**63 - 1 if k % 11 == 0 else -(2**63) if
                                                 k % 13 == 0 else k) for k in i], pa.int64()),
        "f": pa.array([[math.nan, -0.0, 0.0, math.inf, -math.inf, None, 1.5, -1e308][k % 8]
                       for k in i], pa.float64()),
        "f32": pa.array([[math.nan, -0.0, None, 3.25][k % 4] for k in i], pa.float32()),
        "d38": pa.array([[D38, NEG_D38, None, decimal.Decimal(k)][k % 4] for k in i],
                        pa.decimal128(38, 0)),
        "d38s": pa.array([[decimal.Decimal("0." + "9" * 38), None,
                           decimal.Decimal(f"-0.{k:038d}")][k % 3] for k in i],
                         pa.decimal128(38, 38)),
        "d12": pa.array([[decimal.Decimal("9999999999.99"), None, decimal.Decimal("-0.01")][k % 3]
                         for k in i], pa.decimal128(12, 2)),  # stored decimal64, scanned 128
        "s": pa.array([[None, "", "ünïcode ✓", "a" * 300, f"row {k}"][k % 5] for k in i]),
        "ts": pa.array([[datetime(1677, 9, 22), None, datetime(2262, 4, 11),
                         datetime(1970, 1, 1)][k % 4] for k in i], pa.timestamp("ns")),
        "tsn": pa.array([None if k % 3 else k * 1_000_000_007 for k in i], pa.timestamp("ns")),
        "day": pa.array([[date(1, 1, 1), date(9999, 12, 31), None][k % 3] for k in i],
                        pa.date32()),
        "b": pa.array([[True, False, None][k % 3] for k in i]),
        "bin": pa.array([[b"", None, b"\x00\xff" * (k % 50)][k % 3] for k in i], pa.binary()),
        "null": pa.nulls(n),
    })


def compressible(n: int = 200_000) -> pa.Table:
    return pa.table({"k": pa.array([k % 1000 for k in range(n)], pa.int64()),
                     "flag": pa.array([["A", "N", "R"][k % 3] for k in range(n)]),
                     "price": pa.array([float(k % 100) for k in range(n)], pa.float64())})


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAgent]:
    running = RunningAgent(str(tmp_path_factory.mktemp("compression")), scan_batch_rows=1000)
    with Client([running.address], timeout=30) as c:
        c.write("hostile", hostile(), partition_rows=1100)  # 3 partitions, 2 batches each
        c.write("packed", compressible(), partition_rows=100_000)
    yield running
    running.stop()


def scanned_bytes(agent: RunningAgent) -> int:
    return int(agent.service.metrics.registry.get_sample_value(
        "bpfstore_agent_bytes_returned_total", {"method": "Scan"}) or 0)


def scan(agent: RunningAgent, compression: str, query: Query,
         transport: Transport | None = None) -> tuple[list[pa.RecordBatch], int]:
    """The batches as they arrived and the bytes moved (checked against the agent's count)."""
    before = scanned_bytes(agent)
    t = transport or Transport(compression=compression)
    with Client([agent.address], transport=t, timeout=30) as c:
        result = c.run(query)
    assert scanned_bytes(agent) - before == result.report.bytes_moved
    return result.table.to_batches(), result.report.bytes_moved


def same_bits(a: pa.Array, b: pa.Array) -> bool:
    """Equal values, NULLs in the same places, floats compared by their bits (NaN, -0.0)."""
    if pa.types.is_floating(a.type):
        width = {16: pa.int16(), 32: pa.int32(), 64: pa.int64()}[a.type.bit_width]
        return a.type == b.type and a.view(width).equals(b.view(width))
    return a.equals(b)


def assert_same(ours: list[pa.RecordBatch], expected: list[pa.RecordBatch]) -> None:
    assert [b.num_rows for b in ours] == [b.num_rows for b in expected]
    for got, want in zip(ours, expected, strict=True):
        assert got.schema == want.schema
        for name in want.schema.names:
            assert same_bits(got.column(name), want.column(name)), name


QUERIES = {
    "all": Query.scan("hostile"),
    "projected and filtered": Query.scan("hostile", ["d38", "s", "ts", "f"], col("i") > 1000),
    "nothing matches, not pruned": Query.scan("hostile", where=col("i").eq(-5)),
    "pruned by statistics": Query.scan("hostile", where=col("tsn") > datetime(2000, 1, 1)),
}


@pytest.mark.parametrize("compression", ["lz4", "zstd"])
@pytest.mark.parametrize("name", list(QUERIES))
def test_compressed_scans_equal_the_uncompressed_scan(agent: RunningAgent, name: str,
                                                      compression: str) -> None:
    expected, plain = scan(agent, "none", QUERIES[name])
    ours, moved = scan(agent, compression, QUERIES[name])
    assert_same(ours, expected)
    if name == "all":
        assert sum(b.num_rows for b in ours) == 3000
        assert pa.Table.from_batches(ours).column("d38").to_pylist()[:2] == [D38, NEG_D38]


def test_empty_results_have_the_schema(agent: RunningAgent) -> None:
    for compression in COMPRESSIONS:
        with Client([agent.address], transport=Transport(compression=compression)) as c:
            table = c.run(QUERIES["pruned by statistics"]).table
            assert table.num_rows == 0
            assert table.schema.names == hostile().schema.names


@pytest.mark.parametrize("compression", ["lz4", "zstd"])
def test_compressible_rows_move_fewer_bytes(agent: RunningAgent, compression: str) -> None:
    query = Query.scan("packed")
    expected, plain = scan(agent, "none", query)
    ours, moved = scan(agent, compression, query)
    assert_same(ours, expected)
    assert moved < plain / 2, (compression, moved, plain)


def test_auto_is_uncompressed_on_loopback(agent: RunningAgent) -> None:
    with Client([agent.address], transport=Transport(compression="auto")) as c:
        assert c.transport.scan_compression(agent.address) == ""
    _, plain = scan(agent, "none", Query.scan("packed"))
    _, auto = scan(agent, "auto", Query.scan("packed"))
    # the same IPC bytes; only the partition reports' timings (varints) may differ in size
    assert abs(auto - plain) <= 16, (auto, plain)


def _own_address() -> str | None:
    """An address of this machine that is not loopback (none sent: UDP connect only routes)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.254", 9))  # TEST-NET-1: only the route is looked up
            ip = s.getsockname()[0]
        except OSError:
            return None
    return None if ip.startswith("127.") or ip == "0.0.0.0" else ip


def test_auto_is_lz4_to_an_address_that_is_not_loopback(tmp_path_factory: pytest.TempPathFactory
                                                        ) -> None:
    ip = _own_address()
    if ip is None:
        pytest.skip("this machine has no address but loopback")
    config = AgentConfig(data_dir=str(tmp_path_factory.mktemp("remote")), listen=f"{ip}:0")
    server, port, service = create_server(config)
    server.start()
    try:
        address = f"{ip}:{port}"
        with Client([address], transport=Transport(compression="none"), timeout=30) as c:
            c.write("packed", compressible(50_000))
            plain = c.run(Query.scan("packed")).report.bytes_moved
        for setting, expected in (("auto", "lz4"), ("lz4", "lz4")):
            with Client([address], transport=Transport(compression=setting), timeout=30) as c:
                assert c.transport.scan_compression(address) == expected
                moved = c.run(Query.scan("packed")).report.bytes_moved
            assert moved < plain / 2, (setting, moved, plain)
    finally:
        server.stop(0).wait()


@pytest.mark.parametrize("compression", ["", "lz4", "zstd"])
def test_each_chunk_is_an_arrow_stream_with_that_codec(agent: RunningAgent,
                                                       compression: str) -> None:
    """"" (and a client that sends no compression at all) gets uncompressed IPC, byte for byte
    what the agent sent before the field existed."""
    stub = agent_pb2_grpc.AgentStub(grpc.insecure_channel(agent.address))
    plan = wire.plan_to_proto(Plan("packed", columns=("k", "flag")))
    request = pb.ScanRequest(plan=plan, compression=compression) if compression else \
        pb.ScanRequest(plan=plan)
    chunks = [c.arrow_ipc for c in stub.Scan(request, timeout=30) if c.arrow_ipc]
    assert chunks
    for data in chunks:
        table = pa.ipc.open_stream(data).read_all()
        again = ipc_bytes(table, pa.ipc.IpcWriteOptions(compression=compression or None))
        assert len(data) == len(again)
        if not compression:
            assert data == again


@pytest.mark.parametrize("bad", ["gzip", "LZ4", "none", "lz4 ", "x" * 10_000])
def test_an_unknown_compression_is_refused_and_the_agent_answers(agent: RunningAgent,
                                                                 bad: str) -> None:
    stub = agent_pb2_grpc.AgentStub(grpc.insecure_channel(agent.address))
    plan = wire.plan_to_proto(Plan("packed", columns=("k",)))
    with pytest.raises(grpc.RpcError) as refused:
        list(stub.Scan(pb.ScanRequest(plan=plan, compression=bad), timeout=30))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown Scan compression" in refused.value.details()
    assert len(refused.value.details()) < 200  # the value is cut short, not echoed whole
    rows = sum(pa.ipc.open_stream(c.arrow_ipc).read_all().num_rows
               for c in stub.Scan(pb.ScanRequest(plan=plan, compression="lz4"), timeout=30)
               if c.arrow_ipc)
    assert rows == 200_000


def test_tls_and_token_scans_compress(tmp_path_factory: pytest.TempPathFactory) -> None:
    pki = Pki(tmp_path_factory.mktemp("pki"))
    running = RunningAgent(str(tmp_path_factory.mktemp("tls-tenants")), tls_cert=pki.server_cert,
                           tls_key=pki.server_key, tls_client_ca=pki.client_ca, tenants=TENANTS)
    try:
        def transport(compression: str, who: str = "admin") -> Transport:
            return resolve_transport(ca=pki.ca, cert=pki.client_cert, key=pki.client_key,
                                     token=TOKENS[who], compression=compression, env={})

        with Client([running.address], transport=transport("none"), timeout=30) as c:
            c.write("sales_packed", compressible(50_000))
        query = Query.scan("sales_packed", where=col("k") < 500)
        expected, plain = scan(running, "", query, transport("none", "analyst"))
        for compression in ("lz4", "zstd"):
            ours, moved = scan(running, "", query, transport(compression, "analyst"))
            assert_same(ours, expected)
            assert moved < plain / 2
    finally:
        running.stop()
