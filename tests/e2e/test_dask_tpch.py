"""TPC-H Q6 and Q1 written as ordinary Dask code, on a real distributed.LocalCluster: the
answers equal pandas' and the agents see only Aggregate calls (no scans)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dask_support import CallCounter, assert_same, oracle_frame

from bpfstore.connector.dask import explain, read_bpfstore

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.dask
SCALE, PARTITION_ROWS = 0.01, 10_000  # 60,175 rows in 7 partitions


def q6(df: Any) -> Any:
    f = df[(df.l_shipdate >= "1994-01-01") & (df.l_shipdate < "1995-01-01")
           & df.l_discount.between(0.05, 0.07) & (df.l_quantity < 24)]
    return (f.l_extendedprice * f.l_discount).sum()


def q1(df: Any) -> Any:
    f = df[df.l_shipdate <= "1998-09-02"]
    f = f.assign(disc_price=f.l_extendedprice * (1 - f.l_discount),
                 charge=f.l_extendedprice * (1 - f.l_discount) * (1 + f.l_tax))
    return f.groupby(["l_returnflag", "l_linestatus"]).agg({
        "l_quantity": ["sum", "mean"], "l_extendedprice": ["sum", "mean"],
        "disc_price": "sum", "charge": "sum", "l_discount": "mean", "l_orderkey": "count"})


def q1_named(df: Any) -> Any:
    f = df[df.l_shipdate <= "1998-09-02"]
    f = f.assign(disc_price=f.l_extendedprice * (1 - f.l_discount))
    return f.groupby(["l_returnflag", "l_linestatus"]).agg(
        sum_qty=("l_quantity", "sum"), avg_price=("l_extendedprice", "mean"),
        sum_disc_price=("disc_price", "sum"), count_order=("l_orderkey", "size"))


@pytest.fixture(scope="module")
def lineitem(client: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, pd.DataFrame]:
    exe = Path(sys.executable).parent / "tpchgen-cli"
    found = str(exe) if exe.exists() else shutil.which("tpchgen-cli")
    if found is None:
        pytest.skip("tpchgen-cli not installed")
    out = tmp_path_factory.mktemp("tpch")
    subprocess.run([found, "parquet", "--scale-factor", str(SCALE), "--tables", "lineitem",
                    "--output-dir", str(out), "--quiet"], check=True)
    table = pq.read_table(out / "lineitem.parquet")
    table = table.cast(pa.schema([pa.field(f.name, pa.string() if pa.types.is_string_view(
        f.type) else f.type) for f in table.schema]))
    client.write("dask_lineitem", table, partition_rows=PARTITION_ROWS, overwrite=True)
    return "dask_lineitem", oracle_frame(table)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as c, distributed.Client(c) as dc:
        yield dc


@pytest.fixture()
def counter(agents: list[Any]) -> Iterator[CallCounter]:
    c = CallCounter(agents)
    yield c
    c.restore()


@pytest.mark.parametrize("query", [q6, q1, q1_named], ids=["q6", "q1", "q1_named"])
def test_tpch_on_local_cluster(lineitem: tuple[str, pd.DataFrame], agents: list[Any],
                               cluster: Any, counter: CallCounter, query: Any) -> None:
    ddf = read_bpfstore(lineitem[0], [a.address for a in agents])
    lazy = query(ddf)
    assert "pushed down" in explain(lazy) and "scan" not in explain(lazy)
    counter.reset()
    ours = cluster.compute(lazy).result()
    assert_same(ours, query(lineitem[1]))
    assert (counter.aggregates, counter.scans) == (ddf.npartitions, 0), counter.counts


def test_tpch_with_worker_processes(lineitem: tuple[str, pd.DataFrame], agents: list[Any],
                                    counter: CallCounter) -> None:
    """Real worker processes: the graph (Source, plans) is pickled, each process makes its
    own gRPC channels, and the partials travel between processes."""
    ddf = read_bpfstore(lineitem[0], [a.address for a in agents])
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as c, distributed.Client(c) as dc:
        answers = dc.compute([q6(ddf), q1(ddf)], sync=True)
    assert_same(answers[0], q6(lineitem[1]))
    assert_same(answers[1], q1(lineitem[1]))
    assert (counter.aggregates, counter.scans) == (2 * ddf.npartitions, 0), counter.counts


def test_len_of_filtered_lineitem_is_pushed(lineitem: tuple[str, pd.DataFrame],
                                            agents: list[Any], cluster: Any,
                                            counter: CallCounter) -> None:
    ddf = read_bpfstore(lineitem[0], [a.address for a in agents])
    pdf = lineitem[1]
    assert len(ddf[ddf.l_quantity < 24]) == len(pdf[pdf.l_quantity < 24])  # the cluster runs it
    assert (counter.aggregates, counter.scans) == (ddf.npartitions, 0), counter.counts
