"""Hostile but legal input (issue 18): edge values of every storable type, plain and
dictionary-encoded, answered exactly by every engine; and malformed or unsupported requests,
each refused with its own status code and a capped message naming it, by an agent that keeps
serving."""

from __future__ import annotations

import decimal as D
import math
import os
import re
from typing import Any

import grpc
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpfstore.connector import Unsupported, col, count, count_star, max_, min_, sum_
from bpfstore.contract import wire
from bpfstore.contract.plan import Cast, Literal, Plan
from bpfstore.node_agent.server import ipc_bytes
from bpfstore.v1 import agent_pb2 as pb
from bpfstore.v1 import agent_pb2_grpc
from bpfstore.v1 import plan_pb2 as plan_pb
from conftest import RunningAgent

NAN, INF = float("nan"), float("inf")
I64, U64 = (-(2**63), 2**63 - 1), (0, 2**64 - 1)
NS = (-(2**63) + 1, 2**63 - 1)  # -2**63 ns is pandas' NaT, which Arrow's as_py gives for it
MAX38 = 10**38 - 1
MICROS_1_9999 = (-62135596800 * 10**6, 253402300799 * 10**6)  # Python's datetime range


def _engines(agent: RunningAgent) -> list[str]:
    """arrow, and the in-kernel engines this node has (all of them under BPFSTORE_REQUIRE_BPF)."""
    required = os.environ.get("BPFSTORE_REQUIRE_BPF") == "1"
    status = {s.name: s for s in agent.service.engines.status}
    for name in ("bpf", "bcc"):
        assert status[name].available or not required, f"{name}: {status[name].reason}"
    return ["arrow", *(n for n in ("bpf", "bcc") if status[n].available)]


def _edges(values: list[Any], general: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(st.none(), st.sampled_from(values), general)


EXACT = D.Context(prec=80)  # never the 28-digit default context


def _scaled(scale: int):
    return lambda n: D.Decimal(n).scaleb(-scale, EXACT)


# column -> (Arrow type, values); decimals and timestamps as Python values of their type
# (timestamps as integer counts of their unit, so nanoseconds stay exact)
COLUMNS: dict[str, tuple[pa.DataType, st.SearchStrategy]] = {
    "b": (pa.bool_(), st.one_of(st.none(), st.booleans())),
    "i8": (pa.int8(), _edges([-128, 127, 0], st.integers(-128, 127))),
    "i64": (pa.int64(), _edges([*I64, 0, -1], st.integers(*I64))),
    "u64": (pa.uint64(), _edges([*U64, 2**63], st.integers(*U64))),
    "f64": (pa.float64(), _edges([NAN, INF, -INF, -0.0, 0.0, 5e-324, 1.7976931348623157e308],
                                 st.floats())),
    "f32": (pa.float32(), _edges([NAN, INF, -INF, -0.0], st.floats(width=32))),
    "d38": (pa.decimal128(38, 0), _edges([MAX38, -MAX38, 0], st.integers(-MAX38, MAX38))
            .map(lambda n: None if n is None else D.Decimal(n))),
    "d38s": (pa.decimal128(38, 10), _edges([MAX38, -MAX38, 1], st.integers(-MAX38, MAX38))
             .map(lambda n: None if n is None else _scaled(10)(n))),
    "d18": (pa.decimal128(18, 2), _edges([10**18 - 1, -(10**18) + 1],
                                         st.integers(-(10**18) + 1, 10**18 - 1))
            .map(lambda n: None if n is None else _scaled(2)(n))),
    "s": (pa.string(), st.one_of(st.none(), st.sampled_from(["", "\x00", "é"]),
                                 st.text(max_size=3))),
    "bin": (pa.binary(), st.one_of(st.none(), st.binary(max_size=3))),
    "day": (pa.date32(), st.one_of(st.none(), st.dates())),
    "ns": (pa.timestamp("ns"), _edges([*NS, 0, 1000000999, -1], st.integers(*NS))),
    "utc": (pa.timestamp("us", tz="UTC"), _edges([0, -1, *MICROS_1_9999],
                                                  st.integers(*MICROS_1_9999))),
}
NO_EQUALITY = {"bin"}  # no binary literals in plans


@st.composite
def tables(draw) -> tuple[pa.Table, int, frozenset[str]]:
    rows = draw(st.integers(1, 12))
    data = {name: draw(st.lists(values, min_size=rows, max_size=rows))
            for name, (_, values) in COLUMNS.items()}
    if draw(st.booleans()):  # constant partitions
        data = {name: sorted(v, key=repr) for name, v in data.items()}
    encoded = draw(st.frozensets(st.sampled_from(sorted(COLUMNS))))
    arrays = {}
    for name, values in data.items():
        arr = pa.array(values, COLUMNS[name][0])
        arrays[name] = arr.dictionary_encode() if name in encoded else arr
    return pa.table(arrays), draw(st.integers(1, rows)), encoded


def _is_nan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def _expected(values: list[Any], dialect: str, needle: Any) -> tuple[int, int, Any, Any, int]:
    """COUNT(*), COUNT(c), MIN, MAX, COUNT(*) WHERE c = needle, exactly: SQL puts NaN above
    +inf and NaN = NaN; pandas treats NaN as missing."""
    present = [v for v in values if v is not None and not (dialect == "pandas" and _is_nan(v))]
    ordered = sorted(present, key=lambda v: (1, 0.0) if _is_nan(v) else (0, v))
    matches = sum(1 for v in present if (_is_nan(v) and _is_nan(needle)) or v == needle)
    return (len(values), len(present), ordered[0] if ordered else None,
            ordered[-1] if ordered else None, matches)


def _same(a: Any, b: Any) -> bool:
    return (_is_nan(a) and _is_nan(b)) or (a == b and type(a) is type(b))


def _as_exact(column: pa.ChunkedArray) -> list[Any]:
    """Results as exact Python values: timestamps as integer counts of their unit."""
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.int64())
    return column.to_pylist()


