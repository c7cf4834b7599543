"""What codegen produces: the C of one program, how to fill its context, how to read it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Program:
    """Generated C plus how to fill its context and read its results."""

    source: str = ""
    fields: list[tuple[str, str]] = field(default_factory=list)  # (name, "u64" | "s64")
    values: dict[str, int] = field(default_factory=dict)  # constant inputs
    columns: list[str] = field(default_factory=list)  # column i is at ctx field col{i}
    ctypes: list[str] = field(default_factory=list)  # per column: C type of its values
    # per aggregate: (kind, partial type, what counts its non-NULL inputs: a context field
    # name without group-by, a word of the group's accumulators with it)
    outputs: list[tuple[str, Any, Any]] = field(default_factory=list)
    validity: list[int] = field(default_factory=list)  # columns whose validity bitmap is used
    empty: bool = False  # statistics prove no row can match
    groups: int = 0  # group-by: number of groups (accumulators in the arena), 0 without
    keys: list[tuple[str, int, int]] = field(default_factory=list)  # (column, base, cardinality)
    stride: int = 0  # u64 words per group: count, then 2 per SUM, 1 per MIN/MAX
    slots: list[int] = field(default_factory=list)  # per aggregate: its first word in a group
    initial: list[int] = field(default_factory=list)  # per word of a group: starting value
    narrow: list[int] = field(default_factory=list)  # group sums kept in one s64 word

    @property
    def shape(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()[:20]

