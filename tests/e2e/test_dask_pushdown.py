"""Dask front end, differential: every query equals pandas on the same data, and the agents'
own call counters prove which path ran (Aggregate calls only = pushed down)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd
import pytest
from dask_support import PARTITION_ROWS, ROWS, CallCounter, assert_same, mixed_table, oracle_frame

from bpfstore.connector.dask import explain, read_bpfstore

dd = pytest.importorskip("dask.dataframe")

pytestmark = pytest.mark.dask
NPARTS = ROWS // PARTITION_ROWS

AGG, SCAN, MIXED = "aggregate", "scan", "mixed"


def _chained_assigns(df: Any) -> Any:
    """TPC-H Q1's shape: assigns on a filtered frame, the second computed from the first."""
    f = df[df.a > 2]
    f = f.assign(v=f.d * (1 - f.b))
    f = f.assign(w=f.v * (1 + f.b))
    return f.groupby("k").agg(v=("v", "sum"), w=("w", "sum"), b=("b", "mean"), n=("a", "size"))


def _udf(pdf: pd.DataFrame) -> pd.DataFrame:
    return pdf.assign(b=pdf.b * 2)


# (id, query on a pandas or Dask frame, path the agents must see)
QUERIES: list[tuple[str, Callable[[Any], Any], str]] = [
    # aggregates
    ("sum_filtered", lambda df: df[df.a > 5].b.sum(), AGG),
    ("min_filtered", lambda df: df[df.a > 5].b.min(), AGG),
    ("max_decimal", lambda df: df[df.a <= 2].d.max(), AGG),
    ("count_filtered", lambda df: df[df.a > 5].b.count(), AGG),
    ("mean_filtered", lambda df: df[df.a > 5].b.mean(), AGG),
    ("sum_int", lambda df: df.a.sum(), AGG),
    ("sum_decimal", lambda df: df.d.sum(), AGG),
    ("max_not_isin", lambda df: df[~df.k.isin(["x"])].a.max(), AGG),
    ("min_date", lambda df: df.dt.min(), AGG),
    ("len_shape", lambda df: df[df.a < 4].shape[0], AGG),
    ("frame_count", lambda df: df[df.a > 5].count(), AGG),
    ("frame_sum", lambda df: df[["a", "b"]].sum(), AGG),
    ("frame_mean", lambda df: df[["b", "d"]].mean(), AGG),
    ("gb_sum", lambda df: df.groupby("k").b.sum(), AGG),
    ("gb_mean", lambda df: df.groupby("k").b.mean(), AGG),
    ("gb_count", lambda df: df.groupby("k").b.count(), AGG),
    ("gb_min", lambda df: df.groupby("k").d.min(), AGG),
    ("gb_max_date", lambda df: df.groupby("k").dt.max(), AGG),
    ("gb_size", lambda df: df.groupby("k").size(), AGG),
    ("gb_two_keys_filtered", lambda df: df[df.a > 5].groupby(["k", "a"]).b.sum(), AGG),
    ("gb_frame_sum", lambda df: df.groupby("k")[["b", "d"]].sum(), AGG),
    ("gb_agg_dict", lambda df: df.groupby("k").agg({"b": "mean", "d": "max"}), AGG),
    ("gb_agg_lists", lambda df: df.groupby("k").agg({"b": ["sum", "max"], "a": ["count"]}), AGG),
    ("gb_named", lambda df: df.groupby("k").agg(tot=("b", "sum"), hi=("d", "max")), AGG),
    ("gb_date_key", lambda df: df[df.a == 1].groupby("dt").a.count(), AGG),
    ("sum_of_nothing", lambda df: df[df.a > 100].b.sum(), AGG),
    ("mean_of_nothing", lambda df: df[df.a > 100].b.mean(), AGG),
    ("len_of_nothing", lambda df: df[df.a > 100].shape[0], AGG),
    ("date_min_of_nothing", lambda df: df[df.a > 100].dt.min(), AGG),
    ("series_filtered_by_itself", lambda df: df.b[df.b > 12].sum(), AGG),
    ("eq_string", lambda df: df[df.k == "y"].d.mean(), AGG),
    ("isin_with_none", lambda df: df[df.k.isin(["x", None])].a.sum(), AGG),
    ("isin_ints", lambda df: df[df.a.isin([1, 3, 5])].groupby("k").d.max(), AGG),
    ("gb_sort_false", lambda df: df.groupby("k", sort=False).b.sum(), AGG),
    ("frame_size", lambda df: df[df.a > 5].size, AGG),
    ("series_size", lambda df: df.b.size, AGG),
    ("min_count", lambda df: df[df.a > 8].b.sum(min_count=10**6), MIXED),
    ("numeric_only", lambda df: df[["a", "b", "k"]].sum(numeric_only=True), MIXED),
    # arithmetic
    ("arith_mul_literal", lambda df: (df.d * 2).sum(), AGG),
    ("arith_q6_shape", lambda df: (df[df.a < 7].d * (1 - df[df.a < 7].b)).sum(), AGG),
    ("arith_div_neg", lambda df: (-(df.d / (df.a + 1))).mean(), AGG),
    ("assign_groupby", lambda df: df.assign(v=df.d * (1 + df.b), w=df.a - 1)
        .groupby("k").agg({"v": "sum", "w": ["mean", "min"]}), AGG),
    ("chained_assigns_filtered", _chained_assigns, AGG),
    # filters pushed into scans
    ("scan_projection", lambda df: df[["a", "b"]], SCAN),
    ("scan_filter", lambda df: df[df.a > 5], SCAN),
    ("scan_or_not", lambda df: df[((df.a > 5) & (df.b < 0)) | ~(df.b > 12)], SCAN),
    ("scan_isin_between", lambda df: df[df.k.isin(["x", "y"]) & df.d.between(10, 50000)], SCAN),
    ("scan_isna", lambda df: df[df.b.isna()][["a", "b"]], SCAN),
    ("scan_not_isna_isnull", lambda df: df[~df.b.isna() & df.k.isnull()], SCAN),  # no notna in dask
    ("scan_notnull_ne", lambda df: df[df.b.notnull() & (df.a != 3)].d, SCAN),
    ("scan_date_literal", lambda df: df[(df.dt >= "1995-01-01") & (df.dt < pd.Timestamp(
        "1995-03-01"))], SCAN),
    ("scan_literal_left", lambda df: df[(5 < df.a)  # noqa: SIM300 - literal on the left
                                        & df.b.between(0, 10, inclusive="neither")],
     SCAN),
    ("scan_assign", lambda df: df[df.a > 8].assign(v=lambda f: f.d * 2)[["a", "v"]], SCAN),
    ("assign_reuses_name", lambda df: df[df.a > 7].assign(a=lambda f: f.a * 2,
                                                         e=lambda f: f.d + 1)[["a", "e"]], SCAN),
    ("assign_override", lambda df: df.assign(b=df.b * 2, e=df.b + 1)[["b", "e"]], SCAN),
    # pandas aligns these by row label: the filter stays in Dask, which keeps the labels
    ("aligned_assign", lambda df: df[df.a > 8].assign(v=df.d * 2), SCAN),
    ("aligned_binop", lambda df: (df[df.a > 5].d - df.b).sum(), SCAN),
    ("scan_head", lambda df: df.head(7, compute=False) if hasattr(df, "dask") else df.head(7),
     SCAN),
    ("scan_partition", lambda df: df.partitions[2].b if hasattr(df, "partitions")
        else df.iloc[2 * PARTITION_ROWS:3 * PARTITION_ROWS].b, SCAN),
    # fallback: correct, just slower
    ("fb_dropna_false", lambda df: df.groupby("k", dropna=False).b.sum(), SCAN),
    ("fb_bool_column", lambda df: df[df.b > df.b.mean()].a.sum(), MIXED),
    ("fb_map_partitions", lambda df: df.map_partitions(_udf).b.sum()
        if hasattr(df, "map_partitions") else _udf(df).b.sum(), SCAN),
    ("fb_str_method", lambda df: df[df.k.str.startswith("x")].b.sum(), SCAN),
    ("fb_partial_and", lambda df: df[(df.a > 5) & df.k.str.startswith("y")].b.sum(), SCAN),
    ("fb_col_vs_col", lambda df: df[df.a > df.b].d.sum(), SCAN),
    ("fb_std", lambda df: df.b.std(), SCAN),
    ("fb_skipna_false", lambda df: df.d.sum(skipna=False), SCAN),
    ("fb_computed_key", lambda df: df.groupby(df.a % 2).b.sum(), SCAN),
    ("fb_pow", lambda df: (df.d ** 2).sum(), SCAN),
    ("fb_agg_std", lambda df: df.groupby("k").agg({"b": ["sum", "std"]}), SCAN),
]


