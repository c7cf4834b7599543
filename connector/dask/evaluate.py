"""Computed columns evaluated with pandas, for scans whose aggregate stayed in Dask."""

from __future__ import annotations

import operator
from typing import Any

import pandas as pd

from bpfstore.contract.plan import Arith, ArithOp, Column, Expr, Literal, Negate, PlanVisitor

_OPS = {ArithOp.ADD: operator.add, ArithOp.SUB: operator.sub, ArithOp.MUL: operator.mul,
        ArithOp.DIV: operator.truediv}


def evaluate(e: Expr, frame: pd.DataFrame) -> Any:
    """The value expression `e` over `frame`'s columns, exactly as the user's pandas would."""
    return _Pandas(frame).visit(e)


class _Pandas(PlanVisitor[Any]):
    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame

    def column(self, e: Column) -> Any:
        return self.frame[e.name]

    def literal(self, e: Literal) -> Any:
        return e.value

    def arith(self, e: Arith, left: Any, right: Any) -> Any:
        return _OPS[e.op](left, right)

    def negate(self, e: Negate, arg: Any) -> Any:
        return -arg

    def unsupported(self, e: Expr) -> Any:
        raise TypeError(f"not a value expression: {e!r}")
