"""Type mapping: the C type a column's values have in a BPF program, and its width."""

from __future__ import annotations

import pyarrow as pa

_CTYPES = {pa.int8(): "s8", pa.int16(): "s16", pa.int32(): "s32", pa.int64(): "s64",
           pa.uint8(): "u8", pa.uint16(): "u16", pa.uint32(): "u32", pa.bool_(): "bit",
           pa.date32(): "s32"}
BYTES = {"s8": 1, "u8": 1, "s16": 2, "u16": 2, "s32": 4, "u32": 4, "s64": 8}
BITS = {"bit": 1, **{k: 8 * v for k, v in BYTES.items()}}  # per C type: bits a value


def storage_ctype(t: pa.DataType) -> str | None:
    """The C type of a column's values in the arena, or None when bpf cannot read it."""
    if pa.types.is_decimal(t):
        return "s64" if t.bit_width == 64 else None
    if pa.types.is_timestamp(t) or pa.types.is_floating(t):
        return "s64"  # floats travel as their total-order keys (float_key)
    return _CTYPES.get(t)


def scale_of(t: pa.DataType) -> int:
    """Decimal places of the stored integers (0 unless decimal)."""
    return t.scale if pa.types.is_decimal(t) else 0