@pytest.fixture(scope="module")
def dataset(client: Any) -> tuple[str, pd.DataFrame]:
    table = mixed_table()
    client.write("dask_mixed", table, partition_rows=PARTITION_ROWS, overwrite=True)
    return "dask_mixed", oracle_frame(table)


@pytest.fixture()
def counter(agents: list[Any]) -> Iterator[CallCounter]:
    c = CallCounter(agents)
    yield c
    c.restore()


def _by_value(x: Any) -> pd.DataFrame:
    frame = x.to_frame() if isinstance(x, pd.Series) else x
    return frame.reset_index(drop=True).sort_values(list(frame.columns), ignore_index=True)


def check(ddf: Any, pdf: pd.DataFrame, query: Callable[[Any], Any], path: str,
          counter: CallCounter, **compute: Any) -> None:
    expected = query(pdf)
    lazy = query(ddf)
    counter.reset()
    ours = lazy.compute(**compute)
    if ddf.npartitions != NPARTS and isinstance(expected, pd.DataFrame | pd.Series) \
            and expected.index.name is None and expected.index.dtype.kind in "iu" \
            and not isinstance(expected.index, pd.MultiIndex):
        # rows of tasks that group partitions agent by agent: the same rows, in another order
        assert type(ours) is type(expected)
        ours, expected = _by_value(ours), _by_value(expected)
    assert_same(ours, expected)
    if path == AGG:
        assert (counter.aggregates, counter.scans) == (ddf.npartitions, 0), counter.counts
    elif path == SCAN:
        assert counter.aggregates == 0 and counter.scans >= 1, counter.counts


