// -DCHUNK_BYTES=180224 -DCHUNK_ROWS=4096 -DGROUP_CAP=64 -DRUN_SLOTS=8 -DSTRIDE=9 -DUNROLL=8
/* Filter -> reduce over columns copied chunk by chunk from user memory (the cold path).
 *
 * The agent points the context at each column's values in its read-only mmap of the
 * partition file (or at a buffer it derived, e.g. float order keys); the program copies
 * CHUNK_ROWS rows of every column into its map value with bpf_copy_from_user and reduces
 * them there. Needs no arena and no may_goto: loops are open-coded iterators, bounded by the
 * kernel. GROUP BY adds to the run slot's value of `group_words`, which the agent mmaps. The
 * holes are the hot path's, plus COPY.
 */
#include "bpfstore.h"

/* settings: the agent passes them with -D (these are the defaults) */
#ifndef STRIDE
#define STRIDE 1        /* u64 words of one group's accumulators (group-by programs) */
#endif
#ifndef UNROLL
#define UNROLL 8        /* rows a step */
#endif
#ifndef CHUNK_ROWS
#define CHUNK_ROWS 4096 /* rows copied at a time (a power of two: indexes are masked) */
#endif
#ifndef CHUNK_BYTES
#define CHUNK_BYTES 8   /* size of one chunk of every column used */
#endif
#ifndef RUN_SLOTS
#define RUN_SLOTS 1     /* runs of this program at once: each copies into its own chunk */
#endif
#ifndef GROUP_CAP
#define GROUP_CAP 0     /* GROUP BY: groups in a slot's `group_words` (a power of two) */
#endif
#define BIT(p, r) (((p)[((r) + b) >> 3] >> (((r) + b) & 7)) & 1) /* bits start at bit b */

struct chunk { u8 bytes[CHUNK_BYTES]; };

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, RUN_SLOTS);
    __type(key, u32);
    __type(value, struct chunk);
} chunks SEC(".maps");

#if GROUP_CAP
/* a run slot's groups, STRIDE words each; group ids are masked with GROUP_CAP - 1 */
struct groups_t { u64 w[GROUP_CAP * STRIDE]; };

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(map_flags, BPF_F_MMAPABLE);
    __uint(max_entries, RUN_SLOTS);
    __type(key, u32);
    __type(value, struct groups_t);
} group_words SEC(".maps");
#endif

struct ctx {
    CTX_HEAD          /* rows [start, end) of one record batch */
    u64 slot;         /* the agent's run slot: the chunk buffer this run copies into */
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
    u64 groups;
    u64 col3;
    u64 col4;
    u64 col5;
    u64 col6;
};

