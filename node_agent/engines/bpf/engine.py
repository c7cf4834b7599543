"""The in-kernel engine: BPF_PROG_TYPE_SYSCALL programs over an arena column cache.

Per partition: generate C for the plan's shape (codegen), compile it with clang once per
shape (cached in memory, and on disk by the hash of the C and of clang's version), load it
once and keep the fd, copy the partition's columns into the shared BPF arena once (LRU
within a memory budget), then run
the program with `bpf_prog_test_run_opts` — again from where it stopped when may_goto's time
bound ends a call. Results come back in the context struct and become the same partials the
arrow engine returns.
"""

from __future__ import annotations

import ctypes
import decimal
import hashlib
import logging
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator
from concurrent import futures
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bpfstore.contract import decimals
from bpfstore.contract.binding import bind_plan
from bpfstore.contract.combine import partial_schema
from bpfstore.contract.epoch import date_from_days
from bpfstore.contract.errors import Unsupported, VerifierRejected
from bpfstore.contract.floatkeys import float_from_key, float_keys
from bpfstore.contract.plan import Dialect, EngineName, Plan, col, columns_of, count_star, sum_

from ...budget import check_budget
from ...stats import ColumnStats
from ..base import Partition, Served, served
from . import libbpf
from .codegen import ACC_BYTES, BITS, Program, compile_plan, context_type
from .codegen.template import RUN_SLOTS

CLANGS = ("clang-19", "clang-18", "clang")
RUN_ROWS = 1 << 22  # rows of one hot-path call: ~10 ms, so a cancel is seen that soon
COMPILED_PLANS = 4096  # generated programs remembered per (plan, partition, path)
log = logging.getLogger("bpfstore.agent")


def find_clang() -> str | None:
    for name in CLANGS:
        path = shutil.which(name)
        if path:
            return path
    return None


def clang_identity(clang: str) -> str:
    """A short hash of `clang --version`: part of an on-disk object's name, so an object
    that another clang compiled (before an upgrade) is never loaded."""
    version = subprocess.run([clang, "--version"], capture_output=True, text=True, timeout=30,
                             check=True).stdout
    return hashlib.sha256(version.encode()).hexdigest()[:12]


class ArenaBusy(Unsupported):
    """Every column in the arena's way is pinned by a running query (they end soon)."""


