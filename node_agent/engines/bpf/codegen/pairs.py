"""Column-against-column comparisons (`l_commitdate < l_receiptdate`): both sides as s64
in one exact representation, one branch-free signed test, NULLs as in the column-literal
words. Refused (arrow runs them): floats, temporal columns of different types (units, time
zones, date against timestamp), strings unless both use one dictionary (= and != only), and
a decimal rescaling the statistics cannot prove free of int64 overflow."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from bpfstore.contract.binding import logical_type
from bpfstore.contract.errors import Unsupported
from bpfstore.contract.plan import CompareOp, Dialect, Expr, describe

from .overflow import rescaled
from .typemap import scale_of
from .windows import Windows


class Pairs(Windows):
    """The (certainly true, certainly false) words of `column op column`."""

    def pair_word(self, a: str, op: CompareOp, b: str, e: Expr) -> tuple[str, str]:
        codes = self._codes(a, op, b, e)
        (x, _), (y, _) = self._operands(a, b, codes, e)
        flip = op is CompareOp.NE
        test = _test(CompareOp.EQ if flip else op, x, y)
        valid = [v for n in dict.fromkeys((a, b)) if (v := self.valid_bit(n)) is not None]
        guard = " & ".join(f"(0 - {v})" for v in valid)
        t = f"({test}) & {guard}" if guard else test
        f = f"~({test}) & {guard}" if guard and self.dialect is Dialect.SQL else f"~({t})"
        if not flip:
            return t, f
        # != : SQL swaps the certain words; in pandas a missing value makes != true
        return (f, t) if self.dialect is Dialect.SQL else (f"~({t})", t)

    def _codes(self, a: str, op: CompareOp, b: str, e: Expr) -> bool:
        """Whether the test compares dictionary codes (equal codes: equal strings)."""
        ta, tb = self.schema.field(a).type, self.schema.field(b).type
        if pa.types.is_floating(ta) or pa.types.is_floating(tb):
            raise Unsupported(f"bpf: {describe(e)} compares floats; it runs on arrow")
        la, lb = logical_type(ta), logical_type(tb)
        if pa.types.is_dictionary(ta) or pa.types.is_dictionary(tb):
            both = pa.types.is_dictionary(ta) and pa.types.is_dictionary(tb)
            d = self._dictionary(a) if both else None
            if op not in (CompareOp.EQ, CompareOp.NE) or d is None or \
                    not d.equals(self._dictionary(b)) or len(pc.unique(d)) != len(d):
                raise Unsupported(f"bpf: {describe(e)} is not = or != on one dictionary")
            return True  # its values are distinct: equal codes, equal strings
        temporal = any(pa.types.is_temporal(t) for t in (la, lb))
        if temporal and la != lb:  # units, time zones, date against timestamp: not cast here
            raise Unsupported(f"bpf: {describe(e)} compares {la} with {lb}")
        return False

    def _operands(self, a: str, b: str, codes: bool, e: Expr
                  ) -> tuple[tuple[str, tuple[int, int]], tuple[str, tuple[int, int]]]:
        """Both columns' C values and bounds, brought to one decimal scale."""
        for name in (a, b):
            self.readable(name, codes)
        sa, sb = (scale_of(self.schema.field(n).type) for n in (a, b))
        scale = max(sa, sb)
        x = rescaled(self.value(a, codes), self.bounds(a), scale - sa, e)
        y = rescaled(self.value(b, codes), self.bounds(b), scale - sb, e)
        return x, y


def _test(op: CompareOp, x: str, y: str) -> str:
    """The word whose sign bit says `x op y`. Always a test, even where the statistics
    decide it (they prune a partition where no row can match): one shape for every partition."""
    if op is CompareOp.EQ:
        return f"~(less_mask({x}, {y}) | less_mask({y}, {x}))"
    p, q, negate = {CompareOp.LT: (x, y, False), CompareOp.GT: (y, x, False),
                    CompareOp.GE: (x, y, True), CompareOp.LE: (y, x, True)}[op]
    return f"~less_mask({p}, {q})" if negate else f"less_mask({p}, {q})"
