"""What a dataset's catalog records (`_dataset.json`, `_prepared.json`): its versions'
schema, partitions with their checksums and statistics, the writes that made them, its owner.
Storage reads and writes them; the executor and the servicer read them."""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa

from bpfstore.contract.errors import DatasetNotFound, PlanInvalid, shown

from .stats import ColumnStats

NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def validate_name(kind: str, name: str) -> str:
    """Dataset and partition names: [A-Za-z0-9_.-], no path separators, no '..'."""
    if not NAME_PATTERN.fullmatch(name or "") or ".." in name:
        raise PlanInvalid(
            f"invalid {kind} name {shown(name)}: use 1-128 characters from [A-Za-z0-9_.-], "
            "not starting with '.' or '-', without '..'"
        )
    return name


@dataclass
class PartitionMeta:
    id: str
    rows: int
    bytes: int
    checksum: str
    stats: dict[str, ColumnStats]
    replicas: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["stats"] = {k: asdict(v) for k, v in self.stats.items()}
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PartitionMeta:
        stats = {k: ColumnStats(**v) for k, v in d.get("stats", {}).items()}
        return cls(d["id"], d["rows"], d["bytes"], d["checksum"], stats, d.get("replicas", []))


@dataclass
class DatasetMeta:
    name: str
    schema: pa.Schema
    version: int
    created: str
    partitions: list[PartitionMeta]
    txns: list[str] = field(default_factory=list)  # the last HISTORY writes; newest last
    owner: str = ""  # the tenant that created it: its quota counts the dataset

    @property
    def txn(self) -> str:
        """The write that made this version."""
        return self.txns[-1] if self.txns else ""

    @functools.cached_property
    def stored_bytes(self) -> int:
        """Bytes of its partition files (a version never changes: summed once)."""
        return sum(p.bytes for p in self.partitions)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "schema": base64.b64encode(self.schema.serialize().to_pybytes()).decode(),
            "version": self.version,
            "created": self.created,
            "partitions": [p.to_json() for p in self.partitions],
            "txns": self.txns,
            "owner": self.owner,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DatasetMeta:
        schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(d["schema"])))
        parts = [PartitionMeta.from_json(p) for p in d["partitions"]]
        return cls(d["name"], schema, d["version"], d["created"], parts, d.get("txns", []),
                   d.get("owner", ""))

    def partition(self, pid: str) -> PartitionMeta:
        for p in self.partitions:
            if p.id == pid:
                return p
        raise DatasetNotFound(f"dataset {self.name!r} has no partition {pid!r} on this agent")


@dataclass
class Prepared:
    """A write in phase one: the version it makes, and who decides whether it commits."""

    txn: str
    meta: DatasetMeta
    primary: str  # the agent whose commit decides ("": this one)
    prepared_at: float  # wall-clock seconds: survives restarts

    def to_json(self) -> dict[str, Any]:
        return {"txn": self.txn, "meta": self.meta.to_json(), "primary": self.primary,
                "prepared_at": self.prepared_at}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Prepared:
        return cls(d["txn"], DatasetMeta.from_json(d["meta"]), d["primary"], d["prepared_at"])


def iter_partitions(meta: DatasetMeta, wanted: Iterable[str]) -> Iterator[PartitionMeta]:
    wanted = list(wanted)
    if not wanted:
        yield from meta.partitions
        return
    for pid in wanted:
        yield meta.partition(pid)
