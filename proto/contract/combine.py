"""Exact merging of partial aggregates, and finishing them into final answers.

Partials are mergeable: count -> sum of counts; sum -> sum of sums (decimal256(76, s) for
integers and decimals, narrowed to decimal128(38, s) when finished; float64 otherwise);
min/max -> min/max, with SQL's float order (NaN above +inf). The agent merges its own
partitions with the same code the client uses to merge agents.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

import pyarrow as pa
import pyarrow.compute as pc

from . import decimals
from .binding import logical_type, partial_type
from .errors import ArithmeticOverflow
from .floatkeys import float_from_key, float_key, float_keys, floats_from_keys
from .plan import AggFunc, Aggregate, Column, Dialect, Expr, Plan, describe, describe_aggregate

_NON_EMPTY = pc.ScalarAggregateOptions(skip_nulls=True, min_count=1)


@dataclass(frozen=True, slots=True)
class Avg:
    """AVG(arg): travels as SUM + COUNT, finished by the connector."""

    arg: Expr


def avg(e: Expr | str) -> Avg:
    return Avg(Column(e) if isinstance(e, str) else e)


FinalAggregate = Aggregate | Avg


def partial_schema(plan: Plan, schema: pa.Schema) -> pa.Schema:
    """Schema of a bound plan's partials: group keys (logical types), then __agg_<i>."""
    fields = [pa.field(k, logical_type(schema.field(k).type)) for k in plan.group_by]
    fields += [pa.field(f"__agg_{i}", partial_type(a)) for i, a in enumerate(plan.aggregates)]
    return pa.schema(fields)


def merge_partials(tables: Sequence[pa.Table], plan: Plan) -> pa.Table:
    """Merge partial tables of the same bound plan into one partial table.

    Columns are read by position, never by name: a group key may be called anything,
    `__agg_0` included."""
    tables = [t for t in tables if t is not None]
    if len(tables) == 1:
        return tables[0]
    table = pa.concat_tables(tables)
    nkeys = len(plan.group_by)
    if not nkeys:
        return pa.Table.from_arrays(
            [pa.array([_merge_scalar(table.column(i), a)], table.schema.field(i).type)
             for i, a in enumerate(plan.aggregates)],
            schema=table.schema)
    keys = [f"k{i}" for i in range(nkeys)]
    inputs: dict[str, pa.ChunkedArray] = {k: table.column(i) for i, k in enumerate(keys)}
    specs: list[tuple[str, str, object]] = []
    finishers = []
    for i, a in enumerate(plan.aggregates):
        finishers.append(_merge_grouped(a, f"a{i}", table.column(nkeys + i), inputs, specs))
    grouped = pa.table(inputs).group_by(keys, use_threads=False).aggregate(specs)
    out = [grouped.column(k) for k in keys] + [finish(grouped) for finish in finishers]
    return pa.Table.from_arrays(out, schema=table.schema)


def _merge_grouped(a: Aggregate, name: str, col: pa.ChunkedArray, inputs: dict,
                   specs: list) -> Callable[[pa.Table], pa.ChunkedArray]:
    """Register the hash-aggregate inputs merging one aggregate; return how to read it."""
    t = col.type
    if a.func is AggFunc.SUM and pa.types.is_decimal(t):  # exact: sums of 32-bit limbs
        for j, limb in enumerate(decimals.limb_columns(col)):
            inputs[f"{name}_{j}"] = limb
            specs.append((f"{name}_{j}", "sum", _NON_EMPTY))
        limbs = t.bit_width // 32
        return lambda g: pa.chunked_array([decimals.totals_from_limb_sums(
            [g.column(f"{name}_{j}_sum") for j in range(limbs)], t)])
    func = _merge_func(a)
    order = _float_order(a, t)
    inputs[name] = float_keys(col) if order else col
    specs.append((name, func, _NON_EMPTY))

    def read(g: pa.Table) -> pa.ChunkedArray:
        merged = g.column(f"{name}_{func}")
        if order:
            merged = floats_from_keys(merged)
        if a.func in (AggFunc.COUNT, AggFunc.COUNT_STAR):
            merged = pc.fill_null(merged, 0)
        return merged.cast(t)
    return read


def _merge_func(a: Aggregate) -> str:
    return {AggFunc.MIN: "min", AggFunc.MAX: "max"}.get(a.func, "sum")


def _float_order(a: Aggregate, t: pa.DataType) -> bool:
    """Float MIN/MAX merge by the order key (so -0.0 and 0.0 are one value; the pandas
    dialect's partials hold no NaN, which is NULL to it)."""
    return a.func in (AggFunc.MIN, AggFunc.MAX) and pa.types.is_floating(t)


