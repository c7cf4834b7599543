"""TPC-H's 22 queries through unchanged Spark and Dask code, over bpfstore and over local
Parquet, in one run (`make bench-tpch`; issues 14 and 17).

- Data: tpchgen-cli at `--sf` (cached under .bench/tpch-sf<SF>/), written into two agent
  processes on this machine (cached in the agents' data directories: a later run with the
  same rows skips the ingest) in partitions of `--partition-rows`, and as Parquet split the
  same way (Spark: one file per stored partition; Dask: one file per read_bpfstore task, so
  both frames have the same partitions and plan the same shuffles).
- Spark: `local[2]` (the tests' session: 2 shuffle partitions), temp views named as the
  tables over `format("bpfstore")` and over `spark.read.parquet`; the query's SQL text from
  tests/tpch/queries. Dask: tests/tpch/dask_queries.py over `read_bpfstore` and
  `dd.read_parquet` on the threaded scheduler (task-based shuffle), `--dask-variants` adding
  read_bpfstore options (e.g. join pushdown off).
- Per query and front end: one warm-up of each side (its answer compared with the other
  side's: a difference is reported and makes the exit status 1), then `--runs` runs taking
  turns, medians. Bytes moved are the agents' response bytes (their Prometheus metrics)
  during one run.
Results go to docs/benchmarks/tpch-sf<SF>.json and .md (a table per front end, geomean of
the ratios) and a plot. Times are reported, never asserted; `uptime` is printed with them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".bench"
DOCS = ROOT / "docs" / "benchmarks"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sf", type=float, default=1.0, help="TPC-H scale factor (default 1)")
    p.add_argument("--runs", type=int, default=3, help="timed runs per side (default 3)")
    p.add_argument("--frontends", default="spark,dask", help="spark,dask (default both)")
    p.add_argument("--queries", default="", help="q01,q17,... (default all 22)")
    p.add_argument("--partition-rows", type=int, default=100_000)
    p.add_argument("--dask-variants", default="",
                   help="more read_bpfstore runs, NAME=OPTION:VALUE,... (e.g. "
                        "'no-join-pushdown=join_pushdown:false')")
    p.add_argument("--spark-variants", default="",
                   help="more Spark runs with options on every bpfstore view or spark.* "
                        "settings, NAME=OPTION:VALUE,... (e.g. 'task-per-partition="
                        "rowsPerTask:1', 'joins=spark.bpfstore.pushdown.joins:true')")
    p.add_argument("--out", type=Path, default=None,
                   help="results stem (default docs/benchmarks/tpch-sf<SF>)")
    return p.parse_args(argv)


def uptime() -> str:
    """The load averages (1, 5, 15 minutes)."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class Agents:
    """Two agent processes with metrics endpoints; bytes moved from their counters."""

    def __init__(self, root: Path, stack: contextlib.ExitStack) -> None:
        from bpfstore.connector.demo import free_port, running_agents

        root.mkdir(parents=True, exist_ok=True)
        self.metrics = [f"127.0.0.1:{free_port()}" for _ in range(2)]
        self.addresses = stack.enter_context(running_agents(root, 2, per_agent_args=[
            ["--metrics-listen", m] for m in self.metrics]))

    def bytes_returned(self) -> int:
        total = 0.0
        for address in self.metrics:
            with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as r:
                for line in r.read().decode().splitlines():
                    if line.startswith("bpfstore_agent_bytes_returned_total{") and (
                            'method="Scan"' in line or 'method="Aggregate"' in line):
                        total += float(line.rsplit(" ", 1)[1])
        return int(total)

    def engines(self) -> str:
        """The engines the agents can run (the in-kernel ones are missing on some kernels)."""
        from bpfstore.connector import Client

        with Client(self.addresses) as client:
            info = client.info()[0]["engines"]
        return ", ".join(e["name"] if e["available"] else f"{e['name']} (unavailable)"
                         for e in info)


def ingest_once(addresses: list[str], data: Any) -> None:
    """Write the tables unless the agents already hold them with these row counts."""
    from bpfstore.connector import Client

    with Client(addresses) as client:
        for name, table in data.tables.items():
            try:
                held = sum(p.rows for p in client.describe(name).partitions)
            except Exception:  # noqa: BLE001 - not there yet (or unreadable): write it
                held = -1
            if held != table.num_rows:
                started = time.perf_counter()
                client.write(name, table, partition_rows=data.partition_rows[name],
                             overwrite=True)
                print(f"  wrote {name}: {table.num_rows:,} rows in "
                      f"{time.perf_counter() - started:.1f} s", flush=True)


