"""How a client reaches the agents: plaintext or TLS (optionally with a client certificate for
mutual TLS), and the bearer token sent with every call.

Every client path resolves its options here, once: `Client(transport=...)`, the CLI's
`--tls-ca/--tls-cert/--tls-key/--token`, Spark's `tlsCa/tlsCert/tlsKey/token` options and
Dask's `transport=`. Unset values fall back to $BPFSTORE_TLS_CA, $BPFSTORE_TLS_CERT,
$BPFSTORE_TLS_KEY, $BPFSTORE_TOKEN (and $BPFSTORE_TLS=1: TLS with the system's roots).
A `Transport` holds PEM contents, not paths: it pickles to Spark and Dask workers, which need
not have the files.
"""

from __future__ import annotations

import collections
import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from bpfstore.contract.errors import BpfstoreError

ENV = {"ca": "BPFSTORE_TLS_CA", "cert": "BPFSTORE_TLS_CERT", "key": "BPFSTORE_TLS_KEY",
       "token": "BPFSTORE_TOKEN", "tls": "BPFSTORE_TLS", "server_name": "BPFSTORE_TLS_SERVER_NAME"}


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

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise TransportError("a client certificate needs its key, and a key its "
                                 "certificate (--tls-cert and --tls-key)")
        if self.tls is False and (self.ca or self.cert):
            object.__setattr__(self, "tls", True)  # frozen

    def __repr__(self) -> str:  # never the token or the key
        return (f"Transport(tls={self.tls}, client_cert={self.cert is not None}, "
                f"token={'set' if self.token else 'none'})")

    def identity(self) -> str:
        """A digest of who this transport speaks as: results read with one identity are never
        reused for another (Dask task names), and nothing secret is revealed."""
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


def resolve_transport(ca: str | None = None, cert: str | None = None, key: str | None = None,
                      token: str | None = None, tls: bool | str | None = None,
                      server_name: str | None = None,
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
