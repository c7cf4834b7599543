"""Engines are named by one Enum: strings are parsed once, at the edges, with an error that
names the choices; the wire carries every name."""

from __future__ import annotations

import pytest

from bpfstore.connector import Client, Query, cli, count_star
from bpfstore.connector.sql import run_sql
from bpfstore.contract import wire
from bpfstore.contract.plan import EngineName, Plan
from bpfstore.node_agent.config import ENGINES
from bpfstore.node_agent.engines.select import Engines

CHOICES = "auto, arrow, bpf, bpf-hot, bpf-cold, bcc"


@pytest.mark.parametrize("name", list(EngineName))
def test_every_name_parses_and_crosses_the_wire(name: EngineName) -> None:
    assert EngineName.parse(name.value) is name and EngineName.parse(name) is name
    plan = Plan("d", aggregates=(count_star(),), engine=name.value)  # type: ignore[arg-type]
    assert plan.engine is name
    assert wire.plan_from_proto(wire.plan_to_proto(plan)).engine is name


@pytest.mark.parametrize("bad", ["gpu", "BPF", "", "bpf_hot", "x" * 10_000])
def test_an_unknown_name_is_refused_naming_the_choices(bad: str) -> None:
    with pytest.raises(ValueError, match=f"choose one of {CHOICES}") as info:
        EngineName.parse(bad)
    assert len(str(info.value)) < 200  # a hostile name is not echoed whole
    with pytest.raises(ValueError, match="unknown engine"):
        Plan("d", engine=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown engine"):
        Engines(bad, enable_bpf=False)


def test_the_client_refuses_an_unknown_engine_before_any_call() -> None:
    with Client("127.0.0.1:1") as client:  # nothing listens: a call would fail otherwise
        with pytest.raises(ValueError, match=f"unknown engine 'gpu'; choose one of {CHOICES}"):
            client.aggregate("d", [count_star()], engine="gpu")
        with pytest.raises(ValueError, match="unknown engine"):
            client.run(Query.partials("d", [count_star()], engine="gpu"))
        with pytest.raises(ValueError, match="unknown engine"):
            run_sql(client, "select count(*) from d", engine="gpu")


def test_the_command_lines_offer_exactly_the_engine_names(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert tuple(CHOICES.split(", ")) == ENGINES  # bpfstore-agent --engine, the config file
    with pytest.raises(SystemExit):
        cli.main(["sql", "select 1", "--engine", "gpu", "--agents", "127.0.0.1:1"])
    assert "bpf-cold" in capsys.readouterr().err  # the choices argparse lists