def timed_pair(ours: Callable[[], Any], theirs: Callable[[], Any], runs: int,
               moved: Callable[[], int]) -> dict[str, Any]:
    """Warm-up of each (answers kept), then `runs` turns; medians and the bytes of one run."""
    before = moved()
    started = time.perf_counter()
    ours_answer = ours()
    first = time.perf_counter() - started
    bytes_moved = moved() - before
    theirs_answer = theirs()
    ours_times, theirs_times = [], []
    for _ in range(runs):
        started = time.perf_counter()
        ours()
        ours_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        theirs()
        theirs_times.append(time.perf_counter() - started)
    return {"answers": (ours_answer, theirs_answer), "first_seconds": first,
            "seconds": statistics.median(ours_times) if runs else first,
            "parquet_seconds": statistics.median(theirs_times) if runs else math.nan,
            "bytes_moved": bytes_moved}


def compared(t: Any, frontend: str, name: str, ours: Callable[[], Any],
             theirs: Callable[[], Any], runs: int, moved: Callable[[], int]) -> dict[str, Any]:
    """One query timed on both sides and its answers compared; a query that fails is
    recorded as a difference (the run goes on with the next one, the exit status is 1)."""
    try:
        r = timed_pair(ours, theirs, runs, moved)
    except Exception as exc:  # noqa: BLE001 - reported, and the bench goes on
        r = {"first_seconds": math.nan, "seconds": math.nan, "parquet_seconds": math.nan,
             "bytes_moved": 0, "answers": None}
        differences = [f"failed: {type(exc).__name__}: {str(exc)[:300]}"]
    else:
        differences = t.differences(name, *r["answers"])
    r.pop("answers")
    result = {"frontend": frontend, "query": name, "differences": differences, **r}
    report(result)
    return result


