"""The agent's TOML config file, and the checks every config passes before the agent starts.

Every `AgentConfig` field is a top-level key of the same name (a field added to AgentConfig
is settable here without touching this module); `[tenants.<name>]` tables become `Tenant`s.
Values are checked against the fields' types; unknown keys are errors, not silently ignored.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import ssl
import tomllib
import typing
from collections.abc import Mapping
from typing import Any

from .config import ENGINES, AgentConfig, Tenant

TOKEN_HASH_PREFIX = "sha256:"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class ConfigError(Exception):
    """A config the agent refuses to start with; the message names the key and the fix."""


def load_config_file(path: str) -> dict[str, Any]:
    """The file's settings as AgentConfig keyword arguments (only the keys it sets)."""
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return settings_from_mapping(doc, where=path)


def settings_from_mapping(doc: Mapping[str, Any], where: str = "config") -> dict[str, Any]:
    types = typing.get_type_hints(AgentConfig)
    _refuse_unknown(doc, set(types), where)
    return {key: _convert(value, types[key], f"{where}: {key}") for key, value in doc.items()}


def _refuse_unknown(doc: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(doc) - known)
    if not unknown:
        return
    named = []
    for key in unknown:
        close = difflib.get_close_matches(key, known, n=1)
        named.append(f"{key} (did you mean {close[0]}?)" if close else key)
    raise ConfigError(f"{where}: unknown key(s) {', '.join(named)}; the keys are: "
                      f"{', '.join(sorted(known))}")


def _convert(value: Any, kind: Any, what: str) -> Any:
    """`value` from TOML as a value of type `kind`, or a ConfigError naming `what`."""
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif kind is str:
        if isinstance(value, str):
            return value
    elif kind == tuple[str, ...]:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
    elif kind == tuple[Tenant, ...]:
        if isinstance(value, dict):
            return tuple(_tenant(name, table, f"{what}.{name}") for name, table in value.items())
        raise ConfigError(f"{what} must be tables: [tenants.<name>] with tokens, read, write")
    else:
        raise ConfigError(f"{what}: settings of type {kind} cannot be read from a file yet")
    raise ConfigError(f"{what} must be {_describe(kind)}, not {value!r}")


def _describe(kind: Any) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        kind, "a list of strings")


def _tenant(name: str, table: Any, what: str) -> Tenant:
    if not isinstance(table, dict):
        raise ConfigError(f"{what} must be a table ([tenants.{name}])")
    types = typing.get_type_hints(Tenant)
    _refuse_unknown(table, set(types) - {"name"}, what)
    if "tokens" not in table:
        raise ConfigError(f"{what}: needs tokens = [\"sha256:...\"] "
                          "(make one with `bpfstore-agent hash-token`)")
    values = {k: _convert(v, types[k], f"{what}.{k}") for k, v in table.items()}
    return Tenant(name=name, **values)


# -- checks of the merged config (file and flags) ---------------------------------------------


def check_config(config: AgentConfig) -> None:
    """Refuse what would fail later or behave surprisingly; every message names the setting."""
    problems = [*_check_values(config), *_check_tls(config), *_check_tenants(config)]
    if problems:
        raise ConfigError("; ".join(problems))


QUOTAS = ("tenant_max_datasets", "tenant_max_partitions", "tenant_max_stored_bytes",
          "tenant_max_catalog_bytes")