# `partitions[2]` is other rows when tasks group partitions: that query runs one partition a
# task here (test_dask_partitions_per_task checks partitions[i] of grouped tasks).
CASES = [pytest.param(*q, per_task, id=f"{q[0]}-{label}") for q in QUERIES
         for per_task, label in ((1, "one_per_task"), (2, "two_per_task"))
         if per_task == 1 or q[0] != "scan_partition"]


@pytest.mark.parametrize(("name", "query", "path", "per_task"), CASES)
def test_threads_equals_pandas(dataset: tuple[str, pd.DataFrame], agents: list[Any],
                               counter: CallCounter, name: str, query: Any, path: str,
                               per_task: int) -> None:
    ddf = read_bpfstore(dataset[0], [a.address for a in agents], partitions_per_task=per_task)
    assert ddf.npartitions == NPARTS // per_task  # 6 partitions, 2 on each of 3 agents
    check(ddf, dataset[1], query, path, counter, scheduler="threads")


def test_dtypes_and_full_read(dataset: tuple[str, pd.DataFrame], agents: list[Any]) -> None:
    ddf = read_bpfstore(dataset[0], [a.address for a in agents], partitions_per_task=1)
    assert ddf.npartitions == NPARTS
    assert dict(ddf.dtypes.astype(str)) == {"a": "int64", "b": "float64", "d": "float64",
                                            "k": "str", "dt": "datetime64[ms]"}
    # unfiltered reads keep pandas' row labels, and every value (decimals correctly rounded)
    pd.testing.assert_frame_equal(ddf.compute(scheduler="threads"), dataset[1])
    # grouped by agent (the default here: 2 partitions per agent, few threads) the rows come
    # agent by agent, with the same labels
    grouped = read_bpfstore(dataset[0], [a.address for a in agents])
    assert grouped.npartitions < NPARTS
    pd.testing.assert_frame_equal(grouped.compute(scheduler="threads").sort_index(), dataset[1])


def test_len_of_filtered_frame_is_pushed(dataset: tuple[str, pd.DataFrame], agents: list[Any],
                                         counter: CallCounter) -> None:
    ddf = read_bpfstore(dataset[0], [a.address for a in agents])
    pdf = dataset[1]
    with __import__("dask").config.set(scheduler="threads"):
        assert len(ddf[ddf.a < 4]) == len(pdf[pdf.a < 4])
    assert (counter.aggregates, counter.scans) == (ddf.npartitions, 0)


def test_explain_says_what_is_pushed(dataset: tuple[str, pd.DataFrame],
                                     agents: list[Any]) -> None:
    ddf = read_bpfstore(dataset[0], [a.address for a in agents])
    text = explain(ddf[ddf.a > 5].groupby("k").b.mean())
    assert "pushed down: aggregate [sum(b), count(b)] group by [k] where (a > 5)" in text
    text = explain(ddf[(ddf.a > 5) & ddf.k.str.startswith("y")].b.sum())
    # the pushable half of the AND goes to the agents, and only the columns still needed
    assert "columns ['b', 'k'], filter pushed: (a > 5)" in text and "fallback" in text


def test_new_version_is_never_served_from_an_old_graph(client: Any, agents: list[Any]) -> None:
    addresses = [a.address for a in agents]
    client.write("dask_versions", mixed_table(1), partition_rows=PARTITION_ROWS, overwrite=True)
    before = read_bpfstore("dask_versions", addresses)
    client.write("dask_versions", mixed_table(2), partition_rows=PARTITION_ROWS, overwrite=True)
    after = read_bpfstore("dask_versions", addresses)
    assert before.a.sum()._name != after.a.sum()._name
    assert before.__dask_graph__().keys().isdisjoint(after.__dask_graph__().keys())
    assert after.a.sum().compute(scheduler="threads") == oracle_frame(mixed_table(2)).a.sum()
