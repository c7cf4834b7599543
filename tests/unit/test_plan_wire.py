"""Plan model <-> protobuf: round trips (property-based) and malformed messages."""

from __future__ import annotations

import datetime as dt
import decimal as D

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bpfstore.contract import wire
from bpfstore.contract.compare import epoch_nanos
from bpfstore.contract.errors import PlanInvalid
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
    Dialect,
    In,
    IsNull,
    Literal,
    Negate,
    Not,
    Or,
    Overflow,
    Plan,
    col,
    depth,
    describe,
)
from bpfstore.v1 import plan_pb2 as pb

names = st.sampled_from(["a", "b", "l_discount", "ünï", "x y"])
literal_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.decimals(allow_nan=False, allow_infinity=False, places=3,
                min_value=D.Decimal("-1e20"), max_value=D.Decimal("1e20")),
    st.dates(),
    st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1)),
)
types = st.sampled_from([pa.int8(), pa.int64(), pa.uint64(), pa.float64(), pa.date32(),
                         pa.decimal128(31, 4), pa.string(), pa.timestamp("us"), pa.bool_()])
annotations = st.fixed_dictionaries({}, optional={
    "result_type": types, "overflow": st.sampled_from(list(Overflow))})

leaves = st.one_of(
    st.builds(Column, names),
    st.builds(lambda v: Literal(v), literal_values),
)


def _tree(children):
    pair = st.tuples(children, children)
    return st.one_of(
        st.builds(lambda op, p, kw: Compare(op, *p, **kw), st.sampled_from(list(CompareOp)), pair,
                  annotations),
        st.builds(lambda a: And(tuple(a)), st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda a: Or(tuple(a)), st.lists(children, min_size=1, max_size=3)),
        st.builds(Not, children),
        st.builds(lambda a, v: In(a, tuple(Literal(x) for x in v)), children,
                  st.lists(literal_values, max_size=4)),
        st.builds(IsNull, children),
        st.builds(Between, children, children, children),
        st.builds(lambda op, p, kw: Arith(op, *p, **kw), st.sampled_from(list(ArithOp)), pair,
                  annotations),
        st.builds(Negate, children),
        st.builds(Cast, children, types),
    )


expressions = st.recursive(leaves, _tree, max_leaves=12)


@given(expressions)
@settings(max_examples=300, deadline=None)
def test_expression_round_trip(e) -> None:
    assert wire.expr_from_proto(wire.expr_to_proto(e), max_depth=1000) == e


@given(st.lists(expressions, max_size=3), st.sampled_from(list(Dialect)),
       st.sampled_from(["auto", "arrow", "bpf"]))
@settings(max_examples=100, deadline=None)
def test_plan_round_trip(filters, dialect, engine) -> None:
    plan = Plan("lineitem", partitions=("p1", "p2"), filter=filters[0] if filters else None,
                columns=("a", "b"), group_by=("a",),
                aggregates=(Aggregate(AggFunc.COUNT_STAR),
                            *(Aggregate(AggFunc.SUM, f) for f in filters[1:])),
                dialect=dialect, engine=engine)
    assert wire.plan_from_proto(wire.plan_to_proto(plan)) == plan


@pytest.mark.parametrize("t", [
    pa.int8(), pa.uint64(), pa.float32(), pa.float64(), pa.bool_(), pa.string(), pa.date32(),
    pa.decimal128(38, 10), pa.decimal64(15, 2), pa.timestamp("ms"), pa.timestamp("us", "UTC"),
])
def test_type_names_round_trip(t) -> None:
    assert wire.type_from_string(wire.type_to_string(t)) == t


@pytest.mark.parametrize("text", ["int65", "decimal128(40, 2)", "list<item: int64>", ""])
def test_bad_type_names_are_rejected(text) -> None:
    with pytest.raises(PlanInvalid):
        wire.type_from_string(text)


def _msg(**kwargs) -> pb.Expr:
    return pb.Expr(**kwargs)


