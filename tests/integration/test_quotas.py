"""Per-tenant quotas and ListDatasets pages (issue 19, deliverable 4): what the datasets one
tenant created may hold on an agent (datasets, partitions, stored bytes, catalog bytes) is
bounded, checked before a write becomes visible; a refused write leaves nothing behind, and
another tenant's writes, lists and queries are never affected. Real agent processes on
loopback, with tenants from a config file."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pyarrow as pa
import pytest

from agent_process import AgentProcess
from bpfstore.connector import Client, count_star
from bpfstore.connector.transport import Transport
from bpfstore.contract.errors import ResourceExhausted
from bpfstore.node_agent import server
from bpfstore.node_agent.auth import hash_token
from bpfstore.node_agent.config import AgentConfig
from bpfstore.node_agent.server import ipc_bytes
from bpfstore.node_agent.storage import Storage
from bpfstore.v1 import agent_pb2 as pb
from bpfstore.v1 import agent_pb2_grpc
from conftest import RunningAgent


def _config(path: Path, noisy: dict[str, Any] | None = None, **settings: Any) -> Path:
    lines = [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    for name, own in (("noisy", noisy or {}), ("normal", {})):
        lines += [f"[tenants.{name}]", f'tokens = ["{hash_token(name)}"]',
                  'read = ["*"]', 'write = ["*"]', *(f"{k} = {v}" for k, v in own.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def _small(n: int = 10) -> pa.Table:
    return pa.table({"x": pa.array(range(n), pa.int64())})


def _client(agent: AgentProcess, tenant: str) -> Client:
    return Client([agent.address], transport=Transport(token=tenant), timeout=30)


def _count(client: Client, dataset: str) -> int:
    return client.aggregate(dataset, [count_star()]).column(0)[0].as_py()


def _files(agent: AgentProcess) -> set[str]:
    root = agent.data_dir / "datasets"
    return {f"{d}/{f}" for d in os.listdir(root) for f in os.listdir(root / d)}


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentProcess]:
    config = _config(tmp_path / "agent.toml", tenant_max_datasets=3, tenant_max_partitions=6)
    proc = AgentProcess(tmp_path / "data", "--config", str(config))
    yield proc
    proc.stop()


def test_dataset_quota_refuses_a_new_dataset_and_leaves_other_tenants_alone(
        agent: AgentProcess) -> None:
    with _client(agent, "noisy") as noisy, _client(agent, "normal") as normal:
        for i in range(3):
            noisy.write(f"n{i}", _small())
        before = _files(agent)
        with pytest.raises(ResourceExhausted, match="tenant_max_datasets") as info:
            noisy.write("n3", _small())
        assert "'noisy'" in str(info.value) and "3" in str(info.value)
        assert _files(agent) == before  # nothing of the refused write on disk
        # the other tenant's own quota is untouched, and it lists and queries as before
        for i in range(3):
            normal.write(f"m{i}", _small(5))
        assert [d.name for d in normal.datasets()] == ["m0", "m1", "m2", "n0", "n1", "n2"]
        assert _count(normal, "m2") == 5
        # the full tenant still writes to its own datasets, and a drop frees a dataset
        noisy.write("n0", _small(20), overwrite=True)
        assert _count(noisy, "n0") == 20
        assert noisy.drop("n1")
        noisy.write("n3", _small())
        assert _count(noisy, "n3") == 10
        # a dataset counts for the tenant that created it, whoever writes to it later
        normal.write("n2", _small(), overwrite=False)
        with pytest.raises(ResourceExhausted, match="tenant_max_datasets"):
            noisy.write("n4", _small())


def test_partition_quota_is_checked_before_a_multi_partition_write_commits(
        agent: AgentProcess) -> None:
    with _client(agent, "noisy") as noisy, _client(agent, "normal") as normal:
        noisy.write("d", _small(40), partition_rows=10)  # 4 partitions
        noisy.write("e", _small(2))  # 5 of 6
        with pytest.raises(ResourceExhausted, match="tenant_max_partitions"):
            noisy.write("d", _small(30), partition_rows=10)  # 8 would be held
        assert _count(noisy, "d") == 40  # the previous version is whole ...
        assert len(noisy.describe("d").partitions) == 4
        assert not [f for f in _files(agent) if f.startswith("d/.")]  # ... nothing staged left
        noisy.write("d", _small(50), partition_rows=50, overwrite=True)  # fewer: fits
        assert _count(noisy, "d") == 50
        normal.write("big", _small(60), partition_rows=10)  # its own 6 partitions
        assert _count(normal, "big") == 60


def test_quotas_survive_a_restart(agent: AgentProcess) -> None:
    with _client(agent, "noisy") as noisy:
        for i in range(3):
            noisy.write(f"n{i}", _small())
    agent.stop()
    agent.start()
    with _client(agent, "noisy") as noisy, pytest.raises(ResourceExhausted,
                                                         match="tenant_max_datasets"):
        noisy.write("n3", _small())


@pytest.mark.parametrize(("own", "words"), [
    ({"max_stored_bytes": 20_000}, "stored bytes"),
    ({"max_catalog_bytes": 6_000}, "catalog bytes"),
])
def test_byte_quotas_of_one_tenant(tmp_path: Path, own: dict[str, int], words: str) -> None:
    """A tenant's own max_stored_bytes / max_catalog_bytes ([tenants.<name>]) override the
    agent's: partitions are appended until the quota refuses one."""
    config = _config(tmp_path / "agent.toml", noisy=own)
    agent = AgentProcess(tmp_path / "data", "--config", str(config))
    try:
        with _client(agent, "noisy") as noisy, _client(agent, "normal") as normal:
            written = 0
            with pytest.raises(ResourceExhausted, match=words) as info:
                for _ in range(200):
                    noisy.write("grow", _small(500))
                    written += 1
            assert 0 < written < 200
            assert f"max_{words.replace(' ', '_')}" in str(info.value)
            assert _count(noisy, "grow") == 500 * written  # the refused one is not visible
            for _ in range(written + 1):  # the other tenant, under the agent's defaults
                normal.write("other", _small(500))
            assert _count(normal, "other") == 500 * (written + 1)
    finally:
        agent.stop()


