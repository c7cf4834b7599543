"""Dask front end: `read_bpfstore` with transparent pushdown, `to_bpfstore`, `explain`.

Every private dask import lives in `_compat`; outside the tested dask range pushdown is off
and results stay correct.
"""

from .explain import explain
from .reader import read_bpfstore
from .source import stats
from .write import to_bpfstore

__all__ = ["explain", "read_bpfstore", "stats", "to_bpfstore"]
