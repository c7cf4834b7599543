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
        Sub,
        _DelayedExpr,
        determine_column_projection,
    )
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
    warnings.warn(f"bpfstore: Dask pushdown disabled: {REASON}", RuntimeWarning, stacklevel=2)


def operand(expr: Any, name: str, default: Any = None) -> Any:
    """An operand by name, or `default` when this dask's class has no such parameter."""
    params = getattr(type(expr), "_parameters", [])
    return expr.operand(name) if name in params else default


__all__ = [
    "ARITH", "COMPARE", "EQ", "GE", "GROUPBY_SINGLE", "GROUPBY_SPEC", "GT", "LE", "LEN", "LT",
    "NE", "PUSHDOWN", "REASON", "REDUCTIONS", "Add", "And", "ApplyConcatApply", "Assign",
    "Between", "Blockwise", "BlockwiseIO", "Div", "Expr", "Filter", "Index", "Invert", "IsNa",
    "Isin", "Mul", "Neg", "NotNull", "Or", "PartitionsFiltered", "Projection", "Sub", "Task",
    "_DelayedExpr", "determine_column_projection", "new_collection", "operand",
    "optimize_until",
]
