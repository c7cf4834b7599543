"""Vectorized evaluation of bound expressions over an Arrow table, in either dialect.

Values travel as `Val`: an Arrow chunked array (or scalar, for literals) plus its logical
type. Decimals of precision <= 18 travel as unscaled int64 (`scaled=True`), which keeps the
common TPC-H arithmetic exact and fast; anything wider uses Arrow's decimal128 kernels.

SQL dialect: three-valued logic; NaN = NaN and NaN sorts above +inf; x / 0 follows IEEE
unless the node's overflow mode says ERROR or NULL. PANDAS dialect: NaN is missing (read as
null), comparisons with a missing value are false except `!=`, which is true.
"""

from __future__ import annotations

import dataclasses
import decimal
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from bpfstore.contract import decimals, keysets
from bpfstore.contract.binding import common_type, is_numeric, logical_type
from bpfstore.contract.bound import column_of
from bpfstore.contract.errors import ArithmeticOverflow, PlanInvalid, Unsupported
from bpfstore.contract.plan import (
    And,
    Arith,
    ArithOp,
    Between,
    Cast,
    Column,
    Compare,
    CompareOp,
    Dialect,
    Expr,
    In,
    IsNull,
    KeySet,
    Literal,
    Negate,
    Not,
    Or,
    Overflow,
    PlanVisitor,
    describe,
)

from ..budget import check_budget
from . import exact

_CMP = {CompareOp.EQ: pc.equal, CompareOp.NE: pc.not_equal, CompareOp.LT: pc.less,
        CompareOp.LE: pc.less_equal, CompareOp.GT: pc.greater, CompareOp.GE: pc.greater_equal}
_INT_ARITH = {ArithOp.ADD: pc.add_checked, ArithOp.SUB: pc.subtract_checked,
              ArithOp.MUL: pc.multiply_checked}
_FLOAT_ARITH = {ArithOp.ADD: pc.add, ArithOp.SUB: pc.subtract, ArithOp.MUL: pc.multiply,
                ArithOp.DIV: pc.divide}


@dataclass(frozen=True, slots=True)
class Val:
    data: Any  # pa.ChunkedArray, or pa.Scalar for a literal
    type: pa.DataType  # logical type
    scaled: bool = False  # a decimal held as unscaled int64

    @property
    def is_scalar(self) -> bool:
        return isinstance(self.data, pa.Scalar)


def load_column(data: pa.ChunkedArray, dialect: Dialect) -> Val:
    """A stored column as an evaluator value (decimal64 -> scaled int64, PANDAS NaN -> null)."""
    t = data.type
    if pa.types.is_decimal(t) and t.bit_width == 64:
        return Val(exact.decimal_storage_as_int64(data), logical_type(t), scaled=True)
    if pa.types.is_floating(t) and dialect is Dialect.PANDAS:
        return Val(_nan_to_null(data), t)
    return Val(data, t)


def _nan_to_null(data: Any) -> Any:
    if isinstance(data, pa.Scalar) or not pc.any(pc.is_nan(data)).as_py():
        return data
    return pc.if_else(pc.is_nan(data), pa.scalar(None, data.type), data)


