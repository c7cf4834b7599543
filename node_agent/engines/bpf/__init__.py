"""The bpf engine (in-kernel).

`BPF_PROG_TYPE_SYSCALL` programs (sleepable), loaded with libbpf through ctypes and run
synchronously with `bpf_prog_test_run_opts`: the request is the context struct and the kernel
copies it back with the results. Nothing is attached to the host.

- **Two data paths, one generator.** `codegen.py` emits the predicate, accumulator and store
  fragments once; a template decides how the rows arrive (`col{i}[r]`, `BIT(p, r)`):
  - **hot** (`bpf/aggregate.bpf.c`): a partition's columns are copied once into a BPF arena
    (`BPF_MAP_TYPE_ARENA`, shared by all programs of the agent, LRU within
    `--bpf-cache-mb`); `can_loop` (may_goto) loops, 8 rows a step where the verifier
    follows it. may_goto is time-bounded, so a program returns the rows done and the agent
    calls again from there. Needs Linux >= 6.9 and a kernel that makes arena maps: where
    BPF_MAP_CREATE refuses one (`libbpf.arena_refusal`; seen on 6.18 for root with CAP_BPF),
    the hot path is off with that reason and every plan runs cold.
  - **cold** (`bpf/cold.bpf.c`): per record batch, 4096-row chunks of every column are
    copied with `bpf_copy_from_user` from the agent's read-only mmap of the partition file
    (or from a buffer it derived: float order keys, validity bitmaps) into the program's
    map value, then reduced; loops are open-coded iterators (`bpf_iter_num`, Linux >= 6.4).
    Needs no arena: GROUP BY adds to the run slot's value of the program's own
    `group_words` array map (BPF_F_MMAPABLE, mapped by the agent; GROUP_CAP groups).
  - `auto`/`bpf` run a partition hot when its columns are in the arena, else cold while a
    background thread copies them in; `bpf-hot`/`bpf-cold` force a path. Each path has its
    own start-up probe; GetInfo lists `bpf-hot` and `bpf-cold` with the reason when off.
  - **Every core:** runs go on at once, at most one per CPU (`--bpf-threads`): each takes
    a run slot, which owns a cold-path chunk buffer (a value of the `chunks` map) and its
    group accumulators (hot: a region at the start of the arena; cold: a value of
    `group_words`); the columns a hot run reads stay pinned in
    the arena until it ends, so an eviction never overwrites one. One request's partitions
    are spread over the CPUs too (`select.Engines`), answered in partition order.
- **What compiles** (`codegen/`): comparisons, BETWEEN, IN, IS NULL of columns against
  literals combined with AND / OR / NOT (SQL's three-valued logic or pandas' rules) as
  integer windows with exact bounds (decimals as scaled integers, dates as days, strings as
  dictionary codes, floats as total-order keys with NaN above +inf), and comparisons of two
  integer-like columns (one scale, one signed test; floats refused); COUNT, SUM of `+ - *`
  expressions over integer-like columns, MIN/MAX of columns; GROUP BY up to 4096 groups of
  dictionary codes or small integer ranges (accumulators per run slot, above); NULLs
  through the columns' validity bitmaps (copied into the arena beside the values); key sets
  (`x IN <keys>`) as equality windows of the at most 64 keys a partition's [min, max] or
  dictionary admits (`codegen/keys.py`; more, and bcc: arrow).
- **Exactness:** every SUM expression is proven free of int64 overflow (and of overflow of
  its own, possibly narrower, result type) from the partition's min/max statistics before
  it runs; sums are kept in 128 bits with a branch-free carry, or in one s64 without a
  per-row carry where |bound| x rows proves the total fits.
- **Verifier-friendly code:** predicates are unsigned words whose sign bit is the truth value,
  hidden from LLVM with empty `asm volatile` so they stay branch-free; the context is written
  on one path only; accumulators for group-by live in the arena or a map, not on the stack;
  group ids are masked with GROUP_CAP - 1 on the cold path, so every access is provably in
  the map value.
- **Caches:** objects in `<data-dir>/bpf-cache/` named by the hash of the C and of clang's
  version (partition constants travel in the context, so one object serves every partition
  and query of a shape, across restarts; codegen's docstring lists what splits shapes),
  loaded programs by shape in memory, generated programs per (plan, partition, path) in
  memory.
- **Not yet:** float sums (no floating point in BPF), decimal128 and string MIN/MAX,
  float column-vs-column filters, casts and division. These partitions run on arrow, with the
  reason in the report.
"""
