"""Spark benchmark (`make bench`): TPC-H Q6 and Q1 through `spark.read.format("bpfstore")`.

One run each (after one warm-up), `local[2]`, two agent subprocesses, lineitem at scale
factor 1 by default (cached under .bench/):
- pushdown: the extension rewrites the query into partial aggregates computed on the agents;
- pushdown disabled (`spark.bpfstore.pushdown=false`): the full read through the connector
  (the Python source's pushed filters still apply, but every column travels);
- Spark reading the same data as a local Parquet file.
Bytes moved are what the agents sent to Spark (from the readers' reports). Answers must agree.
Prints a table and writes .bench/spark-results.json. Times are reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from bench_core import CACHE, console, lineitem_parquet
from rich.table import Table

from bpfstore.connector import Client
from bpfstore.connector.demo import Q1, Q6, human_bytes, running_agents


def spark_session(report: Path) -> Any:
    os.environ["BPFSTORE_SPARK_REPORT"] = str(report)  # the Python workers append reports
    return local_spark("bpfstore-bench")


def local_spark(app: str) -> Any:
    """Spark `local[2]` with the extension, workers on this interpreter, quiet logs."""
    os.environ["PYSPARK_PYTHON"] = os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession

    from bpfstore.connector.spark import configure

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # local[2]: no host-name lookup
    os.environ.setdefault("SPARK_LOCAL_HOSTNAME", "localhost")
    builder = (SparkSession.builder.master("local[2]").appName(app)
               .config("spark.sql.shuffle.partitions", "2")
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.driver.memory", "4g"))
    spark = configure(builder).getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def run(spark: Any, sql: str, report: Path) -> dict[str, Any]:
    spark.sql(sql).collect()  # warm-up
    report.write_text("")
    start = time.perf_counter()
    rows = [tuple(r) for r in spark.sql(sql).collect()]
    seconds = time.perf_counter() - start
    lines = [json.loads(line) for line in report.read_text().splitlines() if line]
    engines: dict[str, int] = {}
    for line in lines:
        for engine, n in line["engines"].items():
            engines[engine] = engines.get(engine, 0) + n
    return {"seconds": seconds, "rows": rows,
            "bytes_moved": sum(line["bytes_moved"] for line in lines),
            "modes": sorted({line["mode"] for line in lines}), "engines": engines}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--partition-rows", type=int, default=1_000_000)
    args, _ = parser.parse_known_args(argv)  # `make bench ARGS=...` also feeds bench_core
    parquet = lineitem_parquet(args.scale)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp, running_agents(Path(tmp), 2) as agents:
        report = Path(tmp) / "report.jsonl"
        with console.status("loading lineitem into the agents"), Client(agents) as client:
            client.write("lineitem", pq.read_table(parquet).to_batches(),
                         partition_rows=args.partition_rows)
        with console.status("starting Spark"):
            spark = spark_session(report)
        ours = spark.read.format("bpfstore").option("agents", ",".join(agents)).load("lineitem")
        ours.createOrReplaceTempView("lineitem")
        spark.read.parquet(str(parquet)).createOrReplaceTempView("lineitem_parquet")
        for name, sql in (("Q6", Q6), ("Q1", Q1)):
            with console.status(f"Spark {name}"):
                pushed = run(spark, sql, report)
                spark.conf.set("spark.bpfstore.pushdown", "false")
                full = run(spark, sql, report)
                spark.conf.set("spark.bpfstore.pushdown", "true")
                local = run(spark, sql.replace("lineitem", "lineitem_parquet"), report)
            local["bytes_moved"] = parquet.stat().st_size  # the file Spark reads (all of it)
            same = pushed["rows"] == full["rows"] == local["rows"]
            results[name] = {"pushdown": pushed, "full_read": full, "parquet": local,
                             "same_answers": same}
        spark.stop()
    print_table(results, args.scale)
    out = {"scale": args.scale, "results": {
        q: {k: ({kk: vv for kk, vv in v.items() if kk != "rows"} if isinstance(v, dict) else v)
            for k, v in r.items()} for q, r in results.items()}}
    (CACHE / "spark-results.json").write_text(json.dumps(out, indent=2, default=str))
    return 0 if all(r["same_answers"] for r in results.values()) else 1


def print_table(results: dict[str, dict[str, Any]], scale: float) -> None:
    table = Table(title=f"Spark local[2], TPC-H scale factor {scale:g}, one run after a warm-up")
    for c in ("query", "path", "time", "bytes to Spark", "agent RPCs", "engines", "answers"):
        table.add_column(c)
    labels = {"pushdown": "bpfstore, pushdown", "full_read": "bpfstore, pushdown disabled",
              "parquet": "Spark on local Parquet"}
    for name, r in results.items():
        for key, label in labels.items():
            x = r[key]
            table.add_row(name, label, f"{x['seconds'] * 1e3:.0f} ms",
                          human_bytes(x["bytes_moved"]),
                          ", ".join(x["modes"]) or "-",
                          ", ".join(f"{e}×{n}" for e, n in x["engines"].items()) or "-",
                          "equal" if r["same_answers"] else "DIFFERENT")
    console.print(table)


if __name__ == "__main__":
    sys.exit(main())
