"""Exact decimal and integer totals: the one accumulation path of every engine and merge.

Python's `decimal` rounds every operation to its context's precision (28 digits by default),
so nothing here runs under the global context: totals are Python ints of unscaled values,
decimals are built from them under `EXACT` (100 digits, more than any decimal128 needs), and
Arrow's grouped sums (which wrap silently on decimal128) only ever add 32-bit limbs in int64.
Partial sums are decimal256(76, s) (a partition's partial may pass 38 digits although the
total fits); a final total that does not fit decimal128(38, s) is `ArithmeticOverflow`
(OUT_OF_RANGE), the same in every grouped and ungrouped, single- and multi-partition path.
"""

from __future__ import annotations

import decimal
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import ArithmeticOverflow

EXACT = decimal.Context(prec=100, Emax=10**6, Emin=-(10**6))
_LOW32 = np.int64(0xFFFFFFFF)
_FLOAT_EXACT_INT = 2**53  # a whole number below this is exact as a double
_EXACT_POWER = 22  # 10**22 is the largest power of ten exact as a double
_LIMB_ROWS = 2**31  # a sum of this many 32-bit limbs stays inside int64


def to_decimal(unscaled: int, scale: int) -> decimal.Decimal:
    """unscaled / 10**scale as a Decimal, exactly."""
    return decimal.Decimal(unscaled).scaleb(-scale, context=EXACT)


def unscaled(value: decimal.Decimal | int, scale: int) -> int:
    """value * 10**scale as an int, exactly (ValueError when that is not a whole number)."""
    shifted = decimal.Decimal(value).scaleb(scale, context=EXACT)
    whole = int(shifted)
    if whole != shifted:
        raise ValueError(f"{value} has more than {scale} decimal places")
    return whole


def divide_half_up(numerator: int, denominator: int) -> int:
    """numerator / denominator (> 0) rounded half away from zero, exactly."""
    q, r = divmod(abs(numerator), denominator)
    q += 2 * r >= denominator
    return q if numerator >= 0 else -q


def checked_total(total: int | None, t: pa.DataType) -> int | None:
    """`total` (unscaled), or ArithmeticOverflow when it does not fit the decimal type `t`."""
    if total is not None and abs(total) >= 10**t.precision:
        raise ArithmeticOverflow(f"sum exceeds {t.precision} digits ({t})")
    return total


def final_sums(sums: pa.ChunkedArray) -> pa.ChunkedArray:
    """Merged decimal256 partial sums as the answer's decimal128(38, s), or
    ArithmeticOverflow when a total does not fit it."""
    t = pa.decimal128(38, sums.type.scale)
    if sums.type == t:
        return sums
    try:
        return sums.cast(t)
    except pa.ArrowInvalid:  # name the first total that does not fit, as every path does
        for v in sums.to_pylist():
            if v is not None:
                checked_total(unscaled(v, t.scale), t)
        raise


def decimal_total(total: int | None, t: pa.DataType) -> decimal.Decimal | None:
    """A checked unscaled total as a Decimal of the partial's type `t`."""
    checked = checked_total(total, t)
    return None if checked is None else to_decimal(checked, t.scale)


def sum_decimals(values: Sequence[decimal.Decimal], t: pa.DataType) -> decimal.Decimal | None:
    """Exact, checked sum of decimal partials of type `t` (None when there are none)."""
    if not values:
        return None
    return decimal_total(sum(unscaled(v, t.scale) for v in values), t)


def totals_array(totals: Sequence[int | None], t: pa.DataType) -> pa.Array:
    """Checked unscaled totals (None: NULL) as a decimal128 or decimal256 array of type `t`."""
    per_value = t.bit_width // 64
    words = np.zeros((len(totals), per_value), dtype=np.uint64)
    valid = np.ones(len(totals), dtype=bool)
    for i, total in enumerate(totals):
        if total is None:
            valid[i] = False
            continue
        bits = checked_total(total, t) % 2**t.bit_width  # type: ignore[operator]
        words[i] = [(bits >> (64 * w)) & (2**64 - 1) for w in range(per_value)]
    validity = None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(t, len(totals), [validity, pa.py_buffer(words)],
                                 null_count=int((~valid).sum()))


