"""What a Dask task needs to reach a dataset, and the functions the tasks run.

`Source` travels inside the graph (pickled to workers); gRPC channels never do: each process
keeps its own `Client` per agent list, made on first use. A Dask partition (task) reads one
run of bpfstore partitions of one agent (`Source.tasks`, made by `task_groups`): rows in one
Scan call, partials in one Aggregate call, concatenated in the partitions' order.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from bpfstore.contract.errors import BpfstoreError, VersionGone
from bpfstore.contract.plan import Dialect, EngineName, Expr, Plan, columns_of, count_star

from ..client import DatasetDescription, client_for
from ..descriptions import by_replicas, even_runs
from ..query import Query, QueryReport
from ..transport import PLAINTEXT, Transport
from . import dtypes
from .evaluate import evaluate

# The default layout aims at this many rows per task (TPC-H SF1 lineitem, 61 partitions of
# 100,000 rows: about 1.5 million), and never makes fewer tasks per agent than there are
# threads to run them (docs/benchmarks/dask-partitions-per-task.md).
TARGET_TASK_ROWS = 1_500_000

_lock = threading.Lock()
_tally: dict[str, int] = {}


def stats(reset: bool = False) -> dict[str, int]:
    """This process's agent calls and bytes moved by Dask tasks (run it on each worker with
    `client.run(stats)`): aggregate_calls, scan_calls, bytes_moved, bytes_scanned, and
    bytes_moved.<dataset> per dataset."""
    with _lock:
        out = dict(_tally)
        if reset:
            _tally.clear()
    return out


def _count(report: QueryReport, dataset: str) -> None:
    with _lock:
        for key, n in ((f"{report.mode}_calls", 1), ("bytes_moved", report.bytes_moved),
                       ("bytes_scanned", report.bytes_scanned),
                       (f"bytes_moved.{dataset}", report.bytes_moved)):
            _tally[key] = _tally.get(key, 0) + n


@dataclass(frozen=True, eq=False, repr=False)
class Source:
    """One version of one dataset, as read by one `read_bpfstore` call."""

    dataset: str
    agents: tuple[str, ...]
    desc: DatasetDescription
    view: str  # "numpy" or "arrow" (see dtypes.py)
    engine: EngineName = EngineName.AUTO  # the agents' engine for pushed-down aggregates
    aggregates: bool = True  # False: only filters, projections and arithmetic are pushed
    transport: Transport = PLAINTEXT  # TLS and token; travels to the workers with the tasks
    # Each Dask partition's bpfstore partitions (indices into desc.partitions); None: one each
    tasks: tuple[tuple[int, ...], ...] | None = None
    # A merge with a small frame filters this scan by at most this many of its keys
    # (join_keys.py); 0: never
    join_keys: int = 0

    @property
    def version(self) -> int:
        return self.desc.version

    @functools.cached_property
    def task_partitions(self) -> tuple[tuple[int, ...], ...]:
        if self.tasks is not None:
            return self.tasks
        return tuple((i,) for i in range(len(self.desc.partitions)))

    def task_ids(self, task: int) -> list[str]:
        """The ids of the bpfstore partitions Dask partition `task` reads, in dataset order."""
        ids = self.partition_ids
        return [ids[i] for i in self.task_partitions[task]]

    @property
    def partition_ids(self) -> list[str]:
        return [p.id for p in self.desc.partitions]

    @functools.cached_property
    def meta(self) -> pd.DataFrame:
        return dtypes.base_meta(self.desc, self.view)

    @functools.cached_property
    def _missing(self) -> dict[str, tuple[bool, bool]]:
        """column -> (may hold NaN, may hold NaN or null), from the partition statistics."""
        out = {}
        for f in self.desc.schema:
            stats = [p.stats.get(f.name, {}) for p in self.desc.partitions]
            nan = any(s.get("has_nan", True) for s in stats)
            out[f.name] = (nan, nan or any(s.get("null_count", 1) for s in stats))
        return out

    def has_nan(self, column: str) -> bool:
        return self._missing.get(column, (True, True))[0]

    def has_missing(self, column: str) -> bool:
        return self._missing.get(column, (True, True))[1]

    def __getstate__(self) -> dict[str, Any]:
        # Every task carries its Source: leave the per-partition statistics behind (what they
        # decide is kept in `meta` and `_missing`), so task messages stay small.
        slim = replace(self.desc, partitions=tuple(replace(p, stats={})
                                                   for p in self.desc.partitions))
        return {"dataset": self.dataset, "agents": self.agents, "desc": slim,
                "view": self.view, "engine": self.engine, "aggregates": self.aggregates,
                "transport": self.transport, "tasks": self.tasks, "join_keys": self.join_keys,
                "meta": self.meta, "_missing": self._missing}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)  # frozen dataclass

    @functools.cached_property
    def starts(self) -> list[int]:
        """First row number of each partition: unfiltered scans get pandas' row labels."""
        out, n = [], 0
        for p in self.desc.partitions:
            out.append(n)
            n += p.rows
        return out

    def __repr__(self) -> str:
        return (f"Source({self.dataset!r}, version={self.version}, "
                f"partitions={len(self.desc.partitions)}, tasks={len(self.task_partitions)}, "
                f"dtypes={self.view!r})")

    def key(self) -> tuple[Any, ...]:
        # The version is part of every token: new data never reuses a cached result.
        return ("bpfstore", self.dataset, self.agents, self.version, self.view,
                tuple(self.partition_ids), self.engine.value, self.aggregates,
                self.transport.identity(),  # one caller's results are never another's
                # same rows, but dask-expr reuses an expression of the same name, Source and
                # all: without it a second read with another compression would not use it
                self.transport.compression,
                self.task_partitions, self.join_keys)

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        return self.key()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Source) and self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())


