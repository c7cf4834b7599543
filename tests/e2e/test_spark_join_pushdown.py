"""Spark join key pushdown (connector/spark/java/JoinPushdown.java; off by default, on here
with spark.bpfstore.pushdown.joins=true): a join of a bpfstore scan with a small side computes
the small side once and sends its keys to the big side's agents as a key set. Every query
equals plain Spark over Parquet copies of the same rows, with the pushdown on and off; the
keys reach the big table's scans where the join cannot change (inner, semi, the outer join's
non-preserved side, through grouping keys) and nowhere else (the preserved side of an outer
join, anti joins, a small side over `maxRows`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from spark_support import recording, rows, settings, spark_session

from bpfstore.connector.client import Client
from bpfstore.contract.plan import In, KeySet, Plan, walk

pytestmark = pytest.mark.spark
pytest.importorskip("pyspark")

BIG_ROWS, SMALL_ROWS = 6000, 300
JOINS_OFF = {"spark__bpfstore__pushdown__joins": "false"}


def _tables() -> dict[str, pa.Table]:
    rng = np.random.default_rng(23)
    n, m = BIG_ROWS, SMALL_ROWS
    names = np.array([f"n{i:03d}" for i in range(300)], dtype=object)
    days = rng.integers(0, 400, n)
    big = pa.table({
        "k": pa.array(rng.integers(0, 2000, n), pa.int64(), mask=rng.random(n) < 0.03),
        "s": pa.array(names[rng.integers(0, 300, n)].tolist(), pa.string(),
                      mask=rng.random(n) < 0.03),
        "d": pa.array([dt.date(2020, 1, 1) + dt.timedelta(days=int(x)) for x in days],
                      pa.date32()),
        "m": pa.array([Decimal(int(x)) / 100 for x in rng.integers(0, 5000, n)],
                      pa.decimal128(12, 2)),
        "v": pa.array(rng.integers(-1000, 1000, n), pa.int64()),
    })
    sk = rng.integers(0, 2000, m)
    sk[1::3] = sk[::3][: len(sk[1::3])]  # duplicate keys on the small side
    small = pa.table({
        "sk": pa.array(sk, pa.int64(), mask=rng.random(m) < 0.05),  # NULL keys too
        "ss": pa.array(names[rng.integers(0, 300, m)].tolist(), pa.string()),
        "sd": pa.array([dt.date(2020, 1, 1) + dt.timedelta(days=int(x))
                        for x in rng.integers(0, 400, m)], pa.date32()),
        "sm": pa.array([Decimal(int(x)) / 100 for x in rng.integers(0, 5000, m)],
                       pa.decimal128(12, 2)),
        "flag": pa.array(rng.integers(0, 10, m), pa.int32()),
    })
    tiny = pa.table({"tk": pa.array([3, 5, 7, None], pa.int32()),
                     "label": ["three", "five", "seven", "none"]})
    return {"sj_big": big, "sj_small": small, "sj_tiny": tiny}


@pytest.fixture(scope="module")
def env(agents, client: Client, tmp_path_factory) -> Iterator[dict[str, Any]]:
    spark = spark_session()
    addresses = ",".join(a.address for a in agents)
    out = tmp_path_factory.mktemp("spark-joins")
    views: dict[str, dict[str, Any]] = {"ours": {}, "plain": {}}
    for name, table in _tables().items():
        pq.write_table(table, out / f"{name}.parquet")
        client.write(name, table, partition_rows=500, overwrite=True)  # 12 big partitions
        views["ours"][name] = spark.read.format("bpfstore").option("agents", addresses).load(name)
        views["plain"][name] = spark.read.parquet(str(out / f"{name}.parquet"))
    with settings(spark, spark__bpfstore__pushdown__joins="true"):  # off by default
        yield {"spark": spark, "agents": agents, **views}


def run(env: dict[str, Any], kind: str, text: str) -> list[tuple]:
    for name, df in env[kind].items():
        df.createOrReplaceTempView(name.removeprefix("sj_"))
    return sorted(rows(env["spark"].sql(text)), key=repr)


def keyed_scans(calls: list[tuple[str, Plan]], dataset: str) -> list[Plan]:
    """The plans run on `dataset` whose filter holds pushed keys: a key set, or an IN list
    for a few keys (no query here has an IN of its own on the big table)."""
    return [p for _, p in calls if p.dataset == dataset and p.filter is not None
            and any(isinstance(e, KeySet | In) for e in walk(p.filter))]


def joins_pushed(spark: Any) -> int:
    return int(spark._jvm.io.bpfstore.spark.BpfstoreRule.joinsPushed())


# (query, whether the big table's scans must carry the small side's keys; None: no scan)
QUERIES = {
    "inner_int": ("select b.k, b.v, s.ss from big b join small s on b.k = s.sk "
                  "where s.flag < 2", True),
    "inner_like": ("select b.k, b.v from big b join small s on b.k = s.sk "
                   "where s.ss like '%7%'", True),  # a filter that stays with Spark
    "inner_string": ("select b.s, sum(b.v), count(*) from big b join small s on b.s = s.ss "
                     "where s.flag = 3 group by b.s", True),
    "inner_date": ("select b.d, b.m from big b join small s on b.d = s.sd where s.flag = 4",
                   True),
    "inner_decimal": ("select b.m, b.k from big b join small s on b.m = s.sm "
                      "where s.flag < 5", True),
    "small_on_left": ("select s.flag, sum(b.v) from small s join big b on s.sk = b.k "
                      "where s.flag in (1, 2) group by s.flag", True),
    "in_subquery": ("select count(*), sum(v) from big where k in "
                    "(select sk from small where flag < 3)", True),
    "exists": ("select count(*) from big b where exists "
               "(select 1 from small s where s.sk = b.k and s.flag = 7)", True),
    "small_preserved": ("select s.sk, s.flag, b.v from (select * from small where flag < 2) s "
                        "left join big b on b.k = s.sk", True),
    "below_aggregate": ("select s.ss, a.total from (select k, sum(v) total from big "
                        "group by k) a join small s on a.k = s.sk where s.flag < 2", True),
    # tiny's keys filter small, whose keys then filter big
    # the subquery's own scan was pushed down first: the join's keys reach the outer scan
    "scalar_subquery": ("select count(*), sum(b.v) from big b join small s on b.k = s.sk "
                        "where s.flag < 2 and b.v < (select avg(b2.v) from big b2 "
                        "where b2.k = b.k)", True),
    "three_tables": ("select t.label, count(*), sum(b.v) from big b join small s "
                     "on b.k = s.sk join tiny t on s.flag = t.tk where t.label <> 'none' "
                     "group by t.label", True),
    "local_small": ("select b.k, b.v from big b join (select * from values (3L), (70L), "
                    "(null) as t(x)) on b.k = x", True),
    "empty_small": ("select count(*) from big b join small s on b.k = s.sk "
                    "where s.flag > 100", None),  # no keys: the big table is not read at all
    "big_preserved": ("select count(*), count(s.sk), sum(b.v) from big b left join "
                      "(select * from small where flag < 2) s on b.k = s.sk", False),
    "not_in": ("select count(*) from big where k not in "
               "(select sk from small where flag < 2 and sk is not null)", False),
    "not_exists": ("select count(*) from big b where not exists "
                   "(select 1 from small s where s.sk = b.k and s.flag < 2)", False),
    "full_outer": ("select count(*), count(b.k), count(s.sk) from big b full join "
                   "(select * from small where flag < 2) s on b.k = s.sk", False),
    # the small side's EXISTS reads the whole big table: never computed while planning
    "small_with_exists": ("select count(*), sum(b.v) from big b join (select * from small sm "
                          "where sm.flag < 2 and exists (select 1 from big b2 "
                          "where b2.k = sm.sk)) x on b.k = x.sk", False),
    "unfiltered_small": ("select count(*) from big b join small s on b.k = s.sk", False),
}


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_join_equals_plain_spark(name: str, env: dict[str, Any]) -> None:
    text, pushed = QUERIES[name]
    expected = run(env, "plain", text)
    before = joins_pushed(env["spark"])
    with recording(env["agents"]) as rec:
        ours = run(env, "ours", text)
    assert ours == expected
    if pushed is None:
        assert [p for _, p in rec.calls if p.dataset == "sj_big"] == []
    else:
        assert bool(keyed_scans(rec.calls, "sj_big")) is pushed, rec.calls
    assert (joins_pushed(env["spark"]) > before) is (pushed is not False)
    with settings(env["spark"], **JOINS_OFF), recording(env["agents"]) as rec:
        assert run(env, "ours", text) == expected
    assert keyed_scans(rec.calls, "sj_big") == []


def test_the_key_set_is_the_small_sides_keys(env: dict[str, Any]) -> None:
    """The big table's scans carry exactly the small side's non-NULL keys after its filter."""
    text = QUERIES["inner_int"][0]
    with recording(env["agents"]) as rec:
        run(env, "ours", text)
    (plan, *_) = keyed_scans(rec.calls, "sj_big")
    keysets = [e for e in walk(plan.filter) if isinstance(e, KeySet)]
    small = _tables()["sj_small"]
    wanted = {k for k, f in zip(small["sk"].to_pylist(), small["flag"].to_pylist(),
                                strict=True) if f < 2 and k is not None}
    assert {k for k in keysets[0].keys.to_pylist()} == wanted


@pytest.mark.parametrize(("setting", "small", "why"), [
    ("maxRows", "s.flag < 2", "more than 5 rows"),  # computed under a limit of 6 rows
    ("maxRows", "s.ss like 'n1%'", "more than 5 rows"),
    ("maxBytes", "s.flag = 3", "more than 5 bytes"),
])
def test_small_side_over_a_limit_stays_with_spark(setting: str, small: str, why: str,
                                                  env: dict[str, Any]) -> None:
    text = f"select b.k, b.v, s.ss from big b join small s on b.k = s.sk where {small}"
    expected = run(env, "plain", text)
    with settings(env["spark"], **{f"spark__bpfstore__pushdown__joins__{setting}": "5"}), \
            recording(env["agents"]) as rec:
        assert run(env, "ours", text) == expected
    assert keyed_scans(rec.calls, "sj_big") == []
    assert why in str(env["spark"]._jvm.io.bpfstore.spark.BpfstoreRule.lastJoinBail())


@pytest.mark.parametrize("ansi", ["true", "false"])
def test_pushed_keys_with_ansi(ansi: str, env: dict[str, Any]) -> None:
    text = QUERIES["below_aggregate"][0]
    with settings(env["spark"], spark__sql__ansi__enabled=ansi):
        assert run(env, "ours", text) == run(env, "plain", text)


def test_no_keys_below_a_nondeterministic_filter(env: dict[str, Any]) -> None:
    """rand() must see the rows it saw before: the keys stay above it (with Spark)."""
    text = ("select count(*) from (select * from big where rand(7) < 0.5) b "
            "join small s on b.k = s.sk where s.flag < 2")
    with recording(env["agents"]) as rec:
        run(env, "ours", text)
    assert keyed_scans(rec.calls, "sj_big") == []


def test_small_side_error_is_spark_error(env: dict[str, Any]) -> None:
    """A small side that fails fails the query as it does without the pushdown."""
    text = ("select count(*) from big b join small s on b.k = s.sk "
            "where cast(s.ss as int) > 0")
    with settings(env["spark"], spark__sql__ansi__enabled="true"):
        with pytest.raises(Exception, match="CAST_INVALID_INPUT"):
            run(env, "plain", text)
        with pytest.raises(Exception, match="CAST_INVALID_INPUT"):
            run(env, "ours", text)
    assert "CAST_INVALID_INPUT" in str(env["spark"]._jvm.io.bpfstore.spark.BpfstoreRule
                                       .lastJoinBail())


def test_explain_shows_the_pushed_keys(env: dict[str, Any]) -> None:
    from bpfstore.connector.spark.plan_summary import pushdown_summary

    run(env, "ours", "select 1")  # the temp views over bpfstore
    small = _tables()["sj_small"]
    n = len({k for k, f in zip(small["sk"].to_pylist(), small["flag"].to_pylist(), strict=True)
             if f < 2 and k is not None})
    summaries = pushdown_summary(env["spark"].sql(QUERIES["inner_int"][0]))
    (big,) = [s for s in summaries if "'sj_big'" in s]
    assert f"k IN <{n} keys>" in big, big
