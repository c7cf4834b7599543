"""Key sets (x IN <keys>): binding's type rules, the wire form, the limits, describe and
pushability."""

from __future__ import annotations

import datetime as dt
import decimal as D

import pyarrow as pa
import pytest

from bpfstore.contract import keysets, wire
from bpfstore.contract.binding import bind, bind_predicate
from bpfstore.contract.bound import BoundKeySet
from bpfstore.contract.errors import PlanInvalid
from bpfstore.contract.plan import KeySet, Plan, col, count_star, describe
from bpfstore.contract.pushable import Capabilities, split_pushable
from bpfstore.node_agent.limits import check_key_set, check_plan_size

SCHEMA = pa.schema([
    ("i8", pa.int8()), ("u64", pa.uint64()), ("i64", pa.int64()), ("f32", pa.float32()),
    ("dec", pa.decimal128(12, 2)), ("wide", pa.decimal128(38, 0)), ("d", pa.date32()),
    ("ts", pa.timestamp("ns")), ("tsz", pa.timestamp("us", tz="UTC")), ("s", pa.string()),
    ("ds", pa.dictionary(pa.int32(), pa.string())), ("b", pa.bool_()),
])


def bound_keys(column: str, keys: object) -> pa.Array:
    e = bind(col(column).isin_keys(keys), SCHEMA)  # type: ignore[arg-type]
    assert isinstance(e, BoundKeySet) and e.result_type == pa.bool_()
    return e.keys


def test_keys_are_normalized_sorted_distinct_with_one_null_last() -> None:
    keys = keysets.normalized(pa.array([3.0, None, -0.0, float("nan"), 0.0, 3.0, None, -1.0]))
    values = keys.to_pylist()
    assert values[:3] == [-1.0, 0.0, 3.0] and str(values[2 + 1]) == "nan" and values[4] is None
    assert len(values) == 5 and str(keys[1].as_py()) == "0.0"  # -0.0 folded into 0.0


@pytest.mark.parametrize(("column", "keys", "want_type", "want"), [
    ("i8", pa.array([300, 5, -129, 1, None], pa.int64()), pa.int8(), [1, 5, None]),
    ("u64", pa.array([-1, 2], pa.int64()), pa.uint64(), [2]),  # -1 is no uint64
    ("i64", pa.array([2**64 - 1, 7], pa.uint64()), pa.int64(), [7]),
    ("f32", pa.array([1, 2], pa.int32()), pa.float64(), [1.0, 2.0]),  # floats compare in f64
    ("dec", pa.array([D.Decimal("1.5"), D.Decimal("-2.25")]), pa.decimal128(12, 2),
     [D.Decimal("-2.25"), D.Decimal("1.50")]),
    ("dec", pa.array([12, 3], pa.int64()), pa.decimal128(12, 2),
     [D.Decimal("3.00"), D.Decimal("12.00")]),
    ("wide", pa.array([D.Decimal("9" * 38)], pa.decimal128(38, 0)), pa.decimal128(38, 0),
     [D.Decimal("9" * 38)]),
    ("ts", pa.array([1, 2], pa.timestamp("us")), pa.timestamp("ns"), None),
    ("ds", pa.array(["b", "a"], pa.large_string()), pa.string(), ["a", "b"]),
    ("s", pa.array([None, None], pa.null()), pa.string(), [None]),
    ("d", pa.array([dt.date(2020, 1, 2)]), pa.date32(), [dt.date(2020, 1, 2)]),
])
def test_keys_take_the_column_type_exactly(column: str, keys: pa.Array, want_type: pa.DataType,
                                           want: list | None) -> None:
    got = bound_keys(column, keys)
    assert got.type == want_type
    if want is not None:
        assert got.to_pylist() == want
    else:
        assert got.cast(pa.int64()).to_pylist() == [1000, 2000]


@pytest.mark.parametrize(("column", "keys", "words"), [
    ("i64", pa.array([1.0, 2.0]), "float keys cannot be matched exactly"),
    ("dec", pa.array([D.Decimal("1.555")]), "do not convert exactly"),
    ("dec", pa.array([D.Decimal("1" * 20)]), "do not convert exactly"),  # beyond precision 12
    ("f32", pa.array([2**53 + 1], pa.int64()), "do not convert exactly"),  # no float64 holds it
    ("ts", pa.array([dt.date(2020, 1, 1)]), "cannot be compared"),  # a date is no timestamp
    ("tsz", pa.array([1], pa.timestamp("us")), "time zone"),
    ("s", pa.array([1, 2]), "cannot be compared"),
    ("b", pa.array(["true"]), "cannot be compared"),
    ("ds", pa.array([b"a"]), "cannot be compared"),
])
def test_keys_that_do_not_convert_exactly_are_plan_invalid(column: str, keys: pa.Array,
                                                           words: str) -> None:
    with pytest.raises(PlanInvalid, match=words) as info:
        bound_keys(column, keys)
    assert f"{column} IN <" in str(info.value)  # names the node


def test_ns_timestamps_keep_their_nanoseconds() -> None:
    keys = pa.array([1_700_000_000_123_456_789], pa.timestamp("ns"))
    assert bound_keys("ts", keys).cast(pa.int64()).to_pylist() == [1_700_000_000_123_456_789]
    with pytest.raises(PlanInvalid, match="do not convert exactly"):
        bound_keys("tsz", pa.array([1_700_000_000_123_456_789], pa.timestamp("ns", tz="UTC")))