class Evaluator:
    """Evaluates bound expressions over one table in one dialect."""

    def __init__(self, table: pa.Table, dialect: Dialect) -> None:
        self.table = table
        self.dialect = dialect
        self._columns: dict[str, Val] = {}

    def column(self, name: str) -> Val:
        if name not in self._columns:
            self._columns[name] = load_column(self.table.column(name), self.dialect)
        return self._columns[name]

    # -- public entry points -------------------------------------------------------------

    def predicate(self, e: Expr) -> pa.ChunkedArray | pa.Scalar:
        """A boolean mask (null = not selected in SQL)."""
        v = self.eval(e)
        return v.data

    def value(self, e: Expr) -> Val:
        v = self.eval(e)
        if v.is_scalar:  # broadcast literals (e.g. sum(1))
            n = self.table.num_rows
            v = Val(pa.chunked_array([pa.repeat(v.data, n)], type=v.data.type), v.type, v.scaled)
        return v

    # -- dispatch ------------------------------------------------------------------------

    def eval(self, e: Expr) -> Val:
        return _Eval(self).visit(e)

    # -- leaves --------------------------------------------------------------------------

    def literal(self, value: Any, t: pa.DataType) -> Val:
        if pa.types.is_decimal(t):
            unscaled = None if value is None else decimals.unscaled(value, t.scale)
            if unscaled is None or -(2**63) <= unscaled < 2**63:  # fits: a scaled integer
                return Val(pa.scalar(unscaled, pa.int64()), t, scaled=True)
        return Val(pa.scalar(value, t), t)

    # -- comparisons ---------------------------------------------------------------------

    def compare(self, op: CompareOp, a: Val, b: Val) -> Val:
        x, y, t = self.unify(a, b)
        if pa.types.is_dictionary(getattr(x, "type", None)) and isinstance(y, pa.Scalar):
            result = _on_dictionary(x, lambda d: _CMP[op](d, y))
        elif pa.types.is_dictionary(getattr(y, "type", None)) and isinstance(x, pa.Scalar):
            result = _on_dictionary(y, lambda d: _CMP[op](x, d))
        else:
            x, y = _decode(x), _decode(y)
            result = _CMP[op](x, y)
            if pa.types.is_floating(t) and self.dialect is Dialect.SQL:
                result = _sql_nan_compare(op, x, y, result)
        if self.dialect is Dialect.PANDAS:
            result = pc.fill_null(result, op is CompareOp.NE)
        return Val(result, pa.bool_())

    def unify(self, a: Val, b: Val) -> tuple[Any, Any, pa.DataType]:
        """Both operands in one comparable representation, and that logical type."""
        ta, tb = a.type, b.type
        if pa.types.is_decimal(ta) or pa.types.is_decimal(tb):
            if pa.types.is_floating(ta) or pa.types.is_floating(tb):
                return self.to_float(a), self.to_float(b), pa.float64()
            scale = max(_scale(ta), _scale(tb))
            sa, sb = self.rescale(a, scale), self.rescale(b, scale)
            if sa is not None and sb is not None:
                return sa, sb, pa.decimal128(38, scale)
            t = pa.decimal128(38, scale)
            return self.to_decimal128(a, t), self.to_decimal128(b, t), t
        if is_numeric(ta) and is_numeric(tb) and (
            pa.types.is_floating(ta) or pa.types.is_floating(tb)
        ):
            return self.to_float(a), self.to_float(b), pa.float64()
        if pa.types.is_date(ta) and pa.types.is_timestamp(tb):
            return _cast(a.data, tb), b.data, tb
        if pa.types.is_timestamp(ta) and pa.types.is_date(tb):
            return a.data, _cast(b.data, ta), ta
        if pa.types.is_null(ta) or pa.types.is_null(tb):
            t = tb if pa.types.is_null(ta) else ta
            return _cast(a.data, t), _cast(b.data, t), t
        return a.data, b.data, ta

    def logical(self, args: list[Val], sql_fn: Any, pandas_fn: Any) -> Val:
        fn = sql_fn if self.dialect is Dialect.SQL else pandas_fn
        result = None
        for arg in args:
            d = arg.data
            if self.dialect is Dialect.PANDAS:
                d = pc.fill_null(_cast(d, pa.bool_()), False)
            result = d if result is None else fn(result, d)
        return Val(result, pa.bool_())

    def isin(self, v: Val, values: tuple[Literal, ...]) -> Val:
        present = [x.value for x in values if x.value is not None]
        has_null = len(present) < len(values)
        ct = next((x.result_type for x in values if x.result_type is not None
                   and not pa.types.is_null(x.result_type)), v.type)
        data: Any = v.data
        if pa.types.is_decimal(ct):
            scaled = self.rescale(v, ct.scale)
            if scaled is not None:
                data = scaled
                value_set = pa.array([decimals.unscaled(x, ct.scale) for x in present],
                                     pa.int64())
            else:
                data = self.to_decimal128(v, pa.decimal128(38, ct.scale))
                value_set = pa.array(present, pa.decimal128(38, ct.scale))
        elif pa.types.is_floating(ct):  # + 0.0: -0.0 equals 0.0, which hashing would not see
            data = pc.add(self.to_float(v), 0.0)
            value_set = pa.array([float(x) + 0.0 for x in present], pa.float64())
        elif pa.types.is_timestamp(ct) and pa.types.is_date(v.type):  # a date is its midnight
            data = _cast(data, ct)
            value_set = pa.array(present, ct)
        else:
            value_set = pa.array(present, logical_type(ct))
        if pa.types.is_dictionary(getattr(data, "type", None)):
            result = _on_dictionary(data, lambda d: pc.is_in(d, value_set=value_set))
        else:
            result = pc.is_in(data, value_set=value_set, skip_nulls=True)
        if self.dialect is Dialect.PANDAS:
            # pandas' isin matches missing values when the list holds None or NaN.
            if has_null or any(isinstance(x, float) and x != x for x in present):
                result = pc.or_(pc.fill_null(result, False), pc.is_null(data, nan_is_null=True))
            return Val(pc.fill_null(result, False), pa.bool_())
        # SQL: NULL IN (...) is NULL; x IN (..., NULL) is NULL when x matches nothing.
        result = pc.if_else(pc.is_null(data), pa.scalar(None, pa.bool_()), result)
        if has_null:
            result = pc.if_else(result, True, pa.scalar(None, pa.bool_()))
        return Val(result, pa.bool_())

    def key_set(self, v: Val, keys: pa.Array) -> Val:
        """`v IN <keys>` (bound: normalized, in v's comparison type), as `isin` but for an
        empty set, which is FALSE even for NULL in SQL (DuckDB's IN of an empty subquery)."""
        present, has_null = keysets.split_null(keys)
        data: Any = v.data
        if pa.types.is_decimal(v.type):  # the keys have v's scale (binding)
            target = pa.decimal128(38, v.type.scale)
            data, present = self.to_decimal128(v, target), present.cast(target)
        elif pa.types.is_floating(v.type):  # + 0.0: -0.0 equals 0.0 (the keys are folded)
            data = pc.add(self.to_float(v), 0.0)
        if pa.types.is_dictionary(getattr(data, "type", None)):
            result = _on_dictionary(data, lambda d: pc.is_in(d, value_set=present))
        else:
            result = pc.is_in(data, value_set=present, skip_nulls=True)
        if self.dialect is Dialect.PANDAS:
            # pandas' isin matches missing values when the set holds None or NaN.
            nan = pa.types.is_floating(present.type) and len(present) and \
                pc.is_nan(present[-1]).as_py()  # sorted: NaN is last
            if has_null or nan:
                result = pc.or_(pc.fill_null(result, False), pc.is_null(data, nan_is_null=True))
            return Val(pc.fill_null(result, False), pa.bool_())
        if not len(keys):
            return Val(pc.fill_null(result, False), pa.bool_())
        result = pc.if_else(pc.is_null(data), pa.scalar(None, pa.bool_()), result)
        if has_null:
            result = pc.if_else(result, True, pa.scalar(None, pa.bool_()))
        return Val(result, pa.bool_())

    # -- arithmetic ----------------------------------------------------------------------

    def arith(self, e: Expr, op: ArithOp, a: Val, b: Val) -> Val:
        t = logical_type(e.result_type) if e.result_type is not None else None
        if op is ArithOp.DIV or pa.types.is_floating(a.type) or pa.types.is_floating(b.type):
            if t is not None and pa.types.is_decimal(t):
                return self.decimal_divide(e, a, b, t)
            return self.float_arith(e, op, self.to_float(a), self.to_float(b))
        if pa.types.is_integer(a.type) and pa.types.is_integer(b.type):
            out_type = t if t is not None and pa.types.is_integer(t) else _wider(a.type, b.type)
            return self.checked(e, lambda: _INT_ARITH[op](_cast(a.data, out_type),
                                                          _cast(b.data, out_type)), out_type)
        # decimals (an integer operand is a decimal of scale 0)
        sa, sb = _scale(a.type), _scale(b.type)
        scale = sa + sb if op is ArithOp.MUL else max(sa, sb)
        natural = t if t is not None and pa.types.is_decimal(t) and t.scale == scale \
            else pa.decimal128(38, scale)
        if op is ArithOp.MUL:
            x, y = self.rescale(a, sa), self.rescale(b, sb)
        else:
            x, y = self.rescale(a, scale), self.rescale(b, scale)
        if x is not None and y is not None:
            try:
                return Val(_INT_ARITH[op](x, y), natural, scaled=True)
            except pa.ArrowInvalid:
                pass  # int64 overflow: redo in decimal128 below, exactly
        return self.decimal128_arith(e, op, a, b, natural)

    def decimal128_arith(self, e: Expr, op: ArithOp, a: Val, b: Val, t: pa.DataType) -> Val:
        x, y = _narrow(self.to_decimal128(a)), _narrow(self.to_decimal128(b))
        fn = {ArithOp.ADD: pc.add_checked, ArithOp.SUB: pc.subtract_checked,
              ArithOp.MUL: pc.multiply_checked}[op]
        return self.checked(e, lambda: _cast(fn(x, y), t), t)

    def float_arith(self, e: Expr, op: ArithOp, x: Any, y: Any) -> Val:
        if op is ArithOp.DIV and e.overflow is not Overflow.DEFAULT:
            zero = pc.equal(y, 0.0)
            if e.overflow is Overflow.ERROR and pc.any(pc.and_(zero, pc.is_valid(x))).as_py():
                raise ArithmeticOverflow(f"division by zero in {describe(e)}")
            y = pc.if_else(zero, pa.scalar(None, pa.float64()), y)
        r = _FLOAT_ARITH[op](x, y)
        if self.dialect is Dialect.PANDAS:
            r = _nan_to_null(r)
        return Val(r, pa.float64())

    def decimal_divide(self, e: Expr, a: Val, b: Val, t: pa.DataType) -> Val:
        """Exact decimal division rounded half away from zero (Spark's rule); row by row."""
        xs = self.to_decimal128(a)
        ys = self.to_decimal128(b)
        xs = xs.to_pylist() if not isinstance(xs, pa.Scalar) else [xs.as_py()] * self.table.num_rows
        ys = ys.to_pylist() if not isinstance(ys, pa.Scalar) else [ys.as_py()] * self.table.num_rows
        out: list[decimal.Decimal | None] = []
        for x, y in zip(xs, ys, strict=True):
            if x is None or y is None:
                out.append(None)
            elif y == 0:
                if e.overflow is Overflow.ERROR:
                    raise ArithmeticOverflow(f"division by zero in {describe(e)}")
                out.append(None)
            else:  # the exact quotient, rounded once
                q = Fraction(x) / Fraction(y) * 10**t.scale
                out.append(decimals.to_decimal(
                    decimals.divide_half_up(q.numerator, q.denominator), t.scale))
        return self.checked(e, lambda: pa.chunked_array([pa.array(out, t)]), t)

    def negate(self, e: Expr, v: Val) -> Val:
        t = logical_type(e.result_type) if e.result_type is not None else v.type
        if pa.types.is_unsigned_integer(v.type):  # widened to a signed type by binding
            v = self.cast(v, t, e)
        if v.scaled or pa.types.is_integer(v.type):
            return Val(self.checked(e, lambda: pc.negate_checked(v.data), v.type).data, v.type,
                       v.scaled)
        return Val(pc.negate(v.data), v.type)

    def checked(self, e: Expr, compute: Any, t: pa.DataType) -> Val:
        """Run an overflow-checked kernel; on overflow raise (ERROR/DEFAULT) or go row by row."""
        try:
            return Val(compute(), t)
        except (pa.ArrowInvalid, OverflowError) as exc:
            if e.overflow is not Overflow.NULL:
                raise ArithmeticOverflow(f"overflow in {describe(e)}: {exc}") from None
        return self.rowwise_null_on_overflow(e, t)

    def rowwise_null_on_overflow(self, e: Expr, t: pa.DataType) -> Val:
        """Overflow mode NULL: evaluate each row on its own slice (rare, slow, exact)."""
        pieces: list[pa.Array] = []
        for i in range(self.table.num_rows):
            sub = Evaluator(self.table.slice(i, 1), self.dialect)
            try:
                piece = sub.to_logical(sub.eval(_with_error_mode(e))).data
            except ArithmeticOverflow:
                piece = pa.chunked_array([pa.nulls(1, t)])
            pieces.extend(c.cast(t) for c in exact.chunks(piece))
        # one chunk, not one a row: later per-chunk loops (exact sums) would take seconds
        return Val(pa.chunked_array([pa.concat_arrays(pieces)] if pieces else [], type=t), t)

    # -- casts and representations -------------------------------------------------------

    def cast(self, v: Val, to: pa.DataType, e: Expr) -> Val:
        if v.type == to:
            return v
        if pa.types.is_floating(to) and (pa.types.is_decimal(v.type) or is_numeric(v.type)):
            return Val(_cast(self.to_float(v), to), to)
        if pa.types.is_decimal(to) and pa.types.is_decimal(v.type) and to.scale < v.type.scale:
            rounded = pc.round(self.to_decimal128(v), ndigits=to.scale,
                               round_mode="half_towards_infinity")
            return self.checked(e, lambda: _cast(rounded, to), to)
        if pa.types.is_decimal(to) and to.precision <= 18 and (
            v.scaled or pa.types.is_integer(v.type)
        ):
            scaled = self.rescale(v, to.scale)
            if scaled is not None:
                limit = 10**to.precision
                out_of_range = pc.or_(pc.greater_equal(scaled, limit),
                                      pc.less_equal(scaled, -limit))
                if pc.any(out_of_range).as_py():
                    return self.checked(e, lambda: _cast(self.to_decimal128(v), to), to)
                return Val(scaled, to, scaled=True)
        source = self.to_decimal128(v) if v.scaled else _decode(v.data)
        if pa.types.is_floating(v.type) and (pa.types.is_integer(to) or pa.types.is_decimal(to)):
            source = pc.trunc(source) if pa.types.is_integer(to) else source
        try:
            return self.checked(e, lambda: _cast(source, to), to)
        except pa.ArrowNotImplementedError:
            raise PlanInvalid(f"cannot cast {v.type} to {to} in {describe(e)}") from None

    def rescale(self, v: Val, scale: int) -> Any | None:
        """Unscaled int64 at `scale` for decimal/integer values; None if that may overflow."""
        if v.scaled:
            factor = 10 ** (scale - v.type.scale)
        elif pa.types.is_integer(v.type) and v.type != pa.uint64():
            factor = 10**scale
        else:
            return None
        data = _cast(v.data, pa.int64())
        if factor == 1:
            return data
        try:
            return pc.multiply_checked(data, factor)
        except pa.ArrowInvalid:
            return None

    def to_decimal128(self, v: Val, t: pa.DataType | None = None) -> Any:
        if v.scaled:
            target = pa.decimal128(38, v.type.scale)
            if isinstance(v.data, pa.Scalar):
                py = v.data.as_py()
                d = None if py is None else decimals.to_decimal(py, v.type.scale)
                out = pa.scalar(d, target)
            else:
                out = exact.int64_to_decimal(v.data, target)
        elif pa.types.is_integer(v.type):
            out = _cast(v.data, pa.decimal128(20 if v.type == pa.uint64() else 19, 0))
        else:
            out = v.data
        return out if t is None else _cast(out, t)

    def to_float(self, v: Val) -> Any:
        if pa.types.is_floating(v.type):
            return _cast(v.data, pa.float64())
        if isinstance(v.data, pa.Scalar):
            py = v.data.as_py()
            if py is None:
                return pa.scalar(None, pa.float64())
            if v.scaled:
                return pa.scalar(float(decimals.to_decimal(py, v.type.scale)), pa.float64())
            return pa.scalar(float(py), pa.float64())
        if v.scaled:
            return exact.unscaled_to_float(v.data, v.type.scale)
        if pa.types.is_decimal(v.type):
            return exact.decimal128_to_float(v.data)
        return _cast(v.data, pa.float64())

    def to_logical(self, v: Val) -> Val:
        """The value in its logical Arrow type (scaled decimals back to decimal128)."""
        if v.scaled:
            return Val(self.to_decimal128(v, pa.decimal128(v.type.precision, v.type.scale)),
                       v.type)
        return v


