"""run_sql end to end against a stand-in client (no sockets): the answer must be DuckDB's.

The stand-in computes `Client.run` (aggregates and scans) with DuckDB from the plan objects
it is given, honouring the Client contract (group keys, then one column per requested name; sums of
integers as decimal128(38, 0)). The oracle is DuckDB running the same SQL on the raw table.
"""

from __future__ import annotations

import datetime as dt
import math
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from bpfstore.connector.query import Query, QueryReport, Result
from bpfstore.connector.sql import SqlError, _duckdb, run_sql, sql_path
from bpfstore.contract.errors import DatasetNotFound, Unsupported
from bpfstore.contract.plan import (
    AggFunc,
    Aggregate,
    And,
    Arith,
    Between,
    Cast,
    Column,
    Compare,
    Expr,
    In,
    IsNull,
    Literal,
    Negate,
    Not,
    Or,
)

D = Decimal
DATA = pa.table({
    "id": pa.array(range(12), pa.int64()),
    "k": pa.array(["a", "b", None, "a", "b", "c", "a", None, "c", "c", "a", "b"]),
    "i": pa.array([1, None, 3, -4, 5, 2**31 - 1, 7, None, 9, 10, -11, 12], pa.int32()),
    "d": pa.array([D("1.10"), D("-2.25"), None, D("3.00"), D("0.01"), D("99999.99"), None,
                   D("5.55"), D("0.00"), D("1.01"), D("2.02"), D("-3.03")], pa.decimal128(7, 2)),
    "f": pa.array([1.5, 2.0, None, -0.5, 2.25, 8.0, 3.0, 1e3, -7.0, 0.1, 0.2, None]),
    "day": pa.array([dt.date(2020, 1, 31) + dt.timedelta(days=30 * j) for j in range(11)]
                    + [None]),
})

_DUCK_TYPES = {pa.int32(): "INTEGER", pa.int64(): "BIGINT", pa.float64(): "DOUBLE",
               pa.string(): "VARCHAR", pa.date32(): "DATE"}


def sql_of(e: Expr) -> str:
    """Plan expression -> DuckDB SQL (only what these tests use)."""
    match e:
        case Column(name=name):
            return f'"{name}"'
        case Literal(value=None):
            return "NULL"
        case Literal(value=bool() as v):
            return "TRUE" if v else "FALSE"
        case Literal(value=str() as v):
            return "'" + v.replace("'", "''") + "'"
        case Literal(value=dt.date() as v):
            return f"DATE '{v.isoformat()}'"
        case Literal(value=float() as v):
            return f"CAST('{v!r}' AS DOUBLE)"
        case Literal(value=v):
            return str(v)  # int, or Decimal with its scale
        case Compare(op=op, left=left, right=right) | Arith(op=op, left=left, right=right):
            return f"({sql_of(left)} {op.value} {sql_of(right)})"
        case And(args=args):
            return "(" + " AND ".join(sql_of(a) for a in args) + ")"
        case Or(args=args):
            return "(" + " OR ".join(sql_of(a) for a in args) + ")"
        case Not(arg=arg):
            return f"(NOT {sql_of(arg)})"
        case IsNull(arg=arg):
            return f"({sql_of(arg)} IS NULL)"
        case In(arg=arg, values=values):
            return f"({sql_of(arg)} IN ({', '.join(sql_of(v) for v in values)}))"
        case Between(arg=arg, low=low, high=high):
            return f"({sql_of(arg)} BETWEEN {sql_of(low)} AND {sql_of(high)})"
        case Negate(arg=arg):
            return f"(-{sql_of(arg)})"
        case Cast(arg=arg, to=to):
            name = (f"DECIMAL({to.precision}, {to.scale})" if pa.types.is_decimal(to)
                    else _DUCK_TYPES[to])
            return f"CAST({sql_of(arg)} AS {name})"
    raise AssertionError(f"test renderer misses {e!r}")


