"""Independent oracles for plans: DuckDB (SQL dialect) and pandas (PANDAS dialect).

Each renders a plan in the oracle's own language; none of bpfstore's evaluation code is used.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import math
import operator
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from bpfstore.contract.binding import literal_type
from bpfstore.contract.combine import Avg
from bpfstore.contract.plan import (
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
    PlanVisitor,
)

_SQL_OPS = {CompareOp.EQ: "=", CompareOp.NE: "<>", CompareOp.LT: "<", CompareOp.LE: "<=",
            CompareOp.GT: ">", CompareOp.GE: ">="}


def duck_type(t: pa.DataType) -> str:
    if pa.types.is_decimal(t):
        return f"DECIMAL({t.precision},{t.scale})"
    return {
        pa.int8(): "TINYINT", pa.int16(): "SMALLINT", pa.int32(): "INTEGER", pa.int64(): "BIGINT",
        pa.float32(): "FLOAT", pa.float64(): "DOUBLE", pa.string(): "VARCHAR",
        pa.date32(): "DATE", pa.bool_(): "BOOLEAN",
    }[t]


def duck_literal(v: Any, t: pa.DataType | None) -> str:
    if v is None:
        return "NULL" if t is None else f"CAST(NULL AS {duck_type(t)})"
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, int):
        return str(v) if -(2**63) <= v < 2**63 else f"CAST('{v}' AS HUGEINT)"
    if isinstance(v, float):
        if math.isnan(v):
            return "'NaN'::DOUBLE"
        if math.isinf(v):
            return "'Infinity'::DOUBLE" if v > 0 else "'-Infinity'::DOUBLE"
        return f"{v!r}::DOUBLE"
    if isinstance(v, decimal.Decimal):
        return f"CAST('{v}' AS {duck_type(t or literal_type(v))})"
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    if isinstance(v, dt.datetime):
        return f"TIMESTAMP '{v.isoformat(sep=' ')}'"
    if isinstance(v, dt.date):
        return f"DATE '{v.isoformat()}'"
    raise TypeError(v)


def to_duckdb(e: Expr, con: duckdb.DuckDBPyConnection | None = None) -> str:
    """`e` as DuckDB SQL; a key set becomes `x IN (SELECT k FROM <its keys>)`, registered on
    `con` (needed for key sets)."""
    return _DuckDB(con).visit(e)


class _DuckDB(PlanVisitor[str]):
    def __init__(self, con: duckdb.DuckDBPyConnection | None = None) -> None:
        self.con = con
        self.tables = 0

    def key_set(self, e: KeySet, arg: str) -> str:
        if self.con is None:
            raise TypeError("a key set needs a connection to register its keys on")
        name = f"keys{self.tables}_{id(self)}"
        self.tables += 1
        self.con.register(name, pa.table({"k": e.keys}))
        return f"({arg} IN (SELECT k FROM {name}))"

    def column(self, e: Column) -> str:
        return f'"{e.name}"'

    def literal(self, e: Literal) -> str:
        return duck_literal(e.value, e.result_type)

    def compare(self, e: Compare, left: str, right: str) -> str:
        return f"({left} {_SQL_OPS[e.op]} {right})"

    def and_(self, e: And, args: list[str]) -> str:
        return "(" + " AND ".join(args) + ")"

    def or_(self, e: Or, args: list[str]) -> str:
        return "(" + " OR ".join(args) + ")"

    def not_(self, e: Not, arg: str) -> str:
        return f"(NOT {arg})"

    def in_(self, e: In, arg: str) -> str:
        return f"({arg} IN ({', '.join(self.literal(v) for v in e.values)}))"

    def is_null(self, e: IsNull, arg: str) -> str:
        return f"({arg} IS NULL)"

    def between(self, e: Between, arg: str, low: str, high: str) -> str:
        return f"({arg} BETWEEN {low} AND {high})"

    def arith(self, e: Arith, left: str, right: str) -> str:
        return f"({left} {e.op.value} {right})"

    def negate(self, e: Negate, arg: str) -> str:
        return f"(- {arg})"

    def cast(self, e: Cast, arg: str) -> str:
        if pa.types.is_integer(e.to):  # SQL (Spark) casts from fractions truncate
            arg = f"trunc({arg})"
        return f"CAST({arg} AS {duck_type(e.to)})"

    def unsupported(self, e: Expr) -> str:
        raise TypeError(e)


def duck_aggregate(a: Aggregate | Avg) -> str:
    if isinstance(a, Avg):
        return f"avg({to_duckdb(a.arg)})"
    if a.func is AggFunc.COUNT_STAR:
        return "count(*)"
    assert a.arg is not None
    return f"{a.func.value}({to_duckdb(a.arg)})"


def duckdb_answer(table: pa.Table, where: Expr | None, aggregates: list, group_by: list[str]
                  ) -> list[tuple]:
    con = duckdb.connect()
    con.register("t", table)
    keys = [f'"{k}"' for k in group_by]
    select = ", ".join(keys + [duck_aggregate(a) for a in aggregates])
    sql = f"SELECT {select} FROM t"
    if where is not None:
        sql += f" WHERE {to_duckdb(where, con)}"
    if keys:
        sql += f" GROUP BY {', '.join(keys)}"
    return con.sql(sql).fetchall()


# -- pandas ----------------------------------------------------------------------------------


def _pd_value(v: Any) -> Any:
    if isinstance(v, dt.date) and not isinstance(v, dt.datetime):
        return pd.Timestamp(v)
    if isinstance(v, decimal.Decimal):
        return float(v)
    return v


def to_pandas_series(e: Expr, df: pd.DataFrame) -> Any:
    return _Pandas(df).visit(e)


_PD_COMPARE = {CompareOp.EQ: operator.eq, CompareOp.NE: operator.ne, CompareOp.LT: operator.lt,
               CompareOp.LE: operator.le, CompareOp.GT: operator.gt, CompareOp.GE: operator.ge}
_PD_ARITH = {ArithOp.ADD: operator.add, ArithOp.SUB: operator.sub, ArithOp.MUL: operator.mul,
             ArithOp.DIV: operator.truediv}


class _Pandas(PlanVisitor[Any]):
    def __init__(self, df: pd.DataFrame) -> None:
        self.df = df

    def column(self, e: Column) -> Any:
        return self.df[e.name]

    def literal(self, e: Literal) -> Any:
        return _pd_value(e.value)

    def compare(self, e: Compare, left: Any, right: Any) -> Any:
        return _bool(_PD_COMPARE[e.op](left, right), e.op is CompareOp.NE)

    def and_(self, e: And, args: list[Any]) -> Any:
        return functools.reduce(operator.and_, map(_bool, args))

    def or_(self, e: Or, args: list[Any]) -> Any:
        return functools.reduce(operator.or_, map(_bool, args))

    def not_(self, e: Not, arg: Any) -> Any:
        return ~_bool(arg)

    def in_(self, e: In, arg: Any) -> Any:
        return _bool(arg.isin([_pd_value(v.value) for v in e.values]))

    def key_set(self, e: KeySet, arg: Any) -> Any:
        return _bool(arg.isin([_pd_value(v) for v in e.keys.to_pylist()]))

    def is_null(self, e: IsNull, arg: Any) -> Any:
        return arg.isna()

    def between(self, e: Between, arg: Any, low: Any, high: Any) -> Any:
        return _bool(arg.between(low, high))

    def arith(self, e: Arith, left: Any, right: Any) -> Any:
        return _PD_ARITH[e.op](left, right)

    def negate(self, e: Negate, arg: Any) -> Any:
        return -arg

    def unsupported(self, e: Expr) -> Any:
        raise TypeError(e)


def _bool(s: Any, missing: bool = False) -> Any:
    if isinstance(s, pd.Series):
        return s.fillna(missing).astype(bool)
    return s


def pandas_answer(df: pd.DataFrame, where: Expr | None, aggregates: list, group_by: list[str]
                  ) -> list[tuple]:
    if where is not None:
        df = df[to_pandas_series(where, df)]
    cols = {}
    for i, a in enumerate(aggregates):
        if isinstance(a, Avg) or a.func is not AggFunc.COUNT_STAR:
            cols[f"a{i}"] = to_pandas_series(a.arg, df)
    work = pd.DataFrame({**{k: df[k] for k in group_by}, **cols}, index=df.index)

    def reduce(frame: pd.DataFrame) -> list[Any]:
        out = []
        for i, a in enumerate(aggregates):
            if not isinstance(a, Avg) and a.func is AggFunc.COUNT_STAR:
                out.append(len(frame))
                continue
            s = frame[f"a{i}"]
            if isinstance(a, Avg):
                out.append(s.mean())
            else:
                out.append({AggFunc.COUNT: s.count, AggFunc.SUM: s.sum, AggFunc.MIN: s.min,
                            AggFunc.MAX: s.max}[a.func]())
        return out

    if not group_by:
        return [tuple(reduce(work))]
    rows = []
    for key, frame in work.groupby(group_by, dropna=True, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        rows.append(tuple(key) + tuple(reduce(frame)))
    return rows


# -- comparing answers -----------------------------------------------------------------------


def _norm(v: Any) -> Any:
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, pd.Timestamp):
        return v.date() if v == v.normalize() else v.to_pydatetime()
    if hasattr(v, "item"):  # numpy scalars
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return "NaN"
    return v


def same_value(ours: Any, theirs: Any, approx: bool) -> bool:
    a, b = _norm(ours), _norm(theirs)
    if a is None or b is None or a == "NaN" or b == "NaN":
        return a == b
    if isinstance(a, (int, decimal.Decimal)) and isinstance(b, (int, decimal.Decimal)) \
            and not isinstance(a, bool) and not approx:
        return decimal.Decimal(a) == decimal.Decimal(b)
    numbers = (int, float, decimal.Decimal)
    if isinstance(a, numbers) and isinstance(b, numbers):
        fa, fb = float(a), float(b)
        if math.isinf(fa) or math.isinf(fb):
            return fa == fb
        # a decimal average is rounded to its scale: allow half a unit in its last place
        half_ulp = 0.5 * 10.0 ** a.as_tuple().exponent if isinstance(a, decimal.Decimal) else 0
        return math.isclose(fa, fb, rel_tol=1e-9, abs_tol=max(1e-9, half_ulp * 1.000001))
    return a == b


def sort_key(row: tuple) -> tuple:
    return tuple((v is None, str(_norm(v))) for v in row)


def assert_same_rows(ours: list[tuple], theirs: list[tuple], approx_columns: set[int],
                     what: str) -> None:
    assert len(ours) == len(theirs), f"{what}: {len(ours)} rows vs {len(theirs)}\n{ours}\n{theirs}"
    for r1, r2 in zip(sorted(ours, key=sort_key), sorted(theirs, key=sort_key), strict=True):
        for i, (x, y) in enumerate(zip(r1, r2, strict=True)):
            assert same_value(x, y, i in approx_columns), f"{what}: column {i}: {x!r} != {y!r}" \
                f"\nours:   {r1}\noracle: {r2}"
