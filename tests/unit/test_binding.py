"""Type rules: one table of expression -> bound type, and the errors that name the bad part."""

from __future__ import annotations

import datetime as dt
import decimal as D

import pyarrow as pa
import pytest

from bpfstore.contract.binding import bind, bind_plan, common_type, literal_type, partial_type
from bpfstore.contract.bound import BoundCompare, BoundExpr, BoundLiteral
from bpfstore.contract.errors import PlanInvalid
from bpfstore.contract.plan import (
    AggFunc,
    Aggregate,
    Compare,
    CompareOp,
    Plan,
    col,
    describe,
    lit,
    walk,
)

SCHEMA = pa.schema({
    "i8": pa.int8(), "i32": pa.int32(), "i64": pa.int64(), "u64": pa.uint64(),
    "f": pa.float64(), "dec": pa.decimal64(15, 2), "wide": pa.decimal128(30, 4),
    "d": pa.date32(), "ts": pa.timestamp("us"), "s": pa.dictionary(pa.int32(), pa.string()),
    "b": pa.bool_(),
})


@pytest.mark.parametrize(("expr", "expected"), [
    (col("i32") + col("i8"), pa.int32()),
    (col("i32") + 1, pa.int64()),
    (col("i64") * col("f"), pa.float64()),
    (col("i32") / col("i32"), pa.float64()),
    (col("dec") * col("dec"), pa.decimal128(31, 4)),
    (col("dec") + col("dec"), pa.decimal128(16, 2)),
    (col("dec") * (1 - col("dec")), pa.decimal128(38, 4)),  # 1 is an int64: decimal(19, 0)
    (col("dec") * (1 - col("dec")) * (1 + col("dec")), pa.decimal128(38, 6)),
    (col("dec") * D.Decimal("0.06"), pa.decimal128(18, 4)),
    (col("wide") - col("i64"), pa.decimal128(31, 4)),
    (-col("dec"), pa.decimal128(15, 2)),
    (col("f").cast(pa.int32()), pa.int32()),
    (col("dec") > 1.5, pa.bool_()),
    (col("s").isin(["a", None]), pa.bool_()),
])
def test_result_types(expr, expected) -> None:
    assert bind(expr, SCHEMA).result_type == expected


@pytest.mark.parametrize(("a", "b", "expected"), [
    (pa.int8(), pa.int64(), pa.int64()),
    (pa.uint8(), pa.int16(), pa.int16()),
    (pa.uint64(), pa.int64(), pa.decimal128(20, 0)),  # int64 would overflow (issue 18)
    (pa.int32(), pa.decimal128(15, 2), pa.decimal128(15, 2)),
    (pa.int32(), pa.decimal128(5, 2), pa.decimal128(12, 2)),
    (pa.int64(), pa.decimal128(15, 2), pa.decimal128(21, 2)),
    (pa.decimal128(15, 2), pa.float32(), pa.float64()),
    (pa.date32(), pa.timestamp("us"), pa.timestamp("us")),
    (pa.dictionary(pa.int32(), pa.string()), pa.string(), pa.string()),
    (pa.null(), pa.date32(), pa.date32()),
])
def test_common_types(a, b, expected) -> None:
    assert common_type(a, b, "test") == expected


@pytest.mark.parametrize(("value", "expected"), [
    (5, pa.int64()), (2**63, pa.uint64()), (2**70, pa.decimal128(38, 0)), (1.5, pa.float64()),
    (D.Decimal("0.06"), pa.decimal128(2, 2)), (D.Decimal("123.450"), pa.decimal128(6, 3)),
    (D.Decimal("1E+3"), pa.decimal128(4, 0)), ("x", pa.string()), (dt.date(2020, 1, 1),
    pa.date32()), (True, pa.bool_()), (None, pa.null()),
])
def test_literal_types(value, expected) -> None:
    assert literal_type(value) == expected


