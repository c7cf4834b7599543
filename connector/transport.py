"""How a client reaches the agents: plaintext or TLS (optionally with a client certificate for
mutual TLS), the bearer token sent with every call, and how scanned rows are compressed.

Every client path resolves its options here, once: `Client(transport=...)`, the CLI's
`--tls-ca/--tls-cert/--tls-key/--token/--compression`, Spark's
`tlsCa/tlsCert/tlsKey/token/compression` options and Dask's `transport=` (and
`compression=`). Unset values fall back to $BPFSTORE_TLS_CA, $BPFSTORE_TLS_CERT,
$BPFSTORE_TLS_KEY, $BPFSTORE_TOKEN, $BPFSTORE_COMPRESSION (and $BPFSTORE_TLS=1: TLS with the
system's roots).

`compression` is the Arrow IPC buffer compression agents apply to the rows a Scan returns
(ScanRequest.compression): "none", "lz4", "zstd", or "auto" (the default): lz4 to an agent
whose address is not loopback, none to one on loopback (127.0.0.0/8, ::1, localhost, a unix
socket), where no network is saved (loopback answers stay as they were before compression
existed; measured on a 2-vCPU VM lz4 was no slower there: docs/benchmarks/scan-compression.md).
Names are not resolved: a host name other than localhost counts as remote.
A `Transport` holds PEM contents, not paths: it pickles to Spark and Dask workers, which need
not have the files.
"""

from __future__ import annotations

import collections
import hashlib
import ipaddress
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from bpfstore.contract.errors import BpfstoreError

ENV = {"ca": "BPFSTORE_TLS_CA", "cert": "BPFSTORE_TLS_CERT", "key": "BPFSTORE_TLS_KEY",
       "token": "BPFSTORE_TOKEN", "tls": "BPFSTORE_TLS", "server_name": "BPFSTORE_TLS_SERVER_NAME",
       "compression": "BPFSTORE_COMPRESSION"}
# Transport.compression -> ScanRequest.compression ("auto" is decided per agent address)
COMPRESSIONS = {"none": "", "lz4": "lz4", "zstd": "zstd", "auto": None}


class TransportError(BpfstoreError):
    """Unusable TLS or token settings (a missing file, a certificate without its key)."""


@dataclass(frozen=True)
class Transport:
    tls: bool = False
    ca: bytes | None = field(default=None, repr=False)  # roots that sign agents; None: system's
    cert: bytes | None = field(default=None, repr=False)  # client certificate (mutual TLS)
    key: bytes | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    server_name: str | None = None  # the name agents' certificates carry, if not their address
    compression: str = "auto"  # of scanned rows: "auto", "none", "lz4", "zstd" (module doc)

    def __post_init__(self) -> None:
        if not isinstance(self.compression, str) or self.compression.lower() not in COMPRESSIONS:
            raise TransportError(f"compression must be one of {', '.join(COMPRESSIONS)}, "
                                 f"not {self.compression!r}")
        object.__setattr__(self, "compression", self.compression.lower())  # frozen
        if (self.cert is None) != (self.key is None):
            raise TransportError("a client certificate needs its key, and a key its "
                                 "certificate (--tls-cert and --tls-key)")
        if self.tls is False and (self.ca or self.cert):
            object.__setattr__(self, "tls", True)  # frozen

    def __repr__(self) -> str:  # never the token or the key
        return (f"Transport(tls={self.tls}, client_cert={self.cert is not None}, "
                f"token={'set' if self.token else 'none'}, compression={self.compression})")

    def scan_compression(self, agent: str) -> str:
        """ScanRequest.compression for a Scan of `agent` ("": none)."""
        wire = COMPRESSIONS[self.compression]
        if wire is not None:
            return wire
        return "" if is_loopback(agent) else "lz4"

    def identity(self) -> str:
        """A digest of who this transport speaks as: results read with one identity are never
        reused for another (Dask task names), and nothing secret is revealed. Compression is
        left out: it changes the bytes on the wire, never the rows."""
        parts = [self.token or "", (self.cert or b"").hex(), (self.ca or b"").hex(),
                 str(self.tls), self.server_name or ""]
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]

    def channel(self, target: str, options: Sequence[tuple[str, Any]] = ()) -> grpc.Channel:
        """A channel to one agent that speaks TLS when set and sends the token with each call."""
        opts = list(options)
        if self.server_name:
            opts.append(("grpc.ssl_target_name_override", self.server_name))
        if self.tls:
            credentials = grpc.ssl_channel_credentials(self.ca, self.key, self.cert)
            channel = grpc.secure_channel(target, credentials, options=opts)
        else:
            channel = grpc.insecure_channel(target, options=opts)
        if self.token:
            channel = grpc.intercept_channel(channel, _BearerToken(self.token))
        return channel


