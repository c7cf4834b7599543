"""Dates and timestamps as integers since 1970-01-01 UTC: the one epoch of the wire format,
statistics, the Spark spec, codegen and the engines."""

from __future__ import annotations

import datetime as dt

EPOCH = dt.datetime(1970, 1, 1)
EPOCH_DATE = dt.date(1970, 1, 1)
UNIT_NS = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}  # a timestamp unit in nanoseconds
DAY_NS = 86_400 * 10**9


def epoch_days(v: dt.date) -> int:
    """A date as its days since the epoch (Arrow's date32)."""
    return (v - EPOCH_DATE).days


def date_from_days(days: int) -> dt.date:
    return EPOCH_DATE + dt.timedelta(days=days)


def epoch_nanos(v: dt.datetime) -> int:
    """Nanoseconds since 1970-01-01 UTC (a naive value is UTC), exactly."""
    if v.tzinfo is not None:
        v = v.astimezone(dt.UTC).replace(tzinfo=None)
    delta = v - EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 10**6 + delta.microseconds
    return micros * 1000 + getattr(v, "nanosecond", 0)
