"""Per-partition column statistics: computed at ingest, used to prune partitions and to answer
COUNT / MIN / MAX without reading data. Every use is conservative: when in doubt, scan.
"""

from __future__ import annotations

import bisect
import datetime as dt
import decimal
import math
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from bpfstore.contract.binding import logical_type, partial_type
from bpfstore.contract.bound import column_literal, column_of, column_range
from bpfstore.contract.combine import partial_schema
from bpfstore.contract.compare import stored_int, window
from bpfstore.contract.epoch import date_from_days, epoch_days
from bpfstore.contract.keysets import split_null
from bpfstore.contract.plan import (
    AggFunc,
    And,
    Between,
    Compare,
    CompareOp,
    Dialect,
    Expr,
    In,
    IsNull,
    KeySet,
    Not,
    Or,
    Plan,
    PlanVisitor,
)


@dataclass
class ColumnStats:
    """JSON-friendly: min/max encoded per type (decimals as text, dates as days)."""

    null_count: int
    min: Any = None
    max: Any = None
    has_nan: bool = False


def column_stats(data: pa.ChunkedArray) -> ColumnStats:
    t = data.type
    null_count = _null_count(data)  # before a dictionary is reduced to its distinct values
    if pa.types.is_dictionary(t):
        data = pa.chunked_array(
            [c.dictionary.take(pc.unique(c.indices).drop_null()) for c in data.chunks],
            type=t.value_type) if data.num_chunks else pa.chunked_array([], t.value_type)
        t = t.value_type
    if pa.types.is_binary(t) or pa.types.is_null(t):
        return ColumnStats(null_count)
    has_nan = False
    if pa.types.is_floating(t):
        has_nan = bool(pc.any(pc.is_nan(data)).as_py())
    if pa.types.is_decimal(t) and t.bit_width == 64:
        data = data.cast(pa.decimal128(t.precision, t.scale))
    if pa.types.is_timestamp(t):  # its integers, in its unit: exact at any resolution
        data = data.cast(pa.int64())
    if pa.types.is_date32(t):  # its days (what `encode` keeps): no Python date holds them all
        data = data.cast(pa.int32())
    mm = pc.min_max(data)
    lo, hi = mm["min"].as_py(), mm["max"].as_py()
    if pa.types.is_floating(t):  # -0.0 equals 0.0: MIN/MAX answer 0.0, as every engine does
        lo, hi = (None if x is None else x + 0.0 for x in (lo, hi))
    return ColumnStats(null_count, encode(lo), encode(hi), has_nan)


def _null_count(data: pa.ChunkedArray) -> int:
    return sum(c.null_count for c in data.chunks)


def encode(v: Any) -> Any:
    """A column value as JSON that `decode` turns back into exactly that value: decimals as
    text, dates as days, timestamps as integers in their unit, floats as floats (NaN is
    `has_nan`; json keeps -0.0 and the infinities)."""
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, dt.datetime):
        raise TypeError("timestamps are stored as their integers")
    if isinstance(v, dt.date):
        return epoch_days(v)
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def decode(v: Any, t: pa.DataType) -> Any:
    """A stats value back as the Python value of its column's logical type."""
    t = logical_type(t)
    if v is None:
        return None
    if pa.types.is_decimal(t):
        return decimal.Decimal(v)
    if pa.types.is_date(t):
        return date_from_days(v)
    if pa.types.is_timestamp(t):
        return pa.scalar(stored_timestamp(v, t), t).as_py()
    return v


def stored_timestamp(v: int | str, t: pa.DataType) -> int:
    """A timestamp statistic as its integer (catalogs before 0.2 stored isoformat text)."""
    if isinstance(v, str):
        return stored_int(dt.datetime.fromisoformat(v), t)
    return v


def stored_bounds(s: ColumnStats, t: pa.DataType) -> tuple[int, int] | None:
    """[min, max] as stored integers (float order keys for floats; NaN left out), or None
    when the statistics hold no value."""
    t = logical_type(t)
    if s.min is None or s.max is None:
        return None
    if pa.types.is_timestamp(t):
        return stored_timestamp(s.min, t), stored_timestamp(s.max, t)
    if pa.types.is_date32(t):
        return s.min, s.max
    return stored_int(decode(s.min, t), t), stored_int(decode(s.max, t), t)


# -- pruning ---------------------------------------------------------------------------------


