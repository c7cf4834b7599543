"""The one place that converts between plan objects and protobuf messages (both sides use it)."""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import re
from typing import Any

import pyarrow as pa

from bpfstore.v1 import plan_pb2 as pb

from .binding import MAX_DECIMAL_PRECISION, TIMESTAMP_UNIT_NS, literal_type, timestamp_literal
from .epoch import date_from_days, epoch_days, epoch_nanos
from .errors import PlanInvalid, shown
from .keysets import DEFAULT_MAX_BYTES, DEFAULT_MAX_KEYS, check_size, from_ipc, normalized, to_ipc
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
    Dialect,
    EngineName,
    Expr,
    In,
    IsNull,
    KeySet,
    Literal,
    Negate,
    Not,
    Or,
    Overflow,
    Plan,
    PlanVisitor,
)

_SIMPLE_TYPES = {
    str(t): t
    for t in (
        pa.null(), pa.bool_(), pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(),
        pa.uint16(), pa.uint32(), pa.uint64(), pa.float16(), pa.float32(), pa.float64(),
        pa.string(), pa.large_string(), pa.binary(), pa.date32(), pa.date64(),
    )
} | {"float64": pa.float64(), "float32": pa.float32(), "date32": pa.date32(), "utf8": pa.string()}
_DECIMAL = re.compile(r"(decimal32|decimal64|decimal128|decimal256)\((\d+),\s*(-?\d+)\)")
_TIMESTAMP = re.compile(r"timestamp\[(s|ms|us|ns)(?:,\s*tz=([^\]]+))?\]")

_OVERFLOW = {Overflow.DEFAULT: pb.OVERFLOW_DEFAULT, Overflow.ERROR: pb.OVERFLOW_ERROR,
             Overflow.NULL: pb.OVERFLOW_NULL}
_COMPARE = {CompareOp.EQ: pb.EQ, CompareOp.NE: pb.NE, CompareOp.LT: pb.LT,
            CompareOp.LE: pb.LE, CompareOp.GT: pb.GT, CompareOp.GE: pb.GE}
_ARITH = {ArithOp.ADD: pb.ADD, ArithOp.SUB: pb.SUB, ArithOp.MUL: pb.MUL, ArithOp.DIV: pb.DIV}
_AGG = {AggFunc.COUNT_STAR: pb.COUNT_STAR, AggFunc.COUNT: pb.COUNT, AggFunc.SUM: pb.SUM,
        AggFunc.MIN: pb.MIN, AggFunc.MAX: pb.MAX}
_DIALECT = {Dialect.SQL: pb.DIALECT_SQL, Dialect.PANDAS: pb.DIALECT_PANDAS}
_ENGINE = {EngineName.AUTO: pb.ENGINE_AUTO, EngineName.ARROW: pb.ENGINE_ARROW,
           EngineName.BPF: pb.ENGINE_BPF, EngineName.BCC: pb.ENGINE_BCC,
           EngineName.BPF_HOT: pb.ENGINE_BPF_HOT, EngineName.BPF_COLD: pb.ENGINE_BPF_COLD}


def _inverse(d: dict[Any, Any]) -> dict[Any, Any]:
    return {v: k for k, v in d.items()}


_OVERFLOW_IN, _COMPARE_IN, _ARITH_IN = _inverse(_OVERFLOW), _inverse(_COMPARE), _inverse(_ARITH)
_AGG_IN, _DIALECT_IN, _ENGINE_IN = _inverse(_AGG), _inverse(_DIALECT), _inverse(_ENGINE)
_INTEGER = re.compile(r"-?\d+")
_DECIMAL_TEXT_LIMIT = 2 * MAX_DECIMAL_PRECISION + 10  # 38 digits, padding, sign, point, exponent


def type_to_string(t: pa.DataType) -> str:
    return str(t)


def type_from_string(s: str) -> pa.DataType:
    s = s.strip()
    if s in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[s]
    if m := _DECIMAL.fullmatch(s):
        kind, precision, scale = m.group(1), int(m.group(2)), int(m.group(3))
        if precision > MAX_DECIMAL_PRECISION:  # no engine and no partial holds more
            raise PlanInvalid(f"unsupported type {shown(s)}: decimal precision {precision} "
                              f"exceeds {MAX_DECIMAL_PRECISION}")
        try:
            return getattr(pa, kind)(precision, scale)
        except (ValueError, pa.ArrowInvalid) as exc:
            raise PlanInvalid(f"bad type {shown(s)}: {exc}") from None
    if m := _TIMESTAMP.fullmatch(s):
        return checked_timestamp(pa.timestamp(m.group(1), tz=m.group(2)), "type")
    raise PlanInvalid(f"unknown or unsupported type {shown(s)}")


