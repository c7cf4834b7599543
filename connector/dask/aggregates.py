"""Dask reductions and groupby aggregations -> a pushdown plan, and its answer -> pandas.

Only default semantics are absorbed (skipna, axis 0, dropna, one output partition, plain
column keys); anything else returns None and stays in Dask.
"""

from __future__ import annotations

import decimal
import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from bpfstore.contract.binding import bind_plan
from bpfstore.contract.combine import Avg, FinalAggregate, Finisher, expand, finish, merge_partials
from bpfstore.contract.errors import ArithmeticOverflow, BpfstoreError
from bpfstore.contract.plan import (
    AggFunc,
    Aggregate,
    Dialect,
    Expr,
    Plan,
    describe,
    describe_aggregate,
)

from . import _compat as c
from . import dtypes
from .scan import ScanBase
from .source import Source
from .translate import is_numeric, nan_safe

FUNCS = ("sum", "min", "max", "count", "mean", "size")
_NUMERIC_ONLY = ("sum", "mean")


@dataclass(frozen=True, eq=False)
class AggSpec:
    """How one absorbed reduction is computed (plan) and shaped back into pandas."""

    source: Source
    plan: Plan  # unbound, no partitions
    finishers: tuple[Finisher, ...]
    shape: str  # "scalar" | "columns" (Series indexed by column) | "groupby"
    labels: tuple[Any, ...]
    meta: Any

    @functools.cached_property
    def bound(self) -> Plan:
        return bind_plan(self.plan, self.source.desc.stored_schema)

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        return (self.source.key(), repr(self.plan), self.finishers, self.shape,
                repr(self.labels))

    def describe(self) -> str:
        aggs = ", ".join(describe_aggregate(a) for a in self.plan.aggregates)
        text = f"aggregate [{aggs}]"
        if self.plan.group_by:
            text += f" group by [{', '.join(self.plan.group_by)}]"
        if self.plan.filter is not None:
            text += f" where {describe(self.plan.filter)}"
        return text

    def merge(self, tables: list[pa.Table]) -> pa.Table:
        return merge_partials(tables, self.bound)

    def to_pandas(self, merged: pa.Table) -> Any:
        result = finish(merged, self.bound, self.finishers)
        view, nkeys = self.source.view, len(self.plan.group_by)
        values = [dtypes.result_values(result.column(nkeys + i), view)
                  for i in range(len(self.finishers))]
        answer_dtypes = self._answer_dtypes()
        self._check_fits(values, answer_dtypes)
        if self.shape == "scalar":
            return dtypes.cast_scalar(values[0][0], self.meta)
        if self.shape == "columns":
            out = pd.Series([v[0] for v in values], index=list(self.labels))
            return _cast(out, self.meta.dtype)
        index = self._index(result)
        if isinstance(self.meta, pd.Series):
            out = _cast(pd.Series(values[0], index=index, name=self.meta.name), answer_dtypes[0])
        else:
            out = pd.DataFrame({i: v for i, v in enumerate(values)}, index=index)
            out.columns = self.meta.columns
            out = out.astype(dict(zip(out.columns, answer_dtypes, strict=True)), errors="ignore")
        return out.sort_index()

    def _answer_dtypes(self) -> list[Any]:
        """Each answer's pandas dtype: the meta's, except that a sum of integers is 64-bit,
        as pandas gives it (Dask's groupby meta keeps int32, which would wrap the sum)."""
        n = len(self.finishers)
        if self.shape == "scalar":
            metas = [getattr(self.meta, "dtype", None)]
        elif self.shape == "columns" or isinstance(self.meta, pd.Series):
            metas = [self.meta.dtype] * n
        else:
            metas = list(self.meta.dtypes)
        return [dtypes.sum_dtype(d) if f.kind == "plain" and
                self.plan.aggregates[f.sum_index].func is AggFunc.SUM else d
                for f, d in zip(self.finishers, metas, strict=True)]

    def _check_fits(self, values: list[list[Any] | np.ndarray], answer_dtypes: list[Any]
                    ) -> None:
        """An exact integer sum outside its dtype is ArithmeticOverflow naming it: pandas
        would wrap it around silently (a wrong answer), and casting it wraps or raises a bare
        OverflowError."""
        for f, dtype, column in zip(self.finishers, answer_dtypes, values, strict=True):
            bounds = dtypes.integer_bounds(dtype)
            if bounds is None:
                continue
            low, high = bounds
            if isinstance(column, np.ndarray):  # whole columns: int64 sums, or floats
                if column.dtype.kind != "i" or not len(column):
                    continue
                outside = (column < low) | (column > high)
                column = column[outside].tolist()
            bad = next((v for v in column if isinstance(v, int | decimal.Decimal)
                        and not low <= v <= high), None)
            if bad is not None:
                agg = describe_aggregate(self.plan.aggregates[f.sum_index])
                raise ArithmeticOverflow(f"{agg} = {bad} does not fit {dtype}")

    def _index(self, result: pa.Table) -> pd.Index:
        keys = list(self.plan.group_by)
        arrays = [dtypes.to_series(result.column(k), self.source.meta[k].dtype, k) for k in keys]
        if len(arrays) == 1:
            return pd.Index(arrays[0], name=keys[0])
        return pd.MultiIndex.from_arrays(arrays, names=keys)


