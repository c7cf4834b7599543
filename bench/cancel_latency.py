"""How soon a cancelled or expired query gives its worker back (issue 19, deliverable 2).

A real agent process with one worker; a slow query (row-by-row arithmetic, seconds of work in
one partition) holds the worker, a small query waits for it. The slow query is cancelled by
its client (or runs into its client deadline); the figure is the time from that moment until
the small query's answer arrives (its own work is a few ms of it). Prints each trial and the
worst of N:

    .venv/bin/python bench/cancel_latency.py --trials 20 [--hold SECONDS] [--rows N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from agent_process import AgentProcess  # noqa: E402
from bpfstore.connector import Client, col, count_star, sum_  # noqa: E402
from bpfstore.contract import wire  # noqa: E402
from bpfstore.contract.plan import Arith, ArithOp, Overflow, Plan  # noqa: E402
from bpfstore.v1 import agent_pb2 as pb  # noqa: E402
from bpfstore.v1 import agent_pb2_grpc  # noqa: E402


def trial(stub: agent_pb2_grpc.AgentStub, slow: pb.AggregateRequest,
          small: pb.AggregateRequest, mode: str, hold: float) -> float:
    """Seconds from the slow query's cancel (or deadline) to the small query's answer."""
    if mode == "deadline":
        end = time.monotonic() + hold
        future = stub.Aggregate.future(slow, timeout=hold)
    else:
        future = stub.Aggregate.future(slow, timeout=60)
    time.sleep(0.1)  # the slow query has the worker
    answered = threading.Event()
    done: list[float] = []

    def waiter() -> None:
        stub.Aggregate(small, timeout=30)
        done.append(time.monotonic())
        answered.set()

    threading.Thread(target=waiter, daemon=True).start()
    if mode == "cancel":
        time.sleep(hold - 0.1)
        end = time.monotonic()
        future.cancel()
    answered.wait(30)
    assert done, "the small query never answered"
    with_error = future.exception(timeout=30) if not future.cancelled() else None
    assert mode == "cancel" or with_error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    return done[0] - end


def main() -> None:
    args = argparse.ArgumentParser()
    args.add_argument("--trials", type=int, default=10)
    args.add_argument("--hold", type=float, default=0.5, help="seconds the slow query runs")
    args.add_argument("--rows", type=int, default=300_000)
    opts = args.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "agent.toml"
        config.write_text("workers = 1\n")
        proc = AgentProcess(Path(tmp) / "data", "--config", str(config))
        try:
            x = np.arange(opts.rows, dtype=np.int64)
            x[0] = 2**40  # x * x overflows: overflow mode NULL evaluates row by row
            with Client([proc.address], timeout=60) as c:
                c.write("slow", pa.table({"x": x}))
                c.write("small", pa.table({"x": pa.array(range(1000), pa.int64())}))
            square = Arith(ArithOp.MUL, col("x"), col("x"), overflow=Overflow.NULL)
            slow = pb.AggregateRequest(plan=wire.plan_to_proto(
                Plan("slow", aggregates=(sum_(square),), engine="arrow")))
            small = pb.AggregateRequest(plan=wire.plan_to_proto(
                Plan("small", filter=col("x") > 10, aggregates=(count_star(),),
                     engine="arrow")))
            with grpc.insecure_channel(proc.address) as channel:
                stub = agent_pb2_grpc.AgentStub(channel)
                stub.Aggregate(small, timeout=30)  # warm
                for mode in ("cancel", "deadline"):
                    times = [trial(stub, slow, small, mode, opts.hold)
                             for _ in range(opts.trials)]
                    print(f"{mode}: worst {max(times) * 1000:.1f} ms, median "
                          f"{statistics.median(times) * 1000:.1f} ms over {len(times)} trials "
                          f"({', '.join(f'{t * 1000:.0f}' for t in times)})", flush=True)
        finally:
            proc.stop()


if __name__ == "__main__":
    main()