# -- ListDatasets: pages ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def many(tmp_path_factory) -> Iterator[AgentProcess]:
    """An agent holding 105 datasets (written straight to its data directory: fast)."""
    base = tmp_path_factory.mktemp("pages")
    storage = Storage(base / "data")
    for i in range(105):
        storage.write(f"ds{i:03d}", [ipc_bytes(_small(i + 1))], "p0")
    proc = AgentProcess(base / "data")
    yield proc
    proc.stop()


def _list(agent: AgentProcess | RunningAgent, **fields: Any) -> pb.ListDatasetsResponse:
    with grpc.insecure_channel(agent.address) as channel:
        return agent_pb2_grpc.AgentStub(channel).ListDatasets(
            pb.ListDatasetsRequest(**fields), timeout=30)


def test_list_datasets_gives_a_bounded_default_page(many: AgentProcess) -> None:
    first = _list(many)
    assert [d.name for d in first.datasets] == [f"ds{i:03d}" for i in range(100)]
    assert first.next_page_token
    rest = _list(many, page_token=first.next_page_token)
    assert [d.name for d in rest.datasets] == [f"ds{i:03d}" for i in range(100, 105)]
    assert rest.next_page_token == ""
    assert len(_list(many, page_size=10**9).datasets) == 105  # capped at 1000, not more


def test_small_pages_visit_every_dataset_once(many: AgentProcess) -> None:
    seen, token = [], ""
    while True:
        page = _list(many, page_size=7, page_token=token)
        assert len(page.datasets) <= 7
        seen += [d.name for d in page.datasets]
        token = page.next_page_token
        if not token:
            break
    assert seen == [f"ds{i:03d}" for i in range(105)]


def test_client_follows_the_pages(many: AgentProcess) -> None:
    with Client([many.address], timeout=30) as client:
        described = client.datasets()
    assert [d.name for d in described] == [f"ds{i:03d}" for i in range(105)]
    assert described[104].partitions[0].rows == 105


