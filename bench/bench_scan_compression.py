"""Scan compression (`make bench-compression`): a full Scan of TPC-H lineitem with each Arrow
IPC buffer compression — none, lz4, zstd — timed as the client sees it, with the bytes on the
wire (the client's bytes moved: the ScanChunks as sent) and the rows' Arrow size.

One agent subprocess on loopback (127.0.0.1, where `compression="auto"` sends none); with
`--link 1gbit,100mbit` (root: network namespaces and tc from bench/cluster_net.py, under a
prefix and subnet of its own) also one agent behind a veth pair shaped to each rate, where
the link's own byte counters are read too. Median of `--runs` after a warm-up, the three
compressions interleaved run by run; with the CPU seconds of the agent and of the client
(less sensitive to a busy machine than wall time). Data cached under .bench/
(bench_core.lineitem_parquet). Times are reported, never asserted.

    .venv/bin/python bench/bench_scan_compression.py --sf 1 [--columns l_orderkey,...]
        [--link 1gbit,100mbit] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from bench_core import CACHE, lineitem_parquet
from cluster_net import Cluster, cleanup_leftovers, netns_available
from rich.console import Console
from rich.table import Table

from bpfstore.connector import Client, Query, Transport
from bpfstore.connector.demo import running_agents

COMPRESSIONS = ("none", "lz4", "zstd")
console = Console()


def ingest(agent: str, parquet: Path, partition_rows: int) -> int:
    with Client([agent], timeout=3600) as c:
        c.write("lineitem", pq.ParquetFile(parquet).iter_batches(batch_size=100_000),
                partition_rows=partition_rows, overwrite=True)
        return len(c.describe("lineitem").partitions)


def agent_cpu(address: str) -> float:
    """CPU seconds (user + system) of the agent process listening on `address`."""
    clk = os.sysconf("SC_CLK_TCK")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if address.encode() not in argv or b"--listen" not in argv:
                continue
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / clk
    return math.nan


def measure(agent: str, columns: list[str] | None, runs: int,
            link: Cluster | None = None) -> dict[str, Any]:
    """Runs interleaved (none, lz4, zstd, none, ...) so the machine's load drifts over all
    three alike; per run the wall time, the client's and the agent's CPU seconds, the bytes."""
    query = Query.scan("lineitem", columns)
    clients = {c: Client([agent], transport=Transport(compression=c), timeout=3600)
               for c in COMPRESSIONS}
    samples: dict[str, dict[str, list[float]]] = {
        c: {"s": [], "client_cpu": [], "agent_cpu": [], "moved": [], "rx": []}
        for c in COMPRESSIONS}
    sizes: dict[str, tuple[int, int]] = {}
    try:
        for c in COMPRESSIONS:
            clients[c].run(query)  # warm-up: channel, page cache, the agent's first scan
        for _ in range(runs):
            for c in COMPRESSIONS:
                rx0 = link.link_bytes()[0] if link else 0
                cpu0, agent0 = time.process_time(), agent_cpu(agent)
                started = time.perf_counter()
                result = clients[c].run(query)
                took = time.perf_counter() - started
                one = samples[c]
                one["s"].append(took)
                one["client_cpu"].append(time.process_time() - cpu0)
                one["agent_cpu"].append(agent_cpu(agent) - agent0)
                one["moved"].append(result.report.bytes_moved)
                if link:
                    one["rx"].append(link.link_bytes()[0] - rx0)
                sizes[c] = (result.table.nbytes, result.table.num_rows)
                del result
    finally:
        for client in clients.values():
            client.close()
    out: dict[str, Any] = {}
    for c, one in samples.items():
        median = statistics.median(one["s"])
        arrow, rows = sizes[c]
        out[c] = {
            "median_s": median, "runs_s": one["s"], "rows": rows, "arrow_bytes": arrow,
            "client_cpu_s": statistics.median(one["client_cpu"]),
            "agent_cpu_s": statistics.median(one["agent_cpu"]),
            "bytes_moved": statistics.median(one["moved"]),
            "link_rx_bytes": statistics.median(one["rx"]) if one["rx"] else None,
            "rows_mb_per_s": arrow / median / 1e6,
            "wire_mb_per_s": statistics.median(one["moved"]) / median / 1e6,
        }
    return out


def show(title: str, per: dict[str, Any]) -> None:
    table = Table(title=title)
    for name in ("compression", "time (median)", "rows MB/s", "bytes moved", "vs none",
                 "link rx", "agent CPU", "client CPU"):
        table.add_column(name, justify="right")
    base = per["none"]["bytes_moved"]
    for compression, r in per.items():
        rx = r["link_rx_bytes"]
        table.add_row(compression, f"{r['median_s'] * 1000:.0f} ms",
                      f"{r['rows_mb_per_s']:.0f}", f"{r['bytes_moved'] / 1e6:.1f} MB",
                      f"{r['bytes_moved'] / base:.2f}",
                      f"{rx / 1e6:.1f} MB" if rx is not None else "-",
                      f"{r['agent_cpu_s']:.2f} s", f"{r['client_cpu_s']:.2f} s")
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sf", type=float, default=1.0, help="TPC-H scale factor (default 1)")
    ap.add_argument("--columns", default="", help="comma-separated; default every column")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--partition-rows", type=int, default=1_000_000)
    ap.add_argument("--link", default="", help="also over shaped links (root): 1gbit,100mbit")
    ap.add_argument("--out", type=Path, default=CACHE / "scan-compression.json")
    args = ap.parse_args(argv)
    columns = [c for c in args.columns.split(",") if c] or None
    parquet = lineitem_parquet(args.sf)
    rows = pq.ParquetFile(parquet).metadata.num_rows
    results: dict[str, Any] = {"sf": args.sf, "rows": rows, "columns": columns or "all",
                               "runs": args.runs, "date": time.strftime("%Y-%m-%d %H:%M"),
                               "load_average_before": os.getloadavg(),
                               "command": "bench/bench_scan_compression.py "
                               + " ".join(argv if argv is not None else sys.argv[1:])}
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="compression-") as tmp:
        with running_agents(Path(tmp), 1) as (agent,):
            results["partitions"] = ingest(agent, parquet, args.partition_rows)
            results["loopback"] = measure(agent, columns, args.runs)
            show(f"Scan of lineitem SF {args.sf:g} on loopback ({rows:,} rows)",
                 results["loopback"])
        links = [x for x in args.link.split(",") if x]
        if links and (why := netns_available()):
            console.print(f"[yellow]shaped links skipped: {why}")
            links = []
        if links:
            cleanup_leftovers("bpfzc")
            cluster = Cluster(1, prefix="bpfzc", subnet="10.233")  # apart from bench-cluster's
            try:
                cluster.create()
                exe = Path(sys.executable).parent / "bpfstore-agent"
                (agent,) = cluster.start_agents(exe, Path(tmp) / "ns")
                ingest(agent, parquet, args.partition_rows)
                for link in links:
                    cluster.shape(link)
                    results[link] = measure(agent, columns, args.runs, cluster)
                    show(f"Scan of lineitem SF {args.sf:g} over a {link} link "
                         f"(agent {agent}: compression=auto is lz4 here)", results[link])
                    cluster.unshape()
            finally:
                cluster.close()
    results["load_average_after"] = os.getloadavg()
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    console.print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
