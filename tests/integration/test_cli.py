"""The two programs as a user runs them: `bpfstore-agent` processes and the `bpfstore` CLI,
on TPC-H data from tpchgen-cli, checked against DuckDB on the same Parquet file."""

from __future__ import annotations

import decimal as D
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from bpfstore.connector.demo import free_port
from conftest import require_engine_at

BIN = Path(sys.executable).parent
Q6 = """select sum(l_extendedprice * l_discount) as revenue from lineitem
where l_shipdate >= date '1994-01-01' and l_shipdate < date '1994-01-01' + interval '1' year
  and l_discount between 0.06 - 0.01 and 0.06 + 0.01 and l_quantity < 24"""


def _cli(*args: str, agents: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([str(BIN / "bpfstore"), *args, "--agents", agents],
                            capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def lineitem(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tpch")
    subprocess.run([str(BIN / "tpchgen-cli"), "parquet", "-s", "0.01", "--tables=lineitem",
                    f"--output-dir={out}"], check=True, capture_output=True, timeout=120)
    return out / "lineitem.parquet"


@pytest.fixture(scope="module")
def agent_processes(tmp_path_factory):
    procs, addresses = [], []
    for i in range(2):
        address = f"127.0.0.1:{free_port()}"
        data = tmp_path_factory.mktemp(f"cli-agent{i}")
        procs.append(subprocess.Popen(
            [str(BIN / "bpfstore-agent"), "--data-dir", str(data), "--listen", address],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        addresses.append(address)
    for p in procs:  # it prints one line when it listens
        assert "listening on" in p.stdout.readline()
    yield procs, ",".join(addresses)
    for p in procs:
        if p.poll() is None:
            p.kill()


def test_ingest_then_sql_json_is_exact(agent_processes, lineitem) -> None:
    _, agents = agent_processes
    ingest = _cli("ingest", str(lineitem), "--dataset", "lineitem", "--partition-rows", "20000",
                  agents=agents)
    rows = duckdb.sql(f"select count(*) from '{lineitem}'").fetchall()[0][0]
    assert f"{rows:,} rows" in ingest.stdout + ingest.stderr
    result = json.loads(_cli("sql", Q6, "--json", agents=agents).stdout)
    expected = duckdb.sql(Q6.replace("from lineitem", f"from '{lineitem}'")).fetchall()[0][0]
    assert result["columns"] == ["revenue"]
    assert D.Decimal(result["rows"][0][0]) == expected  # exact, sent as a string
    assert isinstance(result["rows"][0][0], str)
    report = result["report"]
    assert {p["engine"] for p in report["partitions"]} <= {"arrow", "bpf", "stats"}
    assert report["bytes_moved"] < report["bytes_scanned"] / 100


@pytest.mark.bpf
@pytest.mark.parametrize("query", ["Q6", "Q1"])
def test_sql_on_the_bpf_engine_equals_duckdb(agent_processes, lineitem, query) -> None:
    """Issue 3's bar: TPC-H through `bpfstore sql --engine bpf`, exact, bpf on every partition."""
    from bpfstore.connector.demo import Q1, Q6  # the standard TPC-H text

    _, agents = agent_processes
    require_engine_at(agents, "bpf")
    text = {"Q6": Q6, "Q1": Q1}[query]
    if _cli("datasets", agents=agents).stdout.find("lineitem ") < 0:
        _cli("ingest", str(lineitem), "--dataset", "lineitem", "--partition-rows", "20000",
             agents=agents)
    result = _cli("sql", text, "--json", "--engine", "bpf", agents=agents, check=False)
    assert result.returncode == 0, result.stderr  # fails, naming why, where bpf cannot run
    got = json.loads(result.stdout)
    con = duckdb.connect()
    con.execute(f"create view lineitem as select * from read_parquet('{lineitem}')")
    expected = con.sql(text).fetchall()
    assert len(got["rows"]) == len(expected)
    for ours, theirs in zip(got["rows"], expected, strict=True):
        for a, b in zip(ours, theirs, strict=True):
            if isinstance(b, float):
                assert abs(float(a) - b) <= 1e-9 * max(1.0, abs(b))
            else:
                assert str(a) == str(b) or D.Decimal(str(a)) == D.Decimal(str(b))
    engines = {p["engine"] for p in got["report"]["partitions"]}
    assert engines == {"bpf"}, got["report"]["partitions"]


def test_listing_describing_and_errors(agent_processes, lineitem) -> None:
    _, agents = agent_processes
    _cli("ingest", str(lineitem), "--dataset", "li2", "--partition-rows", "30000",
         agents=agents)
    assert "li2" in _cli("datasets", agents=agents).stdout
    described = _cli("describe", "li2", agents=agents).stdout
    assert "l_extendedprice" in described and "decimal" in described
    bad = _cli("sql", "select sum(nope) from li2", agents=agents, check=False)
    assert bad.returncode == 1 and bad.stderr.startswith("bpfstore: error:")
    assert "Traceback" not in bad.stderr
    missing = _cli("describe", "no_such", agents=agents, check=False)
    assert missing.returncode == 1 and "no_such" in missing.stderr
    _cli("drop", "li2", agents=agents)
    assert "li2" not in _cli("datasets", agents=agents).stdout


def test_unreachable_agent_is_a_clear_error(lineitem) -> None:
    result = _cli("sql", Q6, agents=f"127.0.0.1:{free_port()}", check=False)
    assert result.returncode == 1
    assert "bpfstore: error:" in result.stderr and "Traceback" not in result.stderr


def test_sigterm_stops_the_agent_cleanly(agent_processes) -> None:
    procs, _ = agent_processes
    p = procs[-1]
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=40) == 0
    assert "stopped" in p.stderr.read()


def test_agent_refuses_a_port_in_use(tmp_path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = subprocess.run([str(BIN / "bpfstore-agent"), "--data-dir", str(tmp_path),
                                 "--listen", f"127.0.0.1:{port}"], capture_output=True,
                                text=True, timeout=60, env={**os.environ})
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