def _merge_scalar(col: pa.ChunkedArray, a: Aggregate) -> object:
    values = [v for v in col.to_pylist() if v is not None]
    if a.func in (AggFunc.COUNT, AggFunc.COUNT_STAR):
        return sum(values)
    if not values:
        return None
    if a.func is AggFunc.SUM:
        if isinstance(values[0], float):
            return _float_sum(values)
        return decimals.sum_decimals(values, col.type)
    if isinstance(values[0], float):
        keys = [float_key(v) for v in values]
        return float_from_key(min(keys) if a.func is AggFunc.MIN else max(keys))
    return min(values) if a.func is AggFunc.MIN else max(values)


def _float_sum(values: list[float]) -> float:
    if any(math.isnan(v) for v in values):
        return math.nan
    try:
        return math.fsum(values)
    except (OverflowError, ValueError):
        return sum(values)


# -- finishing -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Finisher:
    """How one requested aggregate is read from the merged partials."""

    name: str
    kind: str  # "plain" or "avg"
    sum_index: int
    count_index: int = -1


def expand(requested: Sequence[FinalAggregate], names: Sequence[str] | None
           ) -> tuple[list[Aggregate], list[Finisher]]:
    """The plan aggregates needed (AVG -> SUM + COUNT, shared when repeated) and finishers."""
    plan_aggs: list[Aggregate] = []
    index: dict[Aggregate, int] = {}

    def slot(a: Aggregate) -> int:
        if a not in index:
            index[a] = len(plan_aggs)
            plan_aggs.append(a)
        return index[a]

    finishers = []
    for i, r in enumerate(requested):
        if isinstance(r, Avg):
            name = names[i] if names else f"avg({describe(r.arg)})"
            finishers.append(Finisher(name, "avg", slot(Aggregate(AggFunc.SUM, r.arg)),
                                      slot(Aggregate(AggFunc.COUNT, r.arg))))
        else:
            name = names[i] if names else describe_aggregate(r).replace("count_star", "count(*)")
            finishers.append(Finisher(name, "plain", slot(r)))
    return plan_aggs, finishers


def finish(merged: pa.Table, plan: Plan, finishers: Sequence[Finisher]) -> pa.Table:
    """Final answers from merged partials (AVG = exact sum / count in the dialect's types)."""
    nkeys = len(plan.group_by)
    if not plan.group_by and merged.num_rows == 0:  # no partitions at all: SQL's empty answer
        merged = pa.Table.from_arrays(
            [pa.array([0 if a.func in (AggFunc.COUNT, AggFunc.COUNT_STAR) else None], f.type)
             for a, f in zip(plan.aggregates, merged.schema, strict=True)],
            schema=merged.schema)
    columns = [merged.column(i) for i in range(nkeys)]
    names = list(plan.group_by)
    for f in finishers:
        agg = plan.aggregates[f.sum_index]
        col = merged.column(nkeys + f.sum_index)
        if f.kind == "avg":
            col = _average(col, merged.column(nkeys + f.count_index), agg, plan.dialect)
        elif agg.func is AggFunc.SUM:
            if pa.types.is_decimal(col.type):
                col = decimals.final_sums(col)
            if plan.dialect is Dialect.PANDAS:  # pandas: the sum of nothing is 0
                col = pc.fill_null(col, pa.scalar(0, col.type))
        columns.append(col)
        names.append(f.name)
    return pa.Table.from_arrays(columns, names=names)


def avg_type(arg_type: pa.DataType, dialect: Dialect) -> pa.DataType:
    """AVG(decimal(p, s)) is decimal(p + 4, s + 4) in SQL (Spark's rule); float64 otherwise."""
    t = logical_type(arg_type)
    if pa.types.is_decimal(t) and dialect is Dialect.SQL:
        return pa.decimal128(min(38, t.precision + 4), min(38, t.scale + 4))
    return pa.float64()


def _average(sums: pa.ChunkedArray, counts: pa.ChunkedArray, agg: Aggregate,
             dialect: Dialect) -> pa.Array:
    assert agg.arg is not None and agg.arg.result_type is not None
    return average(sums, counts, avg_type(agg.arg.result_type, dialect), describe(agg.arg))


def average(sums: pa.ChunkedArray, counts: pa.ChunkedArray, t: pa.DataType,
            what: str = "avg") -> pa.Array:
    """sum / count in type `t`, from exact sums: a decimal rounded half up at t's scale, or one
    correctly rounded float64 division; NULL where nothing was counted."""
    out: list[object] = []
    for s, n in zip(sums.to_pylist(), counts.to_pylist(), strict=True):
        if s is None or not n:
            out.append(None)
        elif pa.types.is_decimal(t):
            scale = sums.type.scale
            mean = decimals.divide_half_up(decimals.unscaled(s, scale) * 10**t.scale,
                                           10**scale * n)
            if abs(mean) >= 10**t.precision:  # e.g. the avg of 38 digits at scale 4
                raise ArithmeticOverflow(f"avg({what}) does not fit {t}")
            out.append(decimals.to_decimal(mean, t.scale))
        elif isinstance(s, float):
            out.append(s / n)
        else:  # exact integer or decimal sum: one correctly rounded division
            out.append(float(Fraction(s) / n))
    return pa.array(out, t)