PLAINTEXT = Transport()


def is_loopback(target: str) -> bool:
    """Whether a gRPC target ("host:port", "[::1]:7340", "ipv4:127.0.0.1:7340",
    "dns:///localhost:7340", "unix:/path") names this machine by its address alone."""
    for scheme in ("dns:///", "dns:", "ipv4:", "ipv6:"):
        if target.startswith(scheme):
            target = target[len(scheme):]
            break
    else:
        if target.startswith(("unix:", "unix-abstract:")):
            return True
    if target.startswith("["):
        host = target[1:target.find("]")] if "]" in target else target[1:]
    elif target.count(":") == 1:
        host = target.rsplit(":", 1)[0]
    else:
        host = target  # no port, or a bare IPv6 address
    host = host.strip().rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False  # a host name: not resolved, counted as remote


def resolve_transport(ca: str | None = None, cert: str | None = None, key: str | None = None,
                      token: str | None = None, tls: bool | str | None = None,
                      server_name: str | None = None, compression: str | None = None,
                      env: Mapping[str, str] | None = None) -> Transport:
    """A Transport from file paths and a token; each value not given comes from its
    environment variable (see the module's doc)."""
    env = os.environ if env is None else env

    def pick(name: str, value: Any) -> Any:
        return value if value not in (None, "") else (env.get(ENV[name]) or None)

    tls_value = pick("tls", tls)
    return Transport(
        tls=str(tls_value).lower() in ("1", "true", "yes", "on") if tls_value is not None
        else False,
        ca=_read(pick("ca", ca), "TLS CA (--tls-ca, $BPFSTORE_TLS_CA)"),
        cert=_read(pick("cert", cert), "TLS client certificate (--tls-cert, $BPFSTORE_TLS_CERT)"),
        key=_read(pick("key", key), "TLS client key (--tls-key, $BPFSTORE_TLS_KEY)"),
        token=pick("token", token),
        server_name=pick("server_name", server_name),
        compression=pick("compression", compression) or "auto",
    )


def _read(path: str | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        with open(os.path.expanduser(path), "rb") as f:
            return f.read()
    except OSError as exc:
        raise TransportError(f"cannot read the {what} file {path}: "
                             f"{exc.strerror or exc}") from None


class _CallDetails(collections.namedtuple(
        "_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready",
                         "compression")), grpc.ClientCallDetails):
    pass


class _BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                   grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds `authorization: Bearer <token>` to every call's metadata."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _with_token(self, d: grpc.ClientCallDetails) -> _CallDetails:
        return _CallDetails(d.method, d.timeout, [*(d.metadata or ()), self._header],
                            d.credentials, getattr(d, "wait_for_ready", None),
                            getattr(d, "compression", None))

    def _call(self, continuation: Callable[..., Any], details: grpc.ClientCallDetails,
              request: Any) -> Any:
        return continuation(self._with_token(details), request)

    intercept_unary_unary = _call
    intercept_unary_stream = _call
    intercept_stream_unary = _call
    intercept_stream_stream = _call
