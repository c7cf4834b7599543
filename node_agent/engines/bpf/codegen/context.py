"""The context struct a program reads its constants from and writes its results to: a
fixed head declared once in bpf/bpfstore.h (CTX_HEAD), then the program's own fields. The
ctypes mirror is read from that header, so the two cannot drift (tests/unit/
test_bpf_context.py checks offsets and sizes against the compiler)."""

from __future__ import annotations

import ctypes
import functools
import re
from importlib import resources

from .program import Program

_FIELD = re.compile(r"(u64|s64) (\w+);")
_CTYPE = {"u64": ctypes.c_uint64, "s64": ctypes.c_int64}


def head_fields(header: str | None = None) -> tuple[tuple[str, str], ...]:
    """(name, kind) of CTX_HEAD's fields, in order, from bpfstore.h (or the text given)."""
    if header is None:
        header = (resources.files("bpfstore.bpf") / "bpfstore.h").read_text()
    found = re.search(r"^#define CTX_HEAD\s*\\\n((?:.*\\\n)*.*\n)", header, re.MULTILINE)
    if found is None:
        raise ValueError("bpfstore.h: no #define CTX_HEAD")
    fields = []
    for line in found.group(1).splitlines():
        code = re.sub(r"/\*.*?\*/", "", line).rstrip("\\").strip()
        if not code:
            continue
        match = _FIELD.fullmatch(code)
        if match is None:  # the mirror would be wrong: refuse rather than guess
            raise ValueError(f"bpfstore.h: CTX_HEAD line {code!r} is not `u64 name;`")
        fields.append((match.group(2), match.group(1)))
    return tuple(fields)


HEAD = head_fields()


@functools.lru_cache(maxsize=1024)
def context_struct(fields: tuple[tuple[str, str], ...]) -> type[ctypes.Structure]:
    """ctypes struct of CTX_HEAD then `fields` ((name, "u64" | "s64"))."""
    layout = [(name, _CTYPE[kind]) for name, kind in (*HEAD, *fields)]
    return type("Ctx", (ctypes.Structure,), {"_fields_": layout})


def context_type(program: Program) -> type[ctypes.Structure]:
    """The context struct of a program (ctypes types are costly to make: one per layout)."""
    return context_struct(tuple(program.fields))
