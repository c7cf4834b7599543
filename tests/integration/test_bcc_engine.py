"""The bcc engine (the read path: tracepoints on pread64) on real agents: the same answers as
the arrow engine and DuckDB, reads never attributed to the wrong request, TPC-H Q6 through
the CLI."""

from __future__ import annotations

import ctypes
import decimal as D
import json
import os
import random
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from test_bpf_engine import GROUPED, Q6_WHERE, QUERIES, _rows, make_table
from test_cli import _cli, agent_processes, lineitem  # noqa: F401 - fixtures

from bpfstore.connector import Client, Unsupported, col, count, count_star, max_, min_, sum_
from bpfstore.contract.combine import Avg
from bpfstore.node_agent.engines.bcc.engine import shared
from bpfstore.node_agent.engines.bpf.codegen import HEAD
from conftest import RunningAgent, reported, require_bpf, require_engine_at
from oracle import assert_same_rows, duckdb_answer

pytestmark = pytest.mark.bpf


@pytest.fixture(scope="module")
def bcc_data(agents: list[RunningAgent], client: Client) -> pa.Table:
    require_bpf(agents[0], "bcc")
    table = make_table()
    client.write("bcc_t", table.slice(0, 100_000), partition_rows=50_000, overwrite=True)
    client.write("bcc_t", table.slice(100_000), partition_rows=50_000)
    return table


@pytest.mark.parametrize(("name", "where", "aggs"), QUERIES, ids=[q[0] for q in QUERIES])
@pytest.mark.parametrize("dialect", ["sql", "pandas"])
def test_bcc_equals_arrow_and_duckdb(client: Client, bcc_data: pa.Table, name, where, aggs,
                                     dialect) -> None:
    try:
        result, report = reported(client, "bcc_t", aggs, where=where, dialect=dialect,
                                engine="bcc")
    except Unsupported as exc:  # floats stay on arrow (their order keys are not in the file)
        assert "float" in name and "bcc: float" in str(exc), exc
        return
    served = {(p.engine, p.path) for p in report.partitions}
    assert served <= {("bcc", "read"), ("stats", "")} and served, served
    arrow = client.aggregate("bcc_t", aggs, where=where, dialect=dialect, engine="arrow")
    assert result.schema == arrow.schema
    assert _rows(result) == _rows(arrow), f"{name}: bcc {_rows(result)} != arrow {_rows(arrow)}"
    if dialect == "sql":
        ours = list(zip(*[c.to_pylist() for c in result.columns], strict=True))
        approx = {i for i, a in enumerate(aggs) if isinstance(a, Avg)}
        assert_same_rows(ours, duckdb_answer(bcc_data, where, aggs, []), approx, name)


@pytest.mark.parametrize(("name", "where", "keys", "aggs"), GROUPED, ids=[g[0] for g in GROUPED])
@pytest.mark.parametrize("dialect", ["sql", "pandas"])
def test_grouped_bcc_equals_arrow_and_duckdb(client: Client, bcc_data: pa.Table, name, where,
                                             keys, aggs, dialect) -> None:
    """GROUP BY in the read path (the groups in the slot's map value): integer-range keys
    (bool, date, decimal, uint8), NULLs in the aggregated columns, 128-bit sums."""
    result, report = reported(client, "bcc_t", aggs, where=where, group_by=keys,
                              dialect=dialect, engine="bcc")
    assert {(p.engine, p.path) for p in report.partitions} == {("bcc", "read")}
    arrow = client.aggregate("bcc_t", aggs, where=where, group_by=keys, dialect=dialect,
                             engine="arrow")
    order = [(k, "ascending") for k in keys]
    assert result.num_rows > 1, name  # several groups
    assert _rows(result.sort_by(order)) == _rows(arrow.sort_by(order)), name
    if dialect == "sql":
        ours = list(zip(*[c.to_pylist() for c in result.columns], strict=True))
        approx = {len(keys) + i for i, a in enumerate(aggs) if isinstance(a, Avg)}
        assert_same_rows(ours, duckdb_answer(bcc_data, where, aggs, keys), approx, name)


