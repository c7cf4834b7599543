"""Who may call the agent, and how much: TLS credentials, bearer tokens mapped to tenants,
per-tenant dataset grants, per-tenant concurrency, and request deadlines.

Two places enforce it. `Gatekeeper`, a server interceptor, turns away calls without a valid
token (UNAUTHENTICATED), calls over the tenant's concurrency limit (RESOURCE_EXHAUSTED), and
records the caller and deadline for the request. The servicer calls `require(action, dataset)`
where the dataset name is known; outside the grants that is PERMISSION_DENIED, decided before
any lookup, so existing and missing datasets get the same answer. Health checks stay open.
"""

from __future__ import annotations

import contextlib
import contextvars
import fnmatch
import hashlib
import math
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from bpfstore.contract.errors import DeadlineExceeded, PermissionDenied, Unauthenticated

from .budget import Budget, check_budget
from .budget import current as current_budget
from .config import AgentConfig, Tenant
from .metrics import observe_tenant

# Load balancers and orchestrators probe health; peer agents settling a prepared write ask
# WriteStatus (it tells only the state of a random write id).
OPEN_METHODS = ("/grpc.health.v1.Health/", "/bpfstore.v1.Agent/WriteStatus")
# Answered from memory or the catalog, without a worker slot: they answer however busy it is.
METADATA_METHODS = tuple(f"/bpfstore.v1.Agent/{m}"
                         for m in ("GetInfo", "ListDatasets", "DescribeDataset", "WriteStatus"))
NO_AUTH = Tenant("anonymous", (), read=("*",), write=("*",))  # when no tenant is configured


