"""The user-space engine: vectorized Arrow/numpy evaluation of any plan the proto can express.

Input: a bound plan and partitions. Output: each partition's partial aggregates (group keys,
then one column per aggregate; types from `binding.partial_type`) or its filtered, projected
rows. A partition is evaluated ARROW_STEP_ROWS rows at a time, the request's budget checked
between slices; the slices' partials merge exactly, as partitions' do.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from bpfstore.contract import decimals
from bpfstore.contract.binding import logical_type, partial_type
from bpfstore.contract.combine import merge_partials, partial_schema
from bpfstore.contract.floatkeys import float_from_key, float_keys, floats_from_keys
from bpfstore.contract.plan import AggFunc, Aggregate, Dialect, EngineName, Plan, columns_of

from ..budget import check_budget
from . import exact
from .base import Partition, Served, served
from .evaluate import Evaluator, Val

_NON_EMPTY = pc.ScalarAggregateOptions(skip_nulls=True, min_count=1)
ARROW_STEP_ROWS = 1 << 20  # rows evaluated at a time (~10-100 ms): a cancel is seen that soon


@dataclass(frozen=True, slots=True)
class AggregateResult:
    partials: pa.Table
    rows_scanned: int
    rows_matched: int


class ArrowEngine:
    name = EngineName.ARROW

    def aggregate(self, plan: Plan, partitions: Iterable[Partition]) -> Iterator[Served]:
        for part in partitions:
            yield self.aggregate_one(plan, part)

    def aggregate_one(self, plan: Plan, part: Partition) -> Served:
        results = []
        for piece in _slices(part.table):
            check_budget()
            results.append(aggregate_table(piece, plan))
        partials = results[0].partials if len(results) == 1 else \
            merge_partials([r.partials for r in results], plan)
        return served(part, plan, partials, sum(r.rows_matched for r in results), self.name)

    def scan(self, table: pa.Table, plan: Plan, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """The partition's filtered, projected batches, a slice at a time."""
        columns = list(plan.columns) or table.column_names
        needed = list(dict.fromkeys(columns + columns_of([plan.filter])))
        for piece in _slices(table):
            check_budget()
            matched = filter_table(piece.select(needed), plan).select(columns)
            yield from matched.to_batches(max_chunksize=batch_rows)


def aggregate_table(table: pa.Table, plan: Plan) -> AggregateResult:
    """Partials of a bound plan over a whole table at once (the oracle of the other engines)."""
    needed = columns_of([plan.filter, *(a.arg for a in plan.aggregates)]) + [
        k for k in plan.group_by]
    table = table.select(list(dict.fromkeys(needed)))
    matched = filter_table(table, plan)
    ev = Evaluator(matched, plan.dialect)
    if plan.group_by:
        partials = _grouped(ev, plan)
    else:
        partials = pa.Table.from_arrays(
            [_scalar_partial(ev, a) for a in plan.aggregates],
            schema=partial_schema(plan, table.schema))
    return AggregateResult(partials, table.num_rows, matched.num_rows)


def filter_table(table: pa.Table, plan: Plan) -> pa.Table:
    if plan.filter is None:
        return table
    mask = Evaluator(table, plan.dialect).predicate(plan.filter)
    if isinstance(mask, pa.Scalar):
        return table if mask.as_py() else table.slice(0, 0)
    return table.filter(mask)  # null selects nothing (SQL WHERE keeps only TRUE)


def _slices(table: pa.Table) -> Iterator[pa.Table]:
    yield table.slice(0, ARROW_STEP_ROWS)
    for start in range(ARROW_STEP_ROWS, table.num_rows, ARROW_STEP_ROWS):
        yield table.slice(start, ARROW_STEP_ROWS)


def _scalar_partial(ev: Evaluator, agg: Aggregate) -> pa.Array:
    t = partial_type(agg)
    if agg.func is AggFunc.COUNT_STAR:
        return pa.array([ev.table.num_rows], t)
    assert agg.arg is not None
    v = ev.value(agg.arg)
    if agg.func is AggFunc.COUNT:
        return pa.array([len(v.data) - v.data.null_count], t)
    if agg.func is AggFunc.SUM:
        return pa.array([_exact_sum(v, ev.dialect, t)], t)
    return pa.array([_min_or_max(v, agg.func, ev.dialect)], t)


def _exact_sum(v: Val, dialect: Dialect, t: pa.DataType) -> object:
    if pa.types.is_floating(v.type):
        return exact.compensated_float_sum(v.data, skip_nan=dialect is Dialect.PANDAS)
    data = v.data if not pa.types.is_boolean(v.type) else pc.cast(v.data, pa.int64())
    return decimals.decimal_total(exact.exact_sum(data), t)


