// -DSTRIDE=9 -DUNROLL=8
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
    u64 lo0;
    u64 r0;
    u64 inv0;
    u64 col0;
    u64 col1;
    u64 kb1;
    u64 km1;
    u64 col2;
    u64 kb0;
    u64 km0;
    u64 acc;
    u64 groups;
    u64 col3;
    u64 col4;
    u64 col5;
    u64 col6;
};

SEC("syscall")
int aggregate(struct ctx *c)
{
    asm volatile("" :: "r"(&arena)); /* tie the program to the arena map */
    u64 i = c->start, end = c->end, count = 0;
    const s32 __arena *col0 = (const s32 __arena *)c->col0;
    const s32 __arena *col1 = (const s32 __arena *)c->col1;
    const s32 __arena *col2 = (const s32 __arena *)c->col2;
    const s64 __arena *col3 = (const s64 __arena *)c->col3;
    const s64 __arena *col4 = (const s64 __arena *)c->col4;
    const s64 __arena *col5 = (const s64 __arena *)c->col5;
    const s64 __arena *col6 = (const s64 __arena *)c->col6;
    u64 lo0 = c->lo0, r0 = c->r0, inv0 = c->inv0;
    u64 kb1 = c->kb1, km1 = c->km1;
    u64 kb0 = c->kb0, km0 = c->km0;
    u64 __arena *acc = (u64 __arena *)c->acc; u64 groups = c->groups;
    /* UNROLL rows a step (fewer loop checks), then the remaining rows one by one */
    while (i + UNROLL <= end && can_loop) {
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            u64 r = i + u;
            u64 sel = ~0ULL;
            sel &= (in_window((u64)(s64)col0[r], lo0, r0) ^ inv0);
            u64 mask = (u64)((s64)sel >> 63);
            HIDE(mask);
            count += mask & 1;
            u64 g = ((u64)(s64)col1[r] - kb1) * km1 + ((u64)(s64)col2[r] - kb0) * km0; g = (g & mask) | (groups & ~mask);
            u64 __arena *a = acc + g * STRIDE; a[0] += 1;
            { s64 v = (s64)col3[r]; a[1] += (u64)v; }
            { s64 v = (s64)col4[r]; a[3] += (u64)v; }
            { s64 v = ((s64)col4[r] * (((1LL) * 100LL) - (s64)col5[r])); a[5] += (u64)v; }
            { s64 v = (((s64)col4[r] * (((1LL) * 100LL) - (s64)col5[r])) * (((1LL) * 100LL) + (s64)col6[r])); a[7] += (u64)v; }
        }
        i += UNROLL;
    }
    while (i < end && can_loop) {
        u64 r = i;
        u64 sel = ~0ULL;
        sel &= (in_window((u64)(s64)col0[r], lo0, r0) ^ inv0);
        u64 mask = (u64)((s64)sel >> 63);
        HIDE(mask);
        count += mask & 1;
        u64 g = ((u64)(s64)col1[r] - kb1) * km1 + ((u64)(s64)col2[r] - kb0) * km0; g = (g & mask) | (groups & ~mask);
            u64 __arena *a = acc + g * STRIDE; a[0] += 1;
            { s64 v = (s64)col3[r]; a[1] += (u64)v; }
            { s64 v = (s64)col4[r]; a[3] += (u64)v; }
            { s64 v = ((s64)col4[r] * (((1LL) * 100LL) - (s64)col5[r])); a[5] += (u64)v; }
            { s64 v = (((s64)col4[r] * (((1LL) * 100LL) - (s64)col5[r])) * (((1LL) * 100LL) + (s64)col6[r])); a[7] += (u64)v; }
        i++;
    }
    c->done = i;
    c->count += count;
    
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
