"""The agent's gRPC service: thin methods that unpack, call storage and engines, and pack."""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from importlib import metadata
from pathlib import Path
from typing import Any

import grpc
import pyarrow as pa
import pyarrow.compute as pc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from bpfstore.contract import wire
from bpfstore.contract.binding import bind_plan, logical_type
from bpfstore.contract.errors import DatasetNotFound, PlanInvalid
from bpfstore.contract.plan import Literal, Plan
from bpfstore.v1 import agent_pb2 as pb
from bpfstore.v1 import agent_pb2_grpc

from . import scan_stream
from .auth import Gatekeeper, Grants, server_credentials
from .budget import from_peer
from .catalog import DatasetMeta, validate_name
from .config import AgentConfig
from .engines.base import Report
from .engines.select import Engines
from .executor import Executor
from .limits import WriteLimits, check_plan_size
from .metrics import AgentMetrics, RequestObserver
from .normalize import normalize_schema
from .rpc_errors import rpc_errors
from .stats import decode
from .storage import LOCAL_TXN, Storage

log = logging.getLogger("bpfstore.agent")
LIST_PAGE = 100  # datasets of a ListDatasets page when the request names no page_size ...
LIST_PAGE_MAX = 1000  # ... and at most, whatever it asks
LIST_PAGE_BYTES = 4 << 20  # a page ends early past this (catalogs with many partitions)


def _version() -> str:
    try:
        return metadata.version("bpfstore")
    except metadata.PackageNotFoundError:
        return "0+unknown"


# ScanRequest.compression -> Arrow's IPC buffer codec ("": uncompressed, as before the field)
SCAN_COMPRESSION = {"": None, "lz4": "lz4", "zstd": "zstd"}  # "lz4": the LZ4 frame format


def ipc_bytes(table_or_batch: pa.Table | pa.RecordBatch,
              options: pa.ipc.IpcWriteOptions | None = None) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table_or_batch.schema, options=options) as writer:
        writer.write(table_or_batch)
    return sink.getvalue().to_pybytes()


def scan_compression(name: str) -> pa.ipc.IpcWriteOptions:
    """The IPC write options a ScanRequest's `compression` names."""
    try:
        return pa.ipc.IpcWriteOptions(compression=SCAN_COMPRESSION[name])
    except KeyError:
        raise PlanInvalid(f"unknown Scan compression {name[:40]!r}: use \"\" (none), "
                          f"\"lz4\" or \"zstd\"") from None


def scan_batch(batch: pa.RecordBatch) -> pa.Table:
    """Stored types -> what clients read: decimal64 -> decimal128; dictionaries stay, but a
    dictionary larger than the batch is rebuilt from the batch's own values, so a batch never
    carries the whole partition's dictionary (e.g. free-text comments)."""
    columns = []
    for column in batch.columns:
        if pa.types.is_decimal(column.type):
            # Same precision and scale, at least as wide: every value fits, so the cast skips
            # its per-value check (5x faster, a tenth of a wide scan's agent CPU)
            target = logical_type(column.type)
            column = column.cast(target, safe=column.type.bit_width > target.bit_width)
        elif pa.types.is_dictionary(column.type) and len(column.dictionary) > len(column):
            column = pc.dictionary_encode(column.dictionary_decode()).cast(column.type)
        columns.append(column)
    return pa.Table.from_arrays(columns, names=batch.schema.names)


