"""The pure parts of the Spark front end: the extension's JSON -> plans, partials -> Spark's
buffer types (overflow as Spark's buffers overflow), pushFilters translation, and how
aggregate tasks group partitions."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("pyspark")

from pyspark.sql import datasource as ds  # noqa: E402

from bpfstore.connector.spark.filters import split_filters  # noqa: E402
from bpfstore.connector.spark.spec import AggSpec, expr_from_json, to_buffers  # noqa: E402
from bpfstore.connector.spark.types import arrow_type  # noqa: E402
from bpfstore.contract.errors import ArithmeticOverflow  # noqa: E402
from bpfstore.contract.plan import (  # noqa: E402
    AggFunc,
    And,
    Arith,
    ArithOp,
    Cast,
    Column,
    Compare,
    CompareOp,
    KeySet,
    Literal,
    Overflow,
)

COL = {"col": "d"}


def test_expressions_keep_spark_types_and_modes() -> None:
    j = {"op": ">=", "args": [
        {"op": "*", "args": [COL, {"lit": "1.50", "type": "DECIMAL(3,2)"}],
         "type": "DECIMAL(19,4)", "ansi": False},
        {"op": "cast", "args": [{"lit": "8766", "type": "DATE"}], "type": "DOUBLE", "ansi": True}]}
    e = expr_from_json(j)
    assert e == Compare(CompareOp.GE,
                        Arith(ArithOp.MUL, Column("d"),
                              Literal(Decimal("1.50"), result_type=pa.decimal128(3, 2)),
                              result_type=pa.decimal128(19, 4), overflow=Overflow.NULL),
                        Cast(Literal(dt.date(1994, 1, 1), result_type=pa.date32()), pa.float64(),
                             result_type=pa.float64(), overflow=Overflow.ERROR))
    assert arrow_type("STRING") == pa.string() and arrow_type("INT") == pa.int32()


def _spec(ansi: bool) -> AggSpec:
    return AggSpec.parse(json.dumps({"filter": None, "groups": ["k"], "partials": [
        {"fn": "sum", "arg": COL, "type": "DECIMAL(3,0)", "ansi": ansi},
        {"fn": "count_star", "type": "BIGINT"},
        {"fn": "sum", "arg": {"col": "i"}, "type": "BIGINT", "ansi": ansi},
        *([] if ansi else [{"fn": "ovf", "of": 0}])]}))


def _partials() -> pa.Table:
    return pa.table({"k": ["a", "b"], "__agg_0": pa.array([Decimal(999), Decimal(1000)],
                                                          pa.decimal128(38, 0)),
                     "__agg_1": [3, 4],
                     "__agg_2": pa.array([Decimal(2**63), Decimal(5)], pa.decimal128(38, 0))})


@pytest.mark.parametrize(("spark_type", "texts", "values"), [
    ("BIGINT", ["3", "-9223372036854775808", None, "3"], [3, -(2**63), None, 3]),
    ("DATE", ["0", "19000"], [dt.date(1970, 1, 1), dt.date(2022, 1, 8)]),
    ("DECIMAL(38,2)", ["99999999999999999999999999999999999.99", "-0.01"],
     [Decimal("99999999999999999999999999999999999.99"), Decimal("-0.01")]),
    ("STRING", ["", "naïve", "\u0000x"], ["", "naïve", "\u0000x"]),
])
def test_key_sets_keep_every_key_exactly(spark_type: str, texts: list, values: list) -> None:
    """The extension's large IN sets (join keys) arrive as one key set of Spark's type."""
    j = {"op": "in_keys", "args": [COL], "type": spark_type, "keys": texts}
    e = expr_from_json(json.loads(json.dumps(j)))
    assert isinstance(e, KeySet) and e.arg == Column("d")
    assert e.keys.type == arrow_type(spark_type)
    assert e.keys.to_pylist() == values


def test_partials_overflow_like_spark_buffers() -> None:
    legacy = _spec(ansi=False)
    assert [a.func for a in legacy.aggregates] == [AggFunc.SUM, AggFunc.COUNT_STAR, AggFunc.SUM]
    target = pa.schema([("k", pa.string()), ("s", pa.decimal128(3, 0)), ("n", pa.int64()),
                        ("si", pa.int64()), ("o", pa.bool_())])
    out = to_buffers(_partials(), legacy, target)
    assert out.schema == target
    assert out.column(1).to_pylist() == [Decimal(999), None]  # NULL + flag: Spark's legacy sum
    assert out.column(4).to_pylist() == [False, True]
    assert out.column(3).to_pylist() == [-(2**63), 5]  # a legacy long sum wraps around
    with pytest.raises(ArithmeticOverflow):
        to_buffers(_partials(), _spec(ansi=True), target.remove(4))


def test_push_filters_accepts_only_what_binds() -> None:
    schema = pa.schema([("id", pa.int64()), ("k", pa.string()), ("t", pa.timestamp("us"))])
    filters = [ds.GreaterThan(("id",), 5), ds.In(("k",), ("a", "b")), ds.IsNotNull(("k",)),
               ds.Not(ds.EqualTo(("id",), 3)), ds.EqualNullSafe(("k",), None),
               ds.StringStartsWith(("k",), "x"), ds.EqualTo(("id",), "text"),
               ds.GreaterThan(("t",), dt.datetime(2020, 1, 1)), ds.EqualTo(("a", "b"), 1)]
    accepted, rejected = split_filters(filters, schema)
    assert len(accepted) == 5
    assert rejected == filters[5:]


def test_long_in_filters_become_key_sets_that_bind() -> None:
    """Spark's IN of a join's keys (thousands of values) is one key set, checked like any
    other filter: keys that cannot be compared exactly with the column stay with Spark."""
    schema = pa.schema([("id", pa.int64()), ("k", pa.string())])
    many = tuple(range(0, 3000, 3)) + (None,)
    filters = [ds.In(("id",), many), ds.In(("k",), tuple(f"s{i}" for i in range(40))),
               ds.In(("id",), tuple(f"s{i}" for i in range(40))),
               ds.In(("id",), tuple(i + 0.5 for i in range(40)))]
    accepted, rejected = split_filters(filters, schema)
    assert rejected == filters[2:]
    assert [type(e) for e in accepted] == [KeySet, KeySet]
    assert accepted[0].keys.to_pylist() == list(many)


def test_pushfilters_keeps_one_copy_of_a_key_set() -> None:
    """The extension's filter tree already holds the join's key set; the same keys arriving
    again from Spark's pushFilters (in another order) are not added."""
    from pyspark.sql.datasource import CaseInsensitiveDict
    from pyspark.sql.types import LongType, StructField, StructType

    from bpfstore.connector.spark.source import FilteringReader

    tree = {"op": "in_keys", "args": [{"col": "id"}], "type": "BIGINT",
            "keys": [str(i) for i in range(40)]}
    reader = FilteringReader([], "t", StructType([StructField("id", LongType())]),
                             CaseInsensitiveDict({"bpfstore.filter": json.dumps(tree)}))
    reader.desc = type("D", (), {"schema": pa.schema([("id", pa.int64())])})()
    before = reader.where
    assert reader.pushFilters([ds.In(("id",), tuple(reversed(range(40))))]) == []
    assert reader.where == before
    reader.pushFilters([ds.In(("id",), tuple(range(41)))])  # other keys: both kept
    assert isinstance(reader.where, And) and len(reader.where.args) == 2


