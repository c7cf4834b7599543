"""The client over real agents: placement, failover, scans, reports, SQL."""

from __future__ import annotations

import decimal as D
import threading
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pytest

from bpfstore.connector import Client, PartitionUnavailable, Query, col, count_star, sum_
from conftest import RunningAgent


def _table(n: int = 1000) -> pa.Table:
    return pa.table({
        "k": [f"k{i % 7}" for i in range(n)],
        "v": pa.array([D.Decimal(i).scaleb(-2) for i in range(n)], pa.decimal128(12, 2)),
        "i": list(range(n)),
    })


@pytest.fixture
def three(tmp_path) -> list[RunningAgent]:
    running = [RunningAgent(str(tmp_path / f"a{i}")) for i in range(3)]
    yield running
    for a in running:
        a.stop()


def test_replicas_answer_after_an_agent_dies(three) -> None:
    with Client([a.address for a in three]) as c:
        c.write("t", _table(), partition_rows=100, replicas=2)
        desc = c.describe("t")
        assert len(desc.partitions) == 10
        assert all(len(p.agents) == 2 for p in desc.partitions)
        before = c.aggregate("t", [count_star(), sum_("v")], group_by=["k"]).sort_by("k")
        three[1].stop()
        after = c.run(Query.aggregate("t", [count_star(), sum_("v")], group_by=["k"]))
        assert after.table.sort_by("k").equals(before)
        assert three[1].address not in {p.agent for p in after.report.partitions}
        assert c.scan_table("t").num_rows == 1000


def test_no_replica_left_fails_naming_the_partitions(three) -> None:
    with Client([a.address for a in three]) as c:
        c.write("t", _table(), partition_rows=250, replicas=1)
        three[2].stop()
        with pytest.raises(PartitionUnavailable, match=three[2].address):
            c.aggregate("t", [count_star()])
        with pytest.raises(PartitionUnavailable):
            list(c.scan("t"))


def test_agent_dies_between_describe_and_query(three, monkeypatch) -> None:
    with Client([a.address for a in three]) as c:
        c.write("t", _table(), partition_rows=100, replicas=2)
        desc = c.describe("t")
        monkeypatch.setattr(c, "describe", lambda name, statistics=True: desc)  # then it dies
        three[0].stop()
        result = c.run(Query.aggregate("t", [count_star(), sum_("i")]))
        assert result.table.to_pylist() == [
            {"count(*)": 1000, "sum(i)": D.Decimal(sum(range(1000)))}]
        assert any(three[0].address in f for f in result.report.failovers)


def test_scan_applies_filter_and_projection_on_the_agents(client: Client) -> None:
    client.write("scan_t", _table(), partition_rows=300, overwrite=True)
    result = client.run(Query.scan("scan_t", ["i"], col("i") >= 990))
    got, report = result.table, result.report
    assert got.column_names == ["i"]
    assert sorted(got.column("i").to_pylist()) == list(range(990, 1000))
    assert report.mode == "scan" and len(report.partitions) == 4
    assert sum(p.rows_matched for p in report.partitions) == 10
    assert sum(p.pruned for p in report.partitions) == 3  # stats rule out i >= 990 there


def test_per_agent_scan_is_one_call_per_agent_in_partition_order(three) -> None:
    """`per_agent`: one Scan call per agent for all its partitions; the rows are those of the
    per-partition calls, in the order of the partitions, pruned ones included; an agent that
    dies hands all its partitions to their other replicas."""
    with Client([a.address for a in three]) as c:
        c.write("t", _table(), partition_rows=100, replicas=2)
        pids = [p.id for p in c.describe("t").partitions]
        calls: list[tuple[str, ...]] = []
        original = c._scan_call

        def counted(agent, plan, version):
            calls.append(plan.partitions)
            return original(agent, plan, version)

        c._scan_call = counted  # type: ignore[method-assign]
        for where in (None, col("i") >= 750, col("i") < 0):
            for wanted in (pids, pids[3:8], [pids[7], pids[2], pids[5]]):
                one = c.run(Query.scan("t", ["i", "k"], where, partitions=wanted))
                calls.clear()
                grouped = c.run(Query.scan("t", ["i", "k"], where, partitions=wanted,
                                           per_agent=True))
                assert grouped.table.equals(one.table)
                assert len(calls) <= 3 and sorted(p for ps in calls for p in ps) == sorted(wanted)
                assert {r.partition for r in grouped.report.partitions} == set(wanted)
        three[1].stop()
        calls.clear()
        result = c.run(Query.scan("t", ["i"], partitions=pids, per_agent=True))
        assert result.table.column("i").to_pylist() == list(range(1000))
        assert three[1].address not in {p.agent for p in result.report.partitions}


