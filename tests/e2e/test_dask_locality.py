"""Locality: with the scheduler plugin, each partition task runs on the worker paired with the
partition's agent (LocalCluster workers 0, 1, 2 stand beside agents 0, 1, 2)."""

from __future__ import annotations

from typing import Any

import pytest
from dask_support import PARTITION_ROWS, mixed_table, oracle_frame

from bpfstore.connector.dask import read_bpfstore
from bpfstore.connector.dask.locality import BpfLocalityPlugin

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.dask


def _placements(dc: Any, lazy: Any) -> tuple[Any, dict[Any, str], dict[Any, str]]:
    with distributed.get_task_stream(client=dc) as stream:
        result = dc.compute(lazy, sync=True)
    ran = {t["key"]: t["worker"] for t in stream.data}
    pinned = dc.run_on_scheduler(
        lambda dask_scheduler: dict(dask_scheduler.plugins[BpfLocalityPlugin.name].pinned))
    return result, ran, pinned


def test_partition_tasks_run_beside_their_agent(client: Any, agents: list[Any]) -> None:
    client.write("dask_local", mixed_table(3), partition_rows=PARTITION_ROWS, overwrite=True)
    pdf = oracle_frame(mixed_table(3))
    addresses = [a.address for a in agents]
    ddf = read_bpfstore("dask_local", addresses)
    holder = {p.id: p.agents[0] for p in client.describe("dask_local").partitions}
    assert len(set(holder.values())) == 3
    with distributed.LocalCluster(n_workers=3, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as dc:
        worker_of = {agents[i].address: i for i in range(3)}  # LocalCluster names workers 0..2
        dc.register_plugin(BpfLocalityPlugin(worker_of))
        names = {ws["name"]: addr for addr, ws in dc.scheduler_info()["workers"].items()}
        for lazy, expected in [
            (ddf[ddf.a > 5].groupby("k").b.sum(), pdf[pdf.a > 5].groupby("k").b.sum()),
            (ddf[ddf.k.str.startswith("x")].b.sum(), pdf[pdf.k.str.startswith("x")].b.sum()),
        ]:
            result, ran, pinned = _placements(dc, lazy)
            assert result.round(6).equals(expected.round(6)) if hasattr(result, "equals") \
                else abs(result - expected) <= 1e-9 * abs(expected)
            partition_keys = [k for k in ran if k in pinned]
            assert len(partition_keys) == ddf.npartitions
            for key in partition_keys:
                assert ran[key] == pinned[key]
            # pinned to the worker paired with the agent of the task's partitions
            tasks = ddf.expr.operand("source").task_partitions
            stored = client.describe("dask_local").partitions
            for key in partition_keys:
                agents_of = {holder[stored[i].id] for i in tasks[key[1]]}
                assert len(agents_of) == 1
                assert pinned[key] == names[worker_of[agents_of.pop()]]
