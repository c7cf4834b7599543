"""Faults on real agent processes: SIGKILL during queries (replicas answer the same) and during
writes (the dataset stays as it was), restarts, interrupted clients, corrupt partition files.

Run with -s to see the figures (faults injected, failovers seen)."""

from __future__ import annotations

import contextlib
import json
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from agent_process import BIN, AgentProcess, committed_files, held_write, wait_for
from bpfstore.connector import Client, PartitionUnavailable, Query, col, count_star, sum_
from bpfstore.connector.client import AgentUnavailable
from bpfstore.contract.errors import BpfstoreError
from bpfstore.node_agent.server import ipc_bytes
from bpfstore.v1 import agent_pb2_grpc

ROWS = 200_000
PARTITION_ROWS = 12_500  # 16 partitions


def _data(rows: int = ROWS, seed: int = 0) -> pa.Table:
    rng = random.Random(seed)
    return pa.table({
        "i": pa.array(range(rows), pa.int64()),
        "k": [f"k{rng.randrange(5)}" for _ in range(rows)],
        "v": pa.array([rng.randrange(-1000, 1000) for _ in range(rows)], pa.int64()),
    })


def _state(c: Client, dataset: str) -> tuple:
    """What a reader can see of a dataset: partitions (id, rows, holders) and its contents."""
    desc = c.describe(dataset)
    sums = c.aggregate(dataset, [count_star(), sum_("i"), sum_("v")]).to_pylist()
    return tuple((p.id, p.rows, tuple(sorted(p.agents))) for p in desc.partitions), sums


@pytest.fixture
def three(tmp_path) -> Iterator[list[AgentProcess]]:
    agents = [AgentProcess(tmp_path / f"agent{i}", metrics=True) for i in range(3)]
    yield agents
    for a in agents:
        a.stop()


@pytest.fixture
def one(tmp_path) -> Iterator[AgentProcess]:
    a = AgentProcess(tmp_path / "agent", metrics=True)
    yield a
    a.stop()


# -- replication and failover ------------------------------------------------------------------


