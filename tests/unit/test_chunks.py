"""Scan chunks framed by hand (contract/chunks.py) are the ScanChunk encoding both ways."""

from __future__ import annotations

import pyarrow as pa
import pytest

from bpfstore.contract.chunks import decode_chunk, encode_chunk
from bpfstore.node_agent.engines.base import Report
from bpfstore.node_agent.scan_stream import packed
from bpfstore.v1 import agent_pb2 as pb

REPORT = pb.PartitionReport(partition="p1", engine="arrow", rows_scanned=7, rows_matched=3)


@pytest.mark.parametrize("size", [0, 1, 127, 128, 300, 70_000])
def test_the_generated_parser_reads_what_encode_chunk_writes(size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    meta = pb.ScanChunk(spans=[pb.ScanSpan(batches=2, report=REPORT)])
    parsed = pb.ScanChunk.FromString(encode_chunk(pa.py_buffer(data), meta))
    assert parsed.arrow_ipc == data
    assert list(parsed.spans) == list(meta.spans)


def test_decode_chunk_reads_a_protobuf_encoded_chunk_without_copying_the_ipc() -> None:
    wire = pb.ScanChunk(arrow_ipc=b"\x01" * 1000, report=REPORT).SerializeToString()
    chunk = decode_chunk(wire)
    assert chunk.ipc is not None and chunk.ipc.to_pybytes() == b"\x01" * 1000
    assert chunk.ipc.address == pa.py_buffer(wire).address + len(wire) - 1000 - \
        len(pb.ScanChunk(report=REPORT).SerializeToString())  # a view into the message
    assert chunk.meta.report == REPORT and not chunk.meta.arrow_ipc
    assert chunk.nbytes == len(wire)


def test_a_chunk_without_rows_decodes_to_its_report() -> None:
    chunk = decode_chunk(encode_chunk(None, pb.ScanChunk(report=REPORT)))
    assert chunk.ipc is None and chunk.meta.report == REPORT


@pytest.mark.parametrize("bad", [b"\x0a\x05ab", b"\x0a", b"\x0b", b"\x0a\xff\xff"])
def test_bytes_that_are_no_chunk_are_refused(bad: bytes) -> None:
    with pytest.raises(ValueError, match="ScanChunk"):
        decode_chunk(bad)


@pytest.mark.parametrize("compression", [None, "lz4"])
@pytest.mark.parametrize("pack", [1, 3_000, 1 << 20])
def test_packed_chunks_give_back_every_partition_with_its_dictionaries(compression, pack) -> None:
    """scan_stream.packed, plain and compressed: partitions whose dictionaries differ, cut
    across chunks or packed into one, read back batch for batch, each ended by its span, with
    the spans the generated parser reads too."""
    parts = {f"p{n}": pa.table({
        "i": pa.array(range(n * 500, (n + 1) * 500), pa.int64()),
        "s": pa.array([f"{'xyz'[n % 3]}{i % (n + 2)}" for i in range(500)]).dictionary_encode(),
    }) for n in range(6)}
    items: list[pa.Table | Report] = []
    for pid, table in parts.items():
        items += [table.slice(0, 200), table.slice(200)]
        items.append(Report(pid, "arrow", rows_matched=table.num_rows))
    got: dict[str, list[pa.RecordBatch]] = {}
    open_batches: list[pa.RecordBatch] = []
    for data in packed(items, pa.ipc.IpcWriteOptions(compression=compression), pack):
        chunk = decode_chunk(data)
        assert pb.ScanChunk.FromString(data).spans == chunk.meta.spans
        batches = list(pa.ipc.open_stream(chunk.ipc)) if chunk.ipc is not None else []
        for span in chunk.meta.spans:
            open_batches += batches[:span.batches]
            batches = batches[span.batches:]
            got[span.report.partition] = open_batches
            open_batches = []
        open_batches += batches
    assert not open_batches and list(got) == list(parts)
    for pid, table in parts.items():
        assert pa.Table.from_batches(got[pid]).to_pydict() == table.to_pydict()
