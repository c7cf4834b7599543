"""Every private dask import of the Dask front end, in one place.

dask-expr has no public extension API for IO expressions, so the pushdown hooks depend on
internals (class names, operand names, the `_simplify_up` contract). If anything here is
missing, or dask is outside the tested range, `PUSHDOWN` is False and `read_bpfstore` builds a
plain `from_map` collection instead: slower, never wrong.
"""

from __future__ import annotations

import warnings
from typing import Any

import dask

# [low, high), keep in step with the `dask` extra in pyproject.toml. Passed tests/e2e -m dask:
# 2025.4.1, 2025.5.1, 2025.7.0, 2026.1.3, 2026.8.0. Before 2025.4, distributed's
# Client.compute skipped the expression optimizer, so nothing was pushed down there.
TESTED = ((2025, 4), (2026, 9))

REASON = ""
PUSHDOWN = False


def _version(text: str) -> tuple[int, int]:
    parts = text.split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return (0, 0)


VERSION = _version(dask.__version__)

try:
    from dask._task_spec import Task
    from dask.dataframe.dask_expr import _groupby as groupby
    from dask.dataframe.dask_expr import _reductions as reductions
    from dask.dataframe.dask_expr._expr import (
        EQ,
        GE,
        GT,
        LE,
        LT,
        NE,
        Add,
        And,
        Assign,
        Between,
        Blockwise,
        Div,
        Expr,
        Filter,
        Index,
        Invert,
        Isin,
        IsNa,
        Mul,
        Neg,
        NotNull,
        Or,
        PartitionsFiltered,
        Projection,
        RenameFrame,
        Sub,
        _DelayedExpr,
        determine_column_projection,
    )
    from dask.dataframe.dask_expr._merge import Merge
    from dask.dataframe.dask_expr._reductions import ApplyConcatApply
    from dask.dataframe.dask_expr.io.io import BlockwiseIO

    try:  # moved between 2025.1 and 2025.7
        from dask._collections import new_collection
    except ImportError:  # pragma: no cover - older dask
        from dask.dataframe.dask_expr._collection import new_collection
    from dask._expr import optimize_until

    # Exact classes, compared with `type(x) is`: a subclass may mean something else
    # (groupby Min subclasses Max).
    REDUCTIONS: dict[Any, str] = {
        reductions.Sum: "sum", reductions.Min: "min", reductions.Max: "max",
        reductions.Count: "count", reductions.Mean: "mean",
    }
    LEN: Any = reductions.Len
    GROUPBY_SINGLE: dict[Any, str] = {
        groupby.Sum: "sum", groupby.Min: "min", groupby.Max: "max", groupby.Count: "count",
        groupby.Size: "size", groupby.Mean: "mean",
    }
    GROUPBY_SPEC: Any = groupby.GroupbyAggregation
    COMPARE: dict[Any, str] = {LT: "<", LE: "<=", GT: ">", GE: ">=", EQ: "==", NE: "!="}
    ARITH: dict[Any, str] = {Add: "+", Sub: "-", Mul: "*", Div: "/"}
    PUSHDOWN = TESTED[0] <= VERSION < TESTED[1]
    if not PUSHDOWN:
        REASON = f"dask {dask.__version__} is outside the tested range {TESTED}"
except ImportError as exc:  # a renamed internal: lose pushdown, keep correctness
    REASON = f"dask internals changed ({exc})"

if REASON:
    warnings.warn(f"bpfstore: Dask pushdown and join guards disabled: {REASON}", RuntimeWarning,
                  stacklevel=2)


# -- guards against dask bugs that give wrong answers on joins ---------------------------------
#
# `j = a.merge(b, ...); j = j[j.x == 1]; j = j[j.y == 2]`: dask first rewrites the second
# predicate's `Projection(Filter(j, p1), "y")` into `Filter(Projection(j, "y"), p1)`, then
# squashes the two filters into `j[p1 & (Filter(j.y, p1) == 2)]`. That predicate mixes two row
# sets, so pandas aligns it by row label; a broadcast join's partitions concatenate one merge
# per broadcast partition and repeat labels, and alignment then makes the mask longer
# (IndexError) or pairs the wrong rows. And a broadcast join (many partitions merged with
# fewer than log2(many)/2 partitions) claims, like a hash join, that its output is partitioned
# by the join keys; it is partitioned like its larger side, so a later groupby on those keys
# skips its combine step and returns one row per group *per partition* (TPC-H Q17: rows
# lost in `l_quantity < 0.2 * avg`). The guards are installed where the internals they
# replace look as read in the tested range.

