"""Dask expression nodes -> plan expressions (predicates and computed values).

Every function returns None for anything it does not understand; the caller then leaves that
part to Dask. Column references must read the same rows as the scan being rewritten
(`same_rows`), so a pushed filter never misaligns a column.
"""

from __future__ import annotations

import datetime as dt
import math
import numbers
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from bpfstore.contract.plan import (
    And,
    Arith,
    ArithOp,
    Between,
    Column,
    Compare,
    CompareOp,
    Expr,
    In,
    IsNull,
    Literal,
    Negate,
    Not,
    Or,
    columns_of,
)
from bpfstore.contract.pushable import Capabilities, split_pushable

from . import _compat as c
from .scan import ScanBase

_COMPARE_OPS = {"<": CompareOp.LT, "<=": CompareOp.LE, ">": CompareOp.GT, ">=": CompareOp.GE,
                "==": CompareOp.EQ, "!=": CompareOp.NE}
_ARITH_OPS = {"+": ArithOp.ADD, "-": ArithOp.SUB, "*": ArithOp.MUL, "/": ArithOp.DIV}


def column_ref(node: Any, scan: ScanBase) -> tuple[Expr, Any] | None:
    """(plan expression, pandas dtype) of a Series node reading `scan`'s rows, else None."""
    if isinstance(node, ScanBase) and node.kind == "series" and node.same_rows(scan):
        name = node.columns[0]
        return node.column_expr(name), node._meta.dtype
    if type(node) is c.Projection and isinstance(node.frame, ScanBase):
        frame, name = node.frame, node.operand("columns")
        if frame.kind == "frame" and isinstance(name, str) and frame.same_rows(scan) \
                and name in frame.columns:
            return frame.column_expr(name), frame._meta[name].dtype
    return None


