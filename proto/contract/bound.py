"""Bound expressions: what `binding.bind` returns and every engine consumes.

A bound node is its unbound class narrowed (so `case Compare(...)` still matches it): its
`result_type` is never None, its column exists in the partition's schema, its literals are
typed and coerced to the type they are compared with, and a comparison of an expression with
a literal has the expression on the left (`5 < x` is bound as `x > 5`). Only binding (and
the exact forms of `compare.py`, which it calls) builds them, through `bound_node`.

`column_literal`, `column_range` and `column_of` recognise "column op literal" once, for
statistics pruning and code generation.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from .plan import (
    And,
    Arith,
    Between,
    Cast,
    Column,
    Compare,
    CompareOp,
    Expr,
    In,
    IsNull,
    KeySet,
    Literal,
    Negate,
    Not,
    Or,
)


@dataclass(frozen=True, slots=True)
class BoundColumn(Column):
    result_type: pa.DataType = field(kw_only=True)  # the stored type


@dataclass(frozen=True, slots=True)
class BoundLiteral(Literal):
    result_type: pa.DataType = field(kw_only=True)  # the value is exactly of this type


@dataclass(frozen=True, slots=True)
class BoundCompare(Compare):
    left: BoundExpr
    right: BoundExpr  # a literal is always on the right when the left is not one
    result_type: pa.DataType = field(kw_only=True)


@dataclass(frozen=True, slots=True)
class BoundAnd(And):
    args: tuple[BoundExpr, ...]
    result_type: pa.DataType = field(kw_only=True)


@dataclass(frozen=True, slots=True)
class BoundOr(Or):
    args: tuple[BoundExpr, ...]
    result_type: pa.DataType = field(kw_only=True)


@dataclass(frozen=True, slots=True)
class BoundNot(Not):
    arg: BoundExpr
    result_type: pa.DataType = field(kw_only=True)


@dataclass(frozen=True, slots=True)
class BoundIn(In):
    arg: BoundExpr
    values: tuple[BoundLiteral, ...]
    result_type: pa.DataType = field(kw_only=True)


@dataclass(frozen=True, slots=True)
class BoundKeySet(KeySet):
    arg: BoundExpr
    keys: pa.Array  # normalized (keysets.py), in the type they are compared in
    result_type: pa.DataType = field(kw_only=True)

    __eq__ = KeySet.__eq__  # arrays compare with `equals` and are not hashable
    __hash__ = KeySet.__hash__


@dataclass(frozen=True, slots=True)
class BoundIsNull(IsNull):
    arg: BoundExpr
    result_type: pa.DataType = field(kw_only=True)


@dataclass(frozen=True, slots=True)
class BoundBetween(Between):
    arg: BoundExpr
    low: BoundExpr
    high: BoundExpr
    result_type: pa.DataType = field(kw_only=True)


@dataclass(frozen=True, slots=True)
class BoundArith(Arith):
    left: BoundExpr
    right: BoundExpr
    result_type: pa.DataType = field(kw_only=True)


@dataclass(frozen=True, slots=True)
class BoundNegate(Negate):
    arg: BoundExpr
    result_type: pa.DataType = field(kw_only=True)


@dataclass(frozen=True, slots=True)
class BoundCast(Cast):
    arg: BoundExpr
    result_type: pa.DataType = field(kw_only=True)


BoundExpr = (BoundColumn | BoundLiteral | BoundCompare | BoundAnd | BoundOr | BoundNot
             | BoundIn | BoundKeySet | BoundIsNull | BoundBetween | BoundArith | BoundNegate
             | BoundCast)

_BOUND: dict[type[Expr], type[Any]] = {
    Column: BoundColumn, Literal: BoundLiteral, Compare: BoundCompare, And: BoundAnd,
    Or: BoundOr, Not: BoundNot, In: BoundIn, KeySet: BoundKeySet, IsNull: BoundIsNull,
    Between: BoundBetween, Arith: BoundArith, Negate: BoundNegate, Cast: BoundCast,
}


def bound_node(e: Expr, t: pa.DataType, **changes: Any) -> Any:
    """`e` as its bound class, of type `t`, with `changes` (bound children) applied."""
    unbound = next(c for c in type(e).__mro__ if c in _BOUND)
    values = {f.name: getattr(e, f.name) for f in dataclasses.fields(e)}
    return _BOUND[unbound](**(values | changes | {"result_type": t}))


def literal(value: Any, t: pa.DataType) -> BoundLiteral:
    return BoundLiteral(value, result_type=t)


def column_of(e: Expr) -> str | None:
    """The column name when `e` is a plain column reference."""
    return e.name if isinstance(e, Column) else None


def column_literal(e: Compare) -> tuple[str, CompareOp, Any] | None:
    """(column, op, value) when `e` is `column op literal` with a non-NULL literal."""
    name = column_of(e.left)
    if name is None or not isinstance(e.right, Literal) or e.right.value is None:
        return None
    return name, e.op, e.right.value


def column_range(e: Between) -> tuple[str, Any, Any] | None:
    """(column, low, high) when `e` is `column BETWEEN literal AND literal`, both non-NULL."""
    name = column_of(e.arg)
    low, high = e.low, e.high
    if name is None or not isinstance(low, Literal) or not isinstance(high, Literal) or \
            low.value is None or high.value is None:
        return None
    return name, low.value, high.value
