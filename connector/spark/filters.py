"""Spark `pushFilters` filter objects -> plan expressions: `from_spark_filter(f)`.

Only what Spark's Python API sends arrives here (top-level AND-ed leaves, `Not` of a leaf);
the extension sends whole trees through `spec.py`. A filter is accepted only when it
translates and binds against the dataset's schema; everything else stays with Spark.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from bpfstore.contract.errors import BpfstoreError, Unsupported
from bpfstore.contract.plan import (
    And,
    Column,
    Compare,
    CompareOp,
    Expr,
    In,
    IsNull,
    Literal,
    Not,
    Or,
)
from bpfstore.contract.pushable import Capabilities, split_pushable

IN_LIST_MAX = 16  # larger IN sets travel as key sets (as the extension's Translate.IN_LIST_MAX)

_COMPARE = {"EqualTo": CompareOp.EQ, "GreaterThan": CompareOp.GT,
            "GreaterThanOrEqual": CompareOp.GE, "LessThan": CompareOp.LT,
            "LessThanOrEqual": CompareOp.LE}


def _column(attribute: tuple[str, ...]) -> Column:
    if len(attribute) != 1:
        raise Unsupported(f"nested column {'.'.join(attribute)}")
    return Column(attribute[0])


def _literal(value: Any) -> Literal:
    if isinstance(value, list | tuple | dict | bytes | bytearray):
        raise Unsupported(f"literal {value!r}")
    return Literal(value)


def from_spark_filter(f: Any) -> Expr:
    """The plan expression of one `pyspark.sql.datasource.Filter`; Unsupported otherwise."""
    kind = type(f).__name__
    if kind in _COMPARE:
        return Compare(_COMPARE[kind], _column(f.attribute), _literal(f.value))
    if kind == "EqualNullSafe":
        c = _column(f.attribute)
        if f.value is None:
            return IsNull(c)
        # a <=> v (v not null) is never NULL: true exactly when a is not null and a = v
        return And((Not(IsNull(c)), Compare(CompareOp.EQ, c, _literal(f.value))))
    if kind == "In":
        values = tuple(_literal(v) for v in f.value)
        if len(values) > IN_LIST_MAX:  # a join's keys, or a long IN list: one key set
            return _column(f.attribute).isin_keys([v.value for v in values])
        return In(_column(f.attribute), values)
    if kind == "IsNull":
        return IsNull(_column(f.attribute))
    if kind == "IsNotNull":
        return Not(IsNull(_column(f.attribute)))
    if kind == "Not":
        return Not(from_spark_filter(f.child))
    if kind in ("And", "Or"):  # not sent by Spark 4.1-4.3, but cheap to accept
        parts = (from_spark_filter(f.left), from_spark_filter(f.right))
        return And(parts) if kind == "And" else Or(parts)
    raise Unsupported(f"filter {kind}")


def split_filters(filters: list[Any], schema: pa.Schema) -> tuple[list[Expr], list[Any]]:
    """(accepted plan expressions, filters Spark must keep), checked against `schema`."""
    capabilities = Capabilities(schema, timestamps=False)  # time zones: Spark compares those
    accepted: list[Expr] = []
    rejected: list[Any] = []
    for f in filters:
        try:
            e = from_spark_filter(f)
        except (BpfstoreError, KeyError, TypeError, ValueError):
            rejected.append(f)
            continue
        _, residual = split_pushable(e, capabilities)
        if residual:  # Spark keeps the whole filter (and applies it again)
            rejected.append(f)
        else:
            accepted.append(e)
    return accepted, rejected
