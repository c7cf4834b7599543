"""Template filling: the data path's template (bpf/*.bpf.c) with its holes filled, and the
layout of the arrays a program reads on each path (arena, copied chunks, bcc's reads)."""

from __future__ import annotations

import functools
import re
from importlib import resources

from bpfstore.contract.errors import Unsupported

from .accumulators import ACC_BYTES, Compiler
from .program import Program
from .typemap import BITS, BYTES

MAX_UNROLLED_REGISTERS = 3  # measured: 1 sum + 1 min verifies unrolled, 2 sums + 2 min/max not
CHUNK_ROWS = 4096  # cold path: rows copied at a time (bpf/cold.bpf.c)
READ_ROWS = 2048  # bcc path: rows a read (bpf/bcc_read.bpf.c's CHUNK_ROWS)
BCC_MIN_GROUPS = 64  # bcc path: the smallest GROUP_CAP (a slot's map value of groups)
# bcc path: a slot's groups at most (kernel memory: 16 slots a program, 16 programs kept
# attached, so at most 64 MiB; TPC-H Q1 takes 9 KiB a slot)
BCC_GROUP_BYTES = 256 << 10
UNROLL = 8  # hot and cold paths: rows a step (1 when the verifier cannot follow 8)
# Programs of one shape running at once, at most: the engine's run slots (it uses one per
# CPU, 2 to 8), each with its cold-path chunk buffer and its group accumulator region
RUN_SLOTS = 8


TEMPLATES = {"hot": "aggregate.bpf.c", "cold": "cold.bpf.c", "bcc": "bcc_read.bpf.c"}


class TemplateError(Exception):
    """A template and its generator disagree (a hole or a setting is missing): a bug to fix,
    never a reason to fall back."""


@functools.cache
def _template(name: str) -> str:
    """A template's text, read once (it ships with the package)."""
    return (resources.files("bpfstore.bpf") / name).read_text()


def fill(c: Compiler, path: str) -> tuple[str, dict[str, str]]:
    """The template of the data path with its holes filled, and its settings (-D)."""
    template = TEMPLATES[path]
    source = _template(template)
    holes = {"CTX": "\n    ".join(f"{kind} {name};" for name, kind in c.p.fields),
             "SETUP": "\n    ".join(c.setup),
             "PREDICATE": "\n            ".join(c.predicate),
             "ACCUMULATE": "\n            ".join(c.accumulate),
             "STORE": "\n    ".join(c.store)}
    settings = {"STRIDE": str(c.p.stride or 1), "UNROLL": str(UNROLL)}
    if path == "hot":
        columns = _arena_columns(c.p)
        # Accumulators held in registers (no group-by) multiply the state the verifier
        # tracks through an unrolled step; past a few it stops converging ("program is too
        # large").
        registers = sum(2 if kind == "sum" else 1 for kind, _, _ in c.p.outputs
                        if kind != "count")
        registers += sum(1 for _, _, counter in c.p.outputs if counter != "count")
        if not c.p.groups and registers > MAX_UNROLLED_REGISTERS:
            settings["UNROLL"] = "1"
    elif path == "bcc":
        columns, sizes = _read_columns(c.p)
        settings = {"CHUNK_ROWS": str(READ_ROWS), **sizes}
        if c.p.groups:  # no arena: each slot's groups are one value of a BPF array map
            cap = group_cap(c.p.groups)
            if cap * c.p.stride * 8 > BCC_GROUP_BYTES:
                raise Unsupported(f"bcc: {cap} groups of {c.p.stride} words exceed "
                                  f"{BCC_GROUP_BYTES >> 10} KiB of accumulators a request")
            settings.update(GROUP_CAP=str(cap), STRIDE=str(c.p.stride))
    else:
        columns, copy, size = _chunk_columns(c.p)
        settings.update(CHUNK_ROWS=str(CHUNK_ROWS), CHUNK_BYTES=str(size),
                        RUN_SLOTS=str(RUN_SLOTS))
        # the template declares `slot` (which chunk buffer a run copies into) after CTX_HEAD
        c.p.fields.insert(0, ("slot", "u64"))
        holes["COPY"] = "\n        ".join(copy)
        if c.p.groups:  # no arena: each slot's groups are one value of a BPF array map
            cap = group_cap(c.p.groups)
            if cap * c.p.stride * 8 > ACC_BYTES:
                raise Unsupported(f"bpf: {cap} groups of {c.p.stride} words exceed "
                                  f"{ACC_BYTES >> 20} MiB of accumulators a run")
            settings.update(GROUP_CAP=str(cap))
    holes["COLUMNS"] = "\n    ".join(columns)
    check_settings(source, settings, template)
    return fill_holes(source, holes, template), settings