def hash_token(token: str) -> str:
    """What the agent's config stores for a token: the token itself never is."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def server_credentials(config: AgentConfig) -> grpc.ServerCredentials | None:
    """TLS with the agent's certificate; with tls_client_ca, clients must present a
    certificate signed by it (mutual TLS). None: plaintext."""
    if not config.tls_cert:
        return None
    with open(config.tls_key, "rb") as k, open(config.tls_cert, "rb") as c:
        pair = (k.read(), c.read())
    ca = None
    if config.tls_client_ca:
        with open(config.tls_client_ca, "rb") as f:
            ca = f.read()
    return grpc.ssl_server_credentials([pair], root_certificates=ca,
                                       require_client_auth=ca is not None)


# -- the current request ---------------------------------------------------------------------


@dataclass(frozen=True)
class Admission:
    tenant: Tenant
    budget: Budget


_current: contextvars.ContextVar[Admission | None] = contextvars.ContextVar(
    "bpfstore_admission", default=None)


def check_deadline() -> None:
    """Called between partitions and batches: long requests stop at their deadline."""
    check_budget()


class Grants:
    """Per-dataset checks for the servicer (the interceptor has already authenticated)."""

    def __init__(self, tenants: Sequence[Tenant]) -> None:
        self.enabled = bool(tenants)

    def _tenant(self) -> Tenant:
        admission = _current.get()
        if admission is not None:
            return admission.tenant
        if self.enabled:  # a call that did not pass the interceptor: never trust it
            raise Unauthenticated("no credentials")
        return NO_AUTH

    def tenant_name(self) -> str:
        """The calling tenant, whose quota its writes count against (storage.py)."""
        return self._tenant().name

    def require(self, action: str, dataset: str) -> None:
        """`action` is "read" (query, describe), "write" (write, drop) or "see" (either)."""
        tenant = self._tenant()
        if not may(tenant, action, dataset):
            verb = {"read": "read", "write": "write to", "see": "see"}[action]
            raise PermissionDenied(f"tenant {tenant.name!r} may not {verb} dataset "
                                   f"{dataset!r} (no such grant in the agent's config)")

    def visible(self, names: Sequence[str]) -> list[str]:
        tenant = self._tenant()
        return [n for n in names if may(tenant, "see", n)]


def may(tenant: Tenant, action: str, dataset: str) -> bool:
    patterns = {"read": tenant.read, "write": tenant.write,
                "see": (*tenant.read, *tenant.write)}[action]
    return any(fnmatch.fnmatchcase(dataset, p) for p in patterns)


# -- the interceptor -------------------------------------------------------------------------


class Gatekeeper(grpc.ServerInterceptor):
    def __init__(self, config: AgentConfig) -> None:
        self.by_hash = {h: t for t in config.tenants for h in t.tokens}
        self.max_deadline = config.max_deadline_seconds
        self.gates = {t.name: _Gate(t.max_concurrent or config.tenant_max_concurrent)
                      for t in (*config.tenants, NO_AUTH)}
        # With tenants, one tenant may compute in at most its share of the workers, so a
        # tenant with stalled or heavy requests always leaves room for the others.
        share = config.tenant_max_workers or (max(1, config.workers // 2) if config.tenants
                                              else config.workers)
        self.workers = Workers(config.workers, share)
        self.watchdog = Watchdog(config.stream_idle_seconds)

    def intercept_service(self, continuation: Callable[[Any], Any],
                          details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None or details.method.startswith(OPEN_METHODS):
            return handler
        tenant = self.authenticate(details.invocation_metadata or ())
        if tenant is None:
            return _replace_behavior(handler, lambda _behavior: _refuse(
                grpc.StatusCode.UNAUTHENTICATED,
                "a valid bearer token is required (metadata 'authorization: Bearer <token>'; "
                "the bpfstore client sends --token / $BPFSTORE_TOKEN)"))
        works = details.method not in METADATA_METHODS
        return _replace_behavior(handler, lambda behavior: self._admitted(tenant, behavior,
                                                                          handler, works))

    def authenticate(self, metadata: Sequence[tuple[str, Any]]) -> Tenant | None:
        if not self.by_hash:
            return NO_AUTH
        for key, value in metadata:
            if key == "authorization" and isinstance(value, str) and \
                    value.startswith("Bearer "):
                return self.by_hash.get(hash_token(value.removeprefix("Bearer ").strip()))
        return None

    def _admitted(self, tenant: Tenant, behavior: Callable[..., Any], handler: Any,
                  works: bool) -> Callable[..., Any]:
        gate = self.gates[tenant.name]

        @contextlib.contextmanager
        def admission(context: grpc.ServicerContext) -> Iterator[Budget]:
            if not gate.enter():
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"tenant {tenant.name!r} already has {gate.limit} requests "
                              "running (its limit); retry later")
            if tenant is not NO_AUTH:
                observe_tenant(tenant.name)  # the request's log line and metrics name it
            remaining = context.time_remaining()
            deadline = time.monotonic() + min(self.max_deadline, remaining if remaining
                                              is not None else math.inf)
            holding = [False]

            def slot(take: bool) -> None:  # a worker while computing, none while waiting
                if take and works and not holding[0]:
                    self.workers.acquire(tenant.name, budget)
                    holding[0] = True
                elif not take and holding[0]:
                    self.workers.release(tenant.name)
                    holding[0] = False

            budget = Budget(deadline, slot)
            context.add_callback(budget.cancelled.set)  # called when the RPC ends, or is cancelled
            self.watchdog.watch(budget, context)
            try:
                try:
                    slot(True)
                except DeadlineExceeded as exc:
                    context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, str(exc))
                _current.set(Admission(tenant, budget))
                current_budget.set(budget)
                yield budget
            finally:
                _current.set(None)
                current_budget.set(None)
                self.watchdog.forget(budget)
                slot(False)
                gate.leave()

        if handler.response_streaming:
            def streaming(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                with admission(context) as budget:
                    for response in behavior(request, context):
                        try:
                            with budget.on_peer():  # grpc sends it before asking for more
                                yield response
                        except DeadlineExceeded as exc:  # waiting for a worker again
                            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, str(exc))
            return streaming

        def unary(request: Any, context: grpc.ServicerContext) -> Any:
            with admission(context):
                return behavior(request, context)
        return unary


class Workers:
    """Worker slots: at most `limit` requests compute at once, one tenant at most `share` of
    them. A request waits for a slot until its deadline; the gRPC thread pool is larger than
    the admitted requests (create_server), so waiting never blocks metadata or health."""

    def __init__(self, limit: int, share: int) -> None:
        self.limit, self.share = limit, min(share, limit)
        self.running = 0
        self.by_tenant: dict[str, int] = {}
        self._cond = threading.Condition()

    def acquire(self, tenant: str, budget: Budget) -> None:
        with self._cond:
            while self.running >= self.limit or self.by_tenant.get(tenant, 0) >= self.share:
                left = budget.deadline - time.monotonic()
                if left <= 0 or budget.cancelled.is_set():
                    raise DeadlineExceeded("the request waited for a free worker until its "
                                           "deadline (the agent is busy)")
                self._cond.wait(min(left, 0.05))
            self.running += 1
            self.by_tenant[tenant] = self.by_tenant.get(tenant, 0) + 1

    def release(self, tenant: str) -> None:
        with self._cond:
            self.running -= 1
            self.by_tenant[tenant] -= 1
            self._cond.notify_all()


class Watchdog:
    """Drops requests stalled on their peer: a request stream idle for `idle` seconds, a
    response its client does not read for as long, or any such wait past the deadline.
    Cancelling the RPC wakes the worker blocked in gRPC and sets the request's budget."""

    def __init__(self, idle: float, period: float = 0.05) -> None:
        self.idle, self.period = idle, period
        self._watched: dict[Budget, grpc.ServicerContext] = {}
        self._lock = threading.Lock()
        self._running = False  # the thread runs only while there are requests to watch

    def watch(self, budget: Budget, context: grpc.ServicerContext) -> None:
        with self._lock:
            self._watched[budget] = context
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="bpfstore-watchdog",
                                 daemon=True).start()

    def forget(self, budget: Budget) -> None:
        with self._lock:
            self._watched.pop(budget, None)

    def _run(self) -> None:
        while True:
            time.sleep(self.period)
            now = time.monotonic()
            with self._lock:
                if not self._watched:
                    self._running = False
                    return
                watched = list(self._watched.items())
            for budget, context in watched:
                since = budget.waiting_since
                if since is not None and (now - since > self.idle or now > budget.deadline):
                    budget.cancelled.set()
                    context.cancel()


class _Gate:
    """A counter that says no instead of waiting: excess load is refused at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit  # 0: no limit
        self.running = 0
        self._lock = threading.Lock()

    def enter(self) -> bool:
        with self._lock:
            if self.limit and self.running >= self.limit:
                return False
            self.running += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.running -= 1


def _refuse(code: grpc.StatusCode, message: str) -> Callable[..., Any]:
    def refuse(_request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(code, message)
    return refuse


def _replace_behavior(handler: Any, wrap: Callable[[Callable[..., Any]], Callable[..., Any]]
                      ) -> Any:
    """The same kind of method handler with its behavior replaced by `wrap(behavior)`."""
    kinds = (("unary_unary", grpc.unary_unary_rpc_method_handler),
             ("unary_stream", grpc.unary_stream_rpc_method_handler),
             ("stream_unary", grpc.stream_unary_rpc_method_handler),
             ("stream_stream", grpc.stream_stream_rpc_method_handler))
    for attr, make in kinds:
        behavior = getattr(handler, attr)
        if behavior is not None:
            return make(wrap(behavior), request_deserializer=handler.request_deserializer,
                        response_serializer=handler.response_serializer)
    return handler
