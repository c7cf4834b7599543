"""Spark front end: `spark.read.format("bpfstore")` and the pushdown extension.

    from pyspark.sql import SparkSession
    from bpfstore.connector.spark import configure

    spark = configure(SparkSession.builder.master("local[2]")).getOrCreate()
    df = spark.read.format("bpfstore").option("agents", "h1:7340,h2:7340").load("lineitem")

The data source itself is found by Spark without any `register` call (the top-level
`pyspark_bpfstore` module); `configure` adds the JVM extension that pushes whole filter
trees, column pruning and aggregates down, and turns on Python filter pushdown.
Tested with pyspark 4.1-4.3 (the extension relies on a private field of these versions).
"""

from __future__ import annotations

import os
import sys
from typing import Any

EXTENSION = "io.bpfstore.spark.BpfstoreExtensions"
SUPPORTED = ((4, 1), (4, 4))  # [from, to): the range the extension was tested on


def configure(builder: Any, *, pushdown: bool = True) -> Any:
    """`builder` with the extension jar, the extension and Python filter pushdown set."""
    import pyspark  # late, like every pyspark import here: pyspark is optional (spark extra)

    from .jar import build

    version = tuple(int(x) for x in pyspark.__version__.split(".")[:2])
    if not SUPPORTED[0] <= version < SUPPORTED[1]:
        raise RuntimeError(f"bpfstore's Spark extension supports pyspark >= 4.1, < 4.4, "
                           f"not {pyspark.__version__}")
    options = getattr(builder, "_options", {})
    jars = [j for j in options.get("spark.jars", "").split(",") if j]
    if "spark.pyspark.python" not in options:
        # Spark's Python workers (and its data source lookup) must import bpfstore: unless the
        # user chose an interpreter, run them with this one (the venv). The JVM that
        # getOrCreate() starts inherits the variable.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return (builder
            .config("spark.jars", ",".join([*jars, str(build(quiet=True))]))
            .config("spark.sql.extensions", EXTENSION)
            .config("spark.sql.python.filterPushdown.enabled", "true")
            .config("spark.bpfstore.pushdown", "true" if pushdown else "false"))


def explain(df: Any) -> str:
    """Spark's plan plus what bpfstore pushes to the agents (filters, aggregates, engines)."""
    from .plan_summary import explain as _explain  # late: it needs pyspark (optional)

    return _explain(df)


__all__ = ["EXTENSION", "configure", "explain"]
