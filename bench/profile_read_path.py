"""Profile the read path (issue 14, deliverable 1): where a scan's and a warm Q6's time goes.

`make profile` (or `.venv/bin/python bench/profile_read_path.py --scale 0.1`), as root (py-spy
attaches to processes with ptrace). One run:
- micro-costs of the top frames alone (a Scan chunk's copies, a DuckDB connection);
- TPC-H lineitem at `--scale` (cached under .bench/ by bench_core), written into one real
  agent process (arrow engine, `--no-bpf`, 1 Arrow CPU thread) in partitions of
  `--partition-rows` (default 100,000 x scale: 61 partitions at any scale, as SF1 at 100,000);
- times after a warm-up (median of 3): `Client.scan_table` of 4 columns and of all columns beside
  `pyarrow.parquet.read_table` of the same columns; warm Q6 through `run_sql` (median of
  `--runs`) with the agent-reported time, beside DuckDB single-threaded on a native table;
- then each workload (and Q6 once more as `Client.run(Query.aggregate(...))`, the query path
  without the SQL layer) in a loop for `--seconds` while py-spy samples the client (this
  process; every thread, idle included, so shares are of wall time) and the agent (the thread
  holding the GIL: the agent is bound by it, and py-spy's idle test misses gRPC's waits); the
  collapsed stacks go to .bench/profile/<workload>-<process>.txt and the top frames (self and
  inclusive share of the samples) are printed.
Times are reported, never asserted. Machine load (`uptime`) is printed next to every figure.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from bench_core import CACHE, QUERIES, lineitem_parquet, timed  # noqa: E402

from agent_process import BIN, AgentProcess  # noqa: E402
from bpfstore.connector import Client  # noqa: E402
from bpfstore.connector.demo import Q6  # noqa: E402
from bpfstore.connector.query import Query  # noqa: E402
from bpfstore.connector.sql import run_sql  # noqa: E402
from bpfstore.v1 import agent_pb2 as pb  # noqa: E402

SCAN4 = ["l_shipdate", "l_discount", "l_quantity", "l_extendedprice"]  # what Q6 reads
OUT = CACHE / "profile"
CALLS = re.compile(r"Client\._(scan|aggregate)_call |Client\._each_agent\.<locals>\.one ")
PYTHON = re.compile(r":\d+\)$")  # "func (file.py:line)"; native frames name a library instead
OURS = re.compile(r"\((connector|node_agent|contract|proto|bpf)/")  # bpfstore's own frames


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (its /proc stat, in clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def record(pids: dict[str, int], name: str, work: Callable[[], object], seconds: float,
           args: argparse.Namespace) -> tuple[dict[str, Path], float]:
    """Run `work` in a loop for `seconds` while one py-spy per process samples it: the client
    every thread, idle or not (wall time per thread), the agent the thread holding the GIL.
    --nonblocking (but with --native): pausing the process at every sample doubled the client's
    time per call."""
    OUT.mkdir(parents=True, exist_ok=True)
    spies, paths = [], {}
    for who, pid in pids.items():
        paths[who] = OUT / f"{name}-{who}.txt"
        paths[who].unlink(missing_ok=True)  # a failed py-spy leaves no stale file to read
        cmd = [str(BIN / "py-spy"), "record", "--pid", str(pid), "--rate", str(args.rate),
               "--format", "raw", "--function", "-o", str(paths[who])]
        cmd += ["--native"] if args.native else ["--nonblocking"]  # native needs pausing
        cmd += ["--idle", "--threads"] if who == "client" else ["--gil"]
        spies.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    time.sleep(1.0)  # py-spy attaches
    cpu_before = {who: cpu_seconds(pid) for who, pid in pids.items()}
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        work()
        calls += 1
    elapsed = time.perf_counter() - start
    cpu = {who: (cpu_seconds(pid) - cpu_before[who]) / calls for who, pid in pids.items()}
    for spy in spies:
        spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        _, err = spy.communicate(timeout=60)
        if spy.returncode not in (0, -signal.SIGINT, 130):
            print(f"py-spy failed ({spy.returncode}): {err.decode()[-500:]}")
    print(f"\n== {name}: {calls} calls in {elapsed:.1f} s ({elapsed / calls * 1e3:.1f} ms/call), "
          f"load {load()}")
    print("   CPU per call (user+sys, all threads): " +
          ", ".join(f"{who} {s * 1e3:.1f} ms" for who, s in cpu.items()))
    return paths, elapsed


def stacks(path: Path) -> list[tuple[list[str], int]]:
    """A py-spy raw file: (frames, root first; samples) per line."""
    out = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            out.append((stack.split(";"), int(count)))
    return out


def top_frames(title: str, samples: list[tuple[list[str], int]], limit: int) -> None:
    """Self shares (any frame) and inclusive shares (bpfstore's frames) of `samples`."""
    own: Counter[str] = Counter()
    by_python: Counter[str] = Counter()  # with --native: C time charged to its Python caller
    inclusive: Counter[str] = Counter()
    total = sum(n for _, n in samples)
    for frames, n in samples:
        own[frames[-1]] += n
        by_python[next((f for f in reversed(frames) if PYTHON.search(f)), frames[-1])] += n
        for frame in set(frames):
            if OURS.search(frame):
                inclusive[frame] += n
    print(f"-- {title}: {total} samples")
    tables = [("self", own), ("inclusive, bpfstore frames", inclusive)]
    if by_python != own:
        tables.insert(1, ("self, native frames charged to their nearest Python frame", by_python))
    for kind, counter in tables:
        print(f"   top {kind}:")
        for frame, n in counter.most_common(limit):
            print(f"   {n / max(total, 1):6.1%}  {frame[:150]}")


# Where a sample's time goes: the innermost frame matching a pattern names its part.
AGENT_PARTS = [
    ("describe (DescribeDataset: stats -> protobuf)", r"AgentService\.DescribeDataset "),
    ("engine (arrow: filter + aggregate)", r"ArrowEngine\.aggregate_one "),
    ("scan batches (slice, cast: scan_batch)", r"ArrowEngine\.scan |scan_batch "),
    ("stats checks (may_match, answer_from_stats)",
     r"may_match |answer_from_stats |stats_partials "),
    ("read partition (storage)", r"Storage\.read |Executor\._partition "),
    ("merge partials", r"merge_partials "),
    ("plan: decode, limits, bind (_plan)", r"AgentService\._plan "),
    ("Arrow IPC encode (ipc_bytes, to_pybytes)", r"ipc_bytes "),
    ("reports (_done, metrics, _report)", r"_done |_report \(node_agent"),
    ("executor loop, engine dispatch", r"Executor\.(scan|aggregate)|Engines\."),
    ("protobuf message build (ScanChunk/AggregateResponse)", r"AgentService\.(Scan|Aggregate) "),
    ("metrics: response.ByteSize() (a full encode)", r"RequestObserver\._(streaming|unary)\."),
    ("interceptors: auth, admission, logging", r"Gatekeeper|RequestObserver|_log \(node_agent"),
    ("gRPC server: serialize, send, poll", r"grpc/"),
]
CLIENT_PARTS = [
    ("describe (RPC + merge_descriptions: stats from protobuf)", r"Client\.describe "),
    ("SQL: DuckDB (schema check on an empty table; final SELECT)", r"_duckdb "),
    ("SQL: parse, translate (sqlglot)", r"parse_query |translate |sqlglot/"),
    ("bind the plan", r"bind_plan "),
    ("assemble: batches -> table / merge partials", r"_rows |merge_partials |finish "),
    ("fan-out: waiting for the agent's calls", r"Client\._fan_out "),
]


def breakdown(title: str, samples: list[tuple[list[str], int]],
              parts: list[tuple[str, str]]) -> None:
    patterns = [(label, re.compile(p)) for label, p in parts]
    shares: Counter[str] = Counter()
    for frames, n in samples:
        label = next((label for f in reversed(frames) for label, p in patterns if p.search(f)),
                     "other")
        shares[label] += n
    total = max(sum(shares.values()), 1)
    print(f"-- {title}, by part:")
    for label, n in shares.most_common():
        print(f"   {n / total:6.1%}  {label}")


def _in_work(frames: list[str]) -> bool:
    """A calling-thread sample inside `work()`, not in record's own wait for py-spy to attach."""
    at = next((i for i, f in enumerate(frames) if f.startswith("record (")), None)
    return at is not None and any(PYTHON.search(f) for f in frames[at + 1:])


def report(paths: dict[str, Path], elapsed: float, args: argparse.Namespace) -> None:
    """The client's calling thread and its RPC threads (wall time: idle samples kept), and the
    agent's GIL holder (share of all sampling instants in the header)."""
    if not all(p.exists() for p in paths.values()):
        return
    client = stacks(paths["client"])
    caller = [s for s in client if _in_work(s[0])]
    rpc = [s for s in client if s not in caller and any(CALLS.match(f) for f in s[0])]
    top_frames(f"{paths['client'].name}, the calling thread (wall time)", caller, args.top)
    breakdown(f"{paths['client'].name}, the calling thread (wall time)", caller, CLIENT_PARTS)
    top_frames(f"{paths['client'].name}, the client's RPC threads while in a call (wall time)",
               rpc, args.top)
    agent = stacks(paths["agent"])
    held = sum(n for _, n in agent) / (elapsed * args.rate)
    top_frames(f"{paths['agent'].name}, the thread holding the GIL (held {held:.0%} of the time)",
               agent, args.top)
    breakdown(f"{paths['agent'].name}, the GIL holder", agent, AGENT_PARTS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.1, help="TPC-H scale factor (0.1)")
    parser.add_argument("--partition-rows", type=int, default=0,
                        help="rows per partition (0: 100,000 x scale, 61 partitions)")
    parser.add_argument("--runs", type=int, default=5, help="timed Q6 runs after a warm-up")
    parser.add_argument("--seconds", type=float, default=8.0, help="profiled loop per workload")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--native", action="store_true", help="py-spy --native (C frames)")
    parser.add_argument("--workloads", default="",
                        help="profile only these, e.g. scan-all,q6 (scan4, scan-all, q6, q6-run)")
    parser.add_argument("--top", type=int, default=18, help="frames per table")
    args = parser.parse_args(argv)
    if not (BIN / "py-spy").exists():
        parser.error(f"py-spy not found in {BIN}: `make install` installs it (the bench extra)")
    partition_rows = args.partition_rows or max(1, round(100_000 * args.scale))

    parquet = lineitem_parquet(args.scale)
    table = pq.read_table(parquet)
    print(f"lineitem SF{args.scale:g}: {table.num_rows:,} rows, {table.nbytes / 1e6:.0f} MB of "
          f"Arrow, {partition_rows:,} rows per partition; load {load()}")

    micro(parquet)
    os.environ["OMP_NUM_THREADS"] = "1"  # the agent's Arrow pool: DuckDB's budget
    with tempfile.TemporaryDirectory(prefix="bpfstore-profile-") as tmp:
        agent = AgentProcess(Path(tmp) / "agent")
        try:
            assert agent.proc is not None
            with Client(agents=[agent.address]) as client:
                client.write("lineitem", table, partition_rows=partition_rows)
                parts = len(client.describe("lineitem").partitions)
                print(f"ingested: {parts} partitions")
                workloads = measure(client, parquet, args.runs)
                for name, work in workloads.items():
                    if args.workloads and name not in args.workloads.split(","):
                        continue
                    paths, elapsed = record({"client": os.getpid(), "agent": agent.proc.pid},
                                            name, work, args.seconds, args)
                    report(paths, elapsed, args)
        finally:
            agent.stop()
    return 0


def micro(parquet: Path) -> None:
    """What the top frames cost alone, in this process: one 10,000-row batch of all columns
    through the copies a Scan chunk makes, and the DuckDB connection `run_sql` opens twice."""
    batch = pq.read_table(parquet).slice(0, 10_000)
    buf = ipc_buffer(batch)
    data = buf.to_pybytes()
    chunk = pb.ScanChunk(arrow_ipc=data)
    steps: dict[str, Callable[[], object]] = {
        "IPC buffer -> bytes (to_pybytes)": buf.to_pybytes,
        "pb.ScanChunk(arrow_ipc=bytes)": lambda: pb.ScanChunk(arrow_ipc=data),
        "chunk.ByteSize()": chunk.ByteSize,
        "len(chunk.arrow_ipc) (upb copies the field)": lambda: len(chunk.arrow_ipc),
        "chunk.SerializeToString()": chunk.SerializeToString,
        "duckdb.connect() + close()": lambda: duckdb.connect().close(),
    }
    print(f"micro-costs, one {len(data) / 1e6:.2f} MB IPC batch (best of 3), load {load()}:")
    for label, fn in steps.items():
        number = 5 if "duckdb" in label else 50
        best = min(timeit.repeat(fn, number=number, repeat=3)) / number
        print(f"   {best * 1e6:9.1f} us  {label}")


def ipc_buffer(table: pa.Table) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write(table)
    return sink.getvalue()


def measure(client: Client, parquet: Path, runs: int) -> dict[str, Callable[[], object]]:
    """Print the timings; return the workloads to profile."""
    all_columns = pq.read_schema(parquet).names
    workloads: dict[str, Callable[[], object]] = {}
    for label, columns in (("scan4", SCAN4), ("scan-all", all_columns)):
        def ours(columns: list[str] = columns) -> object:
            return client.scan_table("lineitem", columns=columns)

        def theirs(columns: list[str] = columns) -> object:
            return pq.read_table(parquet, columns=columns)

        got, ours_runs = timed(ours, 3)
        _, theirs_runs = timed(theirs, 3)
        ours_s, theirs_s = statistics.median(ours_runs), statistics.median(theirs_runs)
        mb = got.nbytes / 1e6  # type: ignore[attr-defined]
        print(f"{label} ({len(columns)} columns, {mb:.0f} MB of Arrow), median of 3: bpfstore "
              f"{ours_s:.3f} s ({mb / ours_s:.0f} MB/s), pyarrow.parquet.read_table "
              f"{theirs_s:.3f} s ({mb / theirs_s:.0f} MB/s), ratio {ours_s / theirs_s:.2f}x; "
              f"load {load()}")
        workloads[label] = ours

    agent_s: list[float] = []

    def q6() -> object:
        result = run_sql(client, Q6)
        agent_s.append(sum(p.time_ns for p in result.report.partitions) / 1e9)
        return result

    answer, q6_s = timed(q6, runs)
    con = duckdb.connect()
    con.execute("SET threads = 1")
    con.execute(f"CREATE TABLE lineitem AS SELECT * FROM read_parquet('{parquet}')")
    duck, duck_s = timed(lambda: con.sql(Q6).fetchall(), runs)
    ours_value = answer.table.column(0)[0].as_py()  # type: ignore[attr-defined]
    client_ms, agent_ms = statistics.median(q6_s) * 1e3, statistics.median(agent_s[1:]) * 1e3
    print(f"warm Q6 over {len(answer.report.partitions)} partitions, median of "  # type: ignore
          f"{runs}: client {client_ms:.1f} ms, agent (sum of partition times) {agent_ms:.1f} ms "
          f"(client/agent {client_ms / agent_ms:.2f}x), DuckDB 1 thread "
          f"{statistics.median(duck_s) * 1e3:.1f} ms; same answer: {ours_value == duck[0][0]}; "
          f"load {load()}")
    workloads["q6"] = q6
    # the same Q6 as one Client.run(Query.aggregate(...)): the query path without the SQL layer
    q = QUERIES["Q6"]
    workloads["q6-run"] = lambda: client.run(Query.aggregate(
        "lineitem", q["aggregates"], q["where"], names=q["names"]))
    return workloads


if __name__ == "__main__":
    sys.exit(main())
