"""Read the files `bpfstore ingest` loads: Parquet, CSV or Arrow IPC, one file or a folder of them.

A folder is read recursively in sorted path order (hidden and `_`-prefixed files such as
Spark's `_SUCCESS` are skipped); every file must have the same column names and types.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from bpfstore.contract.errors import BpfstoreError

BATCH_ROWS = 64 * 1024
_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".arrow": "ipc",
            ".ipc": "ipc", ".feather": "ipc", ".arrows": "ipc"}
_COMPRESSED = (".gz", ".bz2", ".zst", ".lz4")  # data.csv.gz


class SourceError(BpfstoreError):
    """A source file that is missing, of an unknown kind, unreadable, or of another schema."""


def read_source(path: str) -> tuple[pa.Schema, int | None, Iterator[pa.RecordBatch]]:
    """The schema, the row count when cheaply known (else None), and the record batches."""
    files = _files(Path(path))
    readers = [_reader(f) for f in files]
    first = readers[0]
    for r in readers[1:]:
        _check_same(first.path, first.schema, r.path, r.schema_as(first.schema))
    counts = [r.rows for r in readers]
    total = None if any(c is None for c in counts) else sum(c for c in counts if c is not None)
    nullable = [any(r.schema.field(i).nullable for r in readers) for i in range(len(first.schema))]
    schema = pa.schema([f.with_nullable(n) for f, n in zip(first.schema, nullable, strict=True)])
    return schema, total, _batches(readers, schema)


def _files(root: Path) -> list[Path]:
    if not root.exists():
        raise SourceError(f"{root}: no such file or folder")
    if root.is_file():
        _format(root)
        return [root]
    files = sorted(p for p in root.rglob("*") if p.is_file() and not _hidden(p.relative_to(root)))
    if not files:
        raise SourceError(f"{root}: no data files in this folder")
    for f in files:
        _format(f)
    return files


def _hidden(relative: Path) -> bool:
    return any(part.startswith((".", "_")) for part in relative.parts)


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in _COMPRESSED and path.with_suffix("").suffix.lower() == ".csv":
        return "csv"
    if suffix not in _FORMATS:
        known = ", ".join(sorted(_FORMATS))
        raise SourceError(f"{path}: unknown file type {suffix or '(none)'!r}; expected {known}")
    return _FORMATS[suffix]


class _Reader:
    """One file: its schema and row count up front, its batches on demand."""

    def __init__(self, path: Path, schema: pa.Schema, rows: int | None,
                 open_batches: Callable[[pa.Schema], Iterator[pa.RecordBatch]]) -> None:
        self.path, self.schema, self.rows = path, schema, rows
        self._open = open_batches

    def schema_as(self, first: pa.Schema) -> pa.Schema:
        return self.schema

    def batches(self, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        return self._open(schema)


class _CsvReader(_Reader):
    """CSV types are inferred from the first file's first block and then imposed on every file,
    so a folder of CSV files gets one schema (a value that does not fit is an error)."""

    def schema_as(self, first: pa.Schema) -> pa.Schema:
        if self.schema.names == first.names:
            self.schema = first
        return self.schema


def _reader(path: Path) -> _Reader:
    try:
        match _format(path):
            case "parquet":
                meta = pq.read_metadata(path)
                return _Reader(path, meta.schema.to_arrow_schema(), meta.num_rows,
                               lambda _: pq.ParquetFile(path).iter_batches(BATCH_ROWS))
            case "csv":
                schema = _open_csv(path, None).schema
                return _CsvReader(path, schema, None, lambda s: _open_csv(path, s))
            case _:
                return _ipc_reader(path)
    except (OSError, pa.ArrowException) as exc:
        raise SourceError(f"{path}: cannot read: {exc}") from None


def _open_csv(path: Path, schema: pa.Schema | None) -> pacsv.CSVStreamingReader:
    types = dict(zip(schema.names, schema.types, strict=True)) if schema else None
    source = pa.input_stream(str(path), compression="detect")  # by extension
    return pacsv.open_csv(source, convert_options=pacsv.ConvertOptions(column_types=types))


def _ipc_reader(path: Path) -> _Reader:
    try:  # the random-access file format: row count from the batch headers (memory-mapped)
        with pa.memory_map(str(path)) as source:
            f = pa.ipc.open_file(source)
            rows = sum(f.get_batch(i).num_rows for i in range(f.num_record_batches))
            schema = f.schema

        def file_batches(_: pa.Schema) -> Iterator[pa.RecordBatch]:
            with pa.memory_map(str(path)) as source:
                f = pa.ipc.open_file(source)
                for i in range(f.num_record_batches):
                    yield f.get_batch(i)

        return _Reader(path, schema, rows, file_batches)
    except pa.ArrowInvalid:  # not the file format: try the stream format
        with pa.OSFile(str(path)) as source:
            schema = pa.ipc.open_stream(source).schema

        def stream_batches(_: pa.Schema) -> Iterator[pa.RecordBatch]:
            with pa.OSFile(str(path)) as source:
                yield from pa.ipc.open_stream(source)

        return _Reader(path, schema, None, stream_batches)


def _check_same(first: Path, a: pa.Schema, other: Path, b: pa.Schema) -> None:
    """Same column names and types (nullability and metadata may differ)."""
    mine, theirs = list(zip(a.names, a.types, strict=True)), list(zip(b.names, b.types,
                                                                      strict=True))
    if mine == theirs:
        return
    if a.names != b.names:
        detail = f"columns {b.names} instead of {a.names}"
    else:
        detail = ", ".join(f"{n}: {tb} instead of {ta}" for (n, ta), (_, tb)
                           in zip(mine, theirs, strict=True) if ta != tb)
    raise SourceError(f"{other}: schema differs from {first}: {detail}")


def _batches(readers: list[_Reader], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    for r in readers:
        try:
            for batch in r.batches(schema):
                if batch.num_rows:  # one schema object for all (nullability, metadata unified)
                    yield pa.RecordBatch.from_arrays(batch.columns, schema=schema)
        except (OSError, pa.ArrowException) as exc:
            raise SourceError(f"{r.path}: cannot read: {exc}") from None
