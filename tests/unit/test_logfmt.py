"""The agent's log lines: logfmt that a parser splits back into the same fields."""

from __future__ import annotations

import logging
import re

from bpfstore.node_agent.logfmt import LogfmtFormatter, line, quote

PAIR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


def _parse(text: str) -> dict[str, str]:
    out = {}
    for key, value in PAIR.findall(text):
        if value.startswith('"'):
            value = re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t", "r": "\r"}.get(
                m.group(1), m.group(1)), value[1:-1])
        out[key] = value
    return out


def test_values_are_bare_only_when_safe() -> None:
    assert quote("Aggregate") == "Aggregate"
    assert quote(3.5) == "3.5"
    assert quote("") == '""'
    assert quote("a b") == '"a b"'
    assert quote('say "hi"') == '"say \\"hi\\""'
    assert quote("k=v") == '"k=v"'


def test_a_line_parses_back_into_its_fields() -> None:
    fields = {"method": "Scan", "dataset": "odd name=\"x\"\nnext", "code": "OK", "n": 3}
    text = line(fields)
    assert "\n" not in text
    assert _parse(text) == {k: str(v) for k, v in fields.items()}


def test_formatter_adds_ts_level_logger_msg_fields_and_exceptions() -> None:
    record = logging.LogRecord("bpfstore.agent", logging.ERROR, __file__, 1, "failed %s", ("x",),
                               None)
    record.fields = {"method": "Write"}
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    text = LogfmtFormatter().format(record)
    parsed = _parse(text)
    assert "\n" not in text
    assert parsed["level"] == "ERROR" and parsed["logger"] == "bpfstore.agent"
    assert parsed["msg"] == "failed x" and parsed["method"] == "Write"
    assert "ValueError: boom" in parsed["exc"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", parsed["ts"])
