"""Dask join key pushdown: the TPC-H queries that join a small side with a big table (Q17,
Q20, Q2, Q14, Q19 of tests/tpch/dask_queries.py), side by side in one run: read_bpfstore with
`join_pushdown` on and off, and the same code over dd.read_parquet of the same rows.

Agent subprocesses on loopback, a LocalCluster with one worker process per agent (locality
plugin). Bytes are what the agents returned to Dask per dataset (worker and client processes:
the small side's keys are computed through the same cluster); times are the median of --runs
after a warm-up, reported, never asserted.

    .venv/bin/python bench/bench_dask_join_pushdown.py --scale 0.1
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import dask
import dask.dataframe as dd
import distributed
import pandas as pd

_TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path[:0] = [str(_TESTS), str(_TESTS / "e2e")]

import tpch as t  # noqa: E402 - the tests' TPC-H data and queries
from bench_core import CACHE  # noqa: E402
from tpch.dask_queries import QUERIES  # noqa: E402

from bpfstore.connector import Client  # noqa: E402
from bpfstore.connector.dask import read_bpfstore, stats  # noqa: E402
from bpfstore.connector.dask.locality import BpfLocalityPlugin  # noqa: E402
from bpfstore.connector.demo import human_bytes, running_agents  # noqa: E402

NAMES = ["q17", "q20", "q02", "q14", "q19"]


def moved(dc: distributed.Client) -> dict[str, int]:
    """Agent calls and bytes of the workers and of this process since the last call."""
    total: dict[str, int] = dict(stats(reset=True))
    for worker in dc.run(stats, True).values():
        for key, n in worker.items():
            total[key] = total.get(key, 0) + n
    return total


def timed(dc: distributed.Client, build: Any, runs: int) -> tuple[Any, float, dict[str, int]]:
    dc.compute(build()).result()  # warm-up (connections, compile caches)
    moved(dc)
    seconds, answer = [], None
    for _ in range(runs):
        started = time.perf_counter()
        answer = dc.compute(build()).result()  # built anew: the small side is computed each run
        seconds.append(time.perf_counter() - started)
    per_run = {k: v // runs for k, v in moved(dc).items()}
    return answer, statistics.median(seconds), per_run


def rows(answer: Any) -> list[tuple]:
    if isinstance(answer, pd.Series):
        answer = answer.to_frame()
    if isinstance(answer, pd.DataFrame):
        frame = answer.reset_index(drop=True)
        return sorted(tuple(round(v, 6) if isinstance(v, float) else v for v in r)
                      for r in frame.itertuples(index=False, name=None))
    return [(round(float(answer), 6),)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.1, help="TPC-H scale factor (0.1)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs after a warm-up (3)")
    parser.add_argument("--agents", type=int, default=2)
    args = parser.parse_args(argv)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bpfstore-join-bench-") as tmp, \
            running_agents(Path(tmp), args.agents) as agents:
        data = t.generate(Path(tmp) / "tpch", args.scale)
        with Client(agents) as client:
            for name, table in data.tables.items():
                client.write(name, table, partition_rows=data.partition_rows[name])
        with distributed.LocalCluster(n_workers=args.agents, threads_per_worker=1,
                                      processes=True, dashboard_address=":0") as cluster, \
                distributed.Client(cluster) as dc, \
                dask.config.set({"dataframe.shuffle.method": "tasks"}):
            dc.register_plugin(BpfLocalityPlugin({a: i for i, a in enumerate(agents)}))
            on = {n: read_bpfstore(n, agents) for n in t.TABLES}
            off = {n: read_bpfstore(n, agents, join_pushdown=False) for n in t.TABLES}
            from dask_support import write_parquet_like  # tests/e2e: same rows, same split

            out = Path(tmp) / "parquet"
            for name, table in data.tables.items():
                write_parquet_like(on[name], t.pandas_types(table), out / name)
            parquet = {n: dd.read_parquet(str(out / n)) for n in t.TABLES}
            print(f"TPC-H SF {args.scale}, {args.agents} agents, median of {args.runs} runs")
            print(f"{'query':6s} {'lineitem bytes on':>18s} {'off':>12s} {'all bytes on':>14s}"
                  f" {'off':>12s} {'s on':>7s} {'s off':>7s} {'s parquet':>9s}  same")
            for name in NAMES:
                query = QUERIES[name]
                a_on, s_on, m_on = timed(dc, lambda q=query: q(on), args.runs)
                a_off, s_off, m_off = timed(dc, lambda q=query: q(off), args.runs)
                a_pq, s_pq, _ = timed(dc, lambda q=query: q(parquet), args.runs)
                same = rows(a_on) == rows(a_off) == rows(a_pq)
                li = "bytes_moved.lineitem"
                results[name] = {"seconds_on": s_on, "seconds_off": s_off,
                                 "seconds_parquet": s_pq, "lineitem_bytes_on": m_on.get(li, 0),
                                 "lineitem_bytes_off": m_off.get(li, 0),
                                 "bytes_on": m_on.get("bytes_moved", 0),
                                 "bytes_off": m_off.get("bytes_moved", 0), "same": same}
                r = results[name]
                print(f"{name:6s} {human_bytes(r['lineitem_bytes_on']):>18s} "
                      f"{human_bytes(r['lineitem_bytes_off']):>12s} "
                      f"{human_bytes(r['bytes_on']):>14s} {human_bytes(r['bytes_off']):>12s} "
                      f"{s_on:7.2f} {s_off:7.2f} {s_pq:9.2f}  {same}")
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / "dask-join-pushdown.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"written {path}")
    return 0 if all(r["same"] for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
