"""Agent settings: defaults, then flags."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENGINES = ("auto", "arrow", "bpf", "bpf-hot", "bpf-cold")


def default_data_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "bpfstore" / "agent")


@dataclass(frozen=True)
class AgentConfig:
    data_dir: str = ""
    listen: str = "127.0.0.1:7340"
    engine: str = "auto"
    workers: int = 8
    max_message_bytes: int = 64 << 20  # one gRPC message (Write chunks are far smaller)
    max_write_bytes: int = 8 << 30  # one partition's Arrow stream
    max_plan_nodes: int = 10_000
    max_plan_depth: int = 40  # protobuf itself refuses ~48+ nested expression levels
    max_in_list: int = 100_000
    scan_batch_rows: int = 65_536
    grace_seconds: float = 30.0
    bpf: bool = True  # try the in-kernel engine (it still needs privileges and clang)
    bpf_arena_bytes: int = 1 << 30  # column cache of the bpf hot path (an arena is <= 4 GiB)

    def limits(self) -> dict[str, int]:
        return {
            "max_message_bytes": self.max_message_bytes,
            "max_write_bytes": self.max_write_bytes,
            "max_plan_nodes": self.max_plan_nodes,
            "max_plan_depth": self.max_plan_depth,
            "max_in_list": self.max_in_list,
        }