def number(value: Any) -> int | float | None:
    """A finite int/float literal (numpy scalars too; never bool), else None."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        return None
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if isinstance(value, int | float) else None


def is_numeric(dtype: Any, view: str) -> bool:
    if isinstance(dtype, pd.ArrowDtype):
        t = dtype.pyarrow_dtype
        return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
    return isinstance(dtype, np.dtype) and dtype.kind in "iuf"


def value(node: Any, scan: ScanBase, view: str) -> Expr | None:
    """A numeric operand of arithmetic: a same-rows numeric column or a number literal."""
    ref = column_ref(node, scan)
    if ref is not None:
        return ref[0] if is_numeric(ref[1], view) and nan_safe(scan, ref[0]) else None
    n = number(node)
    return Literal(n) if n is not None else None


def arithmetic(parent: Any, scan: ScanBase, view: str) -> Expr | None:
    """`parent` (Add/Sub/Mul/Div/Neg over `scan`'s columns) as a plan value expression."""
    if type(parent) is c.Neg:
        arg = value(parent.frame, scan, view)
        return Negate(arg) if arg is not None and not isinstance(arg, Literal) else None
    op = c.ARITH.get(type(parent))
    if op is None or (op == "/" and view == "arrow"):  # pandas' Arrow division rules differ
        return None
    left, right = value(parent.left, scan, view), value(parent.right, scan, view)
    if left is None or right is None or (isinstance(left, Literal) and isinstance(right, Literal)):
        return None
    return Arith(_ARITH_OPS[op], left, right)


def predicate(node: Any, scan: ScanBase) -> Expr | None:
    """A boolean Dask expression over `scan`'s columns as a PANDAS-dialect plan filter."""
    t = type(node)
    if t in c.COMPARE:
        return _compare(c.COMPARE[t], node.left, node.right, scan)
    if t is c.And or t is c.Or:
        left, right = predicate(node.left, scan), predicate(node.right, scan)
        if left is None or right is None:
            return None
        return And((left, right)) if t is c.And else Or((left, right))
    if t is c.Invert:
        inner = predicate(node.frame, scan)
        return Not(inner) if inner is not None else None
    if t is c.IsNa or t is c.NotNull:
        ref = _plain(node.frame, scan)
        if ref is None:
            return None
        return IsNull(ref[0]) if t is c.IsNa else Not(IsNull(ref[0]))
    if t is c.Between:
        return _between(node, scan)
    if t is c.Isin:
        return _isin(node, scan)
    return None


def pushable(node: Any, scan: ScanBase) -> Expr | None:
    """A term of a Dask filter as a plan filter the agents run (`predicate`, then
    `split_pushable` against the stored schema), else None: the term stays in Dask."""
    e = predicate(node, scan)
    if e is None:
        return None
    _, residual = split_pushable(e, Capabilities(scan.source.desc.stored_schema))
    return None if residual else e


def conjuncts(node: Any) -> list[Any]:
    """A Dask predicate split at its top-level ANDs."""
    if type(node) is c.And:
        return conjuncts(node.left) + conjuncts(node.right)
    return [node]


def _plain(node: Any, scan: ScanBase) -> tuple[Column, Any] | None:
    """A reference to a stored column (not a computed one): filters compare stored values.
    Arrow-typed columns only without missing values: pandas compares them with Kleene logic
    (`!=` and `~` differ from the PANDAS dialect on NA) and keeps NaN apart from NA."""
    ref = column_ref(node, scan)
    if ref is None or not isinstance(ref[0], Column):
        return None
    if isinstance(ref[1], pd.ArrowDtype) and scan.source.has_missing(ref[0].name):
        return None
    return ref  # type: ignore[return-value]


def nan_safe(scan: ScanBase, e: Expr) -> bool:
    """False when `e` reads an Arrow float column holding NaN: pandas' ArrowDtype counts NaN
    as a value, the PANDAS dialect as missing."""
    if scan.source.view != "arrow":
        return True
    meta = scan.source.meta
    return not any(isinstance(meta[c].dtype, pd.ArrowDtype)
                   and pa.types.is_floating(meta[c].dtype.pyarrow_dtype)
                   and scan.source.has_nan(c) for c in columns_of([e]) if c in meta)


def _compare(op: str, left: Any, right: Any, scan: ScanBase) -> Expr | None:
    ref, other, plan_op = _plain(left, scan), right, _COMPARE_OPS[op]
    if ref is None:
        ref, other, plan_op = _plain(right, scan), left, plan_op.flipped()
    if ref is None:
        return None
    lit = literal_for(other, ref[1])
    return Compare(plan_op, ref[0], lit) if lit is not None else None


def _between(node: Any, scan: ScanBase) -> Expr | None:
    ref = _plain(node.frame, scan)
    if ref is None:
        return None
    low, high = literal_for(node.left, ref[1]), literal_for(node.right, ref[1])
    if low is None or high is None:
        return None
    inclusive = node.operand("inclusive")
    if inclusive == "both":
        return Between(ref[0], low, high)
    lo_op = CompareOp.GE if inclusive == "left" else CompareOp.GT
    hi_op = CompareOp.LE if inclusive == "right" else CompareOp.LT
    return And((Compare(lo_op, ref[0], low), Compare(hi_op, ref[0], high)))


def _isin(node: Any, scan: ScanBase) -> Expr | None:
    ref = _plain(node.frame, scan)
    values = node.operand("values")
    if ref is None or type(values) is not c._DelayedExpr:
        return None
    items = values.obj.compute(scheduler="sync")
    lits, missing = [], False
    for v in list(items):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            missing = True  # pandas: then isin also matches missing values
            continue
        lit = literal_for(v, ref[1])
        if lit is None:
            return None
        lits.append(lit)
    if not lits:
        return IsNull(ref[0]) if missing else None
    found = In(ref[0], tuple(lits))
    return Or((found, IsNull(ref[0]))) if missing else found


def literal_for(v: Any, dtype: Any) -> Literal | None:
    """`v` as a literal compared with a column of `dtype` the way pandas compares them."""
    if isinstance(dtype, pd.ArrowDtype):
        return _arrow_literal(v, dtype)
    kind = getattr(dtype, "kind", None)
    if kind in ("i", "u", "f"):
        n = number(v)
        return Literal(n) if n is not None else None
    if kind == "M":
        if isinstance(v, dt.date) and not isinstance(v, dt.datetime):
            return None  # pandas raises for datetime64 vs date; let it
        try:
            ts = pd.Timestamp(v)
        except (TypeError, ValueError):
            return None
        if ts is pd.NaT or ts.tzinfo is not None:
            return None
        return Literal(ts.to_pydatetime(warn=False))
    if isinstance(dtype, pd.StringDtype) and isinstance(v, str):
        return Literal(str(v))  # np.str_ (from isin's array) -> str
    return None


def _arrow_literal(v: Any, dtype: pd.ArrowDtype) -> Literal | None:
    t = dtype.pyarrow_dtype
    if pa.types.is_date(t):
        return Literal(v) if isinstance(v, dt.date) and not isinstance(v, dt.datetime) else None
    if pa.types.is_integer(t):
        return Literal(v) if isinstance(v, int) and not isinstance(v, bool) else None
    if pa.types.is_floating(t):
        n = number(v)
        return Literal(n) if n is not None else None
    return None  # decimals: pandas compares through a badly rounded cast; leave it to Dask