class FakeClient:
    def __init__(self, tables: dict[str, pa.Table], refuse: bool = False) -> None:
        self.tables = tables
        self.refuse = refuse  # the agents answer UNIMPLEMENTED to every aggregate
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.describes = 0

    def describe(self, name: str, statistics: bool = True) -> Any:
        self.describes += 1
        if name not in self.tables:
            raise DatasetNotFound(f"no dataset named {name!r}")
        return SimpleNamespace(name=name, schema=self.tables[name].schema)

    def datasets(self) -> list[Any]:
        return [self.describe(n) for n in self.tables]

    def _run(self, name: str, sql: str) -> pa.Table:
        con = duckdb.connect()
        con.register("data", self.tables[name])
        return con.sql(sql).to_arrow_table()

    def run(self, query: Query, desc: Any = None, *, described: Any = None) -> Result:
        if desc is None and described is None:
            self.describe(query.plan.dataset)  # as Client.run does without a description
        plan = query.plan
        if query.mode == "scan":
            table = self.scan(plan.dataset, list(plan.columns) or None, plan.filter)
        else:
            assert query.finishers is not None  # run_sql asks for final answers
            names = [f.name for f in query.finishers]
            table = self.aggregate(plan.dataset, list(plan.aggregates), plan.filter,
                                   plan.group_by, plan.engine, names)
        return Result(table, QueryReport(mode=query.mode))

    def aggregate(self, dataset: str, aggregates: list[Aggregate], where: Expr | None,
                  group_by: tuple[str, ...], engine: str, names: list[str]) -> pa.Table:
        self.calls.append(("aggregate", {"aggregates": aggregates, "where": where,
                                         "group_by": group_by, "engine": engine}))
        if self.refuse:
            raise Unsupported("engine 'bpf' is not available on this node")
        assert len(names) == len(aggregates)  # plain aggregates only: no AVG to expand
        items = [f'"{k}"' for k in group_by] + [
            f'{_agg_sql(a)} AS "{n}"' for a, n in zip(aggregates, names, strict=True)]
        sql = f"SELECT {', '.join(items)} FROM data"
        sql += f" WHERE {sql_of(where)}" if where is not None else ""
        sql += f" GROUP BY {', '.join(chr(34) + k + chr(34) for k in group_by)}" if group_by \
            else ""
        return self._run(dataset, sql)

    def scan(self, dataset: str, columns: list[str] | None, where: Expr | None) -> pa.Table:
        self.calls.append(("scan", {"columns": columns, "where": where}))
        projection = ", ".join(f'"{c}"' for c in columns) if columns else "*"
        sql = f"SELECT {projection} FROM data"
        sql += f" WHERE {sql_of(where)}" if where is not None else ""
        return self._run(dataset, sql)


def _agg_sql(a: Aggregate) -> str:
    if a.func is AggFunc.COUNT_STAR:
        return "count(*)"
    assert a.arg is not None
    return f"{a.func.value}({sql_of(a.arg)})"


def oracle(sql: str) -> pa.Table:
    con = duckdb.connect()
    con.register("t", DATA)
    return con.sql(sql).to_arrow_table()


def assert_same(ours: pa.Table, expected: pa.Table) -> None:
    assert ours.column_names == expected.column_names
    assert ours.schema.types == expected.schema.types  # decimals stay decimals, same scale
    assert ours.num_rows == expected.num_rows
    for a, b in zip(ours.to_pylist(), expected.to_pylist(), strict=True):
        for name in a:
            x, y = a[name], b[name]
            if isinstance(x, float) and isinstance(y, float):
                assert math.isclose(x, y, rel_tol=1e-12), (name, x, y)
            else:
                assert x == y and type(x) is type(y), (name, x, y)


PUSHED = [
    "select k, count(*), count(i), sum(i), avg(i), sum(d), avg(d), min(d), max(day), min(f) "
    "from t group by k order by k nulls first",
    "select sum(d * d) as s, sum(-d), max(i / 2), sum(cast(i as bigint)) from t "
    "where day < date '2020-01-31' + interval '6' month",
    "select k as key, sum(d) / count(*) ratio, sum(i) * 2 + 1 from t where i is not null "
    "group by key having count(*) > 1 and sum(d) > 0 order by ratio desc limit 2",
    "select count(*), sum(i), avg(d) from t where id < 0",  # no rows: one row of NULL / 0
    "select k, sum(i) from t where id < 0 group by k",  # no rows, no groups
    "select k from t group by 1 order by k",
    "select count(*) from t where k in ('a', 'c') and not (d between 0.00 and 1.50)",
    "select upper(k), avg(f) from t where f > 1e0 or k is null group by k order by 1",
    "select sum(d) from t where d > 0.06 - 0.01 and d < 0.06 + 2",
]


@pytest.mark.parametrize("sql", PUSHED)
def test_pushdown_answer_is_duckdbs(sql: str) -> None:
    client = FakeClient({"t": DATA})
    answer = run_sql(client, sql)
    result = answer.table
    assert answer.report.mode == "aggregate"  # the report of the agent calls comes along
    assert sql_path(result) == ("pushdown", None)
    assert [c[0] for c in client.calls] == ["aggregate"]  # no rows were read
    assert client.describes == 1  # the description that planned it also runs it
    assert_same(result, oracle(sql))


