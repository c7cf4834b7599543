"""The encodings with one home each: the float order key, the epoch, decimal -> float."""

from __future__ import annotations

import datetime as dt
import decimal
import math
import struct

import pyarrow as pa
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bpfstore.contract import decimals, epoch
from bpfstore.contract.floatkeys import float_from_key, float_key, float_keys, floats_from_keys

HOSTILE = [-0.0, 0.0, math.nan, -math.nan, math.inf, -math.inf, 5e-324, -5e-324,
           1.7976931348623157e308, -1.7976931348623157e308, 1.0, -1.0]
_ANY_NAN = struct.unpack("<d", struct.pack("<q", 0x7FF8_0000_0000_0BAD))[0]  # a payload NaN


def _sql_rank(x: float) -> tuple[int, float]:
    """SQL's float order written out: numbers by value (-0.0 = 0.0), every NaN above +inf."""
    return (1, 0.0) if math.isnan(x) else (0, x + 0.0)


floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(HOSTILE + [_ANY_NAN])


@settings(max_examples=100, deadline=None)
@given(st.lists(floats | st.none(), max_size=40), st.booleans())
def test_vectorized_keys_equal_the_scalar_key_and_sort_in_sql_order(values, dictionary) -> None:
    arr = pa.array(values, pa.float64())
    keys = float_keys(arr.dictionary_encode() if dictionary else arr).to_pylist()
    assert keys == [None if v is None else float_key(v) for v in values]
    present = [v for v in values if v is not None]
    for a in present:
        for b in present[:8]:
            ka, kb = float_key(a), float_key(b)
            assert (ka < kb) == (_sql_rank(a) < _sql_rank(b))
            assert (ka == kb) == (_sql_rank(a) == _sql_rank(b))


@given(st.lists(floats, max_size=20))
@example(HOSTILE)
def test_keys_read_back_as_the_value_with_zeros_and_nans_made_one(values) -> None:
    back = floats_from_keys(float_keys(pa.array(values, pa.float64()))).to_pylist()
    for v, b in zip(values, back, strict=True):
        assert float_from_key(float_key(v)) == b or math.isnan(b)
        if math.isnan(v):
            assert math.isnan(b) and math.copysign(1, b) == 1.0
        else:
            assert b == v and math.copysign(1, b) == (1.0 if v == 0 else math.copysign(1, v))


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 38).flatmap(lambda p: st.tuples(
    st.just(p), st.integers(0, p), st.lists(st.integers(-(10**p) + 1, 10**p - 1) | st.none(),
                                            max_size=20))))
@example((38, 0, [10**38 - 1, -(10**38) + 1, 2**53 + 1, None]))
@example((18, 9, [10**18 - 1, 2**53 + 1, -(2**53) - 1]))
def test_decimal_to_float_is_correctly_rounded(case) -> None:
    precision, scale, unscaled = case
    t = pa.decimal128(precision, scale)
    values = [None if u is None else decimals.to_decimal(u, scale) for u in unscaled]
    want = [None if v is None else float(v) for v in values]  # Decimal -> float: exact rounding
    assert decimals.decimal128_to_float(pa.array(values, t)).to_pylist() == want
    if precision <= 18:  # decimal64 too
        narrow = pa.array(values, t).cast(pa.decimal64(precision, scale))
        assert decimals.decimal128_to_float(narrow).to_pylist() == want


@given(st.dates() | st.datetimes(timezones=st.none() | st.just(dt.UTC)))
def test_epoch_days_and_nanos_are_exact(v) -> None:
    if isinstance(v, dt.datetime):
        naive = v.replace(tzinfo=None)
        want = ((naive - dt.datetime(1970, 1, 1)) // dt.timedelta(microseconds=1)) * 1000
        assert epoch.epoch_nanos(v) == want
    else:
        assert epoch.date_from_days(epoch.epoch_days(v)) == v
        assert epoch.epoch_days(v) == v.toordinal() - dt.date(1970, 1, 1).toordinal()


def test_decimal_to_float_rounds_ties_like_python() -> None:
    half_ulp = decimal.Decimal(2**53 + 1)  # exactly between two doubles: ties to even
    got = decimals.decimal128_to_float(pa.array([half_ulp], pa.decimal128(20, 0))).to_pylist()
    assert got == [float(2**53)]
