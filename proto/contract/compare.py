"""How a literal compares with a column: the one definition that binding, statistics pruning
and the bpf/bcc code generators share (the arrow engine compares bound plans directly).

A comparison of a column (or any expression) of type T with a literal v is the set of T's
values x with `x op v`, as an integer window [lo, hi] of T's stored integers (`window`):
decimals scaled by 10**scale, dates as days, timestamps in their unit, floats as their
total-order keys (`float_key`). The rules (DuckDB's and Spark's):
- a float on either side compares in float64: x correctly rounded to float64, then compared
  (so 0.05 the float equals the decimal 0.05, and 2**53 + 1 equals the float 2**53);
- decimals, integers, dates and timestamps compare exactly (a timestamp at its nanosecond);
- -0.0 equals 0.0; in SQL NaN equals NaN and sorts above +inf.
Binding rewrites a literal without an exact value in the expression's type (a float against
an integer or decimal, a timestamp finer than the column's unit) into an exact comparison in
that type (`exact_form`), so no consumer compares across types.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from fractions import Fraction
from typing import Any

import pyarrow as pa

from .bound import (
    BoundBetween,
    BoundCompare,
    BoundExpr,
    BoundIn,
    BoundLiteral,
    BoundNot,
    BoundOr,
)
from .epoch import DAY_NS, EPOCH, UNIT_NS, epoch_days, epoch_nanos
from .floatkeys import float_from_key, float_key  # noqa: F401 (its home; re-exported)
from .plan import CompareOp

Window = tuple[float | int, float | int]  # stored integers lo..hi; +-inf: unbounded
EMPTY: Window = (1, 0)


def _scale(t: pa.DataType) -> int:
    return t.scale if pa.types.is_decimal(t) else 0


def exact_units(v: Any, t: pa.DataType) -> Fraction:
    """A non-float value in the stored units of type `t`, exactly; ValueError when it has none."""
    if pa.types.is_timestamp(t) or pa.types.is_date32(t):
        if isinstance(v, dt.datetime):
            ns = epoch_nanos(v)
        elif isinstance(v, dt.date):
            ns = epoch_days(v) * DAY_NS
        elif isinstance(v, int) and not isinstance(v, bool):  # nanoseconds no datetime holds
            ns = v
        else:
            raise ValueError(f"{v!r} is not a date or timestamp")
        return Fraction(ns, DAY_NS if pa.types.is_date32(t) else UNIT_NS[t.unit])
    if isinstance(v, bool | int | decimal.Decimal) and not isinstance(v, float):
        return Fraction(v) * 10 ** _scale(t)
    raise ValueError(f"literal {v!r} has no exact value in {t}")


def stored_int(v: Any, t: pa.DataType) -> int:
    """A value of a column of type `t` as the integer it is stored as."""
    if pa.types.is_floating(t):
        return float_key(float(v))
    exact = exact_units(v, t)
    if exact.denominator != 1:
        raise ValueError(f"{v!r} is not a value of {t}")
    return int(exact)


def _float_window(op: CompareOp, v: float, k: int) -> Window:
    """Stored integers x (of a decimal or integer column, scaled by k) with `g(x) op v`,
    where g(x) is x / k correctly rounded to float64."""
    if math.isnan(v):
        raise ValueError("a comparison with NaN depends on the dialect")
    if math.isinf(v):
        below = (v > 0) == (op in (CompareOp.LT, CompareOp.LE))  # every finite x is below +inf
        return (-math.inf, math.inf) if below else EMPTY

    def first_at_least(w: float) -> float | int:  # smallest x with g(x) >= w
        if math.isinf(math.nextafter(w, -math.inf)):
            return -math.inf  # w is the lowest float: every finite number rounds to >= w
        below = Fraction(w) + (Fraction(math.nextafter(w, -math.inf)) - Fraction(w)) / 2
        lo, hi = math.floor(below * k) - 1, math.ceil(Fraction(w) * k)  # g(lo) < w <= g(hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if float(Fraction(mid, k)) >= w else (mid, hi)
        return hi

    up = math.nextafter(v, math.inf)
    ge = first_at_least(v)
    gt = first_at_least(up) if not math.isinf(up) else math.inf
    return {CompareOp.EQ: (ge, gt - 1), CompareOp.LT: (-math.inf, ge - 1),
            CompareOp.LE: (-math.inf, gt - 1), CompareOp.GT: (gt, math.inf),
            CompareOp.GE: (ge, math.inf)}[op]


def window(op: CompareOp, v: Any, t: pa.DataType) -> Window:
    """The stored integers x of a column of type `t` with `x op v` (op not NE), exactly.
    ValueError when the comparison is not a window (a float NaN against a non-float)."""
    if op is CompareOp.NE:
        raise ValueError("!= is not a window")
    if pa.types.is_floating(t):  # order keys: monotonic, NaN largest, -0.0 equal to 0.0
        k = float_key(float(v))
        return {CompareOp.EQ: (k, k), CompareOp.LT: (-math.inf, k - 1),
                CompareOp.LE: (-math.inf, k), CompareOp.GT: (k + 1, math.inf),
                CompareOp.GE: (k, math.inf)}[op]
    if isinstance(v, float):
        return _float_window(op, v, 10 ** _scale(t))
    exact = exact_units(v, t)
    floor, ceil = math.floor(exact), math.ceil(exact)
    return {CompareOp.EQ: (floor, floor) if floor == ceil else EMPTY,
            CompareOp.LT: (-math.inf, ceil - 1), CompareOp.LE: (-math.inf, floor),
            CompareOp.GT: (floor + 1, math.inf), CompareOp.GE: (ceil, math.inf)}[op]


def domain(t: pa.DataType) -> tuple[int, int]:
    """The stored integers of an integer, decimal or timestamp type."""
    if pa.types.is_decimal(t):
        top = 10**t.precision - 1
        return -top, top
    if pa.types.is_timestamp(t):
        return -(2**63), 2**63 - 1
    bits = t.bit_width
    if pa.types.is_unsigned_integer(t):
        return 0, 2**bits - 1
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def _literal(x: int, t: pa.DataType) -> BoundLiteral:
    value: Any = x
    if pa.types.is_decimal(t):
        value = decimal.Decimal(f"{x}E-{t.scale}")
    elif pa.types.is_timestamp(t):  # only units a datetime holds get here (s, ms, us)
        value = EPOCH + dt.timedelta(microseconds=x * UNIT_NS[t.unit] // 1000)
        value = value.replace(tzinfo=dt.UTC) if t.tz is not None else value
    return BoundLiteral(value, result_type=t)


def _clamped(w: Window, t: pa.DataType) -> tuple[int, int] | None:
    lo_t, hi_t = domain(t)
    lo, hi = max(w[0], lo_t), min(w[1], hi_t)
    return (int(lo), int(hi)) if lo <= hi else None


def _window_expr(e: BoundExpr, w: Window, t: pa.DataType) -> BoundExpr:
    """`e` in the window, as a comparison in `t` (NULL stays NULL, as for any comparison)."""
    lo_t, hi_t = domain(t)
    match _clamped(w, t):
        case None:  # nothing: an empty BETWEEN is false for every value and NULL for NULL
            return BoundBetween(e, _literal(1, t), _literal(0, t), result_type=pa.bool_())
        case (lo, hi) if lo == hi:
            return BoundCompare(CompareOp.EQ, e, _literal(lo, t), result_type=pa.bool_())
        case (lo, hi) if hi == hi_t:
            return BoundCompare(CompareOp.GE, e, _literal(lo, t), result_type=pa.bool_())
        case (lo, hi) if lo == lo_t:
            return BoundCompare(CompareOp.LE, e, _literal(hi, t), result_type=pa.bool_())
        case (lo, hi):
            return BoundBetween(e, _literal(lo, t), _literal(hi, t), result_type=pa.bool_())
    raise AssertionError("unreachable")


def needs_exact_form(t: pa.DataType, values: list[Any], common: pa.DataType | None = None
                     ) -> bool:
    """True when a literal has no exact value in `t` (a float against an integer or decimal
    expression, a decimal finer than its scale or beyond its range, a timestamp finer than
    t's unit) or the `common` comparison type cannot hold t's values, and no literal is a
    NaN (the dialect decides)."""
    if any(isinstance(v, float) and math.isnan(v) for v in values):
        return False
    if common is not None and pa.types.is_integer(t) and pa.types.is_integer(common):
        (lo, hi), (c_lo, c_hi) = domain(t), domain(common)
        if lo < c_lo or hi > c_hi:  # uint64 against a signed literal: int64 cannot hold it
            return True
    if pa.types.is_integer(t) or pa.types.is_decimal(t):
        return any(isinstance(v, float) or _outside(v, t) for v in values if v is not None)
    return pa.types.is_timestamp(t) and any(
        isinstance(v, dt.date) and exact_units(v, t).denominator != 1 for v in values)


def _outside(v: Any, t: pa.DataType) -> bool:
    """An exact number that is no value of `t` (finer than its scale, or out of its range):
    comparing in a common type would need more than 38 digits."""
    if isinstance(v, bool) or not isinstance(v, int | decimal.Decimal):
        return False
    exact = exact_units(v, t)
    lo, hi = domain(t)
    return exact.denominator != 1 or not lo <= exact <= hi


def exact_form(op: CompareOp, e: BoundExpr, v: Any, t: pa.DataType) -> BoundExpr:
    """`e op v` for an expression `e` of type `t` and a literal `v` without an exact value in
    `t`, as an exact comparison in `t` (float64(e) is not injective: = may become BETWEEN)."""
    if op is CompareOp.NE:
        eq = exact_form(CompareOp.EQ, e, v, t)
        if isinstance(eq, BoundCompare) and eq.op is CompareOp.EQ:
            return BoundCompare(CompareOp.NE, e, eq.right, result_type=pa.bool_())
        return BoundNot(eq, result_type=pa.bool_())
    return _window_expr(e, window(op, v, t), t)


def between_window(lo: Any, hi: Any, t: pa.DataType) -> Window:
    """Stored values x of type `t` with lo <= x <= hi: the intersection of both windows, so
    either one empty (x >= inf on an integer column) leaves nothing."""
    (lo_ge, hi_ge), (lo_le, hi_le) = window(CompareOp.GE, lo, t), window(CompareOp.LE, hi, t)
    return max(lo_ge, lo_le), min(hi_ge, hi_le)


def exact_between(e: BoundExpr, lo: Any, hi: Any, t: pa.DataType) -> BoundExpr:
    return _window_expr(e, between_window(lo, hi, t), t)


def exact_in(e: BoundExpr, values: tuple[BoundLiteral, ...], t: pa.DataType) -> BoundExpr:
    """`e IN (...)` as exact tests in `t`; NULL entries keep their meaning."""
    singles: list[BoundLiteral] = []
    parts: list[BoundExpr] = []
    for v in values:
        if v.value is None:
            singles.append(BoundLiteral(None, result_type=t))
        else:
            match _clamped(window(CompareOp.EQ, v.value, t), t):
                case (lo, hi) if lo == hi:
                    singles.append(_literal(lo, t))
                case (lo, hi):
                    parts.append(BoundBetween(e, _literal(lo, t), _literal(hi, t),
                                              result_type=pa.bool_()))
    if singles or not parts:
        parts.insert(0, BoundIn(e, tuple(singles), result_type=pa.bool_()))
    return parts[0] if len(parts) == 1 else BoundOr(tuple(parts), result_type=pa.bool_())
