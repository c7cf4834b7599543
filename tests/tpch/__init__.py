"""TPC-H for the tests: the 22 queries (our own text, in queries/), data from tpchgen-cli,
ingested over the agents and written as Parquet split the same way, and result comparison.

The queries are the TPC-H 3.0 query templates with the spec's validation substitution
parameters. Q15's view is a WITH clause (one statement runs everywhere), and Q3, Q10, Q11 and
Q18 break ties in ORDER BY with their key column, so that a LIMIT picks the same rows in every
engine. The scale comes from $TPCH_SF (default 0.01: make test), the partition size from
$TPCH_PARTITION_ROWS; each table is cut into at least MIN_PARTS partitions, so every table has
several partitions on each of the two agents.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

QUERIES_DIR = Path(__file__).parent / "queries"
NAMES = [f"q{i:02d}" for i in range(1, 23)]
TABLES = ["lineitem", "orders", "customer", "part", "partsupp", "supplier", "nation", "region"]
SF = float(os.environ.get("TPCH_SF", "0.01"))
PARTITION_ROWS = int(os.environ.get("TPCH_PARTITION_ROWS", "10000" if SF < 0.1 else "100000"))
MIN_PARTS = 4  # per table: at least 2 partitions on each of 2 agents
# Queries whose ORDER BY does not fix the order of every row (Q5: ties in revenue are legal).
UNORDERED = {"q05"}


def query(name: str) -> str:
    return (QUERIES_DIR / f"{name}.sql").read_text()


@dataclass
class TpchData:
    scale: float
    root: Path
    tables: dict[str, pa.Table]  # plain types: decimal128, date32, string
    partition_rows: dict[str, int]

    def split_dir(self, kind: str) -> Path:
        return self.root / kind

    def duckdb(self) -> duckdb.DuckDBPyConnection:
        """The oracle: DuckDB over the same rows, as Arrow tables."""
        con = duckdb.connect()
        for name, table in self.tables.items():
            con.register(name, table)
        return con


def generate(root: Path, scale: float = SF) -> TpchData:
    """All eight tables from tpchgen-cli (string_view as string), plus a Parquet copy of each
    split into the same partitions as the ingest (`parquet/<table>/part-N.parquet`). Tables
    already generated under `root` (make bench-tpch's cache) are read again, not remade."""
    raw = root / "raw"
    if not all((raw / f"{name}.parquet").exists() for name in TABLES):
        exe = Path(sys.executable).parent / "tpchgen-cli"
        subprocess.run([str(exe), "parquet", "-s", str(scale), f"--output-dir={raw}",
                        "--quiet"], check=True, timeout=600)
    tables, rows = {}, {}
    for name in TABLES:
        table = pq.read_table(raw / f"{name}.parquet")
        table = table.cast(pa.schema([pa.field(f.name, pa.string() if pa.types.is_string_view(
            f.type) else f.type) for f in table.schema]))
        tables[name] = table
        rows[name] = max(1, min(PARTITION_ROWS, math.ceil(table.num_rows / MIN_PARTS)))
    data = TpchData(scale, root, tables, rows)
    for name, table in tables.items():
        write_split(table, data.split_dir("parquet") / name, rows[name])
    return data


def write_split(table: pa.Table, out: Path, partition_rows: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for i, start in enumerate(range(0, table.num_rows, partition_rows)):
        pq.write_table(table.slice(start, partition_rows), out / f"part-{i:05d}.parquet")


def ingest(client: Any, data: TpchData) -> None:
    for name, table in data.tables.items():
        client.write(name, table, partition_rows=data.partition_rows[name], overwrite=True)


def pandas_types(table: pa.Table) -> pa.Table:
    """What read_bpfstore's default dtypes give a Dask user, as Arrow types for read_parquet:
    decimals as (correctly rounded) float64, dates as timestamp[ms]."""
    columns = []
    for f in table.schema:
        col = table.column(f.name)
        if pa.types.is_decimal(f.type):
            col = pa.chunked_array([pa.array([None if v is None else float(v)
                                              for v in col.to_pylist()], pa.float64())])
        elif pa.types.is_date(f.type):
            col = pc.cast(col, pa.timestamp("ms"))
        columns.append(col)
    return pa.Table.from_arrays(columns, names=table.column_names)


# ---------------------------------------------------------------- comparison


def same_value(ours: Any, oracle: Any, rel: float = 1e-9) -> bool:
    """Exact for decimals, integers, strings and dates. A double on either side agrees within
    `rel`; against a decimal (Spark's typing of avg and division) within one unit of the
    decimal's last place, as the decimal is the value rounded to that scale."""
    if ours is None or oracle is None:
        return ours is None and oracle is None
    if isinstance(ours, float) or isinstance(oracle, float):
        if not all(isinstance(v, int | float | decimal.Decimal) for v in (ours, oracle)):
            return False
        ulp = max((10.0 ** v.as_tuple().exponent for v in (ours, oracle)  # type: ignore
                   if isinstance(v, decimal.Decimal)), default=0.0)
        return math.isclose(float(ours), float(oracle), rel_tol=rel, abs_tol=ulp)
    if isinstance(ours, dt.datetime) != isinstance(oracle, dt.datetime):
        return False
    return bool(ours == oracle)


def _key(row: Sequence[Any]) -> tuple:
    """Sort key from the exact columns (doubles may differ in the last bits)."""
    return tuple("" if isinstance(v, float) else str(v.normalize()) if isinstance(
        v, decimal.Decimal) else str(v) for v in row)


def differences(name: str, ours: list[tuple], oracle: list[tuple]) -> list[str]:
    """What differs between two results (empty: equal); row order counts if the query's
    ORDER BY fixes it."""
    if len(ours) != len(oracle):
        return [f"{name}: {len(ours)} rows, expected {len(oracle)}"]
    if name in UNORDERED or not _ordered(name):
        ours, oracle = sorted(ours, key=_key), sorted(oracle, key=_key)
    out = []
    for i, (a, b) in enumerate(zip(ours, oracle, strict=True)):
        if len(a) != len(b) or not all(same_value(x, y) for x, y in zip(a, b, strict=True)):
            out.append(f"{name} row {i}: {a!r} != expected {b!r}")
    return out[:5]


def _ordered(name: str) -> bool:
    return "order by" in query(name).lower()


@dataclass
class Cluster:
    """The data and the two in-process agents that hold it (the `tpch` fixture)."""

    data: TpchData
    agents: list[Any]

    @property
    def addresses(self) -> list[str]:
        return [a.address for a in self.agents]


def bytes_returned(agents: list[Any]) -> int:
    """Response bytes the agents have sent for Scan and Aggregate calls so far (their
    metrics): what a front end moved over the network."""
    registry = agents[0].service.metrics.registry
    total = 0.0
    for agent in agents:
        registry = agent.service.metrics.registry
        for method in ("Scan", "Aggregate"):
            total += registry.get_sample_value("bpfstore_agent_bytes_returned_total",
                                               {"method": method}) or 0.0
    return int(total)


def record(**fields: Any) -> None:
    """One measurement as a JSON line in $TPCH_REPORT (when set): front end, query, equal,
    seconds over bpfstore and over Parquet, bytes moved."""
    path = os.environ.get("TPCH_REPORT")
    if path:
        import json

        with open(path, "a") as f:
            f.write(json.dumps({"sf": SF, **fields}, default=str) + "\n")
