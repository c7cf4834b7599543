"""The JSON the Spark extension sends (typed expression trees, aggregate specs) -> plans.

Every arithmetic and cast node carries Spark's own result type and ANSI flag, so the agent
reproduces Spark's decimal typing and overflow exactly (`result_type`, `overflow`).
Partials come back in Spark's aggregation-buffer types: `to_buffers` range-checks them the
way Spark's buffer would (ANSI: error; legacy: NULL plus an overflow flag Spark merges).

Expression JSON: {"col": name} | {"lit": text|null, "type": T}
  | {"op": "="|"!="|"<"|"<="|">"|">="|"and"|"or"|"not"|"isnull"|"in", "args": [...]}
  | {"op": "+"|"-"|"*"|"/"|"neg"|"cast", "args": [...], "type": T, "ansi": bool}
  | {"op": "in_keys", "args": [expr], "type": T, "keys": [text|null...]} (a key set)
with T a Spark type name (`DataType.sql()`).
Aggregate spec: {"filter": expr|null, "groups": [column...],
  "partials": [{"fn": "count_star"} | {"fn": "count"|"sum"|"min"|"max", "arg": expr,
               "type": T, "ansi": bool} | {"fn": "ovf", "of": index of a sum partial}]}
"""

from __future__ import annotations

import decimal
import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from bpfstore.contract.epoch import date_from_days
from bpfstore.contract.errors import ArithmeticOverflow, PlanInvalid
from bpfstore.contract.plan import (
    AggFunc,
    Aggregate,
    And,
    Arith,
    ArithOp,
    Cast,
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
    Overflow,
)

from .types import arrow_type

_COMPARE = {op.value: op for op in CompareOp}
_ARITH = {"+": ArithOp.ADD, "-": ArithOp.SUB, "*": ArithOp.MUL, "/": ArithOp.DIV}


def literal_value(text: str | None, t: pa.DataType) -> Any:
    if text is None:
        return None
    if pa.types.is_decimal(t):
        return decimal.Decimal(text)
    if pa.types.is_integer(t):
        return int(text)
    if pa.types.is_floating(t):
        return float(text)
    if pa.types.is_date(t):
        return date_from_days(int(text))
    if pa.types.is_boolean(t):
        return text == "true"
    if pa.types.is_string(t):
        return text
    raise PlanInvalid(f"unsupported literal type {t}")


def expr_from_json(j: dict[str, Any]) -> Expr:
    if "col" in j:
        return Column(j["col"])
    if "lit" in j:
        t = arrow_type(j["type"])
        return Literal(literal_value(j["lit"], t), result_type=t)
    op, args = j["op"], [expr_from_json(a) for a in j.get("args", ())]
    if op == "in_keys":
        t = arrow_type(j["type"])
        return args[0].isin_keys(pa.array([literal_value(k, t) for k in j["keys"]], t))
    if op in _COMPARE:
        return Compare(_COMPARE[op], args[0], args[1])
    if op == "and":
        return And(tuple(args))
    if op == "or":
        return Or(tuple(args))
    if op == "not":
        return Not(args[0])
    if op == "isnull":
        return IsNull(args[0])
    if op == "in":
        values = tuple(a for a in args[1:] if isinstance(a, Literal))
        if len(values) != len(args) - 1:
            raise PlanInvalid("IN takes literals only")
        return In(args[0], values)
    t = arrow_type(j["type"])
    overflow = Overflow.ERROR if j.get("ansi", True) else Overflow.NULL
    if op in _ARITH:
        return Arith(_ARITH[op], args[0], args[1], result_type=t, overflow=overflow)
    if op == "neg":
        return Negate(args[0], result_type=t, overflow=overflow)
    if op == "cast":
        return Cast(args[0], t, result_type=t, overflow=overflow)
    raise PlanInvalid(f"unknown expression {op!r} from the Spark extension")


def filter_from_option(text: str | None) -> Expr | None:
    return expr_from_json(json.loads(text)) if text else None


