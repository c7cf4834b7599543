"""Spark and Dask reading through mutual TLS with a tenant's bearer token: the options reach
every agent call (Spark's planner and executors, Dask's worker processes)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest
from security_support import TENANTS, TOKENS, Pki

from bpfstore.connector import Client
from bpfstore.connector.transport import resolve_transport
from conftest import RunningAgent

N = 1000


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("secure-frontends")
    pki = Pki(root)
    agent = RunningAgent(str(root / "data"), tls_cert=pki.server_cert, tls_key=pki.server_key,
                         tls_client_ca=pki.client_ca, tenants=TENANTS)
    admin = resolve_transport(ca=pki.ca, cert=pki.client_cert, key=pki.client_key,
                              token=TOKENS["admin"], env={})
    table = pa.table({"x": pa.array(range(N), pa.int64()),
                      "k": pa.array([f"k{i % 3}" for i in range(N)])})
    with Client([agent.address], transport=admin, timeout=30) as c:
        c.write("sales_secure", table, partition_rows=250, overwrite=True)
        c.write("secret_secure", table, overwrite=True)
    yield {"agent": agent, "pki": pki}
    agent.stop()


@pytest.mark.spark
def test_spark_reads_and_writes_through_tls_and_a_token(secure: dict[str, Any]) -> None:
    pytest.importorskip("pyspark")
    from pyspark.sql import functions as F
    from spark_support import spark_session

    from bpfstore.connector.spark import explain

    spark, pki = spark_session(), secure["pki"]

    def reader(token: str) -> Any:
        return (spark.read.format("bpfstore").option("agents", secure["agent"].address)
                .option("tlsCa", pki.ca).option("tlsCert", pki.client_cert)
                .option("tlsKey", pki.client_key).option("token", token))

    df = reader(TOKENS["analyst"]).load("sales_secure")
    query = df.filter(F.col("x") >= 10).groupBy("k").agg(F.sum("x"), F.count("*"))
    got = {r["k"]: (r[1], r[2]) for r in query.collect()}  # aggregate pushed to the agent
    expected = {f"k{j}": (sum(i for i in range(10, N) if i % 3 == j),
                          sum(1 for i in range(10, N) if i % 3 == j)) for j in range(3)}
    assert got == expected
    assert df.filter(F.col("x") < 5).count() == 5  # rows read on the executors
    assert "sales_secure" in explain(query)
    assert TOKENS["analyst"] not in query._jdf.queryExecution().toString()  # redacted

    with pytest.raises(Exception, match="may not see dataset 'secret_secure'"):
        reader(TOKENS["analyst"]).load("secret_secure").collect()

    # writes carry the token too: the loader may write staging_*
    df.filter(F.col("x") < 100).write.format("bpfstore").mode("append") \
        .option("agents", secure["agent"].address).option("tlsCa", pki.ca) \
        .option("tlsCert", pki.client_cert).option("tlsKey", pki.client_key) \
        .option("token", TOKENS["loader"]).save("staging_from_spark")
    admin = resolve_transport(ca=pki.ca, cert=pki.client_cert, key=pki.client_key,
                              token=TOKENS["admin"], env={})
    with Client([secure["agent"].address], transport=admin, timeout=30) as c:
        assert c.describe("staging_from_spark").rows == 100


@pytest.mark.dask
def test_dask_reads_through_tls_and_a_token_on_worker_processes(secure: dict[str, Any]) -> None:
    distributed = pytest.importorskip("distributed")
    from bpfstore.connector.dask import read_bpfstore, to_bpfstore

    pki = secure["pki"]
    address = [secure["agent"].address]

    def transport(token: str | None) -> Any:
        return resolve_transport(ca=pki.ca, cert=pki.client_cert, key=pki.client_key,
                                 token=token, env={})

    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster):
        ddf = read_bpfstore("sales_secure", address, transport=transport(TOKENS["analyst"]),
                            partitions_per_task=2)
        assert ddf.npartitions == 2  # 4 partitions, 2 a task
        assert int(ddf[ddf.x >= 10].x.sum().compute()) == sum(range(10, N))  # pushed down
        assert len(ddf[ddf.x < 7].compute()) == 7  # rows scanned by the worker process
        summary = to_bpfstore(ddf[ddf.x < 50], "staging_from_dask", address,
                              transport=transport(TOKENS["loader"]))
        assert summary.rows == 50

    with pytest.raises(Exception, match="may not see dataset 'secret_secure'"):
        read_bpfstore("secret_secure", address, transport=transport(TOKENS["analyst"]))
    with pytest.raises(Exception, match="bearer token"):
        read_bpfstore("sales_secure", address, transport=transport(None))
