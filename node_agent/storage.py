"""Datasets on an agent's local disk: Arrow IPC partitions, a catalog file, atomic commits.

    <data-dir>/datasets/<dataset>/_dataset.json        schema, version, partitions + stats
    <data-dir>/datasets/<dataset>/<partition>.arrow    uncompressed Arrow IPC file

A write streams into a temporary file, is normalized for pushdown, fsynced and renamed;
only then is the catalog replaced (also by rename), so a partition becomes visible whole or
not at all. Files not named by the catalog are leftovers of interrupted writes and are
removed at start. A partition file is checked against its commit-time SHA-256 when it is
first opened (and again whenever the file changes): a corrupt one is reported
(`PartitionCorrupt`), never served.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import re
import shutil
import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc

from bpfstore.connector.errors import (
    DatasetExists,
    DatasetNotFound,
    PartitionCorrupt,
    PlanInvalid,
    ResourceExhausted,
)

from .limits import WriteLimits, check_catalog, check_replicas, check_stream
from .stats import ColumnStats, column_stats

log = logging.getLogger("bpfstore.agent")
NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
CATALOG = "_dataset.json"
BATCH_ROWS = 65536
OPEN_PARTITIONS = 256  # memory-mapped partitions kept open between requests


def validate_name(kind: str, name: str) -> str:
    """Dataset and partition names: [A-Za-z0-9_.-], no path separators, no '..'."""
    if not NAME_PATTERN.fullmatch(name or "") or ".." in name:
        raise PlanInvalid(
            f"invalid {kind} name {name!r}: use 1-128 characters from [A-Za-z0-9_.-], "
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

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "schema": base64.b64encode(self.schema.serialize().to_pybytes()).decode(),
            "version": self.version,
            "created": self.created,
            "partitions": [p.to_json() for p in self.partitions],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DatasetMeta:
        schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(d["schema"])))
        parts = [PartitionMeta.from_json(p) for p in d["partitions"]]
        return cls(d["name"], schema, d["version"], d["created"], parts)

    def partition(self, pid: str) -> PartitionMeta:
        for p in self.partitions:
            if p.id == pid:
                return p
        raise DatasetNotFound(f"dataset {self.name!r} has no partition {pid!r} on this agent")


def normalize_schema_type(t: pa.DataType, name: str) -> pa.DataType:
    """The stored type of a column: what the engines can walk directly."""
    if pa.types.is_decimal(t):
        if t.precision <= 18:
            return pa.decimal64(t.precision, t.scale)
        if t.precision <= 38:
            return pa.decimal128(t.precision, t.scale)
        raise PlanInvalid(f"column {name!r}: decimal precision {t.precision} exceeds 38")
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.dictionary(pa.int32(), pa.string())
    if pa.types.is_dictionary(t):
        value = normalize_schema_type(t.value_type, name)
        value = value.value_type if pa.types.is_dictionary(value) else value
        return pa.dictionary(pa.int32(), value)
    if pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return pa.binary()
    if pa.types.is_date64(t):
        return pa.date32()
    if pa.types.is_nested(t) or pa.types.is_union(t):
        raise PlanInvalid(f"column {name!r}: nested type {t} is not supported")
    return t


def normalize(table: pa.Table) -> pa.Table:
    """Cast to stored types, one dictionary per column, batches of BATCH_ROWS rows."""
    fields = [pa.field(f.name, normalize_schema_type(f.type, f.name))
              for f in table.schema]
    columns = []
    for f, column in zip(fields, table.columns, strict=True):
        if pa.types.is_dictionary(f.type):
            # Encode the whole column at once: one dictionary per file, as the IPC file format
            # needs (unifying per-chunk dictionaries afterwards is several times slower).
            plain = pc.cast(column, f.type.value_type).combine_chunks()
            column = pa.chunked_array([pc.dictionary_encode(plain).cast(f.type)])
        elif pa.types.is_decimal(f.type) and f.type.bit_width == 64 and column.type != f.type:
            column = column.cast(pa.decimal128(f.type.precision, f.type.scale)).cast(f.type)
        else:
            column = column.cast(f.type)
        columns.append(column)
    out = pa.Table.from_arrays(columns, schema=pa.schema(fields))
    return out


class Storage:
    """All datasets under one data directory. Thread-safe; one lock per dataset."""

    def __init__(self, data_dir: str | os.PathLike[str], max_write_bytes: int = 8 << 30,
                 limits: WriteLimits | None = None) -> None:
        self.root = Path(data_dir) / "datasets"
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_write_bytes = max_write_bytes
        self.limits = limits or WriteLimits(max_write_bytes)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._cache: dict[str, tuple[float, DatasetMeta]] = {}
        self._tables: dict[str, tuple[tuple[int, ...], pa.Table]] = {}  # open maps, oldest 1st
        self._verified: set[tuple[str, tuple[int, ...]]] = set()  # files whose checksum matched
        self.recover()

    # -- catalog -------------------------------------------------------------------------

    def _dir(self, name: str) -> Path:
        return self.root / validate_name("dataset", name)

    def _lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    def names(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir()
                      if NAME_PATTERN.fullmatch(p.name) and (p / CATALOG).is_file())

    def get(self, name: str) -> DatasetMeta:
        path = self._dir(name) / CATALOG
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            raise DatasetNotFound(f"no dataset named {name!r} on this agent") from None
        cached = self._cache.get(name)
        if cached and cached[0] == mtime:
            return cached[1]
        meta = DatasetMeta.from_json(json.loads(path.read_text()))
        self._cache[name] = (mtime, meta)
        return meta

    def _commit_catalog(self, meta: DatasetMeta) -> None:
        directory = self._dir(meta.name)
        tmp = directory / f".{CATALOG}.{uuid.uuid4().hex}.tmp"
        text = json.dumps(meta.to_json())
        check_catalog(text, meta.name, self.limits)
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, directory / CATALOG)
        _fsync_dir(directory)
        self._cache.pop(meta.name, None)

    def recover(self) -> None:
        """Remove what interrupted writes left behind: temp files and uncatalogued partitions."""
        for d in self.root.iterdir():
            if not d.is_dir():
                continue
            # A first write that never committed, or a drop cut short after its rename.
            if d.name.startswith(".dropped-") or not (d / CATALOG).is_file():
                shutil.rmtree(d, ignore_errors=True)
                continue
            try:
                known = {f"{p.id}.arrow" for p in self.get(d.name).partitions} | {CATALOG}
            except (PlanInvalid, ValueError, KeyError) as exc:  # not ours, or a bad catalog
                log.error("dataset directory %s left alone: %s", d, exc)
                continue
            for f in d.iterdir():
                if f.name not in known:
                    f.unlink(missing_ok=True)

    # -- reading -------------------------------------------------------------------------

    def partition_path(self, name: str, pid: str) -> Path:
        return self._dir(name) / f"{validate_name('partition', pid)}.arrow"

    def read(self, name: str, pid: str) -> pa.Table:
        """The partition as a zero-copy table over a read-only memory map."""
        path = self.partition_path(name, pid)
        try:
            st = path.stat()
            identity = (st.st_ino, st.st_size, st.st_mtime_ns)
            cached = self._tables.get(str(path))
            if cached is not None and cached[0] == identity:
                return cached[1]
            if (str(path), identity) not in self._verified:
                self._check(name, pid, path, identity)
            table = pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()
        except FileNotFoundError:
            raise DatasetNotFound(f"partition {pid!r} of dataset {name!r} is missing") from None
        except pa.ArrowInvalid as exc:  # changed between the check and the map: still corrupt
            raise PartitionCorrupt(f"partition {pid!r} of dataset {name!r} is unreadable: "
                                   f"{exc}") from None
        with self._guard:  # committed partition files never change, so a map stays valid
            if len(self._tables) >= OPEN_PARTITIONS:
                self._tables.pop(next(iter(self._tables)))
            self._tables[str(path)] = (identity, table)
        return table

    # -- writing -------------------------------------------------------------------------

    def write(self, name: str, chunks: Iterable[bytes], partition: str = "",
              overwrite: bool = False,
              replicas: Iterable[str] = ()) -> tuple[DatasetMeta, str, int]:
        """Commit one partition from the pieces of an Arrow IPC stream; all or nothing."""
        directory = self._dir(name)
        pid = validate_name("partition", partition) if partition else uuid.uuid4().hex[:16]
        replicas = check_replicas(replicas, self.limits)
        directory.mkdir(parents=True, exist_ok=True)
        incoming = directory / f".incoming-{uuid.uuid4().hex}.tmp"
        staged = directory / f".{pid}.{uuid.uuid4().hex}.tmp"
        try:
            with open(incoming, "wb") as f:
                _copy_limited(chunks, f, self.max_write_bytes)
            check_stream(incoming, self.limits)  # from its headers, before decompressing
            table = _read_stream(incoming)
            table = normalize(table)
            nbytes = _write_ipc_file(table, staged)
            stats = {f.name: column_stats(table.column(f.name)) for f in table.schema}
            checksum = _sha256(staged)
            with self._lock(name):
                meta = self._load_or_new(name, table.schema, overwrite)
                if any(p.id == pid for p in meta.partitions):
                    raise DatasetExists(f"dataset {name!r} already has a partition {pid!r}")
                if meta.partitions and not overwrite and not meta.schema.equals(table.schema):
                    raise PlanInvalid(
                        f"schema of the new partition does not match dataset {name!r}: "
                        f"{_schema_text(table.schema)} vs {_schema_text(meta.schema)}")
                os.replace(staged, directory / f"{pid}.arrow")
                _fsync_dir(directory)
                old = meta.partitions if overwrite else []
                meta.partitions = [p for p in meta.partitions if not overwrite] + [
                    PartitionMeta(pid, table.num_rows, nbytes, checksum, stats, list(replicas))]
                meta.schema = table.schema
                meta.version += 1
                try:
                    self._commit_catalog(meta)
                except ResourceExhausted:  # over max_catalog_bytes: the partition never was
                    (directory / f"{pid}.arrow").unlink(missing_ok=True)
                    raise
                for p in old:
                    self._forget(directory / f"{p.id}.arrow")
                    (directory / f"{p.id}.arrow").unlink(missing_ok=True)
            return meta, pid, table.num_rows
        finally:
            incoming.unlink(missing_ok=True)
            staged.unlink(missing_ok=True)
            if not (directory / CATALOG).exists():
                with contextlib.suppress(OSError):  # only when empty: another write may be on
                    directory.rmdir()

    def _load_or_new(self, name: str, schema: pa.Schema, overwrite: bool) -> DatasetMeta:
        try:
            meta = self.get(name)
            return DatasetMeta(meta.name, meta.schema, meta.version, meta.created,
                               list(meta.partitions))
        except DatasetNotFound:
            now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            return DatasetMeta(name, schema, 0, now, [])

    def drop(self, name: str) -> bool:
        directory = self._dir(name)
        with self._lock(name):
            if not (directory / CATALOG).exists():
                return False
            # Rename first so the dataset disappears atomically, then delete at leisure.
            trash = self.root / f".dropped-{name}-{uuid.uuid4().hex}"
            os.replace(directory, trash)
            shutil.rmtree(trash, ignore_errors=True)
            self._cache.pop(name, None)
            for key in [k for k in self._tables if Path(k).parent == directory]:
                self._forget(Path(key))
            return True

    def _check(self, name: str, pid: str, path: Path, identity: tuple[int, ...]) -> None:
        """Hash the file once per identity (inode, size, mtime); a mismatch is never served."""
        expected = self.get(name).partition(pid).checksum
        if _sha256(path) != expected:
            log.error("partition %s of dataset %s does not match its checksum: not served",
                      pid, name)
            raise PartitionCorrupt(f"partition {pid!r} of dataset {name!r} on this agent is "
                                   "corrupt (checksum mismatch); read it from a replica")
        with self._guard:
            self._verified.add((str(path), identity))

    def _forget(self, path: Path) -> None:
        """Close the cached map of a file about to go, so its disk space is freed."""
        with self._guard:
            self._tables.pop(str(path), None)

    def verify(self, name: str, pid: str) -> bool:
        """True when the partition file still has the checksum recorded at commit."""
        meta = self.get(name).partition(pid)
        return _sha256(self.partition_path(name, pid)) == meta.checksum


def _copy_limited(chunks: Iterable[bytes], f: BinaryIO, limit: int) -> None:
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > limit:
            raise ResourceExhausted(f"write larger than the agent's limit of {limit} bytes")
        f.write(chunk)


def _read_stream(path: Path) -> pa.Table:
    try:
        with pa.memory_map(str(path), "r") as source:
            table = pa.ipc.open_stream(source).read_all()
        # IPC reading checks the framing, not the buffers: damaged offsets or lengths would
        # reach the engines (found by tests/integration/test_fuzz.py).
        table.validate(full=True)
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError, UnicodeDecodeError) as exc:  # bad names
        raise PlanInvalid(f"write stream is not a complete Arrow IPC stream: {exc}") from None
    if table.num_columns == 0:
        raise PlanInvalid("write stream has no columns")
    return table


def _write_ipc_file(table: pa.Table, path: Path) -> int:
    with open(path, "wb") as f:
        with pa.ipc.new_file(f, table.schema) as writer:
            for batch in table.to_batches(max_chunksize=BATCH_ROWS):
                writer.write_batch(batch)
        f.flush()
        os.fsync(f.fileno())
    return path.stat().st_size


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _schema_text(schema: pa.Schema) -> str:
    return "(" + ", ".join(f"{f.name}: {f.type}" for f in schema) + ")"


def iter_partitions(meta: DatasetMeta, wanted: Iterable[str]) -> Iterator[PartitionMeta]:
    wanted = list(wanted)
    if not wanted:
        yield from meta.partitions
        return
    for pid in wanted:
        yield meta.partition(pid)
