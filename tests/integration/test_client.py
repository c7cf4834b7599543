"""The client over real agents: placement, failover, scans, reports, SQL."""

from __future__ import annotations

import decimal as D

import pyarrow as pa
import pytest

from bpfstore.connector import Client, PartitionUnavailable, col, count_star, sum_
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
        after = c.aggregate("t", [count_star(), sum_("v")], group_by=["k"]).sort_by("k")
        assert after.equals(before)
        assert three[1].address not in {p.agent for p in c.last_report.partitions}
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
        monkeypatch.setattr(c, "describe", lambda name: desc)  # the agent dies after describe
        three[0].stop()
        result = c.aggregate("t", [count_star(), sum_("i")])
        assert result.to_pylist() == [{"count(*)": 1000, "sum(i)": D.Decimal(sum(range(1000)))}]
        assert any(three[0].address in f for f in c.last_report.failovers)


def test_scan_applies_filter_and_projection_on_the_agents(client: Client) -> None:
    client.write("scan_t", _table(), partition_rows=300, overwrite=True)
    got = client.scan_table("scan_t", columns=["i"], where=col("i") >= 990)
    assert got.column_names == ["i"]
    assert sorted(got.column("i").to_pylist()) == list(range(990, 1000))
    report = client.last_report
    assert report.mode == "scan" and len(report.partitions) == 4
    assert sum(p.rows_matched for p in report.partitions) == 10
    assert sum(p.pruned for p in report.partitions) == 3  # stats rule out i >= 990 there


def test_report_counts_bytes_on_both_sides(client: Client) -> None:
    client.write("rep_t", _table(20_000), partition_rows=5000, overwrite=True)
    client.aggregate("rep_t", [sum_("v"), count_star()], where=col("i") > 10, group_by=["k"])
    r = client.last_report.to_dict()
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
