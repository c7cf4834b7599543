"""SQL text -> plan parts: one table of queries and the filter, keys and aggregates they give.

Plans are compared by repr, not ==: in Python 1 == 1.0 == Decimal("1.00"), but the literal's
type and scale are part of the answer (0.06 is DECIMAL(3, 2) in SQL, never a float).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa
import pytest

from bpfstore.connector.sql import SqlError, translate
from bpfstore.contract.combine import Avg
from bpfstore.contract.plan import (
    And,
    Arith,
    ArithOp,
    Between,
    Cast,
    Compare,
    CompareOp,
    Expr,
    In,
    IsNull,
    Literal,
    Negate,
    Not,
    Or,
    col,
    count,
    count_star,
    lit,
    max_,
    min_,
    sum_,
)

# TPC-H Q6 and Q1 as printed in the specification (Q1 with DELTA = 90 substituted).
Q6 = """
select
    sum(l_extendedprice * l_discount) as revenue
from
    lineitem
where
    l_shipdate >= date '1994-01-01'
    and l_shipdate < date '1994-01-01' + interval '1' year
    and l_discount between 0.06 - 0.01 and 0.06 + 0.01
    and l_quantity < 24;
"""

Q1 = """
select
    l_returnflag,
    l_linestatus,
    sum(l_quantity) as sum_qty,
    sum(l_extendedprice) as sum_base_price,
    sum(l_extendedprice * (1 - l_discount)) as sum_disc_price,
    sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)) as sum_charge,
    avg(l_quantity) as avg_qty,
    avg(l_extendedprice) as avg_price,
    avg(l_discount) as avg_disc,
    count(*) as count_order
from
    lineitem
where
    l_shipdate <= date '1998-12-01' - interval '90' day (3)
group by
    l_returnflag,
    l_linestatus
order by
    l_returnflag,
    l_linestatus;
