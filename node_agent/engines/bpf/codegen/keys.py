"""Key sets in the kernel: the keys that can occur in this partition, as equality windows.

A key set (`x IN <keys>`, sorted and distinct) may hold millions of keys, but a partition's
[min, max] (or, for strings, its dictionary) usually admits few of them. Those few become
equality windows on x's stored integers (dictionary codes for strings, float order keys
for floats), ORed like an IN list's; their count is padded to a power of two (the last key
repeated) so the C, which depends on the count and not on the keys, has few shapes. More
than MAX_KERNEL_KEYS keys in range: Unsupported, and the partition runs on arrow. The bcc
engine refuses key sets (its loader crashed on a 64-window program; not yet understood).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from bpfstore.contract.binding import logical_type
from bpfstore.contract.errors import Unsupported
from bpfstore.contract.floatkeys import float_keys

from ...exact import decimal_storage_as_int64
from .columns import Columns

MAX_KERNEL_KEYS = 64  # windows one program tests per row: 1, 2, 4 ... 64 (seven shapes)


def stored_keys(keys: pa.Array, column_type: pa.DataType) -> pa.Array:
    """Keys (non-NULL, in the column's comparison type) as the integers the program
    compares: float order keys, unscaled decimal64, days, timestamp units, 0/1."""
    t = logical_type(column_type)
    if pa.types.is_floating(t):
        return float_keys(keys).combine_chunks()
    if pa.types.is_decimal(t):
        if t.precision > 18:
            raise Unsupported(f"bpf: key set on decimal128 column of type {t}")
        narrow = pa.chunked_array([keys.cast(pa.decimal64(t.precision, t.scale))])
        return decimal_storage_as_int64(narrow).combine_chunks()
    if pa.types.is_date32(t):
        return keys.cast(pa.int32())
    if pa.types.is_timestamp(t):
        return keys.cast(pa.int64())
    if pa.types.is_boolean(t):
        return keys.cast(pa.int8())
    if pa.types.is_integer(t):
        return keys
    raise Unsupported(f"bpf: key set on a column of type {t}")


def keys_in_range(c: Columns, name: str, keys: pa.Array) -> tuple[list[int], bool]:
    """(the stored integers, or dictionary codes, of the keys this partition's values may
    equal, padded to a power of two; whether they are codes)."""
    if c.path == "bcc":  # a program of many windows crashed bcc's loader: arrow runs these
        raise Unsupported("bcc: key sets run on the bpf engine or arrow")
    t = c.schema.field(name).type
    if pa.types.is_dictionary(t):
        codes = pc.index_in(keys, value_set=c._dictionary(name)).drop_null()
        found, is_codes = sorted(codes.to_pylist()), True
    else:
        lo, hi = c.bounds(name)
        stored = stored_keys(keys, t)
        inside = pc.and_(pc.greater_equal(stored, pa.scalar(lo, stored.type)),
                         pc.less_equal(stored, pa.scalar(hi, stored.type))) \
            if lo <= hi else pa.array([False] * len(stored))
        found, is_codes = stored.filter(inside).to_pylist(), False
    if len(found) > MAX_KERNEL_KEYS:
        raise Unsupported(f"bpf: {len(found)} keys of the key set fall in this partition's "
                          f"range (the kernel tests at most {MAX_KERNEL_KEYS})")
    if found:
        width = 1 << (len(found) - 1).bit_length()
        found += [found[-1]] * (width - len(found))
    return found, is_codes
