"""split_pushable: the one decision of which filter terms the agents run; nothing dropped."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from bpfstore.contract.plan import and_all, col, conjuncts
from bpfstore.contract.pushable import Capabilities, split_pushable

SCHEMA = pa.schema([("i", pa.int64()), ("s", pa.string()), ("t", pa.timestamp("us"))])
I_GT = col("i") > 5
S_BAD = col("s").eq(3)  # a string column against a number: does not bind
T_GT = col("t") > dt.datetime(2020, 1, 1)
UNKNOWN = col("nope").is_null()
FILTER = and_all([I_GT, S_BAD, T_GT, UNKNOWN])


@pytest.mark.parametrize(("capabilities", "pushed", "kept"), [
    (Capabilities(SCHEMA), [I_GT, T_GT], [S_BAD, UNKNOWN]),
    (Capabilities(SCHEMA, timestamps=False), [I_GT], [S_BAD, T_GT, UNKNOWN]),
    (Capabilities(), [I_GT, S_BAD, T_GT, UNKNOWN], []),
])
def test_split(capabilities: Capabilities, pushed: list, kept: list) -> None:
    got_pushed, residual = split_pushable(FILTER, capabilities)
    assert got_pushed == pushed
    assert [r.term for r in residual] == kept
    assert all(r.reason for r in residual)
    # nothing is dropped: every term is either pushed or kept, once
    assert sorted(map(repr, got_pushed + [r.term for r in residual])) == sorted(
        map(repr, conjuncts(FILTER)))


def test_reasons_name_the_problem() -> None:
    _, residual = split_pushable(FILTER, Capabilities(SCHEMA, timestamps=False))
    reasons = {repr(r.term): r.reason for r in residual}
    assert "unknown column 'nope'" in reasons[repr(UNKNOWN)]
    assert "time zones" in reasons[repr(T_GT)]
    assert "string" in reasons[repr(S_BAD)]


def test_no_filter_pushes_nothing() -> None:
    assert split_pushable(None, Capabilities(SCHEMA)) == ([], [])
