"""Limits before work: what a request may cost is decided from its size and headers, before
anything big is decoded, decompressed or materialized.

- plans: IN-list lengths and node counts are counted on the protobuf message, and a key
  set's keys and bytes on its Arrow IPC headers, before the plan becomes Python objects
  (gRPC's receive limit, AgentConfig.max_receive_bytes, bounds the message itself);
- writes: the Arrow IPC stream's message headers give each record batch's rows and, for
  compressed buffers, their decompressed length, so a small compressed stream that would
  expand to gigabytes (or a null column of billions of rows) is refused from its headers;
- catalogs: replica lists and names are bounded, and one dataset's catalog file too, so one
  tenant's metadata cannot grow what every ListDatasets and query must read;
- quotas: what the datasets one tenant created hold on this agent (datasets, partitions,
  stored bytes, catalog bytes) is bounded per tenant, so one tenant cannot fill the agent's
  disk or catalog for the others.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from bpfstore.contract import keysets
from bpfstore.contract.errors import PlanInvalid, ResourceExhausted
from bpfstore.v1 import plan_pb2

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .config import AgentConfig


@dataclass(frozen=True, slots=True)
class WriteLimits:
    max_bytes: int = 8 << 30  # one partition's stream, as sent and as decompressed
    max_rows: int = 1 << 28
    max_replicas: int = 16
    max_replica_name_bytes: int = 256
    max_catalog_bytes: int = 16 << 20

    @classmethod
    def of(cls, c: AgentConfig) -> WriteLimits:
        return cls(c.max_write_bytes, c.max_write_rows, c.max_replicas,
                   c.max_replica_name_bytes, c.max_catalog_bytes)


# -- plans -----------------------------------------------------------------------------------


def check_plan_size(plan: plan_pb2.Plan, max_nodes: int, max_in_list: int,
                    max_depth: int, max_key_set_keys: int = keysets.DEFAULT_MAX_KEYS,
                    max_key_set_bytes: int = keysets.DEFAULT_MAX_BYTES) -> None:
    """Depth, IN lists and expression nodes counted on the wire message, refused with the
    messages (and in the order) of the checks on the decoded plan; a key set's keys and
    bytes (sent and decompressed) read from its IPC headers, before it is decoded."""
    pending = [(plan.filter, 1)] if plan.HasField("filter") else []
    pending += [(a.arg, 1) for a in plan.aggregates if a.HasField("arg")]
    nodes = deepest = longest = 0
    while pending and nodes <= 2 * max_nodes:  # past that, the answer is known
        expr, depth = pending.pop()
        nodes += 1
        deepest = max(deepest, depth)
        kind = expr.WhichOneof("node")
        if kind is None or depth > max_depth:
            continue
        node = getattr(expr, kind)
        if kind == "in":
            longest = max(longest, len(node.values))
        if kind == "key_set":
            check_key_set(node.keys, max_key_set_keys, max_key_set_bytes)
        for field, value in node.ListFields():
            if field.message_type is plan_pb2.Expr.DESCRIPTOR:  # one Expr, or repeated
                children = [value] if isinstance(value, plan_pb2.Expr) else value
                pending.extend((child, depth + 1) for child in children)
    if deepest > max_depth:
        raise PlanInvalid("expression is nested too deeply")
    if longest > max_in_list:
        raise PlanInvalid(f"IN list of {longest} values exceeds the limit of {max_in_list}")
    if nodes > max_nodes:
        raise PlanInvalid(f"plan has more than {max_nodes} expression nodes; the limit is "
                          f"{max_nodes}")


def check_key_set(data: bytes, max_keys: int, max_bytes: int) -> None:
    """Refuse a key set's IPC stream from its headers: more keys or bytes than the limits."""
    keysets.check_size(0, len(data), max_keys, max_bytes)  # as sent, before anything is read
    rows = expanded = 0
    try:
        for message in pa.ipc.MessageReader.open_stream(pa.BufferReader(data)):
            if message.type not in ("record batch", "dictionary"):
                continue
            batch_rows, sizes = _batch_header(message.metadata.to_pybytes(),
                                              message.type == "dictionary")
            rows += batch_rows
            expanded += _expanded_bytes(message.body, sizes)
            keysets.check_size(rows, expanded, max_keys, max_bytes)
    except (pa.ArrowInvalid, pa.ArrowIOError, struct.error, IndexError, ValueError) as exc:
        raise PlanInvalid(f"key set is not a complete Arrow IPC stream: {exc}") from None


