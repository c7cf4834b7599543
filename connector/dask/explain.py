"""`explain(obj)`: what a Dask collection will push down to the agents, before computing."""

from __future__ import annotations

from typing import Any

from bpfstore.contract.plan import and_all, conjuncts, describe

from . import _compat as c


def explain(obj: Any) -> str:
    """A few lines: each agent call the optimized graph makes, and what runs in Dask."""
    if not c.PUSHDOWN:
        return f"no pushdown: {c.REASON}; every partition is read whole and Dask does the rest"
    from .expr import BpfAggregate, BpfPartials, BpfScan  # late: present only with PUSHDOWN

    # "tuned": after join key pushdown, which computes a merge's small side here
    expr = c.optimize_until(getattr(obj, "expr", obj), "tuned-logical")
    pushed, scans, in_dask = [], [], []
    for node in expr.walk():
        if isinstance(node, BpfAggregate):
            spec = node.operand("spec")
            pushed.append(f"pushed down: {spec.describe()} "
                          f"({_tasks(node.frame, 'Aggregate')}, partials merged by Dask)")
        elif isinstance(node, BpfScan):
            where = node.operand("filters")
            line = f"scan ({_tasks(node)}): columns {node.columns}"
            keys = node.operand("join_keys")
            if keys:  # the key lists are long: the filter without them, then their sizes
                where = _without(where, len(keys))
            line += f", filter pushed: {describe(where)}" if where is not None else ", no filter"
            line += "".join(f", {k.describe()}" for k in keys)
            local = [f"{n} = {describe(e)}" for n, (e, _) in node.computed.items()
                     if n in node.columns]
            if local:
                line += f", computed in Dask: {'; '.join(local)}"
            scans.append(line)
        elif not isinstance(node, BpfPartials):
            in_dask.append(type(node).__name__)
    lines = pushed + scans
    if not lines:
        return "no bpfstore pushdown in this graph (read with pushdown=False, or not bpfstore)"
    if in_dask:
        lines.append("runs in Dask: " + ", ".join(dict.fromkeys(in_dask)))
    if scans and not pushed:
        lines.append("fallback: rows move to Dask (only the filter/projection above pushed)")
    return "\n".join(lines)


def _without(where: Any, pushed: int) -> Any:
    """The scan filter without the last `pushed` terms (the join keys' filters)."""
    terms = conjuncts(where)[:-pushed]
    return and_all(terms)


def _tasks(node: Any, call: str = "Scan") -> str:
    """'N Scan calls' (one per task), and how many stored partitions they read if more."""
    source, n = node.operand("source"), node.npartitions
    text = f"{n} {call} call{'s' if n != 1 else ''}"
    chosen = node.operand("_partitions")
    tasks = source.task_partitions
    parts = sum(len(tasks[i]) for i in (chosen if chosen is not None else range(len(tasks))))
    return text if parts == n else f"{text} for {parts} partitions"
