"""Atomic dataset versions on real agent processes: SIGKILL of agents or of the writing client at
random points of single- and multi-partition, single- and multi-agent appends and overwrites
(every outcome is the old data or the new, checked by content, across restarts); readers racing
healthy overwrites (every answer is the old data or the new, exactly); the two-phase commit's
in-doubt cases (an agent restarted between prepare and commit settles the write from its
primary); pinned versions and re-planning.

Run with -s to see the figures (kills survived, torn answers)."""

from __future__ import annotations

import contextlib
import random
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from agent_process import BIN, AgentProcess, committed_files, wait_for
from bpfstore.connector import Client, Query, count_star, sum_
from bpfstore.connector.client import StagedWrite
from bpfstore.contract.errors import BpfstoreError, VersionGone
from bpfstore.v1 import agent_pb2 as pb
from bpfstore.v1 import agent_pb2_grpc

# Short enough for a test: a prepared write its primary decides aborts after 1.5 s; a
# superseded version stays readable for 4 s.
CONFIG = """prepare_timeout_seconds = 1.5
version_retention_seconds = 4.0
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


@pytest.fixture(scope="module")
def trio(tmp_path_factory) -> Iterator[list[AgentProcess]]:
    """Three agents for the whole module (each test its own dataset): starting one takes
    seconds on a busy machine."""
    root = tmp_path_factory.mktemp("atomic")
    (root / "agent.toml").write_text(CONFIG)
    agents = _parallel([lambda i=i: AgentProcess(root / f"agent{i}", "--config",
                                                 str(root / "agent.toml")) for i in range(3)])
    yield agents
    for a in agents:
        a.stop()


def _parallel(calls: list) -> list:  # type: ignore[type-arg]
    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(lambda f: f(), calls))


def _raw_info(agent: AgentProcess, dataset: str) -> pb.DatasetInfo | None:
    with grpc.insecure_channel(agent.address) as channel:
        try:
            return agent_pb2_grpc.AgentStub(channel).DescribeDataset(
                pb.DescribeDatasetRequest(dataset=dataset), timeout=10)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.NOT_FOUND, exc
            return None


def _files(agent: AgentProcess, dataset: str) -> set[str]:
    return {f for f in agent.data_files() if f.startswith(dataset + "/")}


def _committed(agent: AgentProcess, dataset: str) -> set[str]:
    return {f for f in committed_files(agent) if f.startswith(dataset + "/")}


def _settled(agents: list[AgentProcess], dataset: str) -> bool:
    return all(not (i := _raw_info(a, dataset)) or not i.pending_txn for a in agents)


def _reconnected(addresses: str) -> Client:
    """A client that reaches every agent: grpc shares subchannels within a process, and one to
    a restarted agent may still be backing off from its last failure (up to a second)."""
    c = Client(addresses)
    wait_for(lambda: all("error" not in i for i in c.info()), what="agents reachable")
    return c


# -- SIGKILL at random points of writes ----------------------------------------------------------


@pytest.mark.parametrize("n", [1, 3], ids=["one-agent", "three-agents"])
def test_sigkill_at_random_points_of_writes_shows_old_or_new(trio, tmp_path, n: int) -> None:
    """Each round writes (append or overwrite, one or many partitions) and SIGKILLs, at a random
    moment, an agent (the write's primary or another), all agents, or the writing client
    (`bpfstore ingest` as a process). Right after the restart and once every prepared write is
    settled, readers see exactly the old rows or exactly the new — never a part."""
    rng = random.Random(19 + n)
    agents, name = trio[:n], f"d{n}"
    addresses = ",".join(a.address for a in agents)
    with Client(addresses) as c:
        c.write(name, _data(3000, seed=0), partition_rows=1000)
    current = _data(3000, seed=0)
    kills, outcomes = 0, {"old": 0, "new": 0}
    victims = ["primary", "client", "all", "other"] if n > 1 else ["all", "client", "all"]
    for round_ in range(len(victims)):
        overwrite = round_ % 2 == 0
        rows = rng.choice([900, 30_000, 60_000])  # one partition or many
        part = _data(rows, seed=round_ + 1, start=10**6 * (round_ + 1))
        new = part if overwrite else pa.concat_tables([current, part])
        victim = victims[round_ % len(victims)]
        if victim == "client":
            source = tmp_path / f"r{round_}.parquet"
            pq.write_table(part, source)
            writer = subprocess.Popen(
                [str(BIN / "bpfstore"), "ingest", str(source), "--dataset", name,
                 "--overwrite" if overwrite else "--append", "--partition-rows", "1000",
                 "--agents", addresses], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.8, 2.5))  # the CLI's start-up, then its write
            writer.kill()
            writer.wait(timeout=30)
            restarted: list[AgentProcess] = []
        else:
            client = Client(addresses, timeout=30)
            thread = threading.Thread(target=_quietly, args=(
                client.write, name, part), kwargs={"partition_rows": 1000, "overwrite": overwrite})
            thread.start()
            time.sleep(rng.uniform(0.0, 0.15))  # a write of 60 partitions takes ~0.1-0.3 s
            restarted = {"primary": agents[:1], "other": agents[1:2], "all": agents}[victim]
            for a in restarted:
                a.kill()
            kills += len(restarted)
            _parallel([a.start for a in restarted])
            thread.join(timeout=60)
            client.close()
        kills += victim == "client"
        with _reconnected(addresses) as c:
            seen = _content(c, name)  # while writes may still be in doubt
            assert seen in (_rows(current), _rows(new)), f"round {round_}: torn after {victim}"
            wait_for(lambda: _settled(agents, name), what="prepared writes settled")
            final = _content(c, name)
            assert final in (_rows(current), _rows(new)), f"round {round_}: torn after settling"
            assert seen == _rows(current) or final == _rows(new), "a visible write was undone"
        outcome = "new" if final == _rows(new) else "old"
        outcomes[outcome] += 1
        current = new if outcome == "new" else current
        for a in restarted:  # a restarted agent keeps only what its catalog names
            wait_for(lambda a=a: _files(a, name) == _committed(a, name), what="leftovers gone")
    print(f"\nfaults: {kills} SIGKILLs during writes on {len(agents)} agent(s) survived; "
          f"outcomes {outcomes}")


def _quietly(fn, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
    with contextlib.suppress(BpfstoreError):  # an agent died under it: expected
        fn(*args, **kwargs)


# -- readers racing healthy overwrites -----------------------------------------------------------


def _fingerprint(t: pa.Table) -> tuple[int, int, int]:
    return t.num_rows, pc.sum(t["i"]).as_py(), pc.sum(t["v"]).as_py()


OVERWRITES = 4


def test_readers_racing_overwrites_see_old_or_new_exactly(trio) -> None:
    """Overwrites alternate between 15 and 33 partitions over two agents while readers
    aggregate and scan: every answer is exactly one of the two datasets."""
    agents = trio[:2]
    addresses = ",".join(a.address for a in agents)
    tables = [_data(6000, seed=1), _data(13_000, seed=2, start=4000)]
    expected = {_fingerprint(t) for t in tables}
    contents = [_rows(t) for t in tables]
    with Client(addresses) as writer:
        writer.write("race", tables[0], partition_rows=400)
    stop = threading.Event()
    answers, torn, errors = [0], [], []

    def read(scan: bool) -> None:
        with Client(addresses) as c:
            while not stop.is_set():
                try:
                    if scan:
                        ok = _content(c, "race") in contents
                    else:
                        row = c.aggregate("race", [count_star(), sum_("i"), sum_("v")]
                                          ).to_pylist()[0]
                        ok = tuple(row.values()) in expected
                except Exception as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)
                    return
                answers[0] += 1
                if not ok:
                    torn.append(scan)

    readers = [threading.Thread(target=read, args=(i == 0,)) for i in range(3)]
    try:
        for t in readers:
            t.start()
        with Client(addresses) as writer:
            for n in range(OVERWRITES):
                writer.write("race", tables[(n + 1) % 2], partition_rows=400, overwrite=True)
    finally:
        stop.set()
        for t in readers:
            t.join(timeout=60)
    assert not errors, errors
    assert answers[0] > OVERWRITES
    assert not torn, f"{len(torn)} of {answers[0]} answers were neither the old nor the new data"
    print(f"\nraced {OVERWRITES} overwrites with {answers[0]} answers: {len(torn)} torn")


# -- the two-phase commit's in-doubt cases --------------------------------------------------------


def _stub(agent: AgentProcess) -> agent_pb2_grpc.AgentStub:
    return agent_pb2_grpc.AgentStub(grpc.insecure_channel(agent.address))


def _prepare(agents: list[AgentProcess], dataset: str, staged: StagedWrite,
             primary: str = "") -> None:
    """Phase one of an overwrite by hand, as Client.commit_write does it: the first agent is
    the primary (the others are told it is at `primary`, by default its address)."""
    for a in agents:
        _stub(a).PrepareWrite(pb.PrepareWriteRequest(
            dataset=dataset, txn=staged.txn, overwrite=True,
            partitions=staged.partitions.get(a.address, []),
            primary="" if a is agents[0] else primary or agents[0].address), timeout=10)


def _commit(agent: AgentProcess, dataset: str, txn: str) -> None:
    _stub(agent).CommitWrite(pb.CommitWriteRequest(dataset=dataset, txn=txn), timeout=10)


def test_readers_see_a_write_its_primary_committed_before_the_others_do(trio) -> None:
    """Between the primary's commit and the other's, readers see the new version on both (the
    other serves the version it prepared): not the primary's new rows beside the other's old
    ones. The other cannot settle by itself here (its primary's address is wrong)."""
    agents, name = trio[:2], "between"
    old, new = _data(3000, seed=9), _data(4000, seed=10, start=10**6)
    with _reconnected(",".join(a.address for a in agents)) as c:
        c.write(name, old, partition_rows=500, replicas=2)
        staged = c.stage_write(name, new, "txn-between", partition_rows=500, replicas=2)
        _prepare(agents, name, staged, primary="127.0.0.1:1")
        assert _content(c, name) == _rows(old)  # prepared everywhere: not visible yet
        _commit(agents[0], name, staged.txn)
        info = _raw_info(agents[1], name)
        assert info is not None and info.pending_txn == staged.txn  # still only prepared
        assert _content(c, name) == _rows(new)
        row = c.aggregate(name, [count_star(), sum_("i"), sum_("v")]).to_pylist()[0]
        assert tuple(row.values()) == _fingerprint(new)
        _commit(agents[1], name, staged.txn)
        assert _settled(agents, name) and _content(c, name) == _rows(new)


@pytest.mark.parametrize("restart", [True, False], ids=["restarted", "running"])
def test_write_committed_by_its_primary_only_is_settled_by_the_other(trio,
                                                                     restart: bool) -> None:
    """The client dies after the primary's commit (the decision): the other agent — restarted
    in between, or not — shows the new version to readers at once and commits it by itself."""
    agents, name = trio[:2], f"decided_{restart}"
    addresses = ",".join(a.address for a in agents)
    old, new = _data(4000, seed=3), _data(5000, seed=4, start=10**6)
    with _reconnected(addresses) as c:
        c.write(name, old, partition_rows=500, replicas=2)
        staged = c.stage_write(name, new, f"txn-{name}", partition_rows=500, replicas=2)
        _prepare(agents, name, staged)
        if restart:
            agents[1].kill()
        _commit(agents[0], name, staged.txn)
        assert _content(c, name) == _rows(new)  # from the primary alone, or both
        if restart:
            agents[1].start()
    with _reconnected(addresses) as c:
        assert _content(c, name) == _rows(new)  # the other's prepared version, pinned
        wait_for(lambda: _settled(agents, name), what="the other agent to commit")
        info = _raw_info(agents[1], name)
        assert info is not None and info.txn == staged.txn
        assert _content(c, name) == _rows(new)


def test_primary_lost_before_commit_aborts_everywhere(trio) -> None:
    """Prepared everywhere, then the primary dies and the client never commits: the old data
    stays visible throughout, both agents drop the write (the primary after its prepare
    timeout, the other from the primary's answer), and the next write goes through."""
    agents, name = trio[:2], "lost"
    addresses = ",".join(a.address for a in agents)
    old, new = _data(4000, seed=5), _data(3000, seed=6, start=10**6)
    with _reconnected(addresses) as c:
        c.write(name, old, partition_rows=500, replicas=2)
        staged = c.stage_write(name, new, "txn-lost", partition_rows=500, replicas=2)
        _prepare(agents, name, staged)
        agents[0].kill()
        assert _content(c, name) == _rows(old)  # from the other agent's replicas
        agents[0].start()
    with _reconnected(addresses) as c:
        assert _content(c, name) == _rows(old)
        wait_for(lambda: _settled(agents, name), what="the write aborted")
        assert _content(c, name) == _rows(old)
        for a in agents:
            wait_for(lambda a=a: _files(a, name) == _committed(a, name), what="files gone")
        c.write(name, new, partition_rows=500, overwrite=True)
        assert _content(c, name) == _rows(new)


# -- pinned versions -------------------------------------------------------------------------------


def test_query_pins_its_version_and_replans_when_it_is_gone(trio, monkeypatch) -> None:
    """A query reads the version it described, even once overwritten; when that version is
    gone (past the agents' 4 s retention) it fails with VersionGone, and Client.aggregate and
    scans plan again on the new one."""
    old, new = _data(3000, seed=7), _data(2000, seed=8, start=10**6)
    with _reconnected(",".join(a.address for a in trio)) as c:
        c.write("p", old, partition_rows=500)
        pinned = c.describe("p")
        c.write("p", new, partition_rows=500, overwrite=True)
        got = c.run(Query.partials("p", [count_star(), sum_("i"), sum_("v")]), pinned).table
        assert tuple(got.to_pylist()[0].values()) == _fingerprint(old)
        rows = c.run(Query.scan("p", partitions=[p.id for p in pinned.partitions]), pinned).table
        assert _rows(rows) == _rows(old)
        streamed = c.stream(Query.scan("p"), pinned)  # Spark's tasks: the driver's snapshot
        assert _rows(pa.Table.from_batches(list(streamed))) == _rows(old)
        assert len(streamed.report.partitions) == len(pinned.partitions)

        def gone() -> bool:
            try:
                c.run(Query.partials("p", [count_star()]), pinned)
            except VersionGone as exc:
                assert "re-plan" in str(exc)
                return True
            return False

        wait_for(gone, what="the old version to go")
        with pytest.raises(VersionGone):  # a stream of a given snapshot never re-plans
            list(c.stream(Query.scan("p"), pinned))
        fresh, calls = c.describe, []

        def describe(name: str, statistics: bool = True):  # type: ignore[no-untyped-def]
            calls.append(name)
            return pinned if len(calls) == 1 else fresh(name, statistics)

        monkeypatch.setattr(c, "describe", describe)
        got = c.aggregate("p", [count_star(), sum_("i"), sum_("v")])
        assert tuple(got.to_pylist()[0].values()) == _fingerprint(new)
        assert len(calls) == 2
        calls.clear()
        assert _content(c, "p") == _rows(new) and len(calls) == 2
