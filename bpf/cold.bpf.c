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
    /*@CTX@*/
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
    /*@COLUMNS@*/
    /*@SETUP@*/
    struct bpf_iter_num chunk_it, step_it, tail_it;
    int *k, *j, *t;
    bpf_iter_num_new(&chunk_it, 0, (end - start + CHUNK_ROWS - 1) / CHUNK_ROWS);
    while ((k = bpf_iter_num_next(&chunk_it))) {
        u64 i = start + (u64)*k * CHUNK_ROWS;
        u64 n = end - i;
        if (n > CHUNK_ROWS)
            n = CHUNK_ROWS;
        /*@COPY@*/
        bpf_iter_num_new(&step_it, 0, n / UNROLL);
        while ((j = bpf_iter_num_next(&step_it))) {
#pragma unroll
            for (int u = 0; u < UNROLL; u++) {
                u64 r = ((u64)*j * UNROLL + u) & (CHUNK_ROWS - 1);
                u64 sel = ~0ULL;
                /*@PREDICATE@*/
                u64 mask = (u64)((s64)sel >> 63);
                HIDE(mask);
                count += mask & 1;
                /*@ACCUMULATE@*/
            }
        }
        bpf_iter_num_destroy(&step_it);
        bpf_iter_num_new(&tail_it, n / UNROLL * UNROLL, n);
        while ((t = bpf_iter_num_next(&tail_it))) {
            u64 r = (u64)*t & (CHUNK_ROWS - 1);
            u64 sel = ~0ULL;
            /*@PREDICATE@*/
            u64 mask = (u64)((s64)sel >> 63);
            HIDE(mask);
            count += mask & 1;
            /*@ACCUMULATE@*/
        }
        bpf_iter_num_destroy(&tail_it);
    }
    bpf_iter_num_destroy(&chunk_it);
    if (err)
        return 3;
    c->done = end;
    c->count += count;
    /*@STORE@*/
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
