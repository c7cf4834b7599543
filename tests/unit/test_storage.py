"""Storage on one agent: atomic commits, names, type normalization, stats, recovery."""

from __future__ import annotations

import decimal as D
import os
import re

import pyarrow as pa
import pytest

from bpfstore.contract.errors import (
    DatasetExists,
    DatasetNotFound,
    PlanInvalid,
    VersionGone,
    WriteConflict,
)
from bpfstore.node_agent.catalog import validate_name
from bpfstore.node_agent.storage import LOCAL_TXN, Storage


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
# -- versions: stage, prepare, commit, recover ---------------------------------------------


def _rows_of(s: Storage, meta) -> int:  # type: ignore[no-untyped-def]
    return sum(s.read(meta.name, p.id, meta).num_rows for p in meta.partitions)


def test_staged_partitions_are_invisible_until_their_write_commits(tmp_path) -> None:
    s = Storage(tmp_path)
    s.write("t", [ipc(TABLE)])
    for pid in ("a", "b"):
        s.stage("t", [ipc(TABLE)], "txn1", partition=pid)
    assert s.get("t").version == 1 and len(s.get("t").partitions) == 1
    assert s.prepare("t", "txn1", 0, True, ["a", "b"]) == 2
    assert s.get("t").version == 1  # prepared is not visible either ...
    assert [p.id for p in s.version("t", 2).partitions] == ["a", "b"]  # ... unless asked for
    assert s.status("t", "txn1") == "prepared"
    with pytest.raises(WriteConflict, match="another write"):
        s.write("t", [ipc(TABLE)])  # one prepared write per dataset at a time
    meta = s.commit("t", "txn1")
    assert (meta.version, [p.id for p in meta.partitions]) == (2, ["a", "b"])
    assert s.commit("t", "txn1").version == 2  # a retried commit
    assert s.status("t", "txn1") == "committed"
    old = s.version("t", 1)  # the superseded version stays readable, whole
    assert _rows_of(s, old) == 3 and _rows_of(s, s.get("t")) == 6


def test_prepared_write_survives_a_restart_and_a_staged_one_does_not(tmp_path) -> None:
    s = Storage(tmp_path)
    s.write("t", [ipc(TABLE)])
    s.stage("t", [ipc(TABLE)], "prepared", partition="p")
    s.prepare("t", "prepared", 0, False, ["p"], primary="peer:1")
    s.stage("t", [ipc(TABLE)], "staged", partition="q")
    s3 = Storage(tmp_path)  # a crash: the never-prepared staging of another write is gone
    assert "q.arrow" not in os.listdir(tmp_path / "datasets" / "t")
    pending = s3.pending("t")
    assert pending is not None and (pending.txn, pending.primary) == ("prepared", "peer:1")
    assert s3.get("t").version == 1
    assert s3.commit("t", "prepared").version == 2 and _rows_of(s3, s3.get("t")) == 6


def test_one_shot_write_cut_between_prepare_and_commit_is_aborted_at_restart(tmp_path) -> None:
    """A Write without a txn has no client that could still commit it: a crash after its
    prepare leaves the old version, and no prepared record waiting for a coordinator."""
    s = Storage(tmp_path, retention_seconds=0)
    s.write("t", [ipc(TABLE)])
    before = set(os.listdir(tmp_path / "datasets" / "t"))
    txn = f"{LOCAL_TXN}cut"
    s.stage("t", [ipc(TABLE)], txn, partition="p")
    s.prepare("t", txn, 0, False, ["p"])  # the crash comes before write()'s commit
    s2 = Storage(tmp_path)
    assert s2.pending("t") is None and s2.get("t").version == 1
    assert set(os.listdir(tmp_path / "datasets" / "t")) == before


def test_aborted_write_leaves_the_dataset_and_its_files_as_before(tmp_path) -> None:
    s = Storage(tmp_path, retention_seconds=0)
    _, pid, _ = s.write("t", [ipc(TABLE)])
    before = set(os.listdir(tmp_path / "datasets" / "t"))
    s.stage("t", [ipc(TABLE)], "x", partition="p")
    s.prepare("t", "x", 0, True, ["p"])
    s.abort("t", "x")
    assert set(os.listdir(tmp_path / "datasets" / "t")) == before
    assert s.status("t", "x") == "unknown" and s.get("t").partitions[0].id == pid
    with pytest.raises(WriteConflict, match="not prepared"):
        s.commit("t", "x")
    s.stage("new", [ipc(TABLE)], "y", partition="p")  # a first write aborted: no dataset
    s.abort("new", "y")
    assert s.names() == ["t"] and not (tmp_path / "datasets" / "new").exists()


def test_pinned_version_outlives_its_retention_only_while_read(tmp_path) -> None:
    s = Storage(tmp_path, retention_seconds=0)
    s.write("t", [ipc(TABLE)])
    with s.pinned("t", 1) as meta:
        s.write("t", [ipc(TABLE)], overwrite=True)
        assert _rows_of(s, meta) == 3  # its files are still there
    s.sweep()
    with pytest.raises(VersionGone, match="re-plan"):
        s.version("t", 1)
    assert len(os.listdir(tmp_path / "datasets" / "t")) == 2  # catalog + the new partition


def test_prepare_names_every_partition_it_commits(tmp_path) -> None:
    s = Storage(tmp_path)
    s.stage("t", [ipc(TABLE)], "x", partition="a")
    s.stage("t", [ipc(TABLE)], "x", partition="b")  # e.g. of a Spark task that failed
    with pytest.raises(WriteConflict, match="not staged"):
        s.prepare("t", "x", 0, True, ["a", "c"])
    s.prepare("t", "x", 0, True, ["a"])
    assert [p.id for p in s.commit("t", "x").partitions] == ["a"]
    assert sorted(os.listdir(tmp_path / "datasets" / "t")) == ["_dataset.json", "a.arrow"]
