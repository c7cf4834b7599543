"""Cluster benchmark (`make bench-cluster`): the data-movement wall, over rate-limited links.

N storage hosts (network namespaces, default 3), each joined to the client by a veth pair
shaped with `tbf` (1 Gbit/s by default), one `bpfstore-agent` per host, TPC-H lineitem
spread over them. In one run, interleaved (round after round; medians over rounds): TPC-H Q6,
Q1 and a selectivity sweep (`sum(l_extendedprice) where l_partkey <= K` at 0.1/1/10/50/100%)
through Spark (`local[2]`) and Dask (LocalCluster, 2 worker processes), each in the modes

  bpf-hot, bpf-cold, arrow   aggregate pushdown with that agent engine
  filter                     filter + projection pushdown only (Spark
                             spark.bpfstore.pushdown.aggregates=false, Dask aggregates=False)
  full                       full read through the connector (no pushdown at all)
  parquet                    the same data read by Spark / Dask from local Parquet (no network)

Records wall time, the bytes that crossed the links (interface counters of the veths), and the
agents' CPU time (/proc/<pid>/stat). A mode that fails is recorded with its error, and the run
goes on. Writes docs/benchmarks/sf<SF>-<link>.{json,md} and PNG plots. Needs root.
Times are reported, never asserted.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import math
import os
import platform
import re
import signal
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from bench_core import lineitem_parquet as generate  # noqa: E402
from cluster_net import Cluster, cleanup_leftovers, netns_available  # noqa: E402
from cluster_report import write  # noqa: E402

from bpfstore.connector import Client  # noqa: E402

MODES = ["bpf-hot", "bpf-cold", "arrow", "filter", "full", "parquet"]
ENGINE_MODES = {"bpf-hot", "bpf-cold", "arrow", "bpf", "auto"}  # aggregate pushdown
SELECTIVITIES = [0.001, 0.01, 0.1, 0.5, 1.0]
FRONTENDS = ["spark", "dask"]

Q6 = """select sum(l_extendedprice * l_discount) as revenue from lineitem
where l_shipdate >= date '1994-01-01' and l_shipdate < date '1995-01-01'
  and l_discount between 0.05 and 0.07 and l_quantity < 24"""
Q1 = """select l_returnflag, l_linestatus, sum(l_quantity) as sum_qty,
  sum(l_extendedprice) as sum_base_price, sum(l_extendedprice * (1 - l_discount)) as sum_disc_price,
  sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)) as sum_charge,
  avg(l_quantity) as avg_qty, avg(l_extendedprice) as avg_price, avg(l_discount) as avg_disc,
  count(*) as count_order
from lineitem where l_shipdate <= date '1998-09-02'
group by l_returnflag, l_linestatus order by l_returnflag, l_linestatus"""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- data --------------------------------------------------------------------------------------

def lineitem_parquet(sf: float) -> Path:
    return generate(sf)  # tpchgen-cli, cached under .bench/


def float_copy(parquet: Path) -> Path:
    """lineitem with float64 decimals and timestamp[ms] dates: what Dask can reduce (it cannot
    sum Arrow decimals). unscaled / 10**scale is one correctly rounded IEEE division of exact
    operands (|unscaled| < 2**53), so the floats equal `read_bpfstore`'s."""
    out = parquet.with_name("lineitem-float.parquet")
    if out.exists():
        return out
    tmp = out.with_suffix(".tmp")
    src = pq.ParquetFile(parquet)
    writer = None
    for i in range(src.num_row_groups):
        t = src.read_row_group(i)
        cols, fields = [], []
        for f, c in zip(t.schema, t.columns, strict=True):
            c = c.combine_chunks()
            if pa.types.is_decimal(f.type):
                c, f = decimal_to_float(c), pa.field(f.name, pa.float64())
            elif pa.types.is_date(f.type):
                c, f = c.cast(pa.timestamp("ms")), pa.field(f.name, pa.timestamp("ms"))
            elif pa.types.is_string_view(f.type) or pa.types.is_large_string(f.type):
                c, f = c.cast(pa.string()), pa.field(f.name, pa.string())
            cols.append(c)
            fields.append(f)
        t = pa.Table.from_arrays(cols, schema=pa.schema(fields))
        if writer is None:
            writer = pq.ParquetWriter(tmp, t.schema)
        writer.write_table(t)
    assert writer is not None
    writer.close()
    tmp.rename(out)
    return out


