"""Shared fixtures: real agents (real gRPC servers on loopback) with real data directories."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest

from bpfstore.connector import Client, Query, QueryReport
from bpfstore.node_agent.config import AgentConfig
from bpfstore.node_agent.engines.select import Engines
from bpfstore.node_agent.server import create_server


class RunningAgent:
    def __init__(self, data_dir: str, **settings: object) -> None:
        self.config = AgentConfig(data_dir=data_dir, listen="127.0.0.1:0", **settings)
        self.server, self.port, self.service = create_server(self.config)
        self.server.start()
        self.address = f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.stop(0).wait()


def reported(client: Client, *args: Any, **kwargs: Any) -> tuple[pa.Table, QueryReport]:
    """`Query.aggregate(*args, **kwargs)`'s answer and the report of where it ran."""
    result = client.run(Query.aggregate(*args, **kwargs))
    return result.table, result.report


def require_bpf(agent: RunningAgent, engine: str = "bpf") -> None:
    """Skip where the in-kernel engine (bpf, or bcc) cannot run; fail instead when
    BPFSTORE_REQUIRE_BPF=1 (CI), so bpf tests never skip silently where it should work."""
    require_engine(agent.service.engines, engine)


def require_engine(engines: Engines, engine: str) -> None:
    """`require_bpf` for an agent's `Engines` used without a server; "bpf" means both of its
    paths (the bpf tests force each one)."""
    names = ["bpf", "bpf-hot", "bpf-cold"] if engine == "bpf" else [engine]
    for status in [s for s in engines.status if s.name in names]:
        _require(status.name, status.available, status.reason)


def require_engine_at(agents: str, engine: str) -> None:
    """`require_bpf` for agent processes, from the first agent's GetInfo."""
    names = ["bpf", "bpf-hot", "bpf-cold"] if engine == "bpf" else [engine]
    with Client(agents) as client:
        statuses = [e for e in client.info()[0]["engines"] if e["name"] in names]
    for status in statuses:
        _require(status["name"], status["available"], status["reason"])


def _require(engine: str, available: bool, reason: str) -> None:
    if available:
        return
    message = f"{engine} engine unavailable: {reason}"
    if os.environ.get("BPFSTORE_REQUIRE_BPF") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RunningAgent]]:
    running = [RunningAgent(str(tmp_path_factory.mktemp(f"agent{i}"))) for i in range(3)]
    yield running
    for a in running:
        a.stop()


@pytest.fixture(scope="session")
def client(agents: list[RunningAgent]) -> Iterator[Client]:
    with Client([a.address for a in agents]) as c:
        yield c


@pytest.fixture(scope="session")
def tpch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """TPC-H data made once per test run (tests/tpch), ingested on two agents of its own."""
    import tpch as t

    data = t.generate(tmp_path_factory.mktemp("tpch"))
    running = [RunningAgent(str(tmp_path_factory.mktemp(f"tpch-agent{i}"))) for i in range(2)]
    try:
        with Client([a.address for a in running]) as c:
            t.ingest(c, data)
        yield t.Cluster(data, running)
    finally:
        for a in running:
            a.stop()
