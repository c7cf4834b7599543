/* Filter -> reduce over columns held in a BPF arena (the hot path).
 *
 * The agent generates one program per plan *shape* by filling the named holes below; every
 * constant (column addresses, row range, filter windows) travels in the context, so one
 * object serves every query of that shape. As written (holes empty) it counts rows.
 */
#include "bpfstore.h"

/* settings: the agent passes them with -D (these are the defaults) */
#ifndef STRIDE
#define STRIDE 1 /* u64 words of one group's accumulators (group-by programs) */
#endif
#ifndef UNROLL
#define UNROLL 8 /* rows a step; 1 when the verifier cannot follow a wide unrolled body */
#endif
#define BIT(p, r) (((p)[(r) >> 3] >> ((r) & 7)) & 1) /* bit r of a packed bit array */

struct {
    __uint(type, BPF_MAP_TYPE_ARENA);
    __uint(map_flags, BPF_F_MMAPABLE);
    __uint(max_entries, 1); /* pages: set by the agent before load */
} arena SEC(".maps");

struct ctx {
    CTX_HEAD
    /*@CTX@*/
};

SEC("syscall")
int aggregate(struct ctx *c)
{
    asm volatile("" :: "r"(&arena)); /* tie the program to the arena map */
    u64 i = c->start, end = c->end, count = 0;
    /*@COLUMNS@*/
    /*@SETUP@*/
    /* UNROLL rows a step (fewer loop checks), then the remaining rows one by one */
    while (i + UNROLL <= end && can_loop) {
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            u64 r = i + u;
            u64 sel = ~0ULL;
            /*@PREDICATE@*/
            u64 mask = (u64)((s64)sel >> 63);
            HIDE(mask);
            count += mask & 1;
            /*@ACCUMULATE@*/
        }
        i += UNROLL;
    }
    while (i < end && can_loop) {
        u64 r = i;
        u64 sel = ~0ULL;
        /*@PREDICATE@*/
        u64 mask = (u64)((s64)sel >> 63);
        HIDE(mask);
        count += mask & 1;
        /*@ACCUMULATE@*/
        i++;
    }
    c->done = i;
    c->count += count;
    /*@STORE@*/
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