def bench_spark(t: Any, data: Any, agents: Agents, names: list[str], runs: int,
                variants: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    from spark_support import rows, settings, spark_session

    spark = spark_session()
    joined = ",".join(agents.addresses)

    def bpfstore(options: dict[str, Any]) -> dict[str, Any]:
        options = {k: v for k, v in options.items() if not k.startswith("spark.")}
        return {n: spark.read.format("bpfstore").options(agents=joined, **options).load(n)
                for n in t.TABLES}

    def spark_settings(kind: str) -> dict[str, str]:
        """A variant's spark.* settings (e.g. spark.bpfstore.pushdown.joins:false)."""
        return {k: str(v).lower() if isinstance(v, bool) else str(v)
                for k, v in variants.get(kind, {}).items() if k.startswith("spark.")}

    views = {"bpfstore": bpfstore({}),
             "parquet": {n: spark.read.parquet(str(data.split_dir("parquet") / n))
                         for n in t.TABLES},
             **{variant: bpfstore(options) for variant, options in variants.items()}}

    def run(kind: str, text: str) -> list[tuple]:
        for name, df in views[kind].items():
            df.createOrReplaceTempView(name)
        with settings(spark, **{k.replace(".", "__"): v
                                for k, v in spark_settings(kind).items()}):
            return rows(spark.sql(text))

    out = []
    for name in names:
        text = t.query(name)
        for kind in ["bpfstore", *variants]:
            frontend = "spark" if kind == "bpfstore" else f"spark {kind}"
            out.append(compared(t, frontend, name, lambda kind=kind, text=text: run(kind, text),
                                lambda text=text: run("parquet", text), runs,
                                agents.bytes_returned))
    return out


def bench_dask(t: Any, data: Any, agents: Agents, names: list[str], runs: int,
               variants: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    import dask
    import dask.dataframe as dd
    from dask_support import result_rows, write_parquet_like
    from tpch.dask_queries import QUERIES

    from bpfstore.connector.dask import read_bpfstore

    out_dir = data.split_dir("dask")
    frames = {"bpfstore": {n: read_bpfstore(n, agents.addresses) for n in t.TABLES}}
    for name, table in data.tables.items():
        if not (out_dir / name).exists():
            write_parquet_like(frames["bpfstore"][name], t.pandas_types(table), out_dir / name)
    frames["parquet"] = {n: dd.read_parquet(str(out_dir / n)) for n in t.TABLES}
    for variant, options in variants.items():
        frames[variant] = {n: read_bpfstore(n, agents.addresses, **options) for n in t.TABLES}

    def run(kind: str, query: Callable[[dict[str, Any]], Any]) -> list[tuple]:
        with dask.config.set({"dataframe.shuffle.method": "tasks"}):
            return result_rows(query(frames[kind]).compute(scheduler="threads"))[0]

    out = []
    for name in names:
        for kind in ["bpfstore", *variants]:
            q = QUERIES[name]
            frontend = "dask" if kind == "bpfstore" else f"dask {kind}"
            out.append(compared(t, frontend, name, lambda kind=kind, q=q: run(kind, q),
                                lambda q=q: run("parquet", q), runs, agents.bytes_returned))
    return out


def report(r: dict[str, Any]) -> None:
    ratio = r["seconds"] / r["parquet_seconds"]
    mark = "" if not r["differences"] else "  DIFFERS: " + "; ".join(r["differences"][:2])
    print(f"  {r['frontend']:<24} {r['query']}  {r['seconds']:7.2f} s  parquet "
          f"{r['parquet_seconds']:7.2f} s  {ratio:5.2f}x  moved {r['bytes_moved']:>13,} B  "
          f"load {uptime()}{mark}", flush=True)


def geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else math.nan


def markdown(results: dict[str, Any]) -> str:
    from cluster_report import human_bytes

    lines = [f"# TPC-H SF {results['sf']}: Spark and Dask over bpfstore and over local Parquet",
             "", f"Measured {results['started']} UTC on {results['machine']} (load before "
             f"{results['load_before']}, after {results['load_after']}; agents' engines: "
             f"{results.get('engines', '?')}); command: "
             f"`{results['command']}`. Medians of {results['runs']} runs after a warm-up; "
             "ratio = bpfstore / Parquet (below 1: bpfstore is faster); bytes moved: the "
             "agents' response bytes in one run. ✗ marks an answer that differs.", ""]
    by_frontend: dict[str, list[dict[str, Any]]] = {}
    for r in results["queries"]:
        by_frontend.setdefault(r["frontend"], []).append(r)
    for frontend, rs in by_frontend.items():
        ratios = [r["seconds"] / r["parquet_seconds"] for r in rs]
        timed = [x for x in ratios if math.isfinite(x)] or [math.nan]
        worst = rs[ratios.index(max(timed))]["query"] if math.isfinite(timed[0]) else "-"
        lines += [f"## {frontend}: geomean {geomean(timed):.2f}×, worst "
                  f"{max(timed):.2f}× ({worst})", "",
                  "| query | bpfstore | Parquet | ratio | first run | bytes moved |",
                  "|---|---:|---:|---:|---:|---:|"]
        for r, ratio in zip(rs, ratios, strict=True):
            mark = "✗ " if r["differences"] else ""
            lines.append(f"| {mark}{r['query']} | {r['seconds']:.2f} s | "
                         f"{r['parquet_seconds']:.2f} s | {ratio:.2f}× | "
                         f"{r['first_seconds']:.2f} s | {human_bytes(r['bytes_moved'])} |")
        lines.append("")
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib  # late: the backend is chosen before pyplot loads

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frontends = list(dict.fromkeys(r["frontend"] for r in results["queries"]))
    names = list(dict.fromkeys(r["query"] for r in results["queries"]))
    fig, ax = plt.subplots(figsize=(12, 4.5))
    width = 0.8 / len(frontends)
    for i, f in enumerate(frontends):
        ratio = {r["query"]: r["seconds"] / r["parquet_seconds"]
                 for r in results["queries"] if r["frontend"] == f}
        ax.bar([j + i * width for j in range(len(names))], [ratio.get(n, 0) for n in names],
               width, label=f)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(names))], names)
    ax.set_ylabel("time over bpfstore / over local Parquet")
    ax.set_title(f"TPC-H SF {results['sf']} (below 1: bpfstore faster)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def variants_of(text: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for item in filter(None, text.split(",")):
        name, _, option = item.partition("=")
        key, _, value = option.partition(":")
        out[name] = {key: {"true": True, "false": False}.get(value, value)}
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    root = CACHE / f"tpch-sf{args.sf:g}-{args.partition_rows}"
    os.environ["TPCH_SF"] = f"{args.sf:g}"  # read by the tests' tpch package when imported
    os.environ["TPCH_PARTITION_ROWS"] = str(args.partition_rows)
    for path in (ROOT / "tests", ROOT / "tests" / "e2e", ROOT / "bench"):
        sys.path.insert(0, str(path))
    import tpch as t

    names = [n for n in args.queries.split(",") if n] or t.NAMES
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    load_before = uptime()
    print(f"TPC-H SF {args.sf:g}: data in {root}", flush=True)
    data = t.generate(root, args.sf)
    results: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        agents = Agents(root / "agents", stack)
        ingest_once(agents.addresses, data)
        engines = agents.engines()
        print(f"agents' engines: {engines}", flush=True)
        frontends = args.frontends.split(",")
        if "spark" in frontends:
            results += bench_spark(t, data, agents, names, args.runs,
                                   variants_of(args.spark_variants))
        if "dask" in frontends:
            results += bench_dask(t, data, agents, names, args.runs,
                                  variants_of(args.dask_variants))
    out = args.out or DOCS / f"tpch-sf{args.sf:g}"
    summary = {"sf": args.sf, "runs": args.runs, "started": started,
               "machine": f"{os.cpu_count()} CPUs, {os.uname().release}",
               "engines": engines, "load_before": load_before, "load_after": uptime(),
               "command": "make bench-tpch ARGS=\"" + " ".join(argv or sys.argv[1:]) + "\"",
               "queries": results}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    out.with_suffix(".md").write_text(markdown(summary) + "\n")
    plot(summary, out.with_suffix(".png"))
    print(markdown(summary))
    print(f"written: {out}.json, .md, .png")
    subprocess.run(["uptime"], check=False)
    return 1 if any(r["differences"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
