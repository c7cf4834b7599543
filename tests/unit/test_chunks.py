"""Scan chunks framed by hand (contract/chunks.py) are the ScanChunk encoding both ways."""

from __future__ import annotations

import pyarrow as pa
import pytest

from bpfstore.contract.chunks import decode_chunk, encode_chunk
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
