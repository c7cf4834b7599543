"""Shared pieces of the Spark end-to-end tests: one Spark session, data, agent call recorder.

The session is created once per test run (`local[2]`, 2 shuffle partitions, UI off, log level
ERROR) with `bpfstore.connector.spark.configure`; tests switch pushdown and ANSI at run time
through `settings(...)`, which puts the previous values back.
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from bpfstore.contract.plan import Plan

BIN = Path(sys.executable).parent


@functools.cache
def spark_session() -> Any:
    """One SparkSession for every Spark test module (getOrCreate would reuse it anyway)."""
    os.environ["PYSPARK_PYTHON"] = sys.executable  # workers must import pyspark_bpfstore
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    # local[2] needs no host-name lookup: a minimal root may not resolve its own host name
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("SPARK_LOCAL_HOSTNAME", "localhost")
    from pyspark.sql import SparkSession

    from bpfstore.connector.spark import configure

    builder = (SparkSession.builder.master("local[2]").appName("bpfstore-tests")
               .config("spark.sql.shuffle.partitions", "2")
               .config("spark.default.parallelism", "2")
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.driver.memory", "2g"))
    spark = configure(builder).getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


@contextlib.contextmanager
def settings(spark: Any, **values: str) -> Iterator[None]:
    """Set Spark SQL settings (dots as `__`: spark__sql__ansi__enabled) for a block."""
    keys = {k.replace("__", "."): v for k, v in values.items()}
    old = {k: spark.conf.get(k, None) for k in keys}
    for k, v in keys.items():
        spark.conf.set(k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                spark.conf.unset(k)
            else:
                spark.conf.set(k, v)


@dataclass
class Recorder:
    """The plans the agents were asked to run (agent side): Aggregate vs Scan, columns, filter."""

    agents: list[Any]
    calls: list[tuple[str, Plan]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._orig = [a.service._plan for a in self.agents]
        for a, orig in zip(self.agents, self._orig, strict=True):
            a.service._plan = self._wrap(orig)

    def _wrap(self, orig: Any) -> Any:
        @contextlib.contextmanager
        def plan(request: Any) -> Iterator[Any]:
            with orig(request) as result:  # the bound plan and the version it pins
                self.calls.append((type(request).__name__.removesuffix("Request"), result[0]))
                yield result
        return plan

    def kinds(self) -> set[str]:
        return {k for k, _ in self.calls}

    def plans(self, kind: str) -> list[Plan]:
        return [p for k, p in self.calls if k == kind]

    def restore(self) -> None:
        for a, orig in zip(self.agents, self._orig, strict=True):
            a.service._plan = orig


@contextlib.contextmanager
def recording(agents: list[Any]) -> Iterator[Recorder]:
    r = Recorder(agents)
    try:
        yield r
    finally:
        r.restore()


def rule_counters(spark: Any) -> tuple[int, int]:
    rule = spark._jvm.io.bpfstore.spark.BpfstoreRule
    return int(rule.aggregatesPushed()), int(rule.scansPushed())


def tpch_lineitem(out: Path, scale: float = 0.01) -> Path:
    subprocess.run([str(BIN / "tpchgen-cli"), "parquet", "-s", str(scale), "--tables=lineitem",
                    f"--output-dir={out}"], check=True, capture_output=True, timeout=120)
    path = out / "lineitem.parquet"
    # Plain Spark reads string_view poorly and the oracle wants plain types: rewrite once.
    table = pq.read_table(path)
    schema = pa.schema([pa.field(f.name, pa.string() if pa.types.is_string_view(f.type)
                                 else f.type) for f in table.schema])
    plain = out / "lineitem_plain.parquet"
    pq.write_table(table.cast(schema), plain)
    return plain


def rows(df: Any) -> list[tuple]:
    return [tuple(r) for r in df.collect()]


def schema_of(df: Any) -> list[tuple[str, str]]:
    return [(f.name, f.dataType.simpleString()) for f in df.schema.fields]

