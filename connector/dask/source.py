"""What a Dask task needs to reach a dataset, and the functions the tasks run.

`Source` travels inside the graph (pickled to workers); gRPC channels never do: each process
keeps its own `Client` per agent list, made on first use.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd
import pyarrow as pa

from bpfstore.contract.errors import VersionGone
from bpfstore.contract.plan import Dialect, EngineName, Expr, Plan, columns_of

from ..client import DatasetDescription, client_for
from ..query import Query, QueryReport
from ..transport import PLAINTEXT, Transport
from . import dtypes
from .evaluate import evaluate

_lock = threading.Lock()
_tally: dict[str, int] = {}


def stats(reset: bool = False) -> dict[str, int]:
    """This process's agent calls and bytes moved by Dask tasks (run it on each worker with
    `client.run(stats)`): aggregate_calls, scan_calls, bytes_moved, bytes_scanned."""
    with _lock:
        out = dict(_tally)
        if reset:
            _tally.clear()
    return out


def _count(report: QueryReport) -> None:
    with _lock:
        _tally[f"{report.mode}_calls"] = _tally.get(f"{report.mode}_calls", 0) + 1
        _tally["bytes_moved"] = _tally.get("bytes_moved", 0) + report.bytes_moved
        _tally["bytes_scanned"] = _tally.get("bytes_scanned", 0) + report.bytes_scanned


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

    @property
    def version(self) -> int:
        return self.desc.version

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
                "transport": self.transport,
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
                f"partitions={len(self.desc.partitions)}, dtypes={self.view!r})")

    def key(self) -> tuple[Any, ...]:
        # The version is part of every token: new data never reuses a cached result.
        return ("bpfstore", self.dataset, self.agents, self.version, self.view,
                tuple(self.partition_ids), self.engine.value, self.aggregates,
                self.transport.identity())  # one caller's results are never another's

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        return self.key()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Source) and self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())


def scan_partition(source: Source, index: int, columns: Sequence[str], where: Expr | None,
                   exprs: tuple[tuple[str, Expr, Any], ...], kind: str, series_name: Any
                   ) -> Any:
    """One partition as pandas: filter and projection on the agent, computed columns here
    (pandas arithmetic on the delivered dtypes, so they equal the user's own pandas)."""
    computed = {name: (e, dtype) for name, e, dtype in exprs}
    base = [c for c in columns if c not in computed]
    needed = list(dict.fromkeys(base + columns_of([computed[c][0] for c in columns
                                                   if c in computed])))
    if not needed:  # index only: the narrowest column tells the row count
        needed = [_narrowest(source.desc.schema, where)]
    table = _run(source, Query.scan(source.dataset, needed, where,
                                    partitions=[source.partition_ids[index]],
                                    dialect=Dialect.PANDAS))
    index_labels: pd.Index = pd.RangeIndex(table.num_rows)
    if where is None:
        start = source.starts[index]
        index_labels = pd.RangeIndex(start, start + table.num_rows)
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


def _narrowest(schema: pa.Schema, where: Expr | None) -> str:
    if where is not None:
        return columns_of([where])[0]
    widths = [(f.type.bit_width if pa.types.is_primitive(f.type) else 1 << 20, i)
              for i, f in enumerate(schema)]
    return schema.field(min(widths)[1]).name


def partials_partition(source: Source, index: int, plan: Plan) -> pa.Table:
    """The merged partial aggregates of one partition, computed by its agent (`plan` is in
    the PANDAS dialect, as every plan a Dask collection makes)."""
    return _run(source, Query(replace(plan, partitions=(source.partition_ids[index],),
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
    _count(result.report)
    return result.table