def checked_timestamp(t: pa.DataType, where: str) -> pa.DataType:
    """`t` itself, or PlanInvalid when its time zone is one this machine does not know."""
    if t.tz is not None and not _known_zone(t.tz):
        raise PlanInvalid(f"{where} {t}: unknown time zone {shown(t.tz)}")
    return t


@functools.lru_cache(maxsize=256)
def _known_zone(tz: str) -> bool:
    try:
        pa.scalar(0, pa.timestamp("s", tz=tz)).as_py()  # Arrow resolves the zone here
    except (pa.ArrowInvalid, ValueError, KeyError):
        return False
    return True


def _type_msg(t: pa.DataType | None) -> pb.DataType | None:
    return None if t is None else pb.DataType(arrow=type_to_string(t))


def literal_to_proto(lit: Literal) -> pb.Literal:
    msg = pb.Literal()
    if lit.result_type is not None:
        msg.type.arrow = type_to_string(lit.result_type)
    v = lit.value
    match v:
        case None:
            msg.null = True
        case bool():
            msg.bool_value = v
        case int() if lit.result_type is not None and pa.types.is_timestamp(lit.result_type):
            msg.timestamp_value = _int64(v, lit.result_type)  # counts units of its type
        case int() if 2**63 <= v < 2**64:
            msg.uint_value = v
        case int():
            if not -(2**63) <= v < 2**63:  # wider integers travel as decimal digits
                msg.decimal_value = str(v)
            else:
                msg.int_value = v
        case float():
            msg.float_value = v
        case str():
            msg.string_value = v
        case decimal.Decimal():
            msg.decimal_value = str(v)
            if lit.result_type is None:
                msg.type.arrow = type_to_string(literal_type(v))
        case dt.datetime():
            t = lit.result_type
            if t is None or not pa.types.is_timestamp(t):
                # a pandas Timestamp carries nanoseconds beyond the datetime's microseconds
                t = pa.timestamp("ns" if getattr(v, "nanosecond", 0) else "us",
                                 tz=v.tzinfo and "UTC")
                if lit.result_type is None:
                    msg.type.arrow = type_to_string(t)
            # in the unit of the literal's type, which is how the decoder reads it
            count, rest = divmod(epoch_nanos(v), TIMESTAMP_UNIT_NS[t.unit])
            if rest:
                raise PlanInvalid(f"timestamp literal {v} is not a whole number of {t.unit}")
            msg.timestamp_value = _int64(count, t)
        case dt.date():
            msg.date_value = epoch_days(v)
        case _:
            raise PlanInvalid(f"cannot encode literal {v!r}")
    return msg


def literal_from_proto(msg: pb.Literal) -> Literal:
    t = type_from_string(msg.type.arrow) if msg.HasField("type") and msg.type.arrow else None
    kind = msg.WhichOneof("value")
    value: Any
    if kind is None or kind == "null":
        value = None
    elif kind == "decimal_value":
        if len(msg.decimal_value) > _DECIMAL_TEXT_LIMIT:  # int() of 4300+ digits even fails
            raise PlanInvalid(f"decimal literal {shown(msg.decimal_value)} is too long: "
                              f"at most {MAX_DECIMAL_PRECISION} digits")
        try:
            value = decimal.Decimal(msg.decimal_value)
        except decimal.InvalidOperation:
            raise PlanInvalid(f"bad decimal literal {shown(msg.decimal_value)}") from None
        if not (t is not None and pa.types.is_decimal(t)) and _INTEGER.fullmatch(msg.decimal_value):
            value = int(value)
    elif kind in ("date_value", "timestamp_value"):
        try:
            value = _temporal_from_proto(msg, t)
        except (OverflowError, ValueError):  # beyond Python's years 1-9999 (found by fuzzing)
            raise PlanInvalid(f"{kind.removesuffix('_value')} literal "
                              f"{getattr(msg, kind)} is out of range") from None
    else:
        value = getattr(msg, kind)
    if t is not None and value is not None and t == literal_type(value):
        t = None  # the inferred type: keep literals canonical so round trips compare equal
    return Literal(value, result_type=t)


def _temporal_from_proto(msg: pb.Literal, t: pa.DataType | None) -> dt.date | int:
    if msg.WhichOneof("value") == "date_value":
        return date_from_days(msg.date_value)
    if t is None or not pa.types.is_timestamp(t):
        t = pa.timestamp("us")
    return timestamp_literal(msg.timestamp_value, t)


