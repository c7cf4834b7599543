"""Storage on one agent: atomic commits, names, type normalization, stats, recovery."""

from __future__ import annotations

import decimal as D
import os
import re

import pyarrow as pa
import pytest

from bpfstore.connector.errors import DatasetExists, DatasetNotFound, PlanInvalid
from bpfstore.node_agent.storage import Storage, validate_name


def ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


TABLE = pa.table({
    "price": pa.array([D.Decimal("1.50"), None, D.Decimal("-2.25")], pa.decimal128(15, 2)),
    "wide": pa.array([D.Decimal("1.5")] * 3, pa.decimal128(30, 1)),
    "name": pa.array(["x", "y", None], pa.large_string()),
    "n": pa.array([1, 2, 3], pa.int64()),
})


def test_normalizes_types_for_pushdown(tmp_path) -> None:
    s = Storage(tmp_path)
    meta, pid, rows = s.write("t", [ipc(TABLE)])
    assert rows == 3
    assert meta.schema.field("price").type == pa.decimal64(15, 2)
    assert meta.schema.field("wide").type == pa.decimal128(30, 1)
    assert meta.schema.field("name").type == pa.dictionary(pa.int32(), pa.string())
    back = s.read("t", pid)
    assert back.column("price").cast(pa.decimal128(15, 2)).to_pylist() == \
        TABLE.column("price").to_pylist()
    stats = meta.partition(pid).stats
    assert (stats["price"].min, stats["price"].max, stats["price"].null_count) == \
        ("-2.25", "1.50", 1)
    assert (stats["name"].min, stats["name"].max) == ("x", "y")


def test_a_partition_is_an_uncompressed_arrow_ipc_file(tmp_path) -> None:
    s = Storage(tmp_path)
    _, pid, _ = s.write("t", [ipc(TABLE)])
    with open(s.partition_path("t", pid), "rb") as f:
        assert f.read(6) == b"ARROW1"


@pytest.mark.parametrize("name", ["../etc", "a/b", "..", ".hidden", "", "x" * 200, "a\x00b",
                                  "-rf"])
def test_hostile_names_are_rejected(tmp_path, name) -> None:
    with pytest.raises(PlanInvalid, match="invalid dataset name"):
        Storage(tmp_path).write(name, [ipc(TABLE)])
    assert not any(p.name != "datasets" for p in tmp_path.iterdir())