def group_cap(groups: int) -> int:
    """cold and bcc paths: the groups a slot's map value holds: room for the ignored group too, a
    power of two (the program masks group ids with it), at least BCC_MIN_GROUPS so that
    partitions with a few groups more or fewer share one shape."""
    return max(BCC_MIN_GROUPS, 1 << groups.bit_length())  # > groups: ids 0 .. groups


def fill_holes(source: str, holes: dict[str, str], template: str) -> str:
    """Every /*@NAME@*/ of the template replaced by its code; TemplateError when a hole is
    missing on either side (a silent no-op would generate a wrong program)."""
    for name, code in holes.items():
        hole = f"/*@{name}@*/"
        if hole not in source:
            raise TemplateError(f"{template} has no hole {hole}")
        source = source.replace(hole, code)
    left = re.search(r"/\*@\w+@\*/", source)
    if left:
        raise TemplateError(f"{template}: hole {left.group()} left unfilled")
    return source


def check_settings(source: str, settings: dict[str, str], template: str) -> None:
    """TemplateError unless the template declares each setting (`#ifndef NAME`, a default)."""
    for name in settings:
        if not re.search(rf"^#ifndef {name}$", source, re.MULTILINE):
            raise TemplateError(f"{template} has no setting {name} (#ifndef {name})")


def _arena_columns(p: Program) -> list[str]:
    """Hot path: every column (and validity bitmap) is an array in the arena."""
    out = []
    for i, ctype in enumerate(p.ctypes):
        array = "u8" if ctype == "bit" else ctype
        out.append(f"const {array} __arena *col{i} = (const {array} __arena *)c->col{i};")
        if i in p.validity:
            out.append(f"const u8 __arena *val{i} = (const u8 __arena *)c->val{i};")
    return out


def _arrays(p: Program) -> list[tuple[str, str]]:
    """(name, element ctype) of every array a program reads: columns and validity bitmaps."""
    arrays = []
    for i, ctype in enumerate(p.ctypes):
        arrays.append((f"col{i}", ctype))
        if i in p.validity:
            arrays.append((f"val{i}", "bit"))
    return arrays


def _chunk_columns(p: Program) -> tuple[list[str], list[str], int]:
    """Cold path: each array gets a region of the chunk; copied from its user address."""
    columns, copy, offset = [], [], 0
    for name, ctype in _arrays(p):
        if ctype == "bit":  # bytes from row i / 8; one byte more when rows start mid-byte
            region, array = CHUNK_ROWS // 8 + 8, "u8"
            copy.append(f"err |= bpf_copy_from_user(buf + {offset}, (n + b + 7) >> 3, "
                        f"(const void *)(c->{name} + (i >> 3)));")
        else:
            width = BYTES[ctype]
            region, array = CHUNK_ROWS * width, ctype
            copy.append(f"err |= bpf_copy_from_user(buf + {offset}, n * {width}, "
                        f"(const void *)(c->{name} + i * {width}));")
        columns.append(f"const {array} *{name} = (const {array} *)(buf + {offset});")
        offset += region
    return columns, copy, max(offset, 8)


def read_layout(p: Program, rows: int = READ_ROWS) -> list[tuple[str, str, int]]:
    """bcc path: the regions of a request's buffer, (array, element ctype, byte offset), one
    of `rows` rows per column and validity bitmap; bit arrays first, so that the last region
    (the registered one, read last, whose length gives the rows read) has whole bytes a row."""
    arrays = sorted(_arrays(p), key=lambda a: a[1] != "bit")  # stable
    if arrays and arrays[-1][1] == "bit":
        raise Unsupported("bcc: the plan reads only bit-packed columns")
    out, bits = [], 0
    for name, ctype in arrays:
        out.append((name, ctype, bits * rows // 8))
        bits += BITS[ctype]
    return out


def _read_columns(p: Program) -> tuple[list[str], dict[str, str]]:
    """bcc path: each array is a region of the chunk copied from the request's buffer."""
    columns, bits, last = [], 0, (0, "s64")
    for name, ctype, _ in read_layout(p):
        array = "u8" if ctype == "bit" else ctype
        columns.append(f"const {array} *{name} = (const {array} *)(buf + {bits} * CHUNK_ROWS / 8);")
        last = (bits, ctype)
        bits += BITS[ctype]
    if not columns:
        return columns, {}  # the template's defaults
    return columns, {"CHUNK_BYTES": f"({bits} * CHUNK_ROWS / 8)",
                     "LAST_OFFSET": f"({last[0]} * CHUNK_ROWS / 8)",
                     "LAST_WIDTH": str(BITS[last[1]] // 8)}
