"""Which filter terms the agents run: the one decision every front end (Spark, SQL, Dask)
asks for, so none drops a term or pushes one the agents would refuse.

A term is pushed when it binds against the dataset's schema (the agent would accept it) and
the front end's capabilities allow it; every other term is a residual the front end applies
itself, or it reads everything. The pushed terms AND the residual terms are the filter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import pyarrow as pa

from .binding import bind_predicate
from .errors import BpfstoreError
from .keysets import DEFAULT_MAX_KEYS
from .plan import Expr, KeySet, columns_of, conjuncts, walk


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a front end may hand to the agents."""

    schema: pa.Schema | None = None  # the dataset's stored schema; None: not known yet
    timestamps: bool = True  # False: terms on timestamp columns stay (Spark's Python filters)
    key_sets: bool = True  # False: agents without KeySet (their GetInfo has no max_key_set_keys)
    max_key_set_keys: int = DEFAULT_MAX_KEYS  # larger key sets stay with the caller


class Residual(NamedTuple):
    term: Expr
    reason: str


def split_pushable(expr: Expr | None, capabilities: Capabilities
                   ) -> tuple[list[Expr], list[Residual]]:
    """(the conjuncts of `expr` the agents run, those the caller keeps, each with why)."""
    pushed: list[Expr] = []
    residual: list[Residual] = []
    for term in conjuncts(expr):
        reason = _why_not(term, capabilities)
        if reason is None:
            pushed.append(term)
        else:
            residual.append(Residual(term, reason))
    return pushed, residual


def _why_not(term: Expr, capabilities: Capabilities) -> str | None:
    sets = [n for n in walk(term) if isinstance(n, KeySet)]
    if sets and not capabilities.key_sets:
        return "the agents do not run key sets"
    if (n := max((len(k.keys) for k in sets), default=0)) > capabilities.max_key_set_keys:
        return f"a key set of {n} keys exceeds max_key_set_keys ({capabilities.max_key_set_keys})"
    schema = capabilities.schema
    if schema is None:
        return None
    if not capabilities.timestamps and any(
            schema.get_field_index(c) >= 0 and pa.types.is_timestamp(schema.field(c).type)
            for c in columns_of([term])):
        return "timestamp literals stay with the caller (time zones)"
    try:
        bind_predicate(term, schema)  # a literal that does not fit its column stays behind
    except (BpfstoreError, TypeError, ValueError, KeyError) as exc:
        return str(exc)
    return None
