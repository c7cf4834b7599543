"""Dask front end: Arrow dtypes, writing, and the no-pushdown path a dask upgrade falls to."""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Iterator
from typing import Any

import dask
import pandas as pd
import pyarrow as pa
import pytest
from dask_support import (
    PARTITION_ROWS,
    CallCounter,
    assert_same,
    assert_same_rows,
    mixed_table,
    oracle_frame,
)

import bpfstore.connector.dask._compat as compat
from bpfstore.connector.dask import explain, read_bpfstore, to_bpfstore

dd = pytest.importorskip("dask.dataframe")

pytestmark = pytest.mark.dask


@pytest.fixture(scope="module")
def dataset(client: Any) -> tuple[str, pa.Table]:
    table = mixed_table(4)
    client.write("dask_io", table, partition_rows=PARTITION_ROWS, overwrite=True)
    return "dask_io", table


@pytest.fixture()
def counter(agents: list[Any]) -> Iterator[CallCounter]:
    c = CallCounter(agents)
    yield c
    c.restore()


def test_installed_dask_is_in_the_tested_range() -> None:
    # The pin in pyproject.toml and _compat.TESTED must agree with what CI installs.
    assert compat.PUSHDOWN, compat.REASON


def test_arrow_dtypes_give_exact_decimals(dataset: tuple[str, pa.Table], agents: list[Any],
                                          counter: CallCounter) -> None:
    ddf = read_bpfstore(dataset[0], [a.address for a in agents], dtypes="arrow")
    assert ddf.d.dtype == pd.ArrowDtype(pa.decimal128(15, 2))
    assert ddf.dt.dtype == pd.ArrowDtype(pa.date32())
    pdf = dataset[1].to_pandas(types_mapper=pd.ArrowDtype)
    pdf["k"] = pdf["k"].astype("str")
    # unfiltered: pandas' labels, the tasks' partitions agent by agent
    pd.testing.assert_frame_equal(ddf.compute(scheduler="threads").sort_index(), pdf)

    def q(df: Any) -> Any:
        f = df[(df.dt >= dt.date(1995, 1, 1)) & (df.a < 5)]
        return (f.d * 2).sum()

    ours = q(ddf).compute(scheduler="threads")
    expected = q(pdf)
    assert isinstance(ours, decimal.Decimal) and ours == expected
    assert counter.scans == ddf.npartitions and counter.aggregates == ddf.npartitions  # full read

    counter.reset()
    grouped = ddf.groupby("k").agg({"d": ["sum", "max"], "a": "count"})
    assert_same(grouped.compute(scheduler="threads"),
                pdf.groupby("k").agg({"d": ["sum", "max"], "a": "count"}))
    assert (counter.aggregates, counter.scans) == (ddf.npartitions, 0)

    # ArrowDtype counts NaN as a value (the PANDAS dialect: missing), and compares NA with
    # Kleene logic: such columns stay in Dask
    counter.reset()
    assert_same(ddf[ddf.a > 3].count().compute(scheduler="threads"), pdf[pdf.a > 3].count())
    assert_same(ddf[ddf.b != 3].a.sum().compute(scheduler="threads"), pdf[pdf.b != 3].a.sum())
    assert counter.aggregates == 0


def test_to_bpfstore_round_trip(dataset: tuple[str, pa.Table], agents: list[Any],
                                client: Any) -> None:
    addresses = [a.address for a in agents]
    ddf = read_bpfstore(dataset[0], addresses)
    derived = ddf[ddf.a > 2].assign(e=ddf[ddf.a > 2].d * 3)[["a", "k", "e"]]
    summary = to_bpfstore(derived, "dask_written", addresses, partition_rows=700, overwrite=True)
    expected = oracle_frame(dataset[1])
    expected = expected[expected.a > 2].assign(e=lambda f: f.d * 3)[["a", "k", "e"]]
    assert summary.rows == len(expected)
    back = read_bpfstore("dask_written", addresses)
    assert_same_rows(back.compute(scheduler="threads"), expected)
    assert_same(back.groupby("k").e.sum().compute(scheduler="threads"),
                expected.groupby("k").e.sum())


def test_without_pushdown_results_stay_correct(dataset: tuple[str, pa.Table],
                                               agents: list[Any], counter: CallCounter,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """What a dask release with renamed internals gets: full reads, the same answers."""
    monkeypatch.setattr(compat, "PUSHDOWN", False)
    monkeypatch.setattr(compat, "REASON", "simulated")
    ddf = read_bpfstore(dataset[0], [a.address for a in agents])
    pdf = oracle_frame(dataset[1])
    assert "no pushdown" in explain(ddf.a.sum())
    with dask.config.set(scheduler="threads"):
        # (sum, not mean: dask 2026.8's own groupby mean keeps a NaN group for `str` keys)
        assert_same(ddf[ddf.a > 5].groupby("k").b.sum().compute(),
                    pdf[pdf.a > 5].groupby("k").b.sum())
        assert_same(len(ddf[ddf.a < 3]), len(pdf[pdf.a < 3]))
    assert counter.aggregates == 0 and counter.scans > 0


def test_to_bpfstore_writes_dates(dataset: tuple[str, pa.Table], agents: list[Any]) -> None:
    addresses = [a.address for a in agents]
    ddf = read_bpfstore(dataset[0], addresses)
    to_bpfstore(ddf[["a", "dt"]], "dask_written_dates", addresses, overwrite=True)
    back = read_bpfstore("dask_written_dates", addresses)
    assert_same_rows(back.compute(scheduler="threads"), oracle_frame(dataset[1])[["a", "dt"]])


def test_a_renamed_dask_class_only_loses_pushdown(dataset: tuple[str, pa.Table],
                                                  agents: list[Any], counter: CallCounter,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The rewrite matches exact dask classes; one it no longer finds falls back to a scan."""
    monkeypatch.setattr(compat, "REDUCTIONS", {})  # as if dask renamed Sum, Min, ...
    ddf = read_bpfstore(dataset[0], [a.address for a in agents], columns=["a", "b"])
    pdf = oracle_frame(dataset[1])[["a", "b"]]
    assert "pushed down" not in explain(ddf[ddf.a > 5].b.sum())
    assert_same(ddf[ddf.a > 5].b.sum().compute(scheduler="threads"), pdf[pdf.a > 5].b.sum())
    assert counter.aggregates == 0 and counter.scans == ddf.npartitions


def test_to_bpfstore_overwrite_that_fails_midway_keeps_the_old_data(
        dataset: tuple[str, pa.Table], agents: list[Any], client: Any) -> None:
    """A partition that fails to compute after others were sent: nothing of the overwrite
    becomes visible (the partitions before it were only staged), the old rows stay."""
    addresses = [a.address for a in agents]
    client.write("dask_failed", dataset[1], partition_rows=PARTITION_ROWS, overwrite=True)
    before = client.scan_table("dask_failed").to_pandas()
    version = client.describe("dask_failed").version

    def boom(part: pd.DataFrame) -> pd.DataFrame:
        if len(part) and part.a.min() >= 0 and part.index[0] > 0:
            raise ValueError("boom")
        return part

    ddf = read_bpfstore(dataset[0], addresses)
    assert ddf.npartitions > 1
    with pytest.raises(ValueError, match="boom"):
        to_bpfstore(ddf.map_partitions(boom, meta=ddf._meta), "dask_failed", addresses,
                    partition_rows=50, overwrite=True)
    pd.testing.assert_frame_equal(client.scan_table("dask_failed").to_pandas(), before)
    assert client.describe("dask_failed").version == version