def may_match(e: Expr | None, stats: dict[str, ColumnStats], rows: int, schema: pa.Schema,
              dialect: Dialect) -> bool:
    """False only when the statistics prove that no row of the partition satisfies `e`."""
    if e is None:
        return rows > 0
    if rows == 0:
        return False
    try:
        return _May(stats, rows, schema, dialect).visit(e)
    except (TypeError, ValueError, KeyError, decimal.InvalidOperation):
        return True


class _May(PlanVisitor[bool]):
    """Whether a row may satisfy each node (True for anything it cannot judge). A bound
    comparison has its literal on the right, so "column op literal" is one shape."""

    def __init__(self, stats: dict[str, ColumnStats], rows: int, schema: pa.Schema,
                 dialect: Dialect) -> None:
        self.stats, self.rows, self.schema, self.dialect = stats, rows, schema, dialect

    def unsupported(self, e: Expr) -> bool:
        return True

    def and_(self, e: And, args: list[bool]) -> bool:
        return all(args)

    def or_(self, e: Or, args: list[bool]) -> bool:
        return any(args)

    def is_null(self, e: IsNull, arg: bool) -> bool:
        name = column_of(e.arg)
        if name is None:
            return True
        s = self.stats[name]
        return s.null_count > 0 or (self.dialect is Dialect.PANDAS and s.has_nan)

    def not_(self, e: Not, arg: bool) -> bool:
        name = column_of(e.arg.arg) if isinstance(e.arg, IsNull) else None
        return True if name is None else self.stats[name].null_count < self.rows

    def compare(self, e: Compare, left: bool, right: bool) -> bool:
        match column_literal(e):
            case (name, op, v):
                return self.range_may(name, op, v)
        a, b = column_of(e.left), column_of(e.right)
        if a is not None and b is not None:
            return _pair_may(a, e.op, b, self.stats, self.rows, self.schema)
        return True

    def between(self, e: Between, arg: bool, low: bool, high: bool) -> bool:
        match column_range(e):
            case (name, lo, hi):
                return self.range_may(name, CompareOp.GE, lo) and \
                    self.range_may(name, CompareOp.LE, hi)
        return True

    def in_(self, e: In, arg: bool) -> bool:
        name = column_of(e.arg)
        if name is None:
            return True
        return any(self.range_may(name, CompareOp.EQ, v.value)
                   for v in e.values if v.value is not None) or (
            self.dialect is Dialect.PANDAS and any(v.value is None for v in e.values))

    def key_set(self, e: KeySet, arg: bool) -> bool:
        """Whether a key lies in [min, max]: a binary search of the sorted keys."""
        name = column_of(e.arg)
        if name is None:
            return True
        keys, has_null = split_null(e.keys)
        s, t = self.stats[name], logical_type(self.schema.field(name).type)
        if self.dialect is Dialect.PANDAS and (has_null or _has_nan(keys)) and (
                s.null_count or s.has_nan):
            return True  # a missing value matches NULL or NaN keys
        if not len(keys) or s.null_count >= self.rows:
            return False  # nothing matches an empty set, and NULL x never matches
        if s.has_nan or s.min is None or s.max is None:
            return True
        if pa.types.is_string(t):
            lo, hi, order = s.min, s.max, _python_value
        else:
            bounds = stored_bounds(s, t)
            if bounds is None:
                return True
            (lo, hi), order = bounds, _stored(t)
        i = bisect.bisect_left(keys, lo, key=order)
        return i < len(keys) and order(keys[i]) <= hi

    def range_may(self, name: str, op: CompareOp, v: Any) -> bool:
        return _range_may(name, self.stats, self.rows, self.schema, op, v)


def _has_nan(keys: pa.Array) -> bool:
    return pa.types.is_floating(keys.type) and bool(len(keys)) and math.isnan(keys[-1].as_py())


def _python_value(k: pa.Scalar) -> Any:
    return k.as_py()


def _stored(t: pa.DataType) -> Any:
    """A key (a scalar of `t`, or float64 for a float column) as the integer stored_bounds
    compares it with: float order keys, unscaled decimals, days, timestamp units."""
    if pa.types.is_timestamp(t) or pa.types.is_date32(t):
        width = pa.int64() if pa.types.is_timestamp(t) else pa.int32()
        return lambda k: k.cast(width).as_py()
    if pa.types.is_floating(t):
        return lambda k: stored_int(k.as_py(), pa.float64())
    return lambda k: stored_int(k.as_py(), t)