def _literal(value: Any, t: pa.DataType) -> Literal:
    return Literal(value, result_type=t if pa.types.is_timestamp(t) else None)


@given(tables(), st.sampled_from(["sql", "pandas"]), st.data())
@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
def test_edge_values_of_every_type_are_answered_exactly(agents, client, case, dialect,
                                                        data) -> None:
    table, partition_rows, encoded = case
    client.write("edges", table, partition_rows=partition_rows, overwrite=True)
    for engine in _engines(agents[0]):
        for name, (t, _) in COLUMNS.items():
            values = table.column(name).cast(t).cast(pa.int64()).to_pylist() \
                if pa.types.is_timestamp(t) else table.column(name).to_pylist()
            present = [v for v in values if v is not None] or [values[0]]
            needle = data.draw(st.sampled_from(present))
            want = _expected(values, dialect, needle)
            where = f"{name} ({'dictionary' if name in encoded else 'plain'} {t}) on {engine}"
            try:
                got = client.aggregate("edges", [count_star(), count(name), min_(name),
                                                 max_(name)], dialect=dialect, engine=engine)
                row = [_as_exact(c)[0] for c in got.columns]
                assert all(_same(g, w) or (g == w and isinstance(w, D.Decimal))
                           for g, w in zip(row, want[:4], strict=True)), (where, row, want)
                if name not in NO_EQUALITY and needle is not None:
                    lit = col(name).eq(_literal(needle, t))
                    hits = client.aggregate("edges", [count_star()], where=lit, dialect=dialect,
                                            engine=engine).column(0)[0].as_py()
                    assert hits == want[4], (where, "=", needle, hits, want[4])
            except Unsupported as exc:  # a forced in-kernel engine may refuse, naming why
                assert engine != "arrow" and engine in str(exc), (where, exc)


def _answer(client, engine: str, dataset: str, aggregates: list, **kwargs: Any) -> Any:
    """The one result row, or None when a forced in-kernel engine refuses, naming itself."""
    try:
        return client.aggregate(dataset, aggregates, engine=engine, **kwargs).to_pylist()[0]
    except Unsupported as exc:
        assert engine in ("bpf", "bcc") and engine in str(exc), exc
        return None


def test_dictionary_encoded_floats_follow_the_nan_rules(agents, client) -> None:
    """W6: the same float64 values, plain or dictionary<int32, float64>, give one answer."""
    values = pa.array([1.0, NAN, 2.0, NAN, 5.0])
    client.write("w6_plain", pa.table({"f": values}), overwrite=True)
    client.write("w6_dict", pa.table({"f": values.dictionary_encode()}), overwrite=True)
    for engine in [*_engines(agents[0]), "auto"]:
        for name in ("w6_plain", "w6_dict"):
            sql = _answer(client, engine, name, [max_("f"), count("f")])
            assert sql is None or (math.isnan(sql["max(f)"]) and sql["count(f)"] == 5), sql
            pandas = _answer(client, engine, name, [count("f"), max_("f")], dialect="pandas")
            assert pandas in (None, {"count(f)": 3, "max(f)": 5.0}), (name, pandas)
            for where, want in [(col("f").eq(NAN), 2), (col("f") > 1.5, 4)]:
                got = _answer(client, engine, name, [count_star()], where=where)
                assert got in (None, {"count(*)": want}), (name, engine, where, got)
        total = client.aggregate(name, [sum_("f")]).column(0)[0].as_py()  # float sums: arrow
        assert math.isnan(total), (name, total)


