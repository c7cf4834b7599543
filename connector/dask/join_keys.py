"""Join key pushdown: a merge of a `read_bpfstore` scan with a small frame filters the scan
by the small side's join keys, so the agents return only rows that can match.

The rule (`rewrite`, called by `BpfScan._tune_up` once simplify has settled the plan):
- a `Merge` on one column each side (`on=`/`left_on=`/`right_on=`; not on the index, no
  `indicator`), whose filtered ("big") side is a frame scan of read_bpfstore (its
  `join_pushdown` on) and whose rows the merge may drop: `how="inner"` either side,
  `"right"` the left side, `"left"` the right side, `"leftsemi"` the left side;
- the other ("small") side has one partition, or at most `max_join_keys` rows by a cheap
  bound (a read_bpfstore scan's filtered row count, one COUNT(*) call, under the filters,
  projections, renames and assigns above it), and fewer rows than the big side (one
  partition of unknown length: the big side has several); when both sides qualify, the
  one with the smaller bound is the small side;
- both keys of one kind: signed integers (any width), unsigned ones, floats, strings (`str`),
  or one datetime64 dtype (anything else, Arrow dtypes included, is left alone).
Then the small side is computed once, here, and the merge reads it as a one-partition
`from_pandas`; its distinct keys (at most `max_join_keys`, else the scan is left as it was)
become the scan filter: a key set (`KeySet`, one Arrow array, evaluated vectorized on the
agents and in the kernel where a partition's range admits few keys) where the keys convert
exactly to the column's type, else the `In` list `key_filter` builds. pandas' merge matches
missing keys with missing keys (NaN with NaN, None with NaN), so a small side with a missing
key keeps the big side's missing keys too (a NULL key in the PANDAS dialect). The filter may
keep rows the merge drops, never the reverse. (With dask's "optimization.tune.active" off,
nothing is pushed.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from bpfstore.contract import keysets
from bpfstore.contract.binding import logical_type
from bpfstore.contract.errors import BpfstoreError, PlanInvalid
from bpfstore.contract.plan import Column, Expr, In, IsNull, KeySet, Literal, Or, and_all
from bpfstore.contract.plan import conjuncts as plan_conjuncts
from bpfstore.contract.pushable import Capabilities, split_pushable

from . import _compat as c
from .scan import ScanBase
from .source import rows_matching
from .translate import literal_for

MAX_KEYS = 100_000  # the agents' IN-list limit (AgentConfig.max_in_list)
# a key set's keys (AgentConfig.max_key_set_keys) and Arrow bytes, with room for IPC framing
MAX_SET_KEYS, MAX_SET_BYTES = keysets.DEFAULT_MAX_KEYS, keysets.DEFAULT_MAX_BYTES // 2
# the merge may drop the unmatched rows of these sides
_FILTERABLE = {"inner": ("left", "right"), "right": ("left",), "left": ("right",),
               "leftsemi": ("left",)}


@dataclass(frozen=True)
class PushedKeys:
    """What one merge pushed into a scan: shown by `explain`."""

    column: str
    keys: int  # distinct keys, missing ones not counted
    missing: bool  # the small side had a missing key: missing keys kept too
    small_rows: int
    form: str = "an IN list"  # or "a key set"

    def describe(self) -> str:
        nulls = " or missing" if self.missing else ""
        return (f"join keys pushed: {self.column} in {self.keys:,} key(s){nulls} "
                f"(from a small side of {self.small_rows:,} rows), as {self.form}")


def key_filter(column: str, keys: list[Literal], missing: bool) -> Expr:
    """The scan filter keeping the rows whose `column` is one of `keys` (or missing, when the
    small side had a missing key): an `In` list for now. Never an AND (explain takes it off
    the end of the scan's conjuncts)."""
    ref = Column(column)
    found = In(ref, tuple(keys))  # no key at all: matches no row
    return Or((found, IsNull(ref))) if missing else found


def rewrite(merge: Any) -> Any:
    """`merge` with its small side computed and its keys pushed into the big side's scan,
    or None (unchanged) outside the rule in the module docstring."""
    if type(merge) is not c.Merge or merge.operand("left_index") or \
            merge.operand("right_index") or merge.operand("indicator"):
        return None
    left_on, right_on = _one(merge.operand("left_on")), _one(merge.operand("right_on"))
    if left_on is None or right_on is None:
        return None
    on = {"left": left_on, "right": right_on}
    best = None
    for side in _FILTERABLE.get(merge.operand("how"), ()):
        other = "right" if side == "left" else "left"
        big, small = merge.operand(side), merge.operand(other)
        if not _filterable(big, on[side]) or on[other] not in small._meta.columns or \
                not _same_kind(big._meta[on[side]].dtype, small._meta[on[other]].dtype):
            continue
        bound = _small_bound(small, big.source.join_keys)
        if bound is None or not (bound < _stored_rows(big) if math.isfinite(bound)
                                 else big.npartitions > 1):
            continue
        if best is None or bound < best[0]:
            best = (bound, side, other)
    if best is None:
        return None
    _, side, other = best
    big, small = merge.operand(side), merge.operand(other)
    frame = _computed(small)
    if frame is None:
        return None
    new_small = _from_pandas(frame)
    pushed = _pushed(big, on[side], frame[on[other]])
    new_big = big
    if pushed is not None:
        where, info = pushed
        new_big = big.substitute_parameters({
            "filters": and_all(plan_conjuncts(big.operand("filters")) + [where]),
            "join_keys": (*big.operand("join_keys"), info)})
    ops = dict(zip(type(merge)._parameters, merge.operands, strict=False))
    ops[side], ops[other] = new_big, new_small
    return type(merge)(*[ops[p] for p in type(merge)._parameters])


def _one(on: Any) -> str | None:
    if isinstance(on, list | tuple):
        on = on[0] if len(on) == 1 else None
    return on if isinstance(on, str) else None


def _filterable(big: Any, key: str) -> bool:
    return isinstance(big, ScanBase) and big.kind == "frame" and big.source.join_keys > 0 \
        and not big.operand("join_keys") and key in big.columns and key not in big.computed


def _stored_rows(scan: ScanBase) -> int:
    return rows_matching(scan.source, None, tuple(scan.task_indices))


def _same_kind(big: Any, small: Any) -> bool:
    """Key dtypes whose values pandas' merge and the plan's IN compare alike."""
    kinds = [getattr(d, "kind", None) if isinstance(d, np.dtype) else None for d in (big, small)]
    if kinds in (["i", "i"], ["u", "u"], ["f", "f"]):  # int32 with int64: exact; int64 with
        return True  # uint64 may meet as float64 in pandas, equal where the ints differ
    if kinds == ["M", "M"]:
        return bool(big == small)
    return isinstance(big, pd.StringDtype) and isinstance(small, pd.StringDtype)


def _small_bound(small: Any, limit: int) -> float | None:
    """An upper bound of the small side's rows when it is small (inf: one partition of
    unknown length), else None."""
    node = small
    while type(node) in (c.Filter, c.Projection, c.Assign, c.RenameFrame):
        node = node.frame
    if isinstance(node, ScanBase):
        try:
            rows = rows_matching(node.source, node.operand("filters"), tuple(node.task_indices))
        except BpfstoreError:
            rows = None
        if rows is not None and rows <= limit:
            return rows
    return math.inf if small.npartitions == 1 else None


def _computed(small: Any) -> pd.DataFrame | None:
    """The small side as pandas, with the dtypes the merge was planned with, or None."""
    frame = c.new_collection(small).compute()
    meta = small._meta
    if not isinstance(frame, pd.DataFrame) or list(frame.columns) != list(meta.columns):
        return None
    if not frame.dtypes.equals(meta.dtypes):
        try:
            frame = frame.astype(meta.dtypes.to_dict())
        except (TypeError, ValueError):
            return None
    return frame


def _from_pandas(frame: pd.DataFrame) -> Any:
    import dask
    import dask.dataframe as dd

    # the computed columns already hold the merge's dtypes (`str`): keep them
    with dask.config.set({"dataframe.convert-string": False}):
        return dd.from_pandas(frame, npartitions=1, sort=False).expr


def _pushed(big: ScanBase, column: str, keys: pd.Series) -> tuple[Expr, PushedKeys] | None:
    """The filter for `big` from the small side's key column, or None when there are more
    distinct keys than the big side's `join_keys` or one has no literal for its column."""
    missing = bool(keys.isna().any())
    values = pd.Series(pd.unique(keys.dropna())).sort_values(ignore_index=True)
    if len(values) > min(big.source.join_keys, MAX_SET_KEYS):
        return None
    schema = big.source.desc.stored_schema
    stored = schema.field(column).type
    as_set = key_set(column, values, missing, schema)
    if as_set is not None:
        where, n = as_set
        return where, PushedKeys(column, n, missing, len(keys), "a key set")
    if len(values) > MAX_KEYS:
        return None
    dtype = big._meta[column].dtype
    literals = []
    for v in values.tolist():
        lit = literal_for(v, dtype)
        if lit is None:
            return None
        if pa.types.is_integer(stored) and not _fits(lit.value, stored):
            continue  # outside the column's range: matches no row
        literals.append(lit)
    info = PushedKeys(column, len(literals), missing, len(keys))
    return key_filter(column, literals, missing), info


def key_set(column: str, values: pd.Series, missing: bool, schema: pa.Schema
            ) -> tuple[KeySet, int] | None:
    """`column IN <values>` (plus a NULL key when the small side had a missing key: in the
    PANDAS dialect a missing row then matches, as in the merge) and the number of keys the
    column can hold, or None where the keys do not convert exactly to the column's type
    (e.g. ns timestamps against a us column, dates) or would not fit a key set."""
    try:
        keys = keysets.key_array(values)
        if missing:
            keys = pa.concat_arrays([keys, pa.nulls(1, keys.type)])
        if keys.nbytes > MAX_SET_BYTES:
            return None
        bound = keysets.bound_keys(keysets.normalized(keys), schema.field(column).type,
                                   "join keys", logical_type)
    except (PlanInvalid, pa.ArrowException, TypeError, ValueError):
        return None
    found = KeySet(Column(column), keys)
    _, residual = split_pushable(found, Capabilities(schema))
    return None if residual else (found, len(bound) - bound.null_count)


def _fits(value: Any, t: pa.DataType) -> bool:
    try:
        pa.scalar(value, t)
    except (pa.ArrowInvalid, OverflowError):
        return False
    return True
