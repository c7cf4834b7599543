"""An agent without the privileges the bpf engine needs still starts, answers every query
correctly on arrow, and says why bpf is off (GetInfo, forced engines, reports)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pyarrow as pa
import pytest

from bpfstore.connector import Client, Query, col, count_star, sum_
from bpfstore.connector.demo import running_agents
from bpfstore.contract.errors import Unsupported
from oracle import duckdb_answer

# root without any capability (no CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN): still the owner of
# the checkout and the venv wherever they are, but the kernel refuses to load BPF
NO_CAPABILITIES = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"]


@pytest.fixture(scope="module")
def unprivileged_agent():
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.fail("setpriv (util-linux) is needed to start an unprivileged agent")
        prefix = NO_CAPABILITIES
    else:  # already unprivileged
        prefix = []
    root = Path(tempfile.mkdtemp(prefix="bpfstore-nobody-"))
    try:
        with running_agents(root, 1, prefix=prefix) as addresses:
            yield Client(agents=addresses)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_says_why_bpf_is_off(unprivileged_agent: Client) -> None:
    engines = {e["name"]: e for e in unprivileged_agent.info()[0]["engines"]}
    assert engines["arrow"]["available"]
    for name in ("bpf", "bpf-hot", "bpf-cold"):
        assert not engines[name]["available"]
        assert "CAP_BPF" in engines[name]["reason"], engines[name]


def test_answers_on_arrow_and_forced_bpf_names_the_reason(unprivileged_agent: Client) -> None:
    table = pa.table({"x": pa.array(range(-5_000, 25_000), pa.int64()),
                      "y": pa.array([i % 7 for i in range(30_000)], pa.int32())})
    unprivileged_agent.write("t", table, partition_rows=10_000, overwrite=True)
    aggs, where = [sum_(col("x") * col("y")), count_star()], col("y") > 2
    got = unprivileged_agent.run(Query.aggregate("t", aggs, where))
    assert {p.engine for p in got.report.partitions} == {"arrow"}
    ours = list(zip(*[c.to_pylist() for c in got.table.columns], strict=True))
    assert ours == duckdb_answer(table, where, aggs, [])
    for engine in ("bpf", "bpf-cold"):
        with pytest.raises(Unsupported, match="CAP_BPF"):
            unprivileged_agent.aggregate("t", aggs, where=where, engine=engine)
