"""The bcc engine: the plan reduced in the kernel's read path, for kernels without SYSCALL
programs (Linux < 5.17) or arenas, where bcc is the usual way to run eBPF from Python.

Per plan shape, codegen fills bpf/bcc_read.bpf.c (the same predicate and accumulator code
as the SYSCALL engine; only the data delivery differs); bcc compiles it (~0.6 s, once per
shape, kept loaded and attached) onto the tracepoints syscalls:sys_{enter,exit}_pread64.

A request takes one of the program's slots. A slot owns a user buffer laid out like the
program's scratch: one region per column (and validity bitmap) of CHUNK_ROWS rows
(codegen.read_layout), the *registered* region last. The agent writes the slot's context
(constants, a fresh generation), registers (tgid, address of the registered region) ->
(slot, generation), and for each chunk of rows of each record batch pread()s the partition
file's byte ranges of every column into the regions, the registered one last; when that
pread completes, the program copies the buffer and reduces the chunk. Then it unregisters
and reads the results from the slot.

Why reads are never misattributed: only the agent's own process (tgid) and only the
registered address of a buffer that belongs to one slot count; a slot serves one request at
a time, so nothing else of the agent reads into its buffer; the program checks that the
registration it saw at a read's entry is still there with the same generation at its exit
and that the slot holds that generation; the agent unregisters before the slot is reused;
a thread's pending read is forgotten at its next pread. The agent then checks the rows and
reads the program reduced against the rows and reads it issued (else: Unsupported, arrow).
"""

from __future__ import annotations

import atexit
import ctypes
import decimal
import itertools
import logging
import mmap
import os
import subprocess
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from bpfstore.contract.binding import bind_plan
from bpfstore.contract.combine import partial_schema
from bpfstore.contract.errors import Unsupported
from bpfstore.contract.plan import EngineName, Plan, col, count, count_star, min_, sum_

from ...budget import check_budget, unbudgeted
from ...stats import ColumnStats
from ..base import Partition, Served, served
from ..bpf.codegen import BITS, READ_ROWS, Program, compile_plan, read_layout
from ..bpf.engine import empty_partials, grouped_partials, plan_dictionaries, read_partials

log = logging.getLogger("bpfstore.agent")
SLOTS = 16  # bpf/bcc_read.bpf.c: concurrent requests of one program
MAX_PROGRAMS = 8  # attached shapes: a tracepoint takes at most 64 programs on a host
TRACEFS = "/sys/kernel/tracing"
_libc = ctypes.CDLL(None, use_errno=True)
_libc.pread.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_long]
_libc.pread.restype = ctypes.c_ssize_t


@dataclass
class _Loaded:
    """One plan shape compiled, loaded and attached, with its slots' buffers."""

    bpf: Any
    rows: int  # CHUNK_ROWS it was compiled with
    layout: list[tuple[str, str, int]]  # (array, ctype, region offset)
    buffers: list[mmap.mmap]
    addresses: list[int]
    free: list[int]
    cond: threading.Condition

    def acquire(self) -> int:
        with self.cond:
            while not self.free:
                self.cond.wait()
            return self.free.pop()

    def release(self, slot: int) -> None:
        with self.cond:
            self.free.append(slot)
            self.cond.notify()

    @property
    def idle(self) -> bool:
        return len(self.free) == SLOTS


@dataclass
class _File:
    """Where a partition's arrays are in its file: per record batch, per column used."""

    path: str
    inode: tuple[int, int]
    # per batch: rows, {column: (values offset, validity offset or None)}
    batches: list[tuple[int, dict[str, tuple[int, int | None]]]]


