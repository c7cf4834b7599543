"""SQL-dialect float aggregates over groups holding +inf and -inf together, NaN, -0.0 and
nulls, under several partitionings, on the arrow engine and the bpf data paths: each answer
equals DuckDB's over the same rows (IEEE: +inf + -inf is NaN, whichever partition holds which
sign; SQL orders NaN above +inf for MIN/MAX). The pandas dialect's sums of the same groups are
IEEE too (NaN for a group holding both infinities), what pandas itself gives."""

from __future__ import annotations

import math

import pandas as pd
import pyarrow as pa
import pytest

from bpfstore.connector import Client, avg, col, count, count_star, max_, min_, sum_
from bpfstore.contract.errors import Unsupported
from conftest import reported, require_bpf
from oracle import assert_same_rows, duckdb_answer

INF, NAN = math.inf, math.nan
# (group, value): each group is one hostile case; rows interleave so every partitioning
# splits some groups across partitions and keeps others whole
GROUPS = {
    0: [INF, -INF],  # both signs: NaN
    1: [INF, 1.0, -INF, 2.0],
    2: [INF, 1.0, INF],  # one sign: inf
    3: [-INF, -2.5],
    4: [NAN, 1.0],  # NaN is a value in SQL: the sum is NaN, MAX is NaN
    5: [NAN, INF, -INF],
    6: [-0.0, -0.0],  # -0.0 sums to -0.0 (DuckDB and IEEE); compared as equal to 0.0
    7: [-0.0, 0.0],
    8: [None, None],  # only nulls: SUM/AVG/MIN/MAX NULL, COUNT 0
    9: [None, -INF, None],
    10: [5.0, -3.0, 0.25],
}


def table() -> pa.Table:
    rows = [(k, v) for i in range(4) for k, vs in GROUPS.items() for v in vs[i:i + 1]]
    return pa.table({"k": pa.array([k for k, _ in rows], pa.int64()),
                     "f": pa.array([v for _, v in rows], pa.float64())})


AGGS = [sum_("f"), avg("f"), min_("f"), max_("f"), count("f"), count_star()]
ORDER_AGGS = [min_("f"), max_("f"), count("f"), count_star()]  # what BPF runs (no float sums)
QUERIES = [([], None), (["k"], None), ([], col("k").isin([0, 6, 7])), (["k"], col("f").ne(INF))]


@pytest.mark.parametrize(("engine", "partition_rows"), [
    ("arrow", 1), ("arrow", 3), ("arrow", 100), ("auto", 5), ("bpf-hot", 5), ("bpf-cold", 7)])
def test_float_edges_equal_duckdb(client: Client, agents: list, engine: str,
                                  partition_rows: int) -> None:
    """bpf runs MIN/MAX/COUNT of floats (in its SQL float order) and refuses float sums,
    naming why; arrow (and auto, which falls back to it) runs them all. Fewer partitions on
    the bpf paths: each distinct plan compiles a program and each cold partition is a read."""
    forced = engine.startswith("bpf-")
    if engine != "arrow":
        require_bpf(agents[0])
    data = table()
    client.write("float_edges", data, partition_rows=partition_rows, overwrite=True)
    if forced:
        with pytest.raises(Unsupported, match="bpf: float sums"):
            client.aggregate("float_edges", AGGS, group_by=["k"], engine=engine)
    for group_by, where in QUERIES:
        aggs = ORDER_AGGS if forced else AGGS
        what = f"{engine}, {partition_rows} rows/partition, by {group_by}, where {where}"
        result, report = reported(client, "float_edges", aggs, where, group_by, engine=engine)
        if forced:  # it ran where asked (partitions pruned by statistics aside)
            path = ("bpf", engine.removeprefix("bpf-"))
            assert {(p.engine, p.path) for p in report.partitions} <= {
                path, ("stats", "")}, what
        ours = list(zip(*[c.to_pylist() for c in result.columns], strict=True))
        oracle = duckdb_answer(data, where, aggs, group_by)
        assert_same_rows(ours, oracle, set() if forced else {len(group_by) + 1}, what)


@pytest.mark.parametrize("partition_rows", [1, 2, 3, 100])
def test_pandas_dialect_float_sums_are_ieee(client: Client, partition_rows: int) -> None:
    data = table()
    client.write("float_edges", data, partition_rows=partition_rows, overwrite=True)
    result = client.aggregate("float_edges", [sum_("f"), avg("f")], group_by=["k"],
                              dialect="pandas")
    ours = list(zip(*[c.to_pylist() for c in result.columns], strict=True))
    g = data.to_pandas().groupby("k").f
    # the mean of no values travels as null (the Dask layer shows it as NaN)
    mean = g.mean().astype(object).where(g.count() > 0, None)
    expected = pd.DataFrame({"s": g.sum(), "m": mean}).reset_index()
    assert_same_rows(ours, list(expected.itertuples(index=False, name=None)), {1, 2},
                     f"pandas dialect, {partition_rows} rows/partition")
    assert math.isnan(dict((r[0], r[1]) for r in ours)[0])  # +inf + -inf, split or not


SQL = [
    "SELECT k, SUM(f) AS s, AVG(f) AS m, MIN(f) AS lo, MAX(f) AS hi, COUNT(f) AS n "
    "FROM float_edges GROUP BY k",
    "SELECT SUM(f) AS s, MIN(f) AS lo, MAX(f) AS hi FROM float_edges WHERE k IN (0, 6, 7)",
    "SELECT k, SUM(f) AS s FROM float_edges WHERE f <> 1.0 GROUP BY k HAVING COUNT(*) > 1",
    "SELECT MIN(f) AS lo, MAX(f) AS hi, COUNT(*) AS n FROM float_edges WHERE f > -1e308",
]


@pytest.mark.parametrize("engine", ["arrow", "auto"])
def test_sql_text_equals_duckdb(client: Client, engine: str) -> None:
    """`bpfstore sql`'s path: the aggregates pushed to the agents, finished by DuckDB."""
    import duckdb

    data = table()
    client.write("float_edges", data, partition_rows=3, overwrite=True)
    con = duckdb.connect()
    con.register("float_edges", data)
    for text in SQL:
        ours = [tuple(r.values()) for r in client.sql(text, engine=engine).to_pylist()]
        assert_same_rows(ours, con.sql(text).fetchall(), {2} if "AVG" in text else set(), text)