def _int64(count: int, t: pa.DataType) -> int:
    if not -(2**63) <= count < 2**63:
        raise PlanInvalid(f"timestamp literal of {count} {t.unit} is out of range for {t}")
    return count


def expr_to_proto(e: Expr) -> pb.Expr:
    return _ToProto().visit(e)


def _node(e: Expr) -> pb.Expr:
    """A message for `e` with its overflow mode and result type (a literal's is its own)."""
    msg = pb.Expr(overflow=_OVERFLOW[e.overflow])
    if e.result_type is not None:
        msg.result_type.arrow = type_to_string(e.result_type)
    return msg


class _ToProto(PlanVisitor[pb.Expr]):
    def column(self, e: Column) -> pb.Expr:
        msg = _node(e)
        msg.column.name = e.name
        return msg

    def literal(self, e: Literal) -> pb.Expr:
        msg = pb.Expr(overflow=_OVERFLOW[e.overflow])
        msg.literal.CopyFrom(literal_to_proto(e))
        return msg

    def compare(self, e: Compare, left: pb.Expr, right: pb.Expr) -> pb.Expr:
        msg = _node(e)
        msg.compare.op = _COMPARE[e.op]
        msg.compare.left.CopyFrom(left)
        msg.compare.right.CopyFrom(right)
        return msg

    def and_(self, e: And, args: list[pb.Expr]) -> pb.Expr:
        msg = _node(e)
        getattr(msg, "and").args.extend(args)  # `and`, `or`, `not`, `in` are Python keywords
        return msg

    def or_(self, e: Or, args: list[pb.Expr]) -> pb.Expr:
        msg = _node(e)
        getattr(msg, "or").args.extend(args)
        return msg

    def not_(self, e: Not, arg: pb.Expr) -> pb.Expr:
        msg = _node(e)
        getattr(msg, "not").arg.CopyFrom(arg)
        return msg

    def in_(self, e: In, arg: pb.Expr) -> pb.Expr:
        msg = _node(e)
        node = getattr(msg, "in")
        node.arg.CopyFrom(arg)
        node.values.extend(literal_to_proto(v) for v in e.values)
        return msg

    def key_set(self, e: KeySet, arg: pb.Expr) -> pb.Expr:
        """Sorted and distinct; refused before sending when beyond the agents' default limits
        (the client's error, not a round trip to learn it)."""
        keys = normalized(e.keys)
        data = to_ipc(keys)
        check_size(len(keys), len(data), DEFAULT_MAX_KEYS, DEFAULT_MAX_BYTES)
        msg = _node(e)
        msg.key_set.arg.CopyFrom(arg)
        msg.key_set.keys = data
        return msg

    def is_null(self, e: IsNull, arg: pb.Expr) -> pb.Expr:
        msg = _node(e)
        msg.is_null.arg.CopyFrom(arg)
        return msg

    def between(self, e: Between, arg: pb.Expr, low: pb.Expr, high: pb.Expr) -> pb.Expr:
        msg = _node(e)
        msg.between.arg.CopyFrom(arg)
        msg.between.low.CopyFrom(low)
        msg.between.high.CopyFrom(high)
        return msg

    def arith(self, e: Arith, left: pb.Expr, right: pb.Expr) -> pb.Expr:
        msg = _node(e)
        msg.arith.op = _ARITH[e.op]
        msg.arith.left.CopyFrom(left)
        msg.arith.right.CopyFrom(right)
        return msg

    def negate(self, e: Negate, arg: pb.Expr) -> pb.Expr:
        msg = _node(e)
        msg.negate.arg.CopyFrom(arg)
        return msg

    def cast(self, e: Cast, arg: pb.Expr) -> pb.Expr:
        msg = _node(e)
        msg.cast.arg.CopyFrom(arg)
        msg.cast.to.arrow = type_to_string(e.to)
        return msg

    def unsupported(self, e: Expr) -> pb.Expr:
        raise PlanInvalid(f"cannot encode expression {e!r}")


