"""Bound plan + partition statistics -> C for the templates in bpf/, or Unsupported(why).

What compiles: a conjunction of range predicates (=, <, <=, >, >=, BETWEEN against
literals) on integer-like columns (ints, bool, date32, timestamp, decimal64 as scaled
integers) and equality of dictionary-encoded strings; comparisons of two such columns
(brought to one decimal scale, overflow-proven; = and != of strings on one dictionary);
COUNT(*), COUNT, SUM of + - * expressions over such columns and literals, MIN and MAX of
such columns; GROUP BY up to MAX_GROUPS groups of dictionary codes or small integer ranges
(keys without NULLs); NULLs in the other columns through their validity bitmaps.
Everything else raises `Unsupported` and the partition runs on the arrow engine.

Exactness: each predicate becomes an integer window computed exactly (fractions), and
every SUM expression is proven free of int64 overflow from the partition's min/max
statistics (interval arithmetic) before any code runs; sums are kept in 128 bits.

Shapes: the C depends on the plan and on a few coarse classes of the partition, never on
its values, so a plan compiles once per class, not once per partition (clang takes ~25 ms a
shape, the kernel under 1 ms for 100,000 rows). In the context, per partition: the filter
windows (also those statistics decide: a covering window is tested all the same, an empty
one has r = 0), dictionary codes of string literals, the group keys' bases and multipliers
and the number of groups, column addresses and the row range. Classes that change the C,
each exact:
- a column with NULLs in the partition reads its validity bitmap (one without does not);
- a SUM proven to fit 64 bits over the partition's rows adds in one word, else in 128;
- no program at all where statistics prove no row matches (`Program.empty`);
- on bcc, a float column's window that statistics decide is left out (bcc cannot read
  floats, so the partition still runs there; `Columns.folds`);
- on bcc, GROUP BY's map value holds GROUP_CAP groups, the number of groups rounded up to a
  power of two and at least 64 (`template.group_cap`): one class up to 63 groups.
So a plan has at most 2 ** (columns whose NULLs vary + sums whose proof varies) shapes per
data path; on TPC-H (no NULLs, every sum proven) one (tests/integration/test_bpf_shapes.py
counts them). Before, 40 partitions of varied ranges gave Q1 21 shapes on the hot path.

Modules, one job each (each layer uses only the ones above it):
- typemap: the C type of a column's values; overflow: interval proofs on [min, max];
- program: the Program produced; columns: compiler state and column access;
- windows: predicates on one column as exact integer windows;
- pairs: comparisons of one column with another;
- expressions: the walkers over predicates and integer expressions;
- keys: key sets as the equality windows of the keys a partition admits;
- accumulators: COUNT / SUM / MIN / MAX, in registers or per group (arena, or a map value);
- template: the data path's template with its holes filled, its settings, array layouts;
- context: the ctypes mirror of a program's context, read from bpf/bpfstore.h.
"""

from __future__ import annotations

import pyarrow as pa

from bpfstore.contract.binding import logical_type, partial_type
from bpfstore.contract.errors import Unsupported
from bpfstore.contract.plan import AggFunc, Plan, conjuncts

from ....stats import ColumnStats
from .accumulators import ACC_BYTES, MAX_GROUPS, Compiler
from .context import HEAD, context_type
from .program import Program
from .template import CHUNK_ROWS, READ_ROWS, TemplateError, fill, read_layout
from .typemap import BITS, storage_ctype

__all__ = ["ACC_BYTES", "BITS", "CHUNK_ROWS", "HEAD", "MAX_GROUPS", "READ_ROWS", "Program",
           "TemplateError", "compile_plan", "context_type", "read_layout", "storage_ctype"]


def compile_plan(plan: Plan, schema: pa.Schema, stats: dict[str, ColumnStats], rows: int,
                 dictionaries: dict[str, pa.Array] | None = None, path: str = "hot"
                 ) -> Program:
    """The program for one partition on a data path, "hot" (arena) or "cold" (chunks
    copied from user memory); raises Unsupported with the reason."""
    c = Compiler(schema, stats, rows, dictionaries or {}, plan.dialect, path)
    for term in conjuncts(plan.filter):
        c.term(term)
    c.emit_windows()
    if plan.group_by:
        c.group(plan.group_by)
    for i, agg in enumerate(plan.aggregates):
        floating = agg.arg is not None and pa.types.is_floating(logical_type(agg.arg.result_type))
        if floating and agg.func is AggFunc.SUM:
            raise Unsupported("bpf: float sums run on arrow (no floating point in BPF)")
        c.aggregate(i, agg.func, agg.arg, partial_type(agg))
    if c.p.groups and (c.p.groups + 1) * c.p.stride * 8 > ACC_BYTES:
        raise Unsupported("bpf: group accumulators larger than their arena region")
    c.p.source, c.p.settings = fill(c, path)
    return c.p