def decimal_to_float(arr: pa.Array) -> pa.Array:
    words = 2 if arr.type.bit_width == 128 else 1  # little-endian: the low word is the value
    raw = np.frombuffer(arr.buffers()[1], dtype=np.int64)
    unscaled = raw[arr.offset * words:(arr.offset + len(arr)) * words][::words]
    values = unscaled.astype(np.float64) / float(10 ** arr.type.scale)
    mask = arr.is_null().to_numpy(zero_copy_only=False) if arr.null_count else None
    return pa.array(values, pa.float64(), mask=mask)


def sweep_thresholds(parquet: Path) -> dict[float, int]:
    """l_partkey thresholds K with `l_partkey <= K` selecting each fraction of the rows
    (l_partkey is uniform and uncorrelated with the storage order, so no partition is pruned)."""
    keys = np.sort(pq.read_table(parquet, columns=["l_partkey"]).column(0).to_numpy())
    out = {}
    for s in SELECTIVITIES:
        out[s] = int(keys[-1]) if s >= 1 else int(keys[max(0, int(len(keys) * s) - 1)])
    return out


def ingest(agents: list[str], parquet: Path, partition_rows: int) -> int:
    """Load lineitem unless the agents already hold exactly this data (kept between runs)."""
    rows = pq.ParquetFile(parquet).metadata.num_rows
    with Client(agents) as client:
        try:
            desc = client.describe("lineitem")
            held = sum(p.rows for p in desc.partitions)
            if held == rows and len({a for p in desc.partitions for a in p.agents}) == len(agents):
                log(f"agents already hold lineitem ({rows:,} rows in {len(desc.partitions)} "
                    "partitions)")
                return len(desc.partitions)
            client.drop("lineitem")
        except Exception:  # noqa: BLE001 - not there (or stale): load it
            pass
        log(f"ingesting {rows:,} rows over {len(agents)} agents")
        batches = pq.ParquetFile(parquet).iter_batches(batch_size=256 * 1024)
        client.write("lineitem", batches, partition_rows=partition_rows)
        return len(client.describe("lineitem").partitions)


# -- the two front ends ------------------------------------------------------------------------

class SparkFront:
    name = "spark"

    def __init__(self, agents: list[str], parquet: Path, thresholds: dict[float, int],
                 modes: list[str]) -> None:
        from bench_spark import local_spark  # late: each front end loads only when benchmarked

        self.spark = local_spark("bpfstore-bench-cluster")
        self.thresholds = thresholds
        reader = self.spark.read.format("bpfstore").option("agents", ",".join(agents))
        for mode in modes:
            view = self.view(mode)
            if mode == "parquet":
                self.spark.read.parquet(str(parquet)).createOrReplaceTempView(view)
            elif mode in ENGINE_MODES:
                reader.option("engine", mode).load("lineitem").createOrReplaceTempView(view)
            else:
                reader.option("engine", "auto").load("lineitem").createOrReplaceTempView(view)

    @staticmethod
    def view(mode: str) -> str:
        return "li_" + re.sub(r"\W", "_", mode)

    def sql(self, query: str) -> str:
        if query == "Q6":
            return Q6
        if query == "Q1":
            return Q1
        k = self.thresholds[float(query.split("@")[1])]
        return f"select sum(l_extendedprice) as s from lineitem where l_partkey <= {k}"

    def prepare(self, query: str, mode: str) -> Callable[[], Any]:
        conf = self.spark.conf
        conf.set("spark.bpfstore.pushdown", "false" if mode == "full" else "true")
        conf.set("spark.bpfstore.pushdown.aggregates", "false" if mode == "filter" else "true")
        text = re.sub(r"\blineitem\b", self.view(mode), self.sql(query))

        def run() -> Any:
            return [tuple(r) for r in self.spark.sql(text).collect()]

        return run

    def close(self) -> None:
        self.spark.stop()


