"""The expression walkers: predicates become C words of sign bits (term, truth), integer
expressions become C code with their decimal scale and proven [min, max] bounds (expr)."""

from __future__ import annotations

import ast
import re
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from bpfstore.contract import decimals
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
    Literal,
    Negate,
    Not,
    Or,
    columns_of,
    describe,
)

from .overflow import check_i64, int_range, rescaled
from .typemap import scale_of
from .windows import Windows, compare_bounds


class Expressions(Windows):
    """Predicate terms and integer expressions of one program."""

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
                self.window(name, *compare_bounds(op, v, self.schema.field(name).type), e)
            case Compare(op=op, left=Literal(value=v), right=Column(name=name)) \
                    if v is not None and op is not CompareOp.NE and not isinstance(v, str):
                self.window(name, *compare_bounds(op.flipped(), v, self.schema.field(name).type),
                            e)
            case Between(arg=Column(name=name), low=Literal(value=lo), high=Literal(value=hi)) \
                    if lo is not None and hi is not None:
                t = self.schema.field(name).type
                lo_b = compare_bounds(CompareOp.GE, lo, t)[0]
                hi_b = compare_bounds(CompareOp.LE, hi, t)[1]
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
                window = self.window_word(name, compare_bounds(CompareOp.GE, lo, t)[0],
                                          compare_bounds(CompareOp.LE, hi, t)[1])
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
        code, scale, bounds = self._expr(e)
        want = e.result_type
        if want is not None and pa.types.is_integer(want) and not isinstance(e, Column):
            # the node's type may be narrower than the 64 bits computed here: statistics must
            # prove it cannot overflow that type either (else arrow raises, as SQL requires)
            lo_t, hi_t = int_range(want)
            if bounds[0] < lo_t or bounds[1] > hi_t:
                raise Unsupported(f"bpf: {describe(e)} may overflow {want}")
        return code, scale, bounds

    def _expr(self, e: Expr) -> tuple[str, int, tuple[int, int]]:
        match e:
            case Column(name=name):
                return self.value(name), scale_of(self.schema.field(name).type), self.bounds(name)
            case _ if any(pa.types.is_floating(self.schema.field(n).type)
                          for n in _columns(e)):
                raise Unsupported(f"bpf: float arithmetic in {describe(e)} runs on arrow")
            case Literal(value=v) if v is not None and not isinstance(v, float):
                t = e.result_type or pa.int64()
                if not (pa.types.is_integer(t) or pa.types.is_decimal(t)):
                    raise Unsupported(f"bpf: literal {v!r} of type {t}")
                try:
                    unscaled = decimals.unscaled(v, scale_of(t))
                except ValueError:
                    raise Unsupported(f"bpf: literal {v!r} is finer than {t}") from None
                check_i64(unscaled, unscaled, e)
                return f"({unscaled}LL)", scale_of(t), (unscaled, unscaled)
            case Negate(arg=arg):
                code, s, (lo, hi) = self.expr(arg)
                check_i64(-hi, -lo, e)
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
                    lc, lb = rescaled(lc, lb, scale - ls, e)
                    rc, rb = rescaled(rc, rb, scale - rs, e)
                    if op is ArithOp.ADD:
                        bounds, code = (lb[0] + rb[0], lb[1] + rb[1]), f"({lc} + {rc})"
                    else:
                        bounds, code = (lb[0] - rb[1], lb[1] - rb[0]), f"({lc} - {rc})"
                check_i64(*bounds, e)
                want = e.result_type
                if want is not None and pa.types.is_decimal(want) and want.scale != scale:
                    raise Unsupported(f"bpf: {describe(e)} is rescaled to {want}")
                return code, scale, bounds
        raise Unsupported(f"bpf: expression {describe(e)}")


def _columns(e: Expr) -> list[str]:
    return columns_of([e])


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

