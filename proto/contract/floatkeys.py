"""The float order key, the one definition every engine, statistic and merge uses.

A float64 becomes an int64 whose integer order is SQL's float order:
-inf < ... < -0.0 = 0.0 < ... < +inf < NaN. -0.0 takes 0.0's key (SQL calls them equal), so
MIN/MAX over any zeros answer 0.0 on every engine, whatever order the rows come in; every NaN
takes one (positive) key, above +inf. The pandas dialect reads NaN as NULL before it gets here.
"""

from __future__ import annotations

import math
import struct

import numpy as np
import pyarrow as pa

from .decimals import chunks, values_view, with_values

_MASK = 0x7FFFFFFFFFFFFFFF  # flips a negative float's bits so its order as an int64 is right


def float_key(x: float) -> int:
    if math.isnan(x):
        x = math.nan
    elif x == 0.0:
        x = 0.0
    bits = struct.unpack("<q", struct.pack("<d", x))[0]
    return int(bits ^ ((bits >> 63) & _MASK))


def float_from_key(k: int) -> float:
    bits = k ^ ((k >> 63) & _MASK)
    return float(struct.unpack("<d", struct.pack("<q", bits))[0])


def float_keys(data: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray:
    """`float_key` of every value of a float column (dictionary-encoded too), vectorized;
    NULL stays NULL."""
    out = []
    for c in chunks(data):
        if pa.types.is_dictionary(c.type):
            c = c.dictionary_decode()
        f = values_view(c, np.dtype(c.type.to_pandas_dtype())).astype(np.float64)
        f = np.where(np.isnan(f), np.nan, f)  # one canonical (positive) NaN
        f = np.where(f == 0.0, 0.0, f)
        bits = f.view(np.int64)
        out.append(with_values(c, bits ^ ((bits >> 63) & np.int64(_MASK)), pa.int64()))
    return pa.chunked_array(out, type=pa.int64())


def floats_from_keys(data: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray:
    """The float64 values of order keys (the inverse of `float_keys`); NULL stays NULL."""
    out = []
    for c in chunks(data):
        keys = values_view(c, np.dtype(np.int64))
        bits = keys ^ ((keys >> 63) & np.int64(_MASK))
        out.append(with_values(c, bits.view(np.float64), pa.float64()))
    return pa.chunked_array(out, type=pa.float64())
