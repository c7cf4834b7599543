"""Type rules and binding: resolve a plan's columns against an Arrow schema and type every node.

Binding returns bound nodes (`bound.py`): `result_type` set on every node, literals coerced
to the type they are compared with, a literal compared with an expression on the right
(`5 < x` becomes `x > 5`), so engines never guess. The rules (DuckDB's
and Spark's where they agree):
- comparisons use the operands' common type (literals of another type: proto/contract/compare.py,
  whose exact forms binding substitutes): any float -> float64; else any decimal ->
  decimal (integers as decimal(digits, 0)); else the wider integer; strings, dates,
  timestamps and booleans only with their own kind (a string literal against a date column
  is parsed as a date);
- + - * on integers keep the wider integer type and overflow is an error (or NULL);
  on decimals: add/sub scale = max(s1, s2), precision = max(p1-s1, p2-s2) + scale + 1;
  mul scale = s1 + s2, precision = p1 + p2 + 1; precision capped at 38; / gives float64;
- an explicit `result_type` on a node always wins (the caller's engine said so), except on a
  column: a column's type is its stored type, and any other explicit type is PlanInvalid.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import functools
from typing import Any

import pyarrow as pa

from . import decimals, epoch
from .bound import BoundExpr, BoundLiteral, bound_node, column_of
from .compare import exact_between, exact_form, exact_in, needs_exact_form
from .errors import PlanInvalid
from .keysets import bound_keys, normalized
from .plan import (
    AggFunc,
    Aggregate,
    And,
    Arith,
    ArithOp,
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
    Plan,
    PlanVisitor,
    describe,
)

MAX_DECIMAL_PRECISION = 38
# A partial sum of integers or decimals is decimal256(76, s): one partition's (or one agent's)
# partial of 38-digit values may pass 38 digits although the total fits (-10**37 here,
# +10**37 there); only a final total is held to decimal128(38).
PARTIAL_SUM_PRECISION = 76
_SIGNED_FOR_NEGATION = {pa.uint8(): pa.int16(), pa.uint16(): pa.int32(),
                        pa.uint32(): pa.int64()}
_INT_DIGITS = {8: 3, 16: 5, 32: 10, 64: 19}
TIMESTAMP_UNIT_NS = epoch.UNIT_NS


@functools.lru_cache(maxsize=4096)  # called per column, partition and check: ~10 us each
def logical_type(t: pa.DataType) -> pa.DataType:
    """The type a user sees: dictionary-encoded strings are strings, decimal64 is decimal128."""
    if pa.types.is_dictionary(t):
        return logical_type(t.value_type)
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_decimal(t):
        return pa.decimal128(t.precision, t.scale)
    return t


def is_numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def _int_as_decimal(t: pa.DataType) -> pa.DataType:
    unsigned64 = pa.types.is_unsigned_integer(t) and t.bit_width == 64
    digits = _INT_DIGITS[t.bit_width] + (1 if unsigned64 else 0)
    return pa.decimal128(digits, 0)


def _as_decimal(t: pa.DataType) -> pa.DataType:
    return t if pa.types.is_decimal(t) else _int_as_decimal(t)


def common_type(a: pa.DataType, b: pa.DataType, where: str) -> pa.DataType:
    """The type two operands are compared (or combined) in; PlanInvalid when there is none."""
    a, b = logical_type(a), logical_type(b)
    if pa.types.is_null(a):
        return b
    if pa.types.is_null(b) or a == b:
        return a
    if is_numeric(a) and is_numeric(b):
        if pa.types.is_floating(a) or pa.types.is_floating(b):
            return pa.float64()
        if pa.types.is_decimal(a) or pa.types.is_decimal(b):
            da, db = _as_decimal(a), _as_decimal(b)
            scale = max(da.scale, db.scale)
            digits = max(da.precision - da.scale, db.precision - db.scale)
            return pa.decimal128(min(MAX_DECIMAL_PRECISION, digits + scale), scale)
        if pa.types.is_signed_integer(a) != pa.types.is_signed_integer(b) and \
                pa.uint64() in (a, b):
            return pa.decimal128(20, 0)  # compares every int64 with every uint64 exactly
        return _wider_int(a, b)
    temporal = (pa.types.is_date(a) or pa.types.is_timestamp(a)) and (
        pa.types.is_date(b) or pa.types.is_timestamp(b)
    )
    if temporal:
        return a if pa.types.is_timestamp(a) else b
    raise PlanInvalid(f"type mismatch in {where}: {a} and {b} cannot be compared or combined")


def _wider_int(a: pa.DataType, b: pa.DataType) -> pa.DataType:
    if pa.types.is_signed_integer(a) == pa.types.is_signed_integer(b):
        return a if a.bit_width >= b.bit_width else b
    signed, unsigned = (a, b) if pa.types.is_signed_integer(a) else (b, a)
    if signed.bit_width > unsigned.bit_width:
        return signed
    return pa.int64()


def literal_type(value: Any) -> pa.DataType:
    """The Arrow type of a Python literal whose type was not given."""
    match value:
        case None:
            return pa.null()
        case bool():
            return pa.bool_()
        case int():
            if -(2**63) <= value < 2**63:
                return pa.int64()
            if 0 <= value < 2**64:
                return pa.uint64()
            if len(str(abs(value))) <= MAX_DECIMAL_PRECISION:
                return pa.decimal128(MAX_DECIMAL_PRECISION, 0)
            raise PlanInvalid(f"integer literal {value} is too large")
        case float():
            return pa.float64()
        case str():
            return pa.string()
        case decimal.Decimal():
            if not value.is_finite():
                raise PlanInvalid(f"decimal literal {value} is not finite")
            sign, digits, exponent = value.as_tuple()
            assert isinstance(exponent, int)
            scale = max(0, -exponent)
            precision = max(len(digits) + max(0, exponent), scale, 1)
            if precision > MAX_DECIMAL_PRECISION:
                raise PlanInvalid(f"decimal literal {value} has more than 38 digits")
            return pa.decimal128(precision, scale)
        case dt.datetime():
            return pa.timestamp("us", tz=value.tzinfo and "UTC")
        case dt.date():
            return pa.date32()
    raise PlanInvalid(f"unsupported literal {value!r}")


def coerce_literal(value: Any, t: pa.DataType, where: str) -> Any:
    """Convert a literal's value to type `t` exactly, or raise PlanInvalid."""
    t = logical_type(t)
    if value is None or pa.types.is_null(t):
        return None
    try:
        if pa.types.is_boolean(t) and isinstance(value, bool):
            return value
        if pa.types.is_integer(t) and isinstance(value, int) and not isinstance(value, bool):
            pa.scalar(value, t)  # range check
            return value
        if pa.types.is_floating(t) and isinstance(value, int | float | decimal.Decimal):
            return float(value) if not isinstance(value, bool) else _bad(value, t, where)
        if pa.types.is_decimal(t) and isinstance(value, int | decimal.Decimal):
            if isinstance(value, bool):
                return _bad(value, t, where)
            exact = decimal.Decimal(value)
            with decimal.localcontext(decimals.EXACT):  # the default context has 28 digits
                quantized = exact.quantize(decimal.Decimal(1).scaleb(-t.scale))
            if quantized != exact or len(quantized.as_tuple().digits) > t.precision:
                return _bad(value, t, where)
            return quantized
        if pa.types.is_string(t) and isinstance(value, str):
            return value
        if pa.types.is_date(t):
            if isinstance(value, str):
                return dt.date.fromisoformat(value.strip())
            if isinstance(value, dt.datetime):
                return _bad(value, t, where) if value.time() != dt.time() else value.date()
            if isinstance(value, dt.date):
                return value
        if pa.types.is_timestamp(t):
            if isinstance(value, int) and not isinstance(value, bool):
                # nanoseconds no datetime can hold (see timestamp_literal)
                return value if t.unit == "ns" else _bad(f"{value} ns", t, where)
            if isinstance(value, str):
                value = dt.datetime.fromisoformat(value.strip())
            elif isinstance(value, dt.date) and not isinstance(value, dt.datetime):
                value = dt.datetime(value.year, value.month, value.day)
            if isinstance(value, dt.datetime):
                pa.scalar(value, t)  # range check: year 9999 is beyond timestamp[ns]
                return value
    except (ValueError, pa.ArrowInvalid, decimal.InvalidOperation, OverflowError) as exc:
        raise PlanInvalid(f"literal {value!r} does not fit {t} in {where}: {exc}") from None
    return _bad(value, t, where)