def test_dictionary_encoded_integers_sum_exactly(client) -> None:
    values = pa.array([2**63 - 1, 2**63 - 1, None, -5], pa.int64()).dictionary_encode()
    client.write("w6_ints", pa.table({"k": values}), overwrite=True)
    got = client.aggregate("w6_ints", [sum_("k"), min_("k"), max_("k")]).to_pylist()[0]
    assert got == {"sum(k)": 2 * (2**63 - 1) - 5, "min(k)": -5, "max(k)": 2**63 - 1}


def test_nanosecond_literals_find_their_rows(agents, client) -> None:
    """W5: `ts = 1000000999 ns` finds the row holding exactly that value, on every engine."""
    ts = pa.array([1000000000, 1000000999, 1000001000, 2000000000], pa.timestamp("ns"))
    days = pa.array([0, 0, 1, 2], pa.date32())  # a date compares as its midnight
    client.write("w5", pa.table({"ts": ts, "day": days}), overwrite=True)
    day = 86_400 * 10**9

    def at(n: int) -> Literal:
        return Literal(n, result_type=pa.timestamp("ns"))

    for engine in _engines(agents[0]):
        for where, want in [(col("ts").eq(at(1000000999)), 1), (col("ts") > at(1000000998), 3),
                            (col("ts") < at(1000000999), 1), (at(1000000999).eq(col("ts")), 1),
                            (col("ts").isin([at(1000000999), at(5)]), 1),
                            (col("day") > at(1), 2), (col("day") >= at(day + 1), 1),
                            (col("day").eq(at(day + 1)), 0), (col("day") < at(day + 1), 3)]:
            got = client.aggregate("w5", [count_star()], where=where, engine=engine)
            assert got.column(0)[0].as_py() == want, (engine, where)


# -- malformed and unsupported requests ------------------------------------------------------

@pytest.fixture(scope="module")
def stub(agents, client) -> agent_pb2_grpc.AgentStub:
    client.write("hostile", pa.table({"a": pa.array([1, 2, 3], pa.int64()),
                                      "ts": pa.array([1, 2, 3], pa.timestamp("ns"))}),
                 replicas=3, overwrite=True)
    return agent_pb2_grpc.AgentStub(grpc.insecure_channel(agents[0].address))


def _compare(column: str, literal: plan_pb.Literal) -> plan_pb.Plan:
    return plan_pb.Plan(dataset="hostile", filter=plan_pb.Expr(compare=plan_pb.Compare(
        op=plan_pb.LT, left=plan_pb.Expr(column=plan_pb.Column(name=column)),
        right=plan_pb.Expr(literal=literal))), aggregates=[plan_pb.Aggregate(
            func=plan_pb.COUNT_STAR)])


def _typed(type_: str, **value: Any) -> plan_pb.Literal:
    return plan_pb.Literal(type=plan_pb.DataType(arrow=type_), **value)


INVALID = grpc.StatusCode.INVALID_ARGUMENT
HOSTILE_PLANS = [
    ("decimal256 cast", lambda: wire.plan_to_proto(Plan("hostile", aggregates=(
        sum_(Cast(col("a"), pa.decimal256(40, 0))),))), "decimal precision 40 exceeds 38"),
    ("unknown time zone", lambda: _compare("ts", _typed("timestamp[ns, tz=Nowhere/Land]",
                                                        timestamp_value=5)),
     "unknown time zone 'Nowhere/Land'"),
    ("10,000-digit decimal", lambda: _compare("a", plan_pb.Literal(decimal_value="7" * 10_000)),
     "is too long: at most 38 digits"),
    ("typed 10,000-digit decimal", lambda: _compare("a", _typed(
        "decimal128(38, 0)", decimal_value="7" * 10_000)), "is too long"),
    ("ns literal beyond datetime", lambda: _compare("ts", _typed(
        "timestamp[s]", timestamp_value=2**62)), "out of range"),
    ("year 9999 against ns", lambda: _compare("ts", _typed(
        "timestamp[us]", timestamp_value=MICROS_1_9999[1])), r"does not fit timestamp\[ns\]"),
    ("10,000-character name", lambda: plan_pb.Plan(dataset="x" * 10_000, aggregates=[
        plan_pb.Aggregate(func=plan_pb.COUNT_STAR)]), r"invalid dataset name 'x+\.\.\."),
]


