"""deploy/: what can be checked without a container runtime or a cluster — the DaemonSet parses
and asks for what the agent needs, the systemd unit verifies, the image installs the engine's
packages, and the flags the files pass exist."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bpfstore.node_agent.config_file import load_config_file

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _daemonset() -> dict:
    docs = list(yaml.safe_load_all((DEPLOY / "daemonset.yaml").read_text()))
    assert [d["kind"] for d in docs] == ["Namespace", "ConfigMap", "DaemonSet"]
    return {d["kind"]: d for d in docs}


def test_daemonset_has_capabilities_hostpath_probes_and_metrics() -> None:
    docs = _daemonset()
    pod = docs["DaemonSet"]["spec"]["template"]["spec"]
    (agent,) = pod["containers"]
    caps = agent["securityContext"]["capabilities"]
    assert caps == {"drop": ["ALL"], "add": ["BPF", "PERFMON"]}
    assert agent["securityContext"]["allowPrivilegeEscalation"] is False
    data = next(v for v in pod["volumes"] if v["name"] == "data")
    assert data["hostPath"]["path"] == "/var/lib/bpfstore"
    assert {"name": "data", "mountPath": "/var/lib/bpfstore"} in agent["volumeMounts"]
    ports = {p["name"]: p for p in agent["ports"]}
    assert agent["readinessProbe"]["grpc"]["port"] == ports["grpc"]["containerPort"] == 7340
    assert agent["livenessProbe"]["grpc"]["port"] == 7340
    template = docs["DaemonSet"]["spec"]["template"]["metadata"]
    assert template["annotations"]["prometheus.io/port"] == str(ports["metrics"]["containerPort"])
    assert pod["terminationGracePeriodSeconds"] > 30  # longer than the agent's drain


def test_daemonset_config_is_a_valid_agent_config(tmp_path) -> None:
    toml = _daemonset()["ConfigMap"]["data"]["agent.toml"]
    (tmp_path / "agent.toml").write_text(toml)
    settings = load_config_file(str(tmp_path / "agent.toml"))
    assert settings["metrics_listen"] == "0.0.0.0:9340"
    assert settings["data_dir"] == "/var/lib/bpfstore"


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys keep their case
    parser.read_string((DEPLOY / "bpfstore-agent.service").read_text())
    return parser


def test_systemd_unit_grants_only_the_bpf_capabilities() -> None:
    service = _unit()["Service"]
    assert service["AmbientCapabilities"].split() == ["CAP_BPF", "CAP_PERFMON"]
    assert service["CapabilityBoundingSet"].split() == ["CAP_BPF", "CAP_PERFMON"]
    assert service["NoNewPrivileges"] == "yes" and service["ProtectSystem"] == "strict"
    assert service["KillSignal"] == "SIGTERM"
    assert int(service["TimeoutStopSec"]) > 30
    assert "bpfstore-agent --config /etc/bpfstore/agent.toml" in service["ExecStart"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_unit_verifies(tmp_path) -> None:
    """`systemd-analyze verify` with the binary pointed at this venv's agent (it checks the
    executable exists) and root as the user (no bpfstore user here)."""
    text = (DEPLOY / "bpfstore-agent.service").read_text()
    text = text.replace("/opt/bpfstore/bin/bpfstore-agent",
                        str(Path(sys.executable).parent / "bpfstore-agent"))
    text = re.sub(r"^(User|Group)=bpfstore$", r"\1=root", text, flags=re.M)
    unit = tmp_path / "bpfstore-agent.service"
    unit.write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                            text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Unknown" not in output and "Failed" not in output, output


def test_containerfile_installs_the_engine_and_runs_the_agent() -> None:
    text = (DEPLOY / "Containerfile").read_text()
    assert re.search(r"^FROM debian:12", text, re.M)
    final = text[text.rindex("\nFROM "):]  # the runtime stage
    for package in ("clang-19", "libbpf1", "python3"):
        assert re.search(rf"apt-get install[^\n]*\b{package}\b", final), package
    assert 'ENTRYPOINT ["/opt/bpfstore/bin/bpfstore-agent"]' in final
    assert "STOPSIGNAL SIGTERM" in final and "EXPOSE 7340 9340" in final


def test_flags_used_by_the_deploy_files_exist() -> None:
    from bpfstore.node_agent.main import parse_args

    config = parse_args(["--data-dir", "/var/lib/bpfstore", "--listen", "0.0.0.0:7340",
                         "--metrics-listen", "0.0.0.0:9340"])
    assert config.metrics_listen == "0.0.0.0:9340"
