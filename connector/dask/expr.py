"""The dask-expr expressions: `BpfScan` (rows), `BpfPartials` + `BpfAggregate` (pushdown).

Dask's optimizer calls `child._simplify_up(parent, dependents)` on every node; `BpfScan` uses
it to absorb its parent when the parent can run on the agents: a projection, a filter (the
translatable half of an AND; the rest stays above as a Filter), arithmetic and `assign`
(computed columns, inlined in stored columns), and finally a reduction or a groupby
aggregation, which becomes `BpfAggregate(BpfPartials)`: one Aggregate call per partition and
Dask's own tree reduction merging the partials exactly. What is not absorbed runs in Dask on
the rows the scan returns. Then, in dask's "tune" pass, a merge with a small frame pushes the
small side's join keys into the scan (`join_keys.py`).
"""

from __future__ import annotations

import functools
import operator
from typing import Any

import pandas as pd
from dask.base import tokenize

from bpfstore.contract.plan import and_all
from bpfstore.contract.plan import conjuncts as plan_conjuncts

from . import _compat as c
from . import aggregates, join_keys, translate
from .scan import ScanBase
from .source import Source, partials_partition


class BpfScan(ScanBase):
    """A scan that absorbs the parents the agents can run (see the module docstring)."""

    # -- absorbing parents -----------------------------------------------------------------

    def _filter_passthrough_available(self, parent: Any, dependents: Any) -> bool:
        # Whether `_filter` will absorb (part of) this Filter, even when the scan is shared:
        # then dask must not push projections below it, which would hide it from this scan.
        # Otherwise (a residual filter) the projection may pass and narrow the scan.
        if type(parent) is not c.Filter or parent.frame is not self:
            return False
        if not any(translate.pushable(t, self) is not None
                   for t in translate.conjuncts(parent.predicate)):
            return False
        return not _mixed_with_other_rows(parent, self.source, dependents)

    def _tune_up(self, parent: Any) -> Any:
        # After simplify has settled filters and projections on both sides of a merge:
        # the small side is known, and so is what this scan reads.
        if type(parent) is c.Merge:
            return join_keys.rewrite(parent)
        return super()._tune_up(parent)

    def _simplify_up(self, parent: Any, dependents: Any) -> Any:
        t = type(parent)
        if t is c.Projection and self.kind == "frame":
            return self._projection(parent, dependents)
        if getattr(parent, "frame", None) is not self:  # Binops: self is left or right
            if t in c.ARITH and self.kind == "series":
                return self._arithmetic(parent)
            return None
        if t is c.Index and self.kind != "index":
            return self.substitute_parameters({"columns": [], "kind": "index", "exprs": (),
                                               "series_name": None})
        if t is c.Filter:
            return self._filter(parent, dependents)
        if t is c.Assign and self.kind == "frame":
            return self._assign(parent)
        if t is c.Neg and self.kind == "series":
            return self._arithmetic(parent)
        if not self.source.aggregates:
            return None
        spec = aggregates.reduction_spec(self, parent)
        if spec is None and (t in c.GROUPBY_SINGLE or t is c.GROUPBY_SPEC):
            spec = aggregates.groupby_spec(self, parent)
        if spec is None:
            return None
        partials = BpfPartials(self.source, spec.plan, self.operand("_partitions"))
        return BpfAggregate(partials, spec)

    def _projection(self, parent: Any, dependents: Any) -> Any:
        wanted = parent.operand("columns")
        found: Any = c.determine_column_projection(self, parent, dependents)
        needed = [found] if isinstance(found, str) else list(found)
        if isinstance(wanted, str) and wanted in self.columns and \
                (needed == [wanted] or _feeds_arithmetic(parent, dependents)):
            return self.substitute_parameters(
                {"columns": [wanted], "kind": "series", "series_name": wanted})
        keep = [col for col in self.columns if col in needed]
        wanted_list = [wanted] if isinstance(wanted, str) else list(wanted)
        if set(keep) == set(wanted_list) and not isinstance(wanted, str):
            # Absorb in the parent's order: a reordering Projection left on top would hide
            # this scan from the Assign or groupby above it.
            if wanted_list == self.columns:
                return None
            return self.substitute_parameters({"columns": wanted_list})
        if set(keep) == set(self.columns):
            if not isinstance(wanted, str) and set(wanted_list) < set(self.columns) and \
                    _feeds_assign(parent, dependents):
                # `f.assign(d=...)` of a frame whose scan other users read whole (TPC-H Q1's
                # chained assigns on a filtered frame): a narrow scan of its own lets the
                # assign, and what is computed from it, be absorbed
                return self.substitute_parameters({"columns": wanted_list})
            return None
        narrowed: Any = self.substitute_parameters({"columns": keep})
        return narrowed[wanted]

    def _filter(self, parent: Any, dependents: Any) -> Any:
        if _mixed_with_other_rows(parent, self.source, dependents):
            return None  # agents renumber filtered rows: keep pandas' labels for alignment
        # Unlike ReadParquet, no `is_filter_pushdown_available` check: the filtered scan is a
        # new node for this parent only, and other users of `self` keep it. Reading twice is
        # what lets two queries computed together both push down.
        pushed, rest = [], []
        for term in translate.conjuncts(parent.predicate):
            p = translate.pushable(term, self)
            if p is None:
                rest.append(term)
            else:
                pushed.append(p)
        if not pushed:
            return None
        new = self.substitute_parameters({"filters": and_all(
            plan_conjuncts(self.operand("filters")) + pushed)})
        if not rest:
            return new
        # The rest runs in Dask on the filtered rows: re-point its column reads at them.
        residual = functools.reduce(operator.and_, rest)
        for node in list(residual.walk()):
            if isinstance(node, BpfScan) and node.same_rows(self):
                residual = residual.substitute(node, node.substitute_parameters(
                    {"filters": new.operand("filters")}))
        return c.Filter(new, residual)

    def _assign(self, parent: Any) -> Any:
        exprs = dict(self.computed)
        for key, val in zip(parent.keys, parent.vals, strict=True):
            ref = translate.column_ref(val, self)
            if not isinstance(key, str) or ref is None:
                return None
            exprs[key] = (ref[0], parent._meta[key].dtype)
        return self.substitute_parameters({
            "exprs": tuple((n, e, d) for n, (e, d) in exprs.items()),
            "columns": list(parent._meta.columns)})

    def _arithmetic(self, parent: Any) -> Any:
        view = self.source.view
        e = translate.arithmetic(parent, self, view)
        if e is None or not translate.is_numeric(parent._meta.dtype, view):
            return None
        name = "__e_" + tokenize(repr(e))[:12]
        return BpfScan(self.source, [name], self.operand("filters"),
                       ((name, e, parent._meta.dtype),), "series", parent._meta.name,
                       self.operand("_partitions"), self.operand("join_keys"))


