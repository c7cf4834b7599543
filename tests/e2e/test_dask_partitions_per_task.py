"""`read_bpfstore(partitions_per_task=n)`: one Dask partition reads up to n stored partitions
of one agent in one Scan call. Grouped reads equal the ungrouped ones and dd.read_parquet of
the same rows, on the threaded scheduler and on a LocalCluster with worker processes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dask_support import CallCounter, mixed_table, oracle_frame

from bpfstore.connector.dask import explain, read_bpfstore
from bpfstore.connector.dask.source import TARGET_TASK_ROWS, task_groups
from bpfstore.contract.errors import PlanInvalid, VersionGone

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.dask

ROWS = 7000
# (dataset, partition rows, agents holding it): 7, 14 and 35 partitions; one on a single agent
LAYOUTS = [("ppt_7", 1000, 3), ("ppt_14", 500, 3), ("ppt_35", 200, 3), ("ppt_one", 700, 1)]


@pytest.fixture(scope="module")
def data() -> tuple[pa.Table, pd.DataFrame]:
    table = mixed_table(11).slice(0, 6000)
    table = pa.concat_tables([table, mixed_table(12).slice(0, ROWS - 6000)])
    return table, oracle_frame(table)


@pytest.fixture(scope="module")
def layouts(agents: list[Any], data: tuple[pa.Table, pd.DataFrame]) -> dict[str, list[str]]:
    from bpfstore.connector import Client

    out = {}
    for name, rows, n in LAYOUTS:
        addresses = [a.address for a in agents[:n]]
        with Client(addresses) as c:
            c.write(name, data[0], partition_rows=rows, overwrite=True)
        out[name] = addresses
    return out


@pytest.fixture
def counter(agents: list[Any]) -> Iterator[CallCounter]:
    c = CallCounter(agents)
    yield c
    c.restore()


@pytest.fixture(scope="module")
def processes() -> Iterator[Any]:
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as c, distributed.Client(c) as dc:
        yield dc


def _parquet_like(ddf: Any, pdf: pd.DataFrame, out: Path) -> Any:
    """dd.read_parquet of the same rows in the same Dask partitions (one file per task)."""
    source = ddf.expr.operand("source")
    out.mkdir(parents=True, exist_ok=True)
    for i, parts in enumerate(source.task_partitions):
        rows = np.concatenate([np.arange(source.starts[p], source.starts[p]
                                         + source.desc.partitions[p].rows) for p in parts])
        pq.write_table(pa.Table.from_pandas(pdf.iloc[rows].reset_index(drop=True),
                                            preserve_index=False), out / f"part-{i:05d}.parquet")
    return dd.read_parquet(str(out))


# Row queries: filters, projections, computed columns, a filter that empties some tasks.
QUERIES = {
    "all": lambda df: df,
    "filter": lambda df: df[(df.a > 6) & (df.b < 12)],
    "project": lambda df: df[["k", "d"]],
    "filter_project": lambda df: df[df.k == "y"][["a", "dt"]],
    "series": lambda df: df[df.a < 2].b,
    "computed": lambda df: df[df.a > 7].assign(v=lambda f: f.d * 2)[["a", "v"]],
    "empty_some": lambda df: df[df.dt < pd.Timestamp("1994-02-01")],
    "empty_all": lambda df: df[df.a > 100][["a"]],
    "fallback": lambda df: df[df.k.str.startswith("x")][["k", "b"]],
}


def _rows(frame: Any) -> pd.DataFrame:
    if isinstance(frame, pd.Series):
        frame = frame.to_frame()
    return frame.reset_index(drop=True)


@pytest.mark.parametrize("per_task", [1, 2, 3, 16, None])
@pytest.mark.parametrize("name", [n for n, _, _ in LAYOUTS])
def test_grouped_scans_equal_ungrouped_and_parquet(name: str, per_task: int | None,
                                                   layouts: dict[str, list[str]],
                                                   data: tuple[pa.Table, pd.DataFrame],
                                                   tmp_path: Path, counter: CallCounter) -> None:
    pdf = data[1]
    one = read_bpfstore(name, layouts[name], partitions_per_task=1)
    ddf = read_bpfstore(name, layouts[name], partitions_per_task=per_task)
    source = ddf.expr.operand("source")
    parts = len(source.desc.partitions)
    agents = len({p.agents for p in source.desc.partitions})
    if per_task is not None:  # per agent: ceil(its partitions / per_task) tasks
        expected = sum(-(-len([p for p in source.desc.partitions if p.agents == a]) // per_task)
                       for a in {p.agents for p in source.desc.partitions})
        assert ddf.npartitions == expected
    assert one.npartitions == parts and ddf.npartitions >= agents
    # every task: one agent, consecutive runs of its partitions in dataset order
    for group in source.task_partitions:
        assert len({source.desc.partitions[i].agents for i in group}) == 1
        assert list(group) == sorted(group)
    assert sorted(i for g in source.task_partitions for i in g) == list(range(parts))
    parquet = _parquet_like(ddf, pdf, tmp_path / "pq")
    assert parquet.npartitions == ddf.npartitions
    for qname, query in QUERIES.items():
        counter.reset()
        ours = query(ddf).compute(scheduler="threads")
        assert counter.scans == ddf.npartitions and counter.aggregates == 0, qname
        pd.testing.assert_frame_equal(_rows(ours), _rows(query(parquet).compute()),
                                      check_dtype=False, obj=qname)
        ungrouped = query(one).compute(scheduler="threads")
        # the same rows with the same labels, partition after partition
        pd.testing.assert_frame_equal(ours.sort_index() if qname in ("all", "project")
                                      else _rows(ours).sort_values(list(_rows(ours).columns),
                                                                   ignore_index=True),
                                      ungrouped if qname in ("all", "project")
                                      else _rows(ungrouped).sort_values(
                                          list(_rows(ours).columns), ignore_index=True),
                                      obj=qname)
    # unfiltered reads keep pandas' labels: sorted, they are the stored frame
    pd.testing.assert_frame_equal(ddf.compute(scheduler="threads").sort_index(), pdf)
    # each task's rows are its partitions' rows in order
    for i in (0, ddf.npartitions - 1):
        piece = ddf.partitions[i].compute(scheduler="threads")
        labels = np.concatenate([np.arange(source.starts[p], source.starts[p]
                                           + source.desc.partitions[p].rows)
                                 for p in source.task_partitions[i]])
        pd.testing.assert_frame_equal(piece, pdf.iloc[labels])


def test_grouped_aggregates_and_partition_selection(layouts: dict[str, list[str]],
                                                    data: tuple[pa.Table, pd.DataFrame],
                                                    counter: CallCounter) -> None:
    """Aggregates take the same groups: one Aggregate call per task; `partitions[i]` means
    the same stored partitions to a scan and to an aggregate over it."""
    pdf = data[1]
    ddf = read_bpfstore("ppt_35", layouts["ppt_35"], partitions_per_task=4)
    source = ddf.expr.operand("source")
    assert ddf.npartitions == 3 * 3  # 35 partitions: 12, 12, 11 per agent, 4 at most a task
    counter.reset()
    assert ddf[ddf.a > 5].b.sum().compute(scheduler="threads") == \
        pytest.approx(pdf[pdf.a > 5].b.sum(), rel=1e-12)
    assert (counter.aggregates, counter.scans) == (ddf.npartitions, 0)
    got = ddf.groupby("k").d.max().compute(scheduler="threads")
    pd.testing.assert_series_equal(got.sort_index(), pdf.groupby("k").d.max().sort_index(),
                                   check_dtype=False)
    for i in (1, 5):
        labels = np.concatenate([np.arange(source.starts[p], source.starts[p]
                                           + source.desc.partitions[p].rows)
                                 for p in source.task_partitions[i]])
        counter.reset()
        assert ddf.partitions[i].a.sum().compute(scheduler="threads") == \
            pdf.iloc[labels].a.sum()
        assert (counter.aggregates, counter.scans) == (1, 0)
        assert len(ddf.partitions[i].compute(scheduler="threads")) == len(labels)
    text = explain(ddf[ddf.a > 5][["a", "b"]])
    assert "9 Scan calls for 35 partitions): columns ['a', 'b'], filter pushed: (a > 5)" \
        in text, text
    assert "9 Aggregate calls for 35 partitions" in explain(ddf.a.sum())
    assert "2 Scan calls for 8 partitions" in explain(ddf.partitions[[0, 1]])
    one = read_bpfstore("ppt_35", layouts["ppt_35"], partitions_per_task=1)
    assert re.search(r"\(35 Scan calls\)", explain(one[one.a > 5]))


def test_without_pushdown_groups_too(layouts: dict[str, list[str]],
                                     data: tuple[pa.Table, pd.DataFrame],
                                     counter: CallCounter) -> None:
    ddf = read_bpfstore("ppt_14", layouts["ppt_14"], pushdown=False, partitions_per_task=5)
    assert ddf.npartitions == 3  # 5, 5, 4 per agent
    counter.reset()
    pd.testing.assert_frame_equal(ddf.compute(scheduler="threads").sort_index(), data[1])
    assert counter.scans == 3


def test_processes_and_locality(layouts: dict[str, list[str]], agents: list[Any],
                                data: tuple[pa.Table, pd.DataFrame], processes: Any) -> None:
    from bpfstore.connector.dask.locality import BpfLocalityPlugin

    pdf = data[1]
    ddf = read_bpfstore("ppt_14", layouts["ppt_14"], partitions_per_task=3)
    one = read_bpfstore("ppt_14", layouts["ppt_14"], partitions_per_task=1)
    assert ddf.npartitions == 6  # 5, 5, 4 per agent
    q = ddf[ddf.b > 9][["a", "b", "k"]]
    got = processes.compute(q).result()
    want = one[one.b > 9][["a", "b", "k"]].compute(scheduler="threads")
    pd.testing.assert_frame_equal(_rows(got).sort_values(["a", "b", "k"], ignore_index=True),
                                  _rows(want).sort_values(["a", "b", "k"], ignore_index=True))
    assert processes.compute(ddf.d.sum()).result() == pytest.approx(pdf.d.sum(), rel=1e-12)
    pd.testing.assert_frame_equal(processes.compute(ddf).result().sort_index(), pdf)
    # a task is pinned to the worker beside the agent of all its partitions
    source = ddf.expr.operand("source")
    plugin = BpfLocalityPlugin()
    from bpfstore.connector.dask.locality import _partition_agents

    graph = ddf.dask
    found = {}
    for key, spec in graph.items():
        agents_of = next(_partition_agents(spec), None)
        if agents_of is not None:
            found[key[1]] = agents_of
    assert len(found) == ddf.npartitions
    for i, agents_of in found.items():
        assert {source.desc.partitions[p].agents for p in source.task_partitions[i]} == \
            {agents_of}
    assert plugin.name == "bpfstore-locality"


@pytest.mark.parametrize("bad", [0, -1, 1.5, "4", True])
def test_partitions_per_task_is_validated(layouts: dict[str, list[str]], bad: Any) -> None:
    with pytest.raises(PlanInvalid, match="partitions_per_task must be a whole number >= 1"):
        read_bpfstore("ppt_7", layouts["ppt_7"], partitions_per_task=bad)


def test_default_layout() -> None:
    """The default: about TARGET_TASK_ROWS rows per task, at least a task per thread and
    agent, never more partitions per task than there are."""
    from bpfstore.connector.descriptions import DatasetDescription, PartitionSummary

    def desc(n: int, rows: int, agents: int) -> DatasetDescription:
        parts = tuple(PartitionSummary(f"p{i}", rows, 0, (f"a{i % agents}",), (f"a{i % agents}",),
                                       {}) for i in range(n))
        return DatasetDescription("t", pa.schema([]), pa.schema([]), 1, parts)

    sf1 = desc(61, 100_000, 2)  # TPC-H SF1 lineitem on two agents
    # 31 and 30 partitions, 15 at most a task (1.5 million rows): 3 + 2 tasks
    assert sorted(len(g) for g in task_groups(sf1, None, threads=2)) == [10, 10, 11, 15, 15]
    assert max(len(g) for g in task_groups(sf1, None, threads=16)) <= 4  # 8 threads per agent
    assert len(task_groups(desc(61, 100_000, 1), None, threads=1)) == 5  # 15 at most
    assert TARGET_TASK_ROWS // 100_000 == 15
    small = desc(6, 1000, 3)  # 2 per agent: 1 per task only with 2 threads per agent
    assert len(task_groups(small, None, threads=3)) == 3
    assert len(task_groups(small, None, threads=6)) == 6
    big = desc(8, 5_000_000, 2)
    assert len(task_groups(big, None, threads=1)) == 8  # already larger than the target
    assert task_groups(desc(0, 0, 1), None, threads=2) == ()


def test_a_gone_version_is_still_named(agents: list[Any], data: tuple[pa.Table, pd.DataFrame]
                                       ) -> None:
    from bpfstore.connector import Client

    addresses = [a.address for a in agents]
    with Client(addresses) as c:
        c.write("ppt_gone", data[0], partition_rows=1000, overwrite=True)
        ddf = read_bpfstore("ppt_gone", addresses, partitions_per_task=2)
        assert ddf.npartitions == 4  # 7 partitions: 3, 2, 2 per agent
        c.write("ppt_gone", data[0].slice(0, 10), partition_rows=1000, overwrite=True)
        assert len(ddf[ddf.a > 1].compute(scheduler="threads")) == (data[1].a > 1).sum()
        kept = [a.service.storage.retention_seconds for a in agents]
        try:
            for a in agents:  # the retention passes: the agents let the old version go
                a.service.storage.retention_seconds = 0.0
                a.service.storage.sweep()
        finally:
            for a, seconds in zip(agents, kept, strict=True):
                a.service.storage.retention_seconds = seconds
    for lazy in (ddf[ddf.a > 1], ddf.a.sum(), ddf.partitions[1]):
        with pytest.raises(VersionGone, match="recompute from a new read_bpfstore"):
            lazy.compute(scheduler="threads")