class BccEngine:
    name = EngineName.BCC

    def __init__(self) -> None:
        self.BPF = _import_bcc()
        self.include = str(resources.files("bpfstore.bpf"))
        self.programs: OrderedDict[str, _Loaded] = OrderedDict()
        self.files: OrderedDict[tuple, _File] = OrderedDict()
        self.lock = threading.Lock()  # bcc compiles one program at a time
        self.generations = itertools.count(1)
        self.tgid = os.getpid()
        why = self._probe()
        if why:
            self.close()
            raise Unsupported(why)

    # -- programs --------------------------------------------------------------------------

    def _program(self, program: Program) -> _Loaded:
        with self.lock:
            loaded = self.programs.get(program.shape)
            if loaded is not None:
                self.programs.move_to_end(program.shape)
                return loaded
            loaded = self._load(program)
            self.programs[program.shape] = loaded
            for shape in list(self.programs)[:-1]:  # least recently used, when idle
                if len(self.programs) <= MAX_PROGRAMS:
                    break
                if self.programs[shape].idle:
                    self.programs.pop(shape).bpf.cleanup()
            return loaded

    def _load(self, program: Program) -> _Loaded:
        """Compile, load and attach; fewer rows a read when the verifier gives up (it
        follows every trip of the row loop)."""
        error = ""
        for rows in (READ_ROWS, READ_ROWS // 4, READ_ROWS // 16):
            variant = program.with_settings(CHUNK_ROWS=str(rows))
            bpf = None
            try:
                bpf = self.BPF(text=variant.source.encode(),
                               cflags=[f"-I{self.include}", "-w", *variant.cflags])
                for fn in ("on_enter", "on_exit"):  # the verifier runs here
                    bpf.load_func(fn, self.BPF.TRACEPOINT)
            except Exception as exc:  # noqa: BLE001 - bcc raises bare Exception
                error = str(exc)
                _dump(variant, error)
                if bpf is not None:
                    bpf.cleanup()
                continue
            try:  # attached here, not by bcc's autoload, so that a failure detaches all
                bpf.attach_tracepoint(tp="syscalls:sys_enter_pread64", fn_name="on_enter")
                bpf.attach_tracepoint(tp="syscalls:sys_exit_pread64", fn_name="on_exit")
            except Exception as exc:  # noqa: BLE001 - bcc raises bare Exception
                bpf.cleanup()
                raise Unsupported(f"bcc: attaching to syscalls:sys_*_pread64 failed ({exc}); "
                                  "a tracepoint takes at most 64 programs on a host") from None
            layout = read_layout(program, rows)
            size = max(8, sum(_region_bytes(ctype, rows) for _, ctype, _ in layout))
            # the program copies whole buffers with bpf_probe_read_user, which cannot fault
            # pages in: write every page once so that all are present
            buffers = [mmap.mmap(-1, size) for _ in range(SLOTS)]
            for buffer in buffers:
                buffer.write(bytes(size))
            addresses = [ctypes.addressof(ctypes.c_char.from_buffer(b)) for b in buffers]
            return _Loaded(bpf, rows, layout, buffers, addresses, list(range(SLOTS)),
                           threading.Condition())
        raise Unsupported(f"bcc: the program was refused: {error[:300]}")

    # -- running ---------------------------------------------------------------------------

    def aggregate(self, plan: Plan, partitions: Iterable[Partition]) -> Iterator[Served]:
        """Partials of each partition reduced in the read path (Unsupported: use arrow)."""
        for part in partitions:
            yield self.aggregate_one(plan, part)

    def aggregate_one(self, plan: Plan, part: Partition) -> Served:
        table = part.table
        dictionaries = plan_dictionaries(table, plan)
        try:
            program = compile_plan(plan, table.schema, part.stats, table.num_rows,
                                   dictionaries, "bcc")
        except Unsupported as exc:  # the shared generator's reasons, said for this engine
            raise Unsupported(f"bcc: {str(exc).removeprefix('bpf: ').removeprefix('bcc: ')}") \
                from None
        for name in program.columns:
            if pa.types.is_floating(table.schema.field(name).type):
                raise Unsupported(f"bcc: float column {name!r} (order keys are not in the file)")
        schema = partial_schema(plan, table.schema)
        if program.empty:
            return served(part, plan, empty_partials(program, schema), 0, self.name, "read")
        if not program.columns:  # COUNT(*) of every row: nothing to read
            out: Any = _Counts(table.num_rows)
            words = None
        else:
            where = self._file(table, program, part.key)
            out, words = self._run(self._program(program), program, where)
        if words is not None:
            partials = grouped_partials(program, words, schema, dictionaries)
        else:
            partials = read_partials(program, out, schema)
        return served(part, plan, partials, out.count, self.name, "read")

    def _run(self, loaded: _Loaded, program: Program, where: _File
             ) -> tuple[Any, np.ndarray | None]:
        """The slot's results after reading the partition: its context and, for GROUP BY,
        its groups' words (groups + 1 rows of program.stride)."""
        slots, reqs = loaded.bpf["slots"], loaded.bpf["reqs"]
        fd = os.open(where.path, os.O_RDONLY | os.O_CLOEXEC)
        slot = loaded.acquire()
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != where.inode:
                raise Unsupported("bcc: the partition file was replaced since it was mapped")
            gen = next(self.generations)
            ctx = slots.Leaf()
            ctx.gen = gen
            for name, value in program.values.items():
                setattr(ctx, name, value)
            slots[ctypes.c_int(slot)] = ctx
            if program.groups:  # the slot's groups start from their initial values
                group_words = loaded.bpf["group_words"]
                group_words[ctypes.c_int(slot)] = group_words.Leaf.from_buffer_copy(
                    _initial_words(program, ctypes.sizeof(group_words.Leaf)))
            base = loaded.addresses[slot]
            last = loaded.layout[-1][2]
            reg_key = reqs.Key(tgid=self.tgid, pad=0, buf=base + last)
            reqs[reg_key] = reqs.Leaf(slot=slot, pad=0, gen=gen)
            try:
                rows, reads = self._read_all(fd, loaded, where, base, program.columns)
            finally:
                del reqs[reg_key]  # unregistered before the slot (and its buffer) is reused
            out = slots[ctypes.c_int(slot)]
            words = None
            if program.groups:
                leaf = bytes(group_words[ctypes.c_int(slot)])
                words = np.frombuffer(leaf, np.int64).reshape(-1, program.stride)
                words = words[: program.groups + 1].copy()
        finally:
            loaded.release(slot)
            os.close(fd)
        if out.gen != gen or out.err or out.done != rows or out.reads != reads:
            raise Unsupported(f"bcc: the program reduced {out.done} rows in {out.reads} reads "
                              f"(error {out.err}); the agent read {rows} rows in {reads}")
        return out, words

    def _read_all(self, fd: int, loaded: _Loaded, where: _File, base: int,
                  columns: list[str]) -> tuple[int, int]:
        """pread every chunk of every batch into the regions, the registered one last."""
        rows_per_read, reads, total = loaded.rows, 0, 0
        names = {f"col{i}": (name, False) for i, name in enumerate(columns)}
        names.update({f"val{i}": (name, True) for i, name in enumerate(columns)})
        regions = [(names[array], ctype, offset) for array, ctype, offset in loaded.layout]
        for rows, arrays in where.batches:
            for start in range(0, rows, rows_per_read):
                check_budget()  # a cancelled or expired request stops between reads
                n = min(rows_per_read, rows - start)
                for (name, validity), ctype, offset in regions:
                    values, valid = arrays[name]
                    source = valid if validity else values
                    if ctype == "bit":
                        size, at = (n + 7) // 8, start // 8
                    else:
                        width = BITS[ctype] // 8
                        size, at = n * width, start * width
                    if source is None:  # a batch without NULLs stores no validity bitmap
                        ctypes.memset(base + offset, 0xFF, size)
                        continue
                    got = _libc.pread(fd, base + offset, size, source + at)
                    if got != size:
                        err = ctypes.get_errno()
                        raise Unsupported(f"bcc: pread of {size} bytes gave {got} "
                                          f"({os.strerror(err) if got < 0 else 'short'})")
                reads += 1
                total += n
        return total, reads

    def _file(self, table: pa.Table, program: Program, key: tuple) -> _File:
        """The file offsets of the arrays the program reads (cached per partition)."""
        cache_key = (*key, tuple(program.columns))
        with self.lock:
            if cache_key in self.files:
                return self.files[cache_key]
        where = _locate(table, program.columns)
        with self.lock:
            self.files[cache_key] = where
            while len(self.files) > 256:
                self.files.popitem(last=False)
        return where

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Detach and unload every program."""
        with self.lock:
            while self.programs:
                self.programs.popitem()[1].bpf.cleanup()

    def _probe(self) -> str:
        """Compile, attach, reduce a known file; "" when the answer is right, else why not."""
        table = pa.table({"x": pa.array([-(2**62), 5, 7, 2**62, 9, None] * 1000, pa.int64())})
        stats = {"x": ColumnStats(1000, -(2**62), 2**62)}
        plan = bind_plan(Plan("probe", filter=col("x") >= 5,
                              aggregates=(count_star(), sum_("x"), count("x"), min_("x"))),
                         table.schema)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "probe.arrow"
            with pa.OSFile(str(path), "wb") as f, pa.ipc.new_file(f, table.schema) as w:
                w.write_table(table, max_chunksize=2500)
            mapped = pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()
            try:
                got = self.aggregate_one(plan, Partition.of(mapped, stats, ("probe",))
                                         ).partials.to_pylist()
            except Unsupported as exc:
                return str(exc)
            except Exception as exc:  # noqa: BLE001 - bcc raises bare Exception
                return f"bcc: {exc}"
            finally:
                with self.lock:
                    self.files.clear()
        want = [{"__agg_0": 4000, "__agg_1": decimal.Decimal(1000 * (2**62 + 21)),
                 "__agg_2": 4000, "__agg_3": 5}]
        if got != want:
            return f"bcc: the probe gave a wrong answer: {got} != {want}"
        return ""


class _Counts:
    """Results of a program that reads nothing: every row selected."""

    def __init__(self, rows: int) -> None:
        self.count = rows


def _initial_words(program: Program, size: int) -> bytes:
    """A slot's groups as they start (program.initial, every group), `size` bytes."""
    words = np.array(program.initial, dtype=np.int64).view(np.uint64)
    groups = size // (8 * program.stride)
    assert groups * 8 * program.stride == size and groups > program.groups
    return np.tile(words, groups).tobytes()


def _region_bytes(ctype: str, rows: int) -> int:
    return rows * BITS[ctype] // 8


def _locate(table: pa.Table, columns: list[str]) -> _File:
    """File offsets of the columns' buffers: the table is a zero-copy read of a memory-mapped
    file, so each buffer's address lies in that mapping (found in /proc/self/maps)."""
    mapping = None
    batches: list[tuple[int, dict[str, tuple[int, int | None]]]] = []
    chunked = [table.column(name) for name in columns]
    counts = {c.num_chunks for c in chunked}
    if len(counts) != 1:
        raise Unsupported("bcc: columns are not chunked alike (not a partition file)")
    for b in range(counts.pop()):
        arrays: dict[str, tuple[int, int | None]] = {}
        rows = len(chunked[0].chunk(b))
        for name, column in zip(columns, chunked, strict=True):
            chunk = column.chunk(b)
            if len(chunk) != rows:
                raise Unsupported("bcc: columns are not chunked alike (not a partition file)")
            data = chunk.indices if pa.types.is_dictionary(chunk.type) else chunk
            bits = 1 if pa.types.is_boolean(data.type) else data.type.bit_width
            if data.offset * bits % 8 or (data.offset and data.null_count):
                raise Unsupported("bcc: a sliced array (not as stored in the file)")
            buffers = data.buffers()
            offsets: list[int | None] = []
            for buffer in (buffers[1], buffers[0] if data.null_count else None):
                if buffer is None:
                    offsets.append(None)
                    continue
                if mapping is None:
                    mapping = _mapping_of(buffer.address)
                start, end, file_offset, path, inode = mapping
                if not start <= buffer.address < end or buffer.address + buffer.size > end:
                    raise Unsupported("bcc: the partition's buffers are not in one file mapping")
                offsets.append(buffer.address - start + file_offset)
            values = offsets[0]
            if values is None:
                raise Unsupported(f"bcc: column {name!r} has no values buffer")
            arrays[name] = (values + data.offset * bits // 8, offsets[1])
        batches.append((rows, arrays))
    if mapping is None:
        raise Unsupported("bcc: the partition has no data to read")
    return _File(mapping[3], mapping[4], batches)


def _mapping_of(address: int) -> tuple[int, int, int, str, tuple[int, int]]:
    """(start, end, file offset, path, (device, inode)) of the file mapping holding address."""
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(maxsplit=5)
            span = parts[0].split("-")
            start, end = int(span[0], 16), int(span[1], 16)
            if start <= address < end:
                if len(parts) < 6 or not parts[5].startswith("/") or parts[4] == "0":
                    break
                path = parts[5].rstrip("\n")
                if path.endswith(" (deleted)"):
                    raise Unsupported("bcc: the partition file was deleted since it was mapped")
                st = os.stat(path)
                if st.st_ino != int(parts[4]):
                    raise Unsupported("bcc: the partition file was replaced since it was mapped")
                return start, end, int(parts[2], 16), path, (st.st_dev, st.st_ino)
    raise Unsupported("bcc: the partition is not a memory-mapped file")


def _import_bcc() -> Any:
    """bcc's BPF class, after the checks that tell precisely why it cannot work."""
    release = os.uname().release
    if not Path(f"{TRACEFS}/events").is_dir():
        subprocess.run(["mount", "-t", "tracefs", "tracefs", TRACEFS], capture_output=True,
                       check=False, timeout=10)
    if not Path(f"{TRACEFS}/events").is_dir():
        raise Unsupported(f"bcc: tracefs is not mounted at {TRACEFS} and mounting it failed "
                          f"(mount -t tracefs tracefs {TRACEFS})")
    if not Path(f"{TRACEFS}/events/syscalls/sys_enter_pread64").is_dir():
        raise Unsupported("bcc: no syscalls:sys_enter_pread64 tracepoint "
                          "(kernel built without CONFIG_FTRACE_SYSCALLS)")
    build = Path(f"/lib/modules/{release}/build")
    if not (build / "include").is_dir() and not Path("/sys/kernel/kheaders.tar.xz").exists():
        raise Unsupported(f"bcc: no kernel headers at {build} (make install links Debian's "
                          "linux-headers there)")
    try:
        from bcc import BPF
    except ImportError as exc:
        raise Unsupported(f"bcc: python3-bpfcc is not importable ({exc}); make install "
                          "installs it and links it into the venv") from None
    return BPF


def _dump(program: Program, error: str) -> None:
    """BPFSTORE_DUMP_BPF=1 writes the generated C (and the error) for inspection."""
    if os.environ.get("BPFSTORE_DUMP_BPF") == "1":
        base = Path(tempfile.gettempdir()) / f"bpfstore-bcc-{program.shape}"
        base.with_suffix(".bpf.c").write_text(f"// {' '.join(program.cflags)}\n{program.source}")
        base.with_suffix(".err").write_text(error)


_shared: BccEngine | None = None
_shared_error = ""
_shared_lock = threading.Lock()


def shared() -> BccEngine:
    """The process's bcc engine, made (and probed) on first use; Unsupported with the reason
    when bcc cannot work here. One per process: programs and slots serve every agent in it."""
    global _shared, _shared_error
    with _shared_lock:
        if _shared is None and not _shared_error:
            try:
                with unbudgeted():  # probed once for every request, not in one's budget
                    _shared = BccEngine()
                atexit.register(_shared.close)
            except Unsupported as exc:
                _shared_error = str(exc)
                log.warning("bcc engine unavailable: %s", exc)
            except Exception as exc:  # noqa: BLE001 - bcc raises bare Exception
                _shared_error = f"bcc: {exc}"
                log.warning("bcc engine unavailable: %s", exc)
        if _shared is None:
            raise Unsupported(_shared_error)
        return _shared
