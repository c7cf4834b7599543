"""One program per plan shape, not per partition: over many partitions with different value
ranges, dictionaries and NULLs, a plan compiles a few shapes (counted as objects in the
agent's on-disk cache), and its answers equal DuckDB."""

from __future__ import annotations

import datetime as dt
import decimal as D
import random
from pathlib import Path

import pyarrow as pa
import pytest

from bpfstore.connector import Client, avg, col, count_star, sum_
from bpfstore.contract.combine import Avg
from bpfstore.node_agent.engines.bpf.engine import clang_identity, find_clang
from conftest import RunningAgent, reported, require_bpf
from oracle import assert_same_rows, duckdb_answer

pytestmark = pytest.mark.bpf
PARTITIONS, ROWS = 40, 300
DAY0 = dt.date(1993, 6, 1)


def _partition(rnd: random.Random, i: int) -> pa.Table:
    """Rows whose ranges differ per partition: dates inside 1994 or across it, quantities
    all below 24 or not, NULL quantities in every third one, a subset of the flags."""
    start = rnd.randint(0, 700)
    span = rnd.choice([20, 200, 600])
    top = rnd.choice([20, 50])
    flags = rnd.sample("ANR", rnd.randint(1, 3))
    statuses = rnd.sample("FO", rnd.randint(1, 2))
    nulls = i % 3 == 0
    return pa.table({
        "day": pa.array([DAY0 + dt.timedelta(days=start + rnd.randint(0, span))
                         for _ in range(ROWS)], pa.date32()),
        "qty": pa.array([None if nulls and rnd.random() < 0.2 else D.Decimal(rnd.randint(1, top))
                         for _ in range(ROWS)], pa.decimal128(15, 2)),
        "price": pa.array([D.Decimal(rnd.randint(90000, 10**7)).scaleb(-2) for _ in range(ROWS)],
                          pa.decimal128(15, 2)),
        "disc": pa.array([D.Decimal(rnd.randint(0, 10)).scaleb(-2) for _ in range(ROWS)],
                         pa.decimal128(15, 2)),
        "flag": [rnd.choice(flags) for _ in range(ROWS)],
        "status": [rnd.choice(statuses) for _ in range(ROWS)],
    })


@pytest.fixture(scope="module")
def shaped(tmp_path_factory: pytest.TempPathFactory):
    """A fresh agent (its own cache) holding the partitions; the table for the oracle."""
    agent = RunningAgent(str(tmp_path_factory.mktemp("shapes")))
    require_bpf(agent)
    rnd = random.Random(15)
    table = pa.concat_tables([_partition(rnd, i) for i in range(PARTITIONS)])
    with Client([agent.address]) as client:
        client.write("shapes", table, partition_rows=ROWS, overwrite=True)
        yield client, table, Path(agent.config.data_dir) / "bpf-cache", agent
    agent.stop()


price, disc, qty = col("price"), col("disc"), col("qty")
Q6 = ([sum_(price * disc), count_star()],
      (col("day") >= dt.date(1994, 1, 1)) & (col("day") < dt.date(1995, 1, 1))
      & disc.between(D.Decimal("0.05"), D.Decimal("0.07")) & (qty < 24), [])
Q1 = ([sum_("qty"), sum_(price), sum_(price * (1 - disc)), avg("qty"), count_star()],
      col("day") <= dt.date(1995, 3, 1), ["flag", "status"])


# Shapes allowed per path: the partitions with NULL quantities read its validity bitmap
# (a class of its own); everything else that differs (windows, dictionary codes, group
# bases and counts) travels in the context. Each sum is proven to fit 64 bits everywhere.
@pytest.mark.parametrize(("name", "query"), [("q6", Q6), ("q1", Q1)])
@pytest.mark.parametrize("engine", ["bpf-hot", "bpf-cold"])
def test_many_partitions_compile_a_few_shapes(shaped, name, query, engine) -> None:
    client, table, cache, _ = shaped
    aggs, where, keys = query
    before = set(cache.glob("*.bpf.o"))
    got, report = reported(client, "shapes", aggs, where=where, group_by=keys, engine=engine)
    shapes = set(cache.glob("*.bpf.o")) - before
    ran = [p for p in report.partitions if p.engine == "bpf"]
    assert {p.engine for p in report.partitions} <= {"bpf", "stats"}
    assert len(ran) >= PARTITIONS // 2, "too few partitions ran in the kernel to tell"
    assert 1 <= len(shapes) <= 2, f"{name}: {len(shapes)} shapes for {len(ran)} partitions"
    clang = find_clang()
    assert clang is not None
    # objects are named by clang's version too: another clang's object is never loaded
    assert {p.name.split("-")[-1] for p in shapes} == {f"{clang_identity(clang)}.bpf.o"}
    ours = list(zip(*[c.to_pylist() for c in got.columns], strict=True))
    approx = {len(keys) + i for i, a in enumerate(aggs) if isinstance(a, Avg)}
    assert_same_rows(ours, duckdb_answer(table, where, aggs, keys), approx, f"{name} {engine}")


@pytest.mark.parametrize(("name", "query"), [("q6", Q6), ("q1", Q1)])
def test_many_partitions_compile_a_few_shapes_on_bcc(shaped, name, query) -> None:
    """The same on bcc (compiled in memory, counted in the engine's programs): the number of
    groups changes only the context, GROUP_CAP (a power of two, at least 64) stays."""
    from bpfstore.node_agent.engines.bcc.engine import shared

    client, table, _, agent = shaped
    require_bpf(agent, "bcc")
    aggs, where, keys = query
    bcc = shared()
    before = set(bcc.programs)
    got, report = reported(client, "shapes", aggs, where=where, group_by=keys, engine="bcc")
    shapes = set(bcc.programs) - before
    ran = [p for p in report.partitions if p.engine == "bcc"]
    assert {p.engine for p in report.partitions} <= {"bcc", "stats"}
    assert len(ran) >= PARTITIONS // 2, "too few partitions ran in the kernel to tell"
    assert 1 <= len(shapes) <= 2, f"{name}: {len(shapes)} shapes for {len(ran)} partitions"
    ours = list(zip(*[c.to_pylist() for c in got.columns], strict=True))
    approx = {len(keys) + i for i, a in enumerate(aggs) if isinstance(a, Avg)}
    assert_same_rows(ours, duckdb_answer(table, where, aggs, keys), approx, f"{name} bcc")
