"""Exact numeric helpers on Arrow buffers (numpy views, no per-row Python).

Decimals with precision <= 18 are evaluated as unscaled int64 ("scaled integers"): ten times
faster than Arrow's decimal128 kernels and exact; wider values use decimal128.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from bpfstore.contract import decimals
from bpfstore.contract.decimals import (  # noqa: F401 (decimal -> float: its home)
    chunks,
    decimal128_to_float,
    unscaled_to_float,
    values_view,
    with_values,
)

_BLOCK = 4096


def decimal_storage_as_int64(data: pa.ChunkedArray) -> pa.ChunkedArray:
    """Zero-copy view of a decimal64 column as its unscaled int64 values."""
    return pa.chunked_array(
        [pa.Array.from_buffers(pa.int64(), len(c), c.buffers()[:2], null_count=c.null_count,
                               offset=c.offset) for c in chunks(data)],
        type=pa.int64(),
    )


def int64_to_decimal(data: pa.ChunkedArray, t: pa.DataType) -> pa.ChunkedArray:
    """Unscaled int64 values -> decimal128/256 array of type `t` (sign-extended, exact)."""
    out = []
    for c in chunks(data):
        lo = values_view(c, np.dtype(np.int64))
        words = np.empty((len(lo), t.bit_width // 64), dtype=np.int64)
        words[:, 0] = lo
        words[:, 1:] = (lo >> 63)[:, None]
        out.append(with_values(c, words.ravel(), t))
    return pa.chunked_array(out, type=t)


def exact_sum(data: pa.ChunkedArray) -> int | None:
    """Exact sum of an integer column, or of a decimal128 column's unscaled values, as a
    Python int (None when every value is null)."""
    total, seen = 0, 0
    for c in chunks(data):
        if c.null_count:
            c = c.drop_null()
        if not len(c):
            continue
        seen += len(c)
        limbs = decimals.limbs(*decimals.words(c))
        total += sum(int(limb.sum()) << (32 * i) for i, limb in enumerate(limbs))
    return total if seen else None


def compensated_float_sum(data: pa.ChunkedArray, skip_nan: bool) -> float | None:
    """Float sum: numpy's pairwise sums over blocks, the blocks added exactly (math.fsum).

    NaN propagates unless `skip_nan`; None when no value is present.
    """
    blocks: list[float] = []
    seen = 0
    for c in chunks(data):
        if c.null_count:
            c = c.drop_null()
        v = values_view(c, np.dtype(c.type.to_pandas_dtype())).astype(np.float64, copy=False)
        if skip_nan:
            v = v[~np.isnan(v)]
        seen += len(v)
        full = len(v) - len(v) % _BLOCK
        if full:
            blocks.extend(v[:full].reshape(-1, _BLOCK).sum(axis=1).tolist())
        blocks.extend(v[full:].tolist())
    if not seen:
        return None
    if any(math.isnan(b) for b in blocks):
        return math.nan
    try:
        return math.fsum(blocks)
    except (OverflowError, ValueError):  # inf - inf or overflow in the partials
        return float(np.sum(np.array(blocks)))