def _range_may(name: str, stats: dict[str, ColumnStats], rows: int, schema: pa.Schema,
               op: CompareOp, v: Any) -> bool:
    """Whether a value in [min, max] may satisfy `column op v`: the literal's window of
    stored values (proto/contract/compare.py, as the engines compare) meets [min, max]."""
    s = stats[name]
    t = logical_type(schema.field(name).type)
    if op is CompareOp.NE or s.has_nan or (isinstance(v, float) and math.isnan(v)):
        return True
    if s.null_count >= rows:
        return False  # all NULL: no comparison is true
    if pa.types.is_string(t) or pa.types.is_binary(t):
        lo, hi = s.min, s.max
        if lo is None or hi is None:
            return True
        return bool({CompareOp.EQ: lo <= v <= hi, CompareOp.LT: lo < v, CompareOp.LE: lo <= v,
                     CompareOp.GT: hi > v, CompareOp.GE: hi >= v}[op])
    bounds = stored_bounds(s, t)
    if bounds is None:
        return True
    w_lo, w_hi = window(op, v, t)
    return w_lo <= w_hi and w_lo <= bounds[1] and w_hi >= bounds[0]


def _pair_may(a: str, op: CompareOp, b: str, stats: dict[str, ColumnStats], rows: int,
              schema: pa.Schema) -> bool:
    """Whether `a op b` may hold for a row: x in [min a, max a] and y in [min b, max b] as
    exact integers at one decimal scale (integer-like columns only; != is never pruned)."""
    sa, sb = stats[a], stats[b]
    if op is CompareOp.NE:
        return True
    if max(sa.null_count, sb.null_count) >= rows:
        return False  # a side that is all NULL: no comparison is true (missing in pandas)
    ta, tb = logical_type(schema.field(a).type), logical_type(schema.field(b).type)
    temporal = pa.types.is_temporal(ta) or pa.types.is_temporal(tb)
    if (temporal and ta != tb) or not all(
            pa.types.is_integer(t) or pa.types.is_decimal(t) or pa.types.is_boolean(t)
            or pa.types.is_date32(t) or pa.types.is_timestamp(t) for t in (ta, tb)):
        return True
    ba, bb = stored_bounds(sa, ta), stored_bounds(sb, tb)
    if ba is None or bb is None:
        return True
    scale = [t.scale if pa.types.is_decimal(t) else 0 for t in (ta, tb)]
    (xlo, xhi), (ylo, yhi) = ([v * 10 ** (max(scale) - k) for v in bs]
                              for bs, k in ((ba, scale[0]), (bb, scale[1])))
    return bool({CompareOp.EQ: xlo <= yhi and ylo <= xhi, CompareOp.LT: xlo < yhi,
                 CompareOp.LE: xlo <= yhi, CompareOp.GT: xhi > ylo,
                 CompareOp.GE: xhi >= ylo}[op])


# -- answers from statistics -----------------------------------------------------------------


def answer_from_stats(plan: Plan, stats: dict[str, ColumnStats], rows: int,
                      schema: pa.Schema) -> list[Any] | None:
    """One partial row computed from statistics alone, or None when data must be read."""
    if plan.filter is not None or plan.group_by or not plan.aggregates:
        return None
    out = []
    for agg in plan.aggregates:
        if agg.func is AggFunc.COUNT_STAR:
            out.append(rows)
            continue
        name = column_of(agg.arg) if agg.arg is not None else None
        if name is None or agg.func is AggFunc.SUM:
            return None
        s = stats.get(name)
        t = logical_type(schema.field(name).type)
        if s is None or s.has_nan:
            return None
        if agg.func is AggFunc.COUNT:
            out.append(rows - s.null_count)
        elif pa.types.is_binary(t) or (s.min is None and s.null_count < rows):
            return None
        else:
            value = s.min if agg.func is AggFunc.MIN else s.max
            # a timestamp as its integer: exact without pandas (which holds nanoseconds)
            out.append(stored_timestamp(value, t) if pa.types.is_timestamp(t) else
                       value if pa.types.is_date32(t) else decode(value, t))
    return out


def stats_partials(plan: Plan, values: list[Any]) -> pa.Table:
    schema = partial_schema(plan, pa.schema([]))
    return pa.Table.from_arrays(
        [pa.array([v], partial_type(a)) for v, a in zip(values, plan.aggregates, strict=True)],
        schema=schema)
