"""A Scan chunk's wire bytes, framed by hand around its Arrow IPC buffer (both sides use it).

protobuf would copy the megabytes of IPC into the message, encode them again for `ByteSize()`,
again to serialize, and on the client copy the field out on every access
(docs/benchmarks/read-path-profile.md). The bytes are the same `ScanChunk` encoding either way
— field 1 (`arrow_ipc`) written as tag, length and the buffer, then the small rest (reports,
spans) encoded by protobuf, which reads concatenated encodings as one message — so a client
with the generated stubs reads what `encode_chunk` writes, and `decode_chunk` reads what any
agent sends.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from bpfstore.v1 import agent_pb2 as pb

_IPC_TAG = b"\x0a"  # field 1, length-delimited
_NO_META = pb.ScanChunk()


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def encode_chunk(ipc: pa.Buffer | None, meta: pb.ScanChunk = _NO_META) -> bytes:
    """The chunk's bytes: `ipc` copied once (into the bytes gRPC sends), then `meta`, which
    must not set arrow_ipc."""
    tail = meta.SerializeToString()
    if ipc is None or ipc.size == 0:
        return tail
    return b"".join((_IPC_TAG, _varint(ipc.size), ipc, tail))


@dataclass(frozen=True, slots=True)
class Chunk:
    ipc: pa.Buffer | None  # a zero-copy slice of the received bytes
    meta: pb.ScanChunk     # everything else (report, spans); arrow_ipc left empty
    nbytes: int            # the message's size on the wire (before gRPC's framing)


def decode_chunk(data: bytes) -> Chunk:
    """The chunk in `data` with its IPC stream as a view of `data`, not a copy. Raises
    ValueError on bytes that are no ScanChunk."""
    buffer = pa.py_buffer(data)
    view = memoryview(data)
    ipc: pa.Buffer | None = None
    rest: list[memoryview] = []
    pos, size = 0, len(data)
    while pos < size:
        start = pos
        key, pos = _read_varint(data, pos)
        field, kind = key >> 3, key & 7
        if kind == 2:
            length, pos = _read_varint(data, pos)
            end = pos + length
        elif kind == 0:
            _, end = _read_varint(data, pos)
        elif kind in (1, 5):
            end = pos + (8 if kind == 1 else 4)
        else:
            raise ValueError(f"ScanChunk: wire type {kind} at byte {start}")
        if end > size:
            raise ValueError("ScanChunk: truncated")
        if field == 1 and kind == 2:
            ipc = buffer.slice(pos, end - pos)  # protobuf semantics: the last one wins
        else:
            rest.append(view[start:end])
        pos = end
    meta = pb.ScanChunk.FromString(b"".join(rest)) if rest else pb.ScanChunk()
    return Chunk(ipc, meta, size)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("ScanChunk: bad varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