def test_sigkill_during_queries_replicas_give_the_same_answer(three, tmp_path) -> None:
    data = _data()
    source = tmp_path / "data.parquet"
    pq.write_table(data, source)
    agents = ",".join(a.address for a in three)
    result = subprocess.run([str(BIN / "bpfstore"), "ingest", str(source), "--dataset", "t",
                             "--partition-rows", str(PARTITION_ROWS), "--replicas", "2",
                             "--agents", agents], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    by_k = {r["k"]: r for r in data.group_by("k").aggregate(
        [("v", "sum"), ("i", "count")]).to_pylist()}
    expected_rows = data.filter(pc.less(data["v"], 0)).num_rows

    with Client(agents) as c:
        desc = c.describe("t")
        assert len(desc.partitions) == ROWS // PARTITION_ROWS
        assert all(len(p.agents) == 2 and len(p.replicas) == 2 for p in desc.partitions)

        answers, failovers, errors = 0, 0, []
        stop = threading.Event()

        def query_loop() -> None:
            nonlocal answers, failovers
            while not stop.is_set():
                try:
                    got = c.run(Query.aggregate("t", [sum_("v"), count_star()], group_by=["k"]))
                    for row in got.table.to_pylist():
                        assert row["sum(v)"] == by_k[row["k"]]["v_sum"]
                        assert row["count(*)"] == by_k[row["k"]]["i_count"]
                    failovers += bool(got.report.failovers)
                    rows = c.run(Query.scan("t", ["i", "v"], col("v") < 0))
                    assert rows.table.num_rows == expected_rows
                    failovers += bool(rows.report.failovers)
                    answers += 2
                except Exception as exc:  # noqa: BLE001 - collected and reported below
                    errors.append(exc)
                    return

        thread = threading.Thread(target=query_loop)
        thread.start()
        kills = 0
        for victim in (three[0], three[1], three[2]):  # one agent down at a time
            time.sleep(random.uniform(0.2, 0.6))
            victim.kill()
            kills += 1
            time.sleep(random.uniform(0.2, 0.6))
            victim.start()
            time.sleep(1.5)  # clients reconnect within a second (connector/client.py)
        stop.set()
        thread.join(timeout=120)
        assert not errors, errors
        assert answers > 0
        print(f"\nfaults: {kills} SIGKILLs during {answers} queries, {failovers} with failover")

        # two agents down: the partitions held only by them are missing, and named
        three[0].kill()
        three[1].kill()
        dead = {three[0].address, three[1].address}
        lost = sorted(p.id for p in desc.partitions if set(p.agents) <= dead)
        assert lost
        with pytest.raises(PartitionUnavailable) as failure:
            c.aggregate("t", [count_star()])
        assert "no replica could serve" in str(failure.value)


def test_agent_killed_between_describe_and_query_fails_over(three, monkeypatch) -> None:
    with Client([a.address for a in three]) as c:
        c.write("t", _data(20_000), partition_rows=2000, replicas=2)
        desc = c.describe("t")
        monkeypatch.setattr(c, "describe", lambda name, statistics=True: desc)  # then it dies
        three[1].kill()
        got = c.run(Query.aggregate("t", [count_star(), sum_("i")]))
        assert got.table.to_pylist() == [{"count(*)": 20_000, "sum(i)": sum(range(20_000))}]
        assert any(three[1].address in f for f in got.report.failovers)


def test_no_replica_left_names_the_missing_partitions(three, monkeypatch) -> None:
    with Client([a.address for a in three]) as c:
        c.write("t", _data(6000), partition_rows=1000, replicas=1)
        desc = c.describe("t")
        held = sorted(p.id for p in desc.partitions if p.agents == (three[2].address,))
        assert held  # replicas=1 on 3 agents: this agent held some
        three[2].kill()
        with pytest.raises(PartitionUnavailable) as before_describe:
            c.aggregate("t", [count_star()])
        assert three[2].address in str(before_describe.value)
        monkeypatch.setattr(c, "describe", lambda name, statistics=True: desc)  # then it dies
        with pytest.raises(PartitionUnavailable) as during:
            c.aggregate("t", [count_star()])
        assert sorted(during.value.partitions) == held


# -- durability --------------------------------------------------------------------------------


def test_agent_sigkilled_mid_write_stream_keeps_the_dataset(one) -> None:
    import grpc

    with Client([one.address]) as c:
        c.write("d", _data(30_000), partition_rows=10_000)
        before = _state(c, "d")
    gate = threading.Event()
    channel = grpc.insecure_channel(one.address)
    call = agent_pb2_grpc.AgentStub(channel).Write.future(
        held_write("d", ipc_bytes(_data(10_000, seed=1)), gate, partition="new"), timeout=60)
    wait_for(lambda: one.metric("bpfstore_agent_requests_in_flight") == 1, what="the write")
    wait_for(lambda: any(".incoming-" in f for f in one.data_files()), what="bytes on disk")
    one.kill()
    gate.set()
    with pytest.raises(grpc.RpcError):
        call.result(timeout=30)
    channel.close()
    one.start()
    with Client([one.address]) as c:
        assert _state(c, "d") == before
    assert one.data_files() == committed_files(one)  # the half-written file is gone


def test_sigkill_at_random_points_of_writes_commits_whole_or_nothing(one) -> None:
    """Kill the agent at random moments of a sequence of writes; after each restart every
    partition is either fully there (committed before the kill) or absent."""
    rng = random.Random(7)
    written: dict[str, int] = {}  # partition -> sum(i) of what was sent
    with Client([one.address]) as c:
        c.write("w", _data(1000), partition_rows=1000)
    base = _data(1000)
    committed_at_kill = 0
    kills = 8
    for round_ in range(kills):
        part = _data(150_000, seed=round_)
        pid = f"r{round_}"
        written[pid] = pc.sum(part["i"]).as_py()
        writer = Client([one.address])
        thread = threading.Thread(
            target=lambda w=writer, p=part, i=pid: _quietly(w._write_one, one.address, "w", i,
                                                            p, False, [one.address]))
        thread.start()
        time.sleep(rng.uniform(0.0, 0.6))
        one.kill()
        thread.join(timeout=60)
        writer.close()
        one.start()
        assert one.data_files() == committed_files(one)
        with Client([one.address]) as c:
            desc = c.describe("w")
            visible = {p.id for p in desc.partitions} - {desc.partitions[0].id}
            committed_at_kill += pid in visible
            for p in sorted(visible):  # every visible partition is complete and readable
                got = c.run(Query.partials("w", [sum_("i")], partitions=[p])).table
                assert got.column(0)[0].as_py() == written[p], p
            total = c.aggregate("w", [count_star()]).column(0)[0].as_py()
            assert total == base.num_rows + 150_000 * len(visible)
    print(f"\nfaults: {kills} SIGKILLs during writes, {committed_at_kill} had committed")


def _quietly(fn, *args) -> None:  # type: ignore[no-untyped-def]
    with contextlib.suppress(BpfstoreError):  # the agent died under it: expected
        fn(*args)


CLIENT = """
import sys, time, grpc, pyarrow as pa
from bpfstore.v1 import agent_pb2 as pb, agent_pb2_grpc
t = pa.table({"i": list(range(10000))})
sink = pa.BufferOutputStream()
with pa.ipc.new_stream(sink, t.schema) as w:
    w.write_table(t)
data = sink.getvalue().to_pybytes()
def chunks():
    yield pb.WriteChunk(dataset="d", partition="new", arrow_ipc=data[:len(data) // 2])
    print("sent", flush=True)
    time.sleep(600)
    yield pb.WriteChunk(arrow_ipc=data[len(data) // 2:])
agent_pb2_grpc.AgentStub(grpc.insecure_channel(sys.argv[1])).Write(chunks())
"""


def test_client_killed_mid_write_leaves_the_dataset_as_before(one) -> None:
    with Client([one.address]) as c:
        c.write("d", _data(5000), partition_rows=2500)
        before = _state(c, "d")
    client = subprocess.Popen([sys.executable, "-c", CLIENT, one.address],
                              stdout=subprocess.PIPE, text=True)
    assert client.stdout and client.stdout.readline().strip() == "sent"
    wait_for(lambda: one.metric("bpfstore_agent_requests_in_flight") == 1, what="the write")
    client.send_signal(signal.SIGKILL)
    client.wait(timeout=30)
    wait_for(lambda: one.metric("bpfstore_agent_requests_in_flight") == 0, what="the abort")
    assert one.metric('bpfstore_agent_request_errors_total{code="CANCELLED",method="Write"}') \
        + one.metric('bpfstore_agent_request_errors_total{code="INVALID_ARGUMENT",'
                     'method="Write"}') == 1
    with Client([one.address]) as c:
        assert _state(c, "d") == before
    assert one.data_files() == committed_files(one)


def test_restart_serves_committed_partitions_and_no_uncommitted(one) -> None:
    with Client([one.address]) as c:
        c.write("r", _data(20_000), partition_rows=5000)
        c.write("gone", _data(100), partition_rows=100)
        before = _state(c, "r")
    root = one.data_dir / "datasets"
    one.kill()
    # What a crash can leave behind: a half-received stream, a renamed partition whose
    # catalog commit never happened, a catalog temp file, a first write never committed,
    # a drop renamed away but not yet deleted.
    orphan = (root / "r" / next(iter(json.loads((root / "r" / "_dataset.json").read_text())
                                      ["partitions"]))["id"]).with_suffix(".arrow")
    (root / "r" / ".incoming-1.tmp").write_bytes(b"half")
    (root / "r" / "p-orphan.arrow").write_bytes(orphan.read_bytes())
    (root / "r" / "._dataset.json.1.tmp").write_text("{")
    (root / "fresh").mkdir()
    (root / "fresh" / "p0.arrow").write_bytes(orphan.read_bytes())
    (root / "gone").rename(root / ".dropped-gone-1")
    one.start()
    with Client([one.address]) as c:
        assert [d.name for d in c.datasets()] == ["r"]
        assert _state(c, "r") == before
    assert one.data_files() == committed_files(one)


def test_corrupt_partition_is_detected_reported_and_read_from_a_replica(three) -> None:
    addresses = [a.address for a in three[:2]]
    with Client(addresses) as c:
        c.write("c", _data(8000), partition_rows=2000, replicas=2)
        c.write("solo", _data(4000), partition_rows=2000, replicas=1)
        expected = c.aggregate("c", [sum_("v"), count_star()]).to_pylist()
        path = three[0].data_dir / "datasets" / "c"
        victim = sorted(path.glob("*.arrow"))[0]
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0xFF  # one flipped bit in the middle of the column data
        victim.write_bytes(bytes(data))

        got = c.run(Query.aggregate("c", [sum_("v"), count_star()]))
        assert got.table.to_pylist() == expected
        assert any("corrupt" in f or three[0].address in f for f in got.report.failovers)
        assert c.scan_table("c", columns=["v"]).num_rows == 8000
        assert three[0].metric('bpfstore_agent_request_errors_total{code="DATA_LOSS",'
                               'method="Aggregate"}') >= 1
        assert "does not match its checksum" in three[0].log()

        solo = three[0].data_dir / "datasets" / "solo"
        victim = sorted(solo.glob("*.arrow"))[0]
        victim.write_bytes(victim.read_bytes()[:-100])  # truncated
        with pytest.raises(PartitionUnavailable) as failure:
            c.aggregate("solo", [sum_("v")])
        assert victim.stem in str(failure.value) and "corrupt" in str(failure.value)


def test_unreachable_only_agent_is_agent_unavailable(tmp_path) -> None:
    a = AgentProcess(Path(tmp_path) / "x")
    address = a.address
    a.stop()
    with Client([address], timeout=5) as c, pytest.raises(AgentUnavailable):
        c.describe("anything")
