"""What the current request may still spend: its deadline, and whether it was cancelled.

The interceptor (auth.py) gives every admitted request a `Budget`; engines and scans call
`check_budget()` between batches and inside long evaluations, so a cancelled or expired
request stops within one step instead of running to the end. No grpc object reaches the
engines: gRPC's cancellation callback only sets a flag here.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from bpfstore.contract.errors import DeadlineExceeded


class Budget:
    def __init__(self, deadline: float, on_peer: Callable[[bool], None] | None = None) -> None:
        self.deadline = deadline  # time.monotonic() after which the request gives up
        self.cancelled = threading.Event()  # the client went away, or the agent dropped it
        self.waiting_since: float | None = None  # on the peer: reading a stream or sending
        self._on_peer = on_peer  # gives back / takes again the request's worker slot

    def check(self) -> None:
        if self.cancelled.is_set():
            raise DeadlineExceeded("the request was cancelled (the client went away, or the "
                                   "agent dropped a stalled stream)")
        if time.monotonic() > self.deadline:
            raise DeadlineExceeded("the request ran past its deadline (the client's, or the "
                                   "agent's max_deadline_seconds)")

    @contextlib.contextmanager
    def on_peer(self) -> Iterator[None]:
        """While the request waits for its client (the next chunk of a stream, or room to
        send one), it holds no worker slot and the watchdog times the wait."""
        if self._on_peer is not None:
            self._on_peer(False)
        self.waiting_since = time.monotonic()
        try:
            yield
        finally:
            self.waiting_since = None
        if self._on_peer is not None:  # not when the wait failed: the request is over
            self._on_peer(True)


current: contextvars.ContextVar[Budget | None] = contextvars.ContextVar(
    "bpfstore_budget", default=None)


def check_budget() -> None:
    """Raise DeadlineExceeded when the current request was cancelled or is past its deadline
    (a no-op outside a request, e.g. in unit tests and the capability probe)."""
    budget = current.get()
    if budget is not None:
        budget.check()


T = TypeVar("T")


def from_peer(items: Iterator[T]) -> Iterator[T]:
    """`items` (a request stream) with each wait for the next one under `on_peer`, and the
    budget checked after it."""
    budget = current.get()
    while True:
        if budget is None:
            item = next(items, None)
        else:
            with budget.on_peer():
                item = next(items, None)
            budget.check()
        if item is None:
            return
        yield item


@contextlib.contextmanager
def unbudgeted() -> Iterator[None]:
    """Work done once for all requests (an engine's capability probe), which the request
    that happens to trigger it must not cut short."""
    token = current.set(None)
    try:
        yield
    finally:
        current.reset(token)
