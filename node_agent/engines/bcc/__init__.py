"""The bcc engine (read path).

For kernels without SYSCALL programs (< 5.17) or where only bcc is set up (`python3-bpfcc`,
kernel headers, tracefs: `make install`). `--engine bcc` forces it; `auto` uses it only when
the bpf engine is unavailable. Probed on first use (compile, attach, reduce a known file),
one per agent process; GetInfo's `bcc` status says why it is unavailable.

- **Data delivery:** codegen fills `bpf/bcc_read.bpf.c` (no may_goto, arena, kfuncs or
  bpf_loop: one bounded loop of CHUNK_ROWS rows that the verifier walks); bcc compiles it
  per plan shape (kept attached, LRU of 16) onto `syscalls:sys_{enter,exit}_pread64`. A
  request takes a slot: a context in the `slots` map and a buffer laid out like the
  program's scratch (a region per column and validity bitmap). The agent registers
  (tgid, address of the last region) → (slot, generation), then per chunk of rows pread()s
  the partition file's byte ranges (found from the buffers' addresses in the file mapping)
  into the regions, the registered one last; at its exit the program copies the buffer with
  `bpf_probe_read_user` and reduces the rows. Results come back from the slot and become
  partials with the bpf engine's code.
- **Attribution:** other processes never match (tgid in the key); other threads of the agent
  never read into a slot's buffer; a read counts only if its registration is still there
  with the generation the slot holds at its exit; the agent unregisters before a slot is
  reused. The agent checks that rows and reads reduced equal rows and reads issued, else the
  partition runs on arrow.
- **GROUP BY:** no arena here, so a slot's group accumulators are one value of the BPF array
  map `group_words` (a slot per request, like its context): GROUP_CAP groups of STRIDE u64
  words, group g at g * STRIDE. The shared codegen decides group ids (dictionary codes or
  small integer ranges; bases and multipliers in the context), the words (count, 2 per SUM,
  1 per MIN/MAX) and their initial values; the agent writes those into the slot's value
  before each partition and reads it back after, into the bpf engine's grouped partials.
  An array rather than a hash map keyed by (slot, group): codegen bounds groups by
  MAX_GROUPS, so the array is exact and never full, and the program looks the slot's value
  up once a read, not once a row. GROUP_CAP is a power of two above the group ids (at least
  64, so a few groups more or fewer keep one shape): `g &= GROUP_CAP - 1` changes no id and
  shows the verifier every access is inside the value.
- **Not on bcc:** float columns (the file has no order keys), plans reading only booleans,
  programs with so many accumulators that walking CHUNK_ROWS (down to 128) trips exceeds
  the verifier's budget. These run on arrow (auto) or fail naming why.
"""
