"""Exact grouped sums through 32-bit limbs: `limb_columns` split the values, Arrow's grouped
int64 sums add the limbs, `totals_from_limb_sums` carries them back into decimal words. Checked
against Python's exact integers, with the extremes of every width, NULLs and totals at the
precision's limit (ArithmeticOverflow exactly when the total does not fit)."""

from __future__ import annotations

import decimal

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bpfstore.contract import decimals
from bpfstore.contract.errors import ArithmeticOverflow

I64 = st.integers(-(2**63), 2**63 - 1)
D128 = st.integers(-(10**38) + 1, 10**38 - 1)
D256 = st.integers(-(10**76) + 1, 10**76 - 1)
EDGES = st.sampled_from([0, 1, -1, 2**63 - 1, -(2**63), 2**64, -(2**64), 10**38 - 1,
                         -(10**38) + 1, 2**127 - 1, -(2**127), 10**76 - 1, -(10**76) + 1])


def _exact_grouped(values: list[int | None], groups: list[int]) -> dict[int, int | None]:
    out: dict[int, int | None] = {}
    for v, g in zip(values, groups, strict=True):
        out.setdefault(g, None)
        if v is not None:
            out[g] = (out[g] or 0) + v
    return out


def _grouped(data: pa.Array, groups: list[int], t: pa.DataType) -> dict[int, int | None]:
    limbs = decimals.limb_columns(pa.chunked_array([data]))
    table = pa.table({"g": groups, **{f"l{i}": limb for i, limb in enumerate(limbs)}})
    g = table.group_by("g", use_threads=False).aggregate(
        [(f"l{i}", "sum", pa.compute.ScalarAggregateOptions(min_count=1))
         for i in range(len(limbs))])
    totals = decimals.totals_from_limb_sums([g.column(f"l{i}_sum") for i in range(len(limbs))],
                                            t)
    assert totals.type == t
    totals.validate(full=True)
    return {k: None if v is None else decimals.unscaled(v, t.scale)
            for k, v in zip(g.column("g").to_pylist(), totals.to_pylist(), strict=True)}


@settings(max_examples=300, deadline=None)
@given(data=st.data(), kind=st.sampled_from(["int64", "decimal128", "decimal256"]),
       scale=st.integers(0, 10))
def test_limb_sums_equal_exact_integers(data: st.DataObject, kind: str, scale: int) -> None:
    values_of = {"int64": I64, "decimal128": D128, "decimal256": D256}[kind]
    edge = EDGES.filter(lambda v: kind != "int64" and abs(v) < 10 ** (76 if kind[-3:] == "256"
                                                                       else 38)
                        or kind == "int64" and -(2**63) <= v < 2**63)
    values = data.draw(st.lists(st.none() | values_of | edge, max_size=40))
    groups = data.draw(st.lists(st.integers(0, 4), min_size=len(values),
                                max_size=len(values)))
    if kind == "int64":
        arr, scale = pa.array(values, pa.int64()), 0
    else:
        width = pa.decimal128(38, scale) if kind == "decimal128" else pa.decimal256(76, scale)
        arr = pa.array([None if v is None else decimals.to_decimal(v, scale)
                        for v in values], width)
    t = data.draw(st.sampled_from([pa.decimal128(38, scale), pa.decimal256(76, scale)]))
    want = _exact_grouped(values, groups)
    if any(v is not None and abs(v) >= 10**t.precision for v in want.values()):
        with pytest.raises(ArithmeticOverflow):
            _grouped(arr, groups, t)
        return
    assert _grouped(arr, groups, t) == want


def test_a_total_at_the_limit_fits_and_one_more_overflows() -> None:
    top = 10**38 - 1
    arr = pa.array([decimal.Decimal(top - 1), decimal.Decimal(1)], pa.decimal128(38, 0))
    assert _grouped(arr, [0, 0], pa.decimal128(38, 0)) == {0: top}
    arr = pa.array([decimal.Decimal(top), decimal.Decimal(1)], pa.decimal128(38, 0))
    with pytest.raises(ArithmeticOverflow):
        _grouped(arr, [0, 0], pa.decimal128(38, 0))
    assert _grouped(arr, [0, 0], pa.decimal256(76, 0)) == {0: top + 1}


@pytest.mark.parametrize("total", [2**128 + 5, -(2**128) + 5, -(2**128) - 5,
                                   -240282367020938476664044371152937680896])
def test_decimal256_totals_past_128_bits_overflow_a_decimal128_total(total: int) -> None:
    """The low 128 bits of these totals look like a decimal128 that fits (5, -5, 9.99e37): the
    limbs above them decide (found by the property test above)."""
    arr = pa.array([decimal.Decimal(total)], pa.decimal256(76, 0))
    assert _grouped(arr, [0], pa.decimal256(76, 0)) == {0: total}
    with pytest.raises(ArithmeticOverflow):
        _grouped(arr, [0], pa.decimal128(38, 0))