class DaskFront:
    name = "dask"

    def __init__(self, agents: list[str], parquet: Path, thresholds: dict[float, int],
                 modes: list[str]) -> None:
        import dask.dataframe as dd  # late: each front end loads only when benchmarked
        import distributed

        from bpfstore.connector.dask import read_bpfstore

        self.cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1,
                                                processes=True, dashboard_address=":0")
        self.client = distributed.Client(self.cluster)
        self.thresholds = thresholds
        self.frames: dict[str, Any] = {}
        for mode in modes:
            if mode == "parquet":
                self.frames[mode] = dd.read_parquet(str(float_copy(parquet)))
            elif mode == "full":
                self.frames[mode] = read_bpfstore("lineitem", agents, pushdown=False)
            elif mode == "filter":
                self.frames[mode] = read_bpfstore("lineitem", agents, aggregates=False)
            else:
                self.frames[mode] = read_bpfstore("lineitem", agents, engine=mode)

    def lazy(self, query: str, df: Any) -> Any:
        if query == "Q6":
            f = df[(df.l_shipdate >= "1994-01-01") & (df.l_shipdate < "1995-01-01")
                   & df.l_discount.between(0.05, 0.07) & (df.l_quantity < 24)]
            return (f.l_extendedprice * f.l_discount).sum()
        if query == "Q1":
            f = df[df.l_shipdate <= "1998-09-02"]
            f = f.assign(disc_price=f.l_extendedprice * (1 - f.l_discount),
                         charge=f.l_extendedprice * (1 - f.l_discount) * (1 + f.l_tax))
            return f.groupby(["l_returnflag", "l_linestatus"]).agg({
                "l_quantity": ["sum", "mean"], "l_extendedprice": ["sum", "mean"],
                "disc_price": "sum", "charge": "sum", "l_discount": "mean",
                "l_orderkey": "count"})
        k = self.thresholds[float(query.split("@")[1])]
        return df[df.l_partkey <= k].l_extendedprice.sum()

    def prepare(self, query: str, mode: str) -> Callable[[], Any]:
        lazy = self.lazy(query, self.frames[mode])

        def run() -> Any:
            return self.client.compute(lazy, sync=True)

        return run

    def close(self) -> None:
        self.client.close()
        self.cluster.close()


# -- answers -----------------------------------------------------------------------------------

def normalize(answer: Any) -> list[tuple[Any, ...]]:
    """Rows of plain floats and strings, sorted, from a Spark row list, a pandas frame or a
    scalar."""
    if isinstance(answer, pd.DataFrame):
        frame = answer.sort_index()
        rows = [tuple(k if isinstance(k, tuple) else (k,)) + tuple(v)
                for k, v in zip(frame.index, frame.itertuples(index=False), strict=True)]
    elif isinstance(answer, list):
        rows = answer
    else:
        rows = [(answer,)]
    out = []
    for r in rows:
        out.append(tuple(x if isinstance(x, str) or x is None else float(x) for x in r))
    return sorted(out, key=lambda r: tuple(str(x) for x in r))


def agree(a: list[tuple[Any, ...]], b: list[tuple[Any, ...]], rel: float = 1e-9) -> bool:
    if len(a) != len(b):
        return False
    for ra, rb in zip(a, b, strict=True):
        if len(ra) != len(rb):
            return False
        for x, y in zip(ra, rb, strict=True):
            if isinstance(x, float) and isinstance(y, float):
                if not math.isclose(x, y, rel_tol=rel, abs_tol=1e-9):
                    return False
            elif x != y:
                return False
    return True


# -- the run -----------------------------------------------------------------------------------

def one(cluster: Cluster, run: Callable[[], Any]) -> dict[str, Any]:
    rx0, tx0 = cluster.link_bytes()
    cpu0 = cluster.agent_cpu()
    start = time.perf_counter()
    answer = run()
    seconds = time.perf_counter() - start
    rx1, tx1 = cluster.link_bytes()
    cpu1 = cluster.agent_cpu()
    return {"seconds": seconds, "rx": rx1 - rx0, "tx": tx1 - tx0, "cpu": cpu1 - cpu0,
            "answer": answer}


def error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    lines = [line for line in text.splitlines() if line.strip()]
    return " ".join(lines[:3])[:400]


