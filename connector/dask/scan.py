"""The scan expression's reading half: what rows and columns a `BpfScan` reads."""

from __future__ import annotations

import functools
from typing import Any

import pandas as pd
from dask.base import tokenize

from bpfstore.contract.plan import Column, Expr

from . import _compat as c
from .source import Source, scan_partition


class ScanBase(c.PartitionsFiltered, c.BlockwiseIO):
    """The rows one `BpfScan` reads (its source, filters, columns and computed columns).
    `expr.BpfScan` adds how it absorbs its parents; translation and aggregation need only
    this part, so they import it without importing `expr` (which imports them)."""

    # join_keys: what a merge pushed into `filters` (join_keys.PushedKeys), for explain
    _parameters = ["source", "columns", "filters", "exprs", "kind", "series_name",
                   "_partitions", "join_keys"]
    _defaults = {"columns": None, "filters": None, "exprs": (), "kind": "frame",
                 "series_name": None, "_partitions": None, "join_keys": ()}
    _absorb_projections = True
    _filter_passthrough = True

    # -- what it reads ---------------------------------------------------------------------

    @property
    def source(self) -> Source:
        return self.operand("source")

    @property
    def kind(self) -> str:  # "frame", "series" or "index"
        return self.operand("kind")

    @functools.cached_property
    def computed(self) -> dict[str, tuple[Expr, Any]]:
        return {name: (e, dtype) for name, e, dtype in self.operand("exprs")}

    @property
    def columns(self) -> list[Any]:
        cols = self.operand("columns")
        if cols is None:
            return list(self._frame_meta.columns)
        return list(cols)

    def column_expr(self, name: str) -> Expr:
        return self.computed[name][0] if name in self.computed else Column(name)

    @property
    def task_indices(self) -> list[int]:
        """The Dask partitions (tasks) this scan reads."""
        chosen = self.operand("_partitions")
        return list(chosen) if chosen is not None else list(range(len(
            self.source.task_partitions)))

    def same_rows(self, other: Any) -> bool:
        return isinstance(other, ScanBase) and self.source == other.source and \
            self.operand("filters") == other.operand("filters") and \
            self.operand("_partitions") == other.operand("_partitions")

    @functools.cached_property
    def _frame_meta(self) -> pd.DataFrame:
        meta = self.source.meta
        if self.computed:
            meta = meta.copy()
            for name, (_, dtype) in self.computed.items():
                meta[name] = pd.Series([], dtype=dtype)
        return meta

    @functools.cached_property
    def _meta(self) -> Any:
        if self.kind == "index":
            return self.source.meta.index
        frame = self._frame_meta[self.columns]
        if self.kind == "series":
            return frame.iloc[:, 0].rename(self.operand("series_name"))
        return frame

    @functools.cached_property
    def _name(self) -> str:
        # The dataset version is in every task name: new data never reuses a cached result.
        return f"bpfstore-{self.source.dataset}-v{self.source.version}-" \
            + tokenize(*self.operands)

    def _divisions(self) -> tuple[None, ...]:  # one per task (Source.tasks), order unknown
        return (None,) * (len(self.source.task_partitions) + 1)

    def _filtered_task(self, name: Any, index: int) -> Any:
        exprs = tuple((n, e, d) for n, (e, d) in self.computed.items() if n in self.columns)
        return c.Task(name, scan_partition, self.source, index, self.columns,
                      self.operand("filters"), exprs, self.kind, self.operand("series_name"),
                      _data_producer=True)
