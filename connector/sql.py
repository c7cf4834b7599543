"""SQL front end for the CLI: one SELECT query, parsed with sqlglot (DuckDB dialect).

`translate` turns the WHERE clause, GROUP BY and aggregate calls into plan objects. `run_sql`
pushes an aggregate query whose WHERE is fully translatable to the agents and finishes the rest
(SELECT expressions, HAVING, ORDER BY, LIMIT) with DuckDB over the small aggregated table; any
other query is a fallback: a pushdown scan (translatable WHERE terms, used columns only) and the
original text run by DuckDB. A query over several datasets, or with subqueries, CTEs or set
operations, scans each dataset once (`plan_scans`: the columns it uses, and the WHERE terms
implied for every reference to it) and DuckDB runs the original text over those rows. Either
way the answer is DuckDB's answer on the full data.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import os
import re
import threading
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
import sqlglot
from sqlglot import exp
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import traverse_scope

from bpfstore.contract.binding import (
    bind,
    bind_aggregate,
    bind_predicate,
    logical_type,
    partial_type,
)
from bpfstore.contract.combine import Avg, average, expand
from bpfstore.contract.errors import BpfstoreError, DatasetNotFound, Unsupported
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
    EngineName,
    Expr,
    In,
    IsNull,
    Literal,
    Negate,
    Not,
    Or,
    and_all,
    count,
    count_star,
    describe,
    describe_aggregate,
)
from bpfstore.contract.pushable import Capabilities, split_pushable

from .query import Query, QueryReport, Result

PATH_KEY, REASON_KEY = b"bpfstore.sql.path", b"bpfstore.sql.reason"  # on run_sql's result
_AGG_COL, _PARTIAL_COL = "__bpfstore_agg_{}", "__bpfstore_partial_{}"


class SqlError(BpfstoreError):
    """SQL bpfstore cannot run at all: not one SELECT over one dataset, or DuckDB rejects it."""


@dataclass(frozen=True)
class SqlQuery:
    text: str
    dataset: str
    pushed_filter: Expr | None  # pushdown: the whole WHERE; fallback: its translatable terms
    group_by: tuple[str, ...] = ()
    aggregates: tuple[Aggregate | Avg, ...] = ()  # distinct calls, first-seen order
    columns: tuple[str, ...] | None = None  # what a fallback scan reads; None = every column
    pushdown: bool = False
    reason: str | None = None  # why it falls back
    tree: exp.Select | None = field(default=None, compare=False, repr=False)  # pushdown only


# ---------------------------------------------------------------- translation


_Kind = type[exp.Expression]
_COMPARE: dict[_Kind, CompareOp] = {
    exp.EQ: CompareOp.EQ, exp.NEQ: CompareOp.NE, exp.LT: CompareOp.LT, exp.LTE: CompareOp.LE,
    exp.GT: CompareOp.GT, exp.GTE: CompareOp.GE}
_ARITH: dict[_Kind, ArithOp] = {
    exp.Add: ArithOp.ADD, exp.Sub: ArithOp.SUB, exp.Mul: ArithOp.MUL, exp.Div: ArithOp.DIV}
_AGGS = {exp.Sum: AggFunc.SUM, exp.Min: AggFunc.MIN, exp.Max: AggFunc.MAX}
_T = exp.DataType.Type
_TYPES = {_T.TINYINT: pa.int8(), _T.SMALLINT: pa.int16(), _T.INT: pa.int32(),
          _T.BIGINT: pa.int64(), _T.FLOAT: pa.float32(), _T.DOUBLE: pa.float64(),
          _T.VARCHAR: pa.string(), _T.TEXT: pa.string(), _T.BOOLEAN: pa.bool_(),
          _T.DATE: pa.date32(), _T.TIMESTAMP: pa.timestamp("us"),
          _T.TIMESTAMPNTZ: pa.timestamp("us")}
_MONTHS = {"year": 12, "quarter": 3, "month": 1}
_DAYS = {"week": 7, "day": 1}


class _Names:
    """Column names as DuckDB resolves them: case-insensitively against the schema."""

    def __init__(self, schema: pa.Schema | None) -> None:
        self.names = list(schema.names) if schema is not None else None
        self.lower = {n.lower(): n for n in reversed(self.names or [])}

    def resolve(self, name: str) -> str | None:
        if self.names is None or name in self.names:
            return name
        return self.lower.get(name.lower())

    def column(self, node: exp.Column) -> Column:
        if isinstance(node.this, exp.Star):
            raise Unsupported("'*' is not a value")
        return Column(self.resolve(node.name) or node.name)  # unknown: binding names it


def to_expr(node: exp.Expression, names: _Names) -> Expr:
    """A plan expression for a sqlglot node, literals folded; Unsupported if there is none."""
    kind = type(node)
    match node:
        case exp.Paren():
            return to_expr(node.this, names)
        case exp.Column():
            return names.column(node)
        case exp.Literal() | exp.Boolean() | exp.Null():
            return Literal(_literal(node))
        case exp.And() | exp.Or():
            terms = (to_expr(node.this, names), to_expr(node.expression, names))
            return And(terms) if kind is exp.And else Or(terms)
        case exp.Not():
            return Not(to_expr(node.this, names))
        case exp.Neg():
            arg = to_expr(node.this, names)
            return Literal(-arg.value) if _number(arg) else Negate(arg)  # type: ignore
        case exp.Is() if isinstance(node.expression, exp.Null):
            return IsNull(to_expr(node.this, names))
        case exp.Between() if not node.args.get("symmetric"):
            return Between(*(to_expr(node.args[k], names) for k in ("this", "low", "high")))
        case exp.In() if not any(node.args.get(k) for k in ("query", "unnest", "field")):
            values = [to_expr(v, names) for v in node.expressions]
            if not all(isinstance(v, Literal) for v in values):
                raise Unsupported(f"IN list with non-constant values: {node.sql('duckdb')}")
            return In(to_expr(node.this, names), tuple(values))  # type: ignore[arg-type]
        case exp.Cast() if kind is exp.Cast and not node.args.get("format"):
            return _cast(to_expr(node.this, names), _arrow_type(node.to))
    if kind in _COMPARE:
        left, right = to_expr(node.this, names), to_expr(node.expression, names)
        if isinstance(left, Literal) and not isinstance(right, Literal):
            return Compare(_COMPARE[kind].flipped(), right, left)  # column on the left
        return Compare(_COMPARE[kind], left, right)
    if kind in (exp.Add, exp.Sub) and exp.Interval in (type(node.this), type(node.expression)):
        return _date_plus_interval(node, names)
    if kind in _ARITH and not node.args.get("safe"):
        return _fold(_ARITH[kind], to_expr(node.this, names), to_expr(node.expression, names))
    raise Unsupported(f"{node.key.upper()} is not supported")


def _literal(node: exp.Expression) -> Any:
    if isinstance(node, exp.Null):
        return None
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    text = node.this
    if node.is_string:
        return text
    try:
        if "e" in text.lower():
            return float(text)  # 1e3 is a DOUBLE in DuckDB
        if "." in text:  # a DECIMAL in DuckDB (and Spark), up to 38 digits
            value = decimal.Decimal(text)
            return value if len(value.as_tuple().digits) <= 38 else float(text)
        return int(text)
    except (ValueError, decimal.InvalidOperation):
        raise Unsupported(f"numeric literal {text!r} is not supported") from None


def _number(e: Expr) -> bool:
    return isinstance(e, Literal) and type(e.value) in (int, float, decimal.Decimal)


def _fold(op: ArithOp, left: Expr, right: Expr) -> Expr:
    """Fold literal arithmetic where the result is exactly what DuckDB computes, else Arith."""
    if not (_number(left) and _number(right)) or op is ArithOp.DIV:
        return Arith(op, left, right)
    a, b = left.value, right.value  # type: ignore[attr-defined]
    if isinstance(a, float) or isinstance(b, float):
        a, b = float(a), float(b)  # DECIMAL op DOUBLE is DOUBLE; float(Decimal) is exact-rounded
    ctx = decimal.Context(prec=80, traps=[decimal.Inexact])
    ops = {ArithOp.ADD: ctx.add, ArithOp.SUB: ctx.subtract, ArithOp.MUL: ctx.multiply}
    if isinstance(a, decimal.Decimal) or isinstance(b, decimal.Decimal):
        try:  # Decimal keeps SQL's result scale: max(s1, s2) for + -, s1 + s2 for *
            value: Any = ops[op](decimal.Decimal(a), decimal.Decimal(b))
        except decimal.Inexact:
            return Arith(op, left, right)
        if len(value.as_tuple().digits) > 38:
            return Arith(op, left, right)
    else:
        value = {ArithOp.ADD: a + b, ArithOp.SUB: a - b, ArithOp.MUL: a * b}[op]
    if isinstance(value, int) and not _fits_literal_int(a, b, value):
        return Arith(op, left, right)  # DuckDB would overflow (or widen): let the agent decide
    return Literal(value)


def _fits_literal_int(a: int, b: int, value: int) -> bool:
    bound = 2**31 if all(-(2**31) <= v < 2**31 for v in (a, b)) else 2**63
    return -bound <= value < bound


def _cast(arg: Expr, to: pa.DataType) -> Expr:
    if isinstance(arg, Literal) and isinstance(arg.value, str):
        if pa.types.is_date(to):  # DATE '1994-01-01' parses as a cast
            return Literal(_parse_temporal(arg.value, dt.date))
        if pa.types.is_timestamp(to):
            return Literal(_parse_temporal(arg.value, dt.datetime))
    return Cast(arg, to)


def _parse_temporal(text: str, kind: type[dt.date]) -> dt.date:
    try:
        return kind.fromisoformat(text.strip())
    except ValueError:
        raise Unsupported(f"cannot parse {text!r} as {kind.__name__}") from None


def _arrow_type(node: exp.DataType) -> pa.DataType:
    if node.this is _T.DECIMAL:
        params = [int(p.this.this) for p in node.expressions] or [18, 3]  # DuckDB's default
        return pa.decimal128(*params) if len(params) == 2 else pa.decimal128(params[0], 0)
    if node.this in _TYPES and not node.expressions:
        return _TYPES[node.this]
    raise Unsupported(f"CAST to {node.sql('duckdb')} is not supported")


def _date_plus_interval(node: exp.Expression, names: _Names) -> Expr:
    """Fold `date ± INTERVAL` into a date literal (months are calendar months, clamped)."""
    left, right = node.this, node.expression
    if isinstance(left, exp.Interval):
        if isinstance(node, exp.Sub):
            raise Unsupported(f"INTERVAL minus a date: {node.sql('duckdb')}")
        left, right = right, left
    base = to_expr(left, names)
    if not (isinstance(base, Literal) and isinstance(base.value, dt.date)):
        raise Unsupported(f"interval arithmetic on a non-constant: {node.sql('duckdb')}")
    months, days = _interval(right)
    sign = -1 if isinstance(node, exp.Sub) else 1
    try:
        return Literal(_add_months(base.value, sign * months) + dt.timedelta(days=sign * days))
    except (ValueError, OverflowError):
        raise Unsupported(f"{node.sql('duckdb')} is out of the date range") from None


def _interval(node: exp.Interval) -> tuple[int, int]:
    unit = node.args.get("unit")
    text = node.this.name if node.this is not None else ""
    if unit is not None:  # INTERVAL '90' DAY, INTERVAL '90' DAY (3) (unit is then a node)
        text += " " + (unit.name if isinstance(unit, exp.Var) else unit.key)
    pairs = re.findall(r"([+-]?\d+)\s*([a-z]+)", text.lower())
    if not pairs or re.sub(r"[+-]?\d+\s*[a-z]+", "", text.lower()).strip():
        raise Unsupported(f"interval {node.sql('duckdb')} is not supported")
    months = days = 0
    for amount, name in pairs:
        name = name.removesuffix("s")
        if name not in _MONTHS and name not in _DAYS:  # hours etc. make a timestamp in DuckDB
            raise Unsupported(f"interval unit {name!r} on a date is not supported")
        months += int(amount) * _MONTHS.get(name, 0)
        days += int(amount) * _DAYS.get(name, 0)
    return months, days


def _add_months(d: dt.date, months: int) -> dt.date:
    year, month = divmod(d.year * 12 + d.month - 1 + months, 12)
    next_first = dt.date(year + (month + 1) // 12, (month + 1) % 12 + 1, 1)
    last_day = (next_first - dt.timedelta(days=1)).day
    return d.replace(year=year, month=month + 1, day=min(d.day, last_day))


def to_aggregate(node: exp.AggFunc, names: _Names) -> Aggregate | Avg:
    """The plan aggregate for count/sum/min/max/avg calls; Unsupported for any other."""
    arg = node.this
    if isinstance(arg, exp.Distinct):
        raise Unsupported(f"DISTINCT aggregate {node.sql('duckdb')} is not pushable")
    if any(v for k, v in node.args.items() if k not in ("this", "big_int")):
        raise Unsupported(f"aggregate {node.sql('duckdb')} is not pushable")
    if not isinstance(node, exp.Count | exp.Avg) and type(node) not in _AGGS:
        raise Unsupported(f"aggregate {node.key}() is not pushable")
    try:
        e = None if arg is None or isinstance(arg, exp.Star) else to_expr(arg, names)
    except Unsupported as exc:
        raise Unsupported(f"aggregate {node.sql('duckdb')} is not pushable: {exc}") from None
    if isinstance(node, exp.Count):
        is_constant = isinstance(e, Literal) and e.value is not None  # count(1) is count(*)
        return count_star() if e is None or is_constant else count(e)
    if e is None:
        raise Unsupported(f"aggregate {node.sql('duckdb')} needs an argument")
    return Avg(e) if isinstance(node, exp.Avg) else Aggregate(_AGGS[type(node)], e)


def parse(text: str) -> tuple[exp.Query, str]:
    """The one query in `text` and the one dataset it reads; SqlError otherwise."""
    tree, datasets = parse_query(text)
    if len(datasets) != 1:
        raise SqlError(f"a query reads exactly one dataset, not {datasets}")
    return tree, datasets[0]


def parse_query(text: str) -> tuple[exp.Query, list[str]]:
    """The one query in `text` and the datasets it reads (first-seen order); SqlError
    otherwise."""
    try:
        statements = [s for s in sqlglot.parse(text, read="duckdb") if s is not None]
    except sqlglot.errors.ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        where = f" at line {first.get('line')}, column {first.get('col')}" if first else ""
        near = f" near {first.get('highlight')!r}" if first.get("highlight") else ""
        raise SqlError(f"cannot parse SQL{where}{near}: {first.get('description', exc)}"
                       ) from None
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        raise SqlError("expected exactly one SELECT query (CREATE VIEW and other statements "
                       "are not supported: write a view as a WITH clause)")
    tree = statements[0]
    ctes = {c.alias_or_name for c in tree.find_all(exp.CTE)}
    tables = [t for t in tree.find_all(exp.Table) if t.name not in ctes]
    if any(t.args.get("db") or not isinstance(t.this, exp.Identifier) for t in tables):
        raise SqlError('name the dataset alone, quoted if needed: FROM "tpch.lineitem"')
    datasets = list(dict.fromkeys(t.name for t in tables))
    if not datasets:
        raise SqlError("a query reads at least one dataset, not none")
    return tree, datasets


def translate(text: str, schema: pa.Schema | None = None) -> SqlQuery:
    """Plan parts of a query; with `schema`, names resolve as DuckDB does and types are checked."""
    tree, dataset = parse(text)
    names = _Names(schema)
    single = _single_scan(tree)
    terms, untranslatable = _where_terms(tree, names, schema) if single is None else ([], single)
    query = SqlQuery(text, dataset, and_all(terms), columns=_columns_used(tree, names))
    try:
        if single or untranslatable:
            raise Unsupported(single or untranslatable)
        assert isinstance(tree, exp.Select)
        group_by, aggregates = _aggregate_parts(tree, names, schema)
    except Unsupported as exc:
        return dataclasses.replace(query, reason=str(exc))
    return dataclasses.replace(query, group_by=group_by, aggregates=aggregates, pushdown=True,
                               tree=tree)


def _single_scan(tree: exp.Query) -> str | None:
    """Why the query is not one plain SELECT over one table (None if it is)."""
    if not isinstance(tree, exp.Select) or tree.args.get("with_"):
        return "not a single SELECT (UNION or WITH)"
    if any(s is not tree for s in tree.find_all(exp.Select)) or tree.find(exp.Subquery):
        return "has a subquery"
    if len(list(tree.find_all(exp.Table))) != 1 or tree.args.get("joins") or tree.args.get(
            "laterals"):
        return "reads the dataset more than once (join or lateral)"
    return None


def _where_terms(tree: exp.Query, names: _Names, schema: pa.Schema | None
                 ) -> tuple[list[Expr], str | None]:
    """The translatable WHERE conjuncts, and why the first untranslatable one is not."""
    where = tree.args.get("where")
    terms: list[Expr] = []
    reason = None
    for node in _sql_conjuncts(where.this) if where else []:
        try:
            term = to_expr(node, names)
        except BpfstoreError as exc:
            reason = reason or f"WHERE term {node.sql('duckdb')} is not pushable: {exc}"
            continue
        # DuckDB casts more freely than the plan types: a term that does not bind stays
        _, residual = split_pushable(term, Capabilities(schema))
        if residual:
            reason = reason or f"WHERE term {node.sql('duckdb')} is not pushable: " \
                f"{residual[0].reason}"
        else:
            terms.append(term)
    return terms, reason


def _sql_conjuncts(node: exp.Expression) -> list[Any]:  # sqlglot nodes
    bare = node.unnest()  # strip parentheses
    if isinstance(bare, exp.And):
        return _sql_conjuncts(bare.this) + _sql_conjuncts(bare.expression)
    return [bare]


def _aggregate_parts(tree: exp.Select, names: _Names, schema: pa.Schema | None
                     ) -> tuple[tuple[str, ...], tuple[Aggregate | Avg, ...]]:
    if tree.find(exp.Window, exp.Filter, exp.WithinGroup, exp.Anonymous):
        raise Unsupported("window functions, FILTER or unknown functions run locally")
    if _columns_used(tree, names) is None:
        raise Unsupported("SELECT * is not an aggregate query")
    group_by = tuple(_group_key(tree, node, names) for node in _group_nodes(tree))
    calls = [to_aggregate(n, names) for n in tree.find_all(exp.AggFunc, bfs=False)]
    if not calls and not group_by:
        raise Unsupported("not an aggregate query")
    if schema is not None:
        for call in calls:
            _check_aggregate(call, schema)
    return group_by, tuple(dict.fromkeys(calls))


def _group_nodes(tree: exp.Select) -> list[exp.Expression]:
    group = tree.args.get("group")
    if group is None:
        return []
    if any(group.args.get(k) for k in ("grouping_sets", "cube", "rollup", "totals", "all")):
        raise Unsupported("GROUP BY ALL, ROLLUP, CUBE or GROUPING SETS is not pushable")
    return list(group.expressions)


def _group_key(tree: exp.Select, node: exp.Expression, names: _Names) -> str:
    if isinstance(node, exp.Literal) and node.is_int:  # GROUP BY 1: the first SELECT item
        items = tree.expressions
        position = int(node.this)
        node = items[position - 1].unalias() if 0 < position <= len(items) else node
    if not isinstance(node, exp.Column) or isinstance(node.this, exp.Star):
        raise Unsupported(f"GROUP BY {node.sql('duckdb')}: only plain columns are pushable")
    resolved = names.resolve(node.name)
    if resolved is None:  # DuckDB also accepts a SELECT alias of a plain column
        aliased = [e.this for e in tree.expressions if isinstance(e, exp.Alias)
                   and e.alias.lower() == node.name.lower() and isinstance(e.this, exp.Column)]
        resolved = names.resolve(aliased[0].name) if aliased else None
    if resolved is None:
        raise Unsupported(f"GROUP BY {node.sql('duckdb')}: not a column of the dataset")
    return resolved


def _check_aggregate(call: Aggregate | Avg, schema: pa.Schema) -> None:
    agg = Aggregate(AggFunc.SUM, call.arg) if isinstance(call, Avg) else call
    try:
        partial_type(bind_aggregate(agg, schema))
    except BpfstoreError as exc:
        raise Unsupported(f"aggregate {_describe(call)} is not pushable: {exc}") from None


def _describe(call: Aggregate | Avg) -> str:
    return f"avg({describe(call.arg)})" if isinstance(call, Avg) else describe_aggregate(call)


def _columns_used(tree: exp.Query, names: _Names) -> tuple[str, ...] | None:
    if any(not isinstance(s.parent, exp.Count) for s in tree.find_all(exp.Star)):
        return None  # SELECT * (or t.*)
    used = (names.resolve(c.name) for c in tree.find_all(exp.Column, bfs=False))
    return tuple(dict.fromkeys(n for n in used if n is not None))  # aliases resolve to None


# ---------------------------------------------------------------- execution


def run_sql(client: Any, text: str, engine: str | EngineName = EngineName.AUTO
            ) -> Result:
    """DuckDB's answer to `text` on the dataset, computed with pushdown where possible, and
    the report of the agent calls that made it."""
    engine = EngineName.parse(engine)
    tree, datasets = parse_query(text)
    if len(datasets) > 1 or _single_scan(tree) is not None:
        return _run_scans(client, text, tree, datasets)
    dataset, described = _describe_dataset(client, datasets[0])
    schema = pa.schema([f.with_type(logical_type(f.type)) for f in described.schema])
    query = dataclasses.replace(translate(text, schema), dataset=dataset)
    expected = _duckdb(text, {dataset: schema.empty_table()}).schema  # validates, names, types
    if query.pushdown:
        try:
            table, report = _run_pushdown(client, query, schema, engine, described)
            return Result(_tagged(_conform(table, expected), "pushdown", None), report)
        except Unsupported as exc:  # the agents said no: read the rows instead
            if engine is not EngineName.AUTO:  # unless the user asked for it by name
                raise SqlError(f"engine {engine.value!r} cannot run this query: {exc}") \
                    from None
            query = dataclasses.replace(query, pushdown=False, reason=f"agent: {exc}")
    columns = list(query.columns) if query.columns is not None else None
    if columns == []:  # nothing but a row count is needed: read the narrowest thing there is
        columns = [schema.names[0]]
    rows = client.run(Query.scan(dataset, columns, query.pushed_filter), described=described)
    result = _duckdb(text, {dataset: _logical(rows.table)})
    return Result(_tagged(result, "fallback", query.reason), rows.report)


def _run_scans(client: Any, text: str, tree: exp.Query, datasets: list[str]) -> Result:
    """Joins, subqueries, CTEs, set operations: one pushdown scan per dataset (the columns the
    query uses, the WHERE terms that hold for every reference to it), then DuckDB runs the
    original text over the scanned rows."""
    schemas = {}
    real = {}
    descriptions = {}
    for name in datasets:
        real[name], descriptions[name] = _describe_dataset(client, name)
        schemas[name] = pa.schema([f.with_type(logical_type(f.type))
                                   for f in descriptions[name].schema])
    _duckdb(text, {n: s.empty_table() for n, s in schemas.items()})  # validates before reading
    report = QueryReport(mode="scan", dataset=",".join(real.values()))
    tables = {}
    for name, (columns, where) in plan_scans(tree, schemas).items():
        if columns == []:  # only a row count is needed: read the narrowest thing there is
            columns = [schemas[name].names[0]]
        rows = client.run(Query.scan(real[name], columns, where), described=descriptions[name])
        tables[name] = _logical(rows.table)
        report.add(rows.report)
    result = _duckdb(text, tables)
    reason = "reads several datasets" if len(datasets) > 1 else _single_scan(tree)
    return Result(_tagged(result, "fallback", reason), report)


def plan_scans(tree: exp.Query, schemas: dict[str, pa.Schema]
               ) -> dict[str, tuple[list[str] | None, Expr | None]]:
    """Per dataset of a query: the columns to read (None: all) and the filter that every row
    the query can use passes (the OR over its references of the WHERE terms on it alone)."""
    everything: dict[str, tuple[list[str] | None, Expr | None]] = {
        name: (None, None) for name in schemas}
    try:
        mapping: dict[str, object] = {n: {f.name: "INT" for f in s}  # only names matter
                                      for n, s in schemas.items()}
        tree = tree.copy()
        for exists in tree.find_all(exp.Exists):  # what EXISTS selects is never read
            if isinstance(exists.this, exp.Select):
                exists.this.set("expressions", [exp.Literal.number(1)])
        qualified = qualify(tree, schema=mapping, dialect="duckdb",
                            validate_qualify_columns=False)
        scopes = traverse_scope(qualified)
    except sqlglot.errors.SqlglotError:
        return everything  # DuckDB names the problem, or answers from the whole tables
    if any(not isinstance(s.parent, exp.Count) for s in qualified.find_all(exp.Star)):
        return everything  # an unexpanded t.*
    by_lower = {n.lower(): n for n in schemas}
    refs: dict[str, list[tuple[Any, str]]] = {n: [] for n in schemas}  # (scope, alias)
    for scope in scopes:
        for alias, source in scope.sources.items():
            if isinstance(source, exp.Table) and source.name.lower() in by_lower:
                refs[by_lower[source.name.lower()]].append((scope, alias))
    tables = [t.name.lower() for t in qualified.find_all(exp.Table)]
    out = dict(everything)
    for name, found in refs.items():
        if len(found) != tables.count(name.lower()):
            continue  # a reference outside any scope (unusual syntax): read it all
        names = _Names(schemas[name])
        aliases = {alias for _, alias in found}
        used = (names.resolve(c.name) for c in qualified.find_all(exp.Column)
                if c.table in aliases)  # a superset where aliases repeat across scopes
        columns = list(dict.fromkeys(n for n in used if n is not None))
        filters = [_reference_filter(scope, alias, names, schemas[name])
                   for scope, alias in found]
        implied = [f for f in filters if f is not None]
        where = None if len(implied) < len(filters) else (
            implied[0] if len(set(map(repr, implied))) == 1 else Or(tuple(implied)))
        out[name] = (columns, where)
    return out


def _reference_filter(scope: Any, alias: str, names: _Names, schema: pa.Schema) -> Expr | None:
    """The translatable WHERE conjuncts of `scope` on `alias` alone; None if there are none
    (or the scope has an outer join, whose null-extended rows a pushed filter would change)."""
    select = scope.expression
    if not isinstance(select, exp.Select) or any(
            j.side or j.kind not in ("", "INNER", "CROSS") for j in select.args.get("joins") or []):
        return None
    where = select.args.get("where")
    return _implied(where.this, alias, names, schema) if where else None


def _implied(node: exp.Expression, alias: str, names: _Names, schema: pa.Schema) -> Expr | None:
    """A translatable predicate on `alias` alone that every row passing `node` passes: the
    terms of an AND that have one, an OR only if each of its branches has one."""
    bare: Any = node.unnest()  # (sqlglot types unnest loosely)
    if isinstance(bare, exp.And | exp.Or):
        parts = [_implied(n, alias, names, schema) for n in (bare.this, bare.expression)]
        if isinstance(bare, exp.And):
            return and_all([p for p in parts if p is not None])
        return None if None in parts else Or(tuple(parts))  # type: ignore[arg-type]
    columns = list(bare.find_all(exp.Column))
    if not columns or bare.find(exp.Query) or any(c.table != alias for c in columns):
        return None
    try:
        term = to_expr(bare, names)
        bind_predicate(term, schema)
    except BpfstoreError:
        return None
    return term


def _describe_dataset(client: Any, name: str) -> tuple[str, Any]:
    """The dataset's real name and description; like DuckDB, the name's case need not match."""
    try:  # no column statistics: the agents prune, and the plan needs only the schema
        return name, client.describe(name, statistics=False)
    except DatasetNotFound:
        matches = [d for d in client.datasets() if d.name.lower() == name.lower()]
        if len(matches) != 1:
            raise
        return matches[0].name, client.describe(matches[0].name, statistics=False)


def _run_pushdown(client: Any, query: SqlQuery, schema: pa.Schema, engine: EngineName,
                  described: Any) -> tuple[pa.Table, QueryReport]:
    # avg(x) travels as sum(x) and count(x), shared when repeated
    partials, finishers = expand(query.aggregates, None)
    partials = partials or [count_star()]  # GROUP BY without aggregates: keys only
    names = [_PARTIAL_COL.format(i) for i in range(len(partials))]
    result = client.run(Query.aggregate(query.dataset, partials, query.pushed_filter,
                                        query.group_by, engine=engine, names=names),
                        described=described)  # described to plan: no second describe
    table = result.table
    merged = [_logical_array(table.column(n)) for n in names]
    columns = {k: _logical_array(table.column(k)) for k in query.group_by}
    for i, f in enumerate(finishers):  # DuckDB's avg: a double, whatever the input
        columns[_AGG_COL.format(i)] = average(merged[f.sum_index], merged[f.count_index],
                                              pa.float64()) if f.kind == "avg" \
            else merged[f.sum_index]
    return _duckdb(_local_sql(query, schema), {query.dataset: pa.table(columns)}), result.report


def _local_sql(query: SqlQuery, schema: pa.Schema) -> str:
    """The query with each aggregate call replaced by its column of the aggregated table."""
    assert query.tree is not None
    tree = query.tree.copy()
    names = _Names(schema)
    for node in list(tree.find_all(exp.AggFunc)):
        call = to_aggregate(node, names)
        ref: exp.Expression = exp.column(_AGG_COL.format(query.aggregates.index(call)))
        if _integer_sum(call, schema):  # DuckDB sums integers into HUGEINT
            ref = exp.cast(ref, "HUGEINT")
        node.replace(ref)
    tree.set("where", None)
    tree.set("group", None)
    having = tree.args.get("having")
    tree.set("having", None)
    if having is not None:
        tree.where(having.this, copy=False)
    return tree.sql(dialect="duckdb")


def _integer_sum(call: Aggregate | Avg, schema: pa.Schema) -> bool:
    if not isinstance(call, Aggregate) or call.func is not AggFunc.SUM or call.arg is None:
        return False
    t = bind(call.arg, schema).result_type
    return t is not None and (pa.types.is_integer(t) or pa.types.is_boolean(t))


# One per process id: a forked child opens its own (and never closes the parent's copy, whose
# threads it does not have)
_DATABASE: dict[int, duckdb.DuckDBPyConnection] = {}
_DATABASE_LOCK = threading.Lock()


def _cursor() -> duckdb.DuckDBPyConnection:
    """A connection of its own to this process's in-memory database with no file access: it
    sees only the tables registered on it. A new database costs ~25 ms, a cursor ~2 ms, and a
    query opens two (the checks on empty tables, then the answer)."""
    with _DATABASE_LOCK:
        pid = os.getpid()
        if pid not in _DATABASE:
            _DATABASE[pid] = duckdb.connect(config={"enable_external_access": False})
        return _DATABASE[pid].cursor()


def _duckdb(text: str, tables: dict[str, pa.Table]) -> pa.Table:
    con = _cursor()
    try:
        con.execute("SET python_enable_replacements = false")
        for name, table in tables.items():
            con.register(name, table)
        return con.sql(text).to_arrow_table()
    except duckdb.Error as exc:
        raise SqlError(f"DuckDB: {exc}") from None
    finally:
        con.close()


def _logical_array(a: pa.ChunkedArray) -> pa.ChunkedArray:
    return a.cast(logical_type(a.type)) if logical_type(a.type) != a.type else a


def _logical(table: pa.Table) -> pa.Table:
    """Dictionary strings and decimal64 as the plain types DuckDB reads."""
    return pa.table({n: _logical_array(table.column(n)) for n in table.column_names})


def _conform(result: pa.Table, expected: pa.Schema) -> pa.Table:
    """DuckDB's own column names and types for the pushdown result (casts never lose values)."""
    result = result.rename_columns(expected.names)
    columns = []
    for column, target in zip(result.columns, expected.types, strict=True):
        try:
            columns.append(column.cast(target, safe=True) if column.type != target else column)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            columns.append(column)
    return pa.Table.from_arrays(columns, names=expected.names)


def _tagged(table: pa.Table, path: str, reason: str | None) -> pa.Table:
    return table.replace_schema_metadata({PATH_KEY: path, REASON_KEY: reason or ""})


def sql_path(table: pa.Table) -> tuple[str, str | None]:
    """Which path produced a run_sql result ("pushdown" or "fallback") and why it fell back."""
    meta = table.schema.metadata or {}
    return meta.get(PATH_KEY, b"").decode(), meta.get(REASON_KEY, b"").decode() or None
