"""Shared fixtures: real agents (real gRPC servers on loopback) with real data directories."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest

from bpfstore.connector import Client, Query, QueryReport
from bpfstore.contract.errors import Unsupported
from bpfstore.node_agent.config import AgentConfig
from bpfstore.node_agent.engines.bpf import libbpf
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
    """`require_bpf` for an agent's `Engines` used without a server."""
    for status in [s for s in engines.status if s.name in _needed(engine)]:
        _require(status.name, status.available, status.reason, engine)


def require_engine_at(agents: str, engine: str) -> None:
    """`require_bpf` for agent processes, from the first agent's GetInfo."""
    with Client(agents) as client:
        statuses = [e for e in client.info()[0]["engines"] if e["name"] in _needed(engine)]
    for status in statuses:
        _require(status["name"], status["available"], status["reason"], engine)


def _needed(engine: str) -> list[str]:
    """The engines a test of `engine` needs: one it forces, else the in-kernel engine and
    both of its paths (so that auto and bpf really run in the kernel where they should)."""
    return [engine] if engine.startswith("bpf-") or engine == "bcc" else [
        "bpf", "bpf-hot", "bpf-cold"]


def _require(name: str, available: bool, reason: str, engine: str) -> None:
    if available:
        return
    message = f"{name} engine unavailable: {reason}"
    if name == "bpf-hot" and kernel_refuses_arenas():
        # The one exception to BPFSTORE_REQUIRE_BPF: a kernel that makes no BPF arena map
        # at all (checked here, apart from the agent) cannot run the hot path, whose
        # columns live in one. auto and bpf run on the cold path there, which is still
        # required; a test that forces the hot path skips, listed at the end of the run.
        if engine == "bpf-hot":
            HOT_PATH_SKIPS.append(message)
            pytest.skip(message)
        return
    if os.environ.get("BPFSTORE_REQUIRE_BPF") == "1":
        pytest.fail(message)
    pytest.skip(message)


HOT_PATH_SKIPS: list[str] = []


@pytest.fixture(autouse=True)
def _hot_path_needs_arenas(request: pytest.FixtureRequest) -> None:
    """A test run with engine="bpf-hot" skips on a kernel that refuses arena maps (above)."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("engine") == "bpf-hot":
        refusal = kernel_refuses_arenas()
        if refusal:
            _require("bpf-hot", False, refusal, "bpf-hot")


@functools.cache  # a property of the kernel: probed once a run
def kernel_refuses_arenas() -> str:
    """Why this kernel makes no one-page BPF arena map ("" when it does, or when libbpf
    is missing: then the bpf engine as a whole is unavailable and the tests say so)."""
    try:
        return libbpf.arena_refusal()
    except Unsupported:
        return ""


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if HOT_PATH_SKIPS:
        terminalreporter.write_line(
            f"bpf hot path NOT TESTED ({len(HOT_PATH_SKIPS)} tests skipped): "
            f"{kernel_refuses_arenas()}; the cold path ran them", yellow=True, bold=True)


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
