"""TLS and mutual TLS, with certificates made at test time: handshakes that must work, and
every refusal (an untrusted agent, an untrusted or missing client certificate, plaintext
against TLS and TLS against plaintext). In-process agents on loopback; real handshakes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pyarrow as pa
import pytest
from security_support import Pki

from bpfstore.connector import Client
from bpfstore.connector.client import AgentUnavailable
from bpfstore.connector.transport import Transport, TransportError, resolve_transport
from bpfstore.v1 import agent_pb2 as pb
from bpfstore.v1 import agent_pb2_grpc
from conftest import RunningAgent


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def servers(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """name -> address: plain, tls, mtls, and tls with a certificate from an unrelated CA."""
    def start(name: str, **settings: object) -> RunningAgent:
        return RunningAgent(str(tmp_path_factory.mktemp(name)), **settings)
    running = {
        "plain": start("plain"),
        "tls": start("tls", tls_cert=pki.server_cert, tls_key=pki.server_key),
        "mtls": start("mtls", tls_cert=pki.server_cert, tls_key=pki.server_key,
                      tls_client_ca=pki.client_ca),
        "untrusted": start("untrusted", tls_cert=pki.other_server_cert,
                           tls_key=pki.other_server_key),
    }
    yield {name: a.address for name, a in running.items()}
    for a in running.values():
        a.stop()


def _info(transport: Transport, address: str) -> grpc.StatusCode:
    channel = transport.channel(address)
    try:
        agent_pb2_grpc.AgentStub(channel).GetInfo(pb.GetInfoRequest(), timeout=10)
    except grpc.RpcError as exc:
        return exc.code()
    finally:
        channel.close()
    return grpc.StatusCode.OK


def test_tls_handshake_and_a_query(pki: Pki, servers: dict[str, str]) -> None:
    transport = resolve_transport(ca=pki.ca, env={})
    assert transport.tls and transport.cert is None
    with Client([servers["tls"]], transport=transport, timeout=10) as c:
        c.write("t", pa.table({"x": [1, 2, 3]}), overwrite=True)
        assert c.scan_table("t").column("x").to_pylist() == [1, 2, 3]


def test_mutual_tls_handshake(pki: Pki, servers: dict[str, str]) -> None:
    transport = resolve_transport(ca=pki.ca, cert=pki.client_cert, key=pki.client_key, env={})
    assert _info(transport, servers["mtls"]) == grpc.StatusCode.OK


@pytest.mark.parametrize(("server", "client"), [
    ("tls", "trusts another CA"),
    ("untrusted", "trusts our CA"),
    ("mtls", "no client certificate"),
    ("mtls", "client certificate from an untrusted CA"),
    ("tls", "plaintext"),
    ("mtls", "plaintext"),
    ("plain", "TLS"),
    ("tls", "expects another server name"),
])
def test_refused_handshakes(pki: Pki, servers: dict[str, str], server: str, client: str) -> None:
    transport = {
        "trusts another CA": lambda: resolve_transport(ca=pki.other_ca, env={}),
        "trusts our CA": lambda: resolve_transport(ca=pki.ca, env={}),
        "no client certificate": lambda: resolve_transport(ca=pki.ca, env={}),
        "client certificate from an untrusted CA": lambda: resolve_transport(
            ca=pki.ca, cert=pki.rogue_cert, key=pki.rogue_key, env={}),
        "plaintext": lambda: Transport(),
        "TLS": lambda: resolve_transport(ca=pki.ca, env={}),
        "expects another server name": lambda: resolve_transport(
            ca=pki.ca, server_name="other.example", env={}),
    }[client]()
    assert _info(transport, servers[server]) == grpc.StatusCode.UNAVAILABLE


def test_server_name_override(pki: Pki, servers: dict[str, str]) -> None:
    transport = resolve_transport(ca=pki.ca, server_name="localhost", env={})
    assert _info(transport, servers["tls"]) == grpc.StatusCode.OK


def test_a_refused_handshake_reads_as_an_unreachable_agent(pki: Pki,
                                                           servers: dict[str, str]) -> None:
    with Client([servers["mtls"]], transport=resolve_transport(ca=pki.ca, env={}),
                timeout=10) as c, pytest.raises(AgentUnavailable):
        c.describe("anything")


def test_settings_come_from_the_environment(pki: Pki) -> None:
    env = {"BPFSTORE_TLS_CA": pki.ca, "BPFSTORE_TLS_CERT": pki.client_cert,
           "BPFSTORE_TLS_KEY": pki.client_key, "BPFSTORE_TOKEN": "t0ken"}
    t = resolve_transport(env=env)
    assert t.tls and t.ca == Path(pki.ca).read_bytes() and t.token == "t0ken"
    assert resolve_transport(token="explicit", env=env).token == "explicit"  # arguments win
    assert resolve_transport(env={"BPFSTORE_TLS": "1"}).tls  # system roots
    assert not resolve_transport(env={}).tls
    assert "t0ken" not in repr(t) and "PRIVATE" not in repr(t)


def test_bad_client_settings_are_clear(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(TransportError, match="cannot read the TLS CA .* file .*missing.pem"):
        resolve_transport(ca=str(tmp_path / "missing.pem"), env={})
    with pytest.raises(TransportError, match="needs its key"):
        resolve_transport(cert=pki.client_cert, env={})


def test_transport_identity_separates_callers() -> None:
    a, b = Transport(token="a"), Transport(token="b")
    assert a.identity() != b.identity() and a.identity() == Transport(token="a").identity()