# -- writes ----------------------------------------------------------------------------------


def check_replicas(replicas: Iterable[str], limits: WriteLimits) -> list[str]:
    names = list(replicas)
    if len(names) > limits.max_replicas:
        raise PlanInvalid(f"a partition lists {len(names)} replicas; the limit is "
                          f"{limits.max_replicas} (max_replicas)")
    for name in names:
        if len(name.encode()) > limits.max_replica_name_bytes:
            raise PlanInvalid(f"replica name {name[:40]!r}... is longer than "
                              f"{limits.max_replica_name_bytes} bytes (max_replica_name_bytes)")
    return names


def check_catalog(text: str, dataset: str, limits: WriteLimits) -> None:
    if len(text) > limits.max_catalog_bytes:
        raise ResourceExhausted(f"the catalog of dataset {dataset!r} would grow to {len(text)} "
                                f"bytes; the limit is {limits.max_catalog_bytes} "
                                "(max_catalog_bytes): use fewer, larger partitions")


@dataclass(frozen=True, slots=True)
class Quota:
    """What one tenant's datasets may hold on this agent (AgentConfig.quota)."""

    datasets: int
    partitions: int
    stored_bytes: int
    catalog_bytes: int


@dataclass(frozen=True, slots=True)
class Usage:
    """What a tenant's datasets hold (or would, with a write) on this agent."""

    datasets: int = 0
    partitions: int = 0
    stored_bytes: int = 0
    catalog_bytes: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.datasets + other.datasets, self.partitions + other.partitions,
                     self.stored_bytes + other.stored_bytes,
                     self.catalog_bytes + other.catalog_bytes)


def check_quota(tenant: str, usage: Usage, quota: Quota) -> None:
    """RESOURCE_EXHAUSTED naming the first quota `usage` exceeds."""
    for what, used, limit in (("datasets", usage.datasets, quota.datasets),
                              ("partitions", usage.partitions, quota.partitions),
                              ("stored_bytes", usage.stored_bytes, quota.stored_bytes),
                              ("catalog_bytes", usage.catalog_bytes, quota.catalog_bytes)):
        if used > limit:
            raise ResourceExhausted(
                f"tenant {tenant!r} would hold {used} {what.replace('_', ' ')} on this agent; "
                f"its quota is {limit} (tenant_max_{what}, or max_{what} of "
                f"[tenants.{tenant}]): drop or overwrite some of its datasets")


def check_stream(path: Path, limits: WriteLimits) -> None:
    """Refuse an Arrow IPC stream whose record batches would decompress to more than
    max_bytes or hold more than max_rows rows, reading only message headers."""
    rows = expanded = 0
    try:
        with pa.memory_map(str(path), "r") as source:
            for message in pa.ipc.MessageReader.open_stream(source):
                if message.type not in ("record batch", "dictionary"):
                    continue
                batch_rows, sizes = _batch_header(message.metadata.to_pybytes(),
                                                  message.type == "dictionary")
                rows += batch_rows if message.type == "record batch" else 0
                expanded += _expanded_bytes(message.body, sizes)
                if rows > limits.max_rows or batch_rows > limits.max_rows:
                    raise ResourceExhausted(f"write has more than {limits.max_rows} rows "
                                            "(the agent's max_write_rows)")
                if expanded > limits.max_bytes:
                    raise ResourceExhausted(f"write decompresses to more than the agent's "
                                            f"limit of {limits.max_bytes} bytes "
                                            "(max_write_bytes)")
    except (pa.ArrowInvalid, pa.ArrowIOError, struct.error, IndexError, ValueError) as exc:
        raise PlanInvalid(f"write stream is not a complete Arrow IPC stream: {exc}") from None


