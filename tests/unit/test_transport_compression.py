"""The Scan compression a Transport asks each agent for: "auto" decides by the address alone
(loopback: none; anything else: lz4), explicit settings win, bad settings fail early."""

from __future__ import annotations

import pickle

import pytest

from bpfstore.connector.transport import (
    Transport,
    TransportError,
    is_loopback,
    resolve_transport,
)

LOOPBACK = ["127.0.0.1:7340", "127.1.2.3:1", "localhost:7340", "LOCALHOST:7340",
            "node.localhost:7340", "[::1]:7340", "::1", "ipv4:127.0.0.1:7340",
            "ipv6:[::1]:7340", "dns:///localhost:7340", "dns:localhost:7340",
            "unix:/run/bpfstore.sock", "unix-abstract:bpfstore", "127.0.0.1"]
REMOTE = ["10.0.0.5:7340", "192.168.1.2", "node1:7340", "node1.example.com:7340",
          "[2001:db8::1]:7340", "2001:db8::1", "ipv4:10.1.1.1:7340", "dns:///node1:7340",
          "localhost.example.com:7340", "128.0.0.1:7340"]


@pytest.mark.parametrize("target", LOOPBACK)
def test_loopback_addresses_scan_uncompressed_by_default(target: str) -> None:
    assert is_loopback(target)
    assert Transport().scan_compression(target) == ""


@pytest.mark.parametrize("target", REMOTE)
def test_other_addresses_scan_lz4_by_default(target: str) -> None:
    assert not is_loopback(target)
    assert Transport().scan_compression(target) == "lz4"


@pytest.mark.parametrize(("setting", "wire"), [("none", ""), ("lz4", "lz4"), ("zstd", "zstd"),
                                               ("ZSTD", "zstd"), ("auto", None)])
def test_explicit_settings_win_over_the_address(setting: str, wire: str | None) -> None:
    t = Transport(compression=setting)
    assert t.compression == setting.lower()
    for target in ("127.0.0.1:7340", "node1:7340"):
        expected = wire if wire is not None else ("" if target.startswith("127.") else "lz4")
        assert t.scan_compression(target) == expected


@pytest.mark.parametrize("bad", ["gzip", "", "lz4_raw", "snappy", None, 1])
def test_unknown_settings_fail_when_the_transport_is_made(bad: object) -> None:
    with pytest.raises(TransportError, match="compression must be one of"):
        Transport(compression=bad)  # type: ignore[arg-type]


def test_resolved_from_the_argument_then_the_environment() -> None:
    assert resolve_transport(env={}).compression == "auto"
    assert resolve_transport(env={"BPFSTORE_COMPRESSION": "zstd"}).compression == "zstd"
    assert resolve_transport(compression="none",
                             env={"BPFSTORE_COMPRESSION": "zstd"}).compression == "none"
    with pytest.raises(TransportError):
        resolve_transport(env={"BPFSTORE_COMPRESSION": "brotli"})


def test_compression_travels_to_workers_and_keeps_the_identity() -> None:
    t = Transport(token="x", compression="zstd")
    assert pickle.loads(pickle.dumps(t)).compression == "zstd"
    assert "compression=zstd" in repr(t)
    # Same rows whatever the compression: Dask task names (the identity) do not change.
    assert t.identity() == Transport(token="x", compression="none").identity()


def test_the_cli_takes_compression() -> None:
    from bpfstore.connector.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["datasets", "--compression", "zstd"]).compression == "zstd"
    assert parser.parse_args(["datasets"]).compression is None  # then $BPFSTORE_COMPRESSION
    with pytest.raises(SystemExit):
        parser.parse_args(["datasets", "--compression", "gzip"])
