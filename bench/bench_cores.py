"""bpf runs over several cores (`make bench`): the same agent restarted with `--bpf-threads 1`
(one bpf run at a time over all requests, as before runs went on at once) and with one run per
CPU, over the same stored TPC-H lineitem.

For the bpf hot and cold paths, TPC-H Q6 and Q1: the median client time of one query (its
partitions spread over the cores) and the throughput of as many concurrent clients as CPUs
(queries per second over `--seconds`). Answers are checked against DuckDB. Reported, never
asserted; writes .bench/cores-results.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
from bench_core import QUERIES, available_engines, check, console, finish, lineitem_parquet
from rich.table import Table

from bpfstore.connector import Client
from bpfstore.connector.demo import running_agents
from bpfstore.connector.query import Query

NAMES = ("Q6", "Q1")
ENGINES = ("bpf-hot", "bpf-cold")


def run(client: Client, name: str, engine: str) -> Any:
    q = QUERIES[name]
    return client.run(Query.aggregate("lineitem", q["aggregates"], q["where"], q["group_by"],
                                      engine=engine, names=q["names"])).table


def measure(client: Client, name: str, engine: str, runs: int, clients: int,
            seconds: float) -> dict[str, Any]:
    answer = run(client, name, engine)  # warm-up: compiled, loaded, columns in the arena
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run(client, name, engine)
        times.append(time.perf_counter() - start)
    done = [0] * clients
    stop = time.perf_counter() + seconds

    def loop(i: int) -> None:
        while time.perf_counter() < stop:
            run(client, name, engine)
            done[i] += 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"median_s": statistics.median(times), "qps": sum(done) / seconds, "answer": answer}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="TPC-H scale factor (1)")
    parser.add_argument("--partition-rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5, help="timed single queries (5)")
    parser.add_argument("--seconds", type=float, default=5.0, help="throughput window (5)")
    parser.add_argument("--agent-threads", type=int, default=1,
                        help="Arrow CPU threads in the agent (1, as bench_core)")
    args = parser.parse_args(argv)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.agent_threads)}
    cpus = os.cpu_count() or 1
    table = pq.read_table(lineitem_parquet(args.scale))
    con = duckdb.connect()
    con.register("lineitem", table)
    oracle = {name: con.sql(QUERIES[name]["sql"]).to_arrow_table() for name in NAMES}
    results: dict[str, Any] = {"scale": args.scale, "partition_rows": args.partition_rows,
                               "cpus": cpus, "runs": {}}
    diffs = []
    with tempfile.TemporaryDirectory(prefix="bpfstore-cores-") as tmp:
        root = Path(tmp)
        with (running_agents(root, 1, env=env) as agents, Client(agents=agents) as client,
              console.status("ingesting")):
            client.write("lineitem", table, partition_rows=args.partition_rows)
            engines = available_engines(client, ENGINES)
        results["engines"] = engines
        for threads in (1, cpus):
            with running_agents(root, 1, env=env, args=["--bpf-threads", str(threads)]) \
                    as agents, Client(agents=agents) as client:
                for engine in engines:
                    for name in NAMES:
                        with console.status(f"{name} on {engine}, {threads} bpf thread(s)"):
                            r = measure(client, name, engine, args.runs, cpus, args.seconds)
                        diffs += [f"{name} {engine} x{threads}: {d}" for d in
                                  check(r.pop("answer"), oracle[name], QUERIES[name]["group_by"])]
                        results["runs"][f"{name} {engine} {threads}"] = r
    show(results, cpus)
    return finish(results, diffs, "cores-results.json")


def show(results: dict[str, Any], cpus: int) -> None:
    console.print(f"\n[bold]bpf over {cpus} cores[/] vs one: one query's client time, and "
                  f"queries per second of {cpus} concurrent clients")
    t = Table(box=None, header_style="bold underline")
    for c in ("query", "engine", "1 thread", f"{cpus} threads", "speed-up",
              "q/s, 1 thread", f"q/s, {cpus} threads", "throughput ×"):
        t.add_column(c, justify="left" if c in ("query", "engine") else "right")
    runs = results["runs"]
    for engine in results["engines"]:
        for name in NAMES:
            one, many = runs[f"{name} {engine} 1"], runs[f"{name} {engine} {cpus}"]
            t.add_row(name, engine, f"{one['median_s'] * 1e3:.1f} ms",
                      f"{many['median_s'] * 1e3:.1f} ms",
                      f"{one['median_s'] / many['median_s']:.2f}×", f"{one['qps']:.1f}",
                      f"{many['qps']:.1f}", f"{many['qps'] / one['qps']:.2f}×")
    console.print(t)


if __name__ == "__main__":
    sys.exit(main())