def timestamp_literal(count: int, t: pa.DataType) -> Any:
    """A timestamp literal given as a count of `t`'s units: a datetime where one holds it
    exactly, else (a nanosecond count not in whole microseconds) the int itself, which is
    then only ever used as timestamp[ns]."""
    micros, nanos = divmod(count * TIMESTAMP_UNIT_NS[t.unit], 1000)
    if nanos:
        return count
    try:
        value = epoch.EPOCH + dt.timedelta(microseconds=micros)
    except OverflowError:
        raise PlanInvalid(f"timestamp literal {count} ({t.unit}) is out of range") from None
    return value.replace(tzinfo=dt.UTC) if t.tz is not None else value


def _bad(value: Any, t: pa.DataType, where: str) -> Any:
    raise PlanInvalid(f"literal {value!r} cannot be used as {t} in {where}")


def arith_type(op: ArithOp, a: pa.DataType, b: pa.DataType, where: str) -> pa.DataType:
    a, b = logical_type(a), logical_type(b)
    if pa.types.is_null(a) or pa.types.is_null(b):
        a, b = (b, b) if pa.types.is_null(a) else (a, a)
    if not (is_numeric(a) and is_numeric(b)):
        raise PlanInvalid(f"arithmetic needs numbers in {where}: got {a} and {b}")
    if op is ArithOp.DIV or pa.types.is_floating(a) or pa.types.is_floating(b):
        return pa.float64()
    if pa.types.is_integer(a) and pa.types.is_integer(b):
        return _wider_int(a, b)
    da, db = _as_decimal(a), _as_decimal(b)
    if op is ArithOp.MUL:
        scale, precision = da.scale + db.scale, da.precision + db.precision + 1
    else:
        scale = max(da.scale, db.scale)
        precision = max(da.precision - da.scale, db.precision - db.scale) + scale + 1
    if scale > MAX_DECIMAL_PRECISION:
        raise PlanInvalid(f"decimal scale {scale} exceeds 38 in {where}")
    return pa.decimal128(min(MAX_DECIMAL_PRECISION, precision), scale)


