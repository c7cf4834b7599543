"""Dask task layout benchmark: scan-heavy TPC-H queries (tests/tpch/dask_queries.py) over
read_bpfstore with one Dask partition per stored partition (`partitions_per_task=1`), with
the default layout, and over dd.read_parquet of the same rows (one file per stored
partition), side by side in one run.

Agents are subprocesses on loopback (one per --agents); Dask runs on the threaded scheduler
or, with --processes, a LocalCluster with one single-threaded worker process per agent and
the locality plugin. Times are the median of --runs after a warm-up, never asserted; every
variant's answer is checked against the first one's.

    .venv/bin/python bench/bench_dask_tasks.py --sf 1 --queries q03,q04,q18 [--processes]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sf", type=float, default=1.0)
    ap.add_argument("--queries", default="q03,q04,q18")
    ap.add_argument("--agents", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--processes", action="store_true")
    ap.add_argument("--layouts", default="1,default",
                    help="partitions_per_task values to compare (default: read_bpfstore's)")
    ap.add_argument("--json", type=Path, help="append the rows as JSON lines here")
    args = ap.parse_args()
    os.environ["TPCH_SF"] = str(args.sf)  # before tpch reads it (partition rows)

    import dask
    import dask.dataframe as dd
    import distributed
    import tpch as t
    from tpch.dask_queries import QUERIES

    from bpfstore.connector import Client
    from bpfstore.connector.dask import read_bpfstore
    from bpfstore.connector.dask.locality import BpfLocalityPlugin
    from bpfstore.connector.demo import running_agents

    names = args.queries.split(",")
    with tempfile.TemporaryDirectory(prefix="bench-tasks-") as tmp, \
            running_agents(Path(tmp), args.agents) as addresses:
        started = time.perf_counter()
        data = t.generate(Path(tmp) / "tpch", args.sf)
        with Client(addresses) as c:
            t.ingest(c, data)
        out = Path(tmp) / "pandas"
        for name, table in data.tables.items():
            t.write_split(t.pandas_types(table), out / name, data.partition_rows[name])
        print(f"data: SF {args.sf}, {args.agents} agents, "
              f"{time.perf_counter() - started:.0f} s to make", flush=True)

        cluster = client = None
        if args.processes:
            cluster = distributed.LocalCluster(n_workers=args.agents, threads_per_worker=1,
                                               processes=True, dashboard_address=":0")
            client = distributed.Client(cluster)
            client.register_plugin(BpfLocalityPlugin({a: i for i, a in enumerate(addresses)}))
        variants = {}
        for text in args.layouts.split(","):
            per_task = None if text == "default" else int(text)
            key = "default" if per_task is None else f"ppt={per_task}"
            variants[key] = {n: read_bpfstore(n, addresses, partitions_per_task=per_task)
                             for n in t.TABLES}
        variants["read_parquet"] = {n: dd.read_parquet(str(out / n)) for n in t.TABLES}
        layout = {v: variants[v]["lineitem"].npartitions for v in variants}
        print(f"lineitem Dask partitions: {layout}", flush=True)

        def run(query: Any, tables: dict[str, Any]) -> Any:
            lazy = query(tables)
            if client is not None:
                return client.compute(lazy).result()
            with dask.config.set({"dataframe.shuffle.method": "tasks"}):
                return lazy.compute(scheduler="threads")

        rows = []
        for qname in names:
            query, first = QUERIES[qname], None
            line = {"query": qname, "sf": args.sf, "agents": args.agents,
                    "scheduler": "processes" if client else "threads"}
            for vname, tables in variants.items():
                t_rows = _rows(run(query, tables))  # warm-up
                answer = t_rows[0]
                times = []
                for _ in range(args.runs):
                    began = time.perf_counter()
                    run(query, tables)
                    times.append(time.perf_counter() - began)
                if first is None:
                    first = t_rows
                else:
                    assert t.differences(qname, answer, first[0]) == [], (qname, vname)
                line[vname] = round(statistics.median(times), 3)
                line[f"{vname}_min"] = round(min(times), 3)
                line[f"{vname}_tasks"] = layout[vname]
            print(json.dumps(line), flush=True)
            rows.append(line)
        if args.json:
            with args.json.open("a") as f:
                for line in rows:
                    f.write(json.dumps(line) + "\n")
        if client is not None:
            client.close()
            cluster.close()


def _rows(result: Any) -> tuple[list[tuple], None]:
    import pandas as pd

    if isinstance(result, pd.Series):
        result = result.to_frame()
    if isinstance(result, pd.DataFrame):
        return list(result.reset_index(drop=True).itertuples(index=False, name=None)), None
    return [(float(result),)], None


if __name__ == "__main__":
    main()