def task_groups(desc: DatasetDescription, per_task: int | None,
                threads: int | None = None) -> tuple[tuple[int, ...], ...]:
    """Partitions sharing their replica list, in as few even runs of at most `per_task` as
    can be, in dataset order (as Spark's aggregate tasks); ordered by their first partition.
    `per_task` None: enough partitions for about TARGET_TASK_ROWS rows, but at least
    `threads` (default: those of the Dask cluster) runs per agent."""
    groups = by_replicas(desc.partitions)
    by_rows, per_agent = 1, 1
    if per_task is None and groups:
        by_rows = TARGET_TASK_ROWS // max(1, desc.rows // len(desc.partitions))
        per_agent = math.ceil((threads or _threads()) / len(groups))  # threads per agent
    return tuple(sorted(run for ps in groups for run in even_runs(
        ps, per_task or max(1, min(by_rows, math.ceil(len(ps) / per_agent))))))


def _threads() -> int:
    """The threads that will run the tasks: the distributed client's, else this machine's."""
    try:
        from distributed import get_client

        return max(1, sum(get_client().nthreads().values()))
    except (ImportError, ValueError):
        from dask.system import CPU_COUNT

        return CPU_COUNT


def scan_partition(source: Source, index: int, columns: Sequence[str], where: Expr | None,
                   exprs: tuple[tuple[str, Expr, Any], ...], kind: str, series_name: Any
                   ) -> Any:
    """One Dask partition as pandas (its bpfstore partitions in one Scan call per agent,
    concatenated in their order): filter and projection on the agent, computed columns here
    (pandas arithmetic on the delivered dtypes, so they equal the user's own pandas)."""
    computed = {name: (e, dtype) for name, e, dtype in exprs}
    base = [c for c in columns if c not in computed]
    needed = list(dict.fromkeys(base + columns_of([computed[c][0] for c in columns
                                                   if c in computed])))
    if not needed:  # index only: the narrowest column tells the row count
        needed = [_narrowest(source.desc.schema, where)]
    table = _run(source, Query.scan(source.dataset, needed, where,
                                    partitions=source.task_ids(index),
                                    dialect=Dialect.PANDAS, per_agent=True))
    index_labels: pd.Index = pd.RangeIndex(table.num_rows)
    if where is None:  # every row of each partition: pandas' labels
        index_labels = _labels(source, source.task_partitions[index], table.num_rows)
    if kind == "index":
        return index_labels
    frame = dtypes.to_frame(table, source.meta[[c for c in needed if c in source.meta]],
                            index_labels)
    # All computed columns read the stored values (an assign may reuse a stored name).
    values = {name: pd.Series(evaluate(computed[name][0], frame), index=index_labels)
              .astype(computed[name][1]) for name in columns if name in computed}
    frame = frame.assign(**values) if values else frame
    frame = frame[list(columns)]
    if kind == "series":
        return frame.iloc[:, 0].rename(series_name)
    return frame


