"""bpfstore connector: plans, the agent client, and the Spark / Dask front ends."""

from .client import Client, DatasetDescription, QueryReport
from .combine import Avg, avg
from .errors import (
    ArithmeticOverflow,
    BpfstoreError,
    DatasetNotFound,
    PartitionUnavailable,
    PlanInvalid,
    Unsupported,
)
from .plan import (
    AggFunc,
    Aggregate,
    Dialect,
    col,
    count,
    count_star,
    lit,
    max_,
    min_,
    sum_,
)

__all__ = [
    "Aggregate", "AggFunc", "ArithmeticOverflow", "Avg", "BpfstoreError", "Client",
    "DatasetDescription", "DatasetNotFound", "Dialect", "PartitionUnavailable", "PlanInvalid",
    "QueryReport", "Unsupported", "avg", "col", "count", "count_star", "lit", "max_", "min_",
    "sum_",
]
