"""read_source on small files: Parquet, CSV, Arrow IPC (file and stream), folders, errors."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from bpfstore.connector.ingest import SourceError, read_source
from bpfstore.contract.errors import BpfstoreError

TABLE = pa.table({
    "id": pa.array([1, 2, 3], pa.int64()),
    "price": pa.array([Decimal("1.10"), None, Decimal("-3.25")], pa.decimal128(9, 2)),
    "name": pa.array(["a", "b", None]),
    "day": pa.array([dt.date(1994, 1, 1), dt.date(1995, 6, 30), None]),
})


def read_all(path: Path) -> tuple[pa.Schema, int | None, pa.Table]:
    schema, rows, batches = read_source(str(path))
    return schema, rows, pa.Table.from_batches(list(batches), schema=schema)


def write_ipc_file(path: Path, table: pa.Table) -> None:
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
        for batch in table.to_batches(max_chunksize=2):
            w.write_batch(batch)


def write_ipc_stream(path: Path, table: pa.Table) -> None:
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)


def test_parquet_file_with_row_count_from_metadata(tmp_path: Path) -> None:
    pq.write_table(TABLE, tmp_path / "data.parquet", row_group_size=2)
    schema, rows, table = read_all(tmp_path / "data.parquet")
    assert rows == 3
    assert schema.types == TABLE.schema.types  # decimals stay decimal128(9, 2)
    assert table.equals(TABLE)


def test_arrow_ipc_file_and_stream(tmp_path: Path) -> None:
    write_ipc_file(tmp_path / "f.arrow", TABLE)
    write_ipc_stream(tmp_path / "s.arrows", TABLE)
    write_ipc_stream(tmp_path / "s.arrow", TABLE)  # stream format behind a file-format name
    for name, expected_rows in (("f.arrow", 3), ("s.arrows", None), ("s.arrow", None)):
        schema, rows, table = read_all(tmp_path / name)
        assert rows == expected_rows, name
        assert table.equals(TABLE), name


def test_csv_infers_types(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("id,name,day,x\n1,a,1994-01-01,0.5\n2,,1995-06-30,1.5\n")
    schema, rows, table = read_all(tmp_path / "data.csv")
    assert rows is None  # unknown without reading the whole file
    assert schema.field("id").type == pa.int64()
    assert schema.field("day").type == pa.date32()
    assert table.column("x").to_pylist() == [0.5, 1.5]
    assert table.num_rows == 2


def test_folder_is_read_recursively_in_sorted_order(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    pq.write_table(TABLE.slice(0, 1), tmp_path / "a.parquet")
    pq.write_table(TABLE.slice(1, 1), tmp_path / "b" / "c.parquet")
    write_ipc_file(tmp_path / "b" / "d.arrow", TABLE.slice(2, 1))
    (tmp_path / "_SUCCESS").write_text("")  # Spark's marker files are skipped
    (tmp_path / ".a.parquet.crc").write_text("x")
    schema, rows, table = read_all(tmp_path)
    assert rows == 3
    assert table.column("id").to_pylist() == [1, 2, 3]
    assert table.equals(TABLE)


def test_folder_of_csv_files_shares_the_first_files_types(tmp_path: Path) -> None:
    # The second file alone would infer `x` as int64; the first file's double is imposed.
    (tmp_path / "1.csv").write_text("id,x\n1,0.5\n")
    (tmp_path / "2.csv").write_text("id,x\n2,3\n")
    schema, _, table = read_all(tmp_path)
    assert schema.field("x").type == pa.float64()
    assert table.column("x").to_pylist() == [0.5, 3.0]


def test_compressed_csv(tmp_path: Path) -> None:
    pacsv.write_csv(TABLE.select(["id", "name"]), pa.CompressedOutputStream(
        str(tmp_path / "data.csv.gz"), "gzip"))
    _, _, table = read_all(tmp_path / "data.csv.gz")
    assert table.column("id").to_pylist() == [1, 2, 3]


def test_schema_mismatch_names_the_file_and_column(tmp_path: Path) -> None:
    pq.write_table(TABLE, tmp_path / "a.parquet")
    pq.write_table(TABLE.set_column(0, "id", pa.array([1.0, 2.0, 3.0])), tmp_path / "b.parquet")
    with pytest.raises(SourceError, match=r"b\.parquet.*id: double instead of int64"):
        read_source(str(tmp_path))
    pq.write_table(TABLE.drop_columns(["day"]), tmp_path / "b.parquet")
    with pytest.raises(SourceError, match="columns"):
        read_source(str(tmp_path))


def test_nullability_differences_are_not_a_mismatch(tmp_path: Path) -> None:
    strict = pa.schema([pa.field("id", pa.int64(), nullable=False)])
    pq.write_table(pa.table({"id": [1]}, schema=strict), tmp_path / "a.parquet")
    pq.write_table(pa.table({"id": pa.array([None], pa.int64())}), tmp_path / "b.parquet")
    schema, _, table = read_all(tmp_path)
    assert schema.field("id").nullable
    assert table.column("id").to_pylist() == [1, None]


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: p / "missing.parquet", "no such file"),
    (lambda p: (p / "x.json").write_text("{}") and p / "x.json", "unknown file type '.json'"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "no data files"),
    (lambda p: (p / "bad.parquet").write_text("not parquet") and p / "bad.parquet",
     "cannot read"),
    (lambda p: (p / "bad.arrow").write_bytes(b"not arrow at all") and p / "bad.arrow",
     "cannot read"),
])
def test_clear_errors(tmp_path: Path, make: object, message: str) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(SourceError, match=message) as info:
        read_source(str(path))
    assert isinstance(info.value, BpfstoreError)  # the CLI prints it without a traceback
    assert str(path) in str(info.value)


def test_unknown_file_in_a_folder_is_an_error(tmp_path: Path) -> None:
    pq.write_table(TABLE, tmp_path / "a.parquet")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(SourceError, match=r"notes\.txt"):
        read_source(str(tmp_path))


def test_bad_value_in_a_later_csv_file_is_a_source_error(tmp_path: Path) -> None:
    (tmp_path / "1.csv").write_text("id\n1\n")
    (tmp_path / "2.csv").write_text("id\nnot-a-number\n")
    _, _, batches = read_source(str(tmp_path))
    with pytest.raises(SourceError, match=r"2\.csv"):
        list(batches)
