"""Stored types: what a write's columns become so the engines can walk them directly
(decimal64 for precision <= 18, one string dictionary per file, dates as date32, timestamps
checked against the wire's range)."""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc

from bpfstore.contract.errors import PlanInvalid, shown
from bpfstore.contract.wire import checked_timestamp

from .budget import check_budget


def _is_string(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def normalize_schema_type(t: pa.DataType, name: str) -> pa.DataType:
    """The stored type of a column: what the engines can walk directly. Only strings stay
    dictionary-encoded; a dictionary of anything else is stored plain, so engines and
    statistics see one representation of each value type (and its NaN and overflow rules)."""
    if pa.types.is_dictionary(t):
        return normalize_schema_type(t.value_type, name)
    if pa.types.is_decimal(t):
        if t.precision <= 18:
            return pa.decimal64(t.precision, t.scale)
        if t.precision <= 38:
            return pa.decimal128(t.precision, t.scale)
        raise PlanInvalid(f"column {shown(name)}: decimal precision {t.precision} exceeds 38")
    if _is_string(t):
        return pa.dictionary(pa.int32(), pa.string())
    if pa.types.is_large_binary(t) or pa.types.is_binary_view(t) or \
            pa.types.is_fixed_size_binary(t):
        return pa.binary()
    if pa.types.is_date64(t):
        return pa.date32()
    if pa.types.is_timestamp(t):
        return checked_timestamp(t, f"column {shown(name)}:")
    if not _storable(t):
        raise PlanInvalid(f"column {shown(name)}: type {t} is not supported (store it as "
                          "integers, floats, decimals, strings, binary, dates or timestamps)")
    return t


def _storable(t: pa.DataType) -> bool:
    return (pa.types.is_null(t) or pa.types.is_boolean(t) or pa.types.is_integer(t)
            or pa.types.is_floating(t) or pa.types.is_binary(t) or pa.types.is_date32(t))


def normalize(table: pa.Table) -> pa.Table:
    """Cast to stored types, one dictionary per column, batches of BATCH_ROWS rows (the
    request's budget checked between columns: a cancelled write stops here too)."""
    if duplicated := sorted(n for n, k in Counter(table.schema.names).items() if k > 1):
        raise PlanInvalid(f"duplicate column names: {shown(duplicated)}")
    fields = [pa.field(f.name, normalize_schema_type(f.type, f.name))
              for f in table.schema]
    columns = []
    for f, column in zip(fields, table.columns, strict=True):
        check_budget()
        if pa.types.is_dictionary(column.type) and not pa.types.is_dictionary(f.type):
            column = column.cast(column.type.value_type)
        if pa.types.is_dictionary(f.type):
            # Encode the whole column at once: one dictionary per file, as the IPC file format
            # needs (unifying per-chunk dictionaries afterwards is several times slower).
            plain = pc.cast(column, f.type.value_type).combine_chunks()
            column = pa.chunked_array([pc.dictionary_encode(plain).cast(f.type)])
        elif pa.types.is_decimal(f.type) and f.type.bit_width == 64 and column.type != f.type:
            column = column.cast(pa.decimal128(f.type.precision, f.type.scale)).cast(f.type)
        else:
            column = column.cast(f.type)
        columns.append(column)
    out = pa.Table.from_arrays(columns, schema=pa.schema(fields))
    return out


def normalize_schema(schema: pa.Schema) -> pa.Schema:
    """The stored schema of data of `schema`: what `normalize` makes of it."""
    return pa.schema([pa.field(f.name, normalize_schema_type(f.type, f.name)) for f in schema])
