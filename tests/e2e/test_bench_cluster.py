"""`make bench-cluster` in miniature: 2 network-namespace hosts, SF 0.01, Q6 and one sweep
point through Spark and Dask in every mode but the bpf ones the machine may lack. Checks that
the answers of all modes agree and that bytes crossed the shaped links; times are not checked.
Needs root and working `ip netns` / veth / tc, else it skips saying why."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

from cluster_net import netns_available  # noqa: E402

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.spark, pytest.mark.dask]


def test_bench_cluster_miniature(tmp_path: Path) -> None:
    why = netns_available()
    if why:
        pytest.skip(why)
    out = tmp_path / "result.json"
    # Own names and subnet per process: a concurrent run's start-up clean-up cannot take ours.
    n = os.getpid() % 50
    prefix, subnet = f"bpft{n}x", f"10.{180 + n}"
    cmd = [sys.executable, str(REPO / "bench" / "bench_cluster.py"), "--sf", "0.01",
           "--hosts", "2", "--runs", "1", "--no-warmup", "--queries", "q6,sweep",
           "--modes", "arrow,filter,full,parquet", "--partition-rows", "20000",
           "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "out"),
           "--json", str(out), "--netns-prefix", prefix, "--subnet", subnet]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert (tmp_path / "out" / "sf0.01-1gbit.md").exists()
    for front in ("spark", "dask"):
        per_q = result["results"][front]
        for q in ("Q6", "sel@0.1"):
            for mode, e in per_q[q].items():
                assert e["error"] is None, (front, q, mode, e["error"])
                assert e["agrees"] is True, (front, q, mode, e["answer"])
                if mode != "parquet":
                    assert e["rx_bytes"] > 0 and e["tx_bytes"] > 0, (front, q, mode)
            # the full read moves far more than the pushdown; local Parquet uses no link
            assert per_q[q]["full"]["rx_bytes"] > 10 * per_q[q]["arrow"]["rx_bytes"]
            assert per_q[q]["parquet"]["rx_bytes"] < per_q[q]["arrow"]["rx_bytes"]
    q6 = {f: result["results"][f]["Q6"]["arrow"]["answer"][0][0] for f in ("spark", "dask")}
    assert q6["spark"] == pytest.approx(q6["dask"], rel=1e-9)
    # nothing left behind
    assert f"{prefix}0" not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                          text=True).stdout
