"""A Dask graph reads the one dataset version it was built on, on a real LocalCluster: an
overwrite before it runs changes nothing while the agents keep that version; once they no
longer do, it fails saying to recompute, never answering from a mix of versions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from dask_support import PARTITION_ROWS, mixed_table, oracle_frame

from bpfstore.connector import Client, Query, count_star
from bpfstore.connector.dask import read_bpfstore
from bpfstore.contract.errors import VersionGone
from conftest import RunningAgent

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.dask


@pytest.fixture(scope="module")
def own_agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RunningAgent]]:
    """Two agents of their own: the test shortens how long they keep a superseded version."""
    running = [RunningAgent(str(tmp_path_factory.mktemp(f"versions{i}"))) for i in range(2)]
    yield running
    for a in running:
        a.stop()


def test_a_graph_on_a_gone_version_says_to_recompute(own_agents: list[RunningAgent]) -> None:
    addresses = [a.address for a in own_agents]
    old, new = oracle_frame(mixed_table(5)), oracle_frame(mixed_table(6))
    with Client(addresses) as c, \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                     dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as dc:
        c.write("versions", mixed_table(5), partition_rows=PARTITION_ROWS, overwrite=True)
        built = c.describe("versions")
        ddf = read_bpfstore("versions", addresses)
        c.write("versions", mixed_table(6), partition_rows=PARTITION_ROWS, overwrite=True)

        # Kept still: the graph answers from the version it was built on, whole.
        assert dc.compute(ddf.a.sum()).result() == old.a.sum()
        assert dc.compute(ddf[ddf.a > 5].b.count()).result() == old[old.a > 5].b.count()

        for a in own_agents:  # the retention passes: the agents let the old version go
            a.service.storage.retention_seconds = 0.0
            a.service.storage.sweep()
        with pytest.raises(VersionGone):
            c.run(Query.partials("versions", [count_star()]), built)
        # Gone: pushed-down aggregates and scans alike fail, naming the cure.
        for lazy in (ddf.a.max(), ddf[ddf.a > 3].b.sum(), ddf.k):
            with pytest.raises(VersionGone, match="recompute from a new read_bpfstore") as err:
                dc.compute(lazy).result()
            assert f"version {built.version}" in str(err.value)
        again: Any = read_bpfstore("versions", addresses)
        assert dc.compute(again.a.max()).result() == new.a.max()
        assert dc.compute(again[again.a > 3].b.sum()).result() == pytest.approx(
            new[new.a > 3].b.sum(), rel=1e-12)
