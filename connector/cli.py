"""`bpfstore`: ingest files, list and describe datasets, run SQL with pushdown, inspect agents.

Tables and reports go to stdout, progress to stderr; `sql --json` prints exactly one JSON object
on stdout. Expected failures print `bpfstore: error: <message>` and exit 1 (usage errors: 2).
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import json
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from bpfstore.contract.errors import BpfstoreError, DatasetNotFound
from bpfstore.contract.plan import EngineName

DEFAULT_AGENTS = "127.0.0.1:7340"


# ---------------------------------------------------------------- pure formatting


def json_value(v: Any) -> Any:
    """A JSON-ready value that loses nothing: decimals as exact strings, dates as ISO strings,
    non-finite floats as "NaN" / "Infinity" / "-Infinity"."""
    match v:
        case None | bool() | int() | str():
            return v
        case float() if math.isnan(v):
            return "NaN"
        case float() if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
        case float():
            return v
        case decimal.Decimal():
            return format(v, "f")  # never exponent notation: Decimal("0E-10") -> "0.0000000000"
        case dt.date() | dt.time():  # datetime is a date
            return v.isoformat()
        case dt.timedelta():
            return v.total_seconds()
        case bytes():
            return v.hex()
        case Mapping():
            return {str(k): json_value(x) for k, x in v.items()}
        case list() | tuple():
            return [json_value(x) for x in v]
    return str(v)


def result_json(table: pa.Table, report: Mapping[str, Any]) -> str:
    """`{"columns": [...], "rows": [[...]], "report": {...}}` as one line of strict JSON."""
    rows = [[json_value(v) for v in row] for row in zip(
        *(c.to_pylist() for c in table.columns), strict=True)] if table.num_columns else []
    doc = {"columns": table.column_names, "rows": rows, "report": json_value(dict(report))}
    return json.dumps(doc, allow_nan=False)


def cell(v: Any) -> str:
    """How a value reads in a table: exact decimals, ISO dates, NULL."""
    if v is None:
        return "NULL"
    shown = json_value(v)
    return shown if isinstance(shown, str) else json.dumps(shown)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def movement_summary(scanned: int, moved: int, seconds: float) -> str:
    """One line: bytes scanned on the agents vs bytes moved to the client, and the ratio."""
    ratio = f"{moved / scanned:.4%} of scanned" if scanned else "nothing scanned"
    return (f"scanned on agents {human_bytes(scanned)}, moved to client {human_bytes(moved)} "
            f"({ratio}), {seconds:.3f} s")


# ---------------------------------------------------------------- commands


def _connect(args: argparse.Namespace) -> Any:
    from .client import Client  # imported late: `bpfstore --help` needs no gRPC (nor these)
    from .transport import resolve_transport

    transport = resolve_transport(ca=args.tls_ca, cert=args.tls_cert, key=args.tls_key,
                                  token=args.token, tls=args.tls or None,
                                  server_name=args.tls_server_name,
                                  compression=args.compression)
    return Client(args.agents, transport=transport)


def _stdout() -> Console:
    # Not a terminal: as wide as the data, so numbers are never cut or wrapped.
    return Console() if sys.stdout.isatty() else Console(width=100_000)


def _table(title: str | None, headers: Sequence[str], rows: Sequence[Sequence[Any]],
           right: Sequence[str] = ()) -> Table:
    out = Table(title=title, title_justify="left")
    for h in headers:
        out.add_column(h, justify="right" if h in right else "left", overflow="fold")
    for row in rows:
        out.add_row(*(Text(v if isinstance(v, str) else cell(v)) for v in row))  # no markup
    return out


def cmd_ingest(args: argparse.Namespace) -> int:
    from .ingest import read_source  # late: only ingest reads CSV and Parquet

    _, total, batches = read_source(args.source)
    started = time.perf_counter()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("rows"), TimeElapsedColumn())
    with _connect(args) as client, Progress(
            *columns, console=Console(stderr=True), transient=True) as progress:
        if not (args.overwrite or args.append) and _exists(client, args.dataset):
            raise BpfstoreError(f"dataset {args.dataset!r} exists: add --overwrite to replace "
                                "it or --append to add to it")
        task = progress.add_task(f"ingesting {args.dataset}", total=total)
        summary = client.write(args.dataset, batches, partition_rows=args.partition_rows,
                               replicas=args.replicas, overwrite=args.overwrite,
                               progress=lambda rows: progress.advance(task, rows))
    seconds = time.perf_counter() - started
    print(f"ingested {summary.rows:,} rows into {args.dataset!r}: {summary.partitions} "
          f"partition(s) on {len(summary.agents)} agent(s), replicas {args.replicas}, "
          f"in {seconds:.1f} s")
    return 0


def _exists(client: Any, dataset: str) -> bool:
    try:
        client.describe(dataset)
    except DatasetNotFound:
        return False
    return True


def cmd_datasets(args: argparse.Namespace) -> int:
    with _connect(args) as client:
        found = client.datasets()
    rows = [(d.name, d.version, f"{d.rows:,}", len(d.partitions), human_bytes(d.bytes),
             ", ".join(d.agents)) for d in found]
    headers = ("name", "version", "rows", "partitions", "bytes", "agents")
    _stdout().print(_table(None, headers, rows, right=headers[1:5]))
    return 0


def merged_stats(partitions: Sequence[Any], column: str) -> tuple[Any, Any, int]:
    """Dataset-wide min, max and null count of a column from its per-partition stats."""
    stats = [p.stats.get(column, {}) for p in partitions]
    lows = [s["min"] for s in stats if s.get("min") is not None]
    highs = [s["max"] for s in stats if s.get("max") is not None]
    return (min(lows) if lows else None, max(highs) if highs else None,
            sum(int(s.get("null_count", 0)) for s in stats))


def cmd_describe(args: argparse.Namespace) -> int:
    with _connect(args) as client:
        d = client.describe(args.dataset)
    out = _stdout()
    out.print(f"dataset {d.name!r}, version {d.version}: {d.rows:,} rows, "
              f"{len(d.partitions)} partitions, {human_bytes(d.bytes)}", markup=False)
    columns = [(f.name, str(f.type), *merged_stats(d.partitions, f.name)) for f in d.schema]
    out.print(_table("columns", ("column", "type", "min", "max", "nulls"), columns,
                     right=("min", "max", "nulls")))
    parts = [(p.id, f"{p.rows:,}", human_bytes(p.bytes), ", ".join(p.replicas)) for p in
             d.partitions]
    out.print(_table("partitions", ("partition", "rows", "bytes", "replicas"), parts,
                     right=("rows", "bytes")))
    if args.partition_stats:
        stats = [(p.id, c, s.get("min"), s.get("max"), s.get("null_count", 0))
                 for p in d.partitions for c, s in p.stats.items()]
        out.print(_table("per-partition stats", ("partition", "column", "min", "max", "nulls"),
                         stats, right=("min", "max", "nulls")))
    return 0


def cmd_sql(args: argparse.Namespace) -> int:
    from .sql import run_sql, sql_path  # late: sqlglot and DuckDB load only for sql

    with _connect(args) as client:
        started = time.perf_counter()
        answer = run_sql(client, args.query, engine=EngineName.parse(args.engine))
        seconds = time.perf_counter() - started
    result, report = answer.table, answer.report
    path, reason = sql_path(result)
    doc = {**report.to_dict(), "path": path, "reason": reason, "total_seconds": round(seconds, 6)}
    if args.json:
        sys.stdout.write(result_json(result, doc) + "\n")
        return 0
    out = _stdout()
    rows = zip(*(c.to_pylist() for c in result.columns), strict=True)
    out.print(_table(None, result.column_names, list(rows)))
    out.print(f"{result.num_rows} row(s); path: {path}" + (f" ({reason})" if reason else ""),
              markup=False)
    parts = [(p.agent, p.partition, "pruned" if p.pruned else p.engine, p.path,
              f"{p.rows_scanned:,}", f"{p.rows_matched:,}", human_bytes(p.bytes_scanned),
              f"{p.time_ns / 1e6:.1f} ms") for p in report.partitions]
    headers = ("agent", "partition", "engine", "path", "rows scanned", "rows matched",
               "bytes scanned", "time")
    out.print(_table(f"{report.mode or 'query'} per partition", headers, parts,
                     right=headers[4:]))
    out.print(movement_summary(report.bytes_scanned, report.bytes_moved, seconds))
    return 0


def cmd_drop(args: argparse.Namespace) -> int:
    with _connect(args) as client:
        if not client.drop(args.dataset):
            raise BpfstoreError(f"no dataset named {args.dataset!r}")
    print(f"dropped {args.dataset!r}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    with _connect(args) as client:
        agents = client.info()
    out, failed = _stdout(), 0
    for a in agents:
        if "error" in a:
            failed += 1
            out.print(f"agent {a['agent']}: unreachable: {a['error']}", markup=False)
            continue
        out.print(f"agent {a['agent']}: bpfstore {a.get('version', '?')}, "
                  f"node {a.get('node', '?')}, kernel {a.get('kernel', '?')}", markup=False)
        rows = [(e["name"], "yes" if e["available"] else "no", e.get("reason", ""))
                for e in a.get("engines", [])]
        out.print(_table(None, ("engine", "available", "reason"), rows))
    return 1 if failed else 0


# ---------------------------------------------------------------- arguments


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    default = os.environ.get("BPFSTORE_AGENTS") or DEFAULT_AGENTS
    common.add_argument("--agents", default=default, metavar="HOST:PORT,...",
                        help=f"agents (default: $BPFSTORE_AGENTS, else {DEFAULT_AGENTS})")
    tls = common.add_argument_group("TLS and tokens (each defaults to its environment variable)")
    tls.add_argument("--tls-ca", metavar="PEM", help="CA that signed the agents' certificates; "
                     "turns TLS on ($BPFSTORE_TLS_CA)")
    tls.add_argument("--tls", action="store_true",
                     help="TLS with the system's CAs ($BPFSTORE_TLS=1)")
    tls.add_argument("--tls-cert", metavar="PEM",
                     help="client certificate for mutual TLS ($BPFSTORE_TLS_CERT)")
    tls.add_argument("--tls-key", metavar="PEM", help="its private key ($BPFSTORE_TLS_KEY)")
    tls.add_argument("--tls-server-name", metavar="NAME", help="the name in the agents' "
                     "certificates, when not their address ($BPFSTORE_TLS_SERVER_NAME)")
    tls.add_argument("--token", help="bearer token of your tenant; prefer $BPFSTORE_TOKEN, "
                     "which other users cannot see in the process list")
    tls.add_argument("--compression", choices=("auto", "none", "lz4", "zstd"),
                     help="of scanned rows on the wire; auto (default): lz4 from agents not "
                     "on loopback ($BPFSTORE_COMPRESSION)")
    parser = argparse.ArgumentParser(prog="bpfstore", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("ingest", parents=[common], help="load Parquet / CSV / Arrow files")
    p.add_argument("source", help="a file or a folder of files")
    p.add_argument("--dataset", required=True, help="name of the dataset to write")
    p.add_argument("--partition-rows", type=_positive, default=1_000_000, metavar="N")
    p.add_argument("--replicas", type=_positive, default=1, metavar="R")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    mode.add_argument("--append", action="store_true", help="add to an existing dataset")
    p.set_defaults(run=cmd_ingest)

    sub.add_parser("datasets", parents=[common], help="list datasets").set_defaults(
        run=cmd_datasets)

    p = sub.add_parser("describe", parents=[common], help="schema, partitions and stats")
    p.add_argument("dataset")
    p.add_argument("--partition-stats", action="store_true", help="stats of every partition")
    p.set_defaults(run=cmd_describe)

    p = sub.add_parser("sql", parents=[common], help="run a SELECT with pushdown")
    p.add_argument("query")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--engine", choices=[e.value for e in EngineName], default="auto")
    p.set_defaults(run=cmd_sql)

    p = sub.add_parser("drop", parents=[common], help="remove a dataset from every agent")
    p.add_argument("dataset")
    p.set_defaults(run=cmd_drop)

    sub.add_parser("info", parents=[common], help="agents' versions and engines").set_defaults(
        run=cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # exits 2 on usage errors
    try:
        return int(args.run(args))
    except BpfstoreError as exc:
        print(f"bpfstore: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bpfstore: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
