"""Storage on one agent: atomic commits, names, type normalization, stats, recovery."""

from __future__ import annotations

import decimal as D
import os

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
    s = Storage(tmp_path, retention_seconds=0)  # superseded versions go at once
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
