"""Operating an agent process: SIGTERM drains in-flight requests, Prometheus metrics, logfmt
request logs."""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Iterator

import grpc
import pyarrow as pa
import pytest

from agent_process import BIN, AgentProcess, free_port, held_write, wait_for
from bpfstore.connector import Client, Query, col, count_star, sum_
from bpfstore.connector.client import SCAN_STREAMS
from bpfstore.node_agent.server import ipc_bytes
from bpfstore.v1 import agent_pb2 as pb
from bpfstore.v1 import agent_pb2_grpc


@pytest.fixture
def agent(tmp_path) -> Iterator[AgentProcess]:
    a = AgentProcess(tmp_path / "agent", metrics=True)
    yield a
    a.stop()


def test_sigterm_drains_in_flight_requests_then_exits_0(agent) -> None:
    table = pa.table({"i": list(range(5000))})
    gate = threading.Event()
    channel = grpc.insecure_channel(agent.address)
    stub = agent_pb2_grpc.AgentStub(channel)
    in_flight = stub.Write.future(held_write("drained", ipc_bytes(table), gate), timeout=60)
    wait_for(lambda: agent.metric("bpfstore_agent_requests_in_flight") == 1, what="the write")

    agent.terminate()
    wait_for(lambda: "draining" in agent.log(), what="the drain to start")
    for attempt in (stub, agent_pb2_grpc.AgentStub(grpc.insecure_channel(agent.address))):
        with pytest.raises(grpc.RpcError) as refused:  # old and new connections alike
            attempt.GetInfo(pb.GetInfoRequest(), timeout=10)
        # grpc refuses with one or the other, by timing; the client fails over on both
        assert refused.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
    assert agent.alive()  # still draining: the write holds it

    gate.set()
    response = in_flight.result(timeout=30)
    assert response.rows == 5000 and response.partitions == ["p0"]
    assert agent.proc.wait(timeout=30) == 0
    assert "stopped" in agent.log()
    channel.close()

    agent.start()  # what was committed while draining is there after a restart
    with Client([agent.address]) as c:
        assert c.aggregate("drained", [sum_("i")]).column(0)[0].as_py() == sum(range(5000))


def test_metrics_count_requests_errors_engines_and_bytes(agent) -> None:
    with Client([agent.address]) as c:
        c.write("m", pa.table({"i": list(range(1000))}), partition_rows=250)
        c.aggregate("m", [count_star(), sum_("i")], where=col("i") >= 500)
        scanned = c.run(Query.scan("m", where=col("i") < 10)).report
        with pytest.raises(Exception, match="no dataset"):
            c.aggregate("nope", [count_star()])
    m = agent.metric
    assert m('bpfstore_agent_requests_total{method="Write"}') == 4
    assert m('bpfstore_agent_requests_total{method="Aggregate"}') == 1
    # the scan's four partitions go to their agent in SCAN_STREAMS calls of consecutive ones
    calls = min(SCAN_STREAMS, 4)
    assert m('bpfstore_agent_requests_total{method="Scan"}') == calls
    assert m('bpfstore_agent_request_errors_total{code="NOT_FOUND",method="DescribeDataset"}') == 1
    assert m('bpfstore_agent_request_duration_seconds_count{method="Aggregate"}') == 1
    assert m('bpfstore_agent_request_duration_seconds_bucket{le="+Inf",method="Scan"}') == calls
    # i >= 500: two partitions pruned by statistics, two scanned by arrow; i < 10: one scanned
    assert m('bpfstore_agent_partitions_total{engine="stats",path=""}') == 2 + 3
    assert m('bpfstore_agent_partitions_total{engine="arrow",path=""}') == 2 + 1
    assert m('bpfstore_agent_rows_scanned_total{engine="arrow"}') == 750
    assert m('bpfstore_agent_bytes_scanned_total{engine="arrow"}') == 750 * 8
    assert m('bpfstore_agent_bytes_returned_total{method="Aggregate"}') > 0
    # streamed responses are counted as serialized: exactly the bytes the client received
    assert m('bpfstore_agent_bytes_returned_total{method="Scan"}') == scanned.bytes_moved > 0
    assert m("bpfstore_agent_requests_in_flight") == 0


def test_request_logs_are_logfmt_with_method_dataset_code_and_engines(agent) -> None:
    with Client([agent.address]) as c:
        c.write("logs", pa.table({"i": list(range(100))}), partition_rows=50)
        c.aggregate("logs", [sum_("i")], where=col("i") >= 60)
    lines = [ln for ln in agent.log().splitlines() if "method=Aggregate" in ln]
    assert len(lines) == 1
    fields = dict(re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', lines[0]))
    assert fields["level"] == "INFO" and fields["msg"] == "request"
    assert fields["dataset"] == "logs" and fields["code"] == "OK"
    assert fields["engines"] == "arrow:1,stats:1"  # statistics rule out the rows 0..49
    assert float(fields["duration_ms"]) > 0 and int(fields["rows_scanned"]) > 0
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", fields["ts"])


def test_metrics_port_in_use_is_a_clear_error(tmp_path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        result = subprocess.run(
            [str(BIN / "bpfstore-agent"), "--data-dir", str(tmp_path), "--no-bpf",
             "--listen", f"127.0.0.1:{free_port()}", "--metrics-listen", f"127.0.0.1:{taken}"],
            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"cannot serve metrics on 127.0.0.1:{taken}" in result.stderr
