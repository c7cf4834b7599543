"""Independent oracles for plans: DuckDB (SQL dialect) and pandas (PANDAS dialect).

Each renders a plan in the oracle's own language; none of bpfstore's evaluation code is used.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
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
    Literal,
    Negate,
    Not,
    Or,
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


def to_duckdb(e: Expr) -> str:
    match e:
        case Column(name=name):
            return f'"{name}"'
        case Literal(value=v):
            return duck_literal(v, e.result_type)
        case Compare(op=op, left=left, right=right):
            return f"({to_duckdb(left)} {_SQL_OPS[op]} {to_duckdb(right)})"
        case And(args=args):
            return "(" + " AND ".join(to_duckdb(a) for a in args) + ")"
        case Or(args=args):
            return "(" + " OR ".join(to_duckdb(a) for a in args) + ")"
        case Not(arg=arg):
            return f"(NOT {to_duckdb(arg)})"
        case In(arg=arg, values=values):
            return f"({to_duckdb(arg)} IN ({', '.join(to_duckdb(v) for v in values)}))"
        case IsNull(arg=arg):
            return f"({to_duckdb(arg)} IS NULL)"
        case Between(arg=arg, low=low, high=high):
            return f"({to_duckdb(arg)} BETWEEN {to_duckdb(low)} AND {to_duckdb(high)})"
        case Arith(op=op, left=left, right=right):
            return f"({to_duckdb(left)} {op.value} {to_duckdb(right)})"
        case Negate(arg=arg):
            return f"(- {to_duckdb(arg)})"
        case Cast(arg=arg, to=to):
            inner = to_duckdb(arg)
            if pa.types.is_integer(to):  # SQL (Spark) casts from fractions truncate
                inner = f"trunc({inner})"
            return f"CAST({inner} AS {duck_type(to)})"
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
        sql += f" WHERE {to_duckdb(where)}"
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
    match e:
        case Column(name=name):
            return df[name]
        case Literal(value=v):
            return _pd_value(v)
        case Compare(op=op, left=left, right=right):
            a, b = to_pandas_series(left, df), to_pandas_series(right, df)
            r = {CompareOp.EQ: lambda: a == b, CompareOp.NE: lambda: a != b,
                 CompareOp.LT: lambda: a < b, CompareOp.LE: lambda: a <= b,
                 CompareOp.GT: lambda: a > b, CompareOp.GE: lambda: a >= b}[op]()
            return _bool(r, op is CompareOp.NE)
        case And(args=args):
            out = _bool(to_pandas_series(args[0], df))
            for a in args[1:]:
                out = out & _bool(to_pandas_series(a, df))
            return out
        case Or(args=args):
            out = _bool(to_pandas_series(args[0], df))
            for a in args[1:]:
                out = out | _bool(to_pandas_series(a, df))
            return out
        case Not(arg=arg):
            return ~_bool(to_pandas_series(arg, df))
        case In(arg=arg, values=values):
            return _bool(to_pandas_series(arg, df).isin([_pd_value(v.value) for v in values]))
        case IsNull(arg=arg):
            return to_pandas_series(arg, df).isna()
        case Between(arg=arg, low=low, high=high):
            s = to_pandas_series(arg, df)
            return _bool(s.between(to_pandas_series(low, df), to_pandas_series(high, df)))
        case Arith(op=op, left=left, right=right):
            a, b = to_pandas_series(left, df), to_pandas_series(right, df)
            return {ArithOp.ADD: lambda: a + b, ArithOp.SUB: lambda: a - b,
                    ArithOp.MUL: lambda: a * b, ArithOp.DIV: lambda: a / b}[op]()
        case Negate(arg=arg):
            return -to_pandas_series(arg, df)
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
            arg = a.arg
            cols[f"a{i}"] = df[arg.name] if isinstance(arg, Column) else to_pandas_series(arg, df)
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
