"""The main job on an embedded default: `python -m bpfstore.connector.demo` (`make demo`).

Starts two storage agents on a temporary data dir, generates TPC-H lineitem with tpchgen-cli,
ingests it, runs TPC-H Q6 and Q1 through pushdown, prints the answers, the engine used per
partition and bytes moved vs bytes scanned, and checks the answers against DuckDB on the same
Parquet file. Exits non-zero when an answer differs or pushdown moved 1% or more of the bytes.
"""

from __future__ import annotations

import argparse
import math
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb  # the oracle
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from .cli import human_bytes
from .client import Client, QueryReport
from .sql import run_sql

# Standard TPC-H text (Q1's `interval '90' day (3)` written as the SQL engines accept it).
Q6 = """
select
    sum(l_extendedprice * l_discount) as revenue
from
    lineitem
where
    l_shipdate >= date '1994-01-01'
    and l_shipdate < date '1994-01-01' + interval '1' year
    and l_discount between 0.06 - 0.01 and 0.06 + 0.01
    and l_quantity < 24
"""

Q1 = """
select
    l_returnflag,
    l_linestatus,
    sum(l_quantity) as sum_qty,
    sum(l_extendedprice) as sum_base_price,
    sum(l_extendedprice * (1 - l_discount)) as sum_disc_price,
    sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)) as sum_charge,
    avg(l_quantity) as avg_qty,
    avg(l_extendedprice) as avg_price,
    avg(l_discount) as avg_disc,
    count(*) as count_order
from
    lineitem
where
    l_shipdate <= date '1998-12-01' - interval '90' day
group by
    l_returnflag,
    l_linestatus
order by
    l_returnflag,
    l_linestatus
"""

QUERIES = {"Q6": Q6, "Q1": Q1}
MAX_MOVED_FRACTION = 0.01  # pushdown must move under 1% of the bytes it scans

console = Console()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _agent_ready(address: str) -> bool:
    # info() reports an unreachable agent in-band, as {"agent": ..., "error": ...}
    with Client(agents=[address], timeout=5) as client:
        return all("error" not in info for info in client.info())


@contextmanager
def running_agents(
    root: Path, count: int, env: Mapping[str, str] | None = None, timeout: float = 60.0,
    prefix: Sequence[str] = (), args: Sequence[str] = (),
    per_agent_args: Sequence[Sequence[str]] = (),
) -> Iterator[list[str]]:
    """Start `count` agents as subprocesses (own data dir and port each); stop them on exit.
    `prefix` runs them under another command (e.g. setpriv as another user); `args` are more
    command-line options for each, `per_agent_args[i]` for agent i only."""
    procs: list[subprocess.Popen[bytes]] = []
    logs = []
    addresses: list[str] = []
    try:
        for i in range(count):
            address = f"127.0.0.1:{free_port()}"
            while address in addresses:  # the kernel may hand out a just-freed port again
                address = f"127.0.0.1:{free_port()}"
            data_dir = root / f"agent{i}"
            log = open(root / f"agent{i}.log", "wb")  # noqa: SIM115 - lives as long as the agent
            logs.append(log)
            cmd = [*prefix, sys.executable, "-m", "bpfstore.node_agent.main"]
            cmd += ["--data-dir", str(data_dir), "--listen", address]
            cmd += [*args, *(per_agent_args[i] if i < len(per_agent_args) else ())]
            procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env))
            addresses.append(address)
        deadline = time.monotonic() + timeout
        for i, (proc, address) in enumerate(zip(procs, addresses, strict=True)):
            while not _agent_ready(address):
                exited = proc.poll() is not None
                if exited or time.monotonic() > deadline:
                    why = (
                        f"exited ({proc.returncode})" if exited else f"not ready in {timeout:.0f}s"
                    )
                    log_text = (root / f"agent{i}.log").read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"agent {address} {why}; its log:\n{log_text}")
                time.sleep(0.2)
        yield addresses
    finally:
        for proc in procs:
            proc.terminate()  # SIGTERM: the agent drains and exits
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()


