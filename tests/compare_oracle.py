"""Random comparisons of a column with a literal of another type, and their answer by the
documented rules (proto/contract/compare.py) computed row by row in exact Python: none of
bpfstore's evaluation code is used."""

from __future__ import annotations

import datetime as dt
import decimal as D
import math
from fractions import Fraction

import pyarrow as pa
from hypothesis import strategies as st

from bpfstore.contract.plan import Between, Column, Compare, CompareOp, Dialect, Expr, In, Literal

INT_TYPES = [pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint64()]
UNITS = ["s", "ms", "us", "ns"]
EPOCH = dt.datetime(1970, 1, 1)


@st.composite
def column_type(draw) -> pa.DataType:
    kind = draw(st.sampled_from(["int", "decimal", "float", "date", "timestamp"]))
    if kind == "int":
        return draw(st.sampled_from(INT_TYPES))
    if kind == "decimal":
        precision = draw(st.integers(1, 38))
        return pa.decimal128(precision, draw(st.integers(0, precision)))
    if kind == "float":
        return draw(st.sampled_from([pa.float32(), pa.float64()]))
    if kind == "date":
        return pa.date32()
    return pa.timestamp(draw(st.sampled_from(UNITS)))


def _int_range(t: pa.DataType) -> tuple[int, int]:
    if pa.types.is_unsigned_integer(t):
        return 0, 2**t.bit_width - 1
    return -(2 ** (t.bit_width - 1)), 2 ** (t.bit_width - 1) - 1


def values_of(t: pa.DataType) -> st.SearchStrategy:
    if pa.types.is_integer(t):
        lo, hi = _int_range(t)
        edges = [v for v in (lo, hi, 0, 2**53, 2**53 + 1, -(2**53) - 1, 2**63 - 1, 2**64 - 1)
                 if lo <= v <= hi]
        return st.one_of(st.sampled_from(edges), st.integers(lo, hi))
    if pa.types.is_decimal(t):
        top = 10**t.precision - 1
        unscaled = st.one_of(st.sampled_from([top, -top, 0, 5, 2**53 + 1]).filter(
            lambda u: abs(u) <= top), st.integers(-top, top))
        return unscaled.map(lambda u: D.Decimal(f"{u}E-{t.scale}"))
    if pa.types.is_floating(t):
        width = 32 if t == pa.float32() else 64
        return st.one_of(st.sampled_from([-0.0, 0.0, math.inf, -math.inf, math.nan, 0.05]),
                         st.floats(width=width, allow_nan=True))
    if pa.types.is_date32(t):
        return st.integers(-719_000, 2_900_000).map(lambda d: dt.date(1970, 1, 1)
                                                    + dt.timedelta(days=d))
    return st.integers(-(2**40), 2**40)  # a timestamp's integer in its unit