def _labels(source: Source, parts: tuple[int, ...], rows: int) -> pd.Index:
    """The row numbers of these partitions' rows in the whole dataset (one range when they
    are consecutive)."""
    ranges = [range(source.starts[i], source.starts[i] + source.desc.partitions[i].rows)
              for i in parts]
    if sum(len(r) for r in ranges) != rows:  # pragma: no cover - the description's row counts
        raise BpfstoreError(f"dataset {source.dataset!r}: {rows} rows scanned from partitions "
                            f"described with {sum(len(r) for r in ranges)}")
    if all(a.stop == b.start for a, b in zip(ranges, ranges[1:], strict=False)):
        return pd.RangeIndex(ranges[0].start if ranges else 0, ranges[-1].stop if ranges else 0)
    return pd.Index(np.concatenate([np.arange(r.start, r.stop) for r in ranges]))


def _narrowest(schema: pa.Schema, where: Expr | None) -> str:
    if where is not None:
        return columns_of([where])[0]
    widths = [(f.type.bit_width if pa.types.is_primitive(f.type) else 1 << 20, i)
              for i, f in enumerate(schema)]
    return schema.field(min(widths)[1]).name


def partials_partition(source: Source, index: int, plan: Plan) -> pa.Table:
    """The merged partial aggregates of one Dask partition's bpfstore partitions, computed by
    their agent in one Aggregate call (`plan` is in the PANDAS dialect, as every plan a Dask
    collection makes)."""
    return _run(source, Query(replace(plan, partitions=tuple(source.task_ids(index)),
                                      engine=source.engine)))


def _run(source: Source, query: Query) -> pa.Table:
    """`query` on the snapshot the collection was built on: a graph never mixes versions.
    Once the agents no longer keep that version (an overwrite, past their retention), the
    graph cannot be answered exactly: the error says to build it again."""
    try:
        result = client_for(source.agents, source.transport).run(query, source.desc)
    except VersionGone as exc:
        raise VersionGone(
            f"dataset {source.dataset!r} changed after this Dask collection was made from its "
            f"version {source.version}, which the agents no longer keep ({exc}): recompute "
            f"from a new read_bpfstore") from None
    _count(result.report, source.dataset)
    return result.table




@functools.lru_cache(maxsize=256)
def rows_matching(source: Source, where: Expr | None, tasks: tuple[int, ...]) -> int:
    """How many rows of these Dask partitions `where` keeps: the description's counts when
    there is no filter, else one Aggregate call (COUNT(*), merged partials: a few bytes)."""
    parts = [i for t in tasks for i in source.task_partitions[t]]
    if where is None:
        return sum(source.desc.partitions[i].rows for i in parts)
    ids = source.partition_ids
    plan = Plan(source.dataset, partitions=tuple(ids[i] for i in parts), filter=where,
                aggregates=(count_star(),), dialect=Dialect.PANDAS, engine=source.engine)
    return sum(int(v or 0) for v in _run(source, Query(plan)).column(0).to_pylist())
