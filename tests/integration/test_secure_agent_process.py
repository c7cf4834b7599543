"""A real `bpfstore-agent --config agent.toml` process with mutual TLS and tenants, driven by
the real `bpfstore` command with --tls-* flags and $BPFSTORE_TOKEN; and agents refusing to
start on bad config files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from security_support import TENANTS, TOKENS, Pki

from agent_process import free_port

BIN = Path(sys.executable).parent


def _toml(values: dict[str, object]) -> str:
    return "\n".join(f"{k} = {json.dumps(v)}" for k, v in values.items()) + "\n"


@pytest.fixture(scope="module")
def secure_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    root = tmp_path_factory.mktemp("secure-agent")
    pki = Pki(root)
    address = f"127.0.0.1:{free_port()}"
    text = _toml({"data_dir": str(root / "data"), "listen": "127.0.0.1:1", "bpf": False,
                  "tls_cert": pki.server_cert, "tls_key": pki.server_key,
                  "tls_client_ca": pki.client_ca})
    for t in TENANTS:
        text += f"\n[tenants.{t.name}]\n" + _toml({"tokens": list(t.tokens),
                                                    "read": list(t.read),
                                                    "write": list(t.write)})
    config = root / "agent.toml"
    config.write_text(text)
    # --listen on the command line wins over the file's 127.0.0.1:1
    log = root / "agent.log"
    with open(log, "w") as stderr:  # a file: a chatty agent never blocks on a full pipe
        proc = subprocess.Popen([str(BIN / "bpfstore-agent"), "--config", str(config),
                                 "--listen", address], stdout=subprocess.PIPE, stderr=stderr,
                                text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    assert f"listening on {address}" in line, log.read_text()
    flags = ["--agents", address, "--tls-ca", pki.ca, "--tls-cert", pki.client_cert,
             "--tls-key", pki.client_key]
    yield {"address": address, "root": str(root), "flags": json.dumps(flags), "ca": pki.ca}
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)


def bpfstore(args: list[str], token: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BPFSTORE_")}
    if token:
        env["BPFSTORE_TOKEN"] = token
    return subprocess.run([str(BIN / "bpfstore"), *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_cli_through_mutual_tls_and_tokens(secure_agent: dict[str, str]) -> None:
    flags = json.loads(secure_agent["flags"])
    source = Path(secure_agent["root"]) / "rows.parquet"
    pq.write_table(pa.table({"x": pa.array(range(10), pa.int64())}), source)
    done = bpfstore(["ingest", str(source), "--dataset", "sales_q", *flags], TOKENS["admin"])
    assert done.returncode == 0, done.stderr

    done = bpfstore(["sql", "--json", "select sum(x) from sales_q", *flags], TOKENS["analyst"])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows"] == [["45"]]  # an exact decimal, as a string

    done = bpfstore(["datasets", *flags], TOKENS["loader"])  # may see staging_* only
    assert done.returncode == 0 and "sales_q" not in done.stdout

    done = bpfstore(["drop", "sales_q", *flags], TOKENS["analyst"])
    assert done.returncode == 1
    assert "may not write to dataset 'sales_q'" in done.stderr

    done = bpfstore(["describe", "sales_q", *flags], None)
    assert done.returncode == 1 and "bearer token" in done.stderr

    # the token as a flag works too, and wins over the environment
    done = bpfstore(["describe", "sales_q", *flags, "--token", TOKENS["analyst"]], "bad")
    assert done.returncode == 0, done.stderr


def test_cli_without_a_client_certificate_is_refused(secure_agent: dict[str, str]) -> None:
    done = bpfstore(["describe", "sales_q", "--agents", secure_agent["address"],
                     "--tls-ca", secure_agent["ca"]], TOKENS["admin"])
    assert done.returncode == 1 and "no agent reachable" in done.stderr, done.stderr


def test_cli_names_a_missing_certificate_file(secure_agent: dict[str, str]) -> None:
    done = bpfstore(["datasets", "--agents", secure_agent["address"], "--tls-ca",
                     "/nonexistent/ca.pem"], TOKENS["admin"])
    assert done.returncode == 1
    assert "cannot read the TLS CA" in done.stderr and "/nonexistent/ca.pem" in done.stderr


@pytest.mark.parametrize(("text", "words"), [
    ("workers = 'many'\n", "workers must be an integer"),
    ("tls_cert = '/nonexistent.pem'\ntls_key = '/nonexistent-key.pem'\n",
     "tls_cert: no such file /nonexistent.pem"),
    ("[tenants.x]\ntokens = ['plain-token']\n", "is not a token hash"),
])
def test_agent_refuses_to_start_on_a_bad_config(tmp_path: Path, text: str, words: str) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(text)
    done = subprocess.run([str(BIN / "bpfstore-agent"), "--config", str(config), "--data-dir",
                           str(tmp_path / "data"), "--no-bpf"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert "config error" in done.stderr and words in done.stderr
