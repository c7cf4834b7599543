"""What the agent did, for operators: Prometheus metrics and one structured log line per request.

`RequestObserver` is a gRPC server interceptor: it times every call, counts it by method and
final status code and logs it (logfmt, see logfmt.py). While a call runs, its `RequestRecord`
is reachable from the handling thread, so the service adds what only it knows — the engine,
rows and bytes of each partition (`observe_partition`), the tenant (`observe_tenant`, for the
auth layer) — without passing anything through its methods. The metrics are served over HTTP
on a separate port (`--metrics-listen`), off by default.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger("bpfstore.agent.requests")

LATENCY_BUCKETS = (.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300)
QUIET_METHODS = {"Check", "Watch"}  # health probes: logged at DEBUG, not every few seconds


class AgentMetrics:
    """One agent's metrics in its own registry (tests run several agents in one process)."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter("bpfstore_agent_requests", "RPCs handled, by method",
                                ["method"], registry=r)
        self.errors = Counter("bpfstore_agent_request_errors",
                              "RPCs that ended with a status other than OK", ["method", "code"],
                              registry=r)
        self.latency = Histogram("bpfstore_agent_request_duration_seconds",
                                 "Time from the call's start to its last message, by method",
                                 ["method"], buckets=LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge("bpfstore_agent_requests_in_flight", "RPCs being handled now",
                               registry=r)
        self.partitions = Counter("bpfstore_agent_partitions",
                                  "Partitions served, by engine (bpf, arrow, stats) and bpf data "
                                  "path (hot, cold; empty otherwise)", ["engine", "path"],
                                  registry=r)
        self.rows_scanned = Counter("bpfstore_agent_rows_scanned",
                                    "Rows read by the engines, by engine", ["engine"], registry=r)
        self.bytes_scanned = Counter("bpfstore_agent_bytes_scanned",
                                     "Bytes of column data read by the engines, by engine",
                                     ["engine"], registry=r)
        self.bytes_returned = Counter("bpfstore_agent_bytes_returned",
                                      "Bytes of response messages sent, by method", ["method"],
                                      registry=r)


@dataclass
class RequestRecord:
    method: str
    metrics: AgentMetrics
    dataset: str = ""
    tenant: str = ""
    engines: dict[str, int] = field(default_factory=dict)
    rows_scanned: int = 0
    bytes_scanned: int = 0
    bytes_returned: int = 0


# A call runs on one thread of the server's pool from start to end (streams included), so a
# thread-local finds the record of the call being handled.
_local = threading.local()


def current() -> RequestRecord | None:
    return getattr(_local, "record", None)


def observe_partition(report: Any) -> None:
    """Count one partition served by the current request, from its `PartitionReport`
    (no-op outside a request)."""
    record = current()
    if record is None:
        return
    engine, path = report.engine, report.path
    rows_scanned, bytes_scanned = report.rows_scanned, report.bytes_scanned
    key = f"{engine}-{path}" if path else engine
    record.engines[key] = record.engines.get(key, 0) + 1
    record.rows_scanned += rows_scanned
    record.bytes_scanned += bytes_scanned
    m = record.metrics
    m.partitions.labels(engine, path).inc()
    m.rows_scanned.labels(engine).inc(rows_scanned)
    m.bytes_scanned.labels(engine).inc(bytes_scanned)


def observe_tenant(tenant: str) -> None:
    """For the auth layer: the tenant the current request authenticated as."""
    if (record := current()) is not None:
        record.tenant = tenant


def _dataset_of(request: Any) -> str:
    if hasattr(request, "plan"):
        return str(request.plan.dataset)
    return str(getattr(request, "dataset", ""))


def _code(context: grpc.ServicerContext, failure: BaseException | None) -> str:
    code = context.code()
    if code is not None:
        return str(code.name) if isinstance(code, grpc.StatusCode) else str(code)
    if failure is None:
        return "OK"
    if isinstance(failure, GeneratorExit) or not context.is_active():
        return "CANCELLED"  # the client went away mid-call
    return "UNKNOWN"  # grpc's code for an exception escaping a handler


class RequestObserver(grpc.ServerInterceptor):
    """Times, counts and logs every RPC of the server it is installed on."""

    def __init__(self, metrics: AgentMetrics) -> None:
        self.metrics = metrics

    def intercept_service(self, continuation: Callable[[Any], Any],
                          details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None:  # unknown method: grpc answers UNIMPLEMENTED; no label for junk
            return None
        method = str(details.method).rsplit("/", 1)[-1]
        kind = ("stream" if handler.request_streaming else "unary",
                "stream" if handler.response_streaming else "unary")
        behaviour = handler.unary_unary or handler.unary_stream or handler.stream_unary \
            or handler.stream_stream
        wrap = self._streaming(method, behaviour, handler.request_streaming) \
            if handler.response_streaming else self._unary(method, behaviour,
                                                           handler.request_streaming)
        factory = {
            ("unary", "unary"): grpc.unary_unary_rpc_method_handler,
            ("unary", "stream"): grpc.unary_stream_rpc_method_handler,
            ("stream", "unary"): grpc.stream_unary_rpc_method_handler,
            ("stream", "stream"): grpc.stream_stream_rpc_method_handler,
        }[kind]
        serialize = _counted(handler.response_serializer) if handler.response_streaming \
            else handler.response_serializer
        return factory(wrap, request_deserializer=_lenient(handler.request_deserializer),
                       response_serializer=serialize)

    def _unary(self, method: str, behaviour: Any, streaming_in: bool) -> Any:
        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            with self._observe(method, context) as record:
                response = behaviour(_requests(record, request, context) if streaming_in
                                     else _request(record, request, context), context)
                record.bytes_returned += response.ByteSize() if response is not None else 0
                return response
        return handle

    def _streaming(self, method: str, behaviour: Any, streaming_in: bool) -> Any:
        def handle(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            with self._observe(method, context) as record:
                # each response's bytes are counted as grpc serializes it (_counted)
                yield from behaviour(_requests(record, request, context) if streaming_in
                                     else _request(record, request, context), context)
        return handle

    @contextlib.contextmanager
    def _observe(self, method: str, context: grpc.ServicerContext) -> Iterator[RequestRecord]:
        m = self.metrics
        record = RequestRecord(method, m)
        _local.record = record
        m.in_flight.inc()
        start = time.perf_counter()
        failure: BaseException | None = None
        try:
            yield record
        except BaseException as exc:
            failure = exc
            raise
        finally:
            seconds = time.perf_counter() - start
            if getattr(_local, "record", None) is record:
                _local.record = None
            code = _code(context, failure)
            m.in_flight.dec()
            m.requests.labels(method).inc()
            m.latency.labels(method).observe(seconds)
            m.bytes_returned.labels(method).inc(record.bytes_returned)
            if code != "OK":
                m.errors.labels(method, code).inc()
            _log(record, code, seconds)


class _Undecodable:
    """Stands for request bytes protobuf could not parse."""


def _counted(serialize: Callable[[Any], bytes] | None) -> Callable[[Any], bytes] | None:
    """A streamed response's bytes, counted from the one serialization grpc does anyway (in the
    thread that runs the handler, before it resumes): `ByteSize()` encoded every Scan chunk a
    second time, a quarter of the agent's time on a wide scan
    (docs/benchmarks/read-path-profile.md)."""
    if serialize is None:
        return None

    def counting(message: Any) -> bytes:
        data = serialize(message)
        record = current()
        if record is not None:
            record.bytes_returned += len(data)
        return data
    return counting


def _lenient(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """grpc answers an undecodable request with INTERNAL, as if the agent had failed; decode
    here instead, so the handler wrapper can answer INVALID_ARGUMENT."""
    if deserialize is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception:  # noqa: BLE001 - protobuf's DecodeError and its recursion limit
            return _Undecodable()
    return parse


def _decoded(message: Any, context: grpc.ServicerContext) -> Any:
    if isinstance(message, _Undecodable):
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "request is not a valid message")
    return message


def _request(record: RequestRecord, request: Any, context: grpc.ServicerContext) -> Any:
    record.dataset = _dataset_of(_decoded(request, context))
    return request


def _requests(record: RequestRecord, requests: Iterator[Any],
              context: grpc.ServicerContext) -> Iterator[Any]:
    """A request stream, noting the dataset its first message names (Write)."""
    first = True
    for message in (_decoded(m, context) for m in requests):
        if first:
            record.dataset, first = _dataset_of(message), False
        yield message


def _log(record: RequestRecord, code: str, seconds: float) -> None:
    fields: dict[str, Any] = {"method": record.method}
    if record.dataset:
        fields["dataset"] = record.dataset
    if record.tenant:
        fields["tenant"] = record.tenant
    fields.update(code=code, duration_ms=round(seconds * 1000, 3))
    if record.engines:
        fields["engines"] = ",".join(f"{k}:{v}" for k, v in sorted(record.engines.items()))
        fields["rows_scanned"] = record.rows_scanned
        fields["bytes_scanned"] = record.bytes_scanned
    fields["bytes_returned"] = record.bytes_returned
    level = logging.DEBUG if record.method in QUIET_METHODS and code == "OK" else logging.INFO
    log.log(level, "request", extra={"fields": fields})


def serve_metrics(listen: str, metrics: AgentMetrics) -> tuple[Any, int]:
    """Serve /metrics over HTTP on HOST:PORT (port 0 picks one): (http server, port)."""
    host, _, port = listen.rpartition(":")
    if not port.isdigit():
        raise OSError(f"metrics address {listen!r} is not HOST:PORT")
    host = host.strip("[]") or "0.0.0.0"
    server, _thread = start_http_server(int(port), addr=host, registry=metrics.registry)
    return server, int(server.server_port)