def totals_from_limb_sums(sums: Sequence[pa.Array | pa.ChunkedArray], t: pa.DataType
                          ) -> pa.Array:
    """The decimal array of type `t` holding, per row, sum(sums[i] << 32 i) (the grouped sums
    of `limbs`; NULL where sums[0] is NULL), checked as `totals_array` checks: carries in
    numpy, Python ints only for the rows whose total comes near 10**t.precision."""
    cols = [pa.chunked_array([s]) if isinstance(s, pa.Array) else s for s in sums]
    valid = pc.is_valid(cols[0]).to_numpy(zero_copy_only=False) if cols[0].null_count else None
    sum_arrays = [pc.fill_null(c, 0).to_numpy().astype(np.int64, copy=False) for c in cols]
    n, digits = len(cols[0]), t.bit_width // 32
    # every limb sum is carried, also those above the type's width (decimal256 values summed
    # into a decimal128 total): their digits must be the sign's extension
    full = np.zeros((n, max(digits, len(sum_arrays))), dtype=np.int64)
    carry = np.zeros(n, dtype=np.int64)
    for i in range(full.shape[1]):  # base 2**32, lowest digit first; nothing passes int64
        s_i = sum_arrays[i] if i < len(sum_arrays) else np.zeros(n, dtype=np.int64)
        low = (s_i & _LOW32) + carry
        full[:, i] = low & _LOW32
        carry = (s_i >> 32) + (low >> 32)
    out = full[:, :digits]
    negative = carry < 0
    extended = (full[:, digits:] == np.where(negative, _LOW32, 0)[:, None]).all(axis=1)
    # near or past the limit, or past the width (a carry left over, digits above the width
    # or a sign bit that disagree with the sign): the exact check decides. Magnitudes from
    # non-negative digits: no cancellation in floats.
    magnitude = out.copy()
    if negative.any():
        flipped = ~out[negative] & _LOW32  # two's complement: ~digits + 1
        one = np.ones(len(flipped), dtype=np.int64)
        for i in range(digits):
            v = flipped[:, i] + one
            flipped[:, i], one = v & _LOW32, v >> 32
        magnitude[negative] = flipped
    approx = sum(magnitude[:, i].astype(np.float64) * 2.0 ** (32 * i) for i in range(digits))
    sign_bit = out[:, -1] >= 2**31
    doubtful = (approx >= 10.0**t.precision * (1 - 1e-9)) | (carry < -1) | (carry > 0) | \
        (sign_bit != negative) | ~extended
    if valid is not None:
        doubtful &= valid
    for r in np.flatnonzero(doubtful):
        checked_total(sum(int(a[r]) << (32 * i) for i, a in enumerate(sum_arrays)), t)
    words64 = (out[:, 0::2].view(np.uint64) | (out[:, 1::2].view(np.uint64) << np.uint64(32)))
    validity = None if valid is None else pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(t, n, [validity, pa.py_buffer(np.ascontiguousarray(words64))],
                                 null_count=0 if valid is None else int((~valid).sum()))


def limbs(words: np.ndarray, unsigned: bool = False) -> list[np.ndarray]:
    """32-bit limbs, lowest first, of int64 values (`words` 1-d) or of decimal values
    (`words` n x 2 or n x 4: int64 words, lowest first) as int64 arrays: the value is
    sum(limb_i << 32 i) and a sum of up to 2**31 limbs cannot overflow int64. The top limb
    keeps the sign (unless `unsigned`: uint64 values viewed as int64)."""
    if len(words) >= _LIMB_ROWS:
        raise ValueError("limb sums are exact below 2**31 rows")
    cols = [words] if words.ndim == 1 else [words[:, i] for i in range(words.shape[1])]
    out = []
    for i, w in enumerate(cols):
        top = i == len(cols) - 1 and not unsigned
        out.append(w & _LOW32)
        out.append(w >> 32 if top else (w.view(np.uint64) >> np.uint64(32)).view(np.int64))
    return out