@pytest.mark.parametrize(("fields", "words"), [
    ({"page_size": -1}, "page_size"),
    ({"page_token": "../etc"}, "page_token"),
    ({"page_token": "x" * 5000}, "page_token"),
])
def test_bad_page_requests_are_refused(many: AgentProcess, fields: dict[str, Any],
                                       words: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        _list(many, **fields)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in info.value.details() and len(info.value.details()) < 1000
    assert len(_list(many).datasets) == 100  # and the agent keeps serving


def test_a_page_ends_early_at_its_byte_bound(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Datasets with large catalogs: fewer per page, every one still reached."""
    agent = RunningAgent(str(tmp_path))
    try:
        for i in range(6):
            agent.service.storage.write(f"wide{i}", [ipc_bytes(_small())], "p0",
                                        replicas=[f"{'h' * 200}-{k}:7340" for k in range(16)])
        one = _list(agent, page_size=1).datasets[0].ByteSize()
        monkeypatch.setattr(server, "LIST_PAGE_BYTES", 2 * one + 1)
        page = _list(agent)
        assert [d.name for d in page.datasets] == ["wide0", "wide1"]
        with Client([agent.address], timeout=30) as client:
            assert [d.name for d in client.datasets()] == [f"wide{i}" for i in range(6)]
    finally:
        agent.stop()


def test_concurrent_writes_never_exceed_a_quota(tmp_path: Path) -> None:
    """Writers race for the last datasets, then the last partitions, of one tenant's quota:
    exactly the quota commits, the rest is refused and leaves nothing, a restart counts the
    same."""
    quota = AgentConfig(tenant_max_datasets=5, tenant_max_partitions=7).quota
    storage = Storage(tmp_path, quota=quota)
    storage.write("a", [ipc_bytes(_small())], "p0", tenant="t")

    def race(datasets: list[str]) -> list[str]:
        results: list[str] = []

        def writer(dataset: str) -> None:
            try:
                storage.write(dataset, [ipc_bytes(_small())], tenant="t")
                results.append("ok")
            except ResourceExhausted as exc:
                results.append(str(exc).split("(")[1].split(",")[0])  # the quota's name

        threads = [threading.Thread(target=writer, args=(d,)) for d in datasets]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sorted(results)

    assert race([f"d{i}" for i in range(8)]) == ["ok"] * 4 + ["tenant_max_datasets"] * 4
    assert storage.usage("t").datasets == 5
    assert race(storage.names()) == ["ok"] * 2 + ["tenant_max_partitions"] * 3
    held = storage.usage("t")
    assert (held.datasets, held.partitions) == (5, 7)
    names = storage.names()
    assert sum(len(storage.get(n).partitions) for n in names) == 7
    assert sum(len(os.listdir(tmp_path / "datasets" / n)) for n in names) == 7 + 5  # + catalogs
    assert len(os.listdir(tmp_path / "datasets")) == 5  # nothing of the refused ones
    assert Storage(tmp_path, quota=quota).usage("t") == held


def test_a_quota_on_one_agent_refuses_the_whole_multi_agent_write(tmp_path: Path) -> None:
    """Agent B's quota is smaller than A's: a write spread over both is refused as a whole
    (B refuses to prepare), nothing of it is visible on either, and A keeps no staged file."""
    roomy = AgentProcess(tmp_path / "a", "--config", str(_config(tmp_path / "a.toml")))
    tight = AgentProcess(tmp_path / "b", "--config",
                         str(_config(tmp_path / "b.toml", tenant_max_partitions=2)))
    try:
        with Client([roomy.address, tight.address], transport=Transport(token="noisy"),
                    timeout=30) as noisy:
            noisy.write("d", _small(20), partition_rows=10)  # one partition on each
            with pytest.raises(ResourceExhausted, match="tenant_max_partitions"):
                noisy.write("d", _small(60), partition_rows=10)  # three more on each
            assert _count(noisy, "d") == 20
            for agent in (roomy, tight):
                assert _files(agent) == {"d/_dataset.json", *(
                    f"d/{p.id}.arrow" for p in noisy.describe("d").partitions
                    if agent.address in p.replicas)}
    finally:
        roomy.stop()
        tight.stop()
