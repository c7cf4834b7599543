"""Shared helpers of the Dask end-to-end tests: data, the pandas oracle, agent call counters."""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

ROWS, PARTITION_ROWS = 6000, 1000  # 6 partitions over 3 agents


def mixed_table(seed: int = 0) -> pa.Table:
    """Ints, floats with NaN and nulls, decimals, strings with nulls, dates."""
    rng = np.random.default_rng(seed)
    n = ROWS
    b = rng.normal(10, 5, n)
    b[rng.random(n) < 0.05] = np.nan
    return pa.table({
        "a": pa.array(rng.integers(0, 10, n), pa.int64()),
        "b": pa.array(b, pa.float64(), mask=rng.random(n) < 0.05),
        "d": pa.array([decimal.Decimal(int(x)).scaleb(-2) for x in rng.integers(0, 10**7, n)],
                      pa.decimal128(15, 2)),
        "k": pa.array(rng.choice(["x", "y", "z", None], n).tolist(), pa.string()),
        "dt": pa.array([dt.date(1994, 1, 1) + dt.timedelta(days=int(x))
                        for x in rng.integers(0, 1500, n)], pa.date32()),
    })


def oracle_frame(table: pa.Table) -> pd.DataFrame:
    """The same data as plain pandas, converted without any bpfstore code: what a user would
    get with pandas and the default dtypes (decimals as correctly rounded floats)."""
    out = {}
    for f in table.schema:
        col = table.column(f.name)
        if pa.types.is_decimal(f.type):
            out[f.name] = pd.Series([math.nan if v is None else float(v)
                                     for v in col.to_pylist()], dtype="float64")
        elif pa.types.is_date(f.type):
            out[f.name] = pd.to_datetime(pd.Series(col.to_pylist())).astype("datetime64[ms]")
        elif pa.types.is_string(f.type) or pa.types.is_string_view(f.type):
            out[f.name] = pd.Series(col.to_pylist(), dtype="str")
        else:
            out[f.name] = col.to_pandas()
    return pd.DataFrame(out)


class CallCounter:
    """Counts the Aggregate and Scan RPCs the agents serve (agent side, not client side)."""

    def __init__(self, agents: list[Any]) -> None:
        self.counts: Counter[str] = Counter()
        self._agents = agents
        self._orig = [a.service._plan for a in agents]
        for a, orig in zip(agents, self._orig, strict=True):
            a.service._plan = self._wrap(orig)

    def _wrap(self, orig: Any) -> Any:
        def plan(request: Any) -> Any:
            self.counts[type(request).__name__.removesuffix("Request")] += 1
            return orig(request)
        return plan

    def reset(self) -> None:
        self.counts.clear()

    @property
    def aggregates(self) -> int:
        return self.counts["Aggregate"]

    @property
    def scans(self) -> int:
        return self.counts["Scan"]

    def restore(self) -> None:
        for a, orig in zip(self._agents, self._orig, strict=True):
            a.service._plan = orig


def counting(agents: list[Any]) -> Iterator[CallCounter]:
    counter = CallCounter(agents)
    try:
        yield counter
    finally:
        counter.restore()


def assert_same_rows(ours: pd.DataFrame, expected: pd.DataFrame, rtol: float = 1e-9) -> None:
    """The same rows in any order (read_bpfstore's tasks come agent by agent)."""
    def by_value(f: pd.DataFrame) -> pd.DataFrame:
        return f.reset_index(drop=True).sort_values(list(f.columns), ignore_index=True)

    assert_same(by_value(ours), by_value(expected), rtol)


def assert_same(ours: Any, expected: Any, rtol: float = 1e-9) -> None:
    """Equal to pandas: floats within rounding, row labels of filtered rows ignored."""
    if isinstance(expected, pd.DataFrame | pd.Series):
        assert type(ours) is type(expected), (type(ours), type(expected))
        if isinstance(expected.index, pd.RangeIndex) or expected.index.name is None \
                and not isinstance(expected.index, pd.MultiIndex) \
                and expected.index.dtype.kind in "iu":
            ours, expected = ours.reset_index(drop=True), expected.reset_index(drop=True)
        else:
            ours, expected = ours.sort_index(), expected.sort_index()
        check = pd.testing.assert_frame_equal if isinstance(expected, pd.DataFrame) else \
            pd.testing.assert_series_equal
        check(ours, expected, rtol=rtol, check_exact=False)
        return
    if expected is pd.NaT:
        assert ours is pd.NaT, ours
        return
    if isinstance(expected, float | np.floating) and math.isnan(expected):
        assert isinstance(ours, float | np.floating) and math.isnan(ours)
        return
    if isinstance(expected, float | np.floating):
        assert math.isclose(float(ours), float(expected), rel_tol=rtol), (ours, expected)
        return
    assert ours == expected, (ours, expected)
    assert type(ours) is type(expected) or np.dtype(type(ours)) == np.dtype(type(expected)), \
        (type(ours), type(expected))


def write_parquet_like(ddf: Any, table: pa.Table, out: Any) -> None:
    """`table` (the stored rows, in their order) as Parquet files split as `ddf`, a
    read_bpfstore frame, splits them: one file per Dask partition, its stored partitions'
    rows in order, so dd.read_parquet(out) has the same rows in the same partitions."""
    import pyarrow.parquet as pq

    source = ddf.expr.operand("source")
    out.mkdir(parents=True, exist_ok=True)
    for i, parts in enumerate(source.task_partitions):
        pq.write_table(pa.concat_tables([table.slice(source.starts[p], source.desc.partitions[p]
                                                     .rows) for p in parts]),
                       out / f"part-{i:05d}.parquet")


def result_rows(result: Any) -> tuple[list[tuple], list[tuple[str, str]]]:
    """Rows and (column, dtype) pairs of a computed frame, series or scalar."""
    if isinstance(result, pd.Series):
        result = result.to_frame()
    if isinstance(result, pd.DataFrame):
        result = result.reset_index(drop=True)
        return (list(result.itertuples(index=False, name=None)),
                [(str(c), _dtype(d)) for c, d in result.dtypes.items()])
    return [(float(result),)], [("", type(result).__name__)]


def _dtype(dtype: Any) -> str:
    # read_parquet's strings are pandas' "string" (NA-valued), read_bpfstore's its "str":
    # both string types; the values are compared exactly
    return "str" if str(dtype) == "string" else str(dtype)