def words(c: pa.Array) -> tuple[np.ndarray, bool]:
    """An integer or decimal128/256 array's values as `limbs` takes them."""
    if pa.types.is_decimal(c.type):
        per_value = c.type.bit_width // 64
        return values_view(c, np.dtype(np.int64), per_value).reshape(-1, per_value), False
    v = values_view(c, np.dtype(c.type.to_pandas_dtype()))
    if v.dtype == np.uint64:
        return v.view(np.int64), True
    return v.astype(np.int64, copy=False), False


def limb_columns(data: pa.ChunkedArray) -> list[pa.ChunkedArray]:
    """`limbs` of every value as int64 columns with the input's validity: Arrow's
    grouped sums of them are exact (a grouped decimal128 sum would wrap silently)."""
    count = data.type.bit_width // 32 if pa.types.is_decimal(data.type) else 2
    per_chunk = [[with_values(c, limb, pa.int64()) for limb in limbs(*words(c))]
                 for c in data.chunks]
    return [pa.chunked_array([parts[i] for parts in per_chunk], type=pa.int64())
            for i in range(count)]


def values_view(arr: pa.Array, dtype: np.dtype, per_value: int = 1) -> np.ndarray:
    """The fixed-width data buffer of `arr` as numpy (nulls hold arbitrary values).

    `per_value` numpy items make one Arrow value (2 int64 words for decimal128).
    """
    buf = arr.buffers()[1]
    count = (arr.offset + len(arr)) * per_value
    view = np.frombuffer(buf, dtype=dtype, count=count) if buf else np.empty(0, dtype)
    return view[arr.offset * per_value:]


def with_values(arr: pa.Array, values: np.ndarray, t: pa.DataType) -> pa.Array:
    """A new array of type `t` holding `values`, with the validity of `arr`."""
    validity = arr.buffers()[0]
    if validity is not None and arr.offset:
        validity = pc.is_valid(arr).buffers()[1]  # re-based bitmap
    data = pa.py_buffer(np.ascontiguousarray(values))
    return pa.Array.from_buffers(t, len(arr), [validity, data],
                                 null_count=arr.null_count)


# -- decimal -> float: the one conversion (evaluation, casts, Dask's float views) -------------


def unscaled_to_float(data: pa.ChunkedArray | pa.Array, scale: int) -> pa.ChunkedArray:
    """Correctly rounded float64 of unscaled int64 / 10**scale.

    One IEEE division of two exactly represented doubles is correctly rounded; values beyond
    2**53, or scales beyond 22, go through Python's exact Decimal -> float conversion.
    """
    out = []
    divisor = float(10**scale)
    for c in chunks(data):
        v = values_view(c, np.dtype(np.int64))
        result = v.astype(np.float64) / divisor if scale else v.astype(np.float64)
        # 10**scale is exact as a double only up to 10**22: beyond, every value goes exactly
        big = np.abs(v) >= _FLOAT_EXACT_INT if scale <= _EXACT_POWER else np.ones(len(v), bool)
        if big.any():
            for i in np.flatnonzero(big):
                result[i] = float(to_decimal(int(v[i]), scale))
        out.append(with_values(c, result, pa.float64()))
    return pa.chunked_array(out, type=pa.float64())


def decimal128_to_float(data: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray:
    """Correctly rounded float64 of decimal128 values (exact via Python for the rare wide ones)."""
    t = data.type
    if t.bit_width != 128:  # decimal32/64: widen, exactly
        data = data.cast(pa.decimal128(t.precision, t.scale))
    out = []
    for c in chunks(data):
        words = values_view(c, np.dtype(np.int64), 2).reshape(-1, 2)
        lo, hi = words[:, 0], words[:, 1]
        fits = np.all(hi == (lo >> 63)) if len(c) else True
        if fits:
            as_int = with_values(c, lo.copy(), pa.int64())
            out.extend(unscaled_to_float(pa.chunked_array([as_int]), t.scale).chunks)
        else:
            out.append(pa.array([None if x is None else float(x) for x in c.to_pylist()],
                                pa.float64()))
    return pa.chunked_array(out, type=pa.float64())


def chunks(data: pa.ChunkedArray | pa.Array) -> list[pa.Array]:
    return list(data.chunks) if isinstance(data, pa.ChunkedArray) else [data]