def expr_from_proto(msg: pb.Expr, max_depth: int = 64) -> Expr:
    """Decode an expression; PlanInvalid names what is wrong (also a tree deeper than max_depth)."""
    if max_depth <= 0:
        raise PlanInvalid("expression is nested too deeply")
    kind = msg.WhichOneof("node")
    t = type_from_string(msg.result_type.arrow) if msg.result_type.arrow else None
    overflow = _OVERFLOW_IN.get(msg.overflow)
    if overflow is None:
        raise PlanInvalid(f"unknown overflow mode {msg.overflow}")
    attrs: dict[str, Any] = {"result_type": t, "overflow": overflow}

    def sub(m: pb.Expr, name: str) -> Expr:
        if not m.ListFields():
            raise PlanInvalid(f"{kind}: missing operand {name!r}")
        return expr_from_proto(m, max_depth - 1)

    match kind:
        case "column":
            if not msg.column.name:
                raise PlanInvalid("column with an empty name")
            return Column(msg.column.name, **attrs)
        case "literal":
            lit = literal_from_proto(msg.literal)
            return Literal(lit.value, result_type=lit.result_type, overflow=overflow)
        case "compare":
            op = _COMPARE_IN.get(msg.compare.op)
            if op is None:
                raise PlanInvalid(f"unknown comparison operator {msg.compare.op}")
            return Compare(op, sub(msg.compare.left, "left"), sub(msg.compare.right, "right"),
                           **attrs)
        case "and" | "or":
            node = getattr(msg, kind)
            if not node.args:
                raise PlanInvalid(f"{kind.upper()} with no operands")
            args = tuple(expr_from_proto(a, max_depth - 1) for a in node.args)
            return (And if kind == "and" else Or)(args, **attrs)
        case "not":
            return Not(sub(getattr(msg, "not").arg, "arg"), **attrs)
        case "in":
            node = getattr(msg, "in")
            return In(sub(node.arg, "arg"), tuple(literal_from_proto(v) for v in node.values),
                      **attrs)
        case "key_set":  # its size was checked on the message (node_agent/limits.py)
            return KeySet(sub(msg.key_set.arg, "arg"), from_ipc(msg.key_set.keys), **attrs)
        case "is_null":
            return IsNull(sub(msg.is_null.arg, "arg"), **attrs)
        case "between":
            b = msg.between
            return Between(sub(b.arg, "arg"), sub(b.low, "low"), sub(b.high, "high"), **attrs)
        case "arith":
            op = _ARITH_IN.get(msg.arith.op)
            if op is None:
                raise PlanInvalid(f"unknown arithmetic operator {msg.arith.op}")
            return Arith(op, sub(msg.arith.left, "left"), sub(msg.arith.right, "right"), **attrs)
        case "negate":
            return Negate(sub(msg.negate.arg, "arg"), **attrs)
        case "cast":
            if not msg.cast.to.arrow:
                raise PlanInvalid("CAST without a target type")
            return Cast(sub(msg.cast.arg, "arg"), type_from_string(msg.cast.to.arrow), **attrs)
    raise PlanInvalid("expression node with no kind set")


def plan_to_proto(plan: Plan) -> pb.Plan:
    msg = pb.Plan(
        dataset=plan.dataset,
        partitions=list(plan.partitions),
        columns=list(plan.columns),
        group_by=list(plan.group_by),
        dialect=_DIALECT[plan.dialect],
        engine=_ENGINE[plan.engine],
    )
    if plan.filter is not None:
        msg.filter.CopyFrom(expr_to_proto(plan.filter))
    for agg in plan.aggregates:
        a = msg.aggregates.add(func=_AGG[agg.func])
        if agg.arg is not None:
            a.arg.CopyFrom(expr_to_proto(agg.arg))
    return msg


def plan_from_proto(msg: pb.Plan, max_depth: int = 64) -> Plan:
    aggregates = []
    for i, a in enumerate(msg.aggregates):
        func = _AGG_IN.get(a.func)
        if func is None:
            raise PlanInvalid(f"aggregate {i}: unknown function {a.func}")
        has_arg = a.HasField("arg")
        if (func is AggFunc.COUNT_STAR) == has_arg:
            raise PlanInvalid(f"aggregate {i} ({func.value}): "
                              + ("takes no argument" if has_arg else "needs an argument"))
        arg = expr_from_proto(a.arg, max_depth) if has_arg else None
        aggregates.append(Aggregate(func, arg))
    dialect = _DIALECT_IN.get(msg.dialect)
    engine = _ENGINE_IN.get(msg.engine)
    if dialect is None or engine is None:
        raise PlanInvalid("unknown dialect or engine")
    return Plan(
        dataset=msg.dataset,
        partitions=tuple(msg.partitions),
        filter=expr_from_proto(msg.filter, max_depth) if msg.HasField("filter") else None,
        columns=tuple(msg.columns),
        group_by=tuple(msg.group_by),
        aggregates=tuple(aggregates),
        dialect=dialect,
        engine=engine,
    )