def partial_type(agg: Aggregate) -> pa.DataType:
    """Type of an aggregate's mergeable partial (the argument must be bound)."""
    if agg.func in (AggFunc.COUNT_STAR, AggFunc.COUNT):
        return pa.int64()
    assert agg.arg is not None and agg.arg.result_type is not None, "bind the aggregate first"
    t = logical_type(agg.arg.result_type)
    if agg.func is AggFunc.SUM:
        if pa.types.is_integer(t) or pa.types.is_boolean(t):
            return pa.decimal256(PARTIAL_SUM_PRECISION, 0)
        if pa.types.is_decimal(t):
            return pa.decimal256(PARTIAL_SUM_PRECISION, t.scale)
        if pa.types.is_floating(t):
            return pa.float64()
        raise PlanInvalid(f"cannot sum {describe(agg.arg)} of type {t}")
    if pa.types.is_nested(t) or pa.types.is_null(t):
        raise PlanInvalid(f"cannot take {agg.func.value} of {describe(agg.arg)} of type {t}")
    return t


def bind(e: Expr, schema: pa.Schema) -> BoundExpr:
    """Resolve columns against `schema` and give every node its result type."""
    return _Binder(schema).visit(e)


def bind_aggregate(agg: Aggregate, schema: pa.Schema) -> Aggregate:
    if agg.arg is None:
        return agg
    return Aggregate(agg.func, bind(agg.arg, schema))


def bind_predicate(e: Expr, schema: pa.Schema) -> BoundExpr:
    bound = bind(e, schema)
    t = bound.result_type
    if not (pa.types.is_boolean(t) or pa.types.is_null(t)):
        raise PlanInvalid(f"filter {describe(e)} is {t}, not boolean")
    return bound