@pytest.mark.parametrize("pieces", [
    lambda b: [b[: len(b) // 2]],  # truncated
    lambda b: [b"garbage" * 10],
    lambda b: [],
])
def test_bad_streams_leave_nothing_behind(tmp_path, pieces) -> None:
    s = Storage(tmp_path)
    with pytest.raises(PlanInvalid, match="not a complete Arrow IPC stream|no columns"):
        s.write("t", pieces(ipc(TABLE)))
    assert s.names() == []
    assert list((tmp_path / "datasets").rglob("*")) == []


def test_failed_append_keeps_the_dataset_as_it_was(tmp_path) -> None:
    s = Storage(tmp_path)
    meta, pid, _ = s.write("t", [ipc(TABLE)])
    before = sorted(os.listdir(tmp_path / "datasets" / "t"))
    with pytest.raises(PlanInvalid, match="schema of the new partition does not match"):
        s.write("t", [ipc(pa.table({"other": [1]}))])
    with pytest.raises(DatasetExists):
        s.write("t", [ipc(TABLE)], partition=pid)
    assert sorted(os.listdir(tmp_path / "datasets" / "t")) == before
    assert s.get("t").version == meta.version


def test_overwrite_replaces_and_drop_removes(tmp_path) -> None:
    s = Storage(tmp_path)
    s.write("t", [ipc(TABLE)])
    s.write("t", [ipc(TABLE)])
    meta, pid, _ = s.write("t", [ipc(pa.table({"other": [1, 2]}))], overwrite=True)
    assert [p.id for p in meta.partitions] == [pid]
    assert set(os.listdir(tmp_path / "datasets" / "t")) == {"_dataset.json", f"{pid}.arrow"}
    assert s.drop("t") and not s.drop("t")
    with pytest.raises(DatasetNotFound):
        s.get("t")


def test_recovery_removes_leftovers_of_interrupted_writes(tmp_path) -> None:
    s = Storage(tmp_path)
    _, pid, _ = s.write("t", [ipc(TABLE)])
    d = tmp_path / "datasets" / "t"
    (d / ".incoming-123.tmp").write_bytes(b"half a stream")
    (d / "orphan.arrow").write_bytes(b"never committed")
    (tmp_path / "datasets" / "never_committed").mkdir()
    s2 = Storage(tmp_path)
    assert set(os.listdir(d)) == {"_dataset.json", f"{pid}.arrow"}
    assert s2.names() == ["t"]
    assert s2.verify("t", pid)


def test_checksum_detects_corruption(tmp_path) -> None:
    s = Storage(tmp_path)
    _, pid, _ = s.write("t", [ipc(TABLE)])
    path = s.partition_path("t", pid)
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    assert not s.verify("t", pid)


def test_validate_name_accepts_ordinary_names() -> None:
    for name in ["lineitem", "tpch.sf1", "a-b_c.2"]:
        assert validate_name("dataset", name) == name


def test_stats_count_nulls_of_dictionary_columns(tmp_path) -> None:
    s = Storage(tmp_path)
    meta, pid, _ = s.write("t", [ipc(pa.table({"k": ["a", None, "b", None, "a"]}))])
    stats = meta.partition(pid).stats["k"]
    assert (stats.null_count, stats.min, stats.max) == (2, "a", "b")


PLAIN = pa.table({
    "f": pa.array([1.0, float("nan"), None, -0.0, float("inf"), float("nan")]),
    "i": pa.array([2**63 - 1, -(2**63), None, 0, 5, 5], pa.int64()),
    "u": pa.array([2**64 - 1, 0, None, 1, 1, 7], pa.uint64()),
    "d": pa.array([D.Decimal("1.25"), None, D.Decimal("-9.99"), None, D.Decimal("0"),
                   D.Decimal("1.25")], pa.decimal128(10, 2)),
    "ts": pa.array([1000000999, None, 5, 5, -1, 0], pa.timestamp("ns")),
    "day": pa.array([0, 1, None, 1, 2, 3], pa.date32()),
    "b": pa.array([True, None, False, True, True, False]),
    "bin": pa.array([b"", b"a", None, b"\x00", b"a", b"z"]),
    "s": pa.array(["", "a", None, "a", "b", "c"]),
})


def test_dictionary_encoded_columns_are_stored_like_plain_ones(tmp_path) -> None:
    """W6: a dictionary of floats (or of any non-string type) is stored plain, so every engine
    and the statistics apply the value type's own rules (NaN, overflow, exact sums)."""
    s = Storage(tmp_path)
    encoded = pa.table({n: c.dictionary_encode() for n, c in zip(
        PLAIN.column_names, PLAIN.columns, strict=True)})
    plain_meta, plain_pid, _ = s.write("plain", [ipc(PLAIN)])
    meta, pid, _ = s.write("encoded", [ipc(encoded)])
    assert meta.schema.equals(plain_meta.schema)
    assert [f.name for f in meta.schema if pa.types.is_dictionary(f.type)] == ["s"]
    assert repr(s.read("encoded", pid).to_pydict()) == repr(s.read("plain", plain_pid).to_pydict())
    assert meta.partition(pid).stats == plain_meta.partition(plain_pid).stats


@pytest.mark.parametrize(("column", "words"), [
    (pa.array([1], pa.time32("s")), "'c': type time32[s] is not supported"),
    (pa.array([1], pa.time64("ns")), "'c': type time64[ns] is not supported"),
    (pa.array([1], pa.duration("s")), "'c': type duration[s] is not supported"),
    (pa.array([[1]]), "'c': type list<item: int64> is not supported"),
    (pa.array([1], pa.timestamp("us", tz="Nowhere/Land")), "unknown time zone 'Nowhere/Land'"),
    (pa.array([D.Decimal(1)], pa.decimal256(40, 0)), "decimal precision 40 exceeds 38"),
])
def test_unsupported_column_types_are_refused_by_name(tmp_path, column, words) -> None:
    s = Storage(tmp_path)
    with pytest.raises(PlanInvalid, match=re.escape(words)):
        s.write("t", [ipc(pa.table({"c": column}))])
    assert s.names() == []


def test_duplicate_column_names_are_refused(tmp_path) -> None:
    s = Storage(tmp_path)
    table = pa.table([pa.array([1]), pa.array([2]), pa.array([3])], names=["a", "b", "a"])
    with pytest.raises(PlanInvalid, match=r"duplicate column names: \['a'\]"):
        s.write("t", [ipc(table)])


def test_fixed_size_binary_is_stored_as_binary(tmp_path) -> None:
    s = Storage(tmp_path)
    meta, pid, _ = s.write("t", [ipc(pa.table({"c": pa.array([b"ab", None], pa.binary(2))}))])
    assert meta.schema.field("c").type == pa.binary()
    assert s.read("t", pid).column("c").to_pylist() == [b"ab", None]


def test_echoed_names_are_capped() -> None:
    with pytest.raises(PlanInvalid, match=r"\(10002 characters\)") as info:
        validate_name("dataset", "x" * 10_000)
    assert len(str(info.value)) < 300
