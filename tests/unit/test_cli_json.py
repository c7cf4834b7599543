"""The CLI's JSON and text formatting (pure functions), and `main` with a stand-in client."""

from __future__ import annotations

import datetime as dt
import json
import math
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pytest

from bpfstore.connector import cli, sql
from bpfstore.connector.query import PartitionReport, QueryReport, Result
from bpfstore.contract.errors import DatasetNotFound

RESULT = pa.table({
    "revenue": pa.array([Decimal("123141078.2283"), None], pa.decimal128(38, 4)),
    "zero": pa.array([Decimal("0E-10"), Decimal("-0.0000000001")], pa.decimal128(38, 10)),
    "big": pa.array([2**62 + 1, -1], pa.int64()),
    "avg": pa.array([0.1, float("nan")]),
    "inf": pa.array([float("inf"), float("-inf")]),
    "day": pa.array([dt.date(1998, 9, 2), None]),
    "ts": pa.array([dt.datetime(2020, 1, 2, 3, 4, 5), None], pa.timestamp("us")),
    "flag": pa.array(["A", "N"]).dictionary_encode(),
    "ok": pa.array([True, None]),
})


def report() -> QueryReport:
    r = QueryReport(mode="aggregate", dataset="lineitem", bytes_moved=829, wall_seconds=0.25)
    r.partitions.append(PartitionReport("127.0.0.1:7340", "p0", "bpf", "arena", 150_000,
                                        2_917, 4_200_000, 2_500_000))
    return r


def _reject(token: str) -> None:
    raise AssertionError(f"not strict JSON: {token}")


def test_result_json_is_exact_and_strict() -> None:
    text = cli.result_json(RESULT, {"mode": "aggregate", "seconds": 0.5})
    doc = json.loads(text, parse_constant=_reject)  # no bare NaN / Infinity tokens
    assert list(doc) == ["columns", "rows", "report"]
    assert doc["columns"] == RESULT.column_names
    assert doc["rows"] == [
        ["123141078.2283", "0.0000000000", 2**62 + 1, 0.1, "Infinity", "1998-09-02",
         "2020-01-02T03:04:05", "A", True],
        [None, "-0.0000000001", -1, "NaN", "-Infinity", None, None, "N", None],
    ]
    assert isinstance(doc["rows"][0][2], int)  # ints stay ints, exactly, past 2**53
    assert doc["report"] == {"mode": "aggregate", "seconds": 0.5}


def test_json_value_cases() -> None:
    assert cli.json_value(Decimal("1E+3")) == "1000"
    assert cli.json_value(Decimal("-0.50")) == "-0.50"  # the scale is kept
    assert cli.json_value(-0.0) == 0.0 and math.copysign(1, cli.json_value(-0.0)) == -1
    assert cli.json_value({"a": [Decimal("1.5"), float("nan")]}) == {"a": ["1.5", "NaN"]}
    assert cli.json_value(b"\x01\xff") == "01ff"
    assert cli.json_value(dt.timedelta(seconds=90)) == 90.0


def test_empty_result() -> None:
    empty = pa.table({"x": pa.array([], pa.int64())})
    assert json.loads(cli.result_json(empty, {})) == {"columns": ["x"], "rows": [],
                                                       "report": {}}


def test_cells_and_movement_summary() -> None:
    assert cli.cell(None) == "NULL"
    assert cli.cell(Decimal("0E-4")) == "0.0000"
    assert cli.cell(dt.date(1994, 1, 1)) == "1994-01-01"
    assert cli.cell(12) == "12" and cli.cell(True) == "true" and cli.cell("x") == "x"
    line = cli.movement_summary(4_200_000, 829, 0.25)
    assert "4.2 MB" in line and "829 B" in line and "0.0197% of scanned" in line
    assert "nothing scanned" in cli.movement_summary(0, 10, 0.1)


# ---------------------------------------------------------------- main() with a stand-in


class StandIn:
    def __init__(self, fail: Exception | None = None) -> None:
        self.fail = fail

    def __enter__(self) -> StandIn:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def drop(self, name: str) -> bool:
        if self.fail:
            raise self.fail
        return name == "lineitem"

    def datasets(self) -> list[Any]:
        return [SimpleNamespace(name="lineitem", version=3, rows=6_001_215, bytes=10**9,
                                partitions=(1, 2), agents=["h1:7340", "h2:7340"])]


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    client = StandIn()

    def connect(args: Any) -> StandIn:  # the parsed command line (agents, TLS, token)
        seen["agents"] = args.agents
        return client

    def run_sql(c: Any, text: str, engine: str = "auto") -> Result:
        seen["sql"], seen["engine"] = text, engine
        if "nope" in text:
            raise DatasetNotFound("no dataset named 'nope'")
        return Result(RESULT.replace_schema_metadata({sql.PATH_KEY: "pushdown",
                                                      sql.REASON_KEY: ""}), report())

    monkeypatch.setattr(cli, "_connect", connect)
    monkeypatch.setattr(sql, "run_sql", run_sql)
    return seen


