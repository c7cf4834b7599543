"""Test certificates made at test time (never committed) and secured agents on loopback.

`Pki(folder)` writes PEM files: a CA that signs the agent's certificate (for 127.0.0.1 and
localhost), a separate client CA that signs a client certificate, and an unrelated CA whose
certificates nothing trusts (for refusals).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bpfstore.node_agent.auth import hash_token
from bpfstore.node_agent.config import Tenant

TOKENS = {"analyst": "analyst-token-1", "loader": "loader-token-2", "admin": "admin-token-3"}
TENANTS = (
    # reads the sales datasets, writes nothing
    Tenant("analyst", (hash_token(TOKENS["analyst"]),), read=("sales_*",)),
    # writes (and so sees) staging datasets, reads nothing
    Tenant("loader", (hash_token(TOKENS["loader"]),), write=("staging_*",)),
    Tenant("admin", (hash_token(TOKENS["admin"]),), read=("*",), write=("*",)),
)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@dataclass
class _Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _issue(cn: str, issuer: _Issued | None, *, ca: bool = False, server: bool = False
           ) -> _Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(cn))
               .issuer_name(issuer.cert.subject if issuer else _name(cn))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    elif not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    signer = issuer.key if issuer else key
    return _Issued(builder.sign(signer, hashes.SHA256()), key)


class Pki:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        ca = _issue("bpfstore test CA", None, ca=True)
        client_ca = _issue("bpfstore test client CA", None, ca=True)
        other_ca = _issue("unrelated CA", None, ca=True)
        self.ca = self._write("ca.pem", ca)
        self.server_cert, self.server_key = self._pair("agent", _issue("agent", ca, server=True))
        self.client_ca = self._write("client-ca.pem", client_ca)
        self.client_cert, self.client_key = self._pair("client", _issue("client1", client_ca))
        self.other_ca = self._write("other-ca.pem", other_ca)
        # a client certificate from a CA the agent does not trust
        self.rogue_cert, self.rogue_key = self._pair("rogue", _issue("rogue", other_ca))
        # an agent certificate from the unrelated CA: clients trusting `ca` must refuse it
        self.other_server_cert, self.other_server_key = self._pair(
            "other-agent", _issue("agent", other_ca, server=True))

    def _write(self, name: str, issued: _Issued) -> str:
        path = self.folder / name
        path.write_bytes(issued.cert.public_bytes(serialization.Encoding.PEM))
        return str(path)

    def _pair(self, stem: str, issued: _Issued) -> tuple[str, str]:
        cert = self._write(f"{stem}.pem", issued)
        key = self.folder / f"{stem}-key.pem"
        key.write_bytes(issued.key.private_bytes(serialization.Encoding.PEM,
                                                 serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))
        return cert, str(key)
