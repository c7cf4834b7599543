"""Bearer tokens, tenants and grants on a real agent (in-process server on loopback).

The matrix: every RPC with no token, a bad token, and each tenant's token, on datasets inside
and outside its grants. Outside the grants the answer is PERMISSION_DENIED with the same
message whether or not the dataset exists, so a tenant learns nothing about others' data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pyarrow as pa
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from security_support import TENANTS, TOKENS

from bpfstore.connector import Client, count_star
from bpfstore.connector.transport import Transport
from bpfstore.contract import wire
from bpfstore.contract.errors import PermissionDenied, Unauthenticated
from bpfstore.contract.plan import Plan
from bpfstore.node_agent.server import ipc_bytes
from bpfstore.v1 import agent_pb2 as pb
from bpfstore.v1 import agent_pb2_grpc
from conftest import RunningAgent

OK = grpc.StatusCode.OK
DENIED = grpc.StatusCode.PERMISSION_DENIED
NO_AUTH = grpc.StatusCode.UNAUTHENTICATED
NOT_FOUND = grpc.StatusCode.NOT_FOUND


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAgent]:
    running = RunningAgent(str(tmp_path_factory.mktemp("tenants")), tenants=TENANTS)
    admin = Transport(token=TOKENS["admin"])
    with Client([running.address], transport=admin, timeout=10) as c:
        for name in ("sales_a", "staging_a", "secret_a"):
            c.write(name, pa.table({"x": pa.array([1, 2, 3], pa.int64())}))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def stub(agent: RunningAgent) -> agent_pb2_grpc.AgentStub:
    return agent_pb2_grpc.AgentStub(grpc.insecure_channel(agent.address))


def _metadata(who: str) -> list[tuple[str, str]]:
    if who == "none":
        return []
    if who == "bad":
        return [("authorization", "Bearer not-a-known-token")]
    return [("authorization", f"Bearer {TOKENS[who]}")]



def _plan(dataset: str) -> Any:
    return wire.plan_to_proto(Plan(dataset, aggregates=(count_star(),)))


OPS: dict[str, Callable[[Any, str, list], Any]] = {
    "describe": lambda s, d, m: s.DescribeDataset(pb.DescribeDatasetRequest(dataset=d),
                                                  metadata=m, timeout=10),
    "aggregate": lambda s, d, m: s.Aggregate(pb.AggregateRequest(plan=_plan(d)), metadata=m,
                                             timeout=10),
    "scan": lambda s, d, m: list(s.Scan(pb.ScanRequest(plan=_plan(d)), metadata=m, timeout=10)),
    "write": lambda s, d, m: s.Write(iter([pb.WriteChunk(
        dataset=d, arrow_ipc=ipc_bytes(pa.table({"x": pa.array([7], pa.int64())})))]),
        metadata=m, timeout=10),
    # drop a dataset nobody else uses: the matrix must not destroy the fixtures' data
    "drop": lambda s, d, m: s.DropDataset(pb.DropDatasetRequest(dataset=d + "_dropme"),
                                          metadata=m, timeout=10),
}


def _call(op: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    try:
        op()
    except grpc.RpcError as exc:
        return exc.code(), exc.details()
    return OK, ""


# (who, op, dataset) -> expected code; datasets *_missing do not exist
MATRIX = [
    *[(who, op, d, NO_AUTH) for who in ("none", "bad") for op in OPS
      for d in ("sales_a", "secret_a", "secret_missing")],
    # analyst: reads sales_*, writes nothing
    *[("analyst", op, "sales_a", OK) for op in ("describe", "aggregate", "scan")],
    ("analyst", "describe", "sales_missing", NOT_FOUND),  # inside its grants it may know
    *[("analyst", op, "sales_a", DENIED) for op in ("write", "drop")],
    *[("analyst", op, d, DENIED) for op in OPS for d in ("secret_a", "secret_missing",
                                                          "staging_a")],
    # loader: writes staging_* (so may see them), reads nothing
    ("loader", "describe", "staging_a", OK),
    *[("loader", op, "staging_a", DENIED) for op in ("aggregate", "scan")],
    *[("loader", op, "staging_a", OK) for op in ("write", "drop")],
    *[("loader", op, d, DENIED) for op in OPS for d in ("sales_a", "secret_a", "secret_missing")],
    # admin: everything
    *[("admin", op, d, OK) for op in OPS for d in ("sales_a", "secret_a")],
]


@pytest.mark.parametrize(("who", "op", "dataset", "expected"), MATRIX,
                         ids=[f"{w}-{o}-{d}" for w, o, d, _ in MATRIX])
def test_grant_matrix(stub, who: str, op: str, dataset: str, expected) -> None:
    code, details = _call(lambda: OPS[op](stub, dataset, _metadata(who)))
    assert code == expected, details
    if code == DENIED:
        assert f"tenant {who!r}" in details
    if code == NO_AUTH:
        assert "bearer token" in details and dataset not in details


@pytest.mark.parametrize("who", ["analyst", "loader"])
@pytest.mark.parametrize("op", list(OPS))
def test_denial_does_not_reveal_existence(stub, who: str, op: str) -> None:
    """The same code and message for an existing and a missing dataset outside the grants."""
    existing = _call(lambda: OPS[op](stub, "secret_a", _metadata(who)))
    missing = _call(lambda: OPS[op](stub, "secret_zz", _metadata(who)))
    assert existing[0] == missing[0] == DENIED
    assert existing[1].replace("secret_a", "X") == missing[1].replace("secret_zz", "X")


@pytest.mark.parametrize(("who", "prefixes"), [
    ("analyst", ("sales_",)),
    ("loader", ("staging_",)),
    ("admin", ("sales_", "staging_", "secret_")),
])
def test_list_shows_only_granted_datasets(stub, who: str, prefixes: tuple[str, ...]) -> None:
    listed = stub.ListDatasets(pb.ListDatasetsRequest(), metadata=_metadata(who), timeout=10)
    names = {d.name for d in listed.datasets}
    assert all(n.startswith(prefixes) for n in names), names
    assert {f"{p}a" for p in prefixes} <= names


@pytest.mark.parametrize("who", ["none", "bad"])
def test_list_and_info_need_a_token(stub, who: str) -> None:
    for call in (lambda: stub.ListDatasets(pb.ListDatasetsRequest(), metadata=_metadata(who)),
                 lambda: stub.GetInfo(pb.GetInfoRequest(), metadata=_metadata(who))):
        assert _call(call)[0] == NO_AUTH


def test_malformed_authorization_headers_are_refused(stub) -> None:
    for value in (TOKENS["admin"], f"Basic {TOKENS['admin']}", "Bearer ", "Bearer"):
        code, _ = _call(lambda v=value: stub.GetInfo(
            pb.GetInfoRequest(), metadata=[("authorization", v)], timeout=10))
        assert code == NO_AUTH, value


def test_health_checks_stay_open(agent: RunningAgent) -> None:
    health = health_pb2_grpc.HealthStub(grpc.insecure_channel(agent.address))
    reply = health.Check(health_pb2.HealthCheckRequest(service="bpfstore.v1.Agent"), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_client_raises_typed_errors(agent: RunningAgent) -> None:
    with Client([agent.address], transport=Transport(), timeout=10) as c, \
            pytest.raises(Unauthenticated, match="bearer token"):
        c.describe("sales_a")
    with Client([agent.address], transport=Transport(token=TOKENS["admin"]), timeout=10) as c:
        c.write("sales_b", pa.table({"x": pa.array([1, 2, 3], pa.int64())}), overwrite=True)
    with Client([agent.address], transport=Transport(token=TOKENS["analyst"]),
                timeout=10) as c:
        with pytest.raises(PermissionDenied, match="may not see dataset 'secret_a'"):
            c.describe("secret_a")
        names = [d.name for d in c.datasets()]
        assert "sales_b" in names and all(n.startswith("sales_") for n in names)
        assert c.aggregate("sales_b", [count_star()]).column(0).to_pylist() == [3]
        with pytest.raises(PermissionDenied, match="may not write to dataset 'sales_a'"):
            c.write("sales_a", pa.table({"x": pa.array([1], pa.int64())}))


def test_token_comes_from_the_environment(agent: RunningAgent, monkeypatch) -> None:
    monkeypatch.setenv("BPFSTORE_TOKEN", TOKENS["analyst"])
    with Client([agent.address], timeout=10) as c:
        names = [d.name for d in c.datasets()]
        assert "sales_a" in names and all(n.startswith("sales_") for n in names)


def test_request_log_names_the_tenant(agent: RunningAgent) -> None:
    import logging

    seen: list[str | None] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(getattr(record, "fields", {}).get("tenant"))

    logger = logging.getLogger("bpfstore.agent.requests")
    handler, level = Capture(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        with Client([agent.address], transport=Transport(token=TOKENS["loader"]),
                    timeout=10) as c:
            c.describe("staging_a")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert "loader" in seen