@dataclass(frozen=True)
class Partial:
    """One partial column Spark expects: which plan aggregate feeds it, and its buffer type."""

    func: str  # count_star, count, sum, min, max, ovf
    slot: int  # index into AggSpec.aggregates (for ovf: index of the sum partial it flags)
    ansi: bool


@dataclass(frozen=True)
class AggSpec:
    filter: Expr | None
    groups: tuple[str, ...]
    aggregates: tuple[Aggregate, ...]  # de-duplicated plan aggregates
    partials: tuple[Partial, ...]

    @staticmethod
    def parse(text: str) -> AggSpec:
        j = json.loads(text)
        aggregates: list[Aggregate] = []
        partials: list[Partial] = []
        for p in j["partials"]:
            fn = p["fn"]
            if fn == "ovf":
                partials.append(Partial(fn, int(p["of"]), True))
                continue
            if fn == "count_star":
                agg = Aggregate(AggFunc.COUNT_STAR)
            else:
                agg = Aggregate(AggFunc(fn), expr_from_json(p["arg"]))
            if agg not in aggregates:
                aggregates.append(agg)
            partials.append(Partial(fn, aggregates.index(agg), bool(p.get("ansi", True))))
        return AggSpec(filter_from_option(json.dumps(j["filter"])) if j.get("filter") else None,
                       tuple(j.get("groups", ())), tuple(aggregates), tuple(partials))


def to_buffers(partials: pa.Table, spec: AggSpec, target: pa.Schema) -> pa.RecordBatch:
    """The agent's exact partials as Spark's aggregation buffers (`target` is Spark's schema)."""
    n = len(spec.groups)
    columns: list[pa.Array] = []
    for i in range(n):
        columns.append(partials.column(i).combine_chunks())
    overflowed: dict[int, list[bool]] = {}
    values: list[list[Any]] = []
    for k, p in enumerate(spec.partials):
        field = target.field(n + k)
        if p.func == "ovf":
            values.append([])  # filled below, once the sum it flags has been range-checked
            continue
        raw = partials.column(n + p.slot).to_pylist()
        checked, flags = _fit(raw, field.type, p, field.name)
        overflowed[k] = flags
        values.append(checked)
    for k, p in enumerate(spec.partials):
        if p.func == "ovf":
            values[k] = overflowed.get(p.slot, [False] * partials.num_rows)
    for k, vals in enumerate(values):
        columns.append(pa.array(vals, target.field(n + k).type))
    for i in range(n):
        col = columns[i]
        if pa.types.is_dictionary(col.type):
            col = col.dictionary_decode()
        columns[i] = col.cast(target.field(i).type) if col.type != target.field(i).type else col
    return pa.RecordBatch.from_arrays(columns, schema=target)


def _fit(raw: list[Any], t: pa.DataType, p: Partial, name: str) -> tuple[list[Any], list[bool]]:
    """Range-check exact partial sums against Spark's buffer type, as Spark's buffer does."""
    flags = [False] * len(raw)
    if p.func != "sum" or not (pa.types.is_decimal(t) or pa.types.is_integer(t)):
        return raw, flags
    if pa.types.is_decimal(t):
        lo, hi = -(10 ** (t.precision - t.scale)), 10 ** (t.precision - t.scale)
    else:
        lo, hi = -(2 ** (t.bit_width - 1)), 2 ** (t.bit_width - 1)
    out: list[Any] = []
    for i, v in enumerate(raw):
        if v is None or lo < v < hi:
            out.append(int(v) if v is not None and pa.types.is_integer(t) else v)
            continue
        if p.ansi:
            raise ArithmeticOverflow(
                f"[ARITHMETIC_OVERFLOW] partial {name} = {v} overflows {t}; "
                "set spark.sql.ansi.enabled to false to get NULL instead")
        if pa.types.is_integer(t):  # Spark's legacy long sum wraps around
            w = int(v) % (2**t.bit_width)
            out.append(w - 2**t.bit_width if w >= 2 ** (t.bit_width - 1) else w)
        else:  # legacy decimal sum: NULL, and the flag makes Spark's merge NULL too
            out.append(None)
            flags[i] = True
    return out, flags
