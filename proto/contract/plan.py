"""The pushdown plan model: small immutable expression nodes, aggregates and plans.

Pure: imports nothing from pyspark, dask, grpc or libbpf. Types are Arrow types.
Unbound plans name columns as the caller wrote them; `binding.bind` resolves them against a
schema and returns the bound classes of `bound.py`, whose `result_type` is never None.
`PlanVisitor` is the one walk over expressions; each backend is a small subclass of it.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import pyarrow as pa

from .keysets import describe_keys, key_array, same_keys

T = TypeVar("T")


class Overflow(enum.Enum):
    DEFAULT = "default"  # dialect rules: integer overflow errors, x/0 follows IEEE
    ERROR = "error"  # overflow and division by zero raise (Spark ANSI)
    NULL = "null"  # overflow and division by zero give NULL (Spark legacy)


class Dialect(enum.Enum):
    SQL = "sql"
    PANDAS = "pandas"


class EngineName(enum.StrEnum):
    """The engine a plan asks for; AUTO lets the agent choose (bpf where it can, else arrow).
    A StrEnum: each member equals its name as users write it ("bpf-hot")."""

    AUTO = "auto"
    ARROW = "arrow"
    BPF = "bpf"  # the SYSCALL engine, its data path chosen per partition
    BPF_HOT = "bpf-hot"  # the SYSCALL engine over the arena column cache
    BPF_COLD = "bpf-cold"  # the SYSCALL engine over the file's own buffers
    BCC = "bcc"  # the read-path engine (kernels without SYSCALL programs)

    @classmethod
    def parse(cls, name: str | EngineName) -> EngineName:
        """The engine a caller named (CLI, Spark option, client argument), once, at the edge."""
        if isinstance(name, EngineName):
            return name
        try:
            return cls(name)
        except ValueError:
            choices = ", ".join(e.value for e in cls)
            raise ValueError(f"unknown engine {str(name)[:40]!r}; choose one of {choices}") \
                from None

    @property
    def path(self) -> str:
        """The bpf data path this name forces ("" when the engine chooses)."""
        return {EngineName.BPF_HOT: "hot", EngineName.BPF_COLD: "cold"}.get(self, "")


class CompareOp(enum.Enum):
    EQ = "="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="

    def flipped(self) -> CompareOp:
        """The operator with its operands swapped (5 < x  ==  x > 5)."""
        return _FLIPPED[self]


_FLIPPED = {
    CompareOp.EQ: CompareOp.EQ,
    CompareOp.NE: CompareOp.NE,
    CompareOp.LT: CompareOp.GT,
    CompareOp.LE: CompareOp.GE,
    CompareOp.GT: CompareOp.LT,
    CompareOp.GE: CompareOp.LE,
}


class ArithOp(enum.Enum):
    ADD = "+"
    SUB = "-"
    MUL = "*"
    DIV = "/"


class AggFunc(enum.Enum):
    COUNT_STAR = "count_star"
    COUNT = "count"
    SUM = "sum"
    MIN = "min"
    MAX = "max"


@dataclass(frozen=True, slots=True, kw_only=True)
class Expr:
    """Base of every expression node: an optional exact result type and overflow mode."""

    result_type: pa.DataType | None = None
    overflow: Overflow = Overflow.DEFAULT

    # Builders, so plans read like the queries they come from.
    def __lt__(self, other: Any) -> Compare:
        return Compare(CompareOp.LT, self, lit(other))

    def __le__(self, other: Any) -> Compare:
        return Compare(CompareOp.LE, self, lit(other))

    def __gt__(self, other: Any) -> Compare:
        return Compare(CompareOp.GT, self, lit(other))

    def __ge__(self, other: Any) -> Compare:
        return Compare(CompareOp.GE, self, lit(other))

    def eq(self, other: Any) -> Compare:
        return Compare(CompareOp.EQ, self, lit(other))

    def ne(self, other: Any) -> Compare:
        return Compare(CompareOp.NE, self, lit(other))

    def __and__(self, other: Expr) -> And:
        left = self.args if isinstance(self, And) and self.result_type is None else (self,)
        return And((*left, other))

    def __or__(self, other: Expr) -> Or:
        left = self.args if isinstance(self, Or) and self.result_type is None else (self,)
        return Or((*left, other))

    def __invert__(self) -> Not:
        return Not(self)

    def __add__(self, other: Any) -> Arith:
        return Arith(ArithOp.ADD, self, lit(other))

    def __radd__(self, other: Any) -> Arith:
        return Arith(ArithOp.ADD, lit(other), self)

    def __sub__(self, other: Any) -> Arith:
        return Arith(ArithOp.SUB, self, lit(other))

    def __rsub__(self, other: Any) -> Arith:
        return Arith(ArithOp.SUB, lit(other), self)

    def __mul__(self, other: Any) -> Arith:
        return Arith(ArithOp.MUL, self, lit(other))

    def __rmul__(self, other: Any) -> Arith:
        return Arith(ArithOp.MUL, lit(other), self)

    def __truediv__(self, other: Any) -> Arith:
        return Arith(ArithOp.DIV, self, lit(other))

    def __neg__(self) -> Negate:
        return Negate(self)

    def isin(self, values: Iterable[Any]) -> In:
        return In(self, tuple(v if isinstance(v, Literal) else Literal(v) for v in values))

    def isin_keys(self, keys: pa.Array | pa.ChunkedArray | Iterable[Any]) -> KeySet:
        """`self IN <keys>` for a large set (an Arrow array, or values): see `KeySet`."""
        return KeySet(self, key_array(keys))

    def between(self, low: Any, high: Any) -> Between:
        return Between(self, lit(low), lit(high))

    def is_null(self) -> IsNull:
        return IsNull(self)

    def cast(self, to: pa.DataType) -> Cast:
        return Cast(self, to)

    # Equality stays structural (dataclass), so `eq`/`ne` are methods, not operators.


@dataclass(frozen=True, slots=True)
class Column(Expr):
    name: str


@dataclass(frozen=True, slots=True)
class Literal(Expr):
    """A constant: None, bool, int, float, str, Decimal, date or datetime.

    Its Arrow type is `result_type`; without one, binding infers it from the value.
    """

    value: Any


@dataclass(frozen=True, slots=True)
class Compare(Expr):
    op: CompareOp
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class And(Expr):
    args: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Or(Expr):
    args: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Not(Expr):
    arg: Expr


@dataclass(frozen=True, slots=True)
class In(Expr):
    arg: Expr
    values: tuple[Literal, ...]


@dataclass(frozen=True, slots=True)
class KeySet(Expr):
    """`arg IN <keys>` for sets too large for an `In` list (thousands to millions of keys):
    the keys are one Arrow array, any order, duplicates and NULLs allowed (semantics and
    type rules: keysets.py). Equal when the keys are equal as arrays."""

    arg: Expr
    keys: pa.Array

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and isinstance(other, KeySet) and \
            (self.arg, self.result_type, self.overflow) == \
            (other.arg, other.result_type, other.overflow) and same_keys(self.keys, other.keys)

    def __hash__(self) -> int:
        return hash((type(self), self.arg, len(self.keys), str(self.keys.type)))


@dataclass(frozen=True, slots=True)
class IsNull(Expr):
    arg: Expr


@dataclass(frozen=True, slots=True)
class Between(Expr):
    arg: Expr
    low: Expr
    high: Expr


@dataclass(frozen=True, slots=True)
class Arith(Expr):
    op: ArithOp
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class Negate(Expr):
    arg: Expr


@dataclass(frozen=True, slots=True)
class Cast(Expr):
    arg: Expr
    to: pa.DataType


@dataclass(frozen=True, slots=True)
class Aggregate:
    func: AggFunc
    arg: Expr | None = None

    def __post_init__(self) -> None:
        if (self.func is AggFunc.COUNT_STAR) != (self.arg is None):
            raise ValueError("COUNT_STAR takes no argument; every other aggregate takes one")


@dataclass(frozen=True, slots=True)
class Plan:
    dataset: str
    partitions: tuple[str, ...] = ()
    filter: Expr | None = None
    columns: tuple[str, ...] = ()
    group_by: tuple[str, ...] = ()
    aggregates: tuple[Aggregate, ...] = ()
    dialect: Dialect = Dialect.SQL
    engine: EngineName = EngineName.AUTO

    def __post_init__(self) -> None:
        # a caller may name the engine as a string ("bpf"): parsed here, once
        object.__setattr__(self, "engine", EngineName.parse(self.engine))


def col(name: str) -> Column:
    return Column(name)


_LITERAL_TYPES = (bool, int, float, str, decimal.Decimal, dt.date)  # datetime is a date


def lit(value: Any, type_: pa.DataType | None = None) -> Expr:
    """Wrap a Python value as a Literal (expressions pass through unchanged)."""
    if isinstance(value, Expr):
        return value
    if value is not None and not isinstance(value, _LITERAL_TYPES):
        raise TypeError(f"cannot use {value!r} ({type(value).__name__}) as a literal")
    return Literal(value, result_type=type_)


def count_star() -> Aggregate:
    return Aggregate(AggFunc.COUNT_STAR)


def count(e: Expr | str) -> Aggregate:
    return Aggregate(AggFunc.COUNT, _expr(e))


def sum_(e: Expr | str) -> Aggregate:
    return Aggregate(AggFunc.SUM, _expr(e))


def min_(e: Expr | str) -> Aggregate:
    return Aggregate(AggFunc.MIN, _expr(e))


def max_(e: Expr | str) -> Aggregate:
    return Aggregate(AggFunc.MAX, _expr(e))


def _expr(e: Expr | str) -> Expr:
    return Column(e) if isinstance(e, str) else e


def children(e: Expr) -> tuple[Expr, ...]:
    """The direct sub-expressions of a node, in a fixed order."""
    match e:
        case Column() | Literal():
            return ()
        case Compare(left=left, right=right) | Arith(left=left, right=right):
            return (left, right)
        case And(args=args) | Or(args=args):
            return args
        case Not(arg=arg) | IsNull(arg=arg) | Negate(arg=arg) | Cast(arg=arg) | KeySet(arg=arg):
            return (arg,)
        case In(arg=arg, values=values):
            return (arg, *values)
        case Between(arg=arg, low=low, high=high):
            return (arg, low, high)
    raise TypeError(f"not an expression node: {e!r}")


class PlanVisitor(Generic[T]):
    """The one walk over expressions, children before parents: `visit(e)` visits e's
    children, then calls the method named after e's node class with e and their results
    (an In's values are literals: its method gets them as nodes, unvisited; a KeySet's keys
    are an Arrow array, on the node).

    A backend is a subclass overriding the methods of the nodes it handles; the others call
    `unsupported`. Override `visit` to act on every node (its budget, its result type)."""

    def visit(self, e: Expr) -> T:
        match e:
            case Column():
                return self.column(e)
            case Literal():
                return self.literal(e)
            case Compare(left=left, right=right):
                return self.compare(e, self.visit(left), self.visit(right))
            case And(args=args):
                return self.and_(e, [self.visit(a) for a in args])
            case Or(args=args):
                return self.or_(e, [self.visit(a) for a in args])
            case Not(arg=arg):
                return self.not_(e, self.visit(arg))
            case In(arg=arg):
                return self.in_(e, self.visit(arg))
            case KeySet(arg=arg):
                return self.key_set(e, self.visit(arg))
            case IsNull(arg=arg):
                return self.is_null(e, self.visit(arg))
            case Between(arg=arg, low=low, high=high):
                return self.between(e, self.visit(arg), self.visit(low), self.visit(high))
            case Arith(left=left, right=right):
                return self.arith(e, self.visit(left), self.visit(right))
            case Negate(arg=arg):
                return self.negate(e, self.visit(arg))
            case Cast(arg=arg):
                return self.cast(e, self.visit(arg))
        return self.unsupported(e)  # not a node (a hostile plan)

    def unsupported(self, e: Expr) -> T:
        raise TypeError(f"{type(self).__name__} has no rule for {describe(e)}")

    def column(self, e: Column) -> T:
        return self.unsupported(e)

    def literal(self, e: Literal) -> T:
        return self.unsupported(e)

    def compare(self, e: Compare, left: T, right: T) -> T:
        return self.unsupported(e)

    def and_(self, e: And, args: list[T]) -> T:
        return self.unsupported(e)

    def or_(self, e: Or, args: list[T]) -> T:
        return self.unsupported(e)

    def not_(self, e: Not, arg: T) -> T:
        return self.unsupported(e)

    def in_(self, e: In, arg: T) -> T:
        return self.unsupported(e)

    def key_set(self, e: KeySet, arg: T) -> T:
        return self.unsupported(e)

    def is_null(self, e: IsNull, arg: T) -> T:
        return self.unsupported(e)

    def between(self, e: Between, arg: T, low: T, high: T) -> T:
        return self.unsupported(e)

    def arith(self, e: Arith, left: T, right: T) -> T:
        return self.unsupported(e)

    def negate(self, e: Negate, arg: T) -> T:
        return self.unsupported(e)

    def cast(self, e: Cast, arg: T) -> T:
        return self.unsupported(e)


def walk(e: Expr) -> Iterable[Expr]:
    """Every node of an expression, parents first."""
    yield e
    for c in children(e):
        yield from walk(c)


def columns_of(exprs: Sequence[Expr | None]) -> list[str]:
    """Column names referenced by the expressions, in first-seen order."""
    seen: dict[str, None] = {}
    for root in exprs:
        if root is not None:
            for node in walk(root):
                if isinstance(node, Column):
                    seen.setdefault(node.name)
    return list(seen)


def conjuncts(e: Expr | None) -> list[Expr]:
    """Split nested ANDs into a flat list of terms."""
    if e is None:
        return []
    if isinstance(e, And):
        return [t for a in e.args for t in conjuncts(a)]
    return [e]


def and_all(terms: Sequence[Expr]) -> Expr | None:
    if not terms:
        return None
    return terms[0] if len(terms) == 1 else And(tuple(terms))


def depth(e: Expr) -> int:
    kids = children(e)
    return 1 + (max(depth(c) for c in kids) if kids else 0)


class _Describe(PlanVisitor[str]):
    def column(self, e: Column) -> str:
        return e.name

    def literal(self, e: Literal) -> str:
        v = e.value
        return "NULL" if v is None else repr(v) if isinstance(v, str) else str(v)

    def compare(self, e: Compare, left: str, right: str) -> str:
        return f"({left} {e.op.value} {right})"

    def arith(self, e: Arith, left: str, right: str) -> str:
        return f"({left} {e.op.value} {right})"

    def and_(self, e: And, args: list[str]) -> str:
        return "(" + " AND ".join(args) + ")"

    def or_(self, e: Or, args: list[str]) -> str:
        return "(" + " OR ".join(args) + ")"

    def not_(self, e: Not, arg: str) -> str:
        return f"NOT {arg}"

    def in_(self, e: In, arg: str) -> str:
        return f"{arg} IN ({', '.join(self.visit(v) for v in e.values)})"

    def key_set(self, e: KeySet, arg: str) -> str:
        return f"{arg} IN {describe_keys(e.keys)}"

    def is_null(self, e: IsNull, arg: str) -> str:
        return f"{arg} IS NULL"

    def between(self, e: Between, arg: str, low: str, high: str) -> str:
        return f"{arg} BETWEEN {low} AND {high}"

    def negate(self, e: Negate, arg: str) -> str:
        return f"-{arg}"

    def cast(self, e: Cast, arg: str) -> str:
        return f"CAST({arg} AS {e.to})"

    def unsupported(self, e: Expr) -> str:
        return repr(e)


def describe(e: Expr) -> str:
    """SQL-like text of an expression, for error messages and explain output."""
    return _Describe().visit(e)


def describe_aggregate(a: Aggregate) -> str:
    if a.arg is None:
        return "count(*)"
    return f"{a.func.value}({describe(a.arg)})"