def _expanded_bytes(body: pa.Buffer | None, sizes: list[tuple[int, int, bool]]) -> int:
    """The bytes the batch's buffers take once decompressed (compressed buffers start with
    their decompressed length, -1 when stored as is)."""
    total = 0
    for offset, length, compressed in sizes:
        if compressed and length >= 8:
            if body is None or offset < 0 or offset + 8 > body.size:
                raise ValueError("a buffer lies outside the message body")
            (raw,) = struct.unpack("<q", body.slice(offset, 8).to_pybytes())
            total += length - 8 if raw == -1 else max(raw, 0)
        else:
            total += max(length, 0)
    return total


# The Arrow IPC message header is a flatbuffer (format/Message.fbs): Message { version,
# header_type, header, bodyLength }, header a RecordBatch { length, nodes, buffers,
# compression } or a DictionaryBatch { id, data: RecordBatch }. Only these fields are read.


def _batch_header(meta: bytes, dictionary: bool) -> tuple[int, list[tuple[int, int, bool]]]:
    """(rows, [(offset, length, compressed)] of each body buffer) of a batch message; the
    largest node length counts as its rows (a null column has nodes but no buffers)."""
    message = _table(meta, _u32(meta, 0))
    batch = _field_table(meta, message, 2)
    if dictionary:
        batch = _field_table(meta, batch, 1)
    rows = _field_i64(meta, batch, 0)
    nodes = _field_vector(meta, batch, 1)
    if nodes is not None:
        start, count = nodes
        for i in range(count):  # FieldNode { length: long, null_count: long }
            rows = max(rows, struct.unpack_from("<q", meta, start + 16 * i)[0])
    compressed = _field(meta, batch, 3) is not None
    sizes = []
    buffers = _field_vector(meta, batch, 2)
    if buffers is not None:
        start, count = buffers
        for i in range(count):  # Buffer { offset: long, length: long }
            offset, length = struct.unpack_from("<qq", meta, start + 16 * i)
            sizes.append((offset, length, compressed))
    return rows, sizes


def _u32(b: bytes, at: int) -> int:
    return struct.unpack_from("<I", b, at)[0]


def _table(b: bytes, at: int) -> tuple[int, int]:
    """(table position, vtable position)."""
    (soffset,) = struct.unpack_from("<i", b, at)
    return at, at - soffset


def _field(b: bytes, table: tuple[int, int], index: int) -> int | None:
    """Where field `index` of the table is, or None when absent."""
    at, vtable = table
    vsize = struct.unpack_from("<H", b, vtable)[0]
    slot = 4 + 2 * index
    if slot + 2 > vsize:
        return None
    off = struct.unpack_from("<H", b, vtable + slot)[0]
    return at + off if off else None


def _field_table(b: bytes, table: tuple[int, int], index: int) -> tuple[int, int]:
    at = _field(b, table, index)
    if at is None:
        raise ValueError("a batch header lacks a required field")
    return _table(b, at + _u32(b, at))


def _field_i64(b: bytes, table: tuple[int, int], index: int) -> int:
    at = _field(b, table, index)
    return 0 if at is None else struct.unpack_from("<q", b, at)[0]


def _field_vector(b: bytes, table: tuple[int, int], index: int) -> tuple[int, int] | None:
    at = _field(b, table, index)
    if at is None:
        return None
    vector = at + _u32(b, at)
    count = _u32(b, vector)
    if vector + 4 + 16 * count > len(b):
        raise ValueError("a batch header's vector runs past its end")
    return vector + 4, count
