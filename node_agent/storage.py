"""Datasets on an agent's local disk: Arrow IPC partitions, a catalog file, atomic commits.

    <data-dir>/datasets/<dataset>/_dataset.json        schema, version, partitions + stats
    <data-dir>/datasets/<dataset>/<partition>.arrow    uncompressed Arrow IPC file

    <data-dir>/datasets/<dataset>/_prepared.json       a write in phase one of its commit

Every write makes a new dataset version, visible whole or not at all. Its partitions are
staged (streamed into a temporary file, normalized for pushdown, fsynced, renamed to a name no
catalog holds yet); `prepare` records the version they make (fsync + rename of
_prepared.json), and `commit` makes it current by replacing the catalog (also by rename) —
one rename, however many partitions. Partition files never change once written: a superseded
version stays readable, for queries that pinned it, for `retention_seconds` and while a
request reads it. At start, files no catalog or prepared write names are leftovers of
interrupted writes and are removed. A partition file is checked against its commit-time
SHA-256 when it is first opened (and again whenever the file changes): a corrupt one is
reported (`PartitionCorrupt`), never served. Each dataset records the tenant that created it
(`owner`); what a tenant's datasets hold is kept in memory and checked against its quota
(limits.Quota) before a write is prepared.

Writes normalize types for pushdown (`normalize`): decimals of precision <= 18 become
`decimal64` (scaled int64), strings `dictionary<int32, string>` (one dictionary per file),
dates and timestamps stay integers; files are written in 64K-row batches. The arrow engine
evaluates decimal64 as scaled int64 (exact, and about ten times faster than Arrow's decimal
kernels) and falls back to decimal128 where a product could overflow 64 bits.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa

from bpfstore.contract.errors import (
    DatasetExists,
    DatasetNotFound,
    PartitionCorrupt,
    PlanInvalid,
    ResourceExhausted,
    VersionGone,
    WriteConflict,
)

from .budget import check_budget
from .catalog import NAME_PATTERN, DatasetMeta, PartitionMeta, Prepared, validate_name
from .limits import (
    Quota,
    Usage,
    WriteLimits,
    check_catalog,
    check_quota,
    check_replicas,
    check_stream,
)
from .normalize import normalize
from .stats import column_stats

log = logging.getLogger("bpfstore.agent")
CATALOG = "_dataset.json"
LOCAL_TXN = "local-"  # write ids of one-shot writes (`write`): aborted by a restart
PREPARED = "_prepared.json"  # a write in phase one of its commit (see prepare)
HISTORY = 256  # committed write ids kept in the catalog, for peers resolving a prepared one
RETENTION_SECONDS = 300.0  # a superseded version stays readable this long for pinned queries
STAGE_TIMEOUT_SECONDS = 3600.0  # a staged write never prepared is dropped after this idle time
BATCH_ROWS = 65536
OPEN_PARTITIONS = 256  # memory-mapped partitions kept open between requests


class Storage:
    """All datasets under one data directory. Thread-safe; one lock per dataset."""

    def __init__(self, data_dir: str | os.PathLike[str], max_write_bytes: int = 8 << 30,
                 retention_seconds: float = RETENTION_SECONDS,
                 limits: WriteLimits | None = None,
                 quota: Callable[[str], Quota] | None = None) -> None:
        self.root = Path(data_dir) / "datasets"
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_write_bytes = max_write_bytes
        self.limits = limits or WriteLimits(max_write_bytes)
        self.retention_seconds = retention_seconds
        self.quota = quota  # tenant -> its quota (None: no quotas)
        self._quota_lock = threading.Lock()  # a quota check and the prepare it admits
        self._staged: dict[str, _Staged] = {}  # txn -> partitions staged, not yet prepared
        self._pending: dict[str, Prepared] = {}  # dataset -> its prepared write (one at most)
        # dataset -> version -> (when superseded, monotonic; its catalog): for pinned readers
        self._retained: dict[str, dict[int, tuple[float, DatasetMeta]]] = {}
        self._pins: dict[tuple[str, int], int] = {}  # (dataset, version) -> running requests
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._cache: dict[str, tuple[float, DatasetMeta]] = {}
        self._tables: dict[str, tuple[tuple[int, ...], pa.Table]] = {}  # open maps, oldest 1st
        self._verified: set[tuple[str, tuple[int, ...]]] = set()  # files whose checksum matched
        self.recover()
        self._held: dict[str, list[tuple[str, Usage]]] = {}  # dataset -> (owner, usage) of
        for name in {*self.names(), *self._pending}:  # its current and prepared versions
            self._measure(name)

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
        _replace_json(self._dir(meta.name) / CATALOG, meta.to_json())
        self._cache.pop(meta.name, None)
        self._measure(meta.name)

    def recover(self) -> None:
        """Remove what interrupted writes left behind: temp files, staged partitions of writes
        never prepared, and versions no longer current. A prepared write stays, with its files,
        until it is committed or aborted (by its client, or from its primary's answer)."""
        for d in self.root.iterdir():
            if not d.is_dir():
                continue
            # A first write that never prepared, or a drop cut short after its rename.
            if d.name.startswith(".dropped-") or not ((d / CATALOG).is_file() or
                                                      (d / PREPARED).is_file()):
                shutil.rmtree(d, ignore_errors=True)
                continue
            try:
                current = self._current(d.name)
                known = {f"{p.id}.arrow" for p in current.partitions} if current else set()
                if (d / PREPARED).is_file():
                    prepared = Prepared.from_json(json.loads((d / PREPARED).read_text()))
                    if current is not None and prepared.txn in current.txns:
                        (d / PREPARED).unlink()  # committed: the crash came before this
                    elif prepared.txn.startswith(LOCAL_TXN):
                        # A one-shot write: its client saw it fail, and nobody can commit it.
                        (d / PREPARED).unlink()
                    else:
                        self._pending[d.name] = prepared
                        known |= {f"{p.id}.arrow" for p in prepared.meta.partitions}
                known |= {CATALOG, PREPARED}
            except (PlanInvalid, ValueError, KeyError) as exc:  # not ours, or a bad catalog
                log.error("dataset directory %s left alone: %s", d, exc)
                continue
            for f in d.iterdir():
                if f.name not in known:
                    f.unlink(missing_ok=True)

    # -- reading -------------------------------------------------------------------------

    def partition_path(self, name: str, pid: str) -> Path:
        return self._dir(name) / f"{validate_name('partition', pid)}.arrow"

    def read(self, name: str, pid: str, meta: DatasetMeta | None = None) -> pa.Table:
        """The partition (of version `meta`, by default the current one) as a zero-copy table
        over a read-only memory map."""
        path = self.partition_path(name, pid)
        try:
            st = path.stat()
            identity = (st.st_ino, st.st_size, st.st_mtime_ns)
            cached = self._tables.get(str(path))
            if cached is not None and cached[0] == identity:
                return cached[1]
            if (str(path), identity) not in self._verified:
                self._check(meta or self.get(name), pid, path, identity)
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

    # -- writing: stage, prepare, commit --------------------------------------------------

    def write(self, name: str, chunks: Iterable[bytes], partition: str = "",
              overwrite: bool = False,
              replicas: Iterable[str] = (), tenant: str = "") -> tuple[DatasetMeta, str, int]:
        """Commit one partition from the pieces of an Arrow IPC stream as a new version; all
        or nothing (a one-partition write on this agent alone: stage, prepare, commit)."""
        txn = LOCAL_TXN + uuid.uuid4().hex
        part = self.stage(name, chunks, txn, partition, replicas, tenant)
        try:
            self.prepare(name, txn, 0, overwrite, [part.id], tenant=tenant)
        except BaseException:
            self.abort(name, txn)
            raise
        return self.commit(name, txn), part.id, part.rows

    def stage(self, name: str, chunks: Iterable[bytes], txn: str, partition: str = "",
              replicas: Iterable[str] = (), tenant: str = "") -> PartitionMeta:
        """Store one partition of write `txn`, invisible until that write commits."""
        directory = self._dir(name)
        pid = validate_name("partition", partition) if partition else uuid.uuid4().hex[:16]
        replicas = check_replicas(replicas, self.limits)
        if self.quota is not None and self._current(name) is None and name not in self._pending:
            # a new dataset past the tenant's quota is refused before its data streams in
            check_quota(tenant, self.usage(tenant) + Usage(datasets=1), self.quota(tenant))
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
            stats = {}
            for f in table.schema:
                check_budget()
                stats[f.name] = column_stats(table.column(f.name))
            part = PartitionMeta(pid, table.num_rows, nbytes, _sha256(staged), stats,
                                 list(replicas))
            with self._lock(name):
                write = self._staged.setdefault(txn, _Staged(name, table.schema))
                current = self._current(name)
                taken = {p.id for p in current.partitions} if current else set()
                if write.dataset != name:
                    raise PlanInvalid(f"write {txn!r} belongs to dataset {write.dataset!r}")
                if pid in taken or pid in write.partitions or (directory / f"{pid}.arrow"
                                                                ).exists():
                    raise DatasetExists(f"dataset {name!r} already has a partition {pid!r}")
                if write.schema is not None and not write.schema.equals(table.schema):
                    raise PlanInvalid(
                        f"schema of partition {pid!r} differs from the write's other "
                        f"partitions: {_schema_text(table.schema)} vs "
                        f"{_schema_text(write.schema)}")
                os.replace(staged, directory / f"{pid}.arrow")  # not named by any catalog yet
                _fsync_dir(directory)
                write.partitions[pid] = part
                write.touched = time.monotonic()
            return part
        finally:
            incoming.unlink(missing_ok=True)
            staged.unlink(missing_ok=True)
            self._remove_if_unused(name)

    def prepare(self, name: str, txn: str, version: int, overwrite: bool,
                partitions: Iterable[str], schema: pa.Schema | None = None,
                primary: str = "", tenant: str = "") -> int:
        """Phase one: record durably the version write `txn` will make (`version`, or the next
        one when 0), so a crash from here on can still commit it; refuses when another write
        is prepared or `version` is not new."""
        with self._lock(name):
            pending = self._pending.get(name)
            if pending is not None and pending.txn == txn:
                return pending.meta.version  # a retried prepare
            write = self._staged.get(txn, _Staged(name, schema))
            if write.dataset != name:
                raise PlanInvalid(f"write {txn!r} belongs to dataset {write.dataset!r}")
            wanted = list(dict.fromkeys(partitions))
            missing = [pid for pid in wanted if pid not in write.partitions]
            if missing:
                raise WriteConflict(f"write to {name!r}: partition(s) {', '.join(missing)} are "
                                    "not staged on this agent (restarted?); nothing committed")
            if pending is not None:
                raise WriteConflict(f"another write to dataset {name!r} is being committed")
            current = self._current(name)
            version = version or (current.version if current else 0) + 1
            if current is not None and version <= current.version:
                raise WriteConflict(f"dataset {name!r} is at version {current.version} already "
                                    f"(a concurrent write); version {version} not committed")
            new_schema = write.schema or (current.schema if current else None)
            if new_schema is None:
                raise PlanInvalid(f"write to {name!r} has neither partitions nor a schema")
            if current and current.partitions and not overwrite and \
                    not current.schema.equals(new_schema):
                raise PlanInvalid(
                    f"schema of the new partition does not match dataset {name!r}: "
                    f"{_schema_text(new_schema)} vs {_schema_text(current.schema)}")
            created = current.created if current else \
                dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            kept = current.partitions if current and not overwrite else []
            # Staged partitions not named (e.g. of a Spark task that failed and ran again) go.
            meta = DatasetMeta(name, new_schema, version, created,
                               [*kept, *(write.partitions[pid] for pid in wanted)],
                               [*(current.txns if current else []), txn][-HISTORY:],
                               current.owner if current and current.owner else tenant)
            # Bounded here, where the new catalog is decided: a commit must not fail later.
            catalog = json.dumps(meta.to_json())
            check_catalog(catalog, name, self.limits)
            prepared = Prepared(txn, meta, primary, time.time())
            with self._quota_lock if self.quota is not None else contextlib.nullcontext():
                if self.quota is not None:
                    check_quota(meta.owner, self.usage(meta.owner, without=name) + Usage(
                        1, len(meta.partitions), meta.stored_bytes, len(catalog)),
                        self.quota(meta.owner))
                self._dir(name).mkdir(parents=True, exist_ok=True)
                _replace_json(self._dir(name) / PREPARED, prepared.to_json())
                self._pending[name] = prepared
                self._measure(name)
            self._staged.pop(txn, None)
            self._gc(name)
            return version

    def commit(self, name: str, txn: str) -> DatasetMeta:
        """Phase two: the prepared version becomes the current one (one catalog rename)."""
        with self._lock(name):
            pending = self._pending.get(name)
            if pending is None or pending.txn != txn:
                current = self._current(name)
                if current is not None and txn in current.txns:
                    return current  # a retried commit
                raise WriteConflict(f"write {txn!r} to dataset {name!r} is not prepared here "
                                    "(aborted); nothing of it is visible")
            old = self._current(name)
            if old is not None:  # kept for the readers that pinned it
                with self._guard:
                    self._retained.setdefault(name, {})[old.version] = (time.monotonic(), old)
            self._commit_catalog(pending.meta)
            self._drop_pending(name)
            self._gc(name)
            return pending.meta

    def abort(self, name: str, txn: str) -> None:
        """Forget a staged or prepared write; its partition files go."""
        with self._lock(name):
            self._staged.pop(txn, None)
            pending = self._pending.get(name)
            if pending is not None and pending.txn == txn:
                self._drop_pending(name)
            self._gc(name)
        self._remove_if_unused(name)

    def status(self, name: str, txn: str) -> str:
        """"committed", "prepared" or "unknown" (never prepared here, or aborted)."""
        pending = self._pending.get(name)
        if pending is not None and pending.txn == txn:
            return "prepared"
        current = self._current(name)
        return "committed" if current is not None and txn in current.txns else "unknown"

    def usage(self, tenant: str, without: str = "") -> Usage:
        """What the datasets `tenant` created hold on this agent (but `without`): each at the
        larger of its current and prepared versions, catalogs at their files' sizes."""
        with self._guard:
            held = [u for name, versions in self._held.items() if name != without
                    if (u := [u for owner, u in versions if owner == tenant])]
        total = Usage()
        for versions in held:
            total += Usage(*(max(values) for values in zip(*map(astuple, versions),
                                                          strict=True)))
        return total

    def _measure(self, name: str) -> None:
        """(After the dataset's catalog or prepared write changed.) What it holds now, kept
        for `usage`, so a quota check reads no catalog."""
        try:
            versions = [(self.get(name), self._dir(name) / CATALOG)]
        except DatasetNotFound:  # a first write, prepared only (or dropped)
            versions = []
        if (pending := self._pending.get(name)) is not None:
            versions.append((pending.meta, self._dir(name) / PREPARED))
        held = [(m.owner, Usage(1, len(m.partitions), m.stored_bytes, _size(path)))
                for m, path in versions]
        with self._guard:
            if held:
                self._held[name] = held
            else:
                self._held.pop(name, None)

    def pending(self, name: str) -> Prepared | None:
        return self._pending.get(name)

    def pending_writes(self) -> list[tuple[str, Prepared]]:
        return list(self._pending.items())

    def _drop_pending(self, name: str) -> None:
        self._pending.pop(name, None)
        path = self._dir(name) / PREPARED
        if path.exists():
            path.unlink()
            _fsync_dir(path.parent)
        self._measure(name)

    def _current(self, name: str) -> DatasetMeta | None:
        try:
            return self.get(name)
        except DatasetNotFound:
            return None

    # -- versions: what readers pin, and when old ones go -----------------------------------

    def version(self, name: str, version: int) -> DatasetMeta:
        """The dataset as of `version` (0: the current one): current, retained, or prepared
        (a reader asks for a prepared version only once another agent has committed it)."""
        if version == 0:
            return self.get(name)
        current = self._current(name)
        if current is not None and current.version == version:
            return current
        kept = self._retained.get(name, {}).get(version)
        if kept is not None:
            return kept[1]
        pending = self._pending.get(name)
        if pending is not None and pending.meta.version == version:
            return pending.meta
        if current is None and pending is None:
            raise DatasetNotFound(f"no dataset named {name!r} on this agent")
        raise VersionGone(f"version {version} of dataset {name!r} is no longer kept on this "
                          f"agent (now at {current.version if current else 0}): re-plan")

    @contextlib.contextmanager
    def pinned(self, name: str, version: int) -> Iterator[DatasetMeta]:
        """`version(name, version)`, whose files stay while the block runs."""
        with self._guard:
            meta = self.version(name, version)
            key = (name, meta.version)
            self._pins[key] = self._pins.get(key, 0) + 1
        try:
            yield meta
        finally:
            with self._guard:
                self._pins[key] -= 1
                if not self._pins[key]:
                    del self._pins[key]

    def sweep(self) -> None:
        """Let expired versions and abandoned staged writes go (called periodically)."""
        now = time.monotonic()
        for txn, write in list(self._staged.items()):
            if now - write.touched > STAGE_TIMEOUT_SECONDS:
                log.info("abandoned staged write %s to dataset %s removed", txn, write.dataset)
                self.abort(write.dataset, txn)
        for name in list(self._retained):
            with self._lock(name):
                self._gc(name)

    def _gc(self, name: str) -> None:
        """(Holding the dataset's lock.) Drop versions superseded longer ago than the
        retention that no running request reads; delete files no kept version names."""
        now = time.monotonic()
        with self._guard:  # with pinned(): a version is either pinned or gone
            retained = {v: (at, m) for v, (at, m) in self._retained.pop(name, {}).items()
                        if now - at < self.retention_seconds or (name, v) in self._pins}
            if retained:
                self._retained[name] = retained
        kept = {v: m for v, (_, m) in retained.items()}
        metas = [*kept.values(), self._current(name), self._pending.get(name)]
        used = {p.id for m in metas if m is not None
                for p in (m.meta if isinstance(m, Prepared) else m).partitions}
        used |= {pid for w in self._staged.values() if w.dataset == name for pid in w.partitions}
        directory = self._dir(name)
        for f in directory.glob("*.arrow") if directory.is_dir() else ():
            if f.stem not in used:
                self._forget(f)
                f.unlink(missing_ok=True)

    def _remove_if_unused(self, name: str) -> None:
        directory = self._dir(name)
        if not (directory / CATALOG).exists() and not (directory / PREPARED).exists() and \
                not any(w.dataset == name for w in self._staged.values()):
            with contextlib.suppress(OSError):  # only when empty: another write may be on
                directory.rmdir()

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
            self._pending.pop(name, None)
            self._retained.pop(name, None)
            with self._guard:
                self._held.pop(name, None)
            for txn in [t for t, w in self._staged.items() if w.dataset == name]:
                del self._staged[txn]
            for key in [k for k in self._tables if Path(k).parent == directory]:
                self._forget(Path(key))
            return True

    def _check(self, meta: DatasetMeta, pid: str, path: Path,
               identity: tuple[int, ...]) -> None:
        """Hash the file once per identity (inode, size, mtime); a mismatch is never served."""
        name = meta.name
        expected = meta.partition(pid).checksum
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


@dataclass
class _Staged:
    dataset: str
    schema: pa.Schema | None
    partitions: dict[str, PartitionMeta] = field(default_factory=dict)
    touched: float = field(default_factory=time.monotonic)


def _replace_json(path: Path, doc: dict[str, Any]) -> None:
    """Write, fsync, rename over `path`, fsync the directory: the new content or the old."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w") as f:
        json.dump(doc, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


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
                check_budget()
                writer.write_batch(batch)
        f.flush()
        os.fsync(f.fileno())
    return path.stat().st_size


def _sha256(path: Path) -> str:
    """The file's SHA-256, the request's budget checked between 1 MiB blocks (a first open
    of a large partition hashes gigabytes)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            check_budget()
            h.update(block)
    return h.hexdigest()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # replaced or dropped meanwhile
        return 0


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _schema_text(schema: pa.Schema) -> str:
    return "(" + ", ".join(f"{f.name}: {f.type}" for f in schema) + ")"


