"""The expression walkers: predicates become C words of sign bits (term, truth), integer
expressions become C code with their decimal scale and proven [min, max] bounds (expr)."""

from __future__ import annotations

import ast
import math
import re
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from bpfstore.contract import decimals
from bpfstore.contract.bound import column_literal, column_of, column_range
from bpfstore.contract.errors import Unsupported
from bpfstore.contract.plan import (
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
    KeySet,
    Literal,
    Negate,
    Not,
    Or,
    PlanVisitor,
    columns_of,
    describe,
)

from .keys import keys_in_range
from .overflow import check_i64, int_range, rescaled
from .pairs import Pairs
from .typemap import scale_of
from .windows import between_bounds, compare_bounds


class Expressions(Pairs):
    """Predicate terms and integer expressions of one program."""

    def term(self, e: Expr) -> None:
        """One conjunct of the filter: a window on a column where it is one, else a word.
        Bound comparisons have their literal on the right: one shape (contract/bound.py)."""
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
            case Compare(op=CompareOp.EQ, left=Column(name=name), right=Literal(value=str(v))):
                self.code_window(name, v, e)
            case Compare(op=op, left=Column(name=name), right=Literal(value=v)) \
                    if v is not None and op is not CompareOp.NE and not isinstance(v, str):
                self.window(name, *compare_bounds(op, v, self.schema.field(name).type), e)
            case Between() if (r := column_range(e)) is not None:
                name, lo, hi = r
                t = self.schema.field(name).type
                self.window(name, *between_bounds(lo, hi, t), e)
            case _:  # OR / NOT / IN / !=, column op column, nested: a boolean word of their own
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
        return _need(_Truth(self).visit(e), e)

    def compare_word(self, name: str, op: CompareOp, v: Any) -> tuple[str, str]:
        t = self.schema.field(name).type
        if isinstance(v, str):
            if op not in (CompareOp.EQ, CompareOp.NE) or not pa.types.is_dictionary(t):
                raise Unsupported(f"bpf: {op.value} on strings")
            code = pc.index(self._dictionary(name), v).as_py()
            # absent from this dictionary: an empty window (the same C as a present one)
            word = self.window_word(name, code, code if code >= 0 else -1, codes=True)
            codes = True
        else:
            lo, hi = compare_bounds(CompareOp.EQ if op is CompareOp.NE else op, v, t)
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

    def expr(self, e: Expr) -> tuple[str, int, tuple[int, int]]:
        """C code of an integer expression, its decimal scale, and proven [min, max]."""
        if column_of(e) is None and any(pa.types.is_floating(self.schema.field(n).type)
                                        for n in columns_of([e])):
            raise Unsupported(f"bpf: float arithmetic in {describe(e)} runs on arrow")
        return _Integer(self).visit(e)


Words = tuple[str, str] | None  # (certainly true, certainly false); None: not a predicate


def _need(words: Words, e: Expr) -> tuple[str, str]:
    if words is None:
        raise Unsupported(f"bpf: filter {describe(e)} is not a test of columns against "
                          "literals or other columns")
    return words


