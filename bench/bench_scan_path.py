"""The Scan data path against Parquet (issue 14, deliverable 2): `Client.scan_table` of Q6's four
columns and of all 16 columns of TPC-H lineitem beside `pyarrow.parquet.read_table` of the same
columns, in one run, interleaved run by run so the machine's load drifts over all alike.

One real agent process (`--no-bpf`, arrow engine) on loopback, lineitem at `--sf` (cached under
.bench/ by bench_core) in partitions of `--partition-rows` (default 100,000 x sf: 61 partitions
at any scale). Per workload: the median wall time, MB/s of Arrow data (the table's `nbytes`),
MB/s per client CPU second (all the client's threads: what "per client core" means here) and
the agent's CPU seconds; the ratio to `pq.read_table`. Times are reported, never asserted.

    .venv/bin/python bench/bench_scan_path.py [--sf 0.1] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from bench_core import lineitem_parquet  # noqa: E402

from agent_process import AgentProcess  # noqa: E402
from bpfstore.connector import Client  # noqa: E402

SCAN4 = ["l_shipdate", "l_discount", "l_quantity", "l_extendedprice"]  # what Q6 reads


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
    return r.ru_utime + r.ru_stime


def pid_cpu(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sf", type=float, default=0.1, help="TPC-H scale factor (0.1)")
    parser.add_argument("--partition-rows", type=int, default=0,
                        help="rows per partition (0: 100,000 x sf, 61 partitions)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs after a warm-up")
    args = parser.parse_args(argv)
    partition_rows = args.partition_rows or max(1, round(100_000 * args.sf))
    parquet = lineitem_parquet(args.sf)
    names = pq.read_schema(parquet).names
    os.environ["OMP_NUM_THREADS"] = "1"  # the agent's Arrow pool (inherited)
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; lineitem SF{args.sf:g}, "
          f"{partition_rows:,} rows per partition; load {load()}")
    with tempfile.TemporaryDirectory(prefix="bpfstore-scanpath-") as tmp:
        agent = AgentProcess(Path(tmp) / "agent")
        assert agent.proc is not None
        try:
            with Client([agent.address], timeout=3600) as client:
                client.write("lineitem", pq.read_table(parquet), partition_rows=partition_rows)
                print(f"ingested: {len(client.describe('lineitem').partitions)} partitions")
                work: dict[str, Callable[[], object]] = {}
                for label, cols in (("4 columns", SCAN4), ("16 columns", names)):
                    work[f"bpfstore {label}"] = lambda c=cols: client.scan_table("lineitem", c)
                    work[f"parquet {label}"] = lambda c=cols: pq.read_table(parquet, columns=c)
                run(work, args.runs, agent.proc.pid)
        finally:
            agent.stop()
    return 0


def run(work: dict[str, Callable[[], object]], runs: int, agent_pid: int) -> None:
    sizes = {name: fn().nbytes / 1e6 for name, fn in work.items()}  # type: ignore[attr-defined]
    wall: dict[str, list[float]] = {n: [] for n in work}
    client: dict[str, list[float]] = {n: [] for n in work}
    agent: dict[str, list[float]] = {n: [] for n in work}
    for _ in range(runs):
        for name, fn in work.items():
            a0, c0, t0 = pid_cpu(agent_pid), own_cpu(), time.perf_counter()
            fn()
            wall[name].append(time.perf_counter() - t0)
            client[name].append(own_cpu() - c0)
            agent[name].append(pid_cpu(agent_pid) - a0)
    print(f"median of {runs}, load after: {load()}")
    print(f"{'workload':<22}{'MB':>7}{'wall s':>9}{'MB/s':>8}{'MB/client-cpu-s':>17}"
          f"{'agent cpu s':>13}{'vs parquet':>12}")
    for name in work:
        w, c, a = (statistics.median(x[name]) for x in (wall, client, agent))
        ref = name.replace("bpfstore", "parquet")
        ratio = w / statistics.median(wall[ref]) if ref != name else 1.0
        print(f"{name:<22}{sizes[name]:>7.0f}{w:>9.3f}{sizes[name] / w:>8.0f}"
              f"{sizes[name] / max(c, 1e-3):>17.0f}{a:>13.3f}{ratio:>11.2f}x")


if __name__ == "__main__":
    sys.exit(main())
