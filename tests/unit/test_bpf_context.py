"""The context struct: CTX_HEAD in bpf/bpfstore.h and the agent's ctypes mirror agree, as
the compiler itself sees them (offsets and sizes checked by static asserts)."""

from __future__ import annotations

import ctypes
import os
import subprocess
from importlib import resources

import pytest
from test_bpf_codegen import Q1, Q6, _compile

from bpfstore.node_agent.engines.bpf.codegen import HEAD, Program, context_type
from bpfstore.node_agent.engines.bpf.codegen.context import context_struct, head_fields
from bpfstore.node_agent.engines.bpf.engine import find_clang


def _clang() -> str:
    clang = find_clang()
    if clang is None:
        if os.environ.get("BPFSTORE_REQUIRE_BPF") == "1":
            pytest.fail("no clang to compile BPF programs")
        pytest.skip("no clang to compile BPF programs")
    return clang


def _check(program: Program, mirror: type[ctypes.Structure]) -> subprocess.CompletedProcess:
    """Compile the program with static asserts of the mirror's offsets and size."""
    asserts = [f'_Static_assert(__builtin_offsetof(struct ctx, {name}) == '
               f'{getattr(mirror, name).offset}, "{name}");' for name, _ in mirror._fields_]
    asserts.append(f'_Static_assert(sizeof(struct ctx) == {ctypes.sizeof(mirror)}, "size");')
    include = resources.files("bpfstore.bpf")
    return subprocess.run([_clang(), "-target", "bpf", "-fsyntax-only", f"-I{include}",
                           *program.cflags, "-x", "c", "-"],
                          input=program.source + "\n".join(asserts), capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize(("query", "path"),
                         [(Q6, "hot"), (Q1, "hot"), (Q6, "cold"), (Q1, "cold")])
def test_ctypes_mirror_matches_the_compiled_struct(query, path) -> None:
    program = _compile(*query, path=path)
    result = _check(program, context_type(program))
    assert result.returncode == 0, result.stderr


def test_a_drifted_mirror_is_caught() -> None:
    program = _compile(*Q6)
    drifted = type("Ctx", (ctypes.Structure,), {"_fields_": [
        *context_struct(tuple(program.fields))._fields_[1:]]})  # lost the head's first field
    result = _check(program, drifted)
    assert result.returncode != 0 and "static assert" in result.stderr.lower()


@pytest.mark.parametrize("template", ["aggregate.bpf.c", "cold.bpf.c"])  # bcc's needs bcc
def test_templates_compile_as_written(template) -> None:
    """Holes are comments and settings have defaults: a template is C before it is filled."""
    include = resources.files("bpfstore.bpf")
    result = subprocess.run([_clang(), "-target", "bpf", "-fsyntax-only", f"-I{include}",
                             str(include / template)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_the_head_is_read_from_the_header() -> None:
    assert [name for name, _ in HEAD] == ["start", "end", "done", "count"]
    assert head_fields("#define CTX_HEAD \\\n    u64 a; /* x */ \\\n    s64 b;\n") == (
        ("a", "u64"), ("b", "s64"))
    with pytest.raises(ValueError, match="not `u64 name;`"):
        head_fields("#define CTX_HEAD \\\n    u64 start, end; \\\n    u64 done;\n")
    with pytest.raises(ValueError, match="no #define CTX_HEAD"):
        head_fields("struct ctx { u64 start; };\n")
