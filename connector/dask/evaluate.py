"""Computed columns evaluated with pandas, for scans whose aggregate stayed in Dask."""

from __future__ import annotations

import operator
from typing import Any

import pandas as pd

from bpfstore.contract.plan import Arith, ArithOp, Column, Expr, Literal, Negate

_OPS = {ArithOp.ADD: operator.add, ArithOp.SUB: operator.sub, ArithOp.MUL: operator.mul,
        ArithOp.DIV: operator.truediv}


def evaluate(e: Expr, frame: pd.DataFrame) -> Any:
    """The value expression `e` over `frame`'s columns, exactly as the user's pandas would."""
    match e:
        case Column(name=name):
            return frame[name]
        case Literal(value=value):
            return value
        case Arith(op=op, left=left, right=right):
            return _OPS[op](evaluate(left, frame), evaluate(right, frame))
        case Negate(arg=arg):
            return -evaluate(arg, frame)
    raise TypeError(f"not a value expression: {e!r}")
