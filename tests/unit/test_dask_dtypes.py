"""The Dask view's Arrow -> pandas conversion: decimals correctly rounded (not pyarrow's cast)."""

from __future__ import annotations

import decimal
import random

import numpy as np
import pyarrow as pa
import pytest

pytest.importorskip("dask.dataframe")
pytestmark = pytest.mark.dask
from bpfstore.connector.dask.dtypes import decimal_to_float, to_series  # noqa: E402


@pytest.mark.parametrize("precision,scale", [(15, 2), (12, 4), (18, 2), (38, 6)])
def test_decimals_convert_correctly_rounded(precision: int, scale: int) -> None:
    rng = random.Random(precision)
    values = [decimal.Decimal(rng.randrange(-10**precision + 1, 10**precision)).scaleb(-scale)
              for _ in range(5000)] + [decimal.Decimal("24386.67").quantize(
                  decimal.Decimal(1).scaleb(-scale)), None]
    arr = pa.array(values, pa.decimal128(precision, scale))
    for piece in (arr, arr.slice(1234, 2000)):  # offsets into the buffer too
        expected = [np.nan if v is None else float(v) for v in piece.to_pylist()]
        np.testing.assert_array_equal(decimal_to_float(piece), np.array(expected))


def test_pyarrow_cast_would_have_been_wrong() -> None:
    arr = pa.array([decimal.Decimal("24386.67")], pa.decimal128(15, 2))
    assert decimal_to_float(arr)[0] == 24386.67
    assert to_series(arr, np.dtype("float64")).iloc[0] == 24386.67


def test_dates_strings_and_dictionaries() -> None:
    import datetime as dt

    import pandas as pd

    dates = to_series(pa.array([dt.date(1998, 9, 2), None], pa.date32()),
                      np.dtype("datetime64[ms]"))
    assert str(dates.dtype) == "datetime64[ms]" and dates.isna().tolist() == [False, True]
    words = to_series(pa.array(["a", None, "b"]).dictionary_encode(), pd.StringDtype(
        na_value=np.nan))
    assert words.dtype == "str" and words.isna().tolist() == [False, True, False]


def test_exact_sums_become_python_numbers() -> None:
    from bpfstore.connector.dask.dtypes import cast_scalar, to_python

    big = decimal.Decimal(2**62 + 1)  # an int64 sum past 2**53: must not go through float
    assert cast_scalar(to_python(big, "numpy"), np.int64(0)) == 2**62 + 1
    assert to_python(decimal.Decimal("0.10"), "numpy") == 0.1
    assert to_python(decimal.Decimal("0.10"), "arrow") == decimal.Decimal("0.10")