def generate_lineitem(scale: float, out_dir: Path) -> Path:
    """TPC-H lineitem as one Parquet file, written by tpchgen-cli (installed next to Python)."""
    exe = Path(sys.executable).parent / "tpchgen-cli"
    found = str(exe) if exe.exists() else shutil.which("tpchgen-cli")
    if found is None:
        raise RuntimeError("tpchgen-cli not found: run `make install`")
    cmd = [found, "parquet", "--scale-factor", str(scale), "--tables", "lineitem"]
    subprocess.run([*cmd, "--output-dir", str(out_dir), "--quiet"], check=True)
    return out_dir / "lineitem.parquet"


def duckdb_answer(parquet: Path, query: str) -> pa.Table:
    con = duckdb.connect()
    path = str(parquet).replace("'", "''")
    con.execute(f"CREATE VIEW lineitem AS SELECT * FROM read_parquet('{path}')")
    return con.sql(query).to_arrow_table()


def _same(ours: Any, oracle: Any) -> bool:
    """Exact for sums, counts and keys (decimals by value, so the scale may differ). DuckDB's
    averages are doubles: a double must agree within 1e-9 relative, a decimal average (Spark's
    typing, from Client.aggregate) must be the double rounded to the decimal's scale."""
    if ours is None or oracle is None:
        return ours is None and oracle is None
    if isinstance(oracle, float) and isinstance(ours, Decimal):
        exponent = ours.as_tuple().exponent
        assert isinstance(exponent, int)  # a finite decimal
        return abs(float(ours) - oracle) <= 0.5 * 10.0**exponent + 1e-9 * abs(oracle)
    if isinstance(ours, float) or isinstance(oracle, float):
        return math.isclose(float(ours), float(oracle), rel_tol=1e-9)
    return bool(ours == oracle)


def differences(ours: pa.Table, oracle: pa.Table) -> list[str]:
    """What differs between our answer and the oracle's: column names, row count, cells."""
    if ours.column_names != oracle.column_names:
        return [f"columns {ours.column_names} != DuckDB's {oracle.column_names}"]
    if ours.num_rows != oracle.num_rows:
        return [f"{ours.num_rows} rows != DuckDB's {oracle.num_rows}"]
    found = []
    for i, (a, b) in enumerate(zip(ours.to_pylist(), oracle.to_pylist(), strict=True)):
        found += [f"row {i} {k}: {a[k]!r} != DuckDB {b[k]!r}" for k in a if not _same(a[k], b[k])]
    return found


def answer_table(table: pa.Table) -> Table:
    """A result as a table. A wide one (Q1) is turned sideways to fit a terminal, one line per
    measure and one column per group (the leading text columns are the group keys), with
    decimals shown to 2 places; the comparison with DuckDB is exact either way."""
    out = Table(box=None, header_style="bold underline")
    rows = table.to_pylist()
    names = table.column_names
    if len(names) <= 4:
        for name in names:
            out.add_column(name, justify="right")
        for row in rows:
            out.add_row(*(str(v) for v in row.values()))
        return out
    keys = next((i for i, t in enumerate(table.schema.types) if not _is_text(t)), len(names))
    out.add_column("")
    for row in rows:
        out.add_column(" ".join(str(row[k]) for k in names[:keys]), justify="right")
    for name in names[keys:]:
        out.add_row(name, *(_short(row[name]) for row in rows))
    return out


def _is_text(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        t = t.value_type
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t))


def _short(v: Any) -> str:
    if isinstance(v, Decimal):
        return f"{v:.2f}"
    return f"{v:.6f}" if isinstance(v, float) else str(v)


