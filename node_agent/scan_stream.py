"""A Scan's response stream: the executor's batches and reports as ScanChunk bytes, framed once
(`bpfstore.contract.chunks`).

Packed (the request's `pack_bytes` > 0): consecutive batches, of one partition or several, are
written straight into one IPC stream until it holds about `pack_bytes`; each partition's end
is a span (its report, and how many of the chunk's batches end it). Unpacked (a client that
does not ask): one batch, or one report, per chunk, as before the field.

Back-pressure: this is a generator that gRPC pulls only once the previous chunk is sent, so
the agent holds at most one chunk being filled and one being sent per stream, whatever the
partition count; a reader that stops reading stops the pulling, and the watchdog (auth.py)
times that wait.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator

import pyarrow as pa

from bpfstore.contract.chunks import encode_chunk
from bpfstore.v1 import agent_pb2 as pb

from .engines.base import Report


def report_message(report: Report) -> pb.PartitionReport:
    return pb.PartitionReport(**dataclasses.asdict(report))


def ipc_buffer(table: pa.Table, options: pa.ipc.IpcWriteOptions | None) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write(table)
    return sink.getvalue()


def unpacked(items: Iterable[pa.Table | Report],
             options: pa.ipc.IpcWriteOptions) -> Iterator[bytes]:
    for out in items:
        yield encode_chunk(None, pb.ScanChunk(report=report_message(out))) \
            if isinstance(out, Report) else encode_chunk(ipc_buffer(out, options))


class _Chunk:
    """One packed chunk being filled."""

    def __init__(self, options: pa.ipc.IpcWriteOptions) -> None:
        self.options = options
        self.sink = pa.BufferOutputStream()
        self.writer: pa.ipc.RecordBatchStreamWriter | None = None
        self.schema: pa.Schema | None = None
        self.meta = pb.ScanChunk()
        self.open_batches = 0  # written since the last span

    @property
    def size(self) -> int:
        return self.sink.tell()

    def fits(self, table: pa.Table) -> bool:
        return self.schema is None or table.schema.equals(self.schema)

    def add(self, table: pa.Table) -> None:
        if self.writer is None:
            self.schema = table.schema
            self.writer = pa.ipc.new_stream(self.sink, table.schema, options=self.options)
        for batch in table.to_batches():
            self.writer.write_batch(batch)
            self.open_batches += 1

    def end_partition(self, report: Report) -> None:
        self.meta.spans.add(batches=self.open_batches, report=report_message(report))
        self.open_batches = 0

    def bytes(self) -> bytes:
        if self.writer is None:
            return encode_chunk(None, self.meta)
        self.writer.close()
        return encode_chunk(self.sink.getvalue(), self.meta)

    @property
    def empty(self) -> bool:
        return self.writer is None and not self.meta.spans


def packed(items: Iterable[pa.Table | Report], options: pa.ipc.IpcWriteOptions,
           pack_bytes: int) -> Iterator[bytes]:
    chunk = _Chunk(options)
    for out in items:
        if isinstance(out, Report):
            chunk.end_partition(out)
        else:
            if not chunk.fits(out):  # another schema (never within a version): a new stream
                yield chunk.bytes()
                chunk = _Chunk(options)
            chunk.add(out)
        if chunk.size >= pack_bytes:
            yield chunk.bytes()
            chunk = _Chunk(options)
    if not chunk.empty:
        yield chunk.bytes()