def measure(cluster: Cluster, fronts: list[Any], queries: list[str], modes: list[str],
            runs: int, warmup: bool) -> dict[str, Any]:
    """Interleaved: every round runs every (query, front end, mode) once."""
    cells: dict[tuple[str, str, str], dict[str, Any]] = {}
    for f in fronts:
        for q in queries:
            for m in modes:
                cells[(f.name, q, m)] = {"samples": [], "error": None, "answer": None}
    for rnd in range(-1 if warmup else 0, runs):
        log(f"round {rnd + 1}/{runs}" if rnd >= 0 else "warm-up round")
        for q in queries:
            for f in fronts:
                # The mode order turns each round: the first query of a front end after the
                # other's block pays extra (Spark re-spawns Python workers idle for 60 s).
                turn = max(rnd, 0) % len(modes)
                for m in modes[turn:] + modes[:turn]:
                    cell = cells[(f.name, q, m)]
                    if cell["error"] is not None:
                        continue
                    if rnd < 0 and m not in ENGINE_MODES and q != queries[0]:
                        # Warm-up: processes, JIT and caches warm on the first query; the
                        # pushdown modes warm on every query (the bpf-hot arena holds the
                        # columns a query reads). Rows-moving modes need no more.
                        continue
                    try:
                        r = one(cluster, f.prepare(q, m))
                    except KeyboardInterrupt:
                        raise
                    except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
                        cell["error"] = error_text(exc)
                        log(f"  {f.name:5s} {q:9s} {m:8s} FAILED: {cell['error'][:160]}")
                        continue
                    cell["answer"] = normalize(r.pop("answer"))
                    if rnd >= 0:
                        cell["samples"].append(r)
                    log(f"  {f.name:5s} {q:9s} {m:8s} {r['seconds'] * 1e3:9.1f} ms "
                        f"{r['rx'] + r['tx']:>13,} B  agent cpu {r['cpu']:.2f} s")
    out: dict[str, Any] = {}
    for (fname, q, m), cell in cells.items():
        s = cell["samples"]
        entry: dict[str, Any] = {"error": cell["error"], "runs": len(s)}
        if s:
            entry.update({
                "seconds": statistics.median(x["seconds"] for x in s),
                "seconds_all": [round(x["seconds"], 4) for x in s],
                "link_bytes": int(statistics.median(x["rx"] + x["tx"] for x in s)),
                "rx_bytes": int(statistics.median(x["rx"] for x in s)),
                "tx_bytes": int(statistics.median(x["tx"] for x in s)),
                "agent_cpu": statistics.median(x["cpu"] for x in s),
            })
        entry["answer"] = cell["answer"]
        out.setdefault(fname, {}).setdefault(q, {})[m] = entry
    for fname, per_q in out.items():
        for per_mode in per_q.values():
            ok = [(m, e["answer"]) for m, e in per_mode.items() if e["answer"] is not None]
            base = ok[0][1] if ok else None
            # Spark's decimal averages are rounded to 6 places; Dask's are doubles.
            tol = 1e-6 if fname == "spark" else 1e-9
            differ = [m for m, a in ok if not agree(a, base, tol)] if base else []
            for m, e in per_mode.items():
                e["agrees"] = None if e["answer"] is None else m not in differ
    return out


def machine_facts() -> dict[str, Any]:
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    os_name = ""
    if Path("/etc/os-release").exists():
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    return {"cpus": os.cpu_count(), "cpu": cpu, "memory_gib": round(mem, 1),
            "kernel": platform.release(), "os": os_name, "python": platform.python_version()}


