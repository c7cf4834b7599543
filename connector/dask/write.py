"""`to_bpfstore`: write a Dask DataFrame into a bpfstore dataset."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa

from ..client import WriteSummary, parse_agents
from ..transport import Transport, resolve_transport
from .source import client_for


def to_bpfstore(ddf: Any, dataset: str, agents: Sequence[str] | str | None = None, *,
                partition_rows: int = 1_000_000, replicas: int = 1, overwrite: bool = False,
                transport: Transport | None = None) -> WriteSummary:
    """Computes the partitions one after another (bounded memory) and streams them to the
    agents, staged; then commits them all as one new dataset version (`Client.write`): an
    interrupted write, or an overwrite, shows readers the old data or the new, never a mix.
    The index is not written.
    `transport`: TLS and token, as for `read_bpfstore`."""
    schema = pa.Schema.from_pandas(ddf._meta, preserve_index=False)

    def batches() -> Iterator[pa.RecordBatch]:
        for part in ddf.to_delayed():
            table = pa.Table.from_pandas(part.compute(), schema=schema, preserve_index=False)
            yield from table.to_batches()

    client = client_for(tuple(parse_agents(agents)),
                        transport if transport is not None else resolve_transport())
    return client.write(dataset, batches(), partition_rows=partition_rows, replicas=replicas,
                        overwrite=overwrite)
