"""`Client`: the connector's core — fan plans out to agents, fail over, merge exactly, report.

One reused channel per agent. A partition is read from one live replica; when its agent is
unreachable the partition moves to the next replica, and when none is left the query fails
naming the partitions — a query never returns a silently partial answer.

Queries all go one way, `run(Query, desc=None) -> Result` (describe → bind → fan out →
merge): the answer and the report of that query alone, so one client can serve many threads.
- `run`: any `Query` (query.py): final aggregates, unfinished partials of some partitions
  (Dask, Spark), or a scan; with `desc` it reads that pinned snapshot.
- `aggregate`, `scan_table`: `run(...).table` for the Python user (SQL dialect by default).
- `scan`: a scan's batches as they arrive, as a `Stream` carrying its report.
- `sql`: one SELECT (`bpfstore.connector.sql.run_sql`, which returns the `Result`).
- `describe`, `datasets`, `info`: metadata; `write` (or `stage_write` + `commit_write`,
  `abort_write`) and `drop`: writes, each commit one new dataset version.
Descriptions and replica assignment live in descriptions.py, `Query`/`Result` in query.py.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import grpc
import pyarrow as pa

from bpfstore.contract import wire
from bpfstore.contract.binding import bind_plan
from bpfstore.contract.chunks import decode_chunk
from bpfstore.contract.combine import FinalAggregate, finish, merge_partials, partial_schema
from bpfstore.contract.errors import (
    AgentUnavailable,
    BpfstoreError,
    DatasetNotFound,
    PartitionCorrupt,
    PartitionUnavailable,
    PlanInvalid,
    VersionGone,
    error_class,
)
from bpfstore.contract.plan import Dialect, Expr, Plan
from bpfstore.v1 import agent_pb2 as pb
from bpfstore.v1 import agent_pb2_grpc

from .descriptions import (
    DatasetDescription,
    PartitionSummary,
    assign,
    merge_descriptions,
    only_partitions,
)
from .query import PartitionReport, Query, QueryReport, Result
from .transport import Transport, resolve_transport

__all__ = [
    "AgentUnavailable", "Client", "DatasetDescription", "PartitionReport", "PartitionSummary",
    "Query", "QueryReport", "Result", "StagedWrite", "Stream", "WriteSummary", "only_partitions",
    "parse_agents",
]

DEFAULT_AGENT = "127.0.0.1:7340"
WRITE_PIECE = 1 << 20
_MAX_MESSAGE = 256 << 20
SCAN_METHOD = "/bpfstore.v1.Agent/Scan"
SCAN_PACK_BYTES = 1 << 20  # a Scan chunk's IPC, about (bench/bench_scan_path.py)
SCAN_STREAMS = int(os.environ.get("BPFSTORE_SCAN_STREAMS", "2"))  # calls per agent and scan


def _runs(pids: list[str]) -> list[list[str]]:
    """An agent's partitions as up to SCAN_STREAMS runs of consecutive ones, as even as can be
    (parallel streams: the agent's loop and the transfer overlap)."""
    n = max(1, min(SCAN_STREAMS, len(pids)))
    cut = [round(i * len(pids) / n) for i in range(n + 1)]
    return [pids[cut[i]:cut[i + 1]] for i in range(n)]


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
    """The typed error for a failed call, by the contract's one table (errors.error_class)."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else str(exc)
    cls = error_class(code.name)
    return cls(f"agent {agent}: {details}"
               if issubclass(cls, AgentUnavailable) or cls is BpfstoreError else details)


# -- writes ----------------------------------------------------------------------------------


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
        """`transport`: TLS, token and Scan compression (connector/transport.py); by default
        from $BPFSTORE_TLS_CA, $BPFSTORE_TLS_CERT, $BPFSTORE_TLS_KEY, $BPFSTORE_TOKEN and
        $BPFSTORE_COMPRESSION."""
        self.agents = parse_agents(agents)
        self.transport = transport if transport is not None else resolve_transport()
        self.timeout = timeout
        self._stubs: dict[str, agent_pb2_grpc.AgentStub] = {}
        self._scans: dict[str, grpc.UnaryStreamMultiCallable] = {}
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
                # Scan's chunks decoded by hand: the IPC stays a view of the received bytes
                self._scans[agent] = channel.unary_stream(
                    SCAN_METHOD, request_serializer=pb.ScanRequest.SerializeToString,
                    response_deserializer=decode_chunk)
            return self._stubs[agent]

    def _call(self, agent: str, method: str, request: Any, timeout: float | None = None) -> Any:
        try:
            return getattr(self._stub(agent), method)(request, timeout=timeout or self.timeout)
        except grpc.RpcError as exc:
            error = _error(agent, exc)
        raise error  # outside `except`: see _scan_call

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
        """Every dataset any agent lists, each agent's list followed page by page."""
        names: set[str] = set()
        for agent, r in self._each_agent("ListDatasets", pb.ListDatasetsRequest()).items():
            while True:
                if isinstance(r, BpfstoreError):
                    raise r if not isinstance(r, AgentUnavailable) else AgentUnavailable(
                        f"cannot list datasets: {r}")
                names.update(d.name for d in r.datasets)
                if not r.next_page_token:
                    break
                try:
                    r = self._call(agent, "ListDatasets",
                                   pb.ListDatasetsRequest(page_token=r.next_page_token))
                except BpfstoreError as exc:
                    r = exc
        return [self.describe(n) for n in sorted(names)]

    def describe(self, dataset: str, statistics: bool = True) -> DatasetDescription:
        """The dataset as one snapshot: each agent's current version — or, while a write is
        committing, the version it has prepared when another agent has committed that write
        already (its primary's commit decided it), so no reader sees half of a write.
        `statistics=False`: partitions without column statistics, all a query itself needs
        (61 partitions' statistics were most of a describe's bytes and time)."""
        without = not statistics
        responses = self._each_agent("DescribeDataset", pb.DescribeDatasetRequest(
            dataset=dataset, without_statistics=without))
        decided = {r.txn for r in responses.values() if isinstance(r, pb.DatasetInfo) and r.txn}
        for agent, r in responses.items():
            if isinstance(r, pb.DatasetInfo) and r.pending_txn in decided and \
                    r.pending_version > r.version:
                request = pb.DescribeDatasetRequest(dataset=dataset, version=r.pending_version,
                                                    without_statistics=without)
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
        return merge_descriptions(dataset, infos, unreachable)

    # -- queries -------------------------------------------------------------------------

    def run(self, query: Query, desc: DatasetDescription | None = None, *,
            described: DatasetDescription | None = None) -> Result:
        """The one query path: describe, bind, fan out to a live replica of each partition,
        merge. Without `desc` the dataset is described anew, and the query planned again when
        the version it pinned goes away meanwhile. With `desc` (an earlier `describe`, as Dask
        and Spark tasks pass it) every call reads that same snapshot, or fails with
        VersionGone once an agent no longer keeps it. `described`, a description the caller
        has just made (`bpfstore sql` describes to plan), saves the first describe and is
        planned again like a fresh one."""
        started = time.perf_counter()
        for attempt in range(REPLANS):
            fresh = described if attempt == 0 and described is not None else None
            try:
                result = self._run_on(query, desc or fresh or
                                     self.describe(query.plan.dataset, statistics=False))
            except VersionGone:
                if desc is not None or attempt + 1 == REPLANS:
                    raise
                continue
            result.report.wall_seconds = time.perf_counter() - started
            return result
        raise AssertionError("unreachable")

    def aggregate(self, dataset: str, aggregates: Sequence[FinalAggregate],
                  where: Expr | None = None, group_by: Sequence[str] = (),
                  dialect: str | Dialect = Dialect.SQL, engine: str = "auto",
                  names: Sequence[str] | None = None) -> pa.Table:
        """`run(Query.aggregate(...)).table`: final aggregates, merged exactly."""
        return self.run(Query.aggregate(dataset, aggregates, where, group_by, dialect=dialect,
                                        engine=engine, names=names)).table

    def scan_table(self, dataset: str, columns: Sequence[str] | None = None,
                   where: Expr | None = None, dialect: str | Dialect = Dialect.SQL) -> pa.Table:
        """`run(Query.scan(...)).table`: the rows, all at once."""
        return self.run(Query.scan(dataset, columns, where, dialect=dialect)).table

    def scan(self, dataset: str, columns: Sequence[str] | None = None,
             where: Expr | None = None, dialect: str | Dialect = Dialect.SQL) -> Stream:
        """The rows batch by batch as they arrive, with their report on the stream."""
        return self.stream(Query.scan(dataset, columns, where, dialect=dialect))

    def stream(self, query: Query, desc: DatasetDescription | None = None) -> Stream:
        """A scan query's batches as they arrive (`desc`: the description to plan it with, as
        for `run`; by default the dataset is described first)."""
        if query.mode != "scan":
            raise PlanInvalid(f"only a scan streams its rows, not {query.mode!r}")
        return Stream(self, query, desc)

    def sql(self, text: str, engine: str = "auto") -> pa.Table:
        """`run_sql(self, text).table` (`bpfstore.connector.sql`)."""
        from .sql import run_sql  # late: sqlglot and DuckDB load only for SQL

        return run_sql(self, text, engine=engine).table

    def _run_on(self, query: Query, desc: DatasetDescription) -> Result:
        plan = query.plan
        desc = only_partitions(desc, plan.partitions)
        bound = bind_plan(plan, desc.stored_schema)  # fails early, with the agent's message
        report = QueryReport(query.mode, plan.dataset)
        # a list: an agent that partitions failed over to answers twice
        pieces = list(self._fan_out(plan, desc, report, query.mode == "aggregate",
                                    query.per_agent))
        if query.mode == "scan":
            return Result(_rows(desc, plan, dict(pieces)), report)
        merged = merge_partials([t for _, t in pieces], bound) if pieces else \
            partial_schema(bound, desc.stored_schema).empty_table()
        return Result(merged if query.finishers is None else
                      finish(merged, bound, query.finishers), report)

    def _stream(self, query: Query, report: QueryReport, given: DatasetDescription | None
                ) -> Iterator[pa.RecordBatch]:
        """A scan's batches as they come; planned again when the pinned version goes away
        before the first batch (after it, the error is raised: rows of two versions are never
        mixed). With `given` (as `run`'s `desc`: Spark's tasks) it reads that snapshot or
        fails with VersionGone."""
        started = time.perf_counter()
        for attempt in range(REPLANS):
            yielded = False
            try:
                desc = only_partitions(given or self.describe(query.plan.dataset,
                                                              statistics=False),
                                       query.plan.partitions)
                bind_plan(query.plan, desc.stored_schema)
                for _, batches in self._fan_out(query.plan, desc, report, aggregate=False,
                                                per_agent=query.per_agent):
                    report.wall_seconds = time.perf_counter() - started
                    for batch in batches:
                        yielded = True
                        yield batch
                return
            except VersionGone:
                if yielded or given is not None or attempt + 1 == REPLANS:
                    raise
                report.partitions.clear()  # the report tells of the attempt that answers
                report.failovers.clear()
                report.bytes_moved = 0

    def _fan_out(self, plan: Plan, desc: DatasetDescription, report: QueryReport,
                 aggregate: bool, per_agent: bool = False) -> Iterator[tuple[str, Any]]:
        """Run `plan` over a live replica of every partition of `desc`, failing over, and
        record it in `report`. Yields (agent, partials) per Aggregate call, (partition,
        batches) per partition scanned: a scan asks an agent's partitions in up to
        `SCAN_STREAMS` calls of consecutive ones (`per_agent`: all of one agent's in one call);
        a failed call's partitions are retried whole elsewhere."""
        call = self._aggregate_call if aggregate else self._scan_call
        pins = dict(desc.versions)
        dead: set[str] = set(desc.unreachable)
        corrupt: set[tuple[str, str]] = set()  # (agent, partition): that copy failed its checksum
        causes: dict[str, list[str]] = {}
        pending = list(desc.partitions)
        refreshes = 0
        while pending:
            assignment = assign(pending, dead, corrupt)
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
            jobs = list(assignment.items()) if aggregate or per_agent else \
                [(a, run) for a, pids in assignment.items() for run in _runs(pids)]
            futures = [(a, pids, self._pool.submit(call, a, replace(plan, partitions=tuple(pids)),
                                                   pins.get(a, 0)))
                       for a, pids in jobs]
            retry: set[str] = set()
            for agent, pids, fut in futures:
                try:
                    payload, reports, nbytes = fut.result()
                except (AgentUnavailable, PartitionCorrupt) as exc:
                    if isinstance(exc, PartitionCorrupt):  # the agent is fine; that copy is not
                        corrupt.update((agent, pid) for pid in pids)
                    else:
                        dead.add(agent)
                    causes.setdefault(agent, []).append(str(exc))
                    report.failovers.append(f"{agent}: partitions {', '.join(pids)} retried")
                    retry.update(pids)
                    continue
                report.partitions.extend(reports)
                report.bytes_moved += nbytes
                if aggregate:
                    yield agent, payload
                else:
                    yield from ((pid, payload.get(pid, [])) for pid in pids)
            pending = [p for p in pending if p.id in retry]

    def _aggregate_call(self, agent: str, plan: Plan, version: int
                        ) -> tuple[pa.Table, list[PartitionReport], int]:
        """One Aggregate RPC: the partials, the reports, the bytes moved."""
        request = pb.AggregateRequest(plan=wire.plan_to_proto(plan), dataset_version=version)
        response = self._call(agent, "Aggregate", request)
        table = pa.ipc.open_stream(response.partials).read_all()
        return table, [_report(agent, r) for r in response.partitions], response.ByteSize()

    def _scan_call(self, agent: str, plan: Plan, version: int
                   ) -> tuple[dict[str, list[pa.RecordBatch]], list[PartitionReport], int]:
        """One Scan RPC: each partition's batches, the reports, the bytes moved. The agent
        packs batches of several partitions into a chunk up to `SCAN_PACK_BYTES`, a span per
        partition ending there (an agent that does not know `pack_bytes` sends a chunk per
        batch and one per report; both read alike); the bytes moved are the chunks' as sent
        (compressed when `transport.compression` asks), counted from the received messages."""
        request = pb.ScanRequest(plan=wire.plan_to_proto(plan), dataset_version=version,
                                 compression=self.transport.scan_compression(agent),
                                 pack_bytes=SCAN_PACK_BYTES)
        pieces: dict[str, list[pa.RecordBatch]] = {}
        batches: list[pa.RecordBatch] = []  # read, not yet ended by a span or report
        reports: list[PartitionReport] = []

        def ended(report: pb.PartitionReport) -> None:
            nonlocal batches
            reports.append(_report(agent, report))
            pieces.setdefault(report.partition, []).extend(batches)
            batches = []

        nbytes = 0
        try:
            self._stub(agent)
            for chunk in self._scans[agent](request, timeout=self.timeout):
                nbytes += chunk.nbytes
                got = list(pa.ipc.open_stream(chunk.ipc)) if chunk.ipc is not None else []
                at = 0
                for span in chunk.meta.spans:
                    batches.extend(got[at:at + span.batches])
                    at += span.batches
                    ended(span.report)
                batches.extend(got[at:])
                if chunk.meta.HasField("report"):
                    ended(chunk.meta.report)
        except grpc.RpcError as exc:
            error = _error(agent, exc)
        else:
            if batches and len(plan.partitions) == 1:  # no report after them (never sent)
                pieces.setdefault(plan.partitions[0], []).extend(batches)
            elif batches:
                raise BpfstoreError(f"{agent}: Scan sent rows without their partition")
            return pieces, reports, nbytes
        # Raised outside `except`, so the grpc error (it holds a lock) is not its __context__:
        # Dask pickles an error with its context chain, and would send a bare Exception.
        raise error

    def _redescribe(self, dataset: str) -> DatasetDescription | None:
        try:
            return self.describe(dataset, statistics=False)
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


class Stream:
    """`Client.scan`: iterate for the batches; `report` is this scan's, complete once the
    batches are exhausted."""

    def __init__(self, client: Client, query: Query, desc: DatasetDescription | None = None
                 ) -> None:
        self.report = QueryReport(query.mode, query.plan.dataset)
        self._batches = client._stream(query, self.report, desc)

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        return self._batches


def _rows(desc: DatasetDescription, plan: Plan, pieces: dict[str, list[pa.RecordBatch]]
          ) -> pa.Table:
    """A scan's batches in the order of the description's partitions."""
    ordered = [b for p in desc.partitions for b in pieces.get(p.id, [])]
    if ordered:
        return pa.Table.from_batches(ordered)
    columns = plan.columns
    return (pa.schema([desc.schema.field(c) for c in columns]) if columns
            else desc.schema).empty_table()


def _report(agent: str, r: pb.PartitionReport) -> PartitionReport:
    return PartitionReport(agent, r.partition, r.engine, r.path, r.rows_scanned, r.rows_matched,
                           r.bytes_scanned, r.time_ns, r.pruned, r.note)


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


_shared: dict[tuple[tuple[str, ...], Transport], Client] = {}  # per process
_shared_lock = threading.Lock()


def client_for(agents: Sequence[str], transport: Transport) -> Client:
    """One shared client per agent list and transport in this process: Spark's Python workers
    and Dask's are reused (and threaded), so their channels are too."""
    key = (tuple(agents), transport)
    with _shared_lock:
        if key not in _shared:
            _shared[key] = Client(list(agents), transport=transport)
        return _shared[key]
