"""Real `bpfstore-agent` processes on loopback, for tests where processes matter (signals,
crashes, restarts): start, SIGKILL, SIGTERM, restart on the same data directory."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bpfstore.connector.demo import free_port
from bpfstore.v1 import agent_pb2 as pb

BIN = Path(sys.executable).parent
__all__ = ["BIN", "AgentProcess", "committed_files", "free_port", "held_write", "wait_for"]


class AgentProcess:
    """One agent process. Its log goes to `<data_dir>.log` (a file, so a busy agent never
    blocks on a full pipe); the port stays the same across restarts."""

    def __init__(self, data_dir: Path, *extra: str, metrics: bool = False) -> None:
        self.data_dir = Path(data_dir)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.metrics_port = free_port() if metrics else 0
        self.extra = list(extra)
        self.log_path = self.data_dir.with_name(self.data_dir.name + ".log")
        self.proc: subprocess.Popen[str] | None = None
        self.start()

    def start(self) -> None:
        args = [str(BIN / "bpfstore-agent"), "--data-dir", str(self.data_dir),
                "--listen", self.address, "--no-bpf", *self.extra]
        if self.metrics_port:
            args += ["--metrics-listen", f"127.0.0.1:{self.metrics_port}"]
        log = open(self.log_path, "a")  # noqa: SIM115 - owned by the process from here on
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True)
        log.close()
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        assert "listening on" in line, f"agent did not start: {line!r}\n{self.log()}"
        self.wait_serving()

    def wait_serving(self, timeout: float = 30) -> None:
        with grpc.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + timeout
            while True:
                try:
                    status = stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status
                    if status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    if time.monotonic() > deadline:
                        raise
                time.sleep(0.05)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no drain, no clean-up — a crash."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def terminate(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def restart(self) -> None:
        if self.alive():
            self.kill()
        self.start()

    def stop(self) -> None:
        if self.alive():
            self.kill()
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def metric(self, name: str) -> float:
        """One sample of the agent's Prometheus endpoint, e.g. 'bpfstore_agent_requests_in_flight'
        or 'bpfstore_agent_requests_total{method="Aggregate"}' (0 when absent)."""
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                      timeout=10).read().decode()
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        return 0.0

    def data_files(self) -> set[str]:
        """Every file under the data directory's datasets/ (relative paths)."""
        root = self.data_dir / "datasets"
        return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def committed_files(agent: AgentProcess) -> set[str]:
    """The files the catalogs name: `<dataset>/_dataset.json` and each partition."""
    out = set()
    for catalog in (agent.data_dir / "datasets").glob("*/_dataset.json"):
        out.add(f"{catalog.parent.name}/_dataset.json")
        for p in json.loads(catalog.read_text())["partitions"]:
            out.add(f"{catalog.parent.name}/{p['id']}.arrow")
    return out


def wait_for(predicate: Callable[[], bool], timeout: float = 20, what: str = "it") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def held_write(dataset: str, data: bytes, gate: threading.Event,
               partition: str = "p0") -> Iterator[pb.WriteChunk]:
    """A Write stream that sends its first half, then waits for `gate` before the rest."""
    half = len(data) // 2
    yield pb.WriteChunk(dataset=dataset, partition=partition, arrow_ipc=data[:half])
    gate.wait(60)
    yield pb.WriteChunk(arrow_ipc=data[half:])