def _mixed_with_other_rows(filtered: Any, source: Source, dependents: Any) -> bool:
    """Whether the rows of `filtered` meet, in one row-wise operation, rows of `source` that
    did not go through it (`df[p].assign(v=df.d * 2)`): pandas aligns them by row label, and
    a pushed filter loses the labels (the agents return only the matching rows)."""
    seen, todo = {filtered._name}, [filtered]
    while todo:
        node = todo.pop()
        for ref in dependents.get(node._name, []):
            user = ref()
            if user is None or user._name in seen:
                continue
            seen.add(user._name)
            for dep in user.dependencies():
                if dep._name == node._name or not getattr(dep, "ndim", 0):
                    continue
                names = {n._name for n in dep.walk()}
                if filtered._name in names:
                    continue
                if any(isinstance(n, BpfScan) and n.source == source for n in dep.walk()):
                    return True
            if isinstance(user, c.Blockwise) and user.ndim:
                todo.append(user)  # still row-wise: its users meet the same rows
    return False


def _feeds_assign(projection: Any, dependents: Any) -> bool:
    users = [r() for r in dependents.get(projection._name, [])]
    return bool(users) and all(type(u) is c.Assign and u.frame is projection
                               for u in users if u is not None)


def _feeds_arithmetic(projection: Any, dependents: Any) -> bool:
    users = [r() for r in dependents.get(projection._name, [])]
    return any(type(u) in c.ARITH or type(u) is c.Neg or type(u) is c.Assign
               for u in users if u is not None)


class BpfPartials(c.PartitionsFiltered, c.BlockwiseIO):
    """One task per scan task (the same bpfstore partitions, so `_partitions` means the same):
    their agent's merged partial aggregates (an Arrow table, a few bytes)."""

    _parameters = ["source", "plan", "_partitions"]
    _defaults = {"_partitions": None}

    @functools.cached_property
    def _meta(self) -> pd.DataFrame:
        return pd.DataFrame()

    @functools.cached_property
    def _name(self) -> str:
        source = self.operand("source")
        return f"bpfstore-partials-{source.dataset}-v{source.version}-" + tokenize(
            source, repr(self.operand("plan")), self.operand("_partitions"))

    def _divisions(self) -> tuple[None, ...]:
        return (None,) * (len(self.operand("source").task_partitions) + 1)

    def _filtered_task(self, name: Any, index: int) -> Any:
        return c.Task(name, partials_partition, self.operand("source"), index,
                      self.operand("plan"), _data_producer=True)


class BpfAggregate(c.ApplyConcatApply):
    """Dask's tree reduction over partials: merge exactly, then finish into pandas.
    (combine/aggregate must be classmethods: TreeReduce names itself after their class.)"""

    _parameters = ["frame", "spec"]

    @functools.cached_property
    def _meta(self) -> Any:
        return self.operand("spec").meta

    @property
    def chunk_kwargs(self) -> dict:  # type: ignore[override]
        return {}

    @property
    def combine_kwargs(self) -> dict:  # type: ignore[override]
        return {"spec": self.operand("spec")}

    @property
    def aggregate_kwargs(self) -> dict:  # type: ignore[override]
        return {"spec": self.operand("spec")}

    @classmethod
    def chunk(cls, partial: Any) -> Any:  # type: ignore[override]
        return partial

    @classmethod
    def combine(cls, inputs: list, spec: aggregates.AggSpec) -> Any:  # type: ignore[override]
        return spec.merge(list(inputs))

    @classmethod
    def aggregate(cls, inputs: list, spec: aggregates.AggSpec) -> Any:  # type: ignore[override]
        return spec.to_pandas(spec.merge(list(inputs)))