def test_sql_json_prints_one_object_and_nothing_else(
        stand_in: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["sql", "select 1 from lineitem", "--json", "--engine", "arrow",
                     "--agents", "h1:7340,h2:7340"])
    out = capsys.readouterr().out
    assert code == 0
    assert stand_in == {"agents": "h1:7340,h2:7340", "sql": "select 1 from lineitem",
                        "engine": "arrow"}
    assert out.count("\n") == 1
    doc = json.loads(out)
    assert doc["rows"][0][0] == "123141078.2283"
    assert doc["report"]["path"] == "pushdown" and doc["report"]["reason"] is None
    assert doc["report"]["bytes_scanned"] == 4_200_000 and doc["report"]["bytes_moved"] == 829
    assert doc["report"]["partitions"][0]["engine"] == "bpf"


def test_sql_text_output_has_table_and_report(
        stand_in: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["sql", "select 1 from lineitem"]) == 0
    out = capsys.readouterr().out
    assert "123141078.2283" in out and "1998-09-02" in out
    assert "path: pushdown" in out and "arena" in out and "0.0197% of scanned" in out


def test_expected_errors_exit_1_without_traceback(
        stand_in: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["sql", "select count(*) from nope"]) == 1
    err = capsys.readouterr().err
    assert err == "bpfstore: error: no dataset named 'nope'\n"
    assert cli.main(["drop", "other"]) == 1
    assert "no dataset named 'other'" in capsys.readouterr().err
    assert cli.main(["ingest", "/nonexistent/source", "--dataset", "x"]) == 1
    assert "no such file" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in ([], ["sql"], ["ingest", "x"], ["ingest", "x", "--dataset", "d",
                                                  "--partition-rows", "0"],
                 ["sql", "select 1", "--engine", "gpu"]):
        with pytest.raises(SystemExit) as info:
            cli.main(argv)
        assert info.value.code == 2, argv
    capsys.readouterr()


def test_agents_default_from_environment(monkeypatch: pytest.MonkeyPatch,
                                         stand_in: dict[str, Any]) -> None:
    monkeypatch.setenv("BPFSTORE_AGENTS", "10.0.0.1:7340")
    assert cli.main(["drop", "lineitem"]) == 0
    assert stand_in["agents"] == "10.0.0.1:7340"
    monkeypatch.delenv("BPFSTORE_AGENTS")
    assert cli.main(["datasets"]) == 0
    assert stand_in["agents"] == "127.0.0.1:7340"


class Writer(StandIn):
    def __init__(self, existing: set[str]) -> None:
        super().__init__()
        self.existing = existing
        self.written: dict[str, Any] = {}

    def describe(self, name: str) -> Any:
        if name not in self.existing:
            raise DatasetNotFound(name)
        return SimpleNamespace(name=name)

    def write(self, name: str, batches: Any, **options: Any) -> Any:
        rows = sum(b.num_rows for b in batches)
        options["progress"](rows)
        self.written = {"name": name, "rows": rows, **options}
        return SimpleNamespace(rows=rows, partitions=2, agents=("h1", "h2"))


def test_ingest_writes_and_refuses_to_append_silently(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"x": list(range(10))}), tmp_path / "x.parquet")
    client = Writer(existing={"old"})
    monkeypatch.setattr(cli, "_connect", lambda agents: client)
    argv = ["ingest", str(tmp_path / "x.parquet"), "--partition-rows", "5", "--replicas", "2"]
    assert cli.main([*argv, "--dataset", "new"]) == 0
    assert client.written["rows"] == 10 and client.written["partition_rows"] == 5
    assert client.written["replicas"] == 2 and client.written["overwrite"] is False
    assert capsys.readouterr().out.startswith("ingested 10 rows into 'new': 2 partition(s)")
    client.written = {}
    assert cli.main([*argv, "--dataset", "old"]) == 1
    assert "--overwrite" in capsys.readouterr().err and client.written == {}
    assert cli.main([*argv, "--dataset", "old", "--overwrite"]) == 0
    assert client.written["overwrite"] is True
    assert cli.main([*argv, "--dataset", "old", "--append"]) == 0