def test_a_key_set_filter_is_boolean_and_describes_briefly() -> None:
    e = col("i64").isin_keys(range(204))
    assert describe(e) == "i64 IN <204 keys>"
    assert describe(col("s").isin_keys(["a", None, "a"])) == "s IN <2 keys + NULL>"
    assert describe(bind_predicate(col("s").isin_keys(["a", None, "a"]), SCHEMA)) == \
        "s IN <1 key + NULL>"  # bound: distinct
    assert describe(~e & (col("b").eq(True))).startswith("(NOT i64 IN <204 keys> AND")


def test_key_sets_compare_by_their_keys() -> None:
    a, b = col("x").isin_keys([1, 2]), col("x").isin_keys(pa.array([1, 2]))
    assert a == b and hash(a) == hash(b)
    assert a != col("x").isin_keys([1, 3]) and a != col("y").isin_keys([1, 2])
    assert len({a, b}) == 1


@pytest.mark.parametrize("keys", [
    pa.array([5, 1, None, 5, 3], pa.int64()),
    pa.array([float("nan"), -0.0, 1.5, None]),
    pa.array([D.Decimal("1" * 38), D.Decimal("-" + "9" * 38)], pa.decimal128(38, 0)),
    pa.array([1_700_000_000_123_456_789, None], pa.timestamp("ns")),
    pa.array(["ünï", "a", "a"]).dictionary_encode(),
    pa.array([], pa.date32()),
])
def test_wire_round_trip_sends_sorted_distinct_keys(keys: pa.Array) -> None:
    plan = Plan("t", filter=col("x").isin_keys(keys), aggregates=(count_star(),))
    msg = wire.plan_to_proto(plan)
    back = wire.plan_from_proto(pb_plan := type(msg).FromString(msg.SerializeToString()))
    assert isinstance(back.filter, KeySet)
    assert keysets.same_keys(back.filter.keys, keysets.normalized(keys))
    assert back.filter == col("x").isin_keys(keysets.normalized(keys))
    check_plan_size(pb_plan, 10, 10, 10)  # within every limit


def test_hostile_key_bytes_are_plan_invalid() -> None:
    msg = wire.plan_to_proto(Plan("t", filter=col("x").isin_keys([1])))
    for data in (b"", b"not arrow", keysets.to_ipc(pa.array([1]))[:-9]):
        msg.filter.key_set.keys = data
        with pytest.raises(PlanInvalid, match="key set"):
            check_plan_size(msg, 10, 10, 10)
            wire.plan_from_proto(msg)
    two = pa.table({"a": [1], "b": [2]})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, two.schema) as w:
        w.write_table(two)
    msg.filter.key_set.keys = sink.getvalue().to_pybytes()
    with pytest.raises(PlanInvalid, match="2 columns, not one"):
        wire.plan_from_proto(msg)


def test_limits_are_checked_on_the_headers_and_named() -> None:
    data = keysets.to_ipc(pa.array(range(100), pa.int64()))
    check_key_set(data, 100, len(data))
    with pytest.raises(PlanInvalid, match=r"key set of 100 keys exceeds the limit of 99 "
                                          r"\(max_key_set_keys\)"):
        check_key_set(data, 99, 1 << 20)
    with pytest.raises(PlanInvalid, match=r"exceeds the limit of 100 \(max_key_set_bytes\)"):
        check_key_set(data, 1000, 100)


def test_the_client_refuses_a_key_set_beyond_the_default_limit_before_sending() -> None:
    big = pa.array(range(keysets.DEFAULT_MAX_KEYS + 1), pa.int64())
    with pytest.raises(PlanInvalid, match="max_key_set_keys"):
        wire.plan_to_proto(Plan("t", filter=col("x").isin_keys(big)))


def test_key_sets_are_pushed_where_the_agents_run_them() -> None:
    term = col("i64").isin_keys([1, 2])
    pushed, residual = split_pushable(term & (col("i8") > 1), Capabilities(schema=SCHEMA))
    assert pushed == [term, col("i8") > 1] and not residual
    pushed, residual = split_pushable(term, Capabilities(schema=SCHEMA, key_sets=False))
    assert not pushed and "do not run key sets" in residual[0].reason
    pushed, residual = split_pushable(term, Capabilities(schema=SCHEMA, max_key_set_keys=1))
    assert not pushed and "max_key_set_keys" in residual[0].reason
    pushed, residual = split_pushable(col("i64").isin_keys([1.5]), Capabilities(schema=SCHEMA))
    assert not pushed and "float keys" in residual[0].reason


def test_the_builder_takes_arrow_numpy_pandas_and_python_values() -> None:
    import numpy as np
    import pandas as pd

    assert col("x").isin_keys(pd.Series([1, None], dtype="Int64")).keys.to_pylist() == [1, None]
    assert col("x").isin_keys(np.array([2, 1])).keys.to_pylist() == [2, 1]
    assert col("x").isin_keys(pa.chunked_array([[1], [2]])).keys.to_pylist() == [1, 2]
    assert col("x").isin_keys(range(3)).keys.to_pylist() == [0, 1, 2]
    assert col("s").isin_keys(pd.Series(["a", "b"]).astype("category")).keys.type == pa.string()