def literal_for(t: pa.DataType, near: list) -> st.SearchStrategy:
    """Literals of every type a user may compare with t, often at or next to a value."""
    if pa.types.is_date32(t) or pa.types.is_timestamp(t):
        micros = st.integers(-(2**45), 2**45)
        near_ts = [m for v in near if v is not None  # literals are datetimes: years 1..9999
                   if -62135596800 * 10**6 < (m := _ns(v, t) // 1000) < 253402300799 * 10**6]
        if near_ts:
            micros = st.one_of(micros, st.sampled_from(near_ts).flatmap(
                lambda m: st.integers(m - 1, m + 1)))
        stamp = micros.map(lambda m: EPOCH + dt.timedelta(microseconds=m))
        return st.one_of(stamp, stamp.map(lambda s: s.date()))
    plain = [v for v in near if v is not None]
    floats = st.one_of(st.floats(allow_nan=True), st.sampled_from([0.05, 2.0**53, -0.0]))
    if plain:
        at = st.sampled_from(plain)
        floats = st.one_of(floats, at.map(float), at.map(
            lambda v: math.nextafter(float(v), math.inf)), at.map(
            lambda v: math.nextafter(float(v), -math.inf)))
    ints = st.integers(-(2**64), 2**64)
    decimals = st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
        lambda d: len(d.as_tuple().digits) <= 38 and -38 <= d.as_tuple().exponent <= 0)
    if plain and not any(isinstance(v, float) for v in plain):
        ints = st.one_of(ints, st.sampled_from([int(v) for v in plain]))
        decimals = st.one_of(decimals, st.sampled_from([D.Decimal(v) for v in plain]))
    return st.one_of(floats, ints, decimals)


def _ns(v, t: pa.DataType) -> int:
    if isinstance(v, dt.date):
        return (v - dt.date(1970, 1, 1)).days * 86_400 * 10**9
    return v * {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}[t.unit]


def _number(v, t: pa.DataType | None, as_float: bool):
    """A value for the oracle: float64 when a float is involved, else exact."""
    if isinstance(v, dt.datetime):
        return Fraction((v - EPOCH) // dt.timedelta(microseconds=1) * 1000)
    if isinstance(v, dt.date):
        return Fraction(_ns(v, pa.date32()))
    if t is not None and pa.types.is_timestamp(t):
        return Fraction(_ns(v, t))
    if as_float:
        return float(v)
    return Fraction(v)


def holds(op: CompareOp, x, v, t: pa.DataType, dialect: Dialect,
          floats: bool = False) -> bool | None:
    """`x op v` by the documented rules, row by row (None: SQL's NULL); `floats`: a float
    elsewhere in the node (BETWEEN, IN) makes float64 the type of every comparison."""
    if x is None or (dialect is Dialect.PANDAS and isinstance(x, float) and math.isnan(x)):
        return None if dialect is Dialect.SQL else op is CompareOp.NE
    as_float = floats or isinstance(x, float) or isinstance(v, float)
    a, b = _number(x, t, as_float), _number(v, None, as_float)
    if as_float and (math.isnan(a) or math.isnan(b)):
        if dialect is Dialect.PANDAS:
            return op is CompareOp.NE
        a, b = (math.isnan(a), 0.0 if math.isnan(a) else a), (math.isnan(b), 0.0 if
                                                                  math.isnan(b) else b)
    return {CompareOp.EQ: a == b, CompareOp.NE: a != b, CompareOp.LT: a < b,
            CompareOp.LE: a <= b, CompareOp.GT: a > b, CompareOp.GE: a >= b}[op]


def oracle_count(form: str, op: CompareOp, xs: list, lits: list, t: pa.DataType,
                 dialect: Dialect) -> int:
    n = 0
    floats = any(isinstance(v, float) for v in lits)
    for x in xs:
        if form == "between":
            lo, hi = holds(CompareOp.GE, x, lits[0], t, dialect, floats), holds(
                CompareOp.LE, x, lits[1], t, dialect, floats)
            ok = lo is True and hi is True
        elif form == "in":
            ok = any(holds(CompareOp.EQ, x, v, t, dialect, floats) is True for v in lits)
            missing = x is None or (isinstance(x, float) and math.isnan(x))
            if dialect is Dialect.PANDAS and missing:
                ok = any(isinstance(v, float) and math.isnan(v) for v in lits)
        else:
            ok = holds(op, x, lits[0], t, dialect) is True
        n += ok
    return n


@st.composite
def cases(draw):
    t = draw(column_type())
    xs = draw(st.lists(st.one_of(st.none(), values_of(t)), min_size=1, max_size=6))
    if pa.types.is_floating(t):
        xs = pa.array(xs, t).to_pylist()  # float32 rounds them
    form = draw(st.sampled_from(["compare", "compare", "flipped", "between", "in"]))
    literal = literal_for(t, xs)
    lits = draw(st.lists(literal, min_size=2 if form == "between" else 1,
                         max_size=2 if form != "in" else 3))
    op = draw(st.sampled_from(list(CompareOp)))
    dialect = draw(st.sampled_from(list(Dialect)))
    return t, xs, form, op, lits, dialect


def filter_of(form: str, op: CompareOp, lits: list) -> Expr:
    x = Column("x")
    if form == "between":
        return Between(x, Literal(lits[0]), Literal(lits[1]))
    if form == "in":
        return In(x, tuple(Literal(v) for v in lits))
    if form == "flipped":  # `v op' x`, the same test written literal first
        return Compare(op.flipped(), Literal(lits[0]), x)
    return Compare(op, x, Literal(lits[0]))
