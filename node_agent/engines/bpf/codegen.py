"""Bound plan + partition statistics -> C for bpf/aggregate.bpf.c, or Unsupported(why).

What compiles: a conjunction of range predicates (=, <, <=, >, >=, BETWEEN against
literals) on integer-like columns (ints, bool, date32, timestamp, decimal64 as scaled
integers) and equality of dictionary-encoded strings; COUNT(*), COUNT, SUM of + - *
expressions over such columns and literals, MIN and MAX of such columns; GROUP BY up to
MAX_GROUPS groups of dictionary codes or small integer ranges; no NULLs in the columns used.
Everything else raises `Unsupported` and the partition runs on the arrow engine.

Exactness: each predicate becomes an integer window computed exactly (fractions), and
every SUM expression is proven free of int64 overflow from the partition's min/max
statistics (interval arithmetic) before any code runs; sums are kept in 128 bits.
"""

from __future__ import annotations

import ast
import datetime as dt
import hashlib
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from bpfstore.contract import decimals
from bpfstore.contract.binding import logical_type
from bpfstore.contract.compare import float_key, window
from bpfstore.contract.errors import Unsupported
from bpfstore.contract.plan import (
    AggFunc,
    And,
    Arith,
    ArithOp,
    Between,
    Column,
    Compare,
    CompareOp,
    Dialect,
    Expr,
    In,
    IsNull,
    Literal,
    Negate,
    Not,
    Or,
    Plan,
    conjuncts,
    describe,
)

from ...stats import ColumnStats, stored_bounds

I64_MIN, I64_MAX = -(2**63), 2**63 - 1
MAX_GROUPS = 4096
MAX_UNROLLED_REGISTERS = 3  # measured: 1 sum + 1 min verifies unrolled, 2 sums + 2 min/max not
ACC_BYTES = 4 << 20  # group accumulators live at the start of the arena


