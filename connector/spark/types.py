"""Spark SQL type names and Spark schemas <-> Arrow types, without a Spark session.

Python data-source workers cannot parse DDL (no session there), so the extension sends
`DataType.sql()` names and this module maps them; `spark_schema` builds StructTypes directly.
"""

from __future__ import annotations

import re

import pyarrow as pa

from bpfstore.contract.binding import logical_type
from bpfstore.contract.errors import Unsupported

_SIMPLE = {
    "BOOLEAN": pa.bool_(), "TINYINT": pa.int8(), "SMALLINT": pa.int16(), "INT": pa.int32(),
    "BIGINT": pa.int64(), "FLOAT": pa.float32(), "DOUBLE": pa.float64(), "STRING": pa.string(),
    "DATE": pa.date32(), "BINARY": pa.binary(), "TIMESTAMP": pa.timestamp("us", tz="UTC"),
    "TIMESTAMP_NTZ": pa.timestamp("us"),
}
_DECIMAL = re.compile(r"DECIMAL\((\d+),\s*(\d+)\)")


def arrow_type(spark_sql_name: str) -> pa.DataType:
    """The Arrow type Spark uses for a type named by `DataType.sql()` (e.g. DECIMAL(15,2))."""
    name = spark_sql_name.strip().upper()
    if name in _SIMPLE:
        return _SIMPLE[name]
    if m := _DECIMAL.fullmatch(name):
        return pa.decimal128(int(m.group(1)), int(m.group(2)))
    raise Unsupported(f"Spark type {spark_sql_name} is not supported by bpfstore")


def spark_type(t: pa.DataType):  # -> pyspark.sql.types.DataType
    """The Spark type of a stored (logical) Arrow type."""
    from pyspark.sql import types as T  # late, as below: pyspark is optional (spark extra)

    t = logical_type(t)
    simple = {
        pa.bool_(): T.BooleanType(), pa.int8(): T.ByteType(), pa.int16(): T.ShortType(),
        pa.int32(): T.IntegerType(), pa.int64(): T.LongType(), pa.float32(): T.FloatType(),
        pa.float64(): T.DoubleType(), pa.string(): T.StringType(), pa.date32(): T.DateType(),
        pa.binary(): T.BinaryType(), pa.large_binary(): T.BinaryType(),
    }
    if t in simple:
        return simple[t]
    if pa.types.is_decimal(t):
        return T.DecimalType(t.precision, t.scale)
    if pa.types.is_timestamp(t):
        return T.TimestampType() if t.tz else T.TimestampNTZType()
    if pa.types.is_unsigned_integer(t):  # Spark has no unsigned types: the next wider one
        return {8: T.ShortType(), 16: T.IntegerType(), 32: T.LongType(),
                64: T.DecimalType(20, 0)}[t.bit_width]
    raise Unsupported(f"column type {t} has no Spark equivalent")


def spark_schema(schema: pa.Schema):  # -> pyspark.sql.types.StructType
    from pyspark.sql.types import StructField, StructType

    return StructType([StructField(f.name, spark_type(f.type), True) for f in schema])


def arrow_schema(spark_schema_):  # StructType -> pa.Schema, exactly as Spark checks batches
    from pyspark.sql.pandas.types import to_arrow_schema

    try:
        return to_arrow_schema(spark_schema_, timezone="UTC")
    except TypeError:  # pyspark 4.1 has no timezone argument (and always uses UTC)
        return to_arrow_schema(spark_schema_)


def conform(batch: pa.RecordBatch, target: pa.Schema) -> pa.RecordBatch:
    """A batch with exactly `target`'s schema (Spark >= 4.2 compares schemas with equals)."""
    columns = []
    for i, field in enumerate(target):
        col = batch.column(i)
        if pa.types.is_dictionary(col.type):
            col = col.dictionary_decode()
        if col.type != field.type:
            col = col.cast(field.type)
        columns.append(col)
    return pa.RecordBatch.from_arrays(columns, schema=target)
