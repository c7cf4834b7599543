"""The agent's log lines: logfmt (`key=value`, one event per line), so they grep and parse.

    ts=2026-11-26T00:33:26.123Z level=INFO logger=bpfstore.agent.requests msg=request
      method=Aggregate dataset=lineitem code=OK duration_ms=3.1 engines=arrow:3,stats:1 ...

Fields beyond ts/level/logger/msg come from `extra={"fields": {...}}`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any


def quote(value: Any) -> str:
    """A logfmt value: bare when it has no space, quote, '=' or control character."""
    text = value if isinstance(value, str) else str(value)
    if text and not any(c in text for c in ' "=\\') and text.isprintable():
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") \
        .replace("\r", "\\r").replace("\t", "\\t")
    return f'"{escaped}"'


def line(fields: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={quote(v)}" for k, v in fields.items())


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        out = {"ts": f"{ts}.{int(record.msecs):03d}Z", "level": record.levelname,
               "logger": record.name, "msg": record.getMessage()}
        out.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return line(out)