@dataclass
class Program:
    """Generated C plus how to fill its context and read its results."""

    source: str = ""
    fields: list[tuple[str, str]] = field(default_factory=list)  # (name, "u64" | "s64")
    values: dict[str, int] = field(default_factory=dict)  # constant inputs
    columns: list[str] = field(default_factory=list)  # column i is at ctx field col{i}
    ctypes: list[str] = field(default_factory=list)  # per column: C type of its values
    # per aggregate: (kind, partial type, what counts its non-NULL inputs: a context field
    # name without group-by, a word of the group's accumulators with it)
    outputs: list[tuple[str, Any, Any]] = field(default_factory=list)
    validity: list[int] = field(default_factory=list)  # columns whose validity bitmap is used
    empty: bool = False  # statistics prove no row can match
    groups: int = 0  # group-by: number of groups (accumulators in the arena), 0 without
    keys: list[tuple[str, int, int]] = field(default_factory=list)  # (column, base, cardinality)
    stride: int = 0  # u64 words per group: count, then 2 per SUM, 1 per MIN/MAX
    slots: list[int] = field(default_factory=list)  # per aggregate: its first word in a group
    initial: list[int] = field(default_factory=list)  # per word of a group: starting value
    narrow: list[int] = field(default_factory=list)  # group sums kept in one s64 word

    @property
    def shape(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()[:20]


_CTYPES = {pa.int8(): "s8", pa.int16(): "s16", pa.int32(): "s32", pa.int64(): "s64",
           pa.uint8(): "u8", pa.uint16(): "u16", pa.uint32(): "u32", pa.bool_(): "bit",
           pa.date32(): "s32"}


def storage_ctype(t: pa.DataType) -> str | None:
    """The C type of a column's values in the arena, or None when bpf cannot read it."""
    if pa.types.is_decimal(t):
        return "s64" if t.bit_width == 64 else None
    if pa.types.is_timestamp(t) or pa.types.is_floating(t):
        return "s64"  # floats travel as their total-order keys (float_key)
    return _CTYPES.get(t)


def _scale(t: pa.DataType) -> int:
    return t.scale if pa.types.is_decimal(t) else 0


class _Compiler:
    def __init__(self, schema: pa.Schema, stats: dict[str, ColumnStats], rows: int,
                 dictionaries: dict[str, pa.Array], dialect: Dialect = Dialect.SQL) -> None:
        self.schema, self.stats, self.rows = schema, stats, rows
        self.dialect = dialect
        self.dictionaries = dictionaries
        self.p = Program()
        self.ranges: dict[tuple[str, bool], tuple[int, int]] = {}  # (column, codes) -> [lo, hi]
        self.setup: list[str] = []
        self.predicate: list[str] = []
        self.accumulate: list[str] = []
        self.store: list[str] = []

    # -- columns ---------------------------------------------------------------------------

    def readable(self, name: str, codes: bool = False) -> str:
        """The column's C type; Unsupported unless bpf can read every value of it
        (dictionary codes only where `codes`: equality and grouping, never arithmetic)."""
        t = self.schema.field(name).type
        ctype = "s32" if codes and pa.types.is_dictionary(t) else storage_ctype(t)
        if ctype is None:
            raise Unsupported(f"bpf: column {name!r} of type {t} is not integer-like")
        if self.stats.get(name) is None:
            raise Unsupported(f"bpf: no statistics for column {name!r}")
        if codes and self.nullable(name):
            raise Unsupported(f"bpf: group key {name!r} has NULLs in this partition")
        return ctype

    def nullable(self, name: str) -> bool:
        """Whether rows can be missing: NULL, or NaN in the PANDAS dialect (NaN is missing)."""
        s = self.stats[name]
        pandas_nan = self.dialect is Dialect.PANDAS and s.has_nan
        return s.null_count > 0 or pandas_nan

    def column(self, name: str, codes: bool = False) -> int:
        """The column's index in the context (registered on first use)."""
        if name in self.p.columns:
            return self.p.columns.index(name)
        ctype = self.readable(name, codes)
        i = len(self.p.columns)
        self.p.columns.append(name)
        self.p.ctypes.append(ctype)
        self.p.fields.append((f"col{i}", "u64"))
        if self.nullable(name):  # its validity bitmap travels as a second bit array
            self.p.validity.append(i)
            self.p.fields.append((f"val{i}", "u64"))
        return i

    def valid_bit(self, name: str) -> str | None:
        """C expression, 1 when row r of the column is not NULL (None: it never is)."""
        i = self.column(name)
        return f"((u64)BIT(val{i}, r))" if i in self.p.validity else None

    def validity(self, e: Expr) -> str | None:
        """1 when no column of the expression is NULL at row r (NULL propagates)."""
        from bpfstore.contract.plan import columns_of

        bits = [b for name in columns_of([e]) if (b := self.valid_bit(name)) is not None]
        return " & ".join(bits) if bits else None

    def value(self, name: str, codes: bool = False) -> str:
        """C expression reading row r of a column as s64 (booleans are packed bits)."""
        i = self.column(name, codes)
        if storage_ctype(self.schema.field(name).type) == "bit":
            return f"(s64)BIT(col{i}, r)"
        return f"(s64)col{i}[r]"

    def bounds(self, name: str) -> tuple[int, int]:
        """[min, max] of a column's stored integers, from statistics (codes: the dictionary)."""
        t = self.schema.field(name).type
        if pa.types.is_dictionary(t):
            return 0, len(self._dictionary(name)) - 1
        s = self.stats[name]
        if pa.types.is_floating(t):  # statistics leave NaN out; in SQL it sorts above all
            lo = float_key(s.min) if s.min is not None else float_key(math.nan)
            hi = float_key(math.nan) if s.has_nan and self.dialect is Dialect.SQL else \
                float_key(s.max) if s.max is not None else lo
            return lo, hi
        return stored_bounds(s, t) or (0, 0)  # no value: every one is NULL, none counts

    def _dictionary(self, name: str) -> pa.Array:
        if name not in self.dictionaries:
            raise Unsupported(f"bpf: column {name!r} has no single dictionary")
        return self.dictionaries[name]

    # -- predicates ------------------------------------------------------------------------

    def term(self, e: Expr) -> None:
        match e:
            case Literal(value=True):
                return
            case IsNull(arg=Column(name=name)):
                self.readable(name)
                valid = self.valid_bit(name) if self.nullable(name) else None
                if valid is None:
                    self.p.empty = True  # no NULLs here: nothing is NULL
                else:
                    self.predicate.append(f"sel &= 0 - ({valid} ^ 1);")
            case Not(arg=IsNull(arg=Column(name=name))):
                self.readable(name)
                if self.nullable(name):
                    self.predicate.append(f"sel &= 0 - {self.valid_bit(name)};")
            case Compare(op=CompareOp.EQ, left=Column(name=name), right=Literal(value=str(v))) \
                    | Compare(op=CompareOp.EQ, left=Literal(value=str(v)), right=Column(name=name)):
                self.code_window(name, v, e)
            case Compare(op=op, left=Column(name=name), right=Literal(value=v)) \
                    if v is not None and op is not CompareOp.NE and not isinstance(v, str):
                self.window(name, *_compare_bounds(op, v, self.schema.field(name).type), e)
            case Compare(op=op, left=Literal(value=v), right=Column(name=name)) \
                    if v is not None and op is not CompareOp.NE and not isinstance(v, str):
                self.window(name, *_compare_bounds(op.flipped(), v, self.schema.field(name).type),
                            e)
            case Between(arg=Column(name=name), low=Literal(value=lo), high=Literal(value=hi)) \
                    if lo is not None and hi is not None:
                t = self.schema.field(name).type
                lo_b = _compare_bounds(CompareOp.GE, lo, t)[0]
                hi_b = _compare_bounds(CompareOp.LE, hi, t)[1]
                self.window(name, lo_b, hi_b, e)
            case _:  # OR / NOT / IN / != and nested forms: a boolean word of their own
                word = self.truth(e)[0]
                constant = _constant(word)
                if constant is False:
                    self.p.empty = True  # statistics prove no row satisfies this term
                elif constant is None:
                    self.predicate.append(f"sel &= {word};")

    # Nested predicates give two words whose sign bits say "certainly true" and "certainly
    # false" (SQL's three-valued logic: NULL is neither; WHERE keeps only certainly true).
    # In the PANDAS dialect a missing value makes a comparison false and `~` is plain
    # negation, so false is simply "not true".

    def truth(self, e: Expr) -> tuple[str, str]:
        sql = self.dialect is Dialect.SQL
        match e:
            case Literal(value=bool(v)):
                return ("~0ULL", "0ULL") if v else ("0ULL", "~0ULL")
            case And(args=args):
                parts = [self.truth(a) for a in args]
                t = " & ".join(f"({p[0]})" for p in parts)
                f = " | ".join(f"({p[1]})" for p in parts)
                return t, (f if sql else f"~({t})")
            case Or(args=args):
                parts = [self.truth(a) for a in args]
                t = " | ".join(f"({p[0]})" for p in parts)
                f = " & ".join(f"({p[1]})" for p in parts)
                return t, (f if sql else f"~({t})")
            case Not(arg=arg):
                t, f = self.truth(arg)
                return f, t
            case IsNull(arg=Column(name=name)):
                self.readable(name)
                valid = self.valid_bit(name) if self.nullable(name) else None
                if valid is None:
                    return "0ULL", "~0ULL"
                return f"(0 - ({valid} ^ 1))", f"(0 - {valid})"
            case Compare(op=op, left=Column(name=name), right=Literal(value=v)) \
                    if v is not None:
                return self.compare_word(name, op, v)
            case Compare(op=op, left=Literal(value=v), right=Column(name=name)) \
                    if v is not None:
                return self.compare_word(name, op.flipped(), v)
            case Between(arg=Column(name=name), low=Literal(value=lo), high=Literal(value=hi)) \
                    if lo is not None and hi is not None:
                t = self.schema.field(name).type
                window = self.window_word(name, _compare_bounds(CompareOp.GE, lo, t)[0],
                                          _compare_bounds(CompareOp.LE, hi, t)[1])
                return self.known(name, window)
            case In(arg=Column(name=name), values=values):
                present = [v.value for v in values if v.value is not None]
                words = [self.compare_word(name, CompareOp.EQ, v)[0] for v in present] or ["0ULL"]
                t = " | ".join(f"({w})" for w in words)
                valid = self.valid_bit(name) if self.nullable(name) else None
                has_null = len(present) < len(values)
                if not sql:  # pandas' isin matches missing values when the list holds None
                    return (f"({t}) | (0 - ({valid} ^ 1))" if valid and has_null else t), \
                        f"~({t})"
                if has_null:  # x IN (..., NULL) is never certainly false
                    return t, "0ULL"
                return t, (f"~({t}) & (0 - {valid})" if valid else f"~({t})")
        raise Unsupported(f"bpf: filter {describe(e)} is not a test of columns against literals")

    def compare_word(self, name: str, op: CompareOp, v: Any) -> tuple[str, str]:
        t = self.schema.field(name).type
        if isinstance(v, str):
            if op not in (CompareOp.EQ, CompareOp.NE) or not pa.types.is_dictionary(t):
                raise Unsupported(f"bpf: {op.value} on strings")
            code = pc.index(self._dictionary(name), v).as_py()
            word = self.window_word(name, code, code, codes=True) if code >= 0 else "0ULL"
            codes = True
        else:
            lo, hi = _compare_bounds(CompareOp.EQ if op is CompareOp.NE else op, v, t)
            word = self.window_word(name, lo, hi)
            codes = False
        t_word, f_word = self.known(name, word, codes)
        return (f_word, t_word) if op is CompareOp.NE and self.dialect is Dialect.SQL else \
            (f"~({t_word})", t_word) if op is CompareOp.NE else (t_word, f_word)

    def known(self, name: str, word: str, codes: bool = False) -> tuple[str, str]:
        """(true, false) words of a window test: a NULL row is neither in SQL."""
        valid = self.valid_bit(name) if self.nullable(name) else None
        if valid is None:
            return word, f"~({word})"
        if self.dialect is Dialect.SQL:
            return f"({word}) & (0 - {valid})", f"~({word}) & (0 - {valid})"
        return f"({word}) & (0 - {valid})", f"~(({word}) & (0 - {valid}))"

    def window_word(self, name: str, lo: float | int, hi: float | int,
                    codes: bool = False) -> str:
        """C word whose sign bit says lo <= value <= hi (constants in the context)."""
        self.readable(name, codes)
        col_lo, col_hi = self.bounds(name)
        lo = col_lo if lo == -math.inf else int(lo)
        hi = col_hi if hi == math.inf else int(hi)
        if lo > hi or lo > col_hi or hi < col_lo:
            return "0ULL"
        if lo <= col_lo and hi >= col_hi:
            return "~0ULL"
        k = sum(1 for n, _ in self.p.fields if n.startswith("lo"))
        width = hi - lo
        if width < 2**63 - 1:
            lo_u, r1, inv = lo % 2**64, width + 1, 0
        else:
            lo_u, r1, inv = (hi + 1) % 2**64, 2**64 - width - 1, 1 << 63
        self.p.fields += [(f"lo{k}", "u64"), (f"r{k}", "u64"), (f"inv{k}", "u64")]
        self.p.values.update({f"lo{k}": lo_u, f"r{k}": r1, f"inv{k}": inv})
        self.setup.append(f"u64 lo{k} = c->lo{k}, r{k} = c->r{k}, inv{k} = c->inv{k};")
        return f"(in_window((u64){self.value(name, codes)}, lo{k}, r{k}) ^ inv{k})"

    def code_window(self, name: str, value: str, e: Expr) -> None:
        """String equality on a dictionary column: a window on the literal's code."""
        self.readable(name, codes=True)
        matches = pc.index(self._dictionary(name), value).as_py()
        if matches < 0:
            self.p.empty = True  # the value does not occur in this partition
            return
        self.window(name, matches, matches, e, codes=True)

    def window(self, name: str, lo: float | int, hi: float | int, e: Expr,
               codes: bool = False) -> None:
        """Narrow the column's window (terms on one column become one test)."""
        self.readable(name, codes)
        col_lo, col_hi = self.ranges.get((name, codes), self.bounds(name))
        self.ranges[(name, codes)] = (int(max(lo, col_lo)), int(min(hi, col_hi)))

    def emit_windows(self) -> None:
        for (name, codes), (lo, hi) in self.ranges.items():
            self.emit_window(name, lo, hi, codes)

    def emit_window(self, name: str, lo: int, hi: int, codes: bool) -> None:
        col_lo, col_hi = self.bounds(name)
        if lo > hi:
            self.p.empty = True  # statistics prove no row satisfies this term
            return
        if lo <= col_lo and hi >= col_hi:  # every value satisfies it, and NULL still none
            if self.nullable(name):
                self.predicate.append(f"sel &= 0 - {self.valid_bit(name)};")
            return
        k = sum(1 for name, _ in self.p.fields if name.startswith("lo"))
        width = int(hi) - int(lo)
        if width < 2**63 - 1:
            lo_u, r1, inv = int(lo) % 2**64, width + 1, 0
        else:  # too wide for the window test: test the complement window and invert
            lo_u, r1, inv = (int(hi) + 1) % 2**64, 2**64 - width - 1, 1 << 63
        self.p.fields += [(f"lo{k}", "u64"), (f"r{k}", "u64"), (f"inv{k}", "u64")]
        self.p.values.update({f"lo{k}": lo_u, f"r{k}": r1, f"inv{k}": inv})
        value = self.value(name, codes)
        self.setup.append(f"u64 lo{k} = c->lo{k}, r{k} = c->r{k}, inv{k} = c->inv{k};")
        valid = self.valid_bit(name)
        guard = f" & (0 - {valid})" if valid else ""  # NULL satisfies no comparison
        self.predicate.append(f"sel &= (in_window((u64){value}, lo{k}, r{k}) ^ inv{k}){guard};")

    # -- aggregates ------------------------------------------------------------------------

    def group(self, keys: tuple[str, ...]) -> None:
        """Group ids from key columns; unselected rows go to an extra, ignored group."""
        terms, groups = [], 1
        for name in reversed(keys):  # row-major: the last key varies fastest
            base, top = self.bounds(name)
            card = top - base + 1
            value = self.value(name, codes=True)
            terms.append(f"(u64)({value} - ({base}LL)) * {groups}ULL")
            self.p.keys.insert(0, (name, base, card))
            groups *= card
            if groups > MAX_GROUPS:
                raise Unsupported(f"bpf: more than {MAX_GROUPS} possible groups")
        self.p.groups, self.p.stride, self.p.initial = groups, 1, [0]
        self.p.fields.append(("acc", "u64"))
        self.setup.append("u64 __arena *acc = (u64 __arena *)c->acc;")
        self.accumulate.append(
            f"u64 g = {' + '.join(terms)}; g = (g & mask) | ({groups}ULL & ~mask);")
        self.accumulate.append("u64 __arena *a = acc + g * STRIDE; a[0] += 1;")

    def fits_64(self, bounds: tuple[int, int]) -> bool:
        """Whether a sum of this partition's rows of values within bounds fits in an s64."""
        return max(abs(bounds[0]), abs(bounds[1])) * max(self.rows, 1) <= I64_MAX

    def words(self, *initial: int) -> int:
        slot = self.p.stride
        self.p.stride += len(initial)
        self.p.initial += list(initial)
        return slot

    def grouped_aggregate(self, func: AggFunc, arg: Expr | None, out_type: pa.DataType) -> None:
        ok = self.validity(arg) if arg is not None else None
        if func in (AggFunc.COUNT_STAR, AggFunc.COUNT):
            if arg is not None:
                self.expr(arg)
            if ok is None:
                self.p.outputs.append(("count", None, 0))
                return
            n = self.words(0)
            self.accumulate.append(f"a[{n}] += {ok};")
            self.p.outputs.append(("count", None, n))
            return
        assert arg is not None
        keep = f" & (0 - ({ok}))" if ok else ""
        if func is AggFunc.SUM:
            code, _, bounds = self.expr(arg)
            w = self.words(0, 0)
            if self.fits_64(bounds):  # the group's total fits: plain adds, hi word unused
                self.p.narrow.append(w)
                self.accumulate.append(f"{{ s64 v = {code}; a[{w}] += (u64)v{keep}; }}")
            else:
                self.accumulate.append(
                    f"{{ s64 v = {code}; ADD128(a[{w}], a[{w + 1}], (u64)v{keep}); }}")
        else:
            if not isinstance(arg, Column):
                raise Unsupported(f"bpf: {func.value} of an expression")
            code, _, _ = self.expr(arg)
            w = self.words(I64_MAX if func is AggFunc.MIN else I64_MIN)
            test = "less_mask(v, m)" if func is AggFunc.MIN else "less_mask(m, v)"
            self.accumulate.append(f"{{ s64 v = {code}; s64 m = (s64)a[{w}]; "
                                   f"m ^= (m ^ v) & {test}{keep}; a[{w}] = (u64)m; }}")
        n = 0
        if ok:
            n = self.words(0)
            self.accumulate.append(f"a[{n}] += {ok};")
        self.p.slots.append(w)
        self.p.outputs.append((func.value, out_type, n))

    def aggregate(self, index: int, func: AggFunc, arg: Expr | None, out_type: pa.DataType
                  ) -> None:
        if self.p.groups:
            if func in (AggFunc.COUNT_STAR, AggFunc.COUNT):
                self.p.slots.append(0)
            self.grouped_aggregate(func, arg, out_type)
            return
        k = index
        ok = self.validity(arg) if arg is not None else None
        counter = "count"
        if ok:  # NULL inputs are skipped: count this aggregate's own inputs
            counter = f"n{k}"
            self.p.fields.append((counter, "u64"))
            self.setup.append(f"u64 {counter} = 0;")
            self.accumulate.append(f"{counter} += mask & ({ok});")
            self.store.append(f"c->{counter} += {counter};")
        keep = f" & (0 - ({ok}))" if ok else ""
        if func in (AggFunc.COUNT_STAR, AggFunc.COUNT):
            if arg is not None:
                self.expr(arg)
            self.p.outputs.append(("count", None, counter))
            return
        assert arg is not None
        if func is AggFunc.SUM:
            code, _, bounds = self.expr(arg)
            self.p.fields += [(f"slo{k}", "u64"), (f"shi{k}", "u64")]
            if self.fits_64(bounds):  # the call's total fits in 64 bits: no carry per row
                self.setup.append(f"s64 s{k} = 0;")
                self.accumulate.append(f"{{ s64 v = {code}; s{k} += (s64)((u64)v & mask{keep}); }}")
                self.store.append(f"ADD128(c->slo{k}, c->shi{k}, s{k});")
            else:
                self.setup.append(f"u64 slo{k} = 0, shi{k} = 0;")
                self.accumulate.append(
                    f"{{ s64 v = {code}; ADD128(slo{k}, shi{k}, (u64)v & mask{keep}); }}")
                self.store.append(
                    f"{{ u64 o = c->slo{k}, n = o + slo{k}; "
                    f"c->shi{k} += shi{k} + (((o & slo{k}) | ((o | slo{k}) & ~n)) >> 63); "
                    f"c->slo{k} = n; }}")
            self.p.outputs.append(("sum", out_type, counter))
            return
        if not isinstance(arg, Column):
            raise Unsupported(f"bpf: {func.value} of an expression")
        code, _, _ = self.expr(arg)
        name = f"m{k}"
        self.p.fields.append((name, "s64"))
        self.p.values[name] = I64_MAX if func is AggFunc.MIN else I64_MIN
        self.setup.append(f"s64 {name} = (s64)c->{name};")
        test = f"less_mask(v, {name})" if func is AggFunc.MIN else f"less_mask({name}, v)"
        self.accumulate.append(
            f"{{ s64 v = {code}; {name} ^= ({name} ^ v) & {test} & mask{keep}; }}")
        self.store.append(f"c->{name} = {name};")
        self.p.outputs.append((func.value, out_type, counter))

    def expr(self, e: Expr) -> tuple[str, int, tuple[int, int]]:
        """C code of an integer expression, its decimal scale, and proven [min, max]."""
        code, scale, bounds = self._expr(e)
        want = e.result_type
        if want is not None and pa.types.is_integer(want) and not isinstance(e, Column):
            # the node's type may be narrower than the 64 bits computed here: statistics must
            # prove it cannot overflow that type either (else arrow raises, as SQL requires)
            lo_t, hi_t = _int_range(want)
            if bounds[0] < lo_t or bounds[1] > hi_t:
                raise Unsupported(f"bpf: {describe(e)} may overflow {want}")
        return code, scale, bounds

    def _expr(self, e: Expr) -> tuple[str, int, tuple[int, int]]:
        match e:
            case Column(name=name):
                return self.value(name), _scale(self.schema.field(name).type), self.bounds(name)
            case _ if any(pa.types.is_floating(self.schema.field(n).type)
                          for n in _columns(e)):
                raise Unsupported(f"bpf: float arithmetic in {describe(e)} runs on arrow")
            case Literal(value=v) if v is not None and not isinstance(v, float):
                t = e.result_type or pa.int64()
                if not (pa.types.is_integer(t) or pa.types.is_decimal(t)):
                    raise Unsupported(f"bpf: literal {v!r} of type {t}")
                try:
                    unscaled = decimals.unscaled(v, _scale(t))
                except ValueError:
                    raise Unsupported(f"bpf: literal {v!r} is finer than {t}") from None
                _check(unscaled, unscaled, e)
                return f"({unscaled}LL)", _scale(t), (unscaled, unscaled)
            case Negate(arg=arg):
                code, s, (lo, hi) = self.expr(arg)
                _check(-hi, -lo, e)
                return f"(-{code})", s, (-hi, -lo)
            case Arith(op=op, left=left, right=right) if op is not ArithOp.DIV:
                lc, ls, lb = self.expr(left)
                rc, rs, rb = self.expr(right)
                if op is ArithOp.MUL:
                    products = [a * b for a in lb for b in rb]
                    bounds = (min(products), max(products))
                    code, scale = f"({lc} * {rc})", ls + rs
                else:
                    scale = max(ls, rs)
                    lc, lb = _rescaled(lc, lb, scale - ls, e)
                    rc, rb = _rescaled(rc, rb, scale - rs, e)
                    if op is ArithOp.ADD:
                        bounds, code = (lb[0] + rb[0], lb[1] + rb[1]), f"({lc} + {rc})"
                    else:
                        bounds, code = (lb[0] - rb[1], lb[1] - rb[0]), f"({lc} - {rc})"
                _check(*bounds, e)
                want = e.result_type
                if want is not None and pa.types.is_decimal(want) and want.scale != scale:
                    raise Unsupported(f"bpf: {describe(e)} is rescaled to {want}")
                return code, scale, bounds
        raise Unsupported(f"bpf: expression {describe(e)}")


def _columns(e: Expr) -> list[str]:
    from bpfstore.contract.plan import columns_of

    return columns_of([e])


def _int_range(t: pa.DataType) -> tuple[int, int]:
    bits = t.bit_width
    if pa.types.is_unsigned_integer(t):
        return 0, 2**bits - 1
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def _check(lo: int, hi: int, e: Expr) -> None:
    if lo < I64_MIN or hi > I64_MAX:
        raise Unsupported(f"bpf: {describe(e)} may overflow 64 bits in this partition")


def _rescaled(code: str, b: tuple[int, int], k: int, e: Expr) -> tuple[str, tuple[int, int]]:
    if k == 0:
        return code, b
    f = 10**k
    _check(b[0] * f, b[1] * f, e)
    return f"({code} * {f}LL)", (b[0] * f, b[1] * f)


def _constant(word: str) -> bool | None:
    """The truth of a predicate word that reads no row (constants only), else None."""
    if not re.fullmatch(r"[~()&| 0ULL]*", word):
        return None
    # Only 0ULL, ~, &, | and parentheses: Python's ints give the same sign bit. Walked by
    # hand rather than eval'd: the agent never evaluates text as code.
    return _fold(ast.parse(word.replace("ULL", ""), mode="eval").body) < 0


def _fold(node: ast.AST) -> int:
    match node:
        case ast.Constant(value=int(v)):
            return v
        case ast.UnaryOp(op=ast.Invert(), operand=a):
            return ~_fold(a)
        case ast.BinOp(left=a, op=ast.BitAnd(), right=b):
            return _fold(a) & _fold(b)
        case ast.BinOp(left=a, op=ast.BitOr(), right=b):
            return _fold(a) | _fold(b)
    raise ValueError(f"not a constant predicate word: {ast.dump(node)}")


def _compare_bounds(op: CompareOp, v: Any, t: pa.DataType) -> tuple[float | int, float | int]:
    """The integer window [lo, hi] of stored values x satisfying `x op v`, exactly (the
    shared comparison semantics, proto/contract/compare.py)."""
    if isinstance(v, dt.datetime) and v.tzinfo is not None and pa.types.is_date32(t):
        raise Unsupported("bpf: time-zone aware timestamp against a date column")
    try:
        return window(op, v, logical_type(t))
    except ValueError as exc:
        raise Unsupported(f"bpf: {exc}") from None


def compile_plan(plan: Plan, schema: pa.Schema, stats: dict[str, ColumnStats], rows: int,
                 dictionaries: dict[str, pa.Array] | None = None, path: str = "hot"
                 ) -> Program:
    """The program for one partition on a data path, "hot" (arena) or "cold" (chunks
    copied from user memory); raises Unsupported with the reason."""
    from bpfstore.contract.binding import partial_type

    c = _Compiler(schema, stats, rows, dictionaries or {}, plan.dialect)
    for term in conjuncts(plan.filter):
        c.term(term)
    c.emit_windows()
    if plan.group_by:
        c.group(plan.group_by)
    for i, agg in enumerate(plan.aggregates):
        floating = agg.arg is not None and pa.types.is_floating(logical_type(agg.arg.result_type))
        if floating and agg.func is AggFunc.SUM:
            raise Unsupported("bpf: float sums run on arrow (no floating point in BPF)")
        c.aggregate(i, agg.func, agg.arg, partial_type(agg))
    if c.p.groups and (c.p.groups + 1) * c.p.stride * 8 > ACC_BYTES:
        raise Unsupported("bpf: group accumulators larger than their arena region")
    c.p.source = _fill(c, path)
    return c.p


CHUNK_ROWS = 4096  # cold path: rows copied at a time (bpf/cold.bpf.c)
_BYTES = {"s8": 1, "u8": 1, "s16": 2, "u16": 2, "s32": 4, "u32": 4, "s64": 8}


def _fill(c: _Compiler, path: str) -> str:
    """The template of the data path with its holes filled."""
    template = {"hot": "aggregate.bpf.c", "cold": "cold.bpf.c", "bcc": "bcc_read.bpf.c"}[path]
    source = (resources.files("bpfstore.bpf") / template).read_text()
    if path == "hot":
        columns = _arena_columns(c.p)
    elif path == "bcc":
        if c.p.groups:
            raise Unsupported("bcc: GROUP BY keeps accumulators in an arena; it runs on arrow")
        columns, defines = _read_columns(c.p)
        for name, value in defines.items():  # sizes in rows of CHUNK_ROWS, which may change
            source = source.replace(f"#define {name} {_READ_DEFAULTS[name]} ",
                                    f"#define {name} {value} ")
    else:
        columns, copy, size = _chunk_columns(c.p)
        source = source.replace("#define CHUNK_BYTES 8", f"#define CHUNK_BYTES {size}")
        source = source.replace("#define CHUNK_ROWS 4096", f"#define CHUNK_ROWS {CHUNK_ROWS}")
        source = source.replace("/*@COPY@*/", "\n        ".join(copy))
        # grouped programs keep their accumulators in the hot path's arena
        source = source.replace("/*@ARENA@*/", _ARENA if c.p.groups else "")
        source = source.replace("/*@ARENA_USE@*/", 'asm volatile("" :: "r"(&arena));'
                                if c.p.groups else "")
    holes = {
        "/*@CTX@*/": "\n    ".join(f"{kind} {name};" for name, kind in c.p.fields),
        "/*@COLUMNS@*/": "\n    ".join(columns),
        "/*@SETUP@*/": "\n    ".join(c.setup),
        "/*@PREDICATE@*/": "\n            ".join(c.predicate),
        "/*@ACCUMULATE@*/": "\n            ".join(c.accumulate),
        "/*@STORE@*/": "\n    ".join(c.store),
    }
    source = source.replace("#define STRIDE 1", f"#define STRIDE {c.p.stride or 1}")
    # Accumulators held in registers (no group-by) multiply the state the verifier tracks
    # through an unrolled step; past a few it stops converging ("program is too large").
    registers = sum(2 if kind == "sum" else 1 for kind, _, _ in c.p.outputs if kind != "count")
    registers += sum(1 for _, _, counter in c.p.outputs if counter != "count")
    if path == "hot" and not c.p.groups and registers > MAX_UNROLLED_REGISTERS:
        source = source.replace("#define UNROLL 8", "#define UNROLL 1")
    for hole, code in holes.items():
        source = source.replace(hole, code)
    return source


_ARENA = """struct {
    __uint(type, BPF_MAP_TYPE_ARENA);
    __uint(map_flags, BPF_F_MMAPABLE);
    __uint(max_entries, 1); /* pages: set by the agent before load */
} arena SEC(".maps");"""


def _arena_columns(p: Program) -> list[str]:
    """Hot path: every column (and validity bitmap) is an array in the arena."""
    out = []
    for i, ctype in enumerate(p.ctypes):
        array = "u8" if ctype == "bit" else ctype
        out.append(f"const {array} __arena *col{i} = (const {array} __arena *)c->col{i};")
        if i in p.validity:
            out.append(f"const u8 __arena *val{i} = (const u8 __arena *)c->val{i};")
    return out


def _arrays(p: Program) -> list[tuple[str, str]]:
    """(name, element ctype) of every array a program reads: columns and validity bitmaps."""
    arrays = []
    for i, ctype in enumerate(p.ctypes):
        arrays.append((f"col{i}", ctype))
        if i in p.validity:
            arrays.append((f"val{i}", "bit"))
    return arrays


def _chunk_columns(p: Program) -> tuple[list[str], list[str], int]:
    """Cold path: each array gets a region of the chunk; copied from its user address."""
    columns, copy, offset = [], [], 0
    for name, ctype in _arrays(p):
        if ctype == "bit":  # bytes from row i / 8; one byte more when rows start mid-byte
            region, array = CHUNK_ROWS // 8 + 8, "u8"
            copy.append(f"err |= bpf_copy_from_user(buf + {offset}, (n + b + 7) >> 3, "
                        f"(const void *)(c->{name} + (i >> 3)));")
        else:
            width = _BYTES[ctype]
            region, array = CHUNK_ROWS * width, ctype
            copy.append(f"err |= bpf_copy_from_user(buf + {offset}, n * {width}, "
                        f"(const void *)(c->{name} + i * {width}));")
        columns.append(f"const {array} *{name} = (const {array} *)(buf + {offset});")
        offset += region
    return columns, copy, max(offset, 8)


READ_ROWS = 2048  # bcc path: rows a read (bpf/bcc_read.bpf.c's CHUNK_ROWS)
_READ_DEFAULTS = {"CHUNK_BYTES": "8", "LAST_OFFSET": "0", "LAST_WIDTH": "8"}
BITS = {"bit": 1, **{k: 8 * v for k, v in _BYTES.items()}}  # per C type: bits a value


def read_layout(p: Program, rows: int = READ_ROWS) -> list[tuple[str, str, int]]:
    """bcc path: the regions of a request's buffer, (array, element ctype, byte offset), one
    of `rows` rows per column and validity bitmap; bit arrays first, so that the last region
    (the registered one, read last, whose length gives the rows read) has whole bytes a row."""
    arrays = sorted(_arrays(p), key=lambda a: a[1] != "bit")  # stable
    if arrays and arrays[-1][1] == "bit":
        raise Unsupported("bcc: the plan reads only bit-packed columns")
    out, bits = [], 0
    for name, ctype in arrays:
        out.append((name, ctype, bits * rows // 8))
        bits += BITS[ctype]
    return out


def _read_columns(p: Program) -> tuple[list[str], dict[str, str]]:
    """bcc path: each array is a region of the chunk copied from the request's buffer."""
    columns, bits, last = [], 0, (0, "s64")
    for name, ctype, _ in read_layout(p):
        array = "u8" if ctype == "bit" else ctype
        columns.append(f"const {array} *{name} = (const {array} *)(buf + {bits} * CHUNK_ROWS / 8);")
        last = (bits, ctype)
        bits += BITS[ctype]
    if not columns:
        return columns, {}
    return columns, {"CHUNK_BYTES": f"({bits} * CHUNK_ROWS / 8)",
                     "LAST_OFFSET": f"({last[0]} * CHUNK_ROWS / 8)",
                     "LAST_WIDTH": str(BITS[last[1]] // 8)}