class _Eval(PlanVisitor[Val]):
    """Each node's value from its children's values, then cast to the node's bound type."""

    def __init__(self, ev: Evaluator) -> None:
        self.ev = ev

    def visit(self, e: Expr) -> Val:
        check_budget()  # every node, also per row of rowwise_null_on_overflow
        v = super().visit(e)
        want = e.result_type
        if want is not None and column_of(e) is None and logical_type(want) != v.type:
            v = self.ev.cast(v, logical_type(want), e)  # a column keeps its stored form
        return v

    def unsupported(self, e: Expr) -> Val:
        raise PlanInvalid(f"cannot evaluate {describe(e)}")

    def column(self, e: Column) -> Val:
        return self.ev.column(e.name)

    def literal(self, e: Literal) -> Val:
        return self.ev.literal(e.value, e.result_type or pa.null())

    def compare(self, e: Compare, left: Val, right: Val) -> Val:
        return self.ev.compare(e.op, left, right)

    def and_(self, e: And, args: list[Val]) -> Val:
        return self.ev.logical(args, pc.and_kleene, pc.and_)

    def or_(self, e: Or, args: list[Val]) -> Val:
        return self.ev.logical(args, pc.or_kleene, pc.or_)

    def not_(self, e: Not, arg: Val) -> Val:
        return Val(pc.invert(arg.data), pa.bool_())

    def in_(self, e: In, arg: Val) -> Val:
        return self.ev.isin(arg, e.values)

    def key_set(self, e: KeySet, arg: Val) -> Val:
        return self.ev.key_set(arg, e.keys)

    def is_null(self, e: IsNull, arg: Val) -> Val:
        nan_is_null = self.ev.dialect is Dialect.PANDAS
        return Val(pc.is_null(arg.data, nan_is_null=nan_is_null), pa.bool_())

    def between(self, e: Between, arg: Val, low: Val, high: Val) -> Val:
        lo = self.ev.compare(CompareOp.GE, arg, low)
        hi = self.ev.compare(CompareOp.LE, arg, high)
        fn = pc.and_kleene if self.ev.dialect is Dialect.SQL else pc.and_
        return Val(fn(lo.data, hi.data), pa.bool_())

    def arith(self, e: Arith, left: Val, right: Val) -> Val:
        return self.ev.arith(e, e.op, left, right)

    def negate(self, e: Negate, arg: Val) -> Val:
        return self.ev.negate(e, arg)

    def cast(self, e: Cast, arg: Val) -> Val:
        return self.ev.cast(arg, logical_type(e.to), e)


