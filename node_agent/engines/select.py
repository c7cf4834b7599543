"""Which engines this node can run, why not, and which one serves each partition."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa

from bpfstore.contract.combine import merge_partials
from bpfstore.contract.errors import Unsupported, VerifierRejected
from bpfstore.contract.plan import Plan

from ..budget import check_budget
from ..stats import ColumnStats
from .arrow_engine import AggregateResult, ArrowEngine

log = logging.getLogger("bpfstore.agent")


_FORCED_PATH = {"bpf-hot": "hot", "bpf-cold": "cold"}
ARROW_STEP_ROWS = 1 << 20  # arrow evaluates a partition this many rows at a time (~10-100 ms)


@dataclass(frozen=True, slots=True)
class EngineStatus:
    name: str
    available: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Served:
    result: AggregateResult
    engine: str
    path: str = ""
    note: str = ""  # why a partition fell back to arrow


class Engines:
    """The engines of one agent. `auto` uses bpf where it can run the plan, else arrow."""

    def __init__(self, default: str = "auto", data_dir: str = "", arena_bytes: int = 1 << 30,
                 enable_bpf: bool = True) -> None:
        self.arrow = ArrowEngine()
        self.default = default
        self.bpf = None
        reason = "disabled by configuration"
        if enable_bpf:
            try:
                from .bpf.engine import BpfEngine

                self.bpf = BpfEngine(os.path.join(data_dir, "bpf-cache"), arena_bytes)
            except (Unsupported, VerifierRejected, OSError) as exc:
                reason = str(exc)
                log.warning("bpf engine unavailable: %s", reason)
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

    def _bcc(self):  # noqa: ANN202 - bcc is imported only when used
        from .bcc.engine import shared

        return shared()

    def check(self, requested: str) -> str:
        """The engine a request runs on; Unsupported when it names one this node lacks."""
        name = self.default if requested == "auto" else requested
        if name in ("auto", "arrow"):
            return name
        if name == "bcc":
            available, why = self._bcc_status()
            if not available:
                raise Unsupported(f"engine 'bcc' is not available on this node: {why}")
            return name
        for s in self._status:
            if s.name == name:
                if not s.available:
                    raise Unsupported(f"engine {name!r} is not available on this node: "
                                      f"{s.reason}")
                return name
        raise Unsupported(f"engine {name!r} is not available on this node")

    def aggregate(self, requested: str, table: pa.Table, plan: Plan,
                  stats: dict[str, ColumnStats], key: tuple) -> Served:
        name = self.check(requested)
        note = ""
        if name in ("auto", "bpf", "bpf-hot", "bpf-cold") and self.bpf is not None:
            path = _FORCED_PATH.get(name, "")  # "": the engine picks hot or cold
            try:
                result, used = self.bpf.aggregate(table, plan, stats, key, path)
                return Served(result, "bpf", used)
            except (Unsupported, VerifierRejected) as exc:
                if name != "auto":  # forced: say why instead of quietly using arrow
                    raise Unsupported(str(exc)) from None
                note = str(exc)
        # bcc: when forced, or for auto where the SYSCALL engine is unavailable
        if name == "bcc" or (name == "auto" and self.bpf is None and self._bcc_status()[0]):
            try:
                return Served(self._bcc().aggregate(table, plan, stats, key), "bcc", "read")
            except (Unsupported, VerifierRejected) as exc:
                if name != "auto":
                    raise Unsupported(str(exc)) from None
                note = str(exc)
        return Served(self._arrow_aggregate(table, plan), "arrow", "", note)

    def _arrow_aggregate(self, table: pa.Table, plan: Plan) -> AggregateResult:
        """Slices of ARROW_STEP_ROWS rows, the request's budget checked between them; the
        slices' partials merge exactly, as partitions' do."""
        results = []
        for piece in _slices(table):
            check_budget()
            results.append(self.arrow.aggregate(piece, plan))
        if len(results) == 1:
            return results[0]
        return AggregateResult(merge_partials([r.partials for r in results], plan),
                               sum(r.rows_scanned for r in results),
                               sum(r.rows_matched for r in results))

    def scan(self, table: pa.Table, plan: Plan, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """The partition's filtered, projected batches, a slice at a time (as aggregate)."""
        for piece in _slices(table):
            check_budget()
            yield from self.arrow.scan(piece, plan, batch_rows)


def _slices(table: pa.Table) -> Iterator[pa.Table]:
    yield table.slice(0, ARROW_STEP_ROWS)
    for start in range(ARROW_STEP_ROWS, table.num_rows, ARROW_STEP_ROWS):
        yield table.slice(start, ARROW_STEP_ROWS)