def report_table(report: QueryReport) -> Table:
    out = Table(box=None, header_style="bold underline")
    for name in ("agent", "partition", "engine"):
        out.add_column(name)
    for name in ("rows", "matched", "scanned", "time"):
        out.add_column(name, justify="right")
    for p in report.partitions:
        out.add_row(
            p.agent,
            p.partition,
            "pruned" if p.pruned else p.engine,
            f"{p.rows_scanned:,}",
            f"{p.rows_matched:,}",
            human_bytes(p.bytes_scanned),
            f"{p.time_ns / 1e6:.1f} ms",
        )
    return out


def run_query(client: Client, name: str, parquet: Path) -> list[str]:
    """Run one query through pushdown, print answer and report; return the problems found."""
    console.rule(f"TPC-H {name}")
    start = time.perf_counter()
    answer = run_sql(client, QUERIES[name])
    seconds = time.perf_counter() - start
    ours, report = answer.table, answer.report
    console.print(f"[bold]answer[/] (pushed down to the agents, {seconds * 1000:.0f} ms)")
    console.print(answer_table(ours))
    console.print("\n[bold]per partition[/]")
    console.print(report_table(report))

    problems = []
    scanned, moved = report.bytes_scanned, report.bytes_moved
    fraction = moved / scanned if scanned else math.inf
    console.print(
        f"\nbytes scanned on the agents [bold]{human_bytes(scanned)}[/], "
        f"moved to the client [bold]{human_bytes(moved)}[/] ([bold]{fraction:.4%}[/])"
    )
    if fraction >= MAX_MOVED_FRACTION:
        problems.append(f"{name}: moved {moved} bytes for {scanned} scanned (≥ 1%)")

    diff = differences(ours, duckdb_answer(parquet, QUERIES[name]))
    verdict = "[green]yes[/]" if not diff else "[red]no[/]"
    console.print(f"matches DuckDB: {verdict}")
    for d in diff:
        console.print(f"  [red]{d}[/]")
    return problems + [f"{name}: {d}" for d in diff]


def ingest_and_query(client: Client, table: pa.Table, parquet: Path, partitions: int) -> list[str]:
    for info in client.info():
        if "error" in info:
            raise RuntimeError(f"agent {info['agent']}: {info['error']}")
        engines = ", ".join(
            e["name"] if e["available"] else f"{e['name']} (no: {e['reason']})"
            for e in info["engines"]
        )
        console.print(f"agent {info['agent']} ready, engines: {engines}")

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("ingesting", total=table.num_rows)
        client.write(
            "lineitem",
            table,
            partition_rows=math.ceil(table.num_rows / partitions),
            progress=lambda rows: progress.advance(task, rows),
        )
    parts = client.describe("lineitem").partitions
    per_agent = Counter(agent for p in parts for agent in p.replicas)
    spread = ", ".join(f"{n} on {agent}" for agent, n in sorted(per_agent.items()))
    console.print(f"ingested {table.num_rows:,} rows as {len(parts)} partitions: {spread}")
    return [problem for name in QUERIES for problem in run_query(client, name, parquet)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bpfstore-demo", description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.1, help="TPC-H scale factor (0.1)")
    parser.add_argument("--agents", type=int, default=2, help="agents to start (2)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions to ingest (4)")
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="bpfstore-demo-"))
    try:
        with console.status(f"generating TPC-H lineitem, scale factor {args.scale}"):
            parquet = generate_lineitem(args.scale, root / "tpch")
            table = pq.read_table(parquet)
        size = human_bytes(parquet.stat().st_size)
        console.print(f"generated lineitem: {table.num_rows:,} rows, {size} of Parquet")
        console.print(f"starting {args.agents} agents on {root}")
        with running_agents(root, args.agents) as agents, Client(agents=agents) as client:
            problems = ingest_and_query(client, table, parquet, args.partitions)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    console.rule()
    if problems:
        console.print("[bold red]demo failed:[/]")
        for problem in problems:
            console.print(f"  {problem}")
        return 1
    console.print(
        "[bold green]Q6 and Q1 answered by the agents, equal to DuckDB, "
        "with under 1% of the scanned bytes moved to the client.[/]"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
