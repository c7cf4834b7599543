"""The Scan data path (contract/chunks.py, node_agent/scan_stream.py) on real in-process agents
on loopback: packed chunks carrying several partitions split back into per-partition rows and
reports; a partition larger than a chunk; a client with the generated stubs (no pack_bytes)
getting the unpacked chunks as before; TLS and a token; and a reader that stops reading holds
only a bounded part of the scan in the agent until the watchdog drops it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import grpc
import numpy as np
import pyarrow as pa
import pytest
from security_support import Pki

from bpfstore.connector import Client, Query, col
from bpfstore.connector import client as client_module
from bpfstore.connector.transport import Transport
from bpfstore.contract import wire
from bpfstore.contract.chunks import decode_chunk
from bpfstore.contract.plan import Plan
from bpfstore.node_agent.auth import hash_token
from bpfstore.node_agent.config import Tenant
from bpfstore.v1 import agent_pb2 as pb
from bpfstore.v1 import agent_pb2_grpc
from conftest import RunningAgent

ROWS, PARTITION_ROWS = 12_000, 1_000
DATA = pa.table({"i": pa.array(np.arange(ROWS), pa.int64()),
                 "s": pa.array([f"v{i % 7}" for i in range(ROWS)])})


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAgent]:
    running = RunningAgent(str(tmp_path_factory.mktemp("scanpath")), scan_batch_rows=400)
    with Client([running.address], timeout=30) as c:
        c.write("t", DATA, partition_rows=PARTITION_ROWS)
    yield running
    running.stop()


def _chunks(address: str, request: pb.ScanRequest) -> list:
    with grpc.insecure_channel(address) as channel:
        scan = channel.unary_stream("/bpfstore.v1.Agent/Scan",
                                    request_serializer=pb.ScanRequest.SerializeToString,
                                    response_deserializer=decode_chunk)
        return list(scan(request, timeout=30))


def test_packed_chunks_carry_several_partitions_each_ended_by_its_span(agent) -> None:
    plan = wire.plan_to_proto(Plan("t", filter=col("i") >= 5_500))  # 5 partitions pruned
    chunks = _chunks(agent.address, pb.ScanRequest(plan=plan, pack_bytes=1 << 20))
    assert len(chunks) < ROWS // PARTITION_ROWS  # several partitions a chunk
    rows: list[int] = []
    for chunk in chunks:
        batches = list(pa.ipc.open_stream(chunk.ipc)) if chunk.ipc is not None else []
        assert not chunk.meta.HasField("report") and not chunk.meta.arrow_ipc
        at = 0
        for span in chunk.meta.spans:
            mine = batches[at:at + span.batches]
            at += span.batches
            got = [v for b in mine for v in b.column("i").to_pylist()]
            assert len(got) == span.report.rows_matched  # these rows are that partition's
            assert span.report.rows_scanned == (0 if span.report.pruned else PARTITION_ROWS)
            rows += got
        assert at == len(batches)  # a partition's end always falls in its last chunk here
    assert rows == list(range(5_500, ROWS))


@pytest.mark.parametrize("pack", [1, 5_000, 1 << 20])
def test_the_client_splits_packed_chunks_into_partitions_and_reports(agent, monkeypatch,
                                                                      pack: int) -> None:
    """pack 1: every batch a chunk of its own, each partition's end in the chunk after its
    rows; 5,000: partitions cut across chunks; 1 MiB: all in one chunk."""
    monkeypatch.setattr(client_module, "SCAN_PACK_BYTES", pack)
    with Client([agent.address], timeout=30) as c:
        desc = c.describe("t")
        pids = tuple(p.id for p in desc.partitions)
        pieces, reports, nbytes = c._scan_call(agent.address, Plan("t", partitions=pids),
                                               desc.versions[agent.address])
        assert [r.partition for r in reports] == list(pids)
        assert nbytes > 0
        for n, pid in enumerate(pids):
            got = [v for b in pieces[pid] for v in b.column("i").to_pylist()]
            assert got == list(range(n * PARTITION_ROWS, (n + 1) * PARTITION_ROWS))
        result = c.run(Query.scan("t", ["i", "s"], col("i") >= 5_500))
        assert result.table.to_pydict() == DATA.slice(5_500).to_pydict()
        assert len(result.report.partitions) == ROWS // PARTITION_ROWS


def test_a_describe_without_statistics_has_the_same_partitions_and_versions(agent) -> None:
    """What a query describes (`statistics=False`): the same snapshot, no column statistics;
    a plain describe (the planners', and any older client's) still has them."""
    with Client([agent.address], timeout=30) as c:
        full, bare = c.describe("t"), c.describe("t", statistics=False)
    assert [(p.id, p.rows, p.agents) for p in bare.partitions] == \
        [(p.id, p.rows, p.agents) for p in full.partitions]
    assert bare.versions == full.versions and bare.schema == full.schema
    assert all(not p.stats for p in bare.partitions)
    assert full.partitions[0].stats["i"]["min"] == 0


def test_stored_decimals_come_back_exact_at_their_precision(agent) -> None:
    """decimal64 on disk (precision <= 18) is decimal128 on the wire, every value as written:
    the extremes of its precision, negatives, zero and nulls, in batches and partitions of
    their own (the widening cast skips its per-value check; it must not need one)."""
    top = 10**18 - 1
    units = [top, -top, 0, None, -1, 1, 123_456_789_012_345_678, None, -(10**17)] * 300
    data = pa.table({"k": pa.array(range(len(units)), pa.int64()),
                     "d": pa.array([None if u is None else Decimal(u).scaleb(-4) for u in units],
                                   pa.decimal128(18, 4)),
                     "small": pa.array([None if u is None else Decimal(u % 9_999 - 4_999)
                                        .scaleb(-2) for u in units], pa.decimal128(4, 2))})
    with Client([agent.address], timeout=30) as c:
        c.write("decimals", data, partition_rows=1_000, overwrite=True)
        got = c.scan_table("decimals", ["k", "d", "small"]).sort_by("k")
    assert got.schema == data.schema
    assert got.to_pydict() == data.to_pydict()


def test_a_client_without_pack_bytes_gets_a_chunk_per_batch_and_per_report(agent) -> None:
    """A client built from the generated stubs alone (as before pack_bytes) reads as before."""
    with grpc.insecure_channel(agent.address) as channel:
        stub = agent_pb2_grpc.AgentStub(channel)
        chunks = list(stub.Scan(pb.ScanRequest(plan=wire.plan_to_proto(Plan("t"))), timeout=30))
    rows, reports, batches = [], [], []
    for chunk in chunks:
        assert not (chunk.arrow_ipc and chunk.HasField("report")) and not chunk.spans
        if chunk.arrow_ipc:
            table = pa.ipc.open_stream(chunk.arrow_ipc).read_all()
            assert table.num_rows <= 400  # one batch of scan_batch_rows
            batches.append(table.num_rows)
            rows += table.column("i").to_pylist()
        else:
            reports.append(chunk.report)
            assert sum(batches) == chunk.report.rows_matched
            batches = []
    assert rows == list(range(ROWS)) and len(reports) == ROWS // PARTITION_ROWS


def test_packed_scan_under_tls_and_a_token(tmp_path_factory: pytest.TempPathFactory) -> None:
    pki = Pki(tmp_path_factory.mktemp("pki"))
    tenant = Tenant("reader", (hash_token("s3cret"),), read=("*",), write=("*",))
    running = RunningAgent(str(tmp_path_factory.mktemp("secure")), tls_cert=pki.server_cert,
                           tls_key=pki.server_key, tenants=(tenant,))
    try:
        ca = Path(pki.ca).read_bytes()
        for compression in ("none", "lz4", "zstd"):
            transport = Transport(tls=True, ca=ca, token="s3cret", compression=compression)
            with Client([running.address], transport=transport, timeout=30) as c:
                c.write("t", DATA, partition_rows=PARTITION_ROWS, overwrite=True)
                result = c.run(Query.scan("t"))
                assert result.table.to_pydict() == DATA.to_pydict()
                assert len(result.report.partitions) == ROWS // PARTITION_ROWS
        wrong = Transport(tls=True, ca=ca, token="guess")
        with Client([running.address], transport=wrong, timeout=30) as c, \
                pytest.raises(Exception, match="token"):
            c._scan_call(running.address, Plan("t"), 0)
    finally:
        running.stop()


def test_an_unread_packed_scan_holds_a_bounded_part_and_is_dropped(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """32 MB in 32 partitions; the reader takes one chunk and stops. The agent pulls only what
    fits in flight (the transport's window and a chunk), not the partitions ahead, then the
    watchdog drops the stream after stream_idle_seconds."""
    running = RunningAgent(str(tmp_path_factory.mktemp("unread")), stream_idle_seconds=1.0)
    rows = 2_000_000
    wide = pa.table({"x": np.arange(rows, dtype=np.int64), "y": np.arange(rows, dtype=np.float64)})
    pulled: list[int] = []
    scan = running.service.executor.scan

    def counted(*args, **kwargs):  # what the agent read for the stream so far
        for out in scan(*args, **kwargs):
            if isinstance(out, pa.RecordBatch):
                pulled.append(out.nbytes)
            yield out

    running.service.executor.scan = counted  # type: ignore[method-assign]
    # No BDP probing: the client's window stays small (as in test_isolation's unread scans)
    channel = grpc.insecure_channel(running.address, options=[("grpc.http2.bdp_probe", 0)])
    try:
        with Client([running.address], timeout=30) as c:
            c.write("wide", wide, partition_rows=rows // 32)
        scan_call = channel.unary_stream("/bpfstore.v1.Agent/Scan",
                                         request_serializer=pb.ScanRequest.SerializeToString,
                                         response_deserializer=decode_chunk)
        call = scan_call(pb.ScanRequest(plan=wire.plan_to_proto(Plan("wide")),
                                        pack_bytes=1 << 20), timeout=60)
        next(call)
        time.sleep(0.5)
        assert 0 < sum(pulled) < 12 << 20, sum(pulled)  # of 32 MB
        time.sleep(2.5)
        with pytest.raises(grpc.RpcError) as info:
            for _ in call:
                pass
        assert info.value.code() == grpc.StatusCode.CANCELLED
        assert sum(pulled) < 16 << 20
    finally:
        channel.close()
        running.stop()
