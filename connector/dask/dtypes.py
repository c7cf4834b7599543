"""The pandas dtypes a bpfstore dataset has in Dask, and Arrow -> pandas conversion into them.

Default view ("numpy"): decimals -> float64, dates -> datetime64[ms], strings -> str, integers
-> int64 (float64 when a partition holds nulls). Decimals are converted from their exact
unscaled integers, not with pyarrow's decimal -> double cast, which is not correctly rounded
(24386.67 -> 24386.670000000002). `dtypes="arrow"` keeps Arrow types (`pd.ArrowDtype`), with
strings as `str` (like `dd.read_parquet`).
"""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from bpfstore.contract import decimals
from bpfstore.contract.binding import logical_type

from ..client import DatasetDescription

VIEWS = ("numpy", "arrow")


def column_dtype(t: pa.DataType, has_nulls: bool, view: str) -> Any:
    t = logical_type(t)
    if pa.types.is_string(t):
        return pd.StringDtype(na_value=np.nan)  # pandas 3's default `str`
    if view == "arrow":
        return pd.ArrowDtype(t)
    if pa.types.is_decimal(t) or pa.types.is_floating(t):
        return np.dtype("float64") if not pa.types.is_float32(t) else np.dtype("float32")
    if pa.types.is_date(t):
        return np.dtype("datetime64[ms]")
    if pa.types.is_integer(t):
        return np.dtype("float64") if has_nulls else np.dtype(t.to_pandas_dtype())
    if pa.types.is_boolean(t):
        return np.dtype(object) if has_nulls else np.dtype(bool)
    return pd.Series([], dtype=t.to_pandas_dtype()).dtype


def base_meta(desc: DatasetDescription, view: str) -> pd.DataFrame:
    """Empty frame with the dataset's columns in their Dask dtypes."""
    def nulls(name: str) -> bool:
        return any(p.stats.get(name, {}).get("null_count", 1) for p in desc.partitions)

    return pd.DataFrame({f.name: pd.Series([], dtype=column_dtype(f.type, nulls(f.name), view))
                         for f in desc.schema})


def to_series(arr: pa.Array | pa.ChunkedArray, dtype: Any, name: Any = None,
              index: pd.Index | None = None) -> pd.Series:
    """One Arrow column as a pandas Series of `dtype` (see the module docstring)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    t = arr.type
    if isinstance(dtype, pd.ArrowDtype):
        values: Any = pd.array(arr.cast(dtype.pyarrow_dtype), dtype=dtype)
    elif pa.types.is_decimal(t) and np.dtype(dtype).kind == "f":
        values = decimal_to_float(arr).astype(dtype, copy=False)
    elif pa.types.is_date(t):
        values = arr.cast(pa.timestamp("ms")).to_numpy(zero_copy_only=False)
        values = values.astype(dtype, copy=False)
    elif pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        values = pd.array(arr.cast(pa.large_string()).to_pandas(), dtype=dtype)
    else:
        values = pd.Series(arr.to_pandas()).astype(dtype).array
    return pd.Series(values, name=name, index=index)


def decimal_to_float(arr: pa.Array) -> np.ndarray:
    """Correctly rounded float64 of each decimal (NaN for nulls)."""
    return np.asarray(decimals.decimal128_to_float(arr).to_numpy(), dtype=np.float64)


def to_frame(table: pa.Table, meta: pd.DataFrame, index: pd.Index | None = None) -> pd.DataFrame:
    """Columns of `table` named in `meta`, in `meta`'s dtypes."""
    if index is None:
        index = pd.RangeIndex(table.num_rows)
    cols = {c: to_series(table.column(c), meta[c].dtype, c, index) for c in meta.columns
            if c in table.column_names}
    return pd.DataFrame(cols, index=index, columns=[c for c in meta.columns if c in cols])


def to_python(value: Any, view: str) -> Any:
    """A scalar from an aggregate result as pandas would give it in this view."""
    if value is None:
        return np.nan
    if isinstance(value, decimal.Decimal) and view != "arrow":
        exponent = value.as_tuple().exponent
        if isinstance(exponent, int) and exponent >= 0:
            return int(value)  # an exact integer sum: no trip through float
        return float(value)  # correctly rounded from the exact value
    if isinstance(value, dt.date) and view != "arrow":
        return pd.Timestamp(value)
    return value


def result_values(column: pa.ChunkedArray, view: str) -> list[Any] | np.ndarray:
    """An aggregate result column as `to_python` gives its values, whole columns at once
    where that is the same: decimal sums of scale 0 that fit int64 as int64, of a larger
    scale as correctly rounded float64 with NaN for NULL (a grouped answer has a value per
    group: per-value Python cost seconds at a million groups)."""
    t = column.type
    if view != "arrow" and pa.types.is_decimal(t):
        if t.scale > 0 and t.bit_width <= 128:
            return decimals.decimal128_to_float(column).to_numpy(zero_copy_only=False)
        if t.scale == 0 and t.bit_width == 128 and column.null_count == 0:
            words = [decimals.words(c)[0] for c in column.chunks]
            if all(np.array_equal(w[:, 1], w[:, 0] >> 63) for w in words):
                return np.concatenate([w[:, 0] for w in words]) if words else \
                    np.empty(0, np.int64)
    return [to_python(v, view) for v in column.to_pylist()]


def integer_bounds(dtype: Any) -> tuple[int, int] | None:
    """The range of an integer dtype (numpy or Arrow), None for any other dtype."""
    if isinstance(dtype, pd.ArrowDtype):
        if not pa.types.is_integer(dtype.pyarrow_dtype):
            return None
        dtype = dtype.pyarrow_dtype.to_pandas_dtype()
    if dtype is None or not isinstance(dtype, type | np.dtype) or np.dtype(dtype).kind not in "iu":
        return None
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


def sum_dtype(dtype: Any) -> Any:
    """The dtype pandas gives a sum of `dtype`: 64-bit for integers, `dtype` otherwise."""
    bounds = integer_bounds(dtype)
    if bounds is None:
        return dtype
    wide = pa.int64() if bounds[0] < 0 else pa.uint64()
    return pd.ArrowDtype(wide) if isinstance(dtype, pd.ArrowDtype) else \
        np.dtype(wide.to_pandas_dtype())


def cast_scalar(value: Any, meta: Any) -> Any:
    """`value` in the type of a Dask scalar meta (np.float64, np.int64, Timestamp, ...)."""
    if isinstance(meta, pd.Timestamp | np.datetime64):  # min/max of dates: NaT when empty
        return pd.NaT if value is None or value != value else pd.Timestamp(value)
    dtype = getattr(meta, "dtype", None)
    if dtype is None or value is None:
        return value
    try:
        return pd.Series([value]).astype(dtype).iloc[0]
    except (TypeError, ValueError):
        return value
