"""The partition loop of a query, without gRPC: the servicer unpacks a request, calls the
executor and packs what it returns.

Per partition, in order: the request's deadline, pruning by statistics, answers from
statistics, and otherwise the partition read and handed to the engines (`select.Engines`,
which picks the engine and falls back); each partition's report is timed and counted in the
request's metrics.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa

from bpfstore.contract.combine import merge_partials, partial_schema
from bpfstore.contract.errors import PlanInvalid
from bpfstore.contract.plan import EngineName, Plan

from .auth import check_deadline
from .catalog import DatasetMeta, PartitionMeta, iter_partitions
from .engines.base import Partition, Report, bytes_read
from .engines.select import Engines
from .metrics import observe_partition
from .stats import answer_from_stats, may_match, stats_partials
from .storage import Storage

STATS = "stats"  # the report's engine for partitions pruned or answered by statistics


@dataclass(frozen=True, slots=True)
class Aggregated:
    partials: pa.Table  # every partition's partials merged (exactly) into one table
    reports: list[Report]  # one per partition, in the plan's order


class Executor:
    def __init__(self, storage: Storage, engines: Engines) -> None:
        self.storage, self.engines = storage, engines

    def aggregate(self, plan: Plan, meta: DatasetMeta) -> Aggregated:
        """The bound plan's partials over version `meta` of its dataset."""
        if not plan.aggregates:
            raise PlanInvalid("Aggregate needs at least one aggregate")
        # Each partition's (partials, report) by position: the engines may run several at
        # once (and ask for more ahead), while partials merge and reports list in order.
        answers: dict[int, tuple[pa.Table | None, Report]] = {}
        position: dict[str, int] = {}
        opening: dict[str, int] = {}  # ns spent here before the engine had the partition

        def to_engines() -> Iterator[Partition]:
            for i, part in enumerate(iter_partitions(meta, plan.partitions)):
                check_deadline()
                start = time.perf_counter_ns()
                if not may_match(plan.filter, part.stats, part.rows, meta.schema, plan.dialect):
                    answers[i] = None, _done(Report(part.id, STATS, pruned=True), start)
                elif (values := answer_from_stats(plan, part.stats, part.rows, meta.schema)):
                    answers[i] = stats_partials(plan, values), _done(Report(part.id, STATS), start)
                else:
                    opened = self._partition(plan, part, meta)
                    position[part.id], opening[part.id] = i, time.perf_counter_ns() - start
                    yield opened

        for served in self.engines.aggregate(plan, to_engines()):
            report = served.report  # timed by the engines; the opening counts too
            report.time_ns += opening[report.partition]
            observe_partition(report)
            answers[position[report.partition]] = served.partials, report
        ordered = [answers[i] for i in sorted(answers)]
        partials = [t for t, _ in ordered if t is not None]
        merged = merge_partials(partials, plan) if partials else \
            partial_schema(plan, meta.schema).empty_table()
        return Aggregated(merged, [r for _, r in ordered])

    def scan(self, plan: Plan, meta: DatasetMeta,
             batch_rows: int) -> Iterator[pa.RecordBatch | Report]:
        """Each partition's matching rows (stored types), `batch_rows` at most a batch, then
        its report."""
        for part in iter_partitions(meta, plan.partitions):
            check_deadline()
            start = time.perf_counter_ns()
            if not may_match(plan.filter, part.stats, part.rows, meta.schema, plan.dialect):
                yield _done(Report(part.id, STATS, pruned=True), start)
                continue
            table = self.storage.read(plan.dataset, part.id, meta)
            matched = 0
            for batch in self.engines.arrow.scan(table, plan, batch_rows):
                check_deadline()
                matched += batch.num_rows
                yield batch
            yield _done(Report(part.id, EngineName.ARROW.value, rows_scanned=table.num_rows,
                               rows_matched=matched, bytes_scanned=bytes_read(table, plan)),
                        start)

    def _partition(self, plan: Plan, part: PartitionMeta, meta: DatasetMeta) -> Partition:
        # (dataset, partition, checksum) keys the engines' caches: new data, new key
        return Partition(part.id, self.storage.read(plan.dataset, part.id, meta), part.stats,
                         (plan.dataset, part.id, part.checksum))


def _done(report: Report, start: int) -> Report:
    """The report timed from `start` and counted in the current request's metrics."""
    report.time_ns = time.perf_counter_ns() - start
    observe_partition(report)
    return report