def _min_or_max(v: Val, func: AggFunc, dialect: Dialect) -> object:
    key = "min" if func is AggFunc.MIN else "max"
    data = v.data
    if pa.types.is_floating(v.type):  # SQL's order (PANDAS: NaN is already NULL here)
        found = pc.min_max(float_keys(data))[key]
        if not found.is_valid:
            return None
        return float_from_key(found.as_py())
    if pa.types.is_dictionary(data.type):
        data = pa.chunked_array(
            [c.dictionary.take(pc.unique(c.indices).drop_null()) for c in exact.chunks(data)],
            type=data.type.value_type)
    found = pc.min_max(data)[key].as_py()
    if v.scaled and found is not None:
        return decimals.to_decimal(found, v.type.scale)
    return found


def _grouped(ev: Evaluator, plan: Plan) -> pa.Table:
    """Hash aggregation; integer and decimal sums as sums of 32-bit limbs, so they stay exact."""
    columns: dict[str, pa.ChunkedArray] = {}
    keys: list[tuple[str, Val]] = []
    for i, name in enumerate(plan.group_by):
        k = ev.column(name)
        columns[f"k{i}"] = k.data
        keys.append((f"k{i}", k))
    specs: list[tuple[object, str, object]] = []
    finishers = []
    for i, agg in enumerate(plan.aggregates):
        finishers.append(_grouped_agg(ev, agg, f"v{i}", columns, specs))
    table = pa.table(columns) if columns else pa.table({"k": pa.nulls(ev.table.num_rows)})
    if plan.dialect is Dialect.PANDAS:  # pandas drops groups whose key is missing
        for name, _ in keys:
            table = table.filter(pc.is_valid(table.column(name)))
    grouped = table.group_by([name for name, _ in keys], use_threads=False).aggregate(specs)
    out = [_key_back(grouped.column(name), k) for name, k in keys]
    out += [finish(grouped) for finish in finishers]
    return pa.Table.from_arrays(out, schema=partial_schema(plan, ev.table.schema))


def _grouped_agg(ev: Evaluator, agg: Aggregate, name: str, columns: dict, specs: list):
    """Register the hash-aggregate inputs for one aggregate; return how to read its result."""
    t = partial_type(agg)
    if agg.func is AggFunc.COUNT_STAR:
        if ([], "count_all", None) not in specs:  # one hash count serves every COUNT(*)
            specs.append(([], "count_all", None))
        return lambda g: g.column("count_all").cast(t)
    assert agg.arg is not None
    v = ev.value(agg.arg)
    if agg.func is AggFunc.COUNT:
        columns[name] = v.data
        specs.append((name, "count", pc.CountOptions(mode="only_valid")))
        return lambda g: g.column(f"{name}_count")
    if agg.func is AggFunc.SUM:
        if pa.types.is_floating(v.type):
            columns[name] = pc.cast(v.data, pa.float64())
            specs.append((name, "sum", _NON_EMPTY))
            return lambda g: g.column(f"{name}_sum")
        data = v.data
        if pa.types.is_boolean(v.type) or pa.types.is_integer(v.type) and v.type != pa.uint64():
            data = pc.cast(data, pa.int64())
        if _int64_sum_cannot_overflow(data):
            columns[name] = data
            specs.append((name, "sum", _NON_EMPTY))
            return lambda g: exact.int64_to_decimal(g.column(f"{name}_sum"), t)
        limbs = decimals.limb_columns(data)
        for j, limb in enumerate(limbs):
            columns[f"{name}_{j}"] = limb
            specs.append((f"{name}_{j}", "sum", _NON_EMPTY))
        return lambda g: decimals.totals_from_limb_sums(
            [g.column(f"{name}_{j}_sum") for j in range(len(limbs))], t)
    func = "min" if agg.func is AggFunc.MIN else "max"
    if pa.types.is_floating(v.type):
        columns[name] = float_keys(v.data)
        specs.append((name, func, _NON_EMPTY))
        return lambda g: floats_from_keys(g.column(f"{name}_{func}")).cast(t)
    data = v.data
    if pa.types.is_dictionary(data.type):
        data = pc.cast(data, data.type.value_type)
    columns[name] = data
    specs.append((name, func, _NON_EMPTY))
    if v.scaled:
        return lambda g: ev.to_logical(Val(g.column(f"{name}_{func}"), v.type, True)).data.cast(t)
    return lambda g: g.column(f"{name}_{func}").cast(t)


def _int64_sum_cannot_overflow(data: pa.ChunkedArray) -> bool:
    """True when no group's int64 sum can overflow: rows x largest magnitude < 2**63."""
    if data.type != pa.int64():
        return False
    mm = pc.min_max(data)
    lo, hi = mm["min"].as_py(), mm["max"].as_py()
    return lo is None or max(abs(lo), abs(hi)) * len(data) < 2**63


def _key_back(data: pa.ChunkedArray, k: Val) -> pa.ChunkedArray:
    """Group keys in their logical type (dictionary strings decoded, decimals restored)."""
    if k.scaled:
        return exact.int64_to_decimal(data, logical_type(k.type))
    if pa.types.is_dictionary(data.type):
        return pc.cast(data, data.type.value_type)
    return data