@pytest.mark.parametrize(("make_plan", "words"), [c[1:] for c in HOSTILE_PLANS],
                         ids=[c[0] for c in HOSTILE_PLANS])
def test_hostile_plans_are_refused_by_name(stub, make_plan, words) -> None:
    code, details = _status(lambda: stub.Aggregate(pb.AggregateRequest(plan=make_plan()),
                                                   timeout=10))
    assert code == INVALID, (code, details)
    assert re.search(words, details), details
    assert len(details) < 500
    _still_serving(stub)


def test_scan_with_negative_batch_rows_is_refused(stub) -> None:
    code, details = _status(lambda: list(stub.Scan(pb.ScanRequest(
        plan=plan_pb.Plan(dataset="hostile"), batch_rows=-1), timeout=10)))
    assert code == INVALID and "batch_rows must be positive" in details, details
    _still_serving(stub)


HOSTILE_WRITES = [
    ("duplicate names", pa.table([pa.array([1]), pa.array([2])], names=["a", "a"]),
     "duplicate column names: ['a']"),
    ("time32", pa.table({"t": pa.array([1], pa.time32("s"))}), "type time32[s] is not supported"),
    ("time64", pa.table({"t": pa.array([1], pa.time64("us"))}), "type time64[us] is not supported"),
    ("decimal256", pa.table({"d": pa.array([D.Decimal(1)], pa.decimal256(50, 0))}),
     "decimal precision 50 exceeds 38"),
    ("unknown zone", pa.table({"t": pa.array([1], pa.timestamp("s", tz="Mars/Olympus"))}),
     "unknown time zone 'Mars/Olympus'"),
    ("10,000-character column", pa.table({"c" * 10_000: pa.array([1], pa.duration("s"))}),
     "(10002 characters): type duration[s] is not supported"),
]


@pytest.mark.parametrize(("table", "words"), [c[1:] for c in HOSTILE_WRITES],
                         ids=[c[0] for c in HOSTILE_WRITES])
def test_unstorable_writes_are_refused_by_name(stub, table, words) -> None:
    code, details = _status(lambda: stub.Write(iter([pb.WriteChunk(
        dataset="unstorable", arrow_ipc=ipc_bytes(table))]), timeout=10))
    assert code == INVALID and words in details, (code, details)
    listed = stub.ListDatasets(pb.ListDatasetsRequest()).datasets
    assert "unstorable" not in [d.name for d in listed]
    _still_serving(stub)


def test_fixed_size_binary_is_stored_as_binary(client) -> None:
    client.write("fsb", pa.table({"b": pa.array([b"ab", b"cd", None], pa.binary(2))}),
                 overwrite=True)
    assert client.describe("fsb").schema.field("b").type == pa.binary()
    got = client.aggregate("fsb", [count("b"), min_("b"), max_("b")]).to_pylist()[0]
    assert got == {"count(b)": 2, "min(b)": b"ab", "max(b)": b"cd"}


def _status(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def _still_serving(stub) -> None:
    got = stub.Aggregate(pb.AggregateRequest(plan=wire.plan_to_proto(Plan(
        "hostile", aggregates=(sum_("a"),)))), timeout=10)
    assert got.partials, "the agent still answers"



def test_values_python_cannot_hold_are_stored_and_counted(client) -> None:
    """A timestamp before year 1 and a date after 9999 are legal Arrow values: the dataset
    describes (those bounds stay unknown to the client) and queries count them."""
    table = pa.table({"ts": pa.array([-62_135_596_801, 0], pa.timestamp("s")),
                      "d": pa.array([3_000_000, 0], pa.date32())})
    client.write("beyond_python", table, overwrite=True)
    stats = client.describe("beyond_python").partitions[0].stats
    assert "min" not in stats["ts"] and stats["ts"]["max"] is not None
    assert "max" not in stats["d"] and stats["d"]["min"] is not None
    got = client.aggregate("beyond_python", [count_star(), count("ts")],
                           where=col("ts") >= Literal(0, result_type=pa.timestamp("s")))
    assert got.to_pylist() == [{"count_star()": 1, "count(ts)": 1}] or \
        list(got.to_pylist()[0].values()) == [1, 1]
