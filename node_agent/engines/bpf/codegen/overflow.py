"""Overflow proofs: interval arithmetic on [min, max] bounds from partition statistics,
so that generated code never wraps (else the plan is Unsupported and runs on arrow)."""

from __future__ import annotations

import pyarrow as pa

from bpfstore.contract.errors import Unsupported
from bpfstore.contract.plan import Expr, describe

I64_MIN, I64_MAX = -(2**63), 2**63 - 1


def int_range(t: pa.DataType) -> tuple[int, int]:
    bits = t.bit_width
    if pa.types.is_unsigned_integer(t):
        return 0, 2**bits - 1
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def check_i64(lo: int, hi: int, e: Expr) -> None:
    if lo < I64_MIN or hi > I64_MAX:
        raise Unsupported(f"bpf: {describe(e)} may overflow 64 bits in this partition")


def rescaled(code: str, b: tuple[int, int], k: int, e: Expr) -> tuple[str, tuple[int, int]]:
    """The code and bounds of a value times 10**k (a decimal brought to a finer scale)."""
    if k == 0:
        return code, b
    f = 10**k
    check_i64(b[0] * f, b[1] * f, e)
    return f"({code} * {f}LL)", (b[0] * f, b[1] * f)


def fits_64(bounds: tuple[int, int], rows: int) -> bool:
    """Whether a sum of `rows` values within bounds fits in an s64."""
    return max(abs(bounds[0]), abs(bounds[1])) * max(rows, 1) <= I64_MAX
