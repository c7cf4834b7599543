"""Which engines this node can run, why not, and which one serves a request."""

from __future__ import annotations

from dataclasses import dataclass

from bpfstore.connector.errors import Unsupported

from .arrow_engine import ArrowEngine


@dataclass(frozen=True, slots=True)
class EngineStatus:
    name: str
    available: bool
    reason: str = ""


class Engines:
    """The engines of one agent. `auto` prefers in-kernel engines when they are available."""

    def __init__(self, default: str = "auto") -> None:
        self.arrow = ArrowEngine()
        self.default = default
        self.status = [
            EngineStatus("arrow", True),
            EngineStatus("bpf", False, "the in-kernel engine is not part of this build yet"),
        ]

    def choose(self, requested: str) -> ArrowEngine:
        name = self.default if requested == "auto" else requested
        if name in ("auto", "arrow"):
            return self.arrow
        for s in self.status:
            if s.name == name and not s.available:
                raise Unsupported(f"engine {name!r} is not available on this node: {s.reason}")
        raise Unsupported(f"unknown engine {name!r}")