class ArenaCache:
    """Partitions' columns in one BPF arena: first-fit placement, least recently used out.
    A placed column is pinned until its run ends (`unpin`): concurrent requests never evict
    a column a program is reading."""

    def __init__(self, base: int, size: int) -> None:
        self.base, self.size = base, size
        self.entries: OrderedDict[tuple, tuple[int, int]] = OrderedDict()  # key -> (off, size)
        self.pins: Counter[tuple] = Counter()  # key -> runs reading it now
        self.lock = threading.Lock()

    def place(self, key: tuple, data: pa.ChunkedArray, bits: int) -> int:
        """Arena address of the column's values (`bits` per value), copied in on first use,
        and pinned: the caller unpins the key when its program has run."""
        with self.lock:
            if key in self.entries:
                self.entries.move_to_end(key)
                self.pins[key] += 1
                return self.base + self.entries[key][0]
            size = _round_up(-(-len(data) * bits // 8))
            if size > self.size:
                raise Unsupported("bpf: partition column larger than the arena budget")
            offset = self._free_offset(size)
            while offset is None:
                self._evict_one()
                offset = self._free_offset(size)
            position = self.base + offset
            last = data.num_chunks - 1
            for index, chunk in enumerate(data.chunks):  # every record batch, back to back
                if pa.types.is_dictionary(chunk.type):
                    chunk = chunk.indices  # strings travel as their int32 codes
                if bits == 1 and (chunk.offset % 8 or (len(chunk) % 8 and index != last)):
                    raise Unsupported("bpf: bit-packed column not byte-aligned across batches")
                n = -(-len(chunk) * bits // 8)
                if n:
                    start = chunk.buffers()[1].address + chunk.offset * bits // 8
                    ctypes.memmove(position, start, n)
                position += n
            self.entries[key] = (offset, size)
            self.pins[key] += 1
            return self.base + offset

    def unpin(self, keys: Iterable[tuple]) -> None:
        with self.lock:
            self.pins.subtract(keys)
            self.pins += Counter()  # drops the keys no run reads any more

    def _evict_one(self) -> None:
        """Evict the least recently used column no run is reading."""
        for key in self.entries:
            if not self.pins[key]:
                del self.entries[key]
                return
        raise ArenaBusy("bpf: the arena is full of columns that running queries read")

    def _free_offset(self, size: int) -> int | None:
        taken = sorted(self.entries.values())
        cursor = 0
        for off, length in taken:
            if off - cursor >= size:
                return cursor
            cursor = max(cursor, off + length)
        return cursor if self.size - cursor >= size else None

    @property
    def bytes_used(self) -> int:
        return sum(size for _, size in self.entries.values())


def _round_up(n: int) -> int:
    return max(libbpf.PAGE, -(-n // libbpf.PAGE) * libbpf.PAGE)


class BpfEngine:
    name = EngineName.BPF

    def __init__(self, cache_dir: str, arena_bytes: int, runs: int = 0) -> None:
        """`runs`: programs running at once, over all requests (0: one per CPU, at least 2;
        at most RUN_SLOTS)."""
        self.clang = find_clang()
        if self.clang is None:
            raise Unsupported("no clang found (install clang-19) to compile BPF programs")
        self.clang_id = clang_identity(self.clang)
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        # the arena: a group accumulator region per run slot (pages are only allocated when
        # touched), then the column cache
        self.pages = (RUN_SLOTS * ACC_BYTES + max(arena_bytes, 1 << 20)) // libbpf.PAGE
        self.slots: queue.SimpleQueue[int] = queue.SimpleQueue()  # free run slots
        for slot in range(min(RUN_SLOTS, runs or max(2, os.cpu_count() or 1))):
            self.slots.put(slot)
        self.accumulators = 0  # the arena's first accumulator region (0: no arena)
        self.programs: dict[str, libbpf.Program] = {}
        self.compiled: OrderedDict[tuple, Program] = OrderedDict()  # LRU of compile_plan
        self.lock = threading.Lock()
        self.compiling: dict[str, futures.Future[str]] = {}  # shape -> clang running for it
        self.compiling_lock = threading.Lock()
        self.arena_fd: int | None = None
        self.arena_address = libbpf.arena_address()
        self.cache: ArenaCache | None = None
        self.warming: set[tuple] = set()  # partitions being copied into the arena
        # why each data path is off ("" = it works), from the start-up probes
        self.paths = {"hot": self._probe("hot") if arena_bytes > 0 else
                      "no arena memory (--bpf-cache-mb 0)",
                      "cold": self._probe("cold")}
        refusal = libbpf.arena_refusal() if arena_bytes > 0 and self.paths["hot"] else ""
        if refusal:  # name the cause: the load itself only says "not permitted"
            self.paths["hot"] = f"{refusal}: the hot path keeps its columns in one"
        for path, why in self.paths.items():
            if why:
                log.warning("bpf %s path unavailable: %s", path, why)
        if all(self.paths.values()):
            reasons = set(self.paths.values())
            raise Unsupported(reasons.pop() if len(reasons) == 1 else
                              "; ".join(f"{path} path: {why}" for path, why in self.paths.items()))

    # -- programs --------------------------------------------------------------------------

    def _compile(self, plan: Plan, table: pa.Table, stats: dict[str, ColumnStats],
                 dictionaries: dict[str, pa.Array], key: tuple, path: str) -> Program:
        """compile_plan, remembered per (plan, partition, path): generating C costs a few
        milliseconds, as much as the kernel spends on a million rows."""
        memo = (plan, key, path)
        try:
            hash(memo)
        except TypeError:  # a literal that cannot be hashed: generate each time
            return compile_plan(plan, table.schema, stats, table.num_rows, dictionaries, path)
        with self.lock:
            if memo in self.compiled:
                self.compiled.move_to_end(memo)
                return self.compiled[memo]
        program = compile_plan(plan, table.schema, stats, table.num_rows, dictionaries, path)
        with self.lock:
            self.compiled[memo] = program
            while len(self.compiled) > COMPILED_PLANS:
                self.compiled.popitem(last=False)
        return program

    def _object(self, program: Program) -> str:
        """Compiled object for a shape: from the disk cache, or clang now. clang runs in a
        thread of its own, one per shape: a request waits for it checking its budget, so a
        cancelled one stops waiting while the compile finishes for the next of its shape."""
        path = self.cache_dir / f"{program.shape}-{self.clang_id}.bpf.o"
        if path.exists():
            return str(path)
        with self.compiling_lock:
            compile = self.compiling.get(program.shape)
            if compile is None:
                compile = self.compiling[program.shape] = futures.Future()
                threading.Thread(target=self._clang, args=(program, path, compile),
                                 name="bpfstore-clang", daemon=True).start()
        while True:
            try:
                return compile.result(timeout=0.02)
            except futures.TimeoutError:
                check_budget()

    def _clang(self, program: Program, path: Path, compile: futures.Future[str]) -> None:
        try:
            include = resources.files("bpfstore.bpf")
            with tempfile.TemporaryDirectory() as tmp:
                src = Path(tmp) / "prog.bpf.c"
                src.write_text(program.source)
                out = Path(tmp) / "prog.o"
                cmd = [str(self.clang), "-O2", "-g", "-target", "bpf", "-mcpu=v3",
                       f"-I{include}", *program.cflags, "-c", str(src), "-o", str(out)]
                result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
                if result.returncode != 0:
                    _dump(program, result.stderr)
                    raise Unsupported(f"bpf: clang failed: {result.stderr.strip()[:300]}")
                os.replace(out, path)  # atomic: concurrent agents never see half an object
            compile.set_result(str(path))
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting requests
            compile.set_exception(exc)
        finally:
            with self.compiling_lock:
                self.compiling.pop(program.shape, None)

    def _program(self, program: Program) -> libbpf.Program:
        if program.shape not in self.programs:
            self._object(program)  # before the lock: a cancelled request stops waiting
        with self.lock:
            if program.shape not in self.programs:
                try:
                    obj = self._object(program)
                    loaded, fd = libbpf.load(obj, "aggregate", self.pages, self.arena_address,
                                             self.arena_fd)
                except VerifierRejected as exc:
                    # A wide unrolled body can exceed what the verifier follows through the
                    # loop; the same program one row a step verifies.
                    _dump(program, str(exc) + "\n" + exc.log)
                    single = program.with_settings(UNROLL="1")
                    obj = self._object(single)
                    loaded, fd = libbpf.load(obj, "aggregate", self.pages, self.arena_address,
                                             self.arena_fd)
                if self.arena_fd is None and fd >= 0:
                    self.arena_fd = fd
                    arena = libbpf.Arena(fd, self.pages, self.arena_address)
                    self.accumulators = arena.base
                    self.cache = ArenaCache(arena.base + RUN_SLOTS * ACC_BYTES,
                                            arena.size - RUN_SLOTS * ACC_BYTES)
                self.programs[program.shape] = loaded
            return self.programs[program.shape]

    # -- running ---------------------------------------------------------------------------

    def aggregate(self, plan: Plan, partitions: Iterable[Partition],
                  path: str = "") -> Iterator[Served]:
        """Partials of each partition computed in the kernel, on data path `path` ("hot" or
        "cold"; "" lets the engine choose per partition). Unsupported: the caller uses arrow."""
        for part in partitions:
            yield self.aggregate_one(plan, part, path)

    def aggregate_one(self, plan: Plan, part: Partition, path: str = "") -> Served:
        if path and self.paths[path]:
            raise Unsupported(f"bpf {path} path unavailable: {self.paths[path]}")
        table, stats, key = part.table, part.stats, part.key
        dictionaries = plan_dictionaries(table, plan)
        if not path:  # cached partitions run hot; others cold, while they are cached
            cached = not self.paths["hot"] and self._cached(table, plan, stats, key)
            path = "hot" if cached or self.paths["cold"] else "cold"
            if path == "cold" and not self.paths["hot"]:
                self._warm(table, plan, stats, key)
        program = self._compile(plan, table, stats, dictionaries, key, path)
        schema = partial_schema(plan, table.schema)
        if program.empty:
            return served(part, plan, empty_partials(program, schema), 0, self.name, path)
        loaded = self._program(program)
        ctx = context_type(program)()
        for name, value in program.values.items():
            setattr(ctx, name, value)
        # Runs go on at once, each on its own CPU: a run owns its context and a run slot
        # (its cold-path chunk buffer, its group accumulators), and pins the arena columns
        # it reads (hot path).
        slot = self._slot()
        pinned: list[tuple] = []
        try:
            if path == "cold":
                ctx.slot = slot
            words = None
            if program.groups:
                words = self._group_words(program, loaded, slot, ctx)
                words[:] = np.array(program.initial, dtype=np.int64).view(np.uint64)
            if path == "hot":
                self._place_waiting(ctx, program, table, plan, key, pinned)
                ctx.start, ctx.end = 0, table.num_rows
                _run(loaded, ctx, table.num_rows)
            else:
                for batch in table.to_batches():
                    if batch.num_rows:
                        keep = _point_at_batch(ctx, program, batch, plan)  # noqa: F841
                        ctx.start, ctx.end = 0, batch.num_rows
                        _run(loaded, ctx, batch.num_rows)
            if words is not None:
                partials = grouped_partials(program, words.view(np.int64).copy(), schema,
                                             dictionaries)
                return served(part, plan, partials, ctx.count, self.name, path)
        finally:
            if pinned:
                assert self.cache is not None
                self.cache.unpin(pinned)
            self.slots.put(slot)
        return served(part, plan, read_partials(program, ctx, schema), ctx.count, self.name, path)

    def _group_words(self, program: Program, loaded: libbpf.Program, slot: int, ctx: Any
                     ) -> np.ndarray:
        """The run slot's group accumulators, (groups + 1) x stride words: a region at the
        start of the arena (hot path, its address in the context), or the slot's value of
        the program's own `group_words` map (cold path, GROUP_CAP groups a value)."""
        rows = program.groups + 1
        if loaded.groups is not None:
            cap = int(program.settings["GROUP_CAP"])
            values = np.frombuffer(loaded.groups, np.uint64, RUN_SLOTS * cap * program.stride)
            return values.reshape(RUN_SLOTS, cap, program.stride)[slot, :rows]
        if not self.accumulators:
            raise Unsupported("bpf: the hot path's GROUP BY keeps accumulators in an arena")
        region = self.accumulators + slot * ACC_BYTES
        ctx.acc = region
        return np.ctypeslib.as_array((ctypes.c_uint64 * (rows * program.stride)).from_address(
            region)).reshape(rows, program.stride)

    def _slot(self) -> int:
        """A free run slot, waited for checking the request's budget."""
        while True:
            try:
                return self.slots.get(timeout=0.02)
            except queue.Empty:
                check_budget()

    def _place_waiting(self, ctx: Any, program: Program, table: pa.Table, plan: Plan,
                       key: tuple, pinned: list[tuple]) -> None:
        """`_place`; while the arena is full of columns other runs read, give ours back and
        try again (for up to a second, checking the request's budget)."""
        for _ in range(200):
            try:
                return self._place(ctx, program, table, plan, key, pinned)
            except ArenaBusy:
                assert self.cache is not None
                self.cache.unpin(pinned)
                pinned.clear()
                check_budget()
                time.sleep(0.005)
        self._place(ctx, program, table, plan, key, pinned)

    def _place(self, ctx: Any, program: Program, table: pa.Table, plan: Plan,
               key: tuple, pinned: list[tuple]) -> None:
        """Hot path: the arena address of every column (copied in on first use), each key
        added to `pinned` as it is placed (the caller unpins them, also on failure)."""
        assert self.cache is not None
        for i, name in enumerate(program.columns):
            data = table.column(name)
            t = data.type
            if pa.types.is_floating(t):  # the program compares total-order keys
                k = (*key, name, "key")
                address = self.cache.place(k, _float_keys(data), 64)
            else:
                k = (*key, name)
                address = self.cache.place(k, data, BITS[program.ctypes[i]])
            pinned.append(k)
            setattr(ctx, f"col{i}", address)
            if i in program.validity:
                k = (*key, name, "valid", plan.dialect)
                setattr(ctx, f"val{i}", self.cache.place(k, _validity(data, plan), 1))
                pinned.append(k)

    def _cached(self, table: pa.Table, plan: Plan, stats: dict[str, ColumnStats],
                key: tuple) -> bool:
        """Whether every column the plan reads is in the arena already."""
        assert self.cache is not None
        names = {*plan.group_by, *columns_of([plan.filter])}
        names |= set(columns_of([a.arg for a in plan.aggregates if a.arg is not None]))
        with self.cache.lock:
            cached = {k[len(key)] for k in self.cache.entries if k[:len(key)] == key}
        return names <= cached

    def _warm(self, table: pa.Table, plan: Plan, stats: dict[str, ColumnStats],
              key: tuple) -> None:
        """Copy the partition's columns into the arena in the background: later queries
        run hot. At most one copy per partition at a time; failures only log."""
        with self.lock:
            if key in self.warming:
                return
            self.warming.add(key)

        def copy() -> None:
            try:
                program = self._compile(plan, table, stats, plan_dictionaries(table, plan),
                                        key, "hot")
                pinned: list[tuple] = []
                try:
                    self._place(context_type(program)(), program, table, plan, key, pinned)
                finally:
                    assert self.cache is not None
                    self.cache.unpin(pinned)
            except Exception as exc:  # noqa: BLE001 - warming is only an optimization
                log.debug("not cached: %s", exc)
            finally:
                with self.lock:
                    self.warming.discard(key)

        threading.Thread(target=copy, name="bpf-warm", daemon=True).start()

    # -- capability probe ------------------------------------------------------------------

    def _probe(self, path: str) -> str:
        """Load, run on known data, check the answer: "" when the path works, else why not."""
        table = pa.table({"x": pa.array([-(2**62), 5, 7, 2**62, 9], pa.int64())})
        stats = {"x": ColumnStats(0, -(2**62), 2**62)}
        plan = bind_plan(Plan("probe", filter=col("x") >= 5,
                              aggregates=(count_star(), sum_("x"))), table.schema)
        self.paths = {"hot": "", "cold": ""}  # let the probe run the path it names
        try:
            got = self.aggregate_one(plan, Partition.of(table, stats, ("probe",)),
                                     path).partials.to_pylist()
        except (Unsupported, VerifierRejected, OSError) as exc:
            return str(exc)
        want = [{"__agg_0": 4, "__agg_1": decimal.Decimal(2**62 + 21)}]
        if got != want:
            return f"the probe gave a wrong answer: {got} != {want}"
        return ""


def _run(loaded: libbpf.Program, ctx: Any, rows: int) -> None:
    """Run until every row of [ctx.start, rows) is done, at most RUN_ROWS a call (may_goto
    may end one early), checking the request's budget between calls."""
    while True:
        check_budget()
        ctx.end = min(rows, ctx.start + RUN_ROWS)
        try:
            rc = loaded.run(ctx)
        except OSError as exc:
            raise Unsupported(f"bpf: running the program failed: {exc}") from None
        if rc != 0:
            raise Unsupported(f"bpf: program returned {rc}")
        if ctx.done >= rows:
            return
        ctx.start = ctx.done  # the time bound ended the call: resume


def _validity(data: pa.ChunkedArray | pa.Array, plan: Plan) -> pa.ChunkedArray:
    """One packed bitmap, 1 = present (NaN is missing in the PANDAS dialect), offset 0."""
    valid = pc.is_valid(data)
    if pa.types.is_floating(data.type) and plan.dialect is Dialect.PANDAS:
        valid = pc.and_(valid, pc.invert(pc.is_nan(data)))
    if isinstance(valid, pa.ChunkedArray):
        valid = valid.combine_chunks()
    return pa.chunked_array([pa.concat_arrays([pc.fill_null(valid, False)])])


def _point_at_batch(ctx: Any, program: Program, batch: pa.RecordBatch, plan: Plan) -> list:
    """Cold path: user addresses of the batch's arrays — the file's own buffers where the
    program can read them as stored, derived buffers otherwise (kept alive by the list
    returned)."""
    keep: list = []
    for i, name in enumerate(program.columns):
        data = batch.column(name)
        if pa.types.is_floating(data.type):
            keys = _float_keys(pa.chunked_array([data])).chunk(0)
            keep.append(keys)
            data = keys
        elif pa.types.is_dictionary(data.type):
            data = data.indices
        setattr(ctx, f"col{i}", _address(data, BITS[program.ctypes[i]]))
        if i in program.validity:
            valid = _validity(batch.column(name), plan).chunk(0)
            keep.append(valid)
            setattr(ctx, f"val{i}", _address(valid, 1))
    return keep


def _address(array: pa.Array, bits: int) -> int:
    """Address of row 0 of an array's values (bit arrays must start on a byte)."""
    if bits == 1 and array.offset % 8:
        raise Unsupported("bpf: bit-packed column does not start on a byte")
    buffer = array.buffers()[1]
    return buffer.address + array.offset * bits // 8 if buffer is not None else 0


def read_partials(program: Program, ctx: Any, schema: pa.Schema) -> pa.Table:
    """The one row of partials of a program without group-by, from its context."""
    values = []
    for k, (kind, t, counter) in enumerate(program.outputs):
        inputs = getattr(ctx, counter)  # rows that fed this aggregate (NULLs skipped)
        if kind == "count":
            values.append(inputs)
        elif not inputs:
            values.append(None)  # SQL: the sum / min / max of no values is NULL
        elif kind == "sum":
            total = getattr(ctx, f"slo{k}") | (getattr(ctx, f"shi{k}") << 64)
            if total >= 2**127:
                total -= 2**128
            values.append(decimals.decimal_total(total, t))
        else:
            values.append(_typed(getattr(ctx, f"m{k}"), t))
    return pa.Table.from_arrays([pa.array([v], f.type) for v, f in zip(values, schema,
                                                                       strict=True)],
                                schema=schema)


def plan_dictionaries(table: pa.Table, plan: Plan) -> dict[str, pa.Array]:
    """The one dictionary of each dictionary column the plan uses (absent when chunks differ)."""
    out = {}
    for name in {*plan.group_by, *columns_of([plan.filter])}:
        column = table.column(name)
        if pa.types.is_dictionary(column.type) and column.num_chunks:
            first = column.chunks[0].dictionary
            if all(c.dictionary is first or c.dictionary.equals(first) for c in column.chunks):
                out[name] = first
    return out


def grouped_partials(program: Program, words: np.ndarray, schema: pa.Schema,
                      dictionaries: dict[str, pa.Array]) -> pa.Table:
    """One row per group that received rows (the last group collects unselected rows)."""
    groups = np.flatnonzero(words[: program.groups, 0])
    columns: list[pa.Array] = []
    stride = program.groups
    for (name, base, card), f in zip(program.keys, schema, strict=False):
        stride //= card
        codes = (groups // stride) % card + base
        if name in dictionaries:
            columns.append(dictionaries[name].take(pa.array(codes)).cast(f.type))
        else:
            columns.append(pa.array([_typed(int(v), f.type) for v in codes], f.type))
    for (kind, _, counter), slot, f in zip(program.outputs, program.slots,
                                           list(schema)[len(program.keys):], strict=True):
        rows = words[groups]
        inputs = rows[:, counter]  # per group: rows that fed this aggregate (NULLs skipped)
        if kind == "count":
            columns.append(pa.array(inputs, pa.int64()))
        elif kind == "sum":
            lo = rows[:, slot].view(np.uint64)
            hi = rows[:, slot + 1]
            if slot in program.narrow:  # a proven 64-bit total: its high word is its sign
                hi = rows[:, slot] >> 63
            totals = [(int(h) << 64) | int(lo_) if n else None
                      for lo_, h, n in zip(lo, hi, inputs, strict=True)]
            columns.append(decimals.totals_array(totals, f.type))
        else:
            columns.append(pa.array([_typed(int(v), f.type) if n else None
                                     for v, n in zip(rows[:, slot], inputs, strict=True)],
                                    f.type))
    return pa.Table.from_arrays(columns, schema=schema)


def empty_partials(program: Program, schema: pa.Schema) -> pa.Table:
    """The partials of a program that statistics prove selects no row."""
    if program.groups:
        return schema.empty_table()
    values = [0 if kind == "count" else None for kind, _, _ in program.outputs]
    return pa.Table.from_arrays([pa.array([v], f.type) for v, f in zip(values, schema,
                                                                       strict=True)],
                                schema=schema)


def _float_keys(data: pa.ChunkedArray) -> pa.ChunkedArray:
    """float_key of every value, vectorized (NULL rows get an arbitrary key)."""
    keys = float_keys(data.cast(pa.float64()).fill_null(0.0))
    return pa.chunked_array([keys.combine_chunks()], pa.int64())


def _typed(v: int, t: pa.DataType) -> Any:
    """A MIN/MAX result (stored integer) as a value of the partial's type."""
    if pa.types.is_floating(t):  # back from the order key
        return float_from_key(v)
    if pa.types.is_decimal(t):
        return decimals.to_decimal(v, t.scale)
    if pa.types.is_date32(t):
        return date_from_days(v)
    if pa.types.is_boolean(t):
        return bool(v)
    if pa.types.is_timestamp(t):
        return pa.scalar(v, pa.int64()).cast(t).as_py()
    return v


def _dump(program: Program, error: str) -> None:
    """BPFSTORE_DUMP_BPF=1 writes the generated C (and the error) for inspection."""
    if os.environ.get("BPFSTORE_DUMP_BPF") == "1":
        base = Path(tempfile.gettempdir()) / f"bpfstore-{program.shape}"
        base.with_suffix(".bpf.c").write_text(f"// {' '.join(program.cflags)}\n{program.source}")
        base.with_suffix(".err").write_text(error)

