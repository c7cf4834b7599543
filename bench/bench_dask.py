"""Dask benchmark: TPC-H Q6 and Q1 written as plain Dask code, three ways, in one run.

- bpfstore with pushdown (`read_bpfstore`): the agents return partial aggregates;
- bpfstore without pushdown (`read_bpfstore(..., pushdown=False)`): every column of every
  partition moves to Dask, which does the rest;
- `dask.dataframe.read_parquet` on the same data, locally (the files tpchgen-cli wrote, and a
  copy with float64/timestamp columns, because Dask cannot reduce Arrow decimals).
A LocalCluster with one worker process per agent (agent subprocesses, locality plugin). Times
are the median of --runs after a warm-up; bytes are what reached Dask (gRPC message bytes for
bpfstore, compressed column chunks read for Parquet). Times are reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask.dataframe as dd
import distributed
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from bench_core import CACHE, lineitem_parquet

from bpfstore.connector import Client
from bpfstore.connector.dask import read_bpfstore, stats
from bpfstore.connector.dask.locality import BpfLocalityPlugin
from bpfstore.connector.demo import human_bytes, running_agents


def q6(df: Any) -> Any:
    f = df[(df.l_shipdate >= "1994-01-01") & (df.l_shipdate < "1995-01-01")
           & df.l_discount.between(0.05, 0.07) & (df.l_quantity < 24)]
    return (f.l_extendedprice * f.l_discount).sum()


def q1(df: Any) -> Any:
    f = df[df.l_shipdate <= "1998-09-02"]
    f = f.assign(disc_price=f.l_extendedprice * (1 - f.l_discount),
                 charge=f.l_extendedprice * (1 - f.l_discount) * (1 + f.l_tax))
    return f.groupby(["l_returnflag", "l_linestatus"]).agg({
        "l_quantity": ["sum", "mean"], "l_extendedprice": ["sum", "mean"],
        "disc_price": "sum", "charge": "sum", "l_discount": "mean", "l_orderkey": "count"})


QUERIES: dict[str, tuple[Callable[[Any], Any], list[str]]] = {
    "Q6": (q6, ["l_shipdate", "l_discount", "l_quantity", "l_extendedprice"]),
    "Q1": (q1, ["l_shipdate", "l_extendedprice", "l_discount", "l_tax", "l_returnflag",
                "l_linestatus", "l_quantity", "l_orderkey"]),
}


def float_copy(parquet: Path) -> Path:
    """The same rows with float64 decimals and timestamp[ms] dates (what Dask can reduce)."""
    out = parquet.with_name("lineitem-float.parquet")
    if not out.exists():
        table = pq.read_table(parquet)
        fields = []
        for f in table.schema:
            t = f.type
            if pa.types.is_decimal(t):
                t = pa.float64()  # exact: p <= 15, and Arrow's cast is checked below by answers
            elif pa.types.is_date(t):
                t = pa.timestamp("ms")
            elif pa.types.is_string_view(t):
                t = pa.string()
            fields.append(pa.field(f.name, t))
        cols = []
        for f, c in zip(fields, table.columns, strict=True):
            if pa.types.is_float64(f.type) and pa.types.is_decimal(c.type):
                cols.append(pa.array([None if v is None else float(v) for v in c.to_pylist()],
                                     pa.float64()))  # correctly rounded, unlike Arrow's cast
            else:
                cols.append(c.cast(f.type))
        pq.write_table(pa.Table.from_arrays(cols, schema=pa.schema(fields)), out)
    return out


def parquet_bytes(path: Path, columns: list[str]) -> int:
    meta = pq.ParquetFile(path).metadata
    return sum(meta.row_group(i).column(j).total_compressed_size
               for i in range(meta.num_row_groups) for j in range(meta.num_columns)
               if meta.row_group(i).column(j).path_in_schema in columns)


def timed(dc: distributed.Client, lazy: Any, runs: int) -> tuple[Any, float, dict[str, int]]:
    answer = dc.compute(lazy, sync=True)  # warm-up
    seconds = []
    for _ in range(runs):
        dc.run(stats, True)
        start = time.perf_counter()
        answer = dc.compute(lazy, sync=True)
        seconds.append(time.perf_counter() - start)
    moved: dict[str, int] = {}
    for per_worker in dc.run(stats).values():
        for k, v in per_worker.items():
            moved[k] = moved.get(k, 0) + v
    return answer, statistics.median(seconds), moved


def same(a: Any, b: Any) -> bool:
    if isinstance(a, pd.DataFrame):
        try:
            pd.testing.assert_frame_equal(a.sort_index(), b.sort_index(), rtol=1e-9,
                                          check_dtype=False, check_index_type=False)
            return True
        except AssertionError as exc:
            print(str(exc)[:300])
            return False
    return math.isclose(float(a), float(b), rel_tol=1e-9)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="TPC-H scale factor (1)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs after a warm-up (3)")
    parser.add_argument("--agents", type=int, default=2)
    parser.add_argument("--partition-rows", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    parquet = lineitem_parquet(args.scale)
    floats = float_copy(parquet)
    table = pq.read_table(parquet)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bpfstore-dask-bench-") as tmp, \
            running_agents(Path(tmp), args.agents) as agents:
        Client(agents).write("lineitem", table, partition_rows=args.partition_rows)
        with distributed.LocalCluster(n_workers=args.agents, threads_per_worker=1,
                                      processes=True, dashboard_address=":0") as cluster, \
                distributed.Client(cluster) as dc:
            dc.register_plugin(BpfLocalityPlugin({a: i for i, a in enumerate(agents)}))
            frames = {
                "bpfstore pushdown": read_bpfstore("lineitem", agents),
                "bpfstore full read": read_bpfstore("lineitem", agents, pushdown=False),
                "read_parquet (float copy)": dd.read_parquet(str(floats)),
                "read_parquet (original)": dd.read_parquet(str(parquet)),
            }
            for qname, (query, columns) in QUERIES.items():
                for variant, ddf in frames.items():
                    key = f"{qname} {variant}"
                    try:
                        answer, seconds, moved = timed(dc, query(ddf), args.runs)
                    except Exception as exc:  # report what Dask itself cannot run
                        results[key] = {"error": f"{type(exc).__name__}: {str(exc)[:80]}"}
                        print(f"{key:40s} {results[key]['error']}")
                        continue
                    if variant.startswith("read_parquet"):
                        path = floats if "float" in variant else parquet
                        moved = {"bytes_moved": parquet_bytes(path, columns)}
                    results[key] = {"seconds": seconds, **moved, "answer": answer}
                    print(f"{key:40s} {seconds * 1000:9.1f} ms  "
                          f"{human_bytes(moved.get('bytes_moved', 0)):>10s}  "
                          f"agent calls {moved.get('aggregate_calls', 0)} aggregate / "
                          f"{moved.get('scan_calls', 0)} scan")
                base = results[f"{qname} bpfstore pushdown"].get("answer")
                for variant in frames:
                    other = results[f"{qname} {variant}"].get("answer")
                    if base is not None and other is not None and not same(base, other):
                        print(f"  {qname}: {variant} differs from the pushdown answer")
    out = CACHE / "dask-results.json"
    out.write_text(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "answer"}
                               for k, v in results.items()}, indent=2))
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