def test_grouped_bcc_dictionary_keys_and_sums_near_overflow(client: Client) -> None:
    """Dictionary-encoded string keys (codes as group ids), string equality in the filter,
    and per-group sums whose total passes 2**64 (two words a sum)."""
    rnd = random.Random(7)
    n = 30_000
    table = pa.table({
        "flag": [rnd.choice("ANR") for _ in range(n)],
        "status": [rnd.choice("FO") for _ in range(n)],
        "v": pa.array([rnd.randint(-1000, 1000) for _ in range(n)], pa.int64()),
        "big": pa.array([rnd.choice([2**62, 2**62 - 1, -(2**62)]) if rnd.random() < 0.9
                         else None for _ in range(n)], pa.int64()),
        "d": pa.array([D.Decimal(rnd.choice([10**17, 10**17 - 1, -(10**16)])).scaleb(-2)
                       for _ in range(n)], pa.decimal128(18, 2)),
    })
    client.write("bcc_s", table, partition_rows=10_000, overwrite=True)
    aggs = [sum_("v"), count_star(), min_("v"), sum_("big"), count("big"), max_("big"),
            sum_("d")]
    keys = ["flag", "status"]
    for where in [None, col("status").eq("F"), col("flag").eq("zzz"),
                  col("flag").isin(["A", "R", "nope"]) & col("status").ne("O")]:
        for dialect in ("sql", "pandas"):
            got, report = reported(client, "bcc_s", aggs, where=where, group_by=keys,
                                   dialect=dialect, engine="bcc")
            assert {p.engine for p in report.partitions} <= {"bcc", "stats"}, where
            assert "bcc" in {p.engine for p in report.partitions} or where is not None
            arrow = client.aggregate("bcc_s", aggs, where=where, group_by=keys,
                                     dialect=dialect, engine="arrow")
            order = [(k, "ascending") for k in keys]
            assert _rows(got.sort_by(order)) == _rows(arrow.sort_by(order)), where
        ours = list(zip(*[c.to_pylist() for c in got.columns], strict=True))
        assert_same_rows(ours, duckdb_answer(table, where, aggs, keys), set(), f"{where}")
    totals = client.aggregate("bcc_s", [sum_("big")], group_by=["flag"], engine="bcc")
    assert max(abs(v) for v in totals.column(1).to_pylist()) > 2**64  # past one word


def test_forced_bcc_names_what_it_cannot_run(client: Client, bcc_data: pa.Table) -> None:
    with pytest.raises(Unsupported, match="more than 4096 possible groups"):
        client.aggregate("bcc_t", [count_star()], group_by=["i32"], engine="bcc")
    with pytest.raises(Unsupported, match="bcc: float column 'f'"):
        client.aggregate("bcc_t", [count_star()], where=col("f") > 1.0, engine="bcc")


def _partition_files(agent: RunningAgent) -> list[Path]:
    return sorted(Path(agent.config.data_dir).rglob("*.arrow"))


def test_concurrent_requests_and_other_readers_are_never_counted(
        agents: list[RunningAgent], client: Client, bcc_data: pa.Table, tmp_path: Path) -> None:
    """Requests at once (different shapes and the same shape, GROUP BY among them: each
    slot's groups are its own), while another process and another thread of the agent's own
    process pread the same partition files and cat/dd other files: every answer stays exact."""
    files = [f for a in agents for f in _partition_files(a)]
    big = tmp_path / "big"
    big.write_bytes(os.urandom(32 << 20))
    reader = subprocess.Popen(  # another process: pread64 of the partition files in a loop
        [sys.executable, "-c", "import os, sys\nfds = [os.open(p, os.O_RDONLY) for p in "
         "sys.argv[1:]]\nwhile True:\n    for fd in fds:\n        for off in range(0, "
         "1 << 20, 16384):\n            os.pread(fd, 16384, off)\n", *map(str, files)])
    dd = subprocess.Popen(["sh", "-c", f"while true; do dd if={big} of=/dev/null bs=64k "
                           f"2>/dev/null; cat {big} > /dev/null; done"])
    stop = threading.Event()

    def same_process_reader() -> None:  # same tgid as the agents: only the address differs
        fds = [os.open(f, os.O_RDONLY) for f in files]
        buf = ctypes.create_string_buffer(16384)
        libc = ctypes.CDLL(None, use_errno=True)
        while not stop.is_set():
            for fd in fds:
                for off in range(0, 1 << 20, 16384):
                    libc.pread(fd, buf, ctypes.c_size_t(16384), ctypes.c_long(off))
        for fd in fds:
            os.close(fd)

    thread = threading.Thread(target=same_process_reader, daemon=True)
    thread.start()
    queries = [
        (Q6_WHERE, [sum_(col("price") * col("disc")), count_star()], []),
        (col("i32") < 0, [sum_("i64"), min_("i32"), max_("i16"), count_star()], []),
        (col("maybe") > 3, [sum_("maybe"), count("maybe"), count_star()], []),
        (col("i8") > 0, [sum_("maybe"), count("maybe"), max_("i64"), count_star()],
         ["flag", "disc"]),
        (col("i32") < 0, [count_star(), sum_("i64"), min_("i16")], ["u8"]),
    ]
    expected = [duckdb_answer(bcc_data, w, a, k) for w, a, k in queries]
    try:
        time.sleep(0.2)
        with ThreadPoolExecutor(4) as pool, Client([a.address for a in agents]) as other:
            for _ in range(4):
                jobs = [pool.submit(c.aggregate, "bcc_t", a, where=w, group_by=k,
                                    engine="bcc")
                        for c in (client, other) for w, a, k in queries]
                for k, job in enumerate(jobs):
                    got = job.result()
                    ours = list(zip(*[c.to_pylist() for c in got.columns], strict=True))
                    assert_same_rows(ours, expected[k % len(queries)], set(), f"query {k}")
    finally:
        stop.set()
        reader.kill()
        dd.kill()
        thread.join()