# -- helpers ---------------------------------------------------------------------------------


def _scale(t: pa.DataType) -> int:
    return t.scale if pa.types.is_decimal(t) else 0


def _wider(a: pa.DataType, b: pa.DataType) -> pa.DataType:
    return common_type(a, b, "arithmetic")


def _cast(data: Any, t: pa.DataType) -> Any:
    if data.type == t:
        return data
    return data.cast(t) if isinstance(data, pa.Scalar) else pc.cast(data, t)


def _decode(data: Any) -> Any:
    if pa.types.is_dictionary(getattr(data, "type", None)):
        return pc.cast(data, data.type.value_type)
    return data


def _on_dictionary(data: pa.ChunkedArray, fn: Any) -> pa.ChunkedArray:
    """Apply a boolean function to each chunk's dictionary, then gather by the codes."""
    out = []
    for c in exact.chunks(data):
        out.append(pc.take(fn(c.dictionary), c.indices))
    return pa.chunked_array(out, type=pa.bool_())


def _sql_nan_compare(op: CompareOp, x: Any, y: Any, plain: Any) -> Any:
    """SQL float order: NaN equals NaN and is greater than every other value."""
    nx, ny = pc.is_nan(x), pc.is_nan(y)
    both = pc.and_(nx, ny)
    x_only = pc.and_(nx, pc.invert(ny))
    y_only = pc.and_(ny, pc.invert(nx))
    match op:
        case CompareOp.EQ:
            return pc.or_(plain, both)
        case CompareOp.NE:
            return pc.and_(plain, pc.invert(both))
        case CompareOp.LT:
            return pc.or_(plain, y_only)
        case CompareOp.LE:
            return pc.or_(pc.or_(plain, y_only), both)
        case CompareOp.GT:
            return pc.or_(plain, x_only)
        case CompareOp.GE:
            return pc.or_(pc.or_(plain, x_only), both)
    raise Unsupported(op)


def _narrow(data: Any) -> Any:
    """A decimal128 array at the smallest precision its values need, so products fit 38."""
    if isinstance(data, pa.Scalar):
        v = data.as_py()
        digits = len(str(abs(decimals.unscaled(v, data.type.scale)))) if v is not None else 1
        return data.cast(pa.decimal128(max(digits, data.type.scale, 1), data.type.scale))
    t = data.type
    mm = pc.min_max(data)
    lo, hi = mm["min"].as_py(), mm["max"].as_py()
    if lo is None:  # no rows or only NULLs (e.g. a filter matched nothing): no digits needed
        return pc.cast(data, pa.decimal128(max(t.scale, 1), t.scale))
    biggest = max(abs(decimals.unscaled(lo, t.scale)), abs(decimals.unscaled(hi, t.scale)))
    precision = max(len(str(biggest)), t.scale, 1)
    return pc.cast(data, pa.decimal128(precision, t.scale))


def _with_error_mode(e: Expr) -> Expr:
    return dataclasses.replace(e, overflow=Overflow.ERROR)