def _cast(s: pd.Series, dtype: Any) -> pd.Series:
    try:
        return s.astype(dtype)
    except (TypeError, ValueError):
        return s


def reduction_spec(scan: ScanBase, parent: Any) -> AggSpec | None:
    """Series/DataFrame sum, min, max, count, mean and len over `scan`."""
    view = scan.source.view
    if type(parent) is c.LEN:
        return _spec(scan, [Aggregate(AggFunc.COUNT_STAR)], (), "scalar", (None,), parent._meta)
    func = c.REDUCTIONS.get(type(parent))
    if func is None or scan.kind == "index":
        return None
    if not c.operand(parent, "skipna", True) or c.operand(parent, "axis", 0) not in (0, None,
                                                                                   "index"):
        return None
    if c.operand(parent, "numeric_only", False):
        return None
    columns = scan.columns
    aggs = []
    for name in columns:
        dtype = scan._meta.dtype if scan.kind == "series" else scan._meta[name].dtype
        if not _accepts(func, dtype, view) or not nan_safe(scan, scan.column_expr(name)):
            return None
        aggs.append(_final(func, scan.column_expr(name)))
    if scan.kind == "series":
        meta = parent._meta
        if type(meta) is object:  # dask's placeholder for Arrow decimals: untokenizable
            meta = decimal.Decimal(0)
        return _spec(scan, aggs, (), "scalar", (None,), meta)
    return _spec(scan, aggs, (), "columns", tuple(columns), parent._meta)


def groupby_spec(scan: ScanBase, parent: Any) -> AggSpec | None:
    """`groupby(keys)` with sum/min/max/count/mean/size, or `.agg(...)` of those."""
    if scan.kind != "frame":
        return None
    keys = list(parent.by)
    if not keys or not all(isinstance(k, str) and k in scan.columns and k not in scan.computed
                           for k in keys):
        return None
    if c.operand(parent, "dropna") not in (None, True) or \
            c.operand(parent, "split_out") not in (None, 1):
        return None
    if type(parent) is c.GROUPBY_SPEC:
        spec = parent.spec
        if isinstance(parent._meta, pd.DataFrame) and len(spec) != len(parent._meta.columns):
            return None
        items = [(func, col) for _, func, col in spec]
    else:
        func = c.GROUPBY_SINGLE.get(type(parent))
        if func is None or any(parent.operand(k) not in (None, {}, {"numeric_only": False})
                               for k in ("chunk_kwargs", "aggregate_kwargs")):
            return None
        if func == "size":
            items = [("size", None)]
        else:
            sliced = parent.operand("_slice")
            cols = [sliced] if isinstance(sliced, str) else list(sliced) if sliced else \
                [x for x in scan.columns if x not in keys]
            items = [(func, col) for col in cols]
    aggs: list[FinalAggregate] = []
    for func, col in items:
        if not isinstance(func, str) or func not in FUNCS:
            return None
        if func == "size":
            aggs.append(Aggregate(AggFunc.COUNT_STAR))
            continue
        if col not in scan.columns or not _accepts(func, scan._meta[col].dtype, scan.source.view) \
                or not nan_safe(scan, scan.column_expr(col)):
            return None
        aggs.append(_final(func, scan.column_expr(col)))
    return _spec(scan, aggs, tuple(keys), "groupby", (), parent._meta)


def _accepts(func: str, dtype: Any, view: str) -> bool:
    if func == "count":
        return True
    if is_numeric(dtype, view):
        # pandas rounds an Arrow decimal mean to the input scale; the agent does not
        return not (func == "mean" and isinstance(dtype, pd.ArrowDtype)
                    and pa.types.is_decimal(dtype.pyarrow_dtype))
    return func in ("min", "max") and getattr(dtype, "kind", "") == "M"


def _final(func: str, e: Expr) -> FinalAggregate:
    if func == "mean":
        return Avg(e)
    return Aggregate({"sum": AggFunc.SUM, "min": AggFunc.MIN, "max": AggFunc.MAX,
                      "count": AggFunc.COUNT}[func], e)


def _spec(scan: ScanBase, aggs: list[FinalAggregate], keys: tuple[str, ...], shape: str,
          labels: tuple[Any, ...], meta: Any) -> AggSpec | None:
    plan_aggs, finishers = expand(aggs, [f"__r{i}" for i in range(len(aggs))])
    plan = Plan(scan.source.dataset, filter=scan.operand("filters"), group_by=keys,
                aggregates=tuple(plan_aggs), dialect=Dialect.PANDAS)
    try:
        bind_plan(plan, scan.source.desc.stored_schema)
    except (BpfstoreError, TypeError, ValueError):  # what the plan model refuses stays in Dask
        return None
    return AggSpec(scan.source, plan, tuple(finishers), shape, labels, meta)
