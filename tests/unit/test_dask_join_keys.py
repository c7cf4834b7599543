"""The pieces of join key pushdown that need no agents: the filters built from keys (a key set
where the keys convert exactly, else an IN list), and which key dtypes pandas' merge and the
plan compare alike."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

pytest.importorskip("dask.dataframe")

from bpfstore.connector.dask import join_keys  # noqa: E402
from bpfstore.contract.plan import Column, In, IsNull, KeySet, Literal, Or  # noqa: E402


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


def _schema(**fields: pa.DataType) -> pa.Schema:
    return pa.schema(list(fields.items()))


@pytest.mark.parametrize(("values", "stored"), [
    (pd.Series([3, 1, 2], dtype="int64"), pa.int32()),
    (pd.Series(["b", "a"], dtype="str"), pa.dictionary(pa.int32(), pa.string())),
    (pd.Series([1.5, -0.0]), pa.float64()),
    (pd.Series(pd.to_datetime(["2020-01-01", "2021-06-30"])).astype("datetime64[us]"),
     pa.timestamp("us")),
])
def test_keys_that_convert_exactly_become_a_key_set(values: pd.Series, stored) -> None:
    found = join_keys.key_set("k", values, False, _schema(k=stored))
    assert found is not None
    where, n = found
    assert isinstance(where, KeySet) and where.arg == Column("k") and n == len(values)
    assert where.keys.null_count == 0


def test_a_missing_key_on_the_small_side_is_a_null_key() -> None:
    found = join_keys.key_set("k", pd.Series([1, 2]), True, _schema(k=pa.int64()))
    assert found is not None and found[0].keys.null_count == 1 and found[1] == 2


def test_integer_keys_beyond_the_column_are_not_counted() -> None:
    found = join_keys.key_set("k", pd.Series([1, 300, -5]), False, _schema(k=pa.uint8()))
    assert found is not None and found[1] == 1


@pytest.mark.parametrize(("values", "stored"), [
    # ns keys against a us column, datetimes against dates: no exact conversion
    (pd.Series(pd.to_datetime([1_000_000_001], unit="ns")), pa.timestamp("us")),
    (pd.Series(pd.to_datetime(["2020-01-01"])), pa.date32()),
])
def test_keys_without_an_exact_conversion_are_no_key_set(values: pd.Series, stored) -> None:
    assert join_keys.key_set("k", values, False, _schema(k=stored)) is None


def test_keys_over_the_byte_bound_are_no_key_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(join_keys, "MAX_SET_BYTES", 100)
    values = pd.Series(range(100), dtype="int64")  # 800 bytes
    assert join_keys.key_set("k", values, False, _schema(k=pa.int64())) is None
