"""Agent settings: defaults, then the config file (config_file.py), then flags."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bpfstore.contract import keysets
from bpfstore.contract.plan import EngineName

from .limits import Quota

ENGINES = tuple(e.value for e in EngineName)  # what --engine and the config file accept
WRITE_MESSAGE_BYTES = 8 << 20  # room for the writers' pieces (connector: 1 MiB)
PLAN_BYTES_PER_NODE = 64  # a plan node or IN value on the wire, with room to spare


def default_data_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "bpfstore" / "agent")


@dataclass(frozen=True)
class Tenant:
    """A set of callers sharing bearer tokens, grants and a concurrency limit (auth.py)."""

    name: str
    tokens: tuple[str, ...]  # "sha256:<hex>" of each token (`bpfstore-agent hash-token`)
    read: tuple[str, ...] = ()  # dataset name patterns (globs: "tpch_*") it may query
    write: tuple[str, ...] = ()  # ... it may write to and drop
    max_concurrent: int = 0  # requests at once; 0: the agent's tenant_max_concurrent
    # What its datasets may hold on this agent; 0: the agent's tenant_max_<same name>.
    max_datasets: int = 0
    max_partitions: int = 0
    max_stored_bytes: int = 0
    max_catalog_bytes: int = 0


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
    max_key_set_keys: int = keysets.DEFAULT_MAX_KEYS  # keys of one key set (x IN <keys>)
    max_key_set_bytes: int = keysets.DEFAULT_MAX_BYTES  # its IPC stream, sent and decoded
    # Limits before work (limits.py): a write's stream is refused from its headers,
    # before anything is decompressed or materialized, and catalogs stay small.
    max_write_rows: int = 1 << 28  # rows of one partition (a null column costs no bytes)
    max_replicas: int = 16  # replica names of one partition
    max_replica_name_bytes: int = 256  # one replica name (HOST:PORT)
    max_catalog_bytes: int = 16 << 20  # one dataset's _dataset.json
    # Per-tenant quotas (limits.Quota): what the datasets a tenant created may hold on this
    # agent, checked before a write's catalog is decided; a tenant's [tenants.<name>]
    # max_datasets (...) overrides them.
    tenant_max_datasets: int = 10_000
    tenant_max_partitions: int = 1_000_000
    tenant_max_stored_bytes: int = 1 << 44  # 16 TiB of partition files
    tenant_max_catalog_bytes: int = 1 << 30  # all its datasets' _dataset.json together
    # Who may call, and how much (auth.py): TLS, tenants, concurrency, deadlines.
    tls_cert: str = ""  # PEM certificate (chain) file; with tls_key, the agent speaks only TLS
    tls_key: str = ""
    tls_client_ca: str = ""  # PEM CA file: clients must present a certificate it signed (mTLS)
    tenants: tuple[Tenant, ...] = ()  # none: no token is asked and every caller may do anything
    max_concurrent_requests: int = 256  # whole agent, running + queued; beyond: RESOURCE_EXHAUSTED
    tenant_max_concurrent: int = 0  # running requests per tenant; 0: only the agent-wide bound
    max_deadline_seconds: float = 600.0  # requests without a deadline (or a later one) get this
    # No stalled peer can starve others (auth.py): a request stream silent (or a response
    # unread) this long is dropped; with tenants, one tenant computes on at most
    # tenant_max_workers of the workers (0: half of them).
    stream_idle_seconds: float = 30.0
    tenant_max_workers: int = 0
    log_level: str = "INFO"
    scan_batch_rows: int = 65_536
    grace_seconds: float = 30.0
    metrics_listen: str = ""  # HOST:PORT of the Prometheus /metrics endpoint; "" = off
    bpf: bool = True  # try the in-kernel engine (it still needs privileges and clang)
    bpf_arena_bytes: int = 1 << 30  # column cache of the bpf hot path (an arena is <= 4 GiB)
    bpf_threads: int = 0  # bpf runs at once, over all requests (0: one per CPU, at most 8)
    # Writes (storage.py): how long a superseded version stays readable for queries that
    # pinned it, and how long this agent, as a write's primary, waits for its client's commit.
    version_retention_seconds: float = 300.0
    prepare_timeout_seconds: float = 120.0

    def quota(self, tenant: str) -> Quota:
        """The quota of the tenant named `tenant` (the agent's defaults for an unknown name,
        and for every caller when no tenant is configured)."""
        own = next((t for t in self.tenants if t.name == tenant), Tenant(tenant, ()))
        return Quota(own.max_datasets or self.tenant_max_datasets,
                     own.max_partitions or self.tenant_max_partitions,
                     own.max_stored_bytes or self.tenant_max_stored_bytes,
                     own.max_catalog_bytes or self.tenant_max_catalog_bytes)

    def max_receive_bytes(self) -> int:
        """gRPC's receive limit, from the other limits: a Write piece (the client sends 1 MiB)
        or the largest plan the plan limits allow, so an oversized plan is refused before it
        is decoded."""
        plan_bytes = PLAN_BYTES_PER_NODE * (self.max_plan_nodes + self.max_in_list) + \
            self.max_key_set_bytes
        return min(self.max_message_bytes, max(WRITE_MESSAGE_BYTES, plan_bytes))

    def limits(self) -> dict[str, int]:
        return {
            "max_message_bytes": self.max_message_bytes,
            "max_write_bytes": self.max_write_bytes,
            "max_plan_nodes": self.max_plan_nodes,
            "max_plan_depth": self.max_plan_depth,
            "max_in_list": self.max_in_list,
            "max_key_set_keys": self.max_key_set_keys,
            "max_key_set_bytes": self.max_key_set_bytes,
            "max_concurrent_requests": self.max_concurrent_requests,
            "tenant_max_concurrent": self.tenant_max_concurrent,
            "max_deadline_ms": round(self.max_deadline_seconds * 1000),
        }