class AgentService(agent_pb2_grpc.AgentServicer):
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.storage = Storage(config.data_dir, max_write_bytes=config.max_write_bytes,
                               retention_seconds=config.version_retention_seconds,
                               limits=WriteLimits.of(config), quota=config.quota)
        self.grants = Grants(config.tenants)  # per dataset; Gatekeeper authenticates
        self.engines = Engines(config.engine, config.data_dir, config.bpf_arena_bytes,
                               enable_bpf=config.bpf, spread=config.bpf_threads or None)
        self.executor = Executor(self.storage, self.engines)
        self.metrics = AgentMetrics()  # served by main.py when --metrics-listen is set
        # pyarrow imports pandas lazily the first time it converts Python values (~0.3 s):
        # pay that at start rather than in the first query.
        pa.array([0])
        self.resolver = WriteResolver(self.storage, config)

    # -- metadata ------------------------------------------------------------------------

    def GetInfo(self, request: pb.GetInfoRequest,
                context: grpc.ServicerContext) -> pb.GetInfoResponse:
        with rpc_errors(context, "GetInfo"):
            return pb.GetInfoResponse(
                version=_version(),
                node=socket.gethostname(),
                kernel=f"{platform.system()} {platform.release()}",
                engines=[pb.EngineStatus(name=s.name, available=s.available, reason=s.reason)
                         for s in self.engines.status],
                default_engine=self.engines.default.value,
                limits=self.config.limits(),
            )

    def ListDatasets(self, request: pb.ListDatasetsRequest,
                     context: grpc.ServicerContext) -> pb.ListDatasetsResponse:
        with rpc_errors(context, "ListDatasets"):
            if request.page_size < 0:
                raise PlanInvalid(f"page_size must be 0 (the default) or more, not "
                                  f"{request.page_size}")
            last = request.page_token and validate_name("page_token", request.page_token)
            names = [n for n in self.grants.visible(self.storage.names()) if n > last]
            page, nbytes = pb.ListDatasetsResponse(), 0
            for n in names[:min(request.page_size or LIST_PAGE, LIST_PAGE_MAX)]:
                try:
                    info = _dataset_info(self.storage.get(n), with_stats=False)
                except DatasetNotFound:  # dropped since it was listed
                    last = n
                    continue
                nbytes += info.ByteSize()
                if page.datasets and nbytes > LIST_PAGE_BYTES:
                    break  # the rest on the next page: a reply stays far below its limit
                page.datasets.append(info)
                last = n
            if names and last != names[-1]:
                page.next_page_token = last
            return page

    def DescribeDataset(self, request: pb.DescribeDatasetRequest,
                        context: grpc.ServicerContext) -> pb.DatasetInfo:
        with rpc_errors(context, "DescribeDataset"):
            self.grants.require("see", request.dataset)
            pending = self.storage.pending(request.dataset)
            try:
                meta = self.storage.version(request.dataset, request.version)
            except DatasetNotFound:
                if pending is None:
                    raise
                # A first write, prepared here and perhaps committed elsewhere: say so.
                meta = DatasetMeta(request.dataset, pending.meta.schema, 0, "", [])
            info = _dataset_info(meta, with_stats=not request.without_statistics)
            if pending is not None and pending.meta.version > meta.version:
                info.pending_version, info.pending_txn = pending.meta.version, pending.txn
            return info

    # -- queries -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _plan(self, msg: pb.AggregateRequest | pb.ScanRequest) -> Iterator[tuple[Plan,
                                                                              DatasetMeta]]:
        """The bound plan and the dataset version it reads, pinned while the block runs."""
        self.grants.require("read", msg.plan.dataset)  # before anything could say "not found"
        check_plan_size(msg.plan, self.config.max_plan_nodes, self.config.max_in_list,
                        self.config.max_plan_depth, self.config.max_key_set_keys,
                        self.config.max_key_set_bytes)
        plan = wire.plan_from_proto(msg.plan, self.config.max_plan_depth)
        with self.storage.pinned(plan.dataset, msg.dataset_version) as meta:
            yield bind_plan(plan, meta.schema), meta

    def Aggregate(self, request: pb.AggregateRequest,
                  context: grpc.ServicerContext) -> pb.AggregateResponse:
        with rpc_errors(context, "Aggregate"), self._plan(request) as (plan, meta):
            result = self.executor.aggregate(plan, meta)
            return pb.AggregateResponse(partials=ipc_bytes(result.partials),
                                        partitions=[_report(r) for r in result.reports],
                                        dataset_version=meta.version)

    def Scan(self, request: pb.ScanRequest,
             context: grpc.ServicerContext) -> Iterator[bytes]:
        with rpc_errors(context, "Scan"), self._plan(request) as (plan, meta):
            if request.batch_rows < 0:
                raise PlanInvalid(f"batch_rows must be positive (0: the default), "
                                  f"not {request.batch_rows}")
            if request.pack_bytes < 0:
                raise PlanInvalid(f"pack_bytes must be 0 (unpacked) or more, "
                                  f"not {request.pack_bytes}")
            options = scan_compression(request.compression)
            batch_rows = request.batch_rows or self.config.scan_batch_rows
            rows = (out if isinstance(out, Report) else scan_batch(out)
                    for out in self.executor.scan(plan, meta, batch_rows))
            # bytes, framed once (scan_stream.py); _ScanFraming hands them to gRPC as they are
            if request.pack_bytes:
                pack = min(request.pack_bytes, self.config.max_message_bytes // 2)
                yield from scan_stream.packed(rows, options, pack)
            else:
                yield from scan_stream.unpacked(rows, options)

    # -- writes --------------------------------------------------------------------------

    def Write(self, request_iterator: Iterator[pb.WriteChunk],
              context: grpc.ServicerContext) -> pb.WriteResponse:
        with rpc_errors(context, "Write"):
            request_iterator = from_peer(request_iterator)  # idle and deadline bounded
            first = next(request_iterator, None)
            if first is None or not first.dataset:
                raise PlanInvalid("Write stream must start with a chunk naming the dataset")
            self.grants.require("write", first.dataset)

            def pieces() -> Iterator[bytes]:
                yield first.arrow_ipc
                for chunk in request_iterator:
                    yield chunk.arrow_ipc

            tenant = self.grants.tenant_name()
            if first.txn:
                part = self.storage.stage(first.dataset, pieces(), _txn(first.txn),
                                          first.partition, first.replicas, tenant)
                log.info("write dataset=%s partition=%s rows=%d staged txn=%s", first.dataset,
                         part.id, part.rows, first.txn)
                return pb.WriteResponse(dataset=first.dataset, partitions=[part.id],
                                        rows=part.rows)
            meta, pid, rows = self.storage.write(first.dataset, pieces(), first.partition,
                                                 first.overwrite, first.replicas, tenant)
            log.info("write dataset=%s partition=%s rows=%d version=%d", meta.name, pid, rows,
                     meta.version)
            return pb.WriteResponse(dataset=meta.name, partitions=[pid], rows=rows,
                                    version=meta.version)

    def PrepareWrite(self, request: pb.PrepareWriteRequest,
                     context: grpc.ServicerContext) -> pb.PrepareWriteResponse:
        with rpc_errors(context, "PrepareWrite"):
            self.grants.require("write", request.dataset)
            try:
                schema = pa.ipc.read_schema(pa.py_buffer(request.arrow_schema)) \
                    if request.arrow_schema else None
            except pa.ArrowException as exc:
                raise PlanInvalid(f"arrow_schema is not an Arrow IPC schema: {exc}") from None
            version = self.storage.prepare(request.dataset, _txn(request.txn), request.version,
                                           request.overwrite, request.partitions,
                                           schema and normalize_schema(schema), request.primary,
                                           self.grants.tenant_name())
            return pb.PrepareWriteResponse(version=version)

    def CommitWrite(self, request: pb.CommitWriteRequest,
                    context: grpc.ServicerContext) -> pb.CommitWriteResponse:
        with rpc_errors(context, "CommitWrite"):
            self.grants.require("write", request.dataset)
            if request.abort:
                self.storage.abort(request.dataset, _txn(request.txn))
                return pb.CommitWriteResponse()
            meta = self.storage.commit(request.dataset, _txn(request.txn))
            log.info("commit dataset=%s txn=%s version=%d partitions=%d", meta.name,
                     request.txn, meta.version, len(meta.partitions))
            return pb.CommitWriteResponse(version=meta.version)

    def WriteStatus(self, request: pb.WriteStatusRequest,
                    context: grpc.ServicerContext) -> pb.WriteStatusResponse:
        """Open to peers without a token: it tells only the state of a random write id."""
        with rpc_errors(context, "WriteStatus"):
            state = self.storage.status(validate_name("dataset", request.dataset), request.txn)
            return pb.WriteStatusResponse(state=_WRITE_STATES[state])

    def DropDataset(self, request: pb.DropDatasetRequest,
                    context: grpc.ServicerContext) -> pb.DropDatasetResponse:
        with rpc_errors(context, "DropDataset"):
            self.grants.require("write", request.dataset)
            return pb.DropDatasetResponse(dropped=self.storage.drop(request.dataset))


def _txn(txn: str) -> str:
    if not 0 < len(txn) <= 128:
        raise PlanInvalid("a write's txn must be 1-128 characters")
    if txn.startswith(LOCAL_TXN):
        raise PlanInvalid(f"a write's txn must not start with {LOCAL_TXN!r}")
    return txn


_WRITE_STATES = {"unknown": pb.WriteStatusResponse.UNKNOWN,
                 "prepared": pb.WriteStatusResponse.PREPARED,
                 "committed": pb.WriteStatusResponse.COMMITTED}


class WriteResolver:
    """Settles prepared writes whose client went away (it, or this agent, crashed between
    prepare and commit), once a second: a non-primary asks the write's primary — committed
    there: commit; unknown there (aborted, or never prepared): abort; prepared: wait. The
    primary's commit is the decision, so its own prepared write waits for its client up to
    `prepare_timeout_seconds`, then aborts. Also lets expired versions go (Storage.sweep)."""

    def __init__(self, storage: Storage, config: AgentConfig) -> None:
        self.storage, self.config = storage, config
        self._channels: dict[str, grpc.Channel] = {}
        self._stop = threading.Event()
        threading.Thread(target=self._run, name="write-resolver", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.settle()
                self.storage.sweep()
            except Exception:  # noqa: BLE001 - logged; the loop must go on
                log.exception("write resolver")

    def settle(self) -> None:
        for name, prepared in self.storage.pending_writes():
            age = time.time() - prepared.prepared_at
            if not prepared.primary:
                if age > self.config.prepare_timeout_seconds:
                    log.warning("prepared write %s to %s never committed: aborted",
                                prepared.txn, name)
                    self.storage.abort(name, prepared.txn)
                continue
            state = self._ask(prepared.primary, name, prepared.txn)
            if state == pb.WriteStatusResponse.COMMITTED:
                log.info("prepared write %s to %s committed by its primary %s: committed",
                         prepared.txn, name, prepared.primary)
                self.storage.commit(name, prepared.txn)
            elif state == pb.WriteStatusResponse.UNKNOWN:
                log.info("prepared write %s to %s aborted by its primary %s: aborted",
                         prepared.txn, name, prepared.primary)
                self.storage.abort(name, prepared.txn)

    def _ask(self, peer: str, dataset: str, txn: str) -> int | None:
        if peer not in self._channels:
            credentials = _peer_credentials(self.config)
            # a peer that restarts is asked again within a second, not after grpc's backoff
            options = [("grpc.initial_reconnect_backoff_ms", 200),
                       ("grpc.max_reconnect_backoff_ms", 1000)]
            self._channels[peer] = grpc.secure_channel(peer, credentials, options) \
                if credentials else grpc.insecure_channel(peer, options)
        try:
            return agent_pb2_grpc.AgentStub(self._channels[peer]).WriteStatus(
                pb.WriteStatusRequest(dataset=dataset, txn=txn), timeout=5).state
        except grpc.RpcError:
            return None  # unreachable: ask again later


def _peer_credentials(config: AgentConfig) -> grpc.ChannelCredentials | None:
    """TLS to peers when this agent speaks TLS: their certificates are trusted when signed by
    tls_client_ca (or the system's CAs), and this agent presents its own certificate."""
    if not config.tls_cert:
        return None
    ca = Path(config.tls_client_ca).read_bytes() if config.tls_client_ca else None
    return grpc.ssl_channel_credentials(ca, Path(config.tls_key).read_bytes(),
                                        Path(config.tls_cert).read_bytes())


_report = scan_stream.report_message


class _ScanFraming(grpc.ServerInterceptor):
    """Scan's responses are the ScanChunk bytes the servicer framed (scan_stream.py): gRPC's
    serializer passes them on instead of encoding a message. Innermost, so the metrics
    interceptor counts the bytes as sent."""

    def intercept_service(self, continuation: Callable[[Any], Any],
                          details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None or details.method != SCAN_METHOD:
            return handler
        return grpc.unary_stream_rpc_method_handler(
            handler.unary_stream, request_deserializer=handler.request_deserializer,
            response_serializer=_as_sent)


SCAN_METHOD = "/bpfstore.v1.Agent/Scan"


def _as_sent(message: bytes | pb.ScanChunk) -> bytes:
    return message if isinstance(message, bytes) else message.SerializeToString()


def _dataset_info(meta: DatasetMeta, with_stats: bool) -> pb.DatasetInfo:
    info = pb.DatasetInfo(name=meta.name, arrow_schema=meta.schema.serialize().to_pybytes(),
                          version=meta.version, created=meta.created, txn=meta.txn)
    for p in meta.partitions:
        part = info.partitions.add(id=p.id, rows=p.rows, bytes=p.bytes, replicas=p.replicas,
                                   checksum=p.checksum)
        if not with_stats:
            continue
        for name, s in p.stats.items():
            cs = part.stats.add(column=name, null_count=s.null_count, has_nan=s.has_nan)
            t = logical_type(meta.schema.field(name).type)
            for value, target in ((s.min, cs.min), (s.max, cs.max)):
                if value is None:
                    continue
                if pa.types.is_timestamp(t) and isinstance(value, int):
                    exact = value  # a timestamp's integer as it is: no datetime holds all
                else:
                    try:
                        exact = decode(value, t)
                    except OverflowError:  # a date after 9999: the client sees no bound
                        continue
                target.CopyFrom(wire.literal_to_proto(Literal(exact, result_type=t)))
    return info


def create_server(config: AgentConfig) -> tuple[grpc.Server, int, AgentService]:
    """A started-ready (not yet started) server bound to config.listen; port 0 picks one."""
    options = [
        ("grpc.max_receive_message_length", config.max_receive_bytes()),
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]
    service = AgentService(config)
    # A thread for every admitted request (and a few for health checks): worker slots
    # (auth.Workers), not the pool, bound the work, so a request waiting for a stalled peer
    # or for a slot never keeps GetInfo, ListDatasets or health from an answer.
    pool = futures.ThreadPoolExecutor(max_workers=config.max_concurrent_requests + 4)
    server = grpc.server(pool, options=options,
                         interceptors=[RequestObserver(service.metrics),  # outermost: sees all
                                       Gatekeeper(config),  # tokens, tenants' limits
                                       _ScanFraming()],
                         maximum_concurrent_rpcs=config.max_concurrent_requests)
    agent_pb2_grpc.add_AgentServicer_to_server(service, server)
    health_servicer = health.HealthServicer()
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_servicer.set("bpfstore.v1.Agent", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    try:
        credentials = server_credentials(config)  # None: plaintext
        port = server.add_secure_port(config.listen, credentials) if credentials else \
            server.add_insecure_port(config.listen)
    except RuntimeError:  # grpc raises this when the address is taken or invalid
        port = 0
    if port == 0:
        raise OSError(f"cannot listen on {config.listen}: address in use or not available")
    os.makedirs(config.data_dir, exist_ok=True)
    return server, port, service