SEC("syscall")
int aggregate(struct ctx *c)
{
    u32 slot = c->slot; /* no other run copies into this chunk, or adds to these groups */
    u8 *buf = bpf_map_lookup_elem(&chunks, &slot);
    if (!buf)
        return 1;
#if GROUP_CAP
    u64 *acc = bpf_map_lookup_elem(&group_words, &slot);
    if (!acc)
        return 1;
#endif
    u64 start = c->start, end = c->end, count = 0;
    long err = 0; /* a fault while copying: the results are not used */
    u64 b = start & 7; /* bit arrays are copied from byte start / 8 */
    if (end <= start || end - start > (1ULL << 30))
        return 2;
    const s32 *col0 = (const s32 *)(buf + 0);
    const s32 *col1 = (const s32 *)(buf + 16384);
    const s32 *col2 = (const s32 *)(buf + 32768);
    const s64 *col3 = (const s64 *)(buf + 49152);
    const s64 *col4 = (const s64 *)(buf + 81920);
    const s64 *col5 = (const s64 *)(buf + 114688);
    const s64 *col6 = (const s64 *)(buf + 147456);
    u64 lo0 = c->lo0, r0 = c->r0, inv0 = c->inv0;
    u64 kb1 = c->kb1, km1 = c->km1;
    u64 kb0 = c->kb0, km0 = c->km0;
    u64 groups = c->groups;
    struct bpf_iter_num chunk_it, step_it, tail_it;
    int *k, *j, *t;
    bpf_iter_num_new(&chunk_it, 0, (end - start + CHUNK_ROWS - 1) / CHUNK_ROWS);
    while ((k = bpf_iter_num_next(&chunk_it))) {
        u64 i = start + (u64)*k * CHUNK_ROWS;
        u64 n = end - i;
        if (n > CHUNK_ROWS)
            n = CHUNK_ROWS;
        err |= bpf_copy_from_user(buf + 0, n * 4, (const void *)(c->col0 + i * 4));
        err |= bpf_copy_from_user(buf + 16384, n * 4, (const void *)(c->col1 + i * 4));
        err |= bpf_copy_from_user(buf + 32768, n * 4, (const void *)(c->col2 + i * 4));
        err |= bpf_copy_from_user(buf + 49152, n * 8, (const void *)(c->col3 + i * 8));
        err |= bpf_copy_from_user(buf + 81920, n * 8, (const void *)(c->col4 + i * 8));
        err |= bpf_copy_from_user(buf + 114688, n * 8, (const void *)(c->col5 + i * 8));
        err |= bpf_copy_from_user(buf + 147456, n * 8, (const void *)(c->col6 + i * 8));
        bpf_iter_num_new(&step_it, 0, n / UNROLL);
        while ((j = bpf_iter_num_next(&step_it))) {
#pragma unroll
            for (int u = 0; u < UNROLL; u++) {
                u64 r = ((u64)*j * UNROLL + u) & (CHUNK_ROWS - 1);
                u64 sel = ~0ULL;
                sel &= (in_window((u64)(s64)col0[r], lo0, r0) ^ inv0);
                u64 mask = (u64)((s64)sel >> 63);
                HIDE(mask);
                count += mask & 1;
                u64 g = ((u64)(s64)col1[r] - kb1) * km1 + ((u64)(s64)col2[r] - kb0) * km0; g = (g & mask) | (groups & ~mask); g &= GROUP_CAP - 1;
            u64 *a = acc + g * STRIDE; a[0] += 1;
            { s64 v = (s64)col3[r]; a[1] += (u64)v; }
            { s64 v = (s64)col4[r]; a[3] += (u64)v; }
            { s64 v = ((s64)col4[r] * (((1LL) * 100LL) - (s64)col5[r])); a[5] += (u64)v; }
            { s64 v = (((s64)col4[r] * (((1LL) * 100LL) - (s64)col5[r])) * (((1LL) * 100LL) + (s64)col6[r])); a[7] += (u64)v; }
            }
        }
        bpf_iter_num_destroy(&step_it);
        bpf_iter_num_new(&tail_it, n / UNROLL * UNROLL, n);
        while ((t = bpf_iter_num_next(&tail_it))) {
            u64 r = (u64)*t & (CHUNK_ROWS - 1);
            u64 sel = ~0ULL;
            sel &= (in_window((u64)(s64)col0[r], lo0, r0) ^ inv0);
            u64 mask = (u64)((s64)sel >> 63);
            HIDE(mask);
            count += mask & 1;
            u64 g = ((u64)(s64)col1[r] - kb1) * km1 + ((u64)(s64)col2[r] - kb0) * km0; g = (g & mask) | (groups & ~mask); g &= GROUP_CAP - 1;
            u64 *a = acc + g * STRIDE; a[0] += 1;
            { s64 v = (s64)col3[r]; a[1] += (u64)v; }
            { s64 v = (s64)col4[r]; a[3] += (u64)v; }
            { s64 v = ((s64)col4[r] * (((1LL) * 100LL) - (s64)col5[r])); a[5] += (u64)v; }
            { s64 v = (((s64)col4[r] * (((1LL) * 100LL) - (s64)col5[r])) * (((1LL) * 100LL) + (s64)col6[r])); a[7] += (u64)v; }
        }
        bpf_iter_num_destroy(&tail_it);
    }
    bpf_iter_num_destroy(&chunk_it);
    if (err)
        return 3;
    c->done = end;
    c->count += count;
    
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
