"""Storage hosts as network namespaces for `make bench-cluster` (needs root and `ip`/`tc`).

Host i is the namespace `bpfsb<i>`, joined to the client (the root namespace) by the veth pair
`bpfsb<i>h` (client side, 10.231.<i>.1) ⇄ `bpfsb<i>n` (inside, 10.231.<i>.2), with a `tbf`
qdisc on both ends limiting egress to the link rate: traffic stays between the namespaces and
the host, and every byte between client and agent crosses one shaped pair. Counters come from
the client-side interface (/sys/class/net/bpfsb<i>h/statistics): rx = agent → client.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bpfstore.connector import Client

PREFIX = "bpfsb"
PORT = 7340
CLK_TCK = os.sysconf("SC_CLK_TCK")


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


def netns_available() -> str | None:
    """None when namespaces, veth pairs and tc work here; else why not."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth pairs, tc)"
    probe, link = f"bpfprobe{os.getpid()}", f"bpfp{os.getpid() % 100000}"
    try:
        for cmd in (["ip", "netns", "add", probe],
                    ["ip", "netns", "exec", probe, "true"],  # mounts /sys for the namespace
                    ["ip", "link", "add", f"{link}h", "type", "veth", "peer", "name",
                     f"{link}n", "netns", probe],
                    ["tc", "qdisc", "add", "dev", f"{link}h", "root", "tbf", "rate",
                     "1gbit", "burst", "256kb", "latency", "50ms"]):
            r = sh(*cmd, check=False)
            if r.returncode:
                return f"`{' '.join(cmd)}` failed: {(r.stderr or r.stdout).strip()}"
        return None
    except FileNotFoundError as exc:
        return f"{exc.filename} not found (iproute2)"
    finally:
        sh("ip", "link", "del", f"{link}h", check=False)
        sh("ip", "netns", "del", probe, check=False)


