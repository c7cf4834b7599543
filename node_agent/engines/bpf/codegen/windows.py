"""Windows: a predicate on one column becomes an integer window [lo, hi] of its stored values
(or of its dictionary codes), computed exactly, and one branch-free test in C."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from bpfstore.contract.binding import logical_type
from bpfstore.contract.compare import between_window, window
from bpfstore.contract.errors import Unsupported
from bpfstore.contract.plan import CompareOp, Expr

from .columns import Columns


def compare_bounds(op: CompareOp, v: Any, t: pa.DataType) -> tuple[float | int, float | int]:
    """The integer window [lo, hi] of stored values x satisfying `x op v`, exactly (the
    shared comparison semantics, proto/contract/compare.py)."""
    if isinstance(v, dt.datetime) and v.tzinfo is not None and pa.types.is_date32(t):
        raise Unsupported("bpf: time-zone aware timestamp against a date column")
    try:
        return window(op, v, logical_type(t))
    except ValueError as exc:
        raise Unsupported(f"bpf: {exc}") from None


def between_bounds(lo: Any, hi: Any, t: pa.DataType) -> tuple[float | int, float | int]:
    """The integer window of stored values x with lo <= x <= hi (compare.between_window)."""
    compare_bounds(CompareOp.GE, lo, t)  # the same refusals as a single comparison
    try:
        return between_window(lo, hi, logical_type(t))
    except ValueError as exc:
        raise Unsupported(f"bpf: {exc}") from None


class Windows(Columns):
    """Window tests: narrowed per column for top-level terms, or words of nested ones."""

    def window_constants(self, lo: int, hi: int) -> int:
        """Register the context constants of the test lo <= x <= hi; their index k."""
        k = sum(1 for n, _ in self.p.fields if n.startswith("lo"))
        width = hi - lo
        if width < 2**63 - 1:
            lo_u, r1, inv = lo % 2**64, width + 1, 0
        else:  # too wide for the window test: test the complement window and invert
            lo_u, r1, inv = (hi + 1) % 2**64, 2**64 - width - 1, 1 << 63
        self.p.fields += [(f"lo{k}", "u64"), (f"r{k}", "u64"), (f"inv{k}", "u64")]
        self.p.values.update({f"lo{k}": lo_u, f"r{k}": r1, f"inv{k}": inv})
        self.setup.append(f"u64 lo{k} = c->lo{k}, r{k} = c->r{k}, inv{k} = c->inv{k};")
        return k

    def window_word(self, name: str, lo: float | int, hi: float | int,
                    codes: bool = False) -> str:
        """C word whose sign bit says lo <= value <= hi (constants in the context)."""
        self.readable(name, codes)
        col_lo, col_hi = self.bounds(name)
        lo = max(col_lo, col_lo if lo == -math.inf else int(lo))
        hi = min(col_hi, col_hi if hi == math.inf else int(hi))
        if self.folds(name) and (lo > hi or (lo, hi) == (col_lo, col_hi)):
            return "0ULL" if lo > hi else "~0ULL"
        # Otherwise a test, even where statistics decide it (an empty window has r = 0):
        # the C then depends on the plan alone, one shape for every partition.
        k = self.window_constants(lo, max(hi, lo - 1))
        return f"(in_window((u64){self.value(name, codes)}, lo{k}, r{k}) ^ inv{k})"

    def code_window(self, name: str, value: str, e: Expr) -> None:
        """String equality on a dictionary column: a window on the literal's code."""
        self.readable(name, codes=True)
        matches = pc.index(self._dictionary(name), value).as_py()
        if matches < 0:
            self.p.empty = True  # the value does not occur in this partition
            return
        self.window(name, matches, matches, e, codes=True)

    def window(self, name: str, lo: float | int, hi: float | int, e: Expr,
               codes: bool = False) -> None:
        """Narrow the column's window (terms on one column become one test)."""
        self.readable(name, codes)
        col_lo, col_hi = self.ranges.get((name, codes), self.bounds(name))
        self.ranges[(name, codes)] = (int(max(lo, col_lo)), int(min(hi, col_hi)))

    def emit_windows(self) -> None:
        for (name, codes), (lo, hi) in self.ranges.items():
            self.emit_window(name, lo, hi, codes)

    def emit_window(self, name: str, lo: int, hi: int, codes: bool) -> None:
        col_lo, col_hi = self.bounds(name)
        if lo > hi:
            self.p.empty = True  # statistics prove no row satisfies this term
            return
        if self.folds(name) and lo <= col_lo and hi >= col_hi:  # every value passes it
            if self.nullable(name):  # and NULL still fails it
                self.predicate.append(f"sel &= 0 - {self.valid_bit(name)};")
            return
        # A window covering the partition is tested all the same: one shape whatever the
        # statistics (the test costs less than a compile per partition).
        k = self.window_constants(int(lo), int(hi))
        value = self.value(name, codes)
        valid = self.valid_bit(name)
        guard = f" & (0 - {valid})" if valid else ""  # NULL satisfies no comparison
        self.predicate.append(f"sel &= (in_window((u64){value}, lo{k}, r{k}) ^ inv{k}){guard};")