@pytest.mark.parametrize(("msg", "words"), [
    (pb.Expr(), "no kind"),
    (pb.Expr(column=pb.Column(name="")), "empty name"),
    (pb.Expr(compare=pb.Compare(op=pb.LT, left=pb.Expr(column=pb.Column(name="a")))),
     "missing operand 'right'"),
    (pb.Expr(compare=pb.Compare(op=17, left=pb.Expr(column=pb.Column(name="a")),
                                right=pb.Expr(column=pb.Column(name="b")))),
     "unknown comparison"),
    (pb.Expr(cast=pb.Cast(arg=pb.Expr(column=pb.Column(name="a")))), "without a target type"),
    (pb.Expr(literal=pb.Literal(decimal_value="1.2.3")), "bad decimal"),
    (pb.Expr(**{"and": pb.And()}), "no operands"),
])
def test_malformed_expressions_name_the_problem(msg, words) -> None:
    with pytest.raises(PlanInvalid, match=words):
        wire.expr_from_proto(msg)


def test_depth_limit() -> None:
    e = col("a") > 1
    for _ in range(100):
        e = Not(e)
    assert depth(e) == 102
    with pytest.raises(PlanInvalid, match="too deeply"):
        wire.expr_from_proto(wire.expr_to_proto(e), max_depth=64)


def test_aggregate_arity_is_checked() -> None:
    msg = pb.Plan(dataset="d", aggregates=[pb.Aggregate(func=pb.SUM)])
    with pytest.raises(PlanInvalid, match="needs an argument"):
        wire.plan_from_proto(msg)


def test_describe_reads_like_sql() -> None:
    e = (col("d") >= dt.date(1994, 1, 1)) & col("s").isin(["A", "B"]) & ~col("x").is_null()
    assert describe(e) == "((d >= 1994-01-01) AND s IN ('A', 'B') AND NOT x IS NULL)"


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1), st.sampled_from([None, "UTC"]))
@settings(max_examples=300, deadline=None)
def test_nanosecond_literals_round_trip_exactly(nanos, tz) -> None:
    """W5: a timestamp[ns] literal keeps its nanoseconds through decode and encode."""
    t = pa.timestamp("ns", tz=tz)
    decoded = wire.literal_from_proto(pb.Literal(timestamp_value=nanos, type=pb.DataType(
        arrow=str(t))))
    value = decoded.value
    assert (value if isinstance(value, int) else epoch_nanos(value)) == nanos
    again = wire.literal_to_proto(decoded)
    assert again.timestamp_value == nanos and wire.literal_from_proto(again) == decoded


@given(st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1))
@settings(max_examples=100, deadline=None)
def test_pandas_timestamps_are_sent_to_the_nanosecond(nanos) -> None:
    pd = pytest.importorskip("pandas")
    msg = wire.literal_to_proto(Literal(pd.Timestamp(nanos, unit="ns")))
    assert msg.type.arrow == ("timestamp[ns]" if nanos % 1000 else "timestamp[us]")
    assert msg.timestamp_value * (1 if nanos % 1000 else 1000) == nanos


@pytest.mark.parametrize(("lit", "words"), [
    (Literal(dt.datetime(9999, 1, 1), result_type=pa.timestamp("ns")), "out of range"),
    (Literal(dt.datetime(2020, 1, 1, 0, 0, 0, 5), result_type=pa.timestamp("s")),
     "not a whole number of s"),
    (Literal(2**63, result_type=pa.timestamp("ns")), "out of range"),
])
def test_unencodable_timestamps_are_plan_errors(lit, words) -> None:
    with pytest.raises(PlanInvalid, match=words):
        wire.literal_to_proto(lit)


@pytest.mark.parametrize(("text", "words"), [
    ("decimal256(40, 0)", "precision 40 exceeds 38"),
    ("decimal256(76, 0)", "precision 76 exceeds 38"),
    ("timestamp[us, tz=Nowhere/Land]", "unknown time zone 'Nowhere/Land'"),
    ("x" * 10_000, r"\.\.\. \(10002 characters\)"),
])
def test_unsupported_types_are_named_and_capped(text, words) -> None:
    with pytest.raises(PlanInvalid, match=words) as info:
        wire.type_from_string(text)
    assert len(str(info.value)) < 200


@pytest.mark.parametrize("text", ["1" * 10_000, "-" + "9" * 5000 + ".5", "1e" + "9" * 10_000])
def test_huge_decimal_literals_are_refused_with_a_short_message(text) -> None:
    msg = pb.Expr(literal=pb.Literal(decimal_value=text))
    with pytest.raises(PlanInvalid, match="too long") as info:
        wire.expr_from_proto(msg)
    assert len(str(info.value)) < 200
