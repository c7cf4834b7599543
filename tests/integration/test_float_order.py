"""Float MIN/MAX give one answer on every engine: -0.0 equals 0.0 (any zeros answer 0.0,
whichever comes first), NaN is the largest value in SQL and NULL in the pandas dialect.

One table of hostile float partitions; each engine (arrow, bpf hot and cold, bcc, auto) and the
full read must give the same answer, sign of zero included, and equal DuckDB's by value (DuckDB
answers the first of equal zeros it meets, so its sign of zero depends on the row order)."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest

from bpfstore.connector import Client, col, max_, min_
from bpfstore.contract.errors import Unsupported
from oracle import duckdb_answer

NAN, INF = math.nan, math.inf
# each case: partitions of a float column (written one partition each, in this order)
CASES = {
    "-0.0 first": [[-0.0, 0.0], [0.0]],
    "0.0 first": [[0.0, -0.0], [-0.0]],
    "-0.0 alone": [[-0.0], [-0.0, -0.0]],  # constant partitions: statistics may answer
    "zeros across partitions": [[-0.0], [0.0], [-0.0]],
    "NaN and infinities": [[1.5, NAN, -INF], [INF, -0.0, None], [-2.5, 0.0]],
    "NaN only": [[NAN, NAN], [NAN]],
    "NaN and nulls": [[None, NAN], [None, None]],
    "nulls only": [[None], [None, None]],
    "infinities only": [[INF, -INF], [-INF]],
    "NaN and zeros": [[NAN, -0.0], [0.0, NAN]],
}
ENGINES = ["arrow", "auto", "bpf-hot", "bpf-cold", "bcc"]


def _table(parts: list[list[float | None]], dictionary: bool) -> pa.Table:
    values = [v for p in parts for v in p]
    x = pa.array(values, pa.float64())
    if dictionary:
        x = x.dictionary_encode()
    return pa.table({"x": x, "g": pa.array([i % 2 for i in range(len(values))], pa.int64()),
                     "i": pa.array(range(len(values)), pa.int64())})


def _expected(values: list[float | None], func: str, dialect: str) -> float | None:
    """The rule, written out independently of the order key."""
    present = [v for v in values if v is not None and not (dialect == "pandas" and v != v)]
    if not present:
        return None
    numbers = [v for v in present if v == v]
    if func == "max":
        found = NAN if len(numbers) < len(present) else max(numbers)
    else:
        found = min(numbers) if numbers else NAN
    return 0.0 if found == 0.0 else found  # any zero answers +0.0


def _same(a: float | None, b: float | None, sign: bool = True) -> bool:
    if a is None or b is None:
        return a is b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and (not sign or math.copysign(1, a) == math.copysign(1, b))


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "dictionary"])
def datasets(request, client: Client) -> dict[str, tuple[str, pa.Table]]:
    out = {}
    for n, (case, parts) in enumerate(CASES.items()):
        name = f"floatorder{n}{'d' if request.param else ''}"
        table = _table(parts, request.param)
        client.write(name, table.slice(0, len(parts[0])), partition_rows=len(parts[0]),
                     overwrite=True)
        start = len(parts[0])
        for p in parts[1:]:
            client.write(name, table.slice(start, len(p)), partition_rows=len(p))
            start += len(p)
        out[case] = (name, table)
    return out


@pytest.mark.parametrize("dialect", ["sql", "pandas"])
@pytest.mark.parametrize("case", list(CASES))
def test_float_min_max_is_one_answer_on_every_engine(client: Client, datasets, case: str,
                                                     dialect: str) -> None:
    name, table = datasets[case]
    values = table.column("x").to_pylist()
    want = [_expected(values, f, dialect) for f in ("min", "max")]
    # the full read: every row at the client, reduced by the rule
    read = client.scan_table(name).column("x").to_pylist()
    assert sorted(map(repr, read)) == sorted(map(repr, values))  # -0.0 reads back as -0.0
    got = {"full read": [_expected(read, f, dialect) for f in ("min", "max")]}
    for engine, where in [(e, w) for e in ENGINES for w in (None, col("i") >= 0)]:
        try:  # no filter: statistics may answer; a filter: the engine reads the rows
            result = client.aggregate(name, [min_("x"), max_("x")], where=where,
                                      dialect=dialect, engine=engine)
        except Unsupported as exc:  # a forced in-kernel path may refuse, naming itself
            assert engine != "arrow" and engine != "auto" and engine[:3] in str(exc), exc
            continue
        got[f"{engine} {where}"] = [result.column(0)[0].as_py(), result.column(1)[0].as_py()]
    for engine, answer in got.items():
        assert all(_same(a, w) for a, w in zip(answer, want, strict=True)), (engine, answer, want)
    if dialect == "sql":  # DuckDB agrees by value
        oracle = duckdb_answer(table, None, [min_("x"), max_("x")], [])[0]
        assert all(_same(a, w, sign=False) for a, w in zip(oracle, want, strict=True)), oracle


@pytest.mark.parametrize("case", list(CASES))
def test_grouped_and_filtered_float_min_max_agree(client: Client, datasets, case: str) -> None:
    """The same rule through hash aggregation and a filter (every row passes)."""
    name, table = datasets[case]
    rows = table.to_pylist()
    want = {g: [_expected([r["x"] for r in rows if r["g"] == g], f, "sql")
                for f in ("min", "max")] for g in {r["g"] for r in rows}}
    for engine in ENGINES:
        try:
            result = client.aggregate(name, [min_("x"), max_("x")], where=col("i") >= 0,
                                      group_by=["g"], engine=engine)
        except Unsupported as exc:
            assert engine != "arrow" and engine != "auto" and engine[:3] in str(exc), exc
            continue
        got = {r["g"]: [r[c] for c in result.column_names[1:]] for r in result.to_pylist()}
        assert got.keys() == want.keys(), engine
        for g, answer in got.items():
            assert all(_same(a, w) for a, w in zip(answer, want[g], strict=True)), \
                (engine, g, answer, want[g])
