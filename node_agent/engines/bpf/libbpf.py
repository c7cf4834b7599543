"""ctypes on Debian's libbpf.so.1: open an object, set up the arena, load, run SYSCALL programs.

Only what the engine needs. Every libbpf message goes to a buffer, so a verifier rejection
can be raised as a typed `VerifierRejected` carrying the log.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import itertools
import mmap
import os
import threading

from bpfstore.contract.errors import Unsupported, VerifierRejected

LIBBPF_NAMES = ("libbpf.so.1", ctypes.util.find_library("bpf") or "libbpf.so")
ARENA_BASE = 0x100000000000  # user addresses of arenas (libbpf 1.1.2 cannot pick one)
ARENA_STRIDE = 1 << 33  # an arena is at most 4 GiB; each engine in a process gets its own
_next_arena = itertools.count()


def arena_address() -> int:
    return ARENA_BASE + next(_next_arena) * ARENA_STRIDE
PAGE = mmap.PAGESIZE


class _TestRunOpts(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("data_in", ctypes.c_void_p),
        ("data_out", ctypes.c_void_p),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_void_p),
        ("ctx_out", ctypes.c_void_p),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("repeat", ctypes.c_int),
        ("duration", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
    ]


class _MapCreateOpts(ctypes.Structure):  # struct bpf_map_create_opts of libbpf 1.1
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("btf_fd", ctypes.c_uint32),
        ("btf_key_type_id", ctypes.c_uint32),
        ("btf_value_type_id", ctypes.c_uint32),
        ("btf_vmlinux_value_type_id", ctypes.c_uint32),
        ("inner_map_fd", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("map_extra", ctypes.c_uint64),
        ("numa_node", ctypes.c_uint32),
        ("map_ifindex", ctypes.c_uint32),
    ]


BPF_MAP_TYPE_ARENA = 33
BPF_F_MMAPABLE = 1 << 10


_PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)


class Libbpf:
    """The loaded library; one per process."""

    _instance: Libbpf | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        last: OSError | None = None
        for name in LIBBPF_NAMES:
            try:
                self.lib = ctypes.CDLL(name, use_errno=True)
                break
            except OSError as exc:
                last = exc
        else:
            raise Unsupported(f"libbpf.so.1 not found ({last}); install Debian's libbpf1")
        lib = self.lib
        lib.bpf_object__open_file.restype = ctypes.c_void_p
        lib.bpf_object__open_file.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
        lib.bpf_object__load.argtypes = [ctypes.c_void_p]
        lib.bpf_object__close.argtypes = [ctypes.c_void_p]
        lib.bpf_object__find_map_by_name.restype = ctypes.c_void_p
        lib.bpf_object__find_map_by_name.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.bpf_object__find_program_by_name.restype = ctypes.c_void_p
        lib.bpf_object__find_program_by_name.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.bpf_map__set_map_extra.argtypes = [ctypes.c_void_p, ctypes.c_uint64]
        lib.bpf_map__set_max_entries.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        lib.bpf_map__reuse_fd.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.bpf_map__fd.argtypes = [ctypes.c_void_p]
        lib.bpf_map__value_size.restype = ctypes.c_uint32
        lib.bpf_map__value_size.argtypes = [ctypes.c_void_p]
        lib.bpf_map__max_entries.restype = ctypes.c_uint32
        lib.bpf_map__max_entries.argtypes = [ctypes.c_void_p]
        lib.bpf_map_create.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32,
                                       ctypes.c_uint32, ctypes.c_uint32,
                                       ctypes.POINTER(_MapCreateOpts)]
        lib.bpf_program__fd.argtypes = [ctypes.c_void_p]
        lib.bpf_program__set_log_level.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        lib.bpf_program__set_log_buf.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        lib.bpf_prog_test_run_opts.argtypes = [ctypes.c_int, ctypes.POINTER(_TestRunOpts)]
        lib.libbpf_set_print.restype = ctypes.c_void_p
        lib.libbpf_set_print.argtypes = [_PRINT_FN]
        self._messages: list[str] = []
        libc = ctypes.CDLL(None, use_errno=True)
        self._vsnprintf = libc.vsnprintf
        self._vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
                                    ctypes.c_void_p]
        self._printer = _PRINT_FN(self._print)  # keep a reference: libbpf holds the pointer
        lib.libbpf_set_print(self._printer)

    @classmethod
    def get(cls) -> Libbpf:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def _print(self, level: int, fmt: bytes, args: int) -> int:
        buf = ctypes.create_string_buffer(4096)
        self._vsnprintf(buf, len(buf), fmt, args)
        self._messages.append(buf.value.decode(errors="replace"))
        return 0

    def take_messages(self) -> str:
        text, self._messages = "".join(self._messages), []
        return text


class Arena:
    """One BPF arena map, mapped at ARENA_ADDRESS in this process; programs share it."""

    def __init__(self, fd: int, pages: int, address: int) -> None:
        self.fd, self.pages = fd, pages
        self.size = pages * PAGE
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                              ctypes.c_int, ctypes.c_long]
        map_fixed_noreplace = 0x100000
        addr = libc.mmap(address, self.size, mmap.PROT_READ | mmap.PROT_WRITE,
                         mmap.MAP_SHARED | map_fixed_noreplace, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value) or addr != address:
            err = ctypes.get_errno()
            raise Unsupported(f"cannot map the BPF arena: {os.strerror(err)}")
        self.base = address


def arena_refusal() -> str:
    """Why this kernel refuses a BPF arena map of one page ("" when it makes one): told
    apart from a program the verifier rejects, so that a kernel without arenas is named."""
    lib = Libbpf.get()
    opts = _MapCreateOpts(sz=ctypes.sizeof(_MapCreateOpts), map_flags=BPF_F_MMAPABLE)
    fd = lib.lib.bpf_map_create(BPF_MAP_TYPE_ARENA, b"probe", 0, 0, 1, ctypes.byref(opts))
    if fd >= 0:
        os.close(fd)
        return ""
    err = ctypes.get_errno() or -fd
    return f"the kernel refuses BPF arena maps ({os.strerror(err)})"


class Program:
    """A loaded SYSCALL program and its object; `groups`, the mmap of its `group_words` map
    (one value per run slot) when it has one."""

    def __init__(self, lib: Libbpf, obj: int, fd: int, groups: mmap.mmap | None = None
                 ) -> None:
        self.lib, self.obj, self.fd, self.groups = lib, obj, fd, groups

    def run(self, ctx: ctypes.Structure) -> int:
        # SYSCALL programs take no ctx_out: the kernel copies the context back into ctx_in.
        opts = _TestRunOpts(sz=ctypes.sizeof(_TestRunOpts), ctx_in=ctypes.addressof(ctx),
                            ctx_size_in=ctypes.sizeof(ctx))
        rc = self.lib.lib.bpf_prog_test_run_opts(self.fd, ctypes.byref(opts))
        if rc != 0:
            err = ctypes.get_errno() or -rc
            raise OSError(err, f"bpf_prog_test_run_opts: {os.strerror(err)}")
        return ctypes.c_int32(opts.retval).value


def load(path: str, program: str, arena_pages: int, arena_address: int,
         arena_fd: int | None = None) -> tuple[Program, int]:
    """Open and load `path`; returns the program and the arena map's fd (reused when given)."""
    lib = Libbpf.get()
    lib.take_messages()
    obj = lib.lib.bpf_object__open_file(path.encode(), None)
    if not obj:
        raise Unsupported(f"libbpf cannot open {path}: {_summary(lib.take_messages())}")
    try:
        arena = lib.lib.bpf_object__find_map_by_name(obj, b"arena")
        if arena:
            lib.lib.bpf_map__set_max_entries(arena, arena_pages)
            lib.lib.bpf_map__set_map_extra(arena, arena_address)
            if arena_fd is not None:
                lib.lib.bpf_map__reuse_fd(arena, arena_fd)
        prog = lib.lib.bpf_object__find_program_by_name(obj, program.encode())
        if not prog:
            raise Unsupported(f"no program {program!r} in {path}")
        # Log level 0: libbpf asks for no verifier log unless the load fails, then loads again
        # with level 1 into this buffer. Logging every step made loads 2.5-6x slower (Q6 at 8
        # rows a step: 334 ms with the log, 54 ms without), and a first query waits for them.
        log = ctypes.create_string_buffer(1 << 22)
        lib.lib.bpf_program__set_log_buf(prog, log, len(log))
        lib.lib.bpf_program__set_log_level(prog, 0)
        rc = lib.lib.bpf_object__load(obj)
        if rc != 0:
            err = -rc
            messages = lib.take_messages()
            verifier = log.value.decode(errors="replace")
            if err in (errno.EPERM, errno.EACCES) and not verifier.strip():  # no verifier log
                raise Unsupported(f"loading BPF programs is not permitted ({os.strerror(err)}): "
                                  "the agent needs CAP_BPF and CAP_PERFMON")
            summary = _summary(verifier or messages) or os.strerror(err)
            raise VerifierRejected(f"the kernel refused {program}: {summary}",
                                   verifier + "\n" + messages)
        fd = lib.lib.bpf_program__fd(prog)
        map_fd = lib.lib.bpf_map__fd(arena) if arena else -1
        return Program(lib, obj, fd, _map_groups(lib, obj)), map_fd
    except BaseException:
        lib.lib.bpf_object__close(obj)
        raise


def _map_groups(lib: Libbpf, obj: int) -> mmap.mmap | None:
    """The object's `group_words` array map (BPF_F_MMAPABLE) mapped into this process."""
    groups = lib.lib.bpf_object__find_map_by_name(obj, b"group_words")
    if not groups:
        return None
    size = -(-lib.lib.bpf_map__value_size(groups) // 8) * 8 * lib.lib.bpf_map__max_entries(groups)
    return mmap.mmap(lib.lib.bpf_map__fd(groups), -(-size // PAGE) * PAGE, mmap.MAP_SHARED,
                     mmap.PROT_READ | mmap.PROT_WRITE)


def _summary(log: str) -> str:
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    for line in reversed(lines):
        if not line.startswith(("processed", "verification time", "stack depth", "--")):
            return line[:300]
    return lines[-1][:300] if lines else ""
