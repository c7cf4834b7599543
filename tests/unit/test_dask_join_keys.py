"""The pieces of join key pushdown that need no agents: the filter built from keys, and which
key dtypes pandas' merge and the plan's IN compare alike."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("dask.dataframe")

from bpfstore.connector.dask import join_keys  # noqa: E402
from bpfstore.contract.plan import Column, In, IsNull, Literal, Or  # noqa: E402


def test_key_filter_is_an_in_list() -> None:
    keys = [Literal(1), Literal(2)]
    assert join_keys.key_filter("k", keys, False) == In(Column("k"), tuple(keys))


def test_key_filter_keeps_missing_keys_when_the_small_side_has_one() -> None:
    # pandas' merge matches NaN with NaN and None with NaN
    assert join_keys.key_filter("k", [Literal(1)], True) == Or(
        (In(Column("k"), (Literal(1),)), IsNull(Column("k"))))


def test_key_filter_of_no_keys_matches_nothing() -> None:
    assert join_keys.key_filter("k", [], False) == In(Column("k"), ())


@pytest.mark.parametrize(("big", "small", "same"), [
    (np.dtype("int64"), np.dtype("int32"), True),
    (np.dtype("uint8"), np.dtype("uint64"), True),
    (np.dtype("int64"), np.dtype("uint64"), False),  # pandas may meet them as float64
    (np.dtype("int64"), np.dtype("float64"), False),
    (np.dtype("float64"), np.dtype("float32"), True),
    (pd.StringDtype(na_value=np.nan), pd.StringDtype(na_value=np.nan), True),
    (np.dtype("datetime64[ms]"), np.dtype("datetime64[ms]"), True),
    (np.dtype("datetime64[ms]"), np.dtype("datetime64[ns]"), False),
    (np.dtype("bool"), np.dtype("bool"), False),
    (pd.ArrowDtype(__import__("pyarrow").int64()), np.dtype("int64"), False),
])
def test_same_kind(big: object, small: object, same: bool) -> None:
    assert join_keys._same_kind(big, small) is same
