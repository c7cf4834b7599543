"""bpfstore connector: plans, the agent client, and the Spark / Dask front ends."""

from bpfstore.contract.combine import Avg, avg
from bpfstore.contract.errors import (
    ArithmeticOverflow,
    BpfstoreError,
    DatasetNotFound,
    PartitionCorrupt,
    PartitionUnavailable,
    PermissionDenied,
    PlanInvalid,
    Unauthenticated,
    Unsupported,
)
from bpfstore.contract.plan import (
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

from .client import Client, DatasetDescription
from .query import Query, QueryReport, Result
from .transport import Transport, resolve_transport

__all__ = [
    "Aggregate", "AggFunc", "ArithmeticOverflow", "Avg", "BpfstoreError", "Client",
    "DatasetDescription", "DatasetNotFound", "Dialect", "PartitionCorrupt",
    "PartitionUnavailable", "PermissionDenied", "PlanInvalid", "Query",
    "QueryReport", "Result", "Transport", "Unauthenticated", "Unsupported", "avg", "col", "count",
    "count_star", "lit", "max_", "min_", "resolve_transport", "sum_",
]
