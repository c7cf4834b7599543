"""Core benchmark (`make bench`): the engines next to DuckDB, and bytes moved by pushdown.

In one run, on TPC-H lineitem (scale factor 1 by default, cached under .bench/):
- TPC-H Q6, Q1 and a single int64 column filter + sum + count as `Client.aggregate(...,
  engine=E)` for the arrow engine and, where the agent has it, the in-kernel bpf engine (hot
  path), against one agent subprocess: median of 5 timed runs after a warm-up, as the client
  sees it and as the agent reports it (with GB/s of column data per core);
- the same queries in DuckDB single-threaded on a native table (the load is not timed);
- bytes moved to the client by pushdown vs a full scan of the columns each query needs.
Prints tables and writes .bench/core-results.json. Times are reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from bpfstore.connector import Client, avg, col, count_star, sum_
from bpfstore.connector.demo import (
    Q1,
    Q6,
    differences,
    generate_lineitem,
    human_bytes,
    running_agents,
)
from bpfstore.connector.query import Query, QueryReport
from bpfstore.contract.plan import and_all

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".bench"
console = Console()

price, disc, tax = col("l_extendedprice"), col("l_discount"), col("l_tax")
QUERIES: dict[str, dict[str, Any]] = {
    "Q6": {
        "sql": Q6,
        "where": and_all(
            [
                col("l_shipdate") >= date(1994, 1, 1),
                col("l_shipdate") < date(1995, 1, 1),
                disc.between(Decimal("0.05"), Decimal("0.07")),
                col("l_quantity") < 24,
            ]
        ),
        "group_by": (),
        "aggregates": [sum_(price * disc)],
        "names": ["revenue"],
        "columns": ["l_shipdate", "l_discount", "l_quantity", "l_extendedprice"],
    },
    "Q1": {
        "sql": Q1,
        "where": col("l_shipdate") <= date(1998, 9, 2),
        "group_by": ("l_returnflag", "l_linestatus"),
        "aggregates": [
            sum_("l_quantity"),
            sum_(price),
            sum_(price * (1 - disc)),
            sum_(price * (1 - disc) * (1 + tax)),
            avg(col("l_quantity")),
            avg(price),
            avg(disc),
            count_star(),
        ],
        "names": [
            "sum_qty",
            "sum_base_price",
            "sum_disc_price",
            "sum_charge",
            "avg_qty",
            "avg_price",
            "avg_disc",
            "count_order",
        ],
        "columns": [
            "l_returnflag",
            "l_linestatus",
            "l_quantity",
            "l_extendedprice",
            "l_discount",
            "l_tax",
            "l_shipdate",
        ],
    },
    # l_partkey is uniform and not in storage order, so statistics prune no partition;
    # the range (a quarter of the keys) is set from the data in main()
    "1 column": {
        "sql": "",
        "where": None,
        "group_by": (),
        "aggregates": [sum_("l_partkey"), count_star()],
        "names": ["s", "n"],
        "columns": ["l_partkey"],
    },
}


def timed(fn: Callable[[], Any], runs: int) -> tuple[Any, list[float]]:
    """One warm-up call, then `runs` timed calls: (last result, seconds per call)."""
    result = fn()
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - start)
    return result, seconds


def lineitem_parquet(scale: float) -> Path:
    """TPC-H lineitem at `scale`, generated once and kept under .bench/."""
    final = CACHE / f"tpch-sf{scale:g}" / "lineitem.parquet"
    if not final.exists():
        CACHE.mkdir(exist_ok=True)
        with console.status(f"generating TPC-H lineitem, scale factor {scale:g} (cached after)"):
            # Generate beside the final place and rename: an interrupted run leaves no half file.
            tmp = Path(tempfile.mkdtemp(dir=CACHE, prefix="tpch-tmp-"))
            final.parent.mkdir(exist_ok=True)
            generate_lineitem(scale, tmp).rename(final)
            tmp.rmdir()
    return final


def bench_duckdb(parquet: Path, runs: int) -> dict[str, Any]:
    con = duckdb.connect()
    con.execute("SET threads = 1")
    path = str(parquet).replace("'", "''")
    con.execute(f"CREATE TABLE lineitem AS SELECT * FROM read_parquet('{path}')")

    def one(sql: str) -> dict[str, Any]:
        answer, seconds = timed(lambda: con.sql(sql).to_arrow_table(), runs)
        return {"answer": answer, "median_s": statistics.median(seconds), "runs_s": seconds}

    return {name: one(q["sql"]) for name, q in QUERIES.items()}


def bench_aggregate(client: Client, q: dict[str, Any], runs: int, engine: str) -> dict[str, Any]:
    agent_s: list[float] = []  # per call: agent-reported time summed over partitions
    per_partition: dict[str, list[float]] = {}
    reports: list[QueryReport] = []

    def query() -> pa.Table:
        result = client.run(Query.aggregate("lineitem", q["aggregates"], q["where"],
                                            q["group_by"], engine=engine, names=q["names"]))
        report = result.report
        reports.append(report)
        agent_s.append(sum(p.time_ns for p in report.partitions) / 1e9)
        for p in report.partitions:
            per_partition.setdefault(p.partition, []).append(p.time_ns / 1e9)
        return result.table

    answer, seconds = timed(query, runs)
    report = reports[-1]
    partitions = len(report.partitions)
    return {
        "answer": answer,
        "median_s": statistics.median(seconds),
        "runs_s": seconds,
        # the first entries come from the warm-up call
        "agent_sum_median_s": statistics.median(agent_s[1:]),
        "agent_per_partition_median_s": {
            k: statistics.median(v[1:]) for k, v in per_partition.items()
        },
        "engines": sorted({p.engine for p in report.partitions if not p.pruned}),
        "partitions": partitions,
        "rows_scanned": sum(p.rows_scanned for p in report.partitions),
        "bytes_scanned": report.bytes_scanned,
        "bytes_moved": report.bytes_moved,
        "bytes_moved_per_partition": report.bytes_moved / max(partitions, 1),
    }


def bench_full_scan(client: Client) -> dict[str, Any]:
    """What a connector without aggregate pushdown moves: every row of the needed columns."""
    out = {}
    for name, q in QUERIES.items():
        start = time.perf_counter()
        result = client.run(Query.scan("lineitem", q["columns"]))
        seconds = time.perf_counter() - start
        table, report = result.table, result.report
        out[name] = {
            "columns": q["columns"],
            "rows": table.num_rows,
            "seconds": seconds,
            "bytes_moved": report.bytes_moved,
            "bytes_scanned": report.bytes_scanned,
        }
    return out


def available_engines(client: Client, names: tuple[str, ...]) -> list[str]:
    """Those of `names` the (first) agent has; the others are printed with the reason."""
    statuses = {e["name"]: e for e in client.info()[0]["engines"] if e["name"] in names}
    for name, status in statuses.items():
        if not status["available"]:
            console.print(f"[yellow]{name} left out: {status['reason']}[/]")
    return [name for name in names if statuses.get(name, {}).get("available")]


def finish(results: dict[str, Any], diffs: list[str], filename: str) -> int:
    """Say every answer that differs from DuckDB, write the results under .bench/; the exit
    status (1 when an answer differs)."""
    for d in diffs:
        console.print(f"[red]differs from DuckDB: {d}[/]")
    out = CACHE / filename
    out.write_text(json.dumps(results, indent=2) + "\n")
    console.print(f"results written to {out.relative_to(REPO)}")
    return 1 if diffs else 0


def check(ours: pa.Table, oracle: pa.Table, group_by: tuple[str, ...]) -> list[str]:
    # Q1 orders by its group keys; the aggregate call does not promise an order.
    if group_by:
        ours = ours.sort_by([(k, "ascending") for k in group_by])
    return differences(ours, oracle)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="TPC-H scale factor (1)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs after a warm-up (5)")
    parser.add_argument("--partition-rows", type=int, default=1_000_000)
    parser.add_argument(
        "--agent-threads",
        type=int,
        default=1,
        help="Arrow CPU threads in the agent, 0 = Arrow's default (1: the same "
        "budget as DuckDB single-threaded, and one bpf run at a time)",
    )
    args = parser.parse_args(argv)

    parquet = lineitem_parquet(args.scale)
    table = pq.read_table(parquet)
    top = pa.compute.max(table.column("l_partkey")).as_py()
    lo, hi = top // 4, top // 2
    QUERIES["1 column"]["where"] = col("l_partkey").between(lo, hi)
    QUERIES["1 column"]["sql"] = ("select sum(l_partkey) as s, count(*) as n from lineitem "
                                  f"where l_partkey between {lo} and {hi}")
    console.print(f"lineitem SF{args.scale:g}: {table.num_rows:,} rows ({parquet})")

    with console.status("DuckDB, single-threaded"):
        duck = bench_duckdb(parquet, args.runs)

    env = dict(os.environ)
    if args.agent_threads:
        env["OMP_NUM_THREADS"] = str(args.agent_threads)  # sizes Arrow's CPU thread pool
    with (
        tempfile.TemporaryDirectory(prefix="bpfstore-bench-") as tmp,
        # one bpf run at a time too: the same one-core budget as DuckDB single-threaded
        # (bench_cores.py measures more cores)
        running_agents(Path(tmp), 1, env=env,
                       args=["--bpf-threads", "1"] if args.agent_threads == 1 else []) as agents,
    ):
        client = Client(agents=agents)
        with console.status("ingesting"):
            start = time.perf_counter()
            client.write("lineitem", table, partition_rows=args.partition_rows)
            ingest_s = time.perf_counter() - start
        console.print(f"ingested in {ingest_s:.1f} s ({table.num_rows / ingest_s:,.0f} rows/s)")
        engines = ["arrow", *available_engines(client, ("bpf-hot", "bpf-cold", "bcc"))]
        pushed: dict[str, dict[str, Any]] = {}
        for engine in engines:
            with console.status(f"pushdown ({engine} engine)"):
                pushed[engine] = {name: bench_aggregate(client, q, args.runs, engine)
                                  for name, q in QUERIES.items()}
        with console.status("full scans"):
            scan = bench_full_scan(client)

    diffs = {
        f"{n} ({e})": check(pushed[e][n]["answer"], duck[n]["answer"], q["group_by"])
        for n, q in QUERIES.items() for e in engines if n in pushed[e]
    }
    print_tables(pushed, duck, scan, diffs, args.runs)
    results = {
        "scale": args.scale,
        "rows": table.num_rows,
        "runs": args.runs,
        "partition_rows": args.partition_rows,
        "agent_threads": args.agent_threads,
        "duckdb_threads": 1,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "kernel": platform.release(),
            "pyarrow": pa.__version__,
        },
        "ingest_s": ingest_s,
        "queries": {
            name: {
                **{e: {k: v for k, v in pushed[e][name].items() if k != "answer"}
                   for e in engines if name in pushed[e]},
                "duckdb": {k: v for k, v in duck[name].items() if k != "answer"},
                **{f"{e}_over_duckdb": pushed[e][name]["median_s"] / duck[name]["median_s"]
                   for e in engines if name in pushed[e]},
                "full_scan": scan[name],
                "matches_duckdb": not any(diffs.get(f"{name} ({e})") for e in engines),
            }
            for name in QUERIES
        },
    }
    out = CACHE / "core-results.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    console.print(f"results written to {out.relative_to(REPO)}")
    return 1 if any(diffs.values()) else 0


def print_tables(pushed: dict, duck: dict, scan: dict, diffs: dict, runs: int) -> None:
    console.print(
        f"\n[bold]Aggregate time[/]: engines vs DuckDB single-threaded, median of {runs} runs "
        "after a warm-up; 'agent' is the agent-reported time (no RPC, no client merge), "
        "GB/s is column data scanned per second of agent time"
    )
    times = Table(box=None, header_style="bold underline")
    for c in ("query", "engine", "client", "agent", "GB/s", "DuckDB", "agent/DuckDB",
              "same answer"):
        times.add_column(c, justify="left" if c in ("query", "engine") else "right")
    for name in QUERIES:
        for engine, push in pushed.items():
            if name not in push:
                continue
            p, d = push[name], duck[name]
            times.add_row(
                name, engine if set(p["engines"]) <= {engine.split("-")[0], "stats"}
                else f"{engine} ({'/'.join(p['engines'])})",
                f"{p['median_s'] * 1e3:.1f} ms",
                f"{p['agent_sum_median_s'] * 1e3:.1f} ms",
                f"{p['bytes_scanned'] / p['agent_sum_median_s'] / 1e9:.2f}",
                f"{d['median_s'] * 1e3:.1f} ms",
                f"{p['agent_sum_median_s'] / d['median_s']:.2f}×",
                "[red]no[/]" if diffs[f"{name} ({engine})"] else "yes",
            )
    console.print(times)
    push = pushed["arrow"]
    console.print("\n[bold]bytes moved to the client[/]: pushdown vs a full scan of the columns")
    moved = Table(box=None, header_style="bold underline")
    moved.add_column("query")
    for c in (
        "partitions",
        "pushdown",
        "per partition",
        "full scan",
        "ratio",
        "agent scanned",
    ):
        moved.add_column(c, justify="right")
    for name in QUERIES:
        p, s = push[name], scan[name]
        moved.add_row(
            name,
            str(p["partitions"]),
            human_bytes(p["bytes_moved"]),
            human_bytes(p["bytes_moved_per_partition"]),
            human_bytes(s["bytes_moved"]),
            f"{s['bytes_moved'] / max(p['bytes_moved'], 1):,.0f}×",
            human_bytes(p["bytes_scanned"]),
        )
    console.print(moved)
    for name, diff in diffs.items():
        for d in diff:
            console.print(f"[red]{name} differs from DuckDB: {d}[/]")


if __name__ == "__main__":
    sys.exit(main())
