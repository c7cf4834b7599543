"""Which engines this node can run, why not, and which one serves each partition."""

from __future__ import annotations

import contextvars
import logging
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bpfstore.contract.errors import Unsupported, VerifierRejected
from bpfstore.contract.plan import EngineName, Plan

from .arrow_engine import ArrowEngine
from .base import Engine, Partition, Served
from .bcc import engine as bcc
from .bpf.codegen.template import RUN_SLOTS
from .bpf.engine import BpfEngine

log = logging.getLogger("bpfstore.agent")

_BPF = (EngineName.BPF, EngineName.BPF_HOT, EngineName.BPF_COLD)
if TYPE_CHECKING:  # mypy checks that every engine implements the protocol
    _ENGINES: tuple[type[Engine], ...] = (ArrowEngine, BpfEngine, bcc.BccEngine)


@dataclass(frozen=True, slots=True)
class EngineStatus:
    name: str
    available: bool
    reason: str = ""


class Engines:
    """The engines of one agent. `auto` uses bpf where it can run the plan, else arrow."""

    def __init__(self, default: str | EngineName = EngineName.AUTO, data_dir: str = "",
                 arena_bytes: int = 1 << 30, enable_bpf: bool = True,
                 spread: int | None = None) -> None:
        self.arrow = ArrowEngine()
        # Partitions of one bpf request run `spread` at a time on a pool shared by all
        # requests (so at most that many CPUs): the kernel runs release the GIL.
        self.spread = min(spread or os.cpu_count() or 1, RUN_SLOTS)
        self.pool = futures.ThreadPoolExecutor(self.spread, thread_name_prefix="bpf-run")
        self.default = EngineName.parse(default)
        self.bpf: BpfEngine | None = None
        reason = "disabled by configuration"
        if enable_bpf:
            try:
                self.bpf = BpfEngine(os.path.join(data_dir, "bpf-cache"), arena_bytes,
                                     spread or 0)
            except (Unsupported, VerifierRejected, OSError) as exc:
                reason = str(exc)
                log.warning("bpf engine unavailable: %s", reason)
            if self.bpf is not None and all(self.bpf.paths.values()):
                # neither path runs (e.g. arena maps refused): the engine as a whole is not there
                reason = "; ".join(sorted(set(self.bpf.paths.values())))
                self.bpf = None
        self._status = [EngineStatus("arrow", True),
                        EngineStatus("bpf", self.bpf is not None,
                                     "" if self.bpf is not None else reason)]
        for path in ("hot", "cold"):  # each data path of bpf, forced by engine="bpf-<path>"
            why = self.bpf.paths[path] if self.bpf is not None else reason
            self._status.append(EngineStatus(f"bpf-{path}", not why, why))
        # bcc (the read-path engine for kernels without SYSCALL programs) is probed on first
        # use: a compile takes ~0.6 s, and auto needs it only where bpf is unavailable
        self.enable_bcc = enable_bpf

    @property
    def status(self) -> list[EngineStatus]:
        return [*self._status, EngineStatus("bcc", *self._bcc_status())]

    def _bcc_status(self) -> tuple[bool, str]:
        if not self.enable_bcc:
            return False, "disabled by configuration"
        try:
            self._bcc()
        except Unsupported as exc:
            return False, str(exc)
        return True, ""

    def _bcc(self) -> bcc.BccEngine:
        return bcc.shared()

    def check(self, requested: EngineName) -> EngineName:
        """The engine a request runs on; Unsupported when it names one this node lacks."""
        name = self.default if requested is EngineName.AUTO else requested
        if name in (EngineName.AUTO, EngineName.ARROW):
            return name
        if name is EngineName.BCC:
            available, why = self._bcc_status()
        else:
            status = next(s for s in self._status if s.name == name.value)
            available, why = status.available, status.reason
        if not available:
            raise Unsupported(f"engine {name.value!r} is not available on this node: {why}")
        return name

    def aggregate(self, plan: Plan, partitions: Iterable[Partition]) -> Iterator[Served]:
        """The `Engine` protocol over the engine the plan names, checked now (before any
        partition is read): with auto, each partition falls back to arrow where bpf (or bcc)
        cannot run the plan."""
        name = self.check(plan.engine)
        if self.bpf is None or self.spread == 1 or name not in (EngineName.AUTO, *_BPF):
            return (self._one(name, plan, part) for part in partitions)
        return self._spread(name, plan, partitions)

    def _spread(self, name: EngineName, plan: Plan, partitions: Iterable[Partition]
                ) -> Iterator[Served]:
        """`_one` over the pool, `spread` partitions in flight, answered in order; each task
        runs in a copy of the request's context (its budget). When the request ends early
        (an error, a cancel), what has not started is cancelled and the rest waited for."""
        window: deque[futures.Future[Served]] = deque()
        try:
            for part in partitions:
                run = contextvars.copy_context().run
                window.append(self.pool.submit(run, self._one, name, plan, part))
                if len(window) >= self.spread:
                    yield window.popleft().result()
            while window:
                yield window.popleft().result()
        finally:
            for waiting in window:
                waiting.cancel()
            futures.wait(window)

    def _one(self, name: EngineName, plan: Plan, part: Partition) -> Served:
        """The partition on the engine `name` says, timed (the report's time_ns)."""
        start = time.perf_counter_ns()
        result = self._answer(name, plan, part)
        result.report.time_ns = time.perf_counter_ns() - start
        return result

    def _answer(self, name: EngineName, plan: Plan, part: Partition) -> Served:
        note = ""
        if name in (EngineName.AUTO, *_BPF) and self.bpf is not None:
            try:
                return self.bpf.aggregate_one(plan, part, name.path)
            except (Unsupported, VerifierRejected) as exc:
                if name is not EngineName.AUTO:  # forced: say why instead of quietly using arrow
                    raise _refused(name, part, exc) from None
                note = str(exc)
        # bcc: when forced, or for auto where the SYSCALL engine is unavailable
        if name is EngineName.BCC or (name is EngineName.AUTO and self.bpf is None
                                      and self._bcc_status()[0]):
            try:
                return self._bcc().aggregate_one(plan, part)
            except (Unsupported, VerifierRejected) as exc:
                if name is not EngineName.AUTO:
                    raise _refused(name, part, exc) from None
                note = str(exc)
        result = self.arrow.aggregate_one(plan, part)
        result.report.note = note
        return result


def _refused(name: EngineName, part: Partition, exc: Exception) -> Unsupported:
    """A forced engine's refusal, naming the engine and the partition it refused."""
    return Unsupported(f"engine {name.value!r} cannot run this plan on partition "
                       f"{part.id or '?'}: {exc}")
