"""`spark.read.format("bpfstore")`: the Python Data Source (Spark >= 4.1).

Two read modes, chosen by options:
- plain: rows with the filters accepted by `pushFilters` (and, from the extension, the
  whole filter tree in `bpfstore.filter`) applied on the agents, projected to the reader's
  schema (the extension passes a pruned schema);
- aggregate (`bpfstore.agg`, set only by the extension): partial aggregates in Spark's
  buffer types, which Spark then merges.
Spark pays 35-65 ms of wall time per task on 2 cores, so a task reads several partitions of
one agent: an aggregate up to `partitionsPerTask` (default 16; each returns a few bytes:
TPC-H Q6 at SF10, 60 partitions on 3 agents, took 5.1 s in 60 tasks and 1.2 s in 6,
`local[2]`), a row scan about `rowsPerTask` rows (default 1,000,000, as many partitions as
hold that many on average; 1 partition a task at least), read in one scan whose batches are
yielded as they arrive.
Options arrive in a case-insensitive dict (lower-cased keys): never `dict()` it.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from pyspark import TaskContext
from pyspark.sql.datasource import (
    DataSource,
    DataSourceArrowWriter,
    DataSourceReader,
    InputPartition,
    WriterCommitMessage,
)

from bpfstore.contract.errors import PlanInvalid
from bpfstore.contract.keysets import normalized, same_keys
from bpfstore.contract.plan import (
    Aggregate,
    Dialect,
    EngineName,
    Expr,
    KeySet,
    and_all,
    conjuncts,
)

from ..client import (
    DatasetDescription,
    StagedWrite,
    client_for,
    only_partitions,
    parse_agents,
)
from ..descriptions import by_replicas, even_runs
from ..query import Query, QueryReport
from ..transport import Transport, resolve_transport
from .filters import split_filters
from .spec import AggSpec, filter_from_option, to_buffers
from .types import arrow_schema, conform, spark_schema

NAME = "bpfstore"
PARTITIONS_PER_TASK = 16
ROWS_PER_TASK = 1_000_000
TRANSPORT_OPTIONS = ("tlsCa", "tlsCert", "tlsKey", "tlsServerName", "tls", "token",
                     "compression")


def transport_from_options(options: Any) -> Transport:
    """TLS, token and Scan compression from the options (paths are read where Spark plans the
    query, and the PEM contents travel to the executors); each unset one from its
    $BPFSTORE_* variable."""
    ca, cert, key, server_name, tls, token, compression = (
        _option(options, o) for o in TRANSPORT_OPTIONS)
    return resolve_transport(ca=ca, cert=cert, key=key, token=token, tls=tls,
                             server_name=server_name, compression=compression)


def _option(options: Any, name: str, default: str | None = None) -> str | None:
    value = options.get(name.lower(), options.get(name))
    return default if value is None else str(value)


def _dataset(options: Any) -> str:
    name = _option(options, "dataset") or _option(options, "path")
    if not name:
        raise PlanInvalid('name the dataset: .load("name") or .option("dataset", "name")')
    return name


@dataclass(frozen=True)
class BpfstorePartition(InputPartition):  # type: ignore[misc]
    pids: tuple[str, ...]  # up to partitionsPerTask (aggregate), about rowsPerTask rows (scan)
    agents: tuple[str, ...]  # replicas holding them, tried in order
    # their description, made once on the driver: tasks then describe nothing themselves
    # (every task describing the whole dataset cost more bytes than the partials)
    desc: DatasetDescription | None = field(default=None, compare=False)


class BpfstoreDataSource(DataSource):  # type: ignore[misc]
    """Options: `agents` ("h1:7340,h2:7340"; default $BPFSTORE_AGENTS or 127.0.0.1:7340),
    `dataset` (or the `load()` path); `engine` (the agents' engine for pushed-down aggregates:
    "auto" by default, "arrow", "bpf", ...); `pushFilters` ("true" needs
    spark.sql.python.filterPushdown.enabled; the extension sets both); for writes
    `partitionRows` (default 1000000); `partitionsPerTask` (aggregates: bpfstore partitions
    of one agent per Spark task, default 16); `rowsPerTask` (row scans: about how many rows
    of one agent a Spark task reads, default 1000000); TLS and tenants: `tlsCa`, `tlsCert`,
    `tlsKey`, `tlsServerName`, `tls` ("true": the system's CAs), `token` (Spark redacts
    options named *token* in plans); `compression` of scanned rows ("auto" by default: lz4
    from agents not on loopback; "none", "lz4", "zstd"). A schema given with `.schema(...)`
    prunes columns."""

    @classmethod
    def name(cls) -> str:
        return NAME

    def _agents(self) -> list[str]:
        return parse_agents(_option(self.options, "agents"))

    def schema(self):  # noqa: ANN201 - a pyspark StructType
        desc = client_for(self._agents(), transport_from_options(self.options)).describe(
            _dataset(self.options), statistics=False)
        return spark_schema(desc.schema)

    def reader(self, schema) -> DataSourceReader:  # noqa: ANN001
        # Spark fails every read of a reader that implements pushFilters unless
        # spark.sql.python.filterPushdown.enabled is on, and the worker cannot see that
        # setting: the extension (which sets it) marks its scans with pushFilters=true.
        push = (_option(self.options, "pushFilters", "false") or "").lower() == "true"
        cls = FilteringReader if push else BpfstoreReader
        return cls(self._agents(), _dataset(self.options), schema, self.options)

    def writer(self, schema, overwrite: bool) -> BpfstoreWriter:  # noqa: ANN001
        return BpfstoreWriter(self._agents(), _dataset(self.options), overwrite,
                              int(_option(self.options, "partitionRows", "1000000") or 0),
                              transport_from_options(self.options), arrow_schema(schema))


class BpfstoreReader(DataSourceReader):  # type: ignore[misc]
    def __init__(self, agents: list[str], dataset: str, schema: Any, options: Any) -> None:
        self.agents = agents
        self.transport = transport_from_options(options)
        self.dataset = dataset
        self.target = arrow_schema(schema)  # exactly what Spark checks yielded batches against
        agg = _option(options, "bpfstore.agg")
        self.spec = AggSpec.parse(agg) if agg else None
        self.where: Expr | None = filter_from_option(_option(options, "bpfstore.filter"))
        self.engine = EngineName.parse(_option(options, "engine", "auto") or "auto")
        self.per_task = _per_task(options, "partitionsPerTask", PARTITIONS_PER_TASK)
        self.rows_per_task = _per_task(options, "rowsPerTask", ROWS_PER_TASK)
        self.desc: DatasetDescription | None = None

    def _describe(self) -> DatasetDescription:
        if self.desc is None:
            # no column statistics: the agents prune, and each task is sent its part of this
            self.desc = client_for(self.agents, self.transport).describe(self.dataset,
                                                                         statistics=False)
        return self.desc

    def partitions(self) -> list[BpfstorePartition]:
        desc = self._describe()
        if self.spec is not None:
            per_task = self.per_task
        else:  # as many partitions as hold rowsPerTask rows on average
            average = desc.rows / max(len(desc.partitions), 1)
            per_task = max(1, int(self.rows_per_task // max(average, 1)))
        groups = task_groups(desc.partitions, per_task)
        return [BpfstorePartition(tuple(p.id for p in g), g[0].agents,
                                  only_partitions(desc, [p.id for p in g]))
                for g in groups]

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        assert isinstance(partition, BpfstorePartition)
        started = time.perf_counter()
        client = client_for(self.agents, self.transport)
        desc = partition.desc or self._describe()
        if self.spec is not None:
            # exact partials, even beyond 38 digits: to_buffers range-checks them as Spark would
            result = client.run(self._partials(self.spec.aggregates, self.spec.filter,
                                               self.spec.groups, partition.pids), desc)
            _log_report(result.report, started)
            if result.table.num_rows:
                yield to_buffers(result.table, self.spec, self.target)
            return
        rows = client.stream(Query.scan(self.dataset, self.target.names, self.where,
                                        partitions=partition.pids, dialect=Dialect.SQL), desc)
        for batch in rows:
            yield conform(batch, self.target)
        _log_report(rows.report, started)

    def _partials(self, aggs: Sequence[Aggregate], where: Expr | None, by: Sequence[str],
                  pids: Sequence[str]) -> Query:
        return Query.partials(self.dataset, aggs, where, by, partitions=pids,
                              dialect=Dialect.SQL, engine=self.engine)


def _per_task(options: Any, name: str, default: int) -> int:
    text = _option(options, name, str(default)) or ""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise PlanInvalid(f"option {name} must be a whole number >= 1, not {text!r}")
    return n


def task_groups(partitions: Sequence[Any], per_task: int) -> list[list[Any]]:
    """Partitions sharing their replica list, in as few even runs of at most `per_task` as
    can be, in dataset order: a task then talks to one agent (and fails over as one)."""
    return [[partitions[i] for i in run] for group in by_replicas(partitions)
            for run in even_runs(group, per_task)]


class FilteringReader(BpfstoreReader):
    """The reader with `pushFilters`: accepted filters run on the agents (Spark trusts them)."""

    def pushFilters(self, filters: list[Any]) -> list[Any]:  # noqa: N802 - Spark's name
        if self.spec is not None:
            return list(filters)  # aggregate scans carry their whole filter in the spec
        accepted, rejected = split_filters(list(filters), self._describe().schema)
        have = conjuncts(self.where)
        # a join's key set arrives twice (the extension's filter tree, then from Spark): once
        self.where = and_all([*have, *(e for e in accepted if not _holds(have, e))])
        return rejected


def _holds(have: list[Expr], e: Expr) -> bool:
    """`e` is a key set that `have` already holds (the same column and keys, in any order)."""
    if not isinstance(e, KeySet):
        return False
    for h in have:
        if isinstance(h, KeySet) and h.arg == e.arg:
            try:
                keys = e.keys.cast(h.keys.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
            if same_keys(normalized(h.keys), normalized(keys)):
                return True
    return False


def _log_report(report: QueryReport, started: float) -> None:
    """With $BPFSTORE_SPARK_REPORT set, append each partition's report (mode, engine, bytes
    moved) as a JSON line: Spark's Python workers have no other way to tell the driver."""
    path = os.environ.get("BPFSTORE_SPARK_REPORT")
    if path:
        with open(path, "a") as f:
            line = report.to_dict()
            line.update(pid=os.getpid(), wall_seconds=time.perf_counter() - started)
            f.write(json.dumps(line) + "\n")