def _mixes_row_sets(predicate: Any, frame: Any) -> bool:
    """Whether `predicate` reads rows other than `frame`'s: through a Filter, or through a
    scan that took in a different filter (a node with `same_rows`, as `expr.BpfScan`: the
    agents renumber the rows they filter, so not even unique labels would align them)."""
    def is_scan(e: Any) -> bool:  # on the class: an Expr's __getattr__ may raise anything
        return hasattr(type(e), "same_rows")

    scans = [e for e in frame.walk() if is_scan(e)]
    return any(isinstance(e, Filter | FilterAlign)
               or is_scan(e) and not any(e.same_rows(s) for s in scans)
               for e in predicate.walk())


def _guard_filter_squash() -> None:
    """Refuse a squash of two Filters whose predicate would still hold another Filter: the
    chain `Filter(Filter(x, p1), p2)` stays, and p2 has the rows of its frame, in order."""
    original = Filter._simplify_up

    def _simplify_up(self: Any, parent: Any, dependents: Any) -> Any:
        out = original(self, parent, dependents)
        if isinstance(parent, Filter | FilterAlign) and isinstance(out, Filter) \
                and out.frame._name == self.frame._name \
                and _mixes_row_sets(out.predicate, out.frame):
            return None
        return out

    _simplify_up.__wrapped__ = original  # type: ignore[attr-defined]
    Filter._simplify_up = _simplify_up  # type: ignore[method-assign]


def _fresh_index(frames: list[Any]) -> Any:
    """A broadcast join's output partition with the labels pandas' merge gives (0..n-1)."""
    from dask.dataframe.multi import _concat_wrapper  # late: private, used only when guarded

    return _concat_wrapper(frames).reset_index(drop=True)


def _guard_broadcast_labels() -> None:
    """A broadcast join on columns numbers its rows 0..n-1 in each partition, as pandas'
    merge and dask's hash join do, instead of repeating the labels of each piece."""
    original = merge.BroadcastJoin._layer

    def _layer(self: Any) -> dict:
        dsk = original(self)
        if self.left_index or self.right_index:  # the labels are data
            return dsk
        for part in self._partitions:
            fn, pieces = dsk[(self._name, part)]
            if fn is merge._concat_wrapper:
                dsk[(self._name, part)] = (_fresh_index, pieces)
        return dsk

    _layer.__wrapped__ = original  # type: ignore[attr-defined]
    merge.BroadcastJoin._layer = _layer  # type: ignore[method-assign]


def _guard_broadcast_partitioning() -> None:
    """A merge that is (or will lower to) a broadcast join claims no key partitioning."""
    claim: Any = merge.Merge.unique_partition_mapping_columns_from_shuffle

    def unique_partition_mapping_columns_from_shuffle(self: Any) -> set:
        if not self._is_single_partition_broadcast and (
                isinstance(self, merge.BroadcastJoin)
                or type(self) is merge.Merge and self.is_broadcast_join):
            return set()
        return claim.fget(self)

    unique_partition_mapping_columns_from_shuffle.__wrapped__ = claim.fget  # type: ignore
    merge.Merge.unique_partition_mapping_columns_from_shuffle = property(  # type: ignore
        unique_partition_mapping_columns_from_shuffle)


GUARDS = False
if PUSHDOWN:
    try:
        from dask.dataframe.dask_expr import _merge as merge
        from dask.dataframe.dask_expr._expr import FilterAlign

        _guard_filter_squash()
        _guard_broadcast_labels()
        _guard_broadcast_partitioning()
        GUARDS = True
    except (ImportError, AttributeError) as exc:  # pragma: no cover - checked by the tests
        warnings.warn(f"bpfstore: Dask join guards not installed ({exc}); Dask code that "
                      "filters a merge twice may be wrong", RuntimeWarning, stacklevel=2)


def operand(expr: Any, name: str, default: Any = None) -> Any:
    """An operand by name, or `default` when this dask's class has no such parameter."""
    params = getattr(type(expr), "_parameters", [])
    return expr.operand(name) if name in params else default


__all__ = [
    "ARITH", "COMPARE", "EQ", "GE", "GROUPBY_SINGLE", "GROUPBY_SPEC", "GT", "LE", "LEN", "LT",
    "NE", "PUSHDOWN", "REASON", "REDUCTIONS", "Add", "And", "ApplyConcatApply", "Assign",
    "Between", "Blockwise", "BlockwiseIO", "Div", "Expr", "Filter", "Index", "Invert", "IsNa",
    "Isin", "Merge", "Mul", "Neg", "NotNull", "Or", "PartitionsFiltered", "Projection",
    "RenameFrame", "Sub", "Task",
    "_DelayedExpr", "determine_column_projection", "new_collection", "operand",
    "optimize_until",
]
