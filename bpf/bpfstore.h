/* Shared definitions for bpfstore's eBPF programs: no kernel headers needed (a minimal
 * prelude compiles in ~0.1 s), branch-free helpers the verifier accepts, and the loop macro.
 */
#ifndef BPFSTORE_H
#define BPFSTORE_H

#ifndef BPFSTORE_BCC /* bcc brings the kernel's types and its own helper declarations */
typedef unsigned long long u64;
typedef long long s64;
typedef unsigned int u32;
typedef int s32;
typedef unsigned short u16;
typedef short s16;
typedef unsigned char u8;
typedef signed char s8;
typedef _Bool bool;

#define SEC(n) __attribute__((section(n), used))
#define __uint(name, val) int (*name)[val]
#define __arena __attribute__((address_space(1)))
#define __type(name, val) typeof(val) *name
#define BPF_MAP_TYPE_ARRAY 2
#define BPF_MAP_TYPE_ARENA 33
#define BPF_F_MMAPABLE (1U << 10)

/* helpers (by number) and the open-coded number iterator (kfuncs, Linux >= 6.4): the
 * verifier checks an iterator loop's body once rather than once per trip */
static void *(* const bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (* const bpf_copy_from_user)(void *dst, u32 size, const void *src) = (void *)148;
struct bpf_iter_num { u64 opaque[1]; } __attribute__((aligned(8)));
#define __ksym __attribute__((weak, section(".ksyms")))
extern int bpf_iter_num_new(struct bpf_iter_num *it, int start, int end) __ksym;
extern int *bpf_iter_num_next(struct bpf_iter_num *it) __ksym;
extern void bpf_iter_num_destroy(struct bpf_iter_num *it) __ksym;
#endif


/* The fixed head of every program's context (struct ctx): one `u64 name;` a line, read by
 * the agent for its ctypes mirror (node_agent/engines/bpf/codegen/context.py). */
#define CTX_HEAD                                                                  \
    u64 start;  /* rows [start, end) */                                           \
    u64 end;                                                                      \
    u64 done;   /* out: rows processed (may_goto may stop early) */               \
    u64 count;  /* out: rows selected */

/* may_goto: a loop the verifier bounds by time (~0.25 s a call on 6.18), so programs
 * return the rows done and the agent calls again from there. */
#define can_loop ({ __label__ l_break, l_continue; bool ret = 1;                 \
    asm volatile goto("may_goto %l[l_break]" :::: l_break); goto l_continue;      \
    l_break: ret = 0; l_continue:; ret; })

/* Hide a value from LLVM so it cannot turn branch-free masks back into branches, which
 * the verifier would have to explore one by one. */
#define HIDE(v) asm volatile("" : "+r"(v))

/* Sign bit set when lo <= x <= lo + r (unsigned window test, r < 2**63). */
static __attribute__((always_inline)) u64 in_window(u64 x, u64 lo, u64 r1)
{
    u64 d = x - lo;
    u64 w = (d - r1) & ~d;
    HIDE(w);
    return w;
}

/* All ones when a < b (signed), else 0, without a branch. */
static __attribute__((always_inline)) u64 less_mask(s64 a, s64 b)
{
    u64 ua = (u64)a ^ (1ULL << 63), ub = (u64)b ^ (1ULL << 63);
    u64 borrow = ((~ua & ub) | ((~ua | ub) & (ua - ub))) >> 63;
    u64 m = -borrow;
    HIDE(m);
    return m;
}

/* (hi, lo) += v (signed 64-bit), branch-free carry. */
#define ADD128(lo, hi, v) do {                                                    \
    u64 _x = (u64)(v), _n = (lo) + _x;                                            \
    (hi) += ((((lo) & _x) | (((lo) | _x) & ~_n)) >> 63) + (u64)((s64)_x >> 63);   \
    (lo) = _n;                                                                    \
} while (0)

#endif