FALLBACK = [
    ("select count(*) from t where k like 'a%' and i > 0", ["k", "i"], "LIKE"),
    ("select count(distinct k), sum(i) from t where d > 0", ["k", "i", "d"], "DISTINCT"),
    ("select * from t where i > 2 order by id", None, "SELECT *"),
    ("select id, i from t where i > 2 order by id", ["id", "i"], "not an aggregate"),
    ("select median(d) from t", ["d"], "median"),
    ("select count(*) from t where i > (select avg(i) from t)", ["i"], "subquery"),
]


@pytest.mark.parametrize(("sql", "columns", "reason"), FALLBACK)
def test_fallback_answer_is_duckdbs(sql: str, columns: list[str] | None, reason: str) -> None:
    client = FakeClient({"t": DATA})
    answer = run_sql(client, sql)
    result = answer.table
    assert answer.report.mode == "scan"
    path, why = sql_path(result)
    assert path == "fallback" and reason in (why or "")
    (kind, call), = client.calls
    assert kind == "scan"
    assert call["columns"] == columns  # only what the query reads
    assert client.describes == 1
    assert_same(result, oracle(sql))


def test_fallback_pushes_the_translatable_where_terms() -> None:
    client = FakeClient({"t": DATA})
    run_sql(client, "select count(*) from t where k like 'a%' and i > 0")
    assert client.calls[0][1]["where"] == (Column("i") > 0)
    # With a subquery over the same dataset, a pre-filter would change the subquery's input.
    client = FakeClient({"t": DATA})
    run_sql(client, "select count(*) from t where k = 'a' and i > (select avg(i) from t)")
    assert client.calls[0][1]["where"] is None


def test_avg_is_a_double_from_exact_sum_and_count() -> None:
    client = FakeClient({"t": DATA})
    result = run_sql(client, "select avg(d) as a from t").table
    (_, call), = client.calls
    kinds = [a.func for a in call["aggregates"]]
    assert kinds == [AggFunc.SUM, AggFunc.COUNT]  # avg travels as sum + count
    assert result.schema.field("a").type == pa.float64()  # DuckDB's avg(decimal) is DOUBLE
    total = sum(v for v in DATA.column("d").to_pylist() if v is not None)
    assert result.column("a")[0].as_py() == float(total / 10)


def test_dataset_name_case_and_quoting() -> None:
    client = FakeClient({"LineItem": DATA.rename_columns([c.upper() for c in DATA.column_names])})
    result = run_sql(client, 'select "k", sum(I) from lineitem group by K order by 1').table
    assert sql_path(result)[0] == "pushdown"
    assert client.calls[0][1]["group_by"] == ("K",)  # resolved to the stored spelling
    assert result.num_rows == 4


def test_agents_refusing_means_fallback_for_auto_and_an_error_for_a_named_engine() -> None:
    client = FakeClient({"t": DATA}, refuse=True)
    result = run_sql(client, "select sum(i) from t").table
    path, why = sql_path(result)
    assert path == "fallback" and why is not None and why.startswith("agent:")
    assert [c[0] for c in client.calls] == ["aggregate", "scan"]
    assert_same(result, oracle("select sum(i) from t"))
    with pytest.raises(SqlError, match="bpf"):
        run_sql(FakeClient({"t": DATA}, refuse=True), "select sum(i) from t", engine="bpf")


def test_bad_sql_fails_before_any_data_moves() -> None:
    client = FakeClient({"t": DATA})
    with pytest.raises(SqlError, match="nosuch"):
        run_sql(client, "select sum(nosuch) from t")
    with pytest.raises(DatasetNotFound):
        run_sql(client, "select count(*) from other")
    assert client.calls == []


def test_each_query_sees_only_its_own_tables() -> None:
    """Queries share one DuckDB database (a new one per query cost ~25 ms) but each sees only
    the tables given to it, even when threads run queries over tables of the same name at once,
    and never a file."""
    def answer(n: int) -> list[Any]:
        t = pa.table({"x": pa.array(range(n), pa.int64())})
        return _duckdb("select count(*), sum(x) from t", {"t": t}).to_pylist()

    with ThreadPoolExecutor(4) as pool:
        sizes = [n % 7 + 1 for n in range(64)]
        got = list(pool.map(answer, sizes))
    assert got == [[{"count_star()": n, "sum(x)": n * (n - 1) // 2}] for n in sizes]
    with pytest.raises(SqlError, match="t"):
        _duckdb("select * from t", {})  # the tables of earlier queries are gone
    with pytest.raises(SqlError):
        _duckdb("select * from read_csv('/etc/passwd')", {})
