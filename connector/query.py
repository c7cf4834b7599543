"""What a query asks (`Query`) and what it returns (`Result`: the table and its `QueryReport`).

A report travels with its result, never through the client: one `Client` serves many threads
at once (Dask's, Spark's), and a query must never be handed another query's report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa

from bpfstore.contract.combine import FinalAggregate, Finisher, expand
from bpfstore.contract.plan import Aggregate, Dialect, EngineName, Expr, Plan


@dataclass(frozen=True)
class Query:
    """A plan and how its merged partials are finished.

    A plan without aggregates is a scan (rows, in the order of the partitions). An aggregate
    plan whose `finishers` is None answers with the merged partials, unfinished: Dask and
    Spark merge them further and finish them themselves. `plan.partitions` restricts the
    query to those partitions (all when empty); the dialect is the plan's, chosen by the
    front end that builds it. A scan asks each partition in its own call (a failed agent's
    partition is retried whole elsewhere, the calls run in parallel); `per_agent` asks all the
    partitions one agent serves in one call instead (a Dask task reading several partitions
    of one agent: one round trip)."""

    plan: Plan
    finishers: tuple[Finisher, ...] | None = None
    per_agent: bool = False

    @property
    def mode(self) -> str:
        return "aggregate" if self.finishers is not None or self.plan.aggregates else "scan"

    @classmethod
    def aggregate(cls, dataset: str, aggregates: Sequence[FinalAggregate],
                  where: Expr | None = None, group_by: Sequence[str] = (), *,
                  dialect: str | Dialect = Dialect.SQL, engine: str | EngineName = EngineName.AUTO,
                  names: Sequence[str] | None = None) -> Query:
        """Final aggregates (AVG included), named `names` or after the aggregates."""
        plan_aggs, finishers = expand(list(aggregates), names)
        return cls(Plan(dataset, filter=where, group_by=tuple(group_by),
                        aggregates=tuple(plan_aggs), dialect=Dialect(dialect), engine=engine),
                   tuple(finishers))

    @classmethod
    def partials(cls, dataset: str, aggregates: Sequence[Aggregate], where: Expr | None = None,
                 group_by: Sequence[str] = (), *, partitions: Sequence[str] = (),
                 dialect: str | Dialect = Dialect.SQL,
                 engine: str | EngineName = EngineName.AUTO) -> Query:
        """Merged, unfinished partials: merge further with `combine.merge_partials`, end
        with `combine.finish`."""
        return cls(Plan(dataset, partitions=tuple(partitions), filter=where,
                        group_by=tuple(group_by), aggregates=tuple(aggregates),
                        dialect=Dialect(dialect), engine=engine))

    @classmethod
    def scan(cls, dataset: str, columns: Sequence[str] | None = None, where: Expr | None = None,
             *, partitions: Sequence[str] = (), dialect: str | Dialect = Dialect.SQL,
             per_agent: bool = False) -> Query:
        """Rows with the filter and the projection (all columns when None) applied."""
        return cls(Plan(dataset, partitions=tuple(partitions), filter=where,
                        columns=tuple(columns or ()), dialect=Dialect(dialect)),
                   per_agent=per_agent)


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
    """Where one query ran and what it moved: filled while it runs, complete once it returned
    (a `Stream`'s once it is exhausted)."""

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

    def add(self, other: QueryReport) -> None:
        """Fold in the report of another query answering part of the same question."""
        self.partitions += other.partitions
        self.bytes_moved += other.bytes_moved
        self.wall_seconds += other.wall_seconds
        self.failovers += other.failovers

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
class Result:
    """A query's answer and the report of that query alone."""

    table: pa.Table
    report: QueryReport