def test_reads_after_a_request_are_not_attributed(agents: list[RunningAgent], client: Client,
                                                  bcc_data: pa.Table) -> None:
    """Once a request ends its buffer is unregistered: a pread into the very same address
    by the same process changes nothing in the slot."""
    client.aggregate("bcc_t", [sum_("i64")], where=col("i64") > 0, engine="bcc")
    engine = shared()
    snapshot = []
    for loaded in list(engine.programs.values()):
        slots = loaded.bpf["slots"]
        for slot in range(len(loaded.addresses)):
            snapshot.append((loaded, slot, bytes(slots[ctypes.c_int(slot)])))
    fd = os.open(_partition_files(agents[0])[0], os.O_RDONLY)
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        for loaded, slot, _ in snapshot:
            last = loaded.layout[-1][2]
            size = loaded.rows * 8 if loaded.layout[-1][1] == "s64" else loaded.rows
            libc.pread(fd, ctypes.c_void_p(loaded.addresses[slot] + last),
                       ctypes.c_size_t(size), ctypes.c_long(0))
    finally:
        os.close(fd)
    for loaded, slot, before in snapshot:
        assert bytes(loaded.bpf["slots"][ctypes.c_int(slot)]) == before


def test_bcc_context_is_the_shared_head_then_its_own(client: Client, bcc_data: pa.Table) -> None:
    """bcc makes its ctypes of the context from the C itself: CTX_HEAD of bpfstore.h first,
    as codegen's mirror (codegen/context.py) reads it, then bcc's fields, then the plan's."""
    client.aggregate("bcc_t", [sum_("i64")], where=col("i64") > 0, engine="bcc")
    assert shared().programs
    for loaded in list(shared().programs.values()):
        leaf = loaded.bpf["slots"].Leaf
        names = [name for name, _ in leaf._fields_]
        assert names[:len(HEAD) + 3] == [name for name, _ in HEAD] + ["gen", "reads", "err"]
        assert [getattr(leaf, name).offset for name in names[:len(HEAD)]] == [
            8 * i for i in range(len(HEAD))]


@pytest.mark.parametrize("query", ["Q6", "Q1"])
def test_tpch_through_the_cli_equals_duckdb(agent_processes, lineitem, query) -> None:  # noqa: F811
    """Issue 7's bar (Q6) and issue 15's (Q1, GROUP BY): `bpfstore sql --engine bcc` on
    TPC-H, exact, bcc on every partition."""
    from bpfstore.connector.demo import Q1, Q6

    _, agents = agent_processes
    require_engine_at(agents, "bcc")
    text = {"Q6": Q6, "Q1": Q1}[query]
    if _cli("datasets", agents=agents).stdout.find("lineitem ") < 0:
        _cli("ingest", str(lineitem), "--dataset", "lineitem", "--partition-rows", "20000",
             agents=agents)
    result = _cli("sql", text, "--json", "--engine", "bcc", agents=agents, check=False)
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    con = duckdb.connect()
    con.execute(f"create view lineitem as select * from read_parquet('{lineitem}')")
    expected = con.sql(text).fetchall()
    assert len(got["rows"]) == len(expected) > 0
    for ours, theirs in zip(got["rows"], expected, strict=True):
        for a, b in zip(ours, theirs, strict=True):
            if isinstance(b, float):  # Q1's averages
                assert abs(float(a) - b) <= 1e-9 * max(1.0, abs(b))
            else:
                assert str(a) == str(b) or D.Decimal(str(a)) == D.Decimal(str(b))
    engines = {(p["engine"], p["path"]) for p in got["report"]["partitions"]}
    assert engines == {("bcc", "read")}, got["report"]["partitions"]