class _Truth(PlanVisitor[Words]):
    """The two words of a predicate, children first; operands (columns, non-boolean
    literals, arithmetic) give None, which only a comparison's own test may consume."""

    def __init__(self, x: Expressions) -> None:
        self.x = x
        self.sql = x.dialect is Dialect.SQL

    def unsupported(self, e: Expr) -> Words:
        return None

    def literal(self, e: Literal) -> Words:
        if not isinstance(e.value, bool):
            return None
        return ("~0ULL", "0ULL") if e.value else ("0ULL", "~0ULL")

    def and_(self, e: And, args: list[Words]) -> Words:
        parts = [_need(w, a) for w, a in zip(args, e.args, strict=True)]
        t = " & ".join(f"({p[0]})" for p in parts)
        f = " | ".join(f"({p[1]})" for p in parts)
        return t, (f if self.sql else f"~({t})")

    def or_(self, e: Or, args: list[Words]) -> Words:
        parts = [_need(w, a) for w, a in zip(args, e.args, strict=True)]
        t = " | ".join(f"({p[0]})" for p in parts)
        f = " & ".join(f"({p[1]})" for p in parts)
        return t, (f if self.sql else f"~({t})")

    def not_(self, e: Not, arg: Words) -> Words:
        t, f = _need(arg, e.arg)
        return f, t

    def is_null(self, e: IsNull, arg: Words) -> Words:
        name = column_of(e.arg)
        if name is None:
            return _need(None, e)
        self.x.readable(name)
        valid = self.x.valid_bit(name) if self.x.nullable(name) else None
        if valid is None:
            return "0ULL", "~0ULL"
        return f"(0 - ({valid} ^ 1))", f"(0 - {valid})"

    def compare(self, e: Compare, left: Words, right: Words) -> Words:
        match column_literal(e):
            case (name, op, v):
                return self.x.compare_word(name, op, v)
        match e:
            case Compare(left=Column(name=a), right=Column(name=b)):
                return self.x.pair_word(a, e.op, b, e)
        return _need(None, e)

    def between(self, e: Between, arg: Words, low: Words, high: Words) -> Words:
        match column_range(e):
            case (name, lo, hi):
                t = self.x.schema.field(name).type
                window = self.x.window_word(name, *between_bounds(lo, hi, t))
                return self.x.known(name, window)
        return _need(None, e)

    def in_(self, e: In, arg: Words) -> Words:
        name = column_of(e.arg)
        if name is None:
            return _need(None, e)
        present = [v.value for v in e.values if v.value is not None]
        words = [self.x.compare_word(name, CompareOp.EQ, v)[0] for v in present]
        has_null = len(present) < len(e.values)
        nan = any(isinstance(v, float) and math.isnan(v) for v in present)
        return self._membership(name, words, has_null, nan)

    def key_set(self, e: KeySet, arg: Words) -> Words:
        """As an IN list of the keys this partition may hold (codegen/keys.py); the empty
        set is certainly false, also for NULL (DuckDB's IN of an empty subquery)."""
        name = column_of(e.arg)
        if name is None:
            return _need(None, e)
        if not len(e.keys):
            return "0ULL", "~0ULL"
        present, has_null = e.keys.drop_null(), e.keys.null_count > 0
        nan = pa.types.is_floating(present.type) and bool(len(present)) and \
            math.isnan(present[-1].as_py())  # sorted: NaN last
        found, codes = keys_in_range(self.x, name, present)
        words = [self.x.known(name, self.x.window_word(name, k, k, codes=codes), codes)[0]
                 for k in found]
        return self._membership(name, words, has_null, nan)

    def _membership(self, name: str, words: list[str], has_null: bool, nan: bool) -> Words:
        """x IN (...) from the equality words of its non-NULL values (true-words, NULL rows
        already excluded), with the dialect's rules for NULL and NaN in the list."""
        t = " | ".join(f"({w})" for w in words or ["0ULL"])
        valid = self.x.valid_bit(name) if self.x.nullable(name) else None
        if not self.sql:  # pandas' isin matches missing values when the list holds None or NaN
            missing = has_null or nan
            return (f"({t}) | (0 - ({valid} ^ 1))" if valid and missing else t), f"~({t})"
        if has_null:  # x IN (..., NULL) is never certainly false
            return t, "0ULL"
        return t, (f"~({t}) & (0 - {valid})" if valid else f"~({t})")


Code = tuple[str, int, tuple[int, int]]  # C code, decimal scale, proven [min, max]


class _Integer(PlanVisitor[Code]):
    """An integer expression's code, children first (the caller refused float columns)."""

    def __init__(self, x: Expressions) -> None:
        self.x = x

    def visit(self, e: Expr) -> Code:
        code, scale, bounds = super().visit(e)
        want = e.result_type
        if want is not None and pa.types.is_integer(want) and column_of(e) is None:
            # the node's type may be narrower than the 64 bits computed here: statistics must
            # prove it cannot overflow that type either (else arrow raises, as SQL requires)
            lo_t, hi_t = int_range(want)
            if bounds[0] < lo_t or bounds[1] > hi_t:
                raise Unsupported(f"bpf: {describe(e)} may overflow {want}")
        return code, scale, bounds

    def unsupported(self, e: Expr) -> Code:
        raise Unsupported(f"bpf: expression {describe(e)}")

    def column(self, e: Column) -> Code:
        t = self.x.schema.field(e.name).type
        return self.x.value(e.name), scale_of(t), self.x.bounds(e.name)

    def literal(self, e: Literal) -> Code:
        v = e.value
        if v is None or isinstance(v, float):
            return self.unsupported(e)
        t = e.result_type or pa.int64()
        if not (pa.types.is_integer(t) or pa.types.is_decimal(t)):
            raise Unsupported(f"bpf: literal {v!r} of type {t}")
        try:
            unscaled = decimals.unscaled(v, scale_of(t))
        except ValueError:
            raise Unsupported(f"bpf: literal {v!r} is finer than {t}") from None
        check_i64(unscaled, unscaled, e)
        return f"({unscaled}LL)", scale_of(t), (unscaled, unscaled)

    def negate(self, e: Negate, arg: Code) -> Code:
        code, s, (lo, hi) = arg
        check_i64(-hi, -lo, e)
        return f"(-{code})", s, (-hi, -lo)

    def arith(self, e: Arith, left: Code, right: Code) -> Code:
        if e.op is ArithOp.DIV:
            return self.unsupported(e)
        (lc, ls, lb), (rc, rs, rb) = left, right
        if e.op is ArithOp.MUL:
            products = [a * b for a in lb for b in rb]
            bounds = (min(products), max(products))
            code, scale = f"({lc} * {rc})", ls + rs
        else:
            scale = max(ls, rs)
            lc, lb = rescaled(lc, lb, scale - ls, e)
            rc, rb = rescaled(rc, rb, scale - rs, e)
            if e.op is ArithOp.ADD:
                bounds, code = (lb[0] + rb[0], lb[1] + rb[1]), f"({lc} + {rc})"
            else:
                bounds, code = (lb[0] - rb[1], lb[1] - rb[0]), f"({lc} - {rc})"
        check_i64(*bounds, e)
        want = e.result_type
        if want is not None and pa.types.is_decimal(want) and want.scale != scale:
            raise Unsupported(f"bpf: {describe(e)} is rescaled to {want}")
        return code, scale, bounds


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

