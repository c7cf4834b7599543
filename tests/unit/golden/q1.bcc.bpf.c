// -DCHUNK_BYTES=(352 * CHUNK_ROWS / 8) -DCHUNK_ROWS=2048 -DGROUP_CAP=64 -DLAST_OFFSET=(288 * CHUNK_ROWS / 8) -DLAST_WIDTH=8 -DSTRIDE=9
/* Filter -> reduce in the read path (engine bcc), compiled by bcc: for kernels without
 * SYSCALL programs or arenas. No may_goto, no kfuncs, no bpf_loop (bcc 0.26 cannot).
 *
 * A request owns a slot: a context in `slots` (constants in, results out) and a user
 * buffer laid out like its `scratch` value: one region of CHUNK_ROWS rows per column (and
 * validity bitmap), the registered region last. The agent registers (tgid, address of the
 * registered region) -> (slot, generation) in `reqs`, then for each chunk of rows pread()s
 * the partition file's byte ranges into the regions, the registered one last. When that
 * last pread completes, the program copies the whole buffer (every column of the chunk) into
 * the slot's scratch and reduces its rows with the shared predicate/accumulator code. Reads
 * are only attributed while their (tgid, address) is registered with the generation the
 * slot holds: the agent unregisters before a buffer is reused, and a thread's pending read
 * is forgotten at its next pread. GROUP BY programs (GROUP_CAP > 0) add to the slot's
 * value of `group_words`, group g's words at g * STRIDE.
 */
#define BPFSTORE_BCC
#include "bpfstore.h"

#define SLOTS 16          /* concurrent requests of one program */
/* settings: the agent passes them with -D (these are the defaults) */
#ifndef CHUNK_ROWS
#define CHUNK_ROWS 2048   /* rows a read (a multiple of 64): the verifier follows each one */
#endif
#ifndef CHUNK_BYTES
#define CHUNK_BYTES 8     /* one chunk of every region */
#endif
#ifndef LAST_OFFSET
#define LAST_OFFSET 0     /* where the registered region starts in the buffer */
#endif
#ifndef LAST_WIDTH
#define LAST_WIDTH 8      /* bytes a row of the registered region */
#endif
#ifndef GROUP_CAP
#define GROUP_CAP 0       /* GROUP BY: groups in a slot's `group_words` (a power of two) */
#endif
#ifndef STRIDE
#define STRIDE 1          /* u64 words of one group's accumulators */
#endif
#define BIT(p, r) (((p)[(r) >> 3] >> ((r) & 7)) & 1) /* bit r of a packed bit array */

struct ctx {
    CTX_HEAD          /* start, end unused (the chunk's rows come from the read's length) */
    u64 gen;          /* generation of the request holding the slot */
    u64 reads;        /* out: reads reduced */
    u64 err;          /* out: a read of the wrong size (1), a failed copy (2), no groups (4) */
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

struct key_t { u32 tgid; u32 pad; u64 buf; };
struct reg_t { u32 slot; u32 pad; u64 gen; };
struct flight_t { u64 buf; u64 gen; u32 slot; u32 pad; };
struct chunk_t { u8 bytes[CHUNK_BYTES]; };

BPF_HASH(reqs, struct key_t, struct reg_t, 1024);    /* registered requests */
BPF_HASH(inflight, u64, struct flight_t, 1024);      /* thread -> its registered pread */
BPF_ARRAY(slots, struct ctx, SLOTS);
BPF_ARRAY(scratch, struct chunk_t, SLOTS);
#if GROUP_CAP
/* GROUP BY (no arena on these kernels): a slot's groups, STRIDE words each, which the agent
 * sets to their initial values before each partition and reads back after it */
struct groups_t { u64 w[GROUP_CAP * STRIDE]; };
BPF_ARRAY(group_words, struct groups_t, SLOTS);
#endif

/* attached by the agent to syscalls:sys_enter_pread64 */
int on_enter(struct tracepoint__syscalls__sys_enter_pread64 *args)
{
    u64 id = bpf_get_current_pid_tgid();
    struct key_t k = {};
    k.tgid = id >> 32;
    k.buf = (u64)args->buf;
    struct reg_t *reg = reqs.lookup(&k);
    if (!reg) {
        if (inflight.lookup(&id))  /* a stale pending read of this thread: forget it */
            inflight.delete(&id);
        return 0;
    }
    struct flight_t f = {};
    f.buf = k.buf;
    f.gen = reg->gen;
    f.slot = reg->slot;
    inflight.update(&id, &f);
    return 0;
}

/* attached by the agent to syscalls:sys_exit_pread64 */
int on_exit(struct tracepoint__syscalls__sys_exit_pread64 *args)
{
    u64 id = bpf_get_current_pid_tgid();
    struct flight_t *pending = inflight.lookup(&id);
    if (!pending)
        return 0;
    struct flight_t f = *pending;
    inflight.delete(&id);
    struct key_t k = {};
    k.tgid = id >> 32;
    k.buf = f.buf;
    struct reg_t *reg = reqs.lookup(&k);  /* still registered, same request */
    if (!reg || reg->gen != f.gen || reg->slot != f.slot)
        return 0;
    u32 slot = f.slot;
    struct ctx *c = slots.lookup(&slot);
    struct chunk_t *chunk = scratch.lookup(&slot);
    if (!c || !chunk || c->gen != f.gen)
        return 0;
    long ret = args->ret;
    if (ret <= 0 || ret > CHUNK_ROWS * LAST_WIDTH || ret % LAST_WIDTH) {
        c->err |= 1;
        return 0;
    }
    u64 n = ret / LAST_WIDTH;
    if (bpf_probe_read_user(chunk->bytes, CHUNK_BYTES, (const void *)(f.buf - LAST_OFFSET))) {
        c->err |= 2;
        return 0;
    }
    const u8 *buf = chunk->bytes;
#if GROUP_CAP
    struct groups_t *gw = group_words.lookup(&slot);
    if (!gw) {
        c->err |= 4;
        return 0;
    }
    u64 *acc = gw->w;
#endif
    u64 count = 0;
    const s32 *col0 = (const s32 *)(buf + 0 * CHUNK_ROWS / 8);
    const s32 *col1 = (const s32 *)(buf + 32 * CHUNK_ROWS / 8);
    const s32 *col2 = (const s32 *)(buf + 64 * CHUNK_ROWS / 8);
    const s64 *col3 = (const s64 *)(buf + 96 * CHUNK_ROWS / 8);
    const s64 *col4 = (const s64 *)(buf + 160 * CHUNK_ROWS / 8);
    const s64 *col5 = (const s64 *)(buf + 224 * CHUNK_ROWS / 8);
    const s64 *col6 = (const s64 *)(buf + 288 * CHUNK_ROWS / 8);
    u64 lo0 = c->lo0, r0 = c->r0, inv0 = c->inv0;
    u64 kb1 = c->kb1, km1 = c->km1;
    u64 kb0 = c->kb0, km0 = c->km0;
    u64 groups = c->groups;
    /* the verifier follows every trip (no may_goto or bpf_loop here); the row test uses a
     * copy of r hidden from LLVM, which would otherwise merge the two bounds into one the
     * verifier cannot check */
#pragma clang loop unroll(disable)
    for (u64 r = 0; r < CHUNK_ROWS; r++) {
        u64 seen = r;
        HIDE(seen);
        if (seen >= n)
            break;
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
    c->done += n;
    c->reads += 1;
    c->count += count;
    
    return 0;
}
