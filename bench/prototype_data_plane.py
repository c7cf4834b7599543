"""Prototype comparison of the two Scan data planes issue 14 names, outside the agent: the same
partitions (lineitem in 10,000-row slices) served by a server subprocess and read by this
process, interleaved run by run.

- flight: `pyarrow.flight` DoGet, the batches from a Python generator (as the agent's Scan loop
  yields them), the C++ side writing IPC straight to the stream;
- grpc-raw: a gRPC unary-stream method whose serializer is the identity: each message is the
  IPC bytes of several partitions' batches (up to `--message-mb`), written once; the client's
  deserializer hands the message to `pa.ipc.open_stream` through `pa.py_buffer`, no copy;
- grpc-pb: today's agent: one `ScanChunk` message (protobuf) per batch, `to_pybytes`, parsed by
  protobuf on the client.

    .venv/bin/python bench/prototype_data_plane.py [--sf 0.1] [--columns 4|16] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq
from bench_core import lineitem_parquet

from bpfstore.v1 import agent_pb2 as pb

SCAN4 = ["l_shipdate", "l_discount", "l_quantity", "l_extendedprice"]
METHOD = "/proto.Raw/Scan"
# gRPC channel arguments for both ends, e.g. TUNING='[["grpc.http2.lookahead_bytes", 16777216]]'
TUNING = json.loads(os.environ.get("TUNING", "[]"))


_CACHE: dict[str, list[pa.RecordBatch]] = {}


def partitions(sf: float, columns: list[str] | None) -> list[pa.RecordBatch]:
    """The slices, read once per server and column set (the agent's mmap'd partitions)."""
    key = json.dumps(columns)
    if key in _CACHE:
        return _CACHE[key]
    table = pq.read_table(lineitem_parquet(sf), columns=columns)
    # string_view as utf8 (the agent stores dictionaries): a slice of a string_view column
    # would carry the whole column's character buffers
    table = table.cast(pa.schema([f.with_type(pa.string()) if f.type == pa.string_view() else f
                                  for f in table.schema])).combine_chunks()
    _CACHE[key] = [b for i in range(0, table.num_rows, 10_000)
                   for b in table.slice(i, 10_000).to_batches()]
    return _CACHE[key]


def ipc(batches: list[pa.RecordBatch]) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batches[0].schema) as writer:
        for b in batches:
            writer.write_batch(b)
    return sink.getvalue()


class Flight(flight.FlightServerBase):
    def __init__(self, location: str, sf: float) -> None:
        super().__init__(location)
        self.sf = sf

    def do_get(self, context: flight.ServerCallContext, ticket: flight.Ticket
               ) -> flight.FlightDataStream:
        parts = partitions(self.sf, json.loads(ticket.ticket) or None)
        return flight.GeneratorStream(parts[0].schema, iter(parts))


def serve(kind: str, sf: float, message_mb: float) -> None:
    if kind == "flight":
        server = Flight("grpc://127.0.0.1:0", sf)
        print(server.port, flush=True)
        server.serve()
        return
    limit = int(message_mb * (1 << 20))

    def raw(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        parts = partitions(sf, json.loads(request) or None)
        run: list[pa.RecordBatch] = []
        size = 0
        for b in parts:
            run.append(b)
            size += b.nbytes
            if size >= limit:
                yield ipc(run).to_pybytes()
                run, size = [], 0
        if run:
            yield ipc(run).to_pybytes()

    def chunks(request: bytes, context: grpc.ServicerContext) -> Iterator[pb.ScanChunk]:
        for b in partitions(sf, json.loads(request) or None):
            yield pb.ScanChunk(arrow_ipc=ipc([b]).to_pybytes())

    handler = grpc.method_handlers_generic_handler("proto.Raw", {
        "Scan": grpc.unary_stream_rpc_method_handler(raw),
        "Chunks": grpc.unary_stream_rpc_method_handler(
            chunks, response_serializer=pb.ScanChunk.SerializeToString)})
    server = grpc.server(futures.ThreadPoolExecutor(4), handlers=[handler],
                         options=[("grpc.max_send_message_length", 256 << 20), *TUNING])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", default="")
    parser.add_argument("--sf", type=float, default=0.1)
    parser.add_argument("--columns", type=int, default=16, choices=(4, 16))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--message-mb", type=float, default=4.0)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.sf, args.message_mb)
        return 0
    cols = SCAN4 if args.columns == 4 else None
    ticket = json.dumps(cols).encode()
    procs = {k: subprocess.Popen([sys.executable, __file__, "--serve", k, "--sf", str(args.sf),
                                  "--message-mb", str(args.message_mb)],
                                 stdout=subprocess.PIPE, text=True) for k in ("flight", "grpc")}
    ports = {k: int(p.stdout.readline()) for k, p in procs.items()}  # type: ignore[union-attr]
    fc = flight.connect(f"grpc://127.0.0.1:{ports['flight']}")
    ch = grpc.insecure_channel(f"127.0.0.1:{ports['grpc']}",
                               options=[("grpc.max_receive_message_length", 256 << 20), *TUNING])
    raw = ch.unary_stream(METHOD, request_serializer=None, response_deserializer=None)
    old = ch.unary_stream("/proto.Raw/Chunks", response_deserializer=pb.ScanChunk.FromString)

    def read_flight() -> pa.Table:
        return fc.do_get(flight.Ticket(ticket)).read_all()

    def read_raw() -> pa.Table:
        batches: list[pa.RecordBatch] = []
        for msg in raw(ticket):
            batches.extend(pa.ipc.open_stream(pa.py_buffer(msg)))
        return pa.Table.from_batches(batches)

    def read_pb() -> pa.Table:
        return pa.Table.from_batches([b for c in old(ticket)
                                      for b in pa.ipc.open_stream(c.arrow_ipc)])

    def read_parquet() -> pa.Table:
        return pq.read_table(lineitem_parquet(args.sf), columns=cols)

    work = {"flight": read_flight, "grpc-raw": read_raw, "grpc-pb": read_pb,
            "parquet": read_parquet}
    mb = {k: fn().nbytes / 1e6 for k, fn in work.items()}
    wall: dict[str, list[float]] = {k: [] for k in work}
    ccpu: dict[str, list[float]] = {k: [] for k in work}
    for _ in range(args.runs):
        for k, fn in work.items():
            c0, t0 = cpu(), time.perf_counter()
            fn()
            wall[k].append(time.perf_counter() - t0)
            ccpu[k].append(cpu() - c0)
    print(f"SF{args.sf:g}, {args.columns} columns, median of {args.runs}; load "
          f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    for k in work:
        w, c = statistics.median(wall[k]), statistics.median(ccpu[k])
        print(f"  {k:<10} {mb[k]:6.0f} MB {w:7.3f} s {mb[k] / w:7.0f} MB/s "
              f"{mb[k] / max(c, 1e-3):7.0f} MB/client-cpu-s")
    for p in procs.values():
        p.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