class _Binder(PlanVisitor[BoundExpr]):
    """Binds children first; each method gets the node and its bound children."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema

    def visit(self, e: Expr) -> BoundExpr:
        bound = super().visit(e)
        if e.result_type is not None and column_of(e) is None:  # the caller's type wins
            return dataclasses.replace(bound, result_type=e.result_type)
        return bound

    def unsupported(self, e: Expr) -> BoundExpr:
        raise PlanInvalid(f"unknown expression node {type(e).__name__}")

    def _typed(self, e: Expr, t: pa.DataType, **changes: Any) -> BoundExpr:
        return bound_node(e, t, **changes)  # type: ignore[no-any-return]

    def _bools(self, bound: list[BoundExpr], where: Expr) -> tuple[BoundExpr, ...]:
        for a in bound:
            t = a.result_type
            if not (pa.types.is_boolean(t) or pa.types.is_null(t)):
                raise PlanInvalid(f"{describe(a)} is {t}, not boolean, in {describe(where)}")
        return tuple(bound)

    def _operand_types(self, *bound: BoundExpr) -> list[pa.DataType]:
        """Operand types for a common type; a string literal takes a temporal peer's type,
        a timestamp literal its timestamp peer's unit (converted exactly, or refused)."""
        types = [b.result_type for b in bound]
        temporal = [t for b, t in sorted(zip(bound, types, strict=True),
                                         key=lambda bt: isinstance(bt[0], Literal))
                    if pa.types.is_date(t) or pa.types.is_timestamp(t)]
        if not temporal:
            return types
        peer = temporal[0]  # a column's (or other expression's) type before a literal's
        return [peer if isinstance(b, Literal) and (isinstance(b.value, str) or (
            pa.types.is_timestamp(t) and pa.types.is_timestamp(peer))) else t
                for b, t in zip(bound, types, strict=True)]

    def _coerced(self, e: BoundExpr, t: pa.DataType, where: str) -> BoundExpr:
        """A bound operand, with a literal converted to the comparison type `t`."""
        if isinstance(e, Literal):
            return BoundLiteral(coerce_literal(e.value, t, where), result_type=logical_type(t))
        return e

    def _exact(self, op: CompareOp, e: BoundExpr, literal: BoundExpr, common: pa.DataType
               ) -> BoundExpr | None:
        """A literal without an exact value in e's type, as an exact comparison in that type
        (the one semantics statistics, engines and code generators then share)."""
        t = logical_type(e.result_type)
        if isinstance(e, Literal) or not isinstance(literal, Literal) or \
                not needs_exact_form(t, [literal.value], common):
            return None
        return exact_form(op, e, literal.value, t)

    def column(self, e: Column) -> BoundExpr:
        idx = self.schema.get_field_index(e.name)
        if idx < 0:
            raise PlanInvalid(f"unknown column {e.name!r}")
        t = self.schema.field(idx).type
        if e.result_type is not None and logical_type(e.result_type) != logical_type(t):
            raise PlanInvalid(f"column {e.name!r} is {logical_type(t)}, not "
                              f"{logical_type(e.result_type)}: use a Cast to convert it")
        return self._typed(e, t)

    def literal(self, e: Literal) -> BoundExpr:
        value, t = e.value, e.result_type
        if t is None:
            return self._typed(e, literal_type(value))
        if isinstance(value, int) and not isinstance(value, bool) and pa.types.is_timestamp(t):
            value = timestamp_literal(value, t)
        return BoundLiteral(coerce_literal(value, t, describe(e)), result_type=logical_type(t),
                            overflow=e.overflow)

    def compare(self, e: Compare, bl: BoundExpr, br: BoundExpr) -> BoundExpr:
        where = describe(e)
        tl, tr = self._operand_types(bl, br)
        t = common_type(tl, tr, where)
        left, right = self._coerced(bl, t, where), self._coerced(br, t, where)
        op = e.op
        if isinstance(left, Literal) and not isinstance(right, Literal):
            op, left, right = op.flipped(), right, left  # the literal on the right
        exact = self._exact(op, left, right, t)
        return exact or self._typed(e, pa.bool_(), op=op, left=left, right=right)

    def and_(self, e: And, args: list[BoundExpr]) -> BoundExpr:
        return self._typed(e, pa.bool_(), args=self._bools(args, e))

    def or_(self, e: Or, args: list[BoundExpr]) -> BoundExpr:
        return self._typed(e, pa.bool_(), args=self._bools(args, e))

    def not_(self, e: Not, arg: BoundExpr) -> BoundExpr:
        return self._typed(e, pa.bool_(), arg=self._bools([arg], e)[0])

    def in_(self, e: In, ba: BoundExpr) -> BoundExpr:
        where = describe(e)
        bound_values = [self.visit(v) for v in e.values]
        types = self._operand_types(ba, *bound_values)
        t = types[0]
        for vt in types[1:]:
            t = common_type(t, vt, where)
        coerced = tuple(BoundLiteral(coerce_literal(v.value, t, where),
                                     result_type=logical_type(t)) for v in e.values)
        at = logical_type(ba.result_type)
        if not isinstance(ba, Literal) and needs_exact_form(at, [v.value for v in coerced], t):
            return exact_in(ba, coerced, at)
        return self._typed(e, pa.bool_(), arg=ba, values=coerced)

    def key_set(self, e: KeySet, ba: BoundExpr) -> BoundExpr:
        """Keys in the type they are compared in, exactly (keysets.bound_keys)."""
        if not isinstance(e.keys, pa.Array):
            raise PlanInvalid(f"key set of {type(e.keys).__name__}, not an Arrow array")
        keys = bound_keys(normalized(e.keys), ba.result_type, describe(e), logical_type)
        return self._typed(e, pa.bool_(), arg=ba, keys=keys)

    def is_null(self, e: IsNull, arg: BoundExpr) -> BoundExpr:
        return self._typed(e, pa.bool_(), arg=arg)

    def between(self, e: Between, ba: BoundExpr, bl: BoundExpr, bh: BoundExpr) -> BoundExpr:
        where = describe(e)
        ta, tl, th = self._operand_types(ba, bl, bh)
        t = common_type(common_type(ta, tl, where), th, where)
        low, high = self._coerced(bl, t, where), self._coerced(bh, t, where)
        at = logical_type(ba.result_type)
        if isinstance(low, Literal) and isinstance(high, Literal) and not isinstance(
                ba, Literal) and needs_exact_form(at, [low.value, high.value], t):
            return exact_between(ba, low.value, high.value, at)
        return self._typed(e, pa.bool_(), arg=ba, low=low, high=high)

    def arith(self, e: Arith, bl: BoundExpr, br: BoundExpr) -> BoundExpr:
        t = arith_type(e.op, bl.result_type, br.result_type, describe(e))
        return self._typed(e, t, left=bl, right=br)

    def negate(self, e: Negate, ba: BoundExpr) -> BoundExpr:
        t = logical_type(ba.result_type)
        if not is_numeric(t):
            raise PlanInvalid(f"cannot negate {ba.result_type} in {describe(e)}")
        if pa.types.is_unsigned_integer(t):  # -x of an unsigned x needs a sign
            t = _SIGNED_FOR_NEGATION.get(t, pa.decimal128(20, 0))
        return self._typed(e, t, arg=ba)

    def cast(self, e: Cast, arg: BoundExpr) -> BoundExpr:
        return self._typed(e, e.to, arg=arg)


def bind_plan(plan: Plan, schema: pa.Schema) -> Plan:
    """A plan with every column resolved and every expression typed; PlanInvalid otherwise."""
    for name in (*plan.group_by, *plan.columns):
        if schema.get_field_index(name) < 0:
            raise PlanInvalid(f"unknown column {name!r}")
    return dataclasses.replace(
        plan,
        partitions=tuple(dict.fromkeys(plan.partitions)),  # a set: naming one twice reads it once
        filter=bind_predicate(plan.filter, schema) if plan.filter is not None else None,
        aggregates=tuple(bind_aggregate(a, schema) for a in plan.aggregates),
    )