def test_pushfilters_only_when_spark_will_call_it() -> None:
    """Spark fails every read of a reader with pushFilters unless its setting is on, so a plain
    session (no configure()) gets the reader without it."""
    from pyspark.sql.datasource import CaseInsensitiveDict, DataSourceReader
    from pyspark.sql.types import LongType, StructField, StructType

    from bpfstore.connector.spark.source import BpfstoreDataSource

    schema = StructType([StructField("id", LongType())])
    plain = BpfstoreDataSource(CaseInsensitiveDict({"path": "t"})).reader(schema)
    pushing = BpfstoreDataSource(CaseInsensitiveDict({"path": "t", "pushFilters": "true"}))
    assert plain.pushFilters.__func__ is DataSourceReader.pushFilters
    assert pushing.reader(schema).pushFilters.__func__ is not DataSourceReader.pushFilters


@given(st.lists(st.integers(0, 3), max_size=80), st.integers(1, 20))
@settings(max_examples=200, deadline=None)
def test_aggregate_task_groups(holders: list[int], per_task: int) -> None:
    """Every partition in exactly one task, in dataset order; one replica list per task; as
    few tasks per replica list as `per_task` allows, of sizes differing by at most one."""
    from types import SimpleNamespace

    from bpfstore.connector.spark.source import task_groups

    parts = [SimpleNamespace(id=str(i), agents=(f"agent{h}",)) for i, h in enumerate(holders)]
    groups = task_groups(parts, per_task)
    assert sorted(int(p.id) for g in groups for p in g) == list(range(len(parts)))
    for h in set(holders):
        mine = [g for g in groups if g[0].agents == (f"agent{h}",)]
        assert all(len({p.agents for p in g}) == 1 for g in mine)
        assert all([int(p.id) for p in g] == sorted(int(p.id) for p in g) for g in mine)
        assert len(mine) == -(-holders.count(h) // per_task)
        sizes = [len(g) for g in mine]
        assert max(sizes) <= per_task and max(sizes) - min(sizes) <= 1


def test_explain_stays_a_function_after_its_first_call() -> None:
    """`explain` imports its module lazily: loading that module must not rebind the
    package's `explain` (a submodule of the same name did, so a second import got a module)."""
    import bpfstore.connector.spark as spark_front
    import bpfstore.connector.spark.plan_summary  # noqa: F401 - what the first call loads
    from bpfstore.connector.spark import explain

    assert callable(explain) and callable(spark_front.explain)
