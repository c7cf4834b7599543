"""Key sets: `x IN <keys>` for sets too large for an IN list (a join's small-side keys).

The keys are an Arrow array. `normalized` is what travels and what binding keeps: distinct,
sorted ascending, -0.0 folded into 0.0, NaN after every number and at most one NULL last, so
statistics can binary-search them. `bound_keys` converts them to the type they are compared
in (the column's own type; float64 for a float column) exactly, or raises PlanInvalid: a
float key never meets an integer or decimal column (compare it with an IN list or a Cast),
and no key is ever rounded. Integer keys outside the column's range are dropped (no value
equals them). `to_ipc`/`from_ipc` are the wire form, one Arrow IPC stream of one column.

Semantics (the SQL dialect as DuckDB's `x IN (SELECT k FROM keys)`): a NULL x never matches;
a NULL key makes a non-match NULL, as for `In`; an empty set is FALSE for every row, NULL x
too. PANDAS dialect as `Series.isin`: a missing x matches only when the keys hold NULL or NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .errors import PlanInvalid

DEFAULT_MAX_KEYS = 2_000_000  # keys of one key set (AgentConfig.max_key_set_keys)
DEFAULT_MAX_BYTES = 32 << 20  # its Arrow IPC stream, as sent (AgentConfig.max_key_set_bytes)


def key_array(values: pa.Array | pa.ChunkedArray | Iterable[Any]) -> pa.Array:
    """The keys as one plain Arrow array (chunks joined, dictionaries decoded)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks else pa.array([], values.type)
    elif hasattr(values, "__array__"):  # numpy, pandas (a nullable dtype's NA is NULL)
        values = pa.array(values)
    elif not isinstance(values, pa.Array):
        values = pa.array(list(values))
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if pa.types.is_large_string(values.type) or pa.types.is_string_view(values.type):
        values = values.cast(pa.string())
    return values


def normalized(keys: pa.Array) -> pa.Array:
    """Distinct keys in ascending order, -0.0 as 0.0, NaN after numbers, one NULL last."""
    keys = key_array(keys)
    if pa.types.is_floating(keys.type):
        keys = pc.add(keys, pa.scalar(0.0, keys.type))  # -0.0 + 0.0 is 0.0
    keys = pc.unique(keys)
    return keys.take(pc.array_sort_indices(keys, null_placement="at_end"))


def describe_keys(keys: pa.Array) -> str:
    n = len(keys) - keys.null_count
    return f"<{n} key{'' if n == 1 else 's'}{' + NULL' if keys.null_count else ''}>"


def comparison_type(column_type: pa.DataType) -> pa.DataType:
    """The type keys are compared in against a column of `column_type` (logical)."""
    return pa.float64() if pa.types.is_floating(column_type) else column_type


def _kind(t: pa.DataType) -> str:
    for kind, test in (("number", _is_number), ("string", pa.types.is_string),
                       ("boolean", pa.types.is_boolean), ("date", pa.types.is_date),
                       ("timestamp", pa.types.is_timestamp), ("binary", pa.types.is_binary)):
        if test(t):
            return kind
    return str(t)


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def bound_keys(keys: pa.Array, column_type: pa.DataType, where: str,
               logical: Callable[[pa.DataType], pa.DataType]) -> pa.Array:
    """`keys` (normalized) in the comparison type of a column of `column_type`, exactly."""
    ct, kt = logical(column_type), logical(keys.type)
    target = comparison_type(ct)
    if pa.types.is_null(kt):
        return pa.nulls(len(keys), target)
    if _kind(kt) != _kind(ct):
        raise PlanInvalid(f"type mismatch in {where}: keys of type {kt} cannot be compared "
                          f"with {ct}")
    if pa.types.is_floating(kt) and not pa.types.is_floating(ct):
        raise PlanInvalid(f"{where}: float keys cannot be matched exactly against {ct}; "
                          "cast the keys (or the column) first")
    if pa.types.is_timestamp(kt) and kt.tz != ct.tz:
        raise PlanInvalid(f"{where}: keys of type {kt} and column of type {ct} differ in "
                          "time zone")
    if pa.types.is_integer(kt) and pa.types.is_integer(ct):
        keys = _in_range(keys, ct)  # a key beyond the column's type equals no value of it
    if pa.types.is_integer(kt) and pa.types.is_decimal(ct):  # Arrow checks precision by
        keys = keys.cast(pa.decimal128(20, 0))  # type here, by value from decimal to decimal
    try:
        out = pc.cast(keys, target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise PlanInvalid(f"{where}: keys of type {kt} do not convert exactly to {target} "
                          f"({exc})") from None
    return out  # an exact cast keeps the keys distinct and in order


def _in_range(keys: pa.Array, t: pa.DataType) -> pa.Array:
    info = pa.types
    bits = t.bit_width
    lo, hi = (0, 2**bits - 1) if info.is_unsigned_integer(t) else \
        (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    kt = keys.type
    k_lo, k_hi = (0, 2**kt.bit_width - 1) if info.is_unsigned_integer(kt) else \
        (-(2 ** (kt.bit_width - 1)), 2 ** (kt.bit_width - 1) - 1)
    if lo <= k_lo and k_hi <= hi:
        return keys
    inside = pc.and_(pc.greater_equal(keys, pa.scalar(max(lo, k_lo), kt)),
                     pc.less_equal(keys, pa.scalar(min(hi, k_hi), kt)))
    return keys.filter(pc.or_kleene(inside, pc.is_null(keys)))  # NULL keys keep their meaning


def same_keys(a: pa.Array, b: pa.Array) -> bool:
    """Equal as key sets are: NaN equals NaN (Arrow's `equals` says it does not)."""
    if a.type != b.type or len(a) != len(b):
        return False
    if pa.types.is_floating(a.type):
        nan_a, nan_b = pc.is_nan(a), pc.is_nan(b)
        if not nan_a.equals(nan_b):
            return False
        zero = pa.scalar(0.0, a.type)
        a, b = pc.if_else(nan_a, zero, a), pc.if_else(nan_b, zero, b)
    return bool(a.equals(b))


def split_null(keys: pa.Array) -> tuple[pa.Array, bool]:
    """(the non-NULL keys, whether the set holds NULL)."""
    return (keys.drop_null(), True) if keys.null_count else (keys, False)


def to_ipc(keys: pa.Array) -> bytes:
    """The wire form: one uncompressed Arrow IPC stream, one column `k`."""
    sink = pa.BufferOutputStream()
    table = pa.table({"k": keys})
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()  # type: ignore[no-any-return]


def from_ipc(data: bytes) -> pa.Array:
    """Keys from their wire form; PlanInvalid for anything but one valid column."""
    try:
        table = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
        if table.num_columns != 1:
            raise ValueError(f"{table.num_columns} columns, not one")
        keys = key_array(table.column(0))
        keys.validate(full=True)
    except (pa.ArrowInvalid, pa.ArrowIOError, pa.ArrowNotImplementedError, ValueError) as exc:
        raise PlanInvalid(f"key set is not an Arrow IPC stream of one column: {exc}") from None
    return keys


def check_size(count: int, nbytes: int, max_keys: int, max_bytes: int) -> None:
    """PlanInvalid naming the limit a key set of `count` keys in `nbytes` bytes exceeds."""
    if count > max_keys:
        raise PlanInvalid(f"key set of {count} keys exceeds the limit of {max_keys} "
                          "(max_key_set_keys)")
    if nbytes > max_bytes:
        raise PlanInvalid(f"key set of {nbytes} bytes exceeds the limit of {max_bytes} "
                          "(max_key_set_bytes)")
