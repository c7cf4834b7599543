"""First query of a new shape (`make bench`): what a query costs before the agent has its
program, at realistic partition sizes (TPC-H lineitem in 100,000-row partitions: 61 at SF1).

For each in-kernel engine, on one agent subprocess over the same stored data, each process
first opening every partition with an arrow query (its first-open checksum is no shape's cost):
- "new agent": its bpf cache emptied, so the first call pays one clang compile per shape
  plus loading (verifier), generating C per partition and copying columns in;
- "restarted": a new process over the cache the first left on disk (no clang; load only);
- "warm": the median of the next calls on that process.
`(first - restarted) / shapes` is what one compile costs; the issue's target is first <= one
compile + 1.3 x warm. Times are the client's, beside the agent-reported sum over partitions;
answers are checked against DuckDB. Reported, never asserted; writes
.bench/first-query-results.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
from bench_core import QUERIES, available_engines, check, console, finish, lineitem_parquet
from rich.table import Table

from bpfstore.connector import Client, sum_
from bpfstore.connector.demo import running_agents
from bpfstore.connector.query import Query

ENGINES = ("bpf-hot", "bpf-cold", "bcc")


def call(client: Client, q: dict[str, Any], engine: str) -> tuple[Any, float, float, set]:
    """(answer, client seconds, agent seconds summed over partitions, engines that ran)."""
    start = time.perf_counter()
    result = client.run(Query.aggregate("lineitem", q["aggregates"], q["where"], q["group_by"],
                                        engine=engine, names=q["names"]))
    seconds = time.perf_counter() - start
    parts = result.report.partitions
    ran = {p.engine for p in parts if not p.pruned}
    return result.table, seconds, sum(p.time_ns for p in parts) / 1e9, ran


def measure(root: Path, engine: str, names: list[str], runs: int,
            env: dict[str, str]) -> dict[str, Any]:
    """The three states of one engine, every query of `names` in turn per state; `shapes`
    counts the objects the first call left in the agent's disk cache (bcc keeps none)."""
    cache = root / "agent0" / "bpf-cache"
    shutil.rmtree(cache, ignore_errors=True)
    out: dict[str, Any] = {"open_s": {}, "queries": {name: {} for name in names}}
    queries = out["queries"]
    for state in ("new agent", "restarted"):
        with running_agents(root, 1, env=env) as agents, Client(agents=agents) as client:
            # Opening every partition (its first-open SHA-256 check) is not the shape's cost:
            # an arrow query that reads a column of each pays it first.
            start = time.perf_counter()
            client.run(Query.aggregate("lineitem", [sum_("l_orderkey")], engine="arrow"))
            out["open_s"][state] = time.perf_counter() - start
            for name in names:
                before = set(cache.glob("*.bpf.o"))
                answer, client_s, agent_s, ran = call(client, QUERIES[name], engine)
                queries[name][state] = {"client_s": client_s, "agent_s": agent_s,
                                    "engines": sorted(ran), "answer": answer,
                                    "shapes": len(set(cache.glob("*.bpf.o")) - before)}
            if state == "restarted":
                for name in names:
                    warm = [call(client, QUERIES[name], engine) for _ in range(runs)]
                    queries[name]["warm"] = {
                        "client_s": statistics.median(w[1] for w in warm),
                        "agent_s": statistics.median(w[2] for w in warm),
                        "engines": sorted(set().union(*(w[3] for w in warm))),
                        "answer": warm[-1][0]}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="TPC-H scale factor (1)")
    parser.add_argument("--partition-rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5, help="warm calls (5)")
    parser.add_argument("--agent-threads", type=int, default=1,
                        help="Arrow CPU threads in the agent, 0 = Arrow's default (1)")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    if args.agent_threads:
        env["OMP_NUM_THREADS"] = str(args.agent_threads)  # sizes Arrow's CPU thread pool

    parquet = lineitem_parquet(args.scale)
    table = pq.read_table(parquet)
    con = duckdb.connect()
    con.register("lineitem", table)
    names = ["Q6", "Q1"]
    oracle = {name: con.sql(QUERIES[name]["sql"]).to_arrow_table() for name in names}
    results: dict[str, Any] = {"scale": args.scale, "partition_rows": args.partition_rows}
    with tempfile.TemporaryDirectory(prefix="bpfstore-first-") as tmp:
        root = Path(tmp)
        with running_agents(root, 1, env=env) as agents, Client(agents=agents) as client:
            with console.status(f"ingesting in {args.partition_rows:,}-row partitions"):
                client.write("lineitem", table, partition_rows=args.partition_rows)
            engines = available_engines(client, ENGINES)
            partitions = len(client.describe("lineitem").partitions)
        results["partitions"] = partitions
        for engine in engines:
            chosen = [n for n in names if not (engine == "bcc" and QUERIES[n]["group_by"])]
            with console.status(f"first queries on {engine}"):
                results[engine] = measure(root, engine, chosen, args.runs, env)

    diffs = [f"{name} {engine} {state}: {d}"
             for engine in engines for name, states in results[engine]["queries"].items()
             for state, r in states.items()
             for d in check(r.pop("answer"), oracle[name], QUERIES[name]["group_by"])]
    show(results, engines, partitions)
    return finish(results, diffs, "first-query-results.json")


def show(results: dict[str, Any], engines: list[str], partitions: int) -> None:
    console.print(f"\n[bold]First query of a new shape[/], {partitions} partitions: client "
                  "time (agent-reported sum); one compile = (new agent - restarted) / new "
                  "shapes; target = one compile + 1.3 x warm")
    t = Table(box=None, header_style="bold underline")
    for c in ("query", "engine", "new agent", "restarted", "warm", "shapes", "one compile",
              "first / target"):
        t.add_column(c, justify="left" if c in ("query", "engine") else "right")
    for engine in engines:
        for name, s in results[engine]["queries"].items():
            first, again, warm = (s[k]["client_s"] for k in ("new agent", "restarted", "warm"))
            shapes = s["new agent"]["shapes"]
            compile_s = max(first - again, 0.0) / max(shapes, 1)
            cell = {k: f"{s[k]['client_s'] * 1e3:.0f} ms ({s[k]['agent_s'] * 1e3:.0f})"
                    for k in ("new agent", "restarted", "warm")}
            ran = set(s["warm"]["engines"]) - {"stats", engine.split("-")[0]}
            t.add_row(name, engine + (f" ({'/'.join(sorted(ran))} too)" if ran else ""),
                      cell["new agent"], cell["restarted"], cell["warm"], str(shapes),
                      f"{compile_s * 1e3:.0f} ms", f"{first / (compile_s + 1.3 * warm):.2f}")
    console.print(t)
    for engine in engines:
        opened = results[engine]["open_s"]
        console.print(f"{engine}: opening the partitions first (arrow, not in the times above) "
                      + ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in opened.items()))


if __name__ == "__main__":
    sys.exit(main())
