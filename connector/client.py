"""`Client`: the connector's core — fan plans out to agents, fail over, merge exactly, report.

One reused channel per agent. A partition is read from one live replica; when its agent is
unreachable the partition moves to the next replica, and when none is left the query fails
naming the partitions — a query never returns a silently partial answer.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any, TypeVar

import grpc
import pyarrow as pa

from bpfstore.contract import wire
from bpfstore.contract.binding import bind_plan, logical_type
from bpfstore.contract.combine import FinalAggregate, expand, finish, merge_partials
from bpfstore.contract.errors import (
    ArithmeticOverflow,
    BpfstoreError,
    DatasetExists,
    DatasetNotFound,
    PartitionCorrupt,
    PartitionUnavailable,
    PermissionDenied,
    PlanInvalid,
    ResourceExhausted,
    Unauthenticated,
    Unsupported,
    VersionGone,
    WriteConflict,
)
from bpfstore.contract.plan import Aggregate, Dialect, EngineName, Expr, Plan
from bpfstore.v1 import agent_pb2 as pb
from bpfstore.v1 import agent_pb2_grpc

from .transport import Transport, resolve_transport

DEFAULT_AGENT = "127.0.0.1:7340"
WRITE_PIECE = 1 << 20
_MAX_MESSAGE = 256 << 20
T = TypeVar("T")


class AgentUnavailable(BpfstoreError):
    """An agent could not be reached (down, or the deadline passed)."""


_FROM_STATUS: dict[grpc.StatusCode, type[BpfstoreError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: PlanInvalid,
    grpc.StatusCode.NOT_FOUND: DatasetNotFound,
    grpc.StatusCode.UNIMPLEMENTED: Unsupported,
    grpc.StatusCode.OUT_OF_RANGE: ArithmeticOverflow,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.ALREADY_EXISTS: DatasetExists,
    grpc.StatusCode.UNAVAILABLE: AgentUnavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: AgentUnavailable,
    grpc.StatusCode.DATA_LOSS: PartitionCorrupt,
    # The client never cancels its calls: CANCELLED comes from an agent shutting down (SIGTERM
    # drain), so the partitions move to a replica like for an agent that is down.
    grpc.StatusCode.CANCELLED: AgentUnavailable,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.ABORTED: VersionGone,
    grpc.StatusCode.FAILED_PRECONDITION: WriteConflict,
}
REPLANS = 3  # a query whose pinned version went away is planned again on the new one
COMMIT_RETRY_SECONDS = 30.0  # an agent unreachable at commit is retried this long


def parse_agents(agents: Sequence[str] | str | None) -> list[str]:
    if agents is None:
        agents = os.environ.get("BPFSTORE_AGENTS") or DEFAULT_AGENT
    if isinstance(agents, str):
        agents = agents.split(",")
    out = [a.strip() for a in agents if a.strip()]
    if not out:
        raise PlanInvalid("no agents given")
    return list(dict.fromkeys(out))


def _error(agent: str, exc: grpc.RpcError) -> BpfstoreError:
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else str(exc)
    cls = _FROM_STATUS.get(code, BpfstoreError)
    return cls(f"agent {agent}: {details}" if cls is AgentUnavailable or cls is BpfstoreError
               else details)


# -- results and reports ---------------------------------------------------------------------


@dataclass
class PartitionReport:
    agent: str
    partition: str
    engine: str
    path: str = ""
    rows_scanned: int = 0
    rows_matched: int = 0
    bytes_scanned: int = 0
    time_ns: int = 0
    pruned: bool = False
    note: str = ""


@dataclass
class QueryReport:
    mode: str = ""
    dataset: str = ""
    partitions: list[PartitionReport] = field(default_factory=list)
    bytes_moved: int = 0
    wall_seconds: float = 0.0
    failovers: list[str] = field(default_factory=list)

    @property
    def bytes_scanned(self) -> int:
        return sum(p.bytes_scanned for p in self.partitions)

    @property
    def rows_scanned(self) -> int:
        return sum(p.rows_scanned for p in self.partitions)

    @property
    def engines(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for p in self.partitions:
            counts[p.engine] = counts.get(p.engine, 0) + 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "dataset": self.dataset,
            "bytes_scanned": self.bytes_scanned,
            "bytes_moved": self.bytes_moved,
            "rows_scanned": self.rows_scanned,
            "wall_seconds": round(self.wall_seconds, 6),
            "engines": self.engines,
            "failovers": self.failovers,
            "partitions": [asdict(p) for p in self.partitions],
        }


@dataclass(frozen=True)
class PartitionSummary:
    id: str
    rows: int
    bytes: int
    agents: tuple[str, ...]  # agents that answered that they hold it
    replicas: tuple[str, ...]  # placement recorded at ingest
    stats: dict[str, dict[str, Any]]


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


@dataclass(frozen=True)
class WriteSummary:
    dataset: str
    rows: int
    partitions: int
    agents: tuple[str, ...]


@dataclass
class StagedWrite:
    """Partitions of one write staged on the agents, invisible until `Client.commit_write`."""

    txn: str
    rows: int = 0
    partitions: dict[str, list[str]] = field(default_factory=dict)  # agent -> partition ids
    schema: pa.Schema | None = None

    def add(self, other: StagedWrite) -> None:
        """Fold in what another stager of the same write staged (e.g. a Spark task)."""
        self.rows += other.rows
        for agent, pids in other.partitions.items():
            self.partitions.setdefault(agent, []).extend(pids)
        self.schema = self.schema or other.schema

    @property
    def count(self) -> int:
        return len({p for pids in self.partitions.values() for p in pids})


# -- the client ------------------------------------------------------------------------------


class Client:
    def __init__(self, agents: Sequence[str] | str | None = None, *, timeout: float = 300.0,
                 parallelism: int = 8, transport: Transport | None = None) -> None:
        """`transport`: TLS and token (connector/transport.py); by default from
        $BPFSTORE_TLS_CA, $BPFSTORE_TLS_CERT, $BPFSTORE_TLS_KEY and $BPFSTORE_TOKEN."""
        self.agents = parse_agents(agents)
        self.transport = transport if transport is not None else resolve_transport()
        self.timeout = timeout
        self.last_report = QueryReport()
        self._stubs: dict[str, agent_pb2_grpc.AgentStub] = {}
        self._channels: list[grpc.Channel] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max(parallelism, len(self.agents)))

    def close(self) -> None:
        for ch in self._channels:
            ch.close()
        self._pool.shutdown(wait=False)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _stub(self, agent: str) -> agent_pb2_grpc.AgentStub:
        with self._lock:
            if agent not in self._stubs:
                channel = self.transport.channel(agent, options=[
                    ("grpc.max_receive_message_length", _MAX_MESSAGE),
                    ("grpc.max_send_message_length", _MAX_MESSAGE),
                    # An agent that comes back (restarted) is used again within a second,
                    # not after grpc's default backoff of up to two minutes.
                    ("grpc.initial_reconnect_backoff_ms", 200),
                    ("grpc.max_reconnect_backoff_ms", 1000),
                ])
                self._channels.append(channel)
                self._stubs[agent] = agent_pb2_grpc.AgentStub(channel)
            return self._stubs[agent]

    def _call(self, agent: str, method: str, request: Any, timeout: float | None = None) -> Any:
        try:
            return getattr(self._stub(agent), method)(request, timeout=timeout or self.timeout)
        except grpc.RpcError as exc:
            raise _error(agent, exc) from None

    def _each_agent(self, method: str, request: Any, timeout: float | None = None
                    ) -> dict[str, Any | BpfstoreError]:
        """Call every agent in parallel; per agent the response or the error."""
        def one(agent: str) -> Any:
            try:
                return self._call(agent, method, request, timeout)
            except BpfstoreError as exc:
                return exc
        return dict(zip(self.agents, self._pool.map(one, self.agents), strict=True))

    # -- metadata ------------------------------------------------------------------------

    def info(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for agent, r in self._each_agent("GetInfo", pb.GetInfoRequest(), timeout=10).items():
            if isinstance(r, BpfstoreError):
                out.append({"agent": agent, "error": str(r)})
                continue
            out.append({
                "agent": agent, "version": r.version, "node": r.node, "kernel": r.kernel,
                "default_engine": r.default_engine,
                "engines": [{"name": e.name, "available": e.available, "reason": e.reason}
                            for e in r.engines],
                "limits": dict(r.limits),
            })
        return out

    def datasets(self) -> list[DatasetDescription]:
        names: set[str] = set()
        for r in self._each_agent("ListDatasets", pb.ListDatasetsRequest()).values():
            if isinstance(r, BpfstoreError):
                raise r if not isinstance(r, AgentUnavailable) else AgentUnavailable(
                    f"cannot list datasets: {r}")
            names.update(d.name for d in r.datasets)
        return [self.describe(n) for n in sorted(names)]

    def describe(self, dataset: str) -> DatasetDescription:
        """The dataset as one snapshot: each agent's current version — or, while a write is
        committing, the version it has prepared when another agent has committed that write
        already (its primary's commit decided it), so no reader sees half of a write."""
        responses = self._each_agent("DescribeDataset", pb.DescribeDatasetRequest(dataset=dataset))
        decided = {r.txn for r in responses.values() if isinstance(r, pb.DatasetInfo) and r.txn}
        for agent, r in responses.items():
            if isinstance(r, pb.DatasetInfo) and r.pending_txn in decided and \
                    r.pending_version > r.version:
                request = pb.DescribeDatasetRequest(dataset=dataset, version=r.pending_version)
                try:
                    responses[agent] = self._call(agent, "DescribeDataset", request)
                except BpfstoreError as exc:
                    responses[agent] = exc
        infos: dict[str, pb.DatasetInfo] = {}
        unreachable = []
        for agent, r in responses.items():
            if isinstance(r, AgentUnavailable):
                unreachable.append(agent)
            elif isinstance(r, DatasetNotFound):
                continue
            elif isinstance(r, BpfstoreError):
                raise r
            elif r.version:  # 0: only a first write prepared there, not committed anywhere
                infos[agent] = r
        if not infos:
            if unreachable:
                raise AgentUnavailable(f"dataset {dataset!r}: no agent reachable "
                                       f"({', '.join(unreachable)}): "
                                       f"{responses[unreachable[0]]}")  # e.g. a TLS error
            raise DatasetNotFound(
                f"no dataset named {dataset!r} on agents {', '.join(self.agents)}")
        return _merge_descriptions(dataset, infos, unreachable)

    # -- queries -------------------------------------------------------------------------

    def aggregate(self, dataset: str, aggregates: Sequence[FinalAggregate],
                  where: Expr | None = None, group_by: Sequence[str] = (),
                  dialect: str | Dialect = "sql", engine: str | EngineName = "auto",
                  names: Sequence[str] | None = None) -> pa.Table:
        """Final aggregates, computed by the agents next to the data and merged exactly."""
        started = time.perf_counter()
        engine = EngineName.parse(engine)
        plan_aggs, finishers = expand(list(aggregates), names)

        def run() -> pa.Table:
            desc = self.describe(dataset)
            plan = Plan(dataset, filter=where, group_by=tuple(group_by),
                        aggregates=tuple(plan_aggs), dialect=Dialect(dialect), engine=engine)
            bound = bind_plan(plan, desc.stored_schema)  # fails early, with the agent's message
            report = QueryReport()
            merged = self.aggregate_partials(dataset, plan_aggs, where, group_by, dialect,
                                             desc=desc, report=report, engine=engine)
            result = finish(merged, bound, finishers)
            report.wall_seconds = time.perf_counter() - started
            self.last_report = report
            return result

        return _replanned(run)

    def scan(self, dataset: str, columns: Sequence[str] | None = None,
             where: Expr | None = None, dialect: str | Dialect = "sql") -> Iterator[pa.RecordBatch]:
        """Rows with the filter and projection applied on the agents, partition by partition;
        planned again when the pinned version goes away before the first batch (after it, the
        error is raised: rows of two versions are never mixed)."""
        yielded = False
        for attempt in range(REPLANS):
            try:
                for batch in self._scan_once(dataset, columns, where, dialect):
                    yielded = True
                    yield batch
                return
            except VersionGone:
                if yielded or attempt + 1 == REPLANS:
                    raise

    def _scan_once(self, dataset: str, columns: Sequence[str] | None, where: Expr | None,
                   dialect: str | Dialect) -> Iterator[pa.RecordBatch]:
        started = time.perf_counter()
        desc = self.describe(dataset)
        plan = Plan(dataset, filter=where, columns=tuple(columns or ()), dialect=Dialect(dialect))
        bind_plan(plan, desc.stored_schema)
        report = QueryReport(mode="scan", dataset=dataset)
        self.last_report = report

        def run(agent: str, parts: list[str], version: int
                ) -> tuple[str, list[pa.RecordBatch], list, int]:
            return self._scan_call(agent, plan, parts, version)

        # One partition per call, so a failed agent's partition is retried whole elsewhere.
        for _, batches, reports, nbytes in self._fan_out(desc, run, report, per_partition=True):
            report.partitions.extend(reports)
            report.bytes_moved += nbytes
            report.wall_seconds = time.perf_counter() - started
            yield from batches

    def scan_table(self, dataset: str, columns: Sequence[str] | None = None,
                   where: Expr | None = None, dialect: str | Dialect = "sql") -> pa.Table:
        # all or nothing, so unlike scan() it can plan again after some batches arrived
        batches = _replanned(lambda: list(self._scan_once(dataset, columns, where, dialect)))
        if batches:
            return pa.Table.from_batches(batches)
        desc = self.describe(dataset)
        schema = desc.schema if not columns else pa.schema([desc.schema.field(c) for c in columns])
        return schema.empty_table()

    def sql(self, text: str, engine: str | EngineName = "auto") -> pa.Table:
        from .sql import run_sql

        return run_sql(self, text, engine=engine)

    # -- one partition at a time, for engines that schedule partitions themselves (Dask) ---

    def aggregate_partials(self, dataset: str, aggregates: Sequence[Aggregate],
                           where: Expr | None = None, group_by: Sequence[str] = (),
                           dialect: str | Dialect = "pandas", partitions: Sequence[str] = (),
                           desc: DatasetDescription | None = None,
                           report: QueryReport | None = None,
                           engine: str | EngineName = "auto") -> pa.Table:
        """Merged but unfinished partials of `partitions` (all when empty): the caller merges
        them further with `combine.merge_partials` and ends with `combine.finish`.
        `desc` (from an earlier `describe`) saves a DescribeDataset round per call and pins its
        versions: every call with it reads the same snapshot, or fails with VersionGone once
        an agent no longer keeps it (plan again with a new `describe`). `report`, when given,
        is filled instead of `last_report` (which concurrent callers share)."""
        engine = EngineName.parse(engine)
        if desc is None:
            return _replanned(lambda: self.aggregate_partials(
                dataset, aggregates, where, group_by, dialect, partitions,
                self.describe(dataset), report, engine))
        desc = only_partitions(desc, partitions)
        plan = Plan(dataset, filter=where, group_by=tuple(group_by),
                    aggregates=tuple(aggregates), dialect=Dialect(dialect), engine=engine)
        bound = bind_plan(plan, desc.stored_schema)
        own = report is None
        report = report or QueryReport()
        report.mode, report.dataset = "aggregate", dataset

        def run(agent: str, parts: list[str], version: int
                ) -> tuple[pa.Table, list[PartitionReport], int]:
            request = pb.AggregateRequest(plan=wire.plan_to_proto(
                Plan(**{**_fields(plan), "partitions": tuple(parts)})), dataset_version=version)
            response = self._call(agent, "Aggregate", request)
            table = pa.ipc.open_stream(response.partials).read_all()
            return table, [_report(agent, r) for r in response.partitions], response.ByteSize()

        tables = []
        for table, reports, nbytes in self._fan_out(desc, run, report):
            tables.append(table)
            report.partitions.extend(reports)
            report.bytes_moved += nbytes
        if own:
            self.last_report = report
        return merge_partials(tables, bound) if tables else bound_empty(bound, desc)

    def scan_partitions(self, dataset: str, partitions: Sequence[str],
                        columns: Sequence[str] | None = None, where: Expr | None = None,
                        dialect: str | Dialect = "pandas",
                        desc: DatasetDescription | None = None,
                        report: QueryReport | None = None) -> pa.Table:
        """`scan_table` restricted to `partitions`, in the order given (see aggregate_partials)."""
        if desc is None:
            return _replanned(lambda: self.scan_partitions(
                dataset, partitions, columns, where, dialect, self.describe(dataset), report))
        desc = only_partitions(desc, partitions)
        plan = Plan(dataset, filter=where, columns=tuple(columns or ()), dialect=Dialect(dialect))
        bind_plan(plan, desc.stored_schema)
        own = report is None
        report = report or QueryReport()
        report.mode, report.dataset = "scan", dataset

        def run(agent: str, parts: list[str], version: int
                ) -> tuple[str, list[pa.RecordBatch], list, int]:
            return self._scan_call(agent, plan, parts, version)

        by_part: dict[str, list[pa.RecordBatch]] = {}
        for pid, batches, reports, nbytes in self._fan_out(desc, run, report, per_partition=True):
            by_part[pid] = batches
            report.partitions.extend(reports)
            report.bytes_moved += nbytes
        if own:
            self.last_report = report
        ordered = [b for p in desc.partitions for b in by_part.get(p.id, [])]
        if ordered:
            return pa.Table.from_batches(ordered)
        schema = desc.schema if not columns else pa.schema([desc.schema.field(c) for c in columns])
        return schema.empty_table()

    def _scan_call(self, agent: str, plan: Plan, parts: list[str], version: int
                   ) -> tuple[str, list[pa.RecordBatch], list[PartitionReport], int]:
        """One Scan RPC over `parts` (one partition): its batches, reports and bytes moved."""
        request = pb.ScanRequest(plan=wire.plan_to_proto(
            Plan(**{**_fields(plan), "partitions": tuple(parts)})), dataset_version=version)
        batches: list[pa.RecordBatch] = []
        reports: list[PartitionReport] = []
        nbytes = 0
        try:
            for chunk in self._stub(agent).Scan(request, timeout=self.timeout):
                nbytes += chunk.ByteSize()
                if chunk.arrow_ipc:
                    batches.extend(pa.ipc.open_stream(chunk.arrow_ipc).read_all().to_batches())
                if chunk.HasField("report"):
                    reports.append(_report(agent, chunk.report))
        except grpc.RpcError as exc:
            raise _error(agent, exc) from None
        return parts[0], batches, reports, nbytes

    def _fan_out(self, desc: DatasetDescription, run: Callable[[str, list[str], int], Any],
                 report: QueryReport, per_partition: bool = False) -> Iterator[Any]:
        """Run `run(agent, partitions, pinned version)` over a live replica of every partition,
        failing over."""
        pins = dict(desc.versions)
        dead: set[str] = set(desc.unreachable)
        corrupt: set[tuple[str, str]] = set()  # (agent, partition): that copy failed its checksum
        causes: dict[str, list[str]] = {}
        pending = [p for p in desc.partitions]
        refreshes = 0
        while pending:
            assignment = _assign(pending, dead, corrupt)
            missing = [p.id for p in pending if p.id not in {x for v in assignment.values()
                                                            for x in v}]
            if missing and refreshes < 2 and (fresh := self._redescribe(desc.name)):
                # Agents down when `desc` was taken may be back (restarted): ask again.
                refreshes += 1
                if any(pins.get(a, v) != v for a, v in fresh.versions.items()):
                    raise VersionGone(f"dataset {desc.name!r} changed during the query")
                pins = {**fresh.versions, **pins}  # agents back since: their version now
                now = {p.id: p for p in fresh.partitions}
                pending = [now.get(p.id, p) for p in pending]
                dead = set(fresh.unreachable)
                continue
            if missing:
                raise PartitionUnavailable(desc.name, missing, [
                    f"{a}: {'; '.join(c)}" for a, c in causes.items()] or ["no live replica"])
            jobs = [(a, [pid]) for a, pids in assignment.items() for pid in pids] \
                if per_partition else list(assignment.items())
            futures = [(a, pids, self._pool.submit(run, a, pids, pins.get(a, 0)))
                       for a, pids in jobs]
            retry: set[str] = set()
            for agent, pids, fut in futures:
                try:
                    yield fut.result()
                except (AgentUnavailable, PartitionCorrupt) as exc:
                    if isinstance(exc, PartitionCorrupt):  # the agent is fine; that copy is not
                        corrupt.update((agent, pid) for pid in pids)
                    else:
                        dead.add(agent)
                    causes.setdefault(agent, []).append(str(exc))
                    report.failovers.append(f"{agent}: partitions {', '.join(pids)} retried")
                    retry.update(pids)
            pending = [p for p in pending if p.id in retry]

    def _redescribe(self, dataset: str) -> DatasetDescription | None:
        try:
            return self.describe(dataset)
        except BpfstoreError:
            return None

    # -- writes --------------------------------------------------------------------------

    def write(self, dataset: str, data: pa.Table | Iterable[pa.RecordBatch], *,
              partition_rows: int = 1_000_000, replicas: int = 1, overwrite: bool = False,
              progress: Callable[[int], None] | None = None) -> WriteSummary:
        """Split into partitions, spread them over the agents (each on `replicas` agents), and
        commit them as one new dataset version: all of it becomes visible, or none (the
        previous version stays whole). `overwrite` replaces the dataset on every agent."""
        staged = self.stage_write(dataset, data, uuid.uuid4().hex, partition_rows=partition_rows,
                                  replicas=replicas, progress=progress)
        self.commit_write(dataset, staged, overwrite=overwrite)
        return WriteSummary(dataset, staged.rows, staged.count, tuple(self.agents))

    def stage_write(self, dataset: str, data: pa.Table | Iterable[pa.RecordBatch], txn: str, *,
                    partition_rows: int = 1_000_000, replicas: int = 1,
                    progress: Callable[[int], None] | None = None,
                    abort_on_error: bool = True) -> StagedWrite:
        """Phase zero of a write: stream the partitions to their agents, where they wait,
        invisible, for `commit_write` with the same `txn`. Several stagers (e.g. Spark tasks)
        may stage one write: fold their results with `StagedWrite.add`; only the partitions
        named at commit become visible, so a stager that failed (`abort_on_error=False`: the
        write goes on without it) leaves nothing behind."""
        if replicas < 1 or replicas > len(self.agents):
            raise PlanInvalid(f"replicas must be between 1 and the number of agents "
                              f"({len(self.agents)}), not {replicas}")
        if partition_rows < 1:
            raise PlanInvalid("partition_rows must be positive")
        batches = data.to_batches() if isinstance(data, pa.Table) else data
        staged = StagedWrite(txn)
        tag = uuid.uuid4().hex[:8]
        in_flight: list[Any] = []
        try:
            for index, part in enumerate(_partitions(batches, partition_rows)):
                targets = [self.agents[(index + r) % len(self.agents)] for r in range(replicas)]
                pid = f"p{index:05d}-{tag}"
                for agent in targets:
                    in_flight.append(self._pool.submit(self._write_one, agent, dataset, pid,
                                                       part, False, targets, txn))
                    staged.partitions.setdefault(agent, []).append(pid)
                staged.rows += part.num_rows
                staged.schema = staged.schema or part.schema
                while len(in_flight) >= 2 * len(self.agents):  # bound memory: wait for the oldest
                    in_flight.pop(0).result()
                if progress:
                    progress(part.num_rows)
            for fut in in_flight:
                fut.result()
        except BaseException:
            for fut in in_flight:  # let every stream end before aborting what they staged
                with contextlib.suppress(Exception):
                    fut.result()
            if abort_on_error:
                self.abort_write(dataset, staged)
            raise
        return staged

    def commit_write(self, dataset: str, staged: StagedWrite, overwrite: bool = False) -> int:
        """Commit a staged write as one new version on every agent taking part: prepare on
        each (the primary, the first, before the others), then commit on the primary — the
        decision — then on the others. Returns the primary's new version (each agent numbers
        its own versions; readers match a write across agents by its id). Fails with nothing visible
        when any prepare fails; once the primary committed, an agent that missed its commit
        settles it from the primary when it can reach it (see README "Writes")."""
        agents = [a for a in self.agents if overwrite or staged.partitions.get(a)]
        if not agents:
            return 0  # an append of nothing
        primary = agents[0]
        schema = staged.schema.serialize().to_pybytes() if staged.schema else b""
        try:
            def prepare(agent: str) -> int:
                return self._call(agent, "PrepareWrite", pb.PrepareWriteRequest(
                    dataset=dataset, txn=staged.txn, overwrite=overwrite,
                    partitions=staged.partitions.get(agent, []), arrow_schema=schema,
                    primary="" if agent == primary else primary)).version

            version = prepare(primary)
            list(self._pool.map(prepare, agents[1:]))
        except BaseException:
            self.abort_write(dataset, staged, agents)
            raise
        try:
            self._commit_on(primary, dataset, staged.txn)
        except AgentUnavailable:
            # The commit may have happened before the primary went away: aborting the others
            # now could undo half of a committed write. They settle it from the primary.
            raise
        except BaseException:
            self.abort_write(dataset, staged, agents)
            raise
        list(self._pool.map(lambda a: self._commit_on(a, dataset, staged.txn, decided=True),
                            agents[1:]))
        return version

    def abort_write(self, dataset: str, staged: StagedWrite,
                    agents: Sequence[str] = ()) -> None:
        """Best effort: agents that miss it drop the write when they settle it."""
        request = pb.CommitWriteRequest(dataset=dataset, txn=staged.txn, abort=True)
        for agent in dict.fromkeys([*agents, *staged.partitions]):
            with contextlib.suppress(BpfstoreError):
                self._call(agent, "CommitWrite", request, timeout=10)

    def _commit_on(self, agent: str, dataset: str, txn: str, decided: bool = False) -> None:
        """Commit on one agent, retrying while it is unreachable (it may be restarting: its
        prepared write survives). After the primary's commit (`decided`) an agent still
        unreachable is left to settle the write from the primary, so this returns."""
        deadline = time.monotonic() + COMMIT_RETRY_SECONDS
        request = pb.CommitWriteRequest(dataset=dataset, txn=txn)
        while True:
            try:
                self._call(agent, "CommitWrite", request, timeout=10)
                return
            except AgentUnavailable:
                if time.monotonic() > deadline:
                    if decided:
                        return
                    raise
                time.sleep(0.2)

    def _write_one(self, agent: str, dataset: str, pid: str, table: pa.Table, overwrite: bool,
                   replicas: list[str], txn: str = "") -> None:
        """One partition's Write stream: staged into `txn`, or without one committed at once
        (a one-partition version on that agent)."""
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        data = sink.getvalue()

        def chunks() -> Iterator[pb.WriteChunk]:
            yield pb.WriteChunk(dataset=dataset, partition=pid, overwrite=overwrite,
                                replicas=replicas, txn=txn,
                                arrow_ipc=data[:WRITE_PIECE].to_pybytes())
            for offset in range(WRITE_PIECE, len(data), WRITE_PIECE):
                yield pb.WriteChunk(arrow_ipc=data[offset:offset + WRITE_PIECE].to_pybytes())

        self._call(agent, "Write", chunks())

    def drop(self, dataset: str) -> bool:
        dropped = False
        for r in self._each_agent("DropDataset", pb.DropDatasetRequest(dataset=dataset)).values():
            if isinstance(r, BpfstoreError):
                raise r
            dropped |= r.dropped
        return dropped


# -- helpers ---------------------------------------------------------------------------------


def _replanned(run: Callable[[], T]) -> T:
    """`run()`, again (it describes anew) when the version it pinned went away meanwhile."""
    for attempt in range(REPLANS):
        try:
            return run()
        except VersionGone:
            if attempt + 1 == REPLANS:
                raise
    raise AssertionError("unreachable")


def _fields(plan: Plan) -> dict[str, Any]:
    return {f: getattr(plan, f) for f in plan.__dataclass_fields__}


def _report(agent: str, r: pb.PartitionReport) -> PartitionReport:
    return PartitionReport(agent, r.partition, r.engine, r.path, r.rows_scanned, r.rows_matched,
                           r.bytes_scanned, r.time_ns, r.pruned, r.note)


def bound_empty(plan: Plan, desc: DatasetDescription) -> pa.Table:
    from bpfstore.contract.combine import partial_schema

    return partial_schema(plan, desc.stored_schema).empty_table()


def only_partitions(desc: DatasetDescription, partitions: Sequence[str]) -> DatasetDescription:
    """The description restricted to `partitions` (in that order, each once); all when empty."""
    if not partitions:
        return desc
    known = {p.id: p for p in desc.partitions}
    missing = [p for p in partitions if p not in known]
    if missing:
        raise DatasetNotFound(f"dataset {desc.name!r} has no partition(s) {', '.join(missing)}")
    return replace(desc, partitions=tuple(known[p] for p in dict.fromkeys(partitions)))


def _assign(partitions: Sequence[PartitionSummary], dead: set[str],
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


def _partitions(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        while batch.num_rows:
            take = min(rows - count, batch.num_rows)
            pending.append(batch.slice(0, take))
            count += take
            batch = batch.slice(take)
            if count == rows:
                yield pa.Table.from_batches(pending)
                pending, count = [], 0
    if pending:
        yield pa.Table.from_batches(pending)


def _merge_descriptions(dataset: str, infos: dict[str, pb.DatasetInfo],
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
                         {s.column: _stats_dict(s) for s in p.stats})
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
