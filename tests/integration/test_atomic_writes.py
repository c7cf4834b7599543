"""Atomic dataset versions on real agent processes: SIGKILL of agents or of the writing client at
random points of single- and multi-partition, single- and multi-agent appends and overwrites
(every outcome is the old data or the new, checked by content, across restarts); readers racing
healthy overwrites (every answer is the old data or the new, exactly); the two-phase commit's
in-doubt cases (an agent restarted between prepare and commit settles the write from its
primary); pinned versions and re-planning.

Run with -s to see the figures (kills survived, torn answers)."""

from __future__ import annotations

import random
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from agent_process import BIN, AgentProcess, committed_files, wait_for
from bpfstore.connector import Client, count_star, sum_
from bpfstore.connector.client import StagedWrite
from bpfstore.connector.errors import BpfstoreError, VersionGone
from bpfstore.v1 import agent_pb2 as pb
from bpfstore.v1 import agent_pb2_grpc

CONFIG = """prepare_timeout_seconds = 1.5
version_retention_seconds = {retention}
"""


def _data(rows: int, seed: int, start: int = 0) -> pa.Table:
    rng = random.Random(seed)
    return pa.table({
        "i": pa.array(range(start, start + rows), pa.int64()),
        "v": pa.array([rng.randrange(-10**6, 10**6) for _ in range(rows)], pa.int64()),
        "k": [f"k{rng.randrange(7)}" for _ in range(rows)],
    })


def _content(c: Client, dataset: str) -> dict | None:
    """Every row a reader sees, sorted (None: no such dataset)."""
    try:
        table = c.scan_table(dataset)
    except BpfstoreError as exc:
        if "no dataset named" in str(exc):
            return None
        raise
    return table.sort_by("i").to_pydict()


def _rows(table: pa.Table | None) -> dict | None:
    return None if table is None else table.sort_by("i").to_pydict()


def _agents(tmp_path: Path, n: int, retention: float = 0.0) -> list[AgentProcess]:
    config = tmp_path / "agent.toml"
    config.write_text(CONFIG.format(retention=retention))
    return [AgentProcess(tmp_path / f"agent{i}", "--config", str(config)) for i in range(n)]


def _raw_info(agent: AgentProcess, dataset: str) -> pb.DatasetInfo | None:
    with grpc.insecure_channel(agent.address) as channel:
        try:
            return agent_pb2_grpc.AgentStub(channel).DescribeDataset(
                pb.DescribeDatasetRequest(dataset=dataset), timeout=10)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.NOT_FOUND, exc
            return None


def _settled(agents: list[AgentProcess], dataset: str) -> bool:
    return all(not (i := _raw_info(a, dataset)) or not i.pending_txn for a in agents)


def _reconnected(addresses: str) -> Client:
    """A client that reaches every agent: grpc shares subchannels within a process, and one to
    a restarted agent may still be backing off from its last failure (up to a second)."""
    c = Client(addresses)
    wait_for(lambda: all("error" not in i for i in c.info()), what="agents reachable")
    return c


@pytest.fixture
def cluster(request, tmp_path) -> Iterator[list[AgentProcess]]:
    agents = _agents(tmp_path, request.param)
    yield agents
    for a in agents:
        a.stop()


# -- SIGKILL at random points of writes ----------------------------------------------------------


@pytest.mark.parametrize("cluster", [1, 3], indirect=True, ids=["one-agent", "three-agents"])
def test_sigkill_at_random_points_of_writes_shows_old_or_new(cluster, tmp_path) -> None:
    """Each round writes (append or overwrite, one or many partitions) and SIGKILLs, at a random
    moment, an agent (the write's primary or another), all agents, or the writing client
    (`bpfstore ingest` as a process). Right after the restart and once every prepared write is
    settled, readers see exactly the old rows or exactly the new — never a part."""
    rng = random.Random(19)
    agents = cluster
    addresses = ",".join(a.address for a in agents)
    with Client(addresses) as c:
        c.write("d", _data(3000, seed=0), partition_rows=1000)
    current = _data(3000, seed=0)
    kills, outcomes = 0, {"old": 0, "new": 0}
    victims = ["primary", "client", "all"] + (["other"] if len(agents) > 1 else [])
    for round_ in range(8 if len(agents) > 1 else 6):
        overwrite = round_ % 2 == 0
        rows = rng.choice([900, 9000, 30_000])  # one partition or many
        part = _data(rows, seed=round_ + 1, start=10**6 * (round_ + 1))
        new = part if overwrite else pa.concat_tables([current, part])
        victim = victims[round_ % len(victims)]
        if victim == "client":
            source = tmp_path / f"r{round_}.parquet"
            pq.write_table(part, source)
            writer = subprocess.Popen(
                [str(BIN / "bpfstore"), "ingest", str(source), "--dataset", "d",
                 "--overwrite" if overwrite else "--append", "--partition-rows", "1000",
                 "--agents", addresses], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.8, 2.5))  # the CLI's start-up, then its write
            writer.kill()
            writer.wait(timeout=30)
            restarted: list[AgentProcess] = []
        else:
            client = Client(addresses, timeout=30)
            thread = threading.Thread(target=_quietly, args=(
                client.write, "d", part), kwargs={"partition_rows": 1000, "overwrite": overwrite})
            thread.start()
            time.sleep(rng.uniform(0.0, 0.5))
            restarted = {"primary": agents[:1], "other": agents[1:2], "all": agents}[victim]
            for a in restarted:
                a.kill()
            kills += len(restarted)
            for a in restarted:
                a.start()
            thread.join(timeout=60)
            client.close()
        kills += victim == "client"
        with _reconnected(addresses) as c:
            seen = _content(c, "d")  # while writes may still be in doubt
            assert seen in (_rows(current), _rows(new)), f"round {round_}: torn after {victim}"
            wait_for(lambda: _settled(agents, "d"), what="prepared writes settled")
            final = _content(c, "d")
            assert final in (_rows(current), _rows(new)), f"round {round_}: torn after settling"
            assert seen == _rows(current) or final == _rows(new), "a visible write was undone"
        outcome = "new" if final == _rows(new) else "old"
        outcomes[outcome] += 1
        current = new if outcome == "new" else current
        for a in restarted:  # a restarted agent keeps only what its catalog names
            wait_for(lambda a=a: a.data_files() == committed_files(a), what="leftovers gone")
    print(f"\nfaults: {kills} SIGKILLs during writes on {len(agents)} agent(s) survived; "
          f"outcomes {outcomes}")


def _quietly(fn, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
    try:
        fn(*args, **kwargs)
    except BpfstoreError:  # an agent died under it: expected
        pass
