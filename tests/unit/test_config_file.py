"""The agent's config file: every AgentConfig field is a key, flags win over the file, and
bad files stop the agent with a message naming the key."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest

from bpfstore.node_agent.auth import hash_token
from bpfstore.node_agent.config import AgentConfig, Tenant
from bpfstore.node_agent.config_file import (
    ConfigError,
    check_config,
    exposure_warnings,
    load_config_file,
    settings_from_mapping,
)
from bpfstore.node_agent.main import main, parse_args

HASH = hash_token("secret")
EXAMPLE = Path(__file__).parents[2] / "deploy" / "agent.example.toml"


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return str(path)


def test_every_field_is_a_key_of_the_file() -> None:
    """A field someone adds to AgentConfig must be settable from the file without more code:
    its type must be one the file reader knows."""
    sample: dict[object, tuple[object, object]] = {  # type: (TOML value, setting)
        bool: (True, True), int: (3, 3), float: (2.5, 2.5), str: ("x", "x"),
        tuple[str, ...]: (["a", "b"], ("a", "b"))}
    for f in dataclasses.fields(AgentConfig):
        kind = typing.get_type_hints(AgentConfig)[f.name]
        if f.name == "tenants":
            continue
        assert kind in sample, f"AgentConfig.{f.name}: type {kind} not readable from TOML"
        toml_value, setting = sample[kind]
        assert settings_from_mapping({f.name: toml_value})[f.name] == setting


def test_a_full_file(tmp_path: Path) -> None:
    path = write(tmp_path, f"""
data_dir = "/srv/bpfstore"
listen = "0.0.0.0:7340"
workers = 4
max_deadline_seconds = 30        # an integer where a float is expected is fine
bpf = false
max_in_list = 500

[tenants.analytics]
tokens = ["{HASH}"]
read = ["tpch_*", "sales"]

[tenants.etl]
tokens = ["{hash_token('other')}"]
read = ["*"]
write = ["staging_*"]
max_concurrent = 2
""")
    values = load_config_file(path)
    assert values["workers"] == 4 and values["bpf"] is False
    assert values["max_deadline_seconds"] == 30.0
    assert values["tenants"] == (
        Tenant("analytics", (HASH,), read=("tpch_*", "sales")),
        Tenant("etl", (hash_token("other"),), read=("*",), write=("staging_*",),
               max_concurrent=2))
    check_config(AgentConfig(**values))


@pytest.mark.parametrize(("text", "words"), [
    ("listn = '0.0.0.0:1'", r"unknown key\(s\) listn \(did you mean listen\?\); the keys are"),
    ("workers = 'eight'", "workers must be an integer, not 'eight'"),
    ("workers = 8.5", "workers must be an integer"),
    ("bpf = 1", "bpf must be true or false"),
    ("listen = 7340", "listen must be a string"),
    ("workers = [", "not valid TOML"),
    ("tenants = 3", "tenants must be tables"),
    ("[tenants.a]\nread = ['*']", "tenants.a: needs tokens"),
    (f"[tenants.a]\ntokens = ['{HASH}']\nreed = ['*']", "unknown key.*reed.*read"),
    (f"[tenants.a]\ntokens = ['{HASH}']\nread = '*'", "tenants.a.read must be a list"),
])
def test_file_errors_name_the_key(tmp_path: Path, text: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        load_config_file(write(tmp_path, text))


def test_missing_file_is_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file .*nope.toml"):
        load_config_file(str(tmp_path / "nope.toml"))


@pytest.mark.parametrize(("settings", "words"), [
    ({"engine": "gpu"}, "engine must be one of"),
    ({"workers": 0}, "workers must be positive"),
    ({"max_in_list": -1}, "max_in_list must be positive"),
    ({"workers": 16, "max_concurrent_requests": 8}, "at least workers"),
    ({"log_level": "LOUD"}, "log_level must be one of"),
    ({"tls_cert": "/nonexistent/agent.pem", "tls_key": "/nonexistent/key.pem"},
     "tls_cert: no such file /nonexistent/agent.pem"),
    ({"tenants": (Tenant("a", ("secret",)),)}, "not a token hash.*hash-token"),
    ({"tenants": (Tenant("a", ()),)}, "tokens is empty"),
    ({"tenants": (Tenant("a", (HASH,)), Tenant("b", (HASH,)))}, "also in tenants.a"),
    ({"tenant_max_datasets": 0}, "tenant_max_datasets must be positive"),
    ({"tenant_max_stored_bytes": -5}, "tenant_max_stored_bytes must be positive"),
    ({"tenants": (Tenant("a", (HASH,), max_partitions=-1),)},
     "tenants.a.max_partitions must be 0 or more"),
])
def test_config_checks(settings: dict, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        check_config(AgentConfig(data_dir="/tmp/x", **settings))


def test_tls_pairs_are_checked(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ConfigError, match="tls_cert and tls_key go together"):
        check_config(AgentConfig(tls_cert=str(junk)))
    with pytest.raises(ConfigError, match="needs tls_cert"):
        check_config(AgentConfig(tls_client_ca=str(junk)))
    with pytest.raises(ConfigError, match="not a PEM certificate and its matching key"):
        check_config(AgentConfig(tls_cert=str(junk), tls_key=str(junk)))


def test_flags_win_over_the_file_and_the_file_over_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "listen = '127.0.0.1:9999'\nworkers = 3\nengine = 'arrow'\n"
                           "bpf_arena_bytes = 1048576\n")
    c = parse_args(["--config", path, "--workers", "5", "--data-dir", str(tmp_path)])
    assert (c.listen, c.workers, c.engine, c.bpf_arena_bytes) == ("127.0.0.1:9999", 5, "arrow",
                                                                   1 << 20)
    # a flag given with its default value still wins
    c = parse_args(["--config", path, "--listen", "127.0.0.1:7340"])
    assert c.listen == "127.0.0.1:7340" and c.workers == 3
    c = parse_args(["--config", path, "--no-bpf", "--bpf-cache-mb", "2"])
    assert c.bpf is False and c.bpf_arena_bytes == 2 << 20
    assert parse_args([]).bpf is True  # no file, no flag: the default


def test_main_refuses_a_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--config", write(tmp_path, "wrokers = 2")]) == 2
    assert "config error: " in capsys.readouterr().err


def test_hash_token_command(monkeypatch, capsys) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("secret\n"))
    assert main(["hash-token"]) == 0
    assert capsys.readouterr().out.strip() == HASH
    assert main(["hash-token", "--new"]) == 0
    token, digest = capsys.readouterr().out.split()
    assert len(token) >= 32 and digest == hash_token(token)


def test_warnings_when_exposed() -> None:
    assert exposure_warnings(AgentConfig(listen="127.0.0.1:7340")) == []
    assert exposure_warnings(AgentConfig(listen="localhost:7340")) == []
    [open_warning] = exposure_warnings(AgentConfig(listen="0.0.0.0:7340"))
    assert "no tenants configured" in open_warning
    [clear_text] = exposure_warnings(AgentConfig(listen="10.0.0.5:7340",
                                                 tenants=(Tenant("a", (HASH,)),)))
    assert "without TLS" in clear_text


def test_the_example_file_is_valid() -> None:
    values = load_config_file(str(EXAMPLE))
    assert values["tenants"] and values["tls_cert"]