def test_threads_sharing_a_client_each_get_their_own_report(client: Client) -> None:
    """Dask's and Spark's threads share one client: a report comes back with its own result,
    so no query is ever handed the report of a query running beside it."""
    client.write("own_a", _table(600), partition_rows=200, overwrite=True)
    client.write("own_b", _table(1000), partition_rows=100, overwrite=True)
    parts = {n: frozenset(p.id for p in client.describe(n).partitions) for n in ("own_a", "own_b")}
    queries = {"own_a": Query.aggregate("own_a", [count_star(), sum_("i")], group_by=["k"]),
               "own_b": Query.scan("own_b", ["i"], col("i") >= 0)}
    start = threading.Barrier(2)

    def ask(name: str) -> list[tuple[str, str, frozenset[str], int]]:
        start.wait()
        seen = []
        for _ in range(15):
            result = client.run(queries[name])
            r = result.report
            seen.append((r.dataset, r.mode, frozenset(p.partition for p in r.partitions),
                         result.table.num_rows))
        return seen

    with ThreadPoolExecutor(2) as pool:
        got = dict(zip(queries, pool.map(ask, queries), strict=True))
    assert set(got["own_a"]) == {("own_a", "aggregate", parts["own_a"], 7)}
    assert set(got["own_b"]) == {("own_b", "scan", parts["own_b"], 1000)}


def test_a_scan_stream_carries_its_report(client: Client) -> None:
    client.write("stream_t", _table(), partition_rows=250, overwrite=True)
    stream = client.scan("stream_t", columns=["i"], where=col("i") < 300)
    rows = sum(b.num_rows for b in stream)
    assert rows == 300 and stream.report.mode == "scan" and stream.report.dataset == "stream_t"
    assert len(stream.report.partitions) == 4
    assert sum(p.rows_matched for p in stream.report.partitions) == 300
    assert sum(p.pruned for p in stream.report.partitions) == 2
    assert stream.report.bytes_moved > 0


def test_report_counts_bytes_on_both_sides(client: Client) -> None:
    client.write("rep_t", _table(20_000), partition_rows=5000, overwrite=True)
    r = client.run(Query.aggregate("rep_t", [sum_("v"), count_star()], col("i") > 10,
                                   ["k"])).report.to_dict()
    assert r["mode"] == "aggregate" and sum(r["engines"].values()) == 4
    assert set(r["engines"]) <= {"arrow", "bpf"}
    assert r["bytes_scanned"] >= 20_000 * (8 + 8 + 4)  # decimal64, int64, int32 codes
    assert 0 < r["bytes_moved"] < r["bytes_scanned"] / 10
    assert all(p["rows_scanned"] == 5000 for p in r["partitions"])


def test_overwrite_replaces_everywhere(client: Client) -> None:
    client.write("ow", _table(100), partition_rows=10, overwrite=True)
    client.write("ow", _table(30), partition_rows=30, overwrite=True)  # lands on one agent only
    assert client.aggregate("ow", [count_star()]).column(0)[0].as_py() == 30
    assert client.drop("ow")


def test_descriptions_follow_every_write(client: Client) -> None:
    """Each write, drop and re-create is described as it is, statistics included, and the
    same version alike each time."""
    def described(name: str) -> list[tuple[int, int | None, int | None]]:
        d = client.describe(name)
        return sorted((p.rows, p.stats["i"].get("min"), p.stats["i"].get("max"))
                      for p in d.partitions)

    client.write("dv", _table(100), partition_rows=50, overwrite=True)
    first = described("dv")
    assert first == [(50, 0, 49), (50, 50, 99)]
    assert described("dv") == first and client.describe("dv") == client.describe("dv")
    client.write("dv", pa.table({"k": ["x"], "v": pa.array([D.Decimal(1)], pa.decimal128(12, 2)),
                                 "i": [-5]}))  # appends a partition
    assert described("dv") == [(1, -5, -5), *first]
    client.write("dv", _table(30), partition_rows=30, overwrite=True)
    assert described("dv") == [(30, 0, 29)]
    assert client.drop("dv")
    client.write("dv", _table(7).set_column(2, "i", pa.array(range(100, 107))))
    assert described("dv") == [(7, 100, 106)]
    assert client.drop("dv")
