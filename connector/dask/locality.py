"""Run each partition's task on the Dask worker beside that partition's agent.

dask-expr ignores `dask.annotate`, and `compute(workers=...)` applies one list to every task,
so a scheduler plugin pins tasks as they arrive: it finds the bpfstore partition a task reads
(also inside fused tasks), and restricts the task to the worker paired with the partition's
agent. Restrictions are loose: when that worker is gone the task runs anywhere.
Uses scheduler internals (`TaskState.worker_restrictions`, `loose_restrictions`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin

from .source import Source, partials_partition, scan_partition

_PARTITION_FUNCS = (scan_partition, partials_partition)


class BpfLocalityPlugin(SchedulerPlugin):
    """`workers`: agent address -> worker name or address; without it a worker whose host
    equals the agent's host is chosen (one worker per storage node)."""

    name = "bpfstore-locality"

    def __init__(self, workers: Mapping[str, Any] | None = None) -> None:
        self.workers = dict(workers or {})
        self.pinned: dict[Any, str] = {}  # task key -> worker address, for tests and logs

    def update_graph(self, scheduler: Any, *, tasks: list[Any] | None = None,
                     **kwargs: Any) -> None:
        for key in tasks or ():
            ts = scheduler.tasks.get(key)
            if ts is None or ts.run_spec is None:
                continue
            agents = next(_partition_agents(ts.run_spec), None)
            worker = self._worker_for(scheduler, agents) if agents else None
            if worker is not None:
                ts.worker_restrictions = {worker}
                ts.loose_restrictions = True
                self.pinned[key] = worker

    def _worker_for(self, scheduler: Any, agents: tuple[str, ...]) -> str | None:
        for agent in agents:  # the client reads from the first live replica
            wanted = self.workers.get(agent)
            host = agent.rsplit(":", 1)[0]
            for addr, ws in scheduler.workers.items():
                if wanted is not None and wanted in (ws.name, addr):
                    return addr
                if wanted is None and not self.workers and ws.host == host:
                    return addr
        return None


def _partition_agents(spec: Any) -> Iterator[tuple[str, ...]]:
    """The agents of the bpfstore partition a task (or a fused task's subgraph) reads."""
    func = getattr(spec, "func", None)
    args: tuple[Any, ...] = tuple(getattr(spec, "args", ()))
    if func in _PARTITION_FUNCS and len(args) >= 2:
        source, index = args[0], args[1]
        source = getattr(source, "value", source)  # DataNode-wrapped arguments
        index = getattr(index, "value", index)
        if isinstance(source, Source) and isinstance(index, int):  # a task: one replica list
            yield source.desc.partitions[source.task_partitions[index][0]].agents
        return
    for arg in args:  # fused: _execute_subgraph(inner_dsk, outkey, inkeys, ...)
        if isinstance(arg, dict):
            for inner in arg.values():
                yield from _partition_agents(inner)
