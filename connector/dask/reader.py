"""`read_bpfstore`: a bpfstore dataset as a Dask DataFrame with transparent pushdown."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import dask
import dask.dataframe as dd

from bpfstore.contract.errors import PlanInvalid
from bpfstore.contract.plan import EngineName

from ..client import parse_agents
from ..transport import Transport, resolve_transport
from . import _compat as c
from .dtypes import VIEWS
from .source import Source, client_for, scan_partition, task_groups


def read_bpfstore(dataset: str, agents: Sequence[str] | str | None = None, *,
                  columns: Sequence[str] | None = None, dtypes: str = "numpy",
                  pushdown: bool = True, engine: str | EngineName = "auto",
                  aggregates: bool = True, partitions_per_task: int | None = None,
                  transport: Transport | None = None, compression: str | None = None,
                  join_pushdown: bool = True, max_join_keys: int = 100_000) -> Any:
    """Filters, projections, arithmetic and aggregates in ordinary Dask code run on the
    agents when they can (see `explain`).

    Each Dask partition (task) reads up to `partitions_per_task` stored partitions of one
    agent in one call, their rows concatenated in dataset order (Spark's `partitionsPerTask`
    for aggregates). The default (None) aims at about 1.5 million rows per task, with at least
    as many tasks per agent as the Dask cluster (or this machine) has threads per agent; 1
    gives one Dask partition per stored partition. Tasks are ordered by their first
    partition: with several agents the partitions of a computed frame come agent by agent,
    but unfiltered reads keep pandas' row labels (sort_index restores the stored order).

    `dtypes="numpy"` (default): decimals as float64 (correctly rounded), dates as
    datetime64[ms], strings as `str`. `dtypes="arrow"`: `pd.ArrowDtype` columns (exact
    decimals). Cast here rather than with `.astype()` afterwards: dask moves filters below an
    `astype` and would compare the un-cast values. `pushdown=False` reads every column of
    every partition and leaves all the work to Dask (for comparisons). `engine` names the
    agents' engine for pushed-down aggregates ("auto", "arrow", "bpf", ...).
    `aggregates=False` pushes filters, projections and arithmetic but no aggregate: the
    filtered rows move and Dask reduces them (for comparisons).
    `transport`: TLS and bearer token (`bpfstore.connector.transport`); by default from the
    $BPFSTORE_TLS_* and $BPFSTORE_TOKEN variables of this process, passed on to the workers.
    `compression` of the rows scans move ("auto", "none", "lz4", "zstd"): the transport's
    when None ("auto" unless $BPFSTORE_COMPRESSION says otherwise: lz4 from agents not on
    loopback).
    `join_pushdown`: a merge of this frame with a small one (one partition, or at most
    `max_join_keys` rows after its filters) computes the small side first and filters this
    scan by its join keys on the agents (inner joins, and outer ones only on the side whose
    unmatched rows the merge drops; see `join_keys.py`); more than `max_join_keys` distinct
    keys (at most 100,000, the agents' IN-list limit) are not pushed. False: never.
    """
    if dtypes not in VIEWS:
        raise PlanInvalid(f"dtypes must be one of {VIEWS}, not {dtypes!r}")
    if partitions_per_task is not None and (
            not isinstance(partitions_per_task, int) or isinstance(partitions_per_task, bool)
            or partitions_per_task < 1):
        raise PlanInvalid(f"partitions_per_task must be a whole number >= 1, or None for the "
                          f"default, not {partitions_per_task!r}")
    if not isinstance(max_join_keys, int) or isinstance(max_join_keys, bool) or \
            max_join_keys < 0:
        raise PlanInvalid(f"max_join_keys must be a whole number >= 0, not {max_join_keys!r}")
    engine = EngineName.parse(engine)
    names = tuple(parse_agents(agents))
    transport = transport if transport is not None else resolve_transport()
    if compression is not None:
        transport = replace(transport, compression=compression)
    desc = client_for(names, transport).describe(dataset)
    source = Source(dataset, names, desc, dtypes, engine, aggregates, transport,
                    task_groups(desc, partitions_per_task),
                    max_join_keys if join_pushdown else 0)
    if c.PUSHDOWN and pushdown:
        from .expr import BpfScan  # late: builds on dask-expr internals, present if PUSHDOWN

        ddf = c.new_collection(BpfScan(source))
    else:
        ddf = _without_pushdown(source)
    return ddf[list(columns)] if columns is not None else ddf


def _without_pushdown(source: Source) -> Any:
    """Public API only: correct on any dask, reads every column of every partition."""
    n = len(source.task_partitions)
    part = functools.partial(_read_all, source)
    # The partitions already hold pandas 3 `str`; dask's conversion would make it `string`.
    with dask.config.set({"dataframe.convert-string": False}):
        return dd.from_map(part, range(n), meta=source.meta, divisions=[None] * (n + 1),
                           label=f"bpfstore-{source.dataset}-v{source.version}",
                           enforce_metadata=False)  # the name's token covers the Source


def _read_all(source: Source, index: int) -> Any:
    return scan_partition(source, index, list(source.meta.columns), None, (), "frame", None)
