"""Join key pushdown (connector/dask/join_keys.py): a merge of read_bpfstore with a small frame
equals the same Dask code over dd.read_parquet of the same rows, on threads and on worker
processes; the keys are pushed where the rule allows (explain says so, fewer bytes move) and
nowhere else (a left join keeping the big side, multi-column keys, too many keys)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dask_support import write_parquet_like

from bpfstore.connector.dask import explain, read_bpfstore, stats

dask = pytest.importorskip("dask")
dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

pytestmark = [pytest.mark.dask,
              pytest.mark.filterwarnings("ignore:Merging dataframes with merge column")]

BIG_ROWS, SMALL_ROWS = 6000, 400


def _tables() -> tuple[pa.Table, pa.Table]:
    rng = np.random.default_rng(17)
    n, m = BIG_ROWS, SMALL_ROWS
    names = np.array([f"n{i:03d}" for i in range(200)], dtype=object)
    big = pa.table({
        "k": pa.array(rng.integers(0, 3000, n), pa.int64()),
        "f": pa.array(np.where(rng.random(n) < 0.05, np.nan, rng.integers(0, 100, n)),
                      pa.float64(), mask=rng.random(n) < 0.03),
        "s": pa.array(names[rng.integers(0, 200, n)].tolist(), pa.string(),
                      mask=rng.random(n) < 0.05),
        "v": pa.array(rng.normal(size=n), pa.float64()),
    })
    sk = rng.integers(0, 3000, m).astype(np.int32)
    sk[1::2] = sk[::2]  # every key twice: duplicates on the small side
    small = pa.table({
        "sk": pa.array(sk, pa.int32()),
        "sf": pa.array(np.where(rng.random(m) < 0.1, np.nan, rng.integers(0, 100, m)),
                       pa.float64()),
        "ss": pa.array(names[rng.integers(0, 200, m)].tolist(), pa.string(),
                       mask=rng.random(m) < 0.1),
        "w": pa.array(np.arange(m), pa.int64()),
    })
    return big, small


def _few(s: Any) -> Any:
    return s[s.w < 30]


Query = Callable[[Any, Any], Any]
# (name, query over (big, small), keys pushed?)
CASES: list[tuple[str, Query, bool]] = [
    ("inner_int64_int32", lambda b, s: b.merge(_few(s), left_on="k", right_on="sk"), True),
    ("inner_small_on_left", lambda b, s: _few(s).merge(b, left_on="sk", right_on="k"), True),
    ("left_keeps_small", lambda b, s: _few(s).merge(b, left_on="sk", right_on="k", how="left"),
     True),
    ("right_keeps_small", lambda b, s: b.merge(_few(s), left_on="k", right_on="sk",
                                               how="right"), True),
    ("left_keeps_big", lambda b, s: b.merge(_few(s), left_on="k", right_on="sk", how="left"),
     False),
    ("right_keeps_big", lambda b, s: _few(s).merge(b, left_on="sk", right_on="k", how="right"),
     False),
    ("outer", lambda b, s: b.merge(_few(s), left_on="k", right_on="sk", how="outer"), False),
    ("multi_key", lambda b, s: b.merge(_few(s), left_on=["k", "f"], right_on=["sk", "sf"]),
     False),
    ("float_nan_keys", lambda b, s: b.merge(_few(s), left_on="f", right_on="sf"), True),
    ("string_none_keys", lambda b, s: b.merge(_few(s), left_on="s", right_on="ss"), True),
    ("empty_small", lambda b, s: b.merge(s[s.w < 0], left_on="k", right_on="sk"), True),
    ("same_name_on", lambda b, s: b.merge(_few(s).rename(columns={"sk": "k"}), on="k"), True),
    ("sum_after", lambda b, s: b.merge(_few(s), left_on="k", right_on="sk").v.sum(), True),
    ("filter_after", lambda b, s: (lambda j: j[j.v > 0])(
        b[b.v < 1].merge(_few(s), left_on="k", right_on="sk")), True),
]


@pytest.fixture(scope="module")
def data(client: Any, agents: list[Any], tmp_path_factory: pytest.TempPathFactory
         ) -> dict[str, Any]:
    big, small = _tables()
    client.write("jp_big", big, partition_rows=500, overwrite=True)
    client.write("jp_small", small, partition_rows=50, overwrite=True)
    out = tmp_path_factory.mktemp("join_pushdown")
    addresses = [a.address for a in agents]
    write_parquet_like(read_bpfstore("jp_big", addresses, partitions_per_task=1), big,
                       out / "big")
    (out / "small").mkdir()
    for i in range(0, SMALL_ROWS, 50):
        pq.write_table(small.slice(i, 50), out / "small" / f"part-{i:05d}.parquet")
    return {"agents": addresses, "parquet": out}


def ours(data: dict[str, Any], **options: Any) -> tuple[Any, Any]:
    a = data["agents"]
    return (read_bpfstore("jp_big", a, partitions_per_task=1, **options),
            read_bpfstore("jp_small", a, partitions_per_task=1))


def oracle(data: dict[str, Any]) -> tuple[Any, Any]:
    return (dd.read_parquet(data["parquet"] / "big"), dd.read_parquet(data["parquet"] / "small"))


def assert_equal(got: Any, expected: Any) -> None:
    if isinstance(expected, pd.DataFrame):
        assert list(got.columns) == list(expected.columns)
        order = list(expected.columns)
        got = got.sort_values(order, ignore_index=True)
        expected = expected.sort_values(order, ignore_index=True)
        # read_parquet's strings are `string[pyarrow]`, ours pandas' `str`
        pd.testing.assert_frame_equal(got, expected, check_dtype=False, rtol=1e-9)
    else:
        assert math.isclose(float(got), float(expected), rel_tol=1e-9), (got, expected)


def threads(collection: Any) -> Any:
    with dask.config.set({"dataframe.shuffle.method": "tasks"}):
        return collection.compute(scheduler="threads")


def moved(collection: Any) -> int:
    """Bytes the agents returned while computing `collection` in this process."""
    stats(reset=True)
    threads(collection)
    return stats(reset=True).get("bytes_moved", 0)


@pytest.fixture(scope="module")
def processes() -> Iterator[Any]:
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as c, distributed.Client(c) as dc:
        yield dc


@pytest.mark.parametrize(("name", "query", "pushed"), CASES, ids=[c[0] for c in CASES])
def test_equals_read_parquet_and_pushes_where_allowed(data: dict[str, Any], name: str,
                                                      query: Query, pushed: bool) -> None:
    expected = threads(query(*oracle(data)))
    got = query(*ours(data))
    assert ("join keys pushed" in explain(got)) is pushed, explain(got)
    assert_equal(threads(got), expected)
    off = query(*ours(data, join_pushdown=False))
    assert "join keys pushed" not in explain(off)
    assert_equal(threads(off), expected)
    if pushed:
        assert moved(got) < moved(off)


def test_explain_names_the_column_and_count(data: dict[str, Any]) -> None:
    big, small = ours(data)
    few = _few(small).compute()
    text = explain(big.merge(_few(small), left_on="k", right_on="sk"))
    assert f"join keys pushed: k in {few.sk.nunique()} key(s) (from a small side of 30 rows)" \
        ", as a key set" in text, text
    text = explain(big.merge(_few(small), left_on="f", right_on="sf"))
    assert "join keys pushed: f in" in text and "key(s) or missing" in text, text


def test_too_many_keys_is_not_pushed(data: dict[str, Any]) -> None:
    big, small = ours(data, max_join_keys=10)
    expected = threads(oracle(data)[0].merge(_few(oracle(data)[1]), left_on="k",
                                             right_on="sk"))
    j = big.merge(_few(small), left_on="k", right_on="sk")  # 30 rows: above the bound
    assert "join keys pushed" not in explain(j)
    assert_equal(threads(j), expected)
    # one partition of unknown length is computed, but its 15 keys are too many to push
    pandas_small = _few(small).compute()
    j = big.merge(dd.from_pandas(pandas_small, npartitions=1), left_on="k", right_on="sk")
    assert "join keys pushed" not in explain(j)
    assert_equal(threads(j), expected)


def test_one_partition_pandas_small_side(data: dict[str, Any]) -> None:
    big, small = ours(data)
    frame = _few(small).compute()
    j = big.merge(dd.from_pandas(frame, npartitions=1), left_on="k", right_on="sk")
    assert "join keys pushed" in explain(j)
    expected = threads(oracle(data)[0].merge(dd.from_pandas(frame, npartitions=1),
                                             left_on="k", right_on="sk"))
    assert_equal(threads(j), expected)


def test_small_side_computed_once(data: dict[str, Any], agents: list[Any]) -> None:
    """The small side's scans run once per compute: for its keys, and the merge reads that."""
    from dask_support import CallCounter

    big, small = ours(data)
    counter = CallCounter(agents)
    try:
        threads(big.merge(_few(small), left_on="k", right_on="sk"))
    finally:
        counter.restore()
    # 12 big tasks, 8 small ones (scanned once), one COUNT(*) bounding the small side
    assert counter.scans == 12 + 8, counter.counts
    assert counter.aggregates <= 3, counter.counts


PROCESS_CASES = [c for c in CASES if c[0] in (
    "inner_int64_int32", "left_keeps_small", "left_keeps_big", "float_nan_keys",
    "string_none_keys", "empty_small", "sum_after")]


@pytest.mark.parametrize(("name", "query", "pushed"), PROCESS_CASES,
                         ids=[c[0] for c in PROCESS_CASES])
def test_worker_processes(data: dict[str, Any], processes: Any, name: str, query: Query,
                          pushed: bool) -> None:
    expected = threads(query(*oracle(data)))
    got = processes.compute(query(*ours(data))).result()
    assert_equal(got, expected)
