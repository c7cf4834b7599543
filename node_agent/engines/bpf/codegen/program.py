"""What codegen produces: the C of one program, how to fill its context, how to read it."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Program:
    """Generated C plus how to fill its context and read its results."""

    source: str = ""
    settings: dict[str, str] = field(default_factory=dict)  # template settings, passed as -D
    fields: list[tuple[str, str]] = field(default_factory=list)  # (name, "u64" | "s64")
    values: dict[str, int] = field(default_factory=dict)  # constant inputs
    columns: list[str] = field(default_factory=list)  # column i is at ctx field col{i}
    ctypes: list[str] = field(default_factory=list)  # per column: C type of its values
    # per aggregate: (kind, partial type, what counts its non-NULL inputs: a context field
    # name without group-by, a word of the group's accumulators with it)
    outputs: list[tuple[str, Any, Any]] = field(default_factory=list)
    validity: list[int] = field(default_factory=list)  # columns whose validity bitmap is used
    empty: bool = False  # statistics prove no row can match
    groups: int = 0  # group-by: number of groups (in the arena, or a bcc map), 0 without
    keys: list[tuple[str, int, int]] = field(default_factory=list)  # (column, base, cardinality)
    stride: int = 0  # u64 words per group: count, then 2 per SUM, 1 per MIN/MAX
    slots: list[int] = field(default_factory=list)  # per aggregate: its first word in a group
    initial: list[int] = field(default_factory=list)  # per word of a group: starting value
    narrow: list[int] = field(default_factory=list)  # group sums kept in one s64 word

    @functools.cached_property
    def shape(self) -> str:
        # Cached: hashing the C took 13 % of a warm 61-partition Q6's agent time, several
        # times a run. A compiled Program is not changed (with_settings makes a new one).
        text = "\n".join([self.source, *self.cflags])
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    @property
    def cflags(self) -> list[str]:
        """The settings as compiler flags (the template's `#ifndef NAME` defaults them)."""
        return [f"-D{name}={value}" for name, value in sorted(self.settings.items())]

    def with_settings(self, **settings: str) -> Program:
        """The same program with some of its settings changed (a shape of its own)."""
        unknown = set(settings) - set(self.settings)
        if unknown:  # only settings the template was checked to have (template.fill)
            raise KeyError(f"program has no setting {sorted(unknown)}")
        return dataclasses.replace(self, settings={**self.settings, **settings})