def test_literals_are_coerced_to_the_comparison_type() -> None:
    bound = bind(col("d") >= "1994-01-01", SCHEMA)
    assert bound.right == BoundLiteral(dt.date(1994, 1, 1), result_type=pa.date32())
    bound = bind(col("dec") < 24, SCHEMA)
    assert bound.right.value == D.Decimal("24.00")


@pytest.mark.parametrize(("expr", "words"), [
    (col("nope") > 1, "unknown column 'nope'"),
    (col("d") > 5, "type mismatch in \\(d > 5\\): date32"),
    (col("s") + 1, "arithmetic needs numbers"),
    (col("d") >= "not a date", "does not fit date32"),
    (col("i8") > 2**70, None),  # compared as decimal: fine
    (col("i32") & col("b"), "is int32, not boolean"),
])
def test_binding_errors_name_the_bad_part(expr, words) -> None:
    if words is None:
        bind(expr, SCHEMA)
        return
    with pytest.raises(PlanInvalid, match=words):
        bind(expr, SCHEMA)


def test_plan_binding_checks_group_by_and_filters() -> None:
    with pytest.raises(PlanInvalid, match="unknown column 'zz'"):
        bind_plan(Plan("t", group_by=("zz",)), SCHEMA)
    with pytest.raises(PlanInvalid, match="not boolean"):
        bind_plan(Plan("t", filter=col("i32") + 1), SCHEMA)


@pytest.mark.parametrize(("agg", "expected"), [
    (Aggregate(AggFunc.COUNT_STAR), pa.int64()),
    (Aggregate(AggFunc.SUM, col("i64")), pa.decimal256(76, 0)),
    (Aggregate(AggFunc.SUM, col("dec")), pa.decimal256(76, 2)),
    (Aggregate(AggFunc.SUM, col("f")), pa.float64()),
    (Aggregate(AggFunc.MIN, col("s")), pa.string()),
    (Aggregate(AggFunc.MAX, col("dec")), pa.decimal128(15, 2)),
])
def test_partial_types(agg, expected) -> None:
    bound = bind_plan(Plan("t", aggregates=(agg,)), SCHEMA).aggregates[0]
    assert partial_type(bound) == expected


def test_sum_of_dates_is_rejected() -> None:
    bound = bind_plan(Plan("t", aggregates=(Aggregate(AggFunc.SUM, col("d")),)), SCHEMA)
    with pytest.raises(PlanInvalid, match="cannot sum d"):
        partial_type(bound.aggregates[0])


def test_explicit_result_type_wins() -> None:
    e = col("dec") * col("dec")
    typed = type(e)(e.op, e.left, e.right, result_type=pa.decimal128(38, 6))
    assert bind(typed, SCHEMA).result_type == pa.decimal128(38, 6)
    assert bind(lit(5, pa.int8()), SCHEMA).result_type == pa.int8()


BOUND_CASES = [
    lit(5) < col("i32"),
    (col("i32") + 1 > 2) | ~col("s").is_null(),
    col("d").between("1994-01-01", "1995-01-01"),
    col("i32").isin([1, None, 3]) & (-col("i32") < 0),
    col("i32").cast(pa.float64()) / 2 > 0.5,
]


@pytest.mark.parametrize("e", BOUND_CASES)
def test_every_bound_node_is_a_bound_class_with_a_type(e) -> None:
    for node in walk(bind(e, SCHEMA)):
        assert isinstance(node, BoundExpr), node
        assert node.result_type is not None, node


@pytest.mark.parametrize(("e", "want"), [
    (lit(5) < col("i32"), "(i32 > 5)"),
    (Compare(CompareOp.GE, lit(5), col("i32")), "(i32 <= 5)"),
    (Compare(CompareOp.EQ, lit(5), col("i32") + 1), "((i32 + 1) = 5)"),
    (Compare(CompareOp.LT, col("i32"), lit(5)), "(i32 < 5)"),
])
def test_a_literal_is_bound_on_the_right(e, want) -> None:
    bound = bind(e, SCHEMA)
    assert isinstance(bound, BoundCompare) and isinstance(bound.right, BoundLiteral)
    assert describe(bound) == want
