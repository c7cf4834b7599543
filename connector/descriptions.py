"""What the client knows of a dataset: one snapshot across the agents (`DatasetDescription`),
built from their DescribeDataset answers, and which replica reads each partition.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa

from bpfstore.contract import wire
from bpfstore.contract.binding import logical_type
from bpfstore.contract.errors import DatasetNotFound, PartitionUnavailable, PlanInvalid
from bpfstore.v1 import agent_pb2 as pb


class ColumnStatistics(Mapping[str, dict[str, Any]]):
    """A partition's statistics per column, decoded when a column's are first read: a
    query reads a few columns' (or none, where the agents prune), and decoding all 16 columns of
    61 partitions took 38 ms of a 60 ms describe."""

    def __init__(self, stats: Iterable[pb.ColumnStats]) -> None:
        self._raw = {s.column: s for s in stats}
        self._decoded: dict[str, dict[str, Any]] = {}

    def __getitem__(self, column: str) -> dict[str, Any]:
        if column not in self._decoded:
            self._decoded[column] = _stats_dict(self._raw[column])
        return self._decoded[column]

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __repr__(self) -> str:
        return repr(dict(self))


@dataclass(frozen=True)
class PartitionSummary:
    id: str
    rows: int
    bytes: int
    agents: tuple[str, ...]  # agents that answered that they hold it
    replicas: tuple[str, ...]  # placement recorded at ingest
    stats: Mapping[str, dict[str, Any]]


@dataclass(frozen=True)
class DatasetDescription:
    name: str
    schema: pa.Schema  # logical types
    stored_schema: pa.Schema  # as the agents store it (decimal64, dictionaries)
    version: int  # changes whenever any agent's copy changes
    partitions: tuple[PartitionSummary, ...]
    unreachable: tuple[str, ...] = ()
    # agent -> the dataset version this description pinned there: every request of a query
    # carries it, so the query reads one snapshot (snapshot isolation) while writes commit
    versions: dict[str, int] = field(default_factory=dict, compare=False)

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.partitions)

    @property
    def bytes(self) -> int:
        return sum(p.bytes for p in self.partitions)

    @property
    def agents(self) -> list[str]:
        return sorted({a for p in self.partitions for a in p.agents})



def only_partitions(desc: DatasetDescription, partitions: Sequence[str]) -> DatasetDescription:
    """The description restricted to `partitions` (in that order, each once); all when empty."""
    if not partitions:
        return desc
    known = {p.id: p for p in desc.partitions}
    missing = [p for p in partitions if p not in known]
    if missing:
        raise DatasetNotFound(f"dataset {desc.name!r} has no partition(s) {', '.join(missing)}")
    return replace(desc, partitions=tuple(known[p] for p in dict.fromkeys(partitions)))


def assign(partitions: Sequence[PartitionSummary], dead: set[str],
            corrupt: set[tuple[str, str]]) -> dict[str, list[str]]:
    """Each partition to its least-loaded live replica (ties: the order replicas were found)."""
    load: dict[str, list[str]] = {}
    for p in partitions:
        live = [a for a in p.agents if a not in dead and (a, p.id) not in corrupt]
        if not live:
            continue
        agent = min(live, key=lambda a: len(load.get(a, [])))
        load.setdefault(agent, []).append(p.id)
    return load



def merge_descriptions(dataset: str, infos: dict[str, pb.DatasetInfo],
                        unreachable: list[str]) -> DatasetDescription:
    first = next(iter(infos.values()))
    stored = pa.ipc.read_schema(pa.py_buffer(first.arrow_schema))
    logical = pa.schema([pa.field(f.name, logical_type(f.type)) for f in stored])
    holders: dict[str, list[str]] = {}
    parts: dict[str, pb.PartitionInfo] = {}
    for agent, info in infos.items():
        other = pa.ipc.read_schema(pa.py_buffer(info.arrow_schema))
        if not other.equals(stored):
            raise PlanInvalid(f"dataset {dataset!r} has different schemas on different agents")
        for p in info.partitions:
            holders.setdefault(p.id, []).append(agent)
            parts.setdefault(p.id, p)
    if unreachable:
        _check_complete(dataset, parts, unreachable)
    summaries = tuple(
        PartitionSummary(pid, p.rows, p.bytes, tuple(holders[pid]), tuple(p.replicas),
                         ColumnStatistics(p.stats))
        for pid, p in sorted(parts.items()))
    versions = {agent: i.version for agent, i in infos.items()}
    return DatasetDescription(dataset, logical, stored, sum(versions.values()), summaries,
                              tuple(unreachable), versions)


def _check_complete(dataset: str, parts: dict[str, pb.PartitionInfo],
                    unreachable: list[str]) -> None:
    """With agents down, go on only when replication proves no partition is missing."""
    factor = min((len(p.replicas) for p in parts.values()), default=0)
    if len(unreachable) >= max(factor, 1):
        raise PartitionUnavailable(dataset, [f"(any held only by {a})" for a in unreachable], [
            f"{len(unreachable)} agent(s) unreachable and the dataset has {factor} replica(s)"])


def _stats_dict(s: pb.ColumnStats) -> dict[str, Any]:
    out: dict[str, Any] = {"null_count": s.null_count, "has_nan": s.has_nan}
    for bound in ("min", "max"):
        # Legal data Python cannot hold (a timestamp before year 1, a date after 9999): the
        # bound stays unknown, which only ever costs pruning.
        with contextlib.suppress(PlanInvalid, OverflowError):
            if s.HasField(bound):
                out[bound] = wire.literal_from_proto(getattr(s, bound)).value
    return out


def by_replicas(partitions: Sequence[PartitionSummary]) -> list[list[int]]:
    """Indices of the partitions sharing a replica list, each list in dataset order: the
    runs a task may read talking to one agent (and failing over as one)."""
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, p in enumerate(partitions):
        groups.setdefault(tuple(p.agents), []).append(i)
    return list(groups.values())


def even_runs(items: Sequence[int], size: int) -> list[tuple[int, ...]]:
    """`items` in as few runs of at most `size` as can be, as even as can be, in order."""
    n = -(-len(items) // size)
    return [tuple(items[len(items) * i // n:len(items) * (i + 1) // n]) for i in range(n)]
