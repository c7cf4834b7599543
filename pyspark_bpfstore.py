"""Lets Spark find the bpfstore data source with no `register` call.

Spark (>= 4.1) registers `DefaultSource` of every top-level `pyspark_*` module it finds.
"""

from bpfstore.connector.spark.source import BpfstoreDataSource as DefaultSource

__all__ = ["DefaultSource"]