"""

Q6_FILTER = And((
    col("l_shipdate") >= dt.date(1994, 1, 1),
    col("l_shipdate") < dt.date(1995, 1, 1),
    Between(col("l_discount"), lit(Decimal("0.05")), lit(Decimal("0.07"))),
    col("l_quantity") < 24,
))
DISC_PRICE = col("l_extendedprice") * (1 - col("l_discount"))
Q1_AGGS = (
    sum_("l_quantity"), sum_("l_extendedprice"), sum_(DISC_PRICE),
    sum_(DISC_PRICE * (1 + col("l_tax"))), Avg(col("l_quantity")),
    Avg(col("l_extendedprice")), Avg(col("l_discount")), count_star(),
)
cx, cy = col("x"), col("y")


def where(cond: str) -> str:
    return f"select count(*) from t where {cond}"


# (sql, pushed filter, group by, aggregates)
PUSHDOWN = [
    (Q6, Q6_FILTER, (), (sum_(col("l_extendedprice") * col("l_discount")),)),
    (Q1, col("l_shipdate") <= dt.date(1998, 9, 2), ("l_returnflag", "l_linestatus"), Q1_AGGS),
    (Q1.replace("day (3)", "day"), col("l_shipdate") <= dt.date(1998, 9, 2),
     ("l_returnflag", "l_linestatus"), Q1_AGGS),
    # comparisons both ways, <> and !=
    (where("5 < x"), cx > 5, (), (count_star(),)),
    (where("24 >= x"), cx <= 24, (), (count_star(),)),
    (where("x <> 1 and y != 'a'"), And((cx.ne(1), cy.ne("a"))), (), (count_star(),)),
    (where("x = y"), cx.eq(cy), (), (count_star(),)),
    # boolean structure: nested AND/OR stay binary, top-level AND is split into terms
    (where("x = 1 or (y = 2 and x = 3)"),
     Or((cx.eq(1), And((cy.eq(2), cx.eq(3))))), (), (count_star(),)),
    (where("(x > 1 and y > 2) and x < 9"), And((cx > 1, cy > 2, cx < 9)), (), (count_star(),)),
    (where("not (x = 1)"), Not(cx.eq(1)), (), (count_star(),)),
    (where("x in (1, 2, 3)"), In(cx, (lit(1), lit(2), lit(3))), (), (count_star(),)),
    (where("x not in ('a', null)"), Not(In(cx, (lit("a"), lit(None)))), (), (count_star(),)),
    (where("x is null or y is not null"), Or((IsNull(cx), Not(IsNull(cy)))), (), (count_star(),)),
    (where("x not between 1 and 2"), Not(Between(cx, lit(1), lit(2))), (), (count_star(),)),
    (where("x between y and y + 1"), Between(cx, cy, cy + 1), (), (count_star(),)),
    (where("flag"), col("flag"), (), (count_star(),)),
    (where("flag = true"), col("flag").eq(True), (), (count_star(),)),
    # literal typing: a dot makes a DECIMAL, an exponent a DOUBLE, else an integer
    (where("x > 0.060"), cx > Decimal("0.060"), (), (count_star(),)),
    (where("x > 1e3"), cx > 1000.0, (), (count_star(),)),
    (where("x > -0.5"), cx > Decimal("-0.5"), (), (count_star(),)),
    (where("x > 12345678901234"), cx > 12345678901234, (), (count_star(),)),
    # exact constant folding; division and mixed overflow are left to the engines
    (where("x < 0.1 * 3"), cx < Decimal("0.3"), (), (count_star(),)),
    (where("x < 0.25 * 0.5"), cx < Decimal("0.125"), (), (count_star(),)),
    (where("x < 1 + 0.50"), cx < Decimal("1.50"), (), (count_star(),)),
    (where("x < 2 * 3 - 1"), cx < 5, (), (count_star(),)),
    (where("x < 1.5 + 1e0"), cx < 2.5, (), (count_star(),)),
    (where("x < 1 / 2"), cx < Arith(ArithOp.DIV, lit(1), lit(2)), (), (count_star(),)),
    (where("x < 2147483647 + 1"), cx < Arith(ArithOp.ADD, lit(2147483647), lit(1)), (),
     (count_star(),)),
    (where("x > -y"), cx > Negate(cy), (), (count_star(),)),
    # dates: literals, casts, and calendar arithmetic folded to a date
    (where("d = cast('2020-02-29' as date)"), col("d").eq(dt.date(2020, 2, 29)), (),
     (count_star(),)),
    (where("d < date '2020-02-29' + interval '1' year"), col("d") < dt.date(2021, 2, 28), (),
     (count_star(),)),
    (where("d < date '2020-01-31' + interval 1 month"), col("d") < dt.date(2020, 2, 29), (),
     (count_star(),)),
    (where("d < date '2000-03-31' - interval '1' month"), col("d") < dt.date(2000, 2, 29), (),
     (count_star(),)),
    (where("d < interval '2 weeks' + date '1999-12-25'"), col("d") < dt.date(2000, 1, 8), (),
     (count_star(),)),
    (where("d < date '2020-01-15' + interval '1 year 2 months'"),
     col("d") < dt.date(2021, 3, 15), (), (count_star(),)),
    (where("d < date '1998-12-01' - interval '3' quarter"), col("d") < dt.date(1998, 3, 1), (),
     (count_star(),)),
    (where("ts >= timestamp '2020-01-02 03:04:05'"),
     col("ts") >= dt.datetime(2020, 1, 2, 3, 4, 5), (), (count_star(),)),
    (where("d >= '1994-01-01'"), col("d") >= "1994-01-01", (), (count_star(),)),
    # casts to Arrow types
    (where("cast(x as decimal(12, 2)) > 1"), Cast(cx, pa.decimal128(12, 2)) > 1, (),
     (count_star(),)),
    (where("x::double > 1"), Cast(cx, pa.float64()) > 1, (), (count_star(),)),
    (where("cast(x as integer) = 1"), Cast(cx, pa.int32()).eq(1), (), (count_star(),)),
    (where("cast(x as decimal) = 1"), Cast(cx, pa.decimal128(18, 3)).eq(1), (), (count_star(),)),
    (where("cast(x as varchar) = 'a'"), Cast(cx, pa.string()).eq("a"), (), (count_star(),)),
    # aggregates: every kind, count(1) is count(*), repeated calls collapse
    ("select count(x), count(1), count(), min(x), max(-x), avg(x * 2) from t", None, (),
     (count(cx), count_star(), min_(cx), max_(Negate(cx)), Avg(cx * 2))),
    ("select sum(x) as a, sum(x) + 1 from t having sum(x) > 3 order by sum(x)", None,
     (), (sum_(cx),)),
    ("select max(cast(x as decimal(12, 2))) from t", None, (),
     (max_(Cast(cx, pa.decimal128(12, 2))),)),
    ("select k, j, count(*) from t group by k, j", None, ("k", "j"), (count_star(),)),
    ("select k from t group by k", None, ("k",), ()),
    ("select k, upper(k), sum(x) / count(*) from t where x > 0 group by k order by 2 limit 3",
     cx > 0, ("k",), (sum_(cx), count_star())),
    ("select k, sum(x) from t group by 1", None, ("k",), (sum_(cx),)),
    ('select count(*) from "tpch.lineitem" as l where l.x = 1', cx.eq(1), (), (count_star(),)),
]


@pytest.mark.parametrize(("sql", "filter_", "group_by", "aggregates"), PUSHDOWN)
def test_pushdown_translation(sql: str, filter_: Expr | None, group_by: tuple[str, ...],
                              aggregates: tuple[object, ...]) -> None:
    q = translate(sql)
    assert q.pushdown, q.reason
    assert q.reason is None
    assert repr(q.pushed_filter) == repr(filter_)
    assert q.group_by == group_by
    assert repr(q.aggregates) == repr(aggregates)


def test_tpch_q6_literals_are_exact_decimals() -> None:
    between = translate(Q6).pushed_filter.args[2]  # type: ignore[union-attr]
    assert isinstance(between, Between)
    for bound, text in ((between.low, "0.05"), (between.high, "0.07")):
        assert isinstance(bound, Literal) and isinstance(bound.value, Decimal)
        assert str(bound.value) == text  # scale 2: DECIMAL(4, 2), as DuckDB and Spark type it


def test_dataset_and_columns() -> None:
    q = translate(Q1)
    assert q.dataset == "lineitem"
    assert set(q.columns or ()) == {"l_returnflag", "l_linestatus", "l_quantity",
                                    "l_extendedprice", "l_discount", "l_tax", "l_shipdate"}
    assert translate('select count(*) from "tpch.lineitem"').dataset == "tpch.lineitem"


SCHEMA = pa.schema([("id", pa.int64()), ("Name", pa.string()), ("price", pa.decimal128(9, 2)),
                    ("day", pa.date32())])


def test_schema_resolves_names_like_duckdb() -> None:
    q = translate("select NAME as n, sum(PRICE) from t where ID > 1 group by n", SCHEMA)
    assert q.pushdown, q.reason
    assert q.group_by == ("Name",)
    assert repr(q.aggregates) == repr((sum_("price"),))
    assert repr(q.pushed_filter) == repr(col("id") > 1)
    assert q.columns == ("Name", "price", "id")  # the alias `n` is not a column


# (sql, words the reason must contain, filter a fallback scan may still push)
FALLBACK = [
    (where("x like 'a%'"), "LIKE", None),
    (where("x like 'a%' and y > 1"), "LIKE", cy > 1),
    (where("my_udf(x) > 1 and y = 2"), "not pushable", cy.eq(2)),
    ("select my_udf(k), count(*) from t group by k", "unknown functions", None),
    ("select count(distinct x) from t where y = 1", "DISTINCT", cy.eq(1)),
    ("select sum(distinct x) from t", "DISTINCT", None),
    ("select median(x) from t", "median", None),
    ("select * from t where x > 1", "SELECT *", cx > 1),
    ("select x, y from t where y = 1", "not an aggregate query", cy.eq(1)),
    ("select sum(x) over () from t", "window", None),
    ("select count(*) filter (where x > 1) from t", "FILTER", None),
    ("select k, count(*) from t group by k + 1", "only plain columns", None),
    ("select k, count(*) from t group by rollup (k)", "ROLLUP", None),
    (where("x % 2 = 0"), "MOD", None),
    (where("x is not distinct from 1"), "not pushable", None),
    (where("x in (select y from t)"), "subquery", None),
    ("select count(*) from t where y = 1 and x > (select avg(x) from t)", "subquery", None),
    ("select count(*) from t union all select count(*) from t", "single SELECT", None),
    ("with s as (select * from t) select count(*) from s", "single SELECT", None),
    ("select count(*) from t a, t b where a.x = 1", "more than once", None),
    (where("d < date '2020-01-01' + interval '1' hour"), "hour", None),
    (where("d < d + interval '1' day"), "non-constant", None),
    (where("try_cast(x as int) = 1"), "not pushable", None),
]


@pytest.mark.parametrize(("sql", "reason", "pushed"), FALLBACK)
def test_fallback_translation(sql: str, reason: str, pushed: Expr | None) -> None:
    q = translate(sql)
    assert not q.pushdown
    assert q.reason is not None and reason.lower() in q.reason.lower(), q.reason
    assert repr(q.pushed_filter) == repr(pushed)
    assert q.group_by == () and q.aggregates == ()


def test_schema_checks_types_before_pushing() -> None:
    # DuckDB compares an integer column with a string by casting; the plan types do not.
    q = translate("select count(*) from t where id = '7' and day >= '1994-01-01'", SCHEMA)
    assert not q.pushdown
    assert "id = '7'" in (q.reason or "")
    assert repr(q.pushed_filter) == repr(col("day") >= "1994-01-01")
    q = translate("select sum(Name) from t", SCHEMA)
    assert not q.pushdown and "sum(Name)" in (q.reason or "")


@pytest.mark.parametrize("sql", [
    "select 1",
    "select count(*) from a join b on a.x = b.x",
    "insert into t values (1)",
    "select count(*) from t; select count(*) from t",
    "select count(* from t",
    "select count(*) from tpch.lineitem",
])
def test_sql_errors(sql: str) -> None:
    with pytest.raises(SqlError):
        translate(sql)


def test_compare_literal_on_the_left_is_flipped() -> None:
    f = translate(where("0.5 >= x")).pushed_filter
    assert isinstance(f, Compare) and f.op is CompareOp.LE and f.left == cx