def install_signal_handlers() -> None:
    def stop(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sf", type=float, default=1.0, help="TPC-H scale factor (1)")
    parser.add_argument("--hosts", type=int, default=3, help="storage hosts (3)")
    parser.add_argument("--link", default="1gbit",
                        help="link rate(s), comma-separated, each run in turn (1gbit)")
    parser.add_argument("--runs", type=int, default=3, help="timed rounds after a warm-up (3)")
    parser.add_argument("--no-warmup", action="store_true")
    parser.add_argument("--queries", default="q6,q1,sweep", help="q6,q1,sweep")
    parser.add_argument("--frontends", default="spark,dask")
    parser.add_argument("--modes", default=",".join(MODES),
                        help=f"comma-separated, of {','.join(MODES)} (also bpf, auto)")
    parser.add_argument("--partition-rows", type=int, default=1_000_000)
    parser.add_argument("--bpf-cache-mb", type=int, default=0,
                        help="agents' arena cache (default: enough for the data)")
    parser.add_argument("--data-dir", type=Path, default=REPO / ".bench" / "cluster",
                        help="agents' data, kept between runs (.bench/cluster)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks",
                        help="where results, tables and plots go (docs/benchmarks)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--netns-prefix", default="bpfsb",
                        help="names of the namespaces and links (bpfsb0, bpfsb0h, ...)")
    parser.add_argument("--subnet", default="10.231", help="host i is <subnet>.<i>.2")
    args = parser.parse_args(argv)

    why = netns_available()
    if why:
        print(f"bench-cluster: {why}", file=sys.stderr)
        return 2
    queries: list[str] = []
    for q in args.queries.lower().split(","):
        queries += [f"sel@{s:g}" for s in SELECTIVITIES] if q == "sweep" else [q.upper()]
    modes = [m for m in args.modes.split(",") if m]
    fronts_wanted = [f for f in args.frontends.split(",") if f]
    links = [x for x in args.link.split(",") if x]
    exe = Path(sys.executable).parent / "bpfstore-agent"

    install_signal_handlers()
    left = cleanup_leftovers(args.netns_prefix)
    if left:
        log(f"removed leftovers of an earlier run: {', '.join(left)}")
    cluster = Cluster(args.hosts, args.netns_prefix, args.subnet)
    atexit.register(cluster.close)
    fronts: list[Any] = []
    results: dict[str, Any] = {}
    try:
        parquet = lineitem_parquet(args.sf)
        rows = pq.ParquetFile(parquet).metadata.num_rows
        thresholds = sweep_thresholds(parquet) if any(q.startswith("sel@") for q in queries) \
            else {}
        if "parquet" in modes and "dask" in fronts_wanted:
            float_copy(parquet)
        cluster.create()
        data_root = args.data_dir / f"sf{args.sf:g}-h{args.hosts}"
        cache_mb = args.bpf_cache_mb or max(1024, int(rows * 80 / args.hosts / 1e6 * 1.3))
        agents = cluster.start_agents(exe, data_root, ["--bpf-cache-mb", str(cache_mb)])
        log(f"agents: {', '.join(agents)}")
        partitions = ingest(agents, parquet, args.partition_rows)
        with Client(agents) as c:
            info = c.info()
        lacking = {e["name"]: e["reason"] for a in info for e in a["engines"]
                   if not e["available"]}
        for mode in [m for m in modes if m in lacking]:  # e.g. bpf-hot where arenas are refused
            log(f"mode {mode} left out: {lacking[mode]}")
            modes.remove(mode)
        for name in fronts_wanted:
            log(f"starting {name}")
            fronts.append({"spark": SparkFront, "dask": DaskFront}[name](
                agents, parquet, thresholds, modes))
        for n, link in enumerate(links):
            cluster.shape(link)
            log(f"links shaped: {link} ({cluster.qdiscs()[0]})")
            warm = not args.no_warmup and n == 0  # later links: already warm
            per = measure(cluster, fronts, queries, modes, args.runs, warm)
            result = {
                "sf": args.sf, "hosts": args.hosts, "link": link, "rows": rows,
                "partitions": partitions, "runs": args.runs, "queries": queries,
                "warmup": not args.no_warmup, "load_average": os.getloadavg(),
                "modes": modes, "thresholds": {str(k): v for k, v in thresholds.items()},
                "machine": machine_facts(), "agents": info, "date": time.strftime("%Y-%m-%d"),
                "command": "bench/bench_cluster.py " + " ".join(argv if argv is not None
                                                                 else sys.argv[1:]),
                "results": per,
            }
            results[link] = result
            write_outputs(result, args)
            cluster.unshape()
    except KeyboardInterrupt as exc:
        log(f"interrupted ({exc}); tearing down")
        return 130
    except Exception:
        traceback.print_exc()
        return 1
    finally:
        for f in fronts:
            with contextlib.suppress(Exception):  # teardown goes on
                f.close()
        cluster.close()
        log("torn down")
    return 0


def write_outputs(result: dict[str, Any], args: argparse.Namespace) -> None:
    stem = f"sf{result['sf']:g}-{result['link']}"
    args.out.mkdir(parents=True, exist_ok=True)
    slim = json.loads(json.dumps(result, default=str))
    (args.out / f"{stem}.json").write_text(json.dumps(slim, indent=1))
    if args.json:
        args.json.write_text(json.dumps(slim, indent=1))
    try:
        paths = write(slim, args.out, stem, plots=not args.no_plots)
    except Exception:  # noqa: BLE001 - the JSON is saved: re-render with cluster_report.py
        traceback.print_exc()
        return
    log("written " + ", ".join(str(p.relative_to(REPO) if p.is_relative_to(REPO) else p)
                              for p in paths))


if __name__ == "__main__":
    sys.exit(main())
