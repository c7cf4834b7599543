"""What every engine takes and gives: the `Engine` protocol.

An engine gets a bound plan and a batch of partitions (their tables, statistics and cache
keys) and gives, per partition and in order, its exact partial aggregates (group keys, then
one column per aggregate; types from `binding.partial_type`) with a report of how they were
made. Unsupported (or VerifierRejected) says the engine cannot run the plan; `select.Engines`
then falls back to arrow or, when the engine was asked for by name, says why.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa

from bpfstore.contract.plan import EngineName, Plan, columns_of

from ..stats import ColumnStats


@dataclass(frozen=True, slots=True)
class Partition:
    """One partition as engines see it. `key` names it in engines' caches (arena columns,
    compiled programs, file offsets): (dataset, partition id, checksum), so new data is a
    new key."""

    id: str
    table: pa.Table
    stats: dict[str, ColumnStats]
    key: tuple

    @classmethod
    def of(cls, table: pa.Table, stats: dict[str, ColumnStats], key: tuple) -> Partition:
        """A partition outside storage (tests, probes): its id is the key's second part."""
        return cls(str(key[1]) if len(key) > 1 else "", table, stats, key)


@dataclass(slots=True)
class Report:
    """How one partition was served; the servicer sends it as a `PartitionReport`."""

    partition: str
    engine: str  # the EngineName value that served it, or "stats"
    path: str = ""  # bpf: "hot" or "cold"; bcc: "read"
    note: str = ""  # why the partition did not run on the preferred engine
    pruned: bool = False  # its statistics exclude every row
    rows_scanned: int = 0
    rows_matched: int = 0
    bytes_scanned: int = 0
    time_ns: int = 0


@dataclass(frozen=True, slots=True)
class Served:
    """One partition's partial aggregates and its report."""

    partials: pa.Table
    report: Report


def served(part: Partition, plan: Plan, partials: pa.Table, rows_matched: int,
           engine: EngineName, path: str = "") -> Served:
    """An engine's answer for `part`: every row of it read, `rows_matched` selected."""
    return Served(partials, Report(part.id, engine.value, path, rows_scanned=part.table.num_rows,
                                   rows_matched=rows_matched,
                                   bytes_scanned=bytes_read(part.table, plan)))


def bytes_read(table: pa.Table, plan: Plan) -> int:
    """Bytes of column data the plan reads from this partition."""
    names = _columns_read(plan) if plan.columns or plan.aggregates else table.column_names
    return sum(table.column(n).nbytes for n in names)


_COLUMNS_READ: dict[int, tuple[Plan, frozenset[str]]] = {}  # id(plan) -> (plan, its columns)
_COLUMNS_READ_LOCK = threading.Lock()


def _columns_read(plan: Plan) -> frozenset[str]:
    """The columns a plan with a projection or aggregates reads, found once per plan object:
    a request's partitions share one, and walking it took 6 % of a warm Q6's agent time at 61
    partitions (hashing it to look it up would walk it too)."""
    with _COLUMNS_READ_LOCK:
        hit = _COLUMNS_READ.get(id(plan))
    if hit is not None and hit[0] is plan:
        return hit[1]
    names = frozenset({*columns_of([plan.filter, *(a.arg for a in plan.aggregates)]),
                       *plan.group_by, *plan.columns})
    with _COLUMNS_READ_LOCK:
        if len(_COLUMNS_READ) >= 64:  # the plans of recent requests, kept alive meanwhile
            _COLUMNS_READ.pop(next(iter(_COLUMNS_READ)))
        _COLUMNS_READ[id(plan)] = (plan, names)
    return names


class Engine(Protocol):
    name: EngineName

    def aggregate(self, plan: Plan, partitions: Iterable[Partition]) -> Iterator[Served]:
        """Each partition's partials, in order, as the caller asks for them (partitions are
        taken one at a time, so a lazy iterable reads each only when its turn comes)."""
        ...