def _check_values(c: AgentConfig) -> list[str]:
    out = []
    if c.engine not in ENGINES:
        out.append(f"engine must be one of {', '.join(ENGINES)}, not {c.engine!r}")
    if c.log_level not in LOG_LEVELS:
        out.append(f"log_level must be one of {', '.join(LOG_LEVELS)}, not {c.log_level!r}")
    for f in dataclasses.fields(c):
        value = getattr(c, f.name)
        positive = f.name.startswith(QUOTAS) or f.name.startswith("max_") or \
            f.name in ("workers", "scan_batch_rows", "stream_idle_seconds")
        if positive and isinstance(value, int | float) and value <= 0:
            out.append(f"{f.name} must be positive, not {value}")
    if c.tenant_max_concurrent < 0:
        out.append(f"tenant_max_concurrent must be 0 (no limit) or more, "
                   f"not {c.tenant_max_concurrent}")
    if not 0 <= c.tenant_max_workers <= c.workers:
        out.append(f"tenant_max_workers must be 0 (half of workers) to workers ({c.workers}), "
                   f"not {c.tenant_max_workers}")
    if c.max_concurrent_requests < c.workers:
        out.append(f"max_concurrent_requests ({c.max_concurrent_requests}) must be at least "
                   f"workers ({c.workers})")
    if ":" not in c.listen:
        out.append(f"listen must be HOST:PORT, not {c.listen!r}")
    return out


def _check_tls(c: AgentConfig) -> list[str]:
    out = []
    for key in ("tls_cert", "tls_key", "tls_client_ca"):
        path = getattr(c, key)
        if path and not os.path.isfile(path):
            out.append(f"{key}: no such file {path}")
        elif path and not os.access(path, os.R_OK):
            out.append(f"{key}: cannot read {path} (permissions)")
    if out:
        return out
    if bool(c.tls_cert) != bool(c.tls_key):
        return ["tls_cert and tls_key go together: set both (TLS) or neither (plaintext)"]
    if c.tls_client_ca and not c.tls_cert:
        return ["tls_client_ca (mutual TLS) needs tls_cert and tls_key too"]
    if c.tls_cert:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(c.tls_cert,
                                                                                c.tls_key)
        except ssl.SSLError as exc:
            out.append(f"tls_cert / tls_key: not a PEM certificate and its matching key "
                       f"({exc.reason or exc})")
    if c.tls_client_ca:
        try:
            ssl.create_default_context().load_verify_locations(cafile=c.tls_client_ca)
        except ssl.SSLError as exc:
            out.append(f"tls_client_ca: not PEM CA certificates ({exc.reason or exc})")
    return out


def _check_tenants(c: AgentConfig) -> list[str]:
    out = []
    owner: dict[str, str] = {}
    for t in c.tenants:
        if not t.tokens:
            out.append(f"tenants.{t.name}: tokens is empty (no one could use this tenant)")
        for h in t.tokens:
            digest = h.removeprefix(TOKEN_HASH_PREFIX)
            if not h.startswith(TOKEN_HASH_PREFIX) or len(digest) != 64 or \
                    any(ch not in "0123456789abcdef" for ch in digest):
                out.append(f"tenants.{t.name}: {h[:12]!r}... is not a token hash "
                           "\"sha256:<64 hex digits>\" (make one with "
                           "`bpfstore-agent hash-token`; never put the token itself here)")
            elif h in owner and owner[h] != t.name:
                out.append(f"tenants.{t.name}: a token hash is also in tenants.{owner[h]}")
            owner[h] = t.name
        for pattern in (*t.read, *t.write):
            if not pattern:
                out.append(f"tenants.{t.name}: an empty dataset pattern")
        for f in dataclasses.fields(t):
            if f.name.startswith("max_") and getattr(t, f.name) < 0:
                out.append(f"tenants.{t.name}.{f.name} must be 0 or more")
    return out


def is_loopback(listen: str) -> bool:
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name or 0.0.0.0-like wildcard: reachable from elsewhere


def exposure_warnings(c: AgentConfig) -> list[str]:
    """What the agent logs at start when it is reachable from elsewhere without protection."""
    if is_loopback(c.listen):
        return []
    out = []
    if not c.tenants:
        out.append(f"listening on {c.listen} with no tenants configured: anyone who can reach "
                   "it may read, write and drop every dataset (configure [tenants.<name>] "
                   "with tokens and grants, see deploy/agent.example.toml)")
    if c.tenants and not c.tls_cert:
        out.append(f"listening on {c.listen} without TLS: bearer tokens and data cross the "
                   "network in clear text (set tls_cert and tls_key)")
    return out