@dataclass(frozen=True)
class WriteResult(WriterCommitMessage):  # type: ignore[misc]
    staged: StagedWrite  # what one task staged


class BpfstoreWriter(DataSourceArrowWriter):  # type: ignore[misc]
    """One bpfstore write per Spark job: each task stages its rows as partitions of the job's
    write (invisible), and the driver's `commit` makes them one new dataset version on every
    agent — or, on `abort` or a crash, none: an overwrite keeps the old data until then."""

    def __init__(self, agents: list[str], dataset: str, overwrite: bool,
                 partition_rows: int, transport: Transport,
                 schema: pa.Schema | None = None) -> None:
        self.agents = agents
        self.schema = schema  # for agents that get no rows of an overwrite
        self.dataset = dataset
        self.overwrite = overwrite
        self.partition_rows = partition_rows or 1_000_000
        self.transport = transport
        self.txn = uuid.uuid4().hex

    def write(self, iterator: Iterator[pa.RecordBatch]) -> WriteResult:
        ctx = TaskContext.get()
        shift = ctx.partitionId() % len(self.agents) if ctx is not None else 0
        # Rotate the agent list per task, so small tasks do not all start on the first agent.
        client = client_for(self.agents[shift:] + self.agents[:shift], self.transport)
        batches = (_plain(b) for b in iterator if b.num_rows)
        # A failed task's partitions are not named at commit, so they never become visible.
        return WriteResult(client.stage_write(self.dataset, batches, self.txn,
                                              partition_rows=self.partition_rows,
                                              abort_on_error=False))

    def _staged(self, messages: list[WriterCommitMessage | None]) -> StagedWrite:
        staged = StagedWrite(self.txn)
        for m in messages:
            if isinstance(m, WriteResult):
                staged.add(m.staged)
        staged.schema = staged.schema or self.schema
        return staged

    def commit(self, messages: list[WriterCommitMessage | None]) -> None:
        client_for(self.agents, self.transport).commit_write(
            self.dataset, self._staged(messages), overwrite=self.overwrite)

    def abort(self, messages: list[WriterCommitMessage | None]) -> None:
        client_for(self.agents, self.transport).abort_write(self.dataset,
                                                            self._staged(messages), self.agents)


def _plain(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Spark marks every field nullable with no metadata; store the data as it is."""
    return batch.replace_schema_metadata(None)