def parse_rate(text: str) -> float:
    """'1gbit', '10gbit', '500mbit' → bits per second."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmg]?)bit", text.strip().lower())
    if not m:
        raise ValueError(f"link rate like 1gbit, 10gbit or 500mbit, not {text!r}")
    return float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m.group(2)]


def cleanup_leftovers(prefix: str = PREFIX) -> list[str]:
    """Remove the namespaces and links a crashed earlier run left (and the processes still
    running inside those namespaces, which only that run can have started)."""
    removed = []
    names = sh("ip", "netns", "list", check=False).stdout.split()
    for ns in [n for n in names if re.fullmatch(rf"{prefix}\d+", n)]:
        for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        sh("ip", "netns", "del", ns, check=False)
        removed.append(ns)
    for link in Path("/sys/class/net").iterdir():
        if re.fullmatch(rf"{prefix}\d+[hn]", link.name):
            sh("ip", "link", "del", link.name, check=False)
            removed.append(link.name)
    return removed


@dataclass
class Host:
    index: int
    ns: str
    outer: str  # the client-side veth
    inner: str
    client_ip: str
    ip: str
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def address(self) -> str:
        return f"{self.ip}:{PORT}"


@dataclass
class Cluster:
    """`hosts` storage hosts; `start_agents` runs one agent in each; `close` undoes it all."""

    count: int
    prefix: str = PREFIX  # namespaces <prefix><i>, links <prefix><i>h / <prefix><i>n
    subnet: str = "10.231"  # host i: <subnet>.<i>.2, the client's end <subnet>.<i>.1
    hosts: list[Host] = field(default_factory=list)

    def create(self) -> None:
        for i in range(self.count):
            p = self.prefix
            h = Host(i, f"{p}{i}", f"{p}{i}h", f"{p}{i}n", f"{self.subnet}.{i}.1",
                     f"{self.subnet}.{i}.2")
            self.hosts.append(h)  # before creating: close() removes what exists
            sh("ip", "netns", "add", h.ns)
            sh("ip", "link", "add", h.outer, "type", "veth", "peer", "name", h.inner,
               "netns", h.ns)
            sh("ip", "addr", "add", f"{h.client_ip}/24", "dev", h.outer)
            sh("ip", "link", "set", h.outer, "up")
            for cmd in (["ip", "link", "set", "lo", "up"],
                        ["ip", "addr", "add", f"{h.ip}/24", "dev", h.inner],
                        ["ip", "link", "set", h.inner, "up"]):
                sh("ip", "netns", "exec", h.ns, *cmd)

    def shape(self, rate: str) -> None:
        """tbf on both ends of every pair: egress limited to `rate` in each direction."""
        bps = parse_rate(rate)
        burst = max(64 * 1024, int(bps / 8 / 500))  # 2 ms at line rate
        for h in self.hosts:
            tbf = ["root", "tbf", "rate", rate, "burst", str(burst), "latency", "50ms"]
            sh("tc", "qdisc", "replace", "dev", h.outer, *tbf)
            sh("ip", "netns", "exec", h.ns, "tc", "qdisc", "replace", "dev", h.inner, *tbf)

    def unshape(self) -> None:
        for h in self.hosts:
            sh("tc", "qdisc", "del", "dev", h.outer, "root", check=False)
            sh("ip", "netns", "exec", h.ns, "tc", "qdisc", "del", "dev", h.inner, "root",
               check=False)

    def qdiscs(self) -> list[str]:
        return [sh("tc", "qdisc", "show", "dev", h.outer).stdout.strip() for h in self.hosts]

    def start_agents(self, exe: Path, data_root: Path, extra: Sequence[str] = (),
                     timeout: float = 90.0) -> list[str]:
        for h in self.hosts:
            data = data_root / f"agent{h.index}"
            data.mkdir(parents=True, exist_ok=True)
            h.log = data_root / f"agent{h.index}.log"
            with open(h.log, "ab") as log:
                # `ip netns exec` execs the command: the Popen pid is the agent's pid.
                h.proc = subprocess.Popen(
                    ["ip", "netns", "exec", h.ns, str(exe), "--listen", h.address,
                     "--data-dir", str(data), *extra], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        for h in self.hosts:
            while True:
                assert h.proc is not None
                if h.proc.poll() is not None or time.monotonic() > deadline:
                    tail = h.log.read_text(errors="replace")[-2000:] if h.log else ""
                    raise RuntimeError(f"agent {h.address} did not start; its log:\n{tail}")
                try:
                    with Client([h.address], timeout=5) as c:
                        if all("error" not in i for i in c.info()):
                            break
                except Exception:  # noqa: BLE001 - not up yet
                    pass
                time.sleep(0.3)
        return [h.address for h in self.hosts]

    def stop_agents(self) -> None:
        for h in self.hosts:
            if h.proc is not None and h.proc.poll() is None:
                h.proc.terminate()
        for h in self.hosts:
            if h.proc is not None:
                try:
                    h.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    h.proc.kill()
                    h.proc.wait()
                h.proc = None

    def close(self) -> None:
        try:
            self.stop_agents()
        finally:
            for h in self.hosts:
                sh("ip", "link", "del", h.outer, check=False)  # removes the peer too
                sh("ip", "netns", "del", h.ns, check=False)
            self.hosts.clear()

    # -- measurements ----------------------------------------------------------------------

    def link_bytes(self) -> tuple[int, int]:
        """(agent → client, client → agent) bytes so far, summed over the client-side veths."""
        rx = tx = 0
        for h in self.hosts:
            stats = Path("/sys/class/net") / h.outer / "statistics"
            rx += int((stats / "rx_bytes").read_text())
            tx += int((stats / "tx_bytes").read_text())
        return rx, tx

    def agent_cpu(self) -> float:
        """CPU seconds (user + system, with waited-for children such as clang) of all agents."""
        total = 0.0
        for h in self.hosts:
            if h.proc is None:
                continue
            stat = Path(f"/proc/{h.proc.pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            total += sum(int(x) for x in fields[11:15]) / CLK_TCK  # utime stime cutime cstime
        return total
