"""The compiler's state and the columns a program reads: their index in the context, C
type, validity bitmap and [min, max] bounds from the partition's statistics."""

from __future__ import annotations

import math

import pyarrow as pa

from bpfstore.contract.compare import float_key
from bpfstore.contract.errors import Unsupported
from bpfstore.contract.plan import Dialect, Expr, columns_of

from ....stats import ColumnStats, stored_bounds
from .program import Program
from .typemap import storage_ctype


class Columns:
    """Compiler state (the program and its C fragments) and column access; the windows,
    expressions and accumulators build on it (windows.py, expressions.py, accumulators.py)."""

    def __init__(self, schema: pa.Schema, stats: dict[str, ColumnStats], rows: int,
                 dictionaries: dict[str, pa.Array], dialect: Dialect = Dialect.SQL,
                 path: str = "hot") -> None:
        self.schema, self.stats, self.rows = schema, stats, rows
        self.dialect, self.path = dialect, path
        self.dictionaries = dictionaries
        self.p = Program()
        self.ranges: dict[tuple[str, bool], tuple[int, int]] = {}  # (column, codes) -> [lo, hi]
        self.setup: list[str] = []
        self.predicate: list[str] = []
        self.accumulate: list[str] = []
        self.store: list[str] = []

    def readable(self, name: str, codes: bool = False) -> str:
        """The column's C type; Unsupported unless bpf can read every value of it
        (dictionary codes only where `codes`: equality and grouping, never arithmetic)."""
        t = self.schema.field(name).type
        ctype = "s32" if codes and pa.types.is_dictionary(t) else storage_ctype(t)
        if ctype is None:
            raise Unsupported(f"bpf: column {name!r} of type {t} is not integer-like")
        if self.stats.get(name) is None:
            raise Unsupported(f"bpf: no statistics for column {name!r}")
        if codes and self.nullable(name):
            raise Unsupported(f"bpf: group key {name!r} has NULLs in this partition")
        return ctype

    def folds(self, name: str) -> bool:
        """Whether a filter window on the column that statistics decide is left out of the C
        rather than tested: where the path cannot read the column (bcc keeps no float order
        keys in the file), so a partition the statistics settle still runs there, at the
        price of one more shape."""
        return self.path == "bcc" and pa.types.is_floating(self.schema.field(name).type)

    def nullable(self, name: str) -> bool:
        """Whether rows can be missing: NULL, or NaN in the PANDAS dialect (NaN is missing)."""
        s = self.stats[name]
        pandas_nan = self.dialect is Dialect.PANDAS and s.has_nan
        return s.null_count > 0 or pandas_nan

    def column(self, name: str, codes: bool = False) -> int:
        """The column's index in the context (registered on first use)."""
        if name in self.p.columns:
            return self.p.columns.index(name)
        ctype = self.readable(name, codes)
        i = len(self.p.columns)
        self.p.columns.append(name)
        self.p.ctypes.append(ctype)
        self.p.fields.append((f"col{i}", "u64"))
        if self.nullable(name):  # its validity bitmap travels as a second bit array
            self.p.validity.append(i)
            self.p.fields.append((f"val{i}", "u64"))
        return i

    def valid_bit(self, name: str) -> str | None:
        """C expression, 1 when row r of the column is not NULL (None: it never is)."""
        i = self.column(name)
        return f"((u64)BIT(val{i}, r))" if i in self.p.validity else None

    def validity(self, e: Expr) -> str | None:
        """1 when no column of the expression is NULL at row r (NULL propagates)."""
        bits = [b for name in columns_of([e]) if (b := self.valid_bit(name)) is not None]
        return " & ".join(bits) if bits else None

    def value(self, name: str, codes: bool = False) -> str:
        """C expression reading row r of a column as s64 (booleans are packed bits)."""
        i = self.column(name, codes)
        if storage_ctype(self.schema.field(name).type) == "bit":
            return f"(s64)BIT(col{i}, r)"
        return f"(s64)col{i}[r]"

    def bounds(self, name: str) -> tuple[int, int]:
        """[min, max] of a column's stored integers, from statistics (codes: the dictionary)."""
        t = self.schema.field(name).type
        if pa.types.is_dictionary(t):
            return 0, len(self._dictionary(name)) - 1
        s = self.stats[name]
        if pa.types.is_floating(t):  # statistics leave NaN out; in SQL it sorts above all
            lo = float_key(s.min) if s.min is not None else float_key(math.nan)
            hi = float_key(math.nan) if s.has_nan and self.dialect is Dialect.SQL else \
                float_key(s.max) if s.max is not None else lo
            return lo, hi
        return stored_bounds(s, t) or (0, 0)  # no value: every one is NULL, none counts

    def _dictionary(self, name: str) -> pa.Array:
        if name not in self.dictionaries:
            raise Unsupported(f"bpf: column {name!r} has no single dictionary")
        return self.dictionaries[name]

