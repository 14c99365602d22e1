/* SPDX-License-Identifier: MIT */
/*
 * tracer_bpf: the tracer's kernel-side mechanism ("bpf", see tracer.h and docs/exceptions.md).
 * Instead of stopping a thread at each hit, a BPF program at PyTraceBack_Here (bpf_exc.c,
 * src/trace/bpf/exc.bpf.c) reads the hit in the raising thread and queues a record; this file turns
 * records into the same events the ptrace mechanisms emit, through the same code (tracer.c's
 * tr_new_raise / tr_propagate, the open-exception table, tr_check_ends for handled-at):
 *  - a RAISE record carries the frame chain (frame, code, instruction pointer) and copies of the
 *    object bytes the describer reads; they are put into the tracer's read memo, so exc.c and
 *    pyobj.c describe the exception (qualified type, message of every str kind, chain) from
 *    bytes taken at the raise, and read live only what the kernel did not copy (a heap type's
 *    __module__ on a type-name cache miss, a non-compact str). Code headers (for the code
 *    cache's fingerprint check) are read live, one scatter read per record.
 *  - a CODE record precedes a RAISE record for each of its code objects the program had not sent
 *    before (known_codes): resolved into the code cache from its copies, so that a raise read
 *    after the target exited (or freed the code) still has its frames (tr_bpf_stack then takes
 *    the cache's entry). What the code cache or the type-name cache drops is unmarked in the
 *    program, which then sends it again.
 *  - a PROP record (the program saw the thread's open exception reach the caller frame) moves
 *    the open exception's last frame, as a propagation stop does.
 *  - handled-at needs no stop: the exception ends when a later record of its thread shows
 *    another one, or when tr_check_ends, reading the thread's in-flight exception every 10 ms
 *    while the target runs, finds it gone twice; its last record's frame is where it was handled.
 * The target is never seized, stopped or written. Rate: every raise is reported unless
 * --max-rate was given (then the bucket counts not_reported; nothing is disarmed).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bpf/exc_rec.h"
#include "pyscope/bpf_exc.h"
#include "pyscope/code.h"
#include "pyscope/evloop.h"
#include "pyscope/exc.h"
#include "pyscope/procstat.h"
#include "pyscope/target.h"
#include "tracer_int.h"

#define TR_BPF_SYNC_S 0.1 /* least time between two thread-list reads */
/*
 * The budget (tracer.h "Budget"), at any rate. Every TR_BPF_BUDGET_S the cost since the last look
 * -- the program's own time (bpf_ktime, summed in the kernel), per hit the uprobe's trap, which
 * the program cannot see (measured at start on pyscope's own code: bpf_exc_trap_cost_s; 5.5 us
 * on this session's VM, where issue 15 had measured 1.7 us; TR_BPF_TRAP_S if unmeasured), and
 * pyscope's own CPU turning records into events (on a busy machine it is taken from the target's
 * cores: at ~8k raises/s it was most of the cost) -- is charged to a credit that refills at the
 * budget's share of the target's CPU (tracer_budget.c) and holds between -TR_BPF_BURST_S and
 * TR_BPF_BURST_S (or two looks' worth): a burst of raises is reported whole; a sustained rate
 * over the share samples the records (one raise in N gets one: N x 2-8 per look, up to
 * TR_BPF_MAX_EVERY; / 2-8 again once the cost is under half the share and the credit is back).
 * Every raise is still counted per site in the kernel, and a site's first raise always gets its
 * record. Where the trap and the count alone exceed the share (~2-3 us per raise, tens of
 * thousands of raises/s), the sampling stays at its maximum and budget_spent_s says by how much.
 */
#define TR_BPF_BUDGET_S  0.1
#define TR_BPF_TRAP_S    1.7e-6
#define TR_BPF_BURST_S   0.02
#define TR_BPF_MAX_EVERY 4096u
#define TR_BPF_SITES_MAX 4096
/* Records handled per step: half the event ring, delivered before the next batch. */
#define TR_BPF_BATCH (TRACER_RING_CAP / 2)
/* a RAISE record's copy of a new type's tp_name is what the describer reads first */
_Static_assert(EXC_BPF_TYPE_NAME == EXC_TYPE_MAX - 1, "tp_name copy != the type namer's read");

/* ---- records -------------------------------------------------------------------------------- */

/* Put a record's copied ranges into the memo, afresh: each checked against the `have` bytes of
 * blob the record brought (a range outside them is left out). */
static void tr_bpf_put_ranges(struct tracer *t, const struct exc_bpf_range *ranges, uint32_t n,
                              const uint8_t *blob, size_t have)
{
    tr_memo_begin(t->memo, 0);
    for (uint32_t i = 0; i < n; i++) {
        const struct exc_bpf_range *g = &ranges[i];
        if (g->len == 0 || g->off > have || g->len > have - g->off)
            continue;
        tr_memo_put(t->memo, g->addr, blob + g->off, g->len);
    }
}

/* Blob bytes a record of len bytes brought, its blob starting at `at`. */
static size_t tr_bpf_blob_len(size_t len, size_t at)
{
    return len > at ? len - at : 0;
}

/*
 * Code headers read live in this batch, by code address (direct-mapped). A record's frames
 * mostly repeat the ones before it (one scatter read per record was half of pyscope's system
 * time at thousands of raises/s); a header is reused only within the batch it was read in
 * (tr_bpf_step starts a new one), a moment after the raise it checks, as a per-record read is.
 */
#define TR_BPF_HDR_SLOTS 256u
struct tr_bpf_hdr {
    uint64_t addr;
    uint32_t batch; /* t->bpf_batch when read; 0 never */
    uint8_t bytes[CODE_HEADER_MAX];
};

/* Start a batch: headers read before it are read again. */
static void tr_bpf_new_batch(struct tracer *t)
{
    if (++t->bpf_batch == 0) /* 0 marks a slot never read */
        t->bpf_batch = 1;
}

static struct tr_bpf_hdr *tr_bpf_hdr_slot(struct tracer *t, uint64_t code)
{
    return &t->bpf_hdr_cache[((code >> 4) * 0x9E3779B97F4A7C15ull >> 56) % TR_BPF_HDR_SLOTS];
}

/* The live headers of the record's code objects into hdrs (misses of this batch's cache in one
 * scatter read). < 0 as memsrc_readv (PS_EGONE: the target exited). */
static int tr_bpf_headers(struct tracer *t, const struct exc_bpf_rec *r, size_t nframes,
                          size_t hlen, uint8_t *hdrs, struct ps_err *err)
{
    struct memsrc_iov iov[EXC_BPF_MAX_FRAMES];
    size_t miss[EXC_BPF_MAX_FRAMES], n = 0;

    for (size_t i = 0; i < nframes; i++) {
        const struct tr_bpf_hdr *h = tr_bpf_hdr_slot(t, r->frames[i].code);
        if (h->addr == r->frames[i].code && h->batch == t->bpf_batch) {
            memcpy(hdrs + i * CODE_HEADER_MAX, h->bytes, hlen);
            continue;
        }
        iov[n] = (struct memsrc_iov){
            .addr = r->frames[i].code, .buf = hdrs + i * CODE_HEADER_MAX, .len = hlen};
        miss[n++] = i;
    }
    if (n > 0 && memsrc_readv(t->inner, iov, n, err) < 0)
        return err->code;
    for (size_t k = 0; k < n; k++) {
        struct tr_bpf_hdr *h = tr_bpf_hdr_slot(t, r->frames[miss[k]].code);
        h->addr = r->frames[miss[k]].code;
        h->batch = t->bpf_batch;
        memcpy(h->bytes, hdrs + miss[k] * CODE_HEADER_MAX, hlen);
    }
    return 0;
}

/* wf's code unit from the frame's instruction pointer field, checked against wf->fp (a code
 * object of that size whose bytecode holds instr); false when it does not. */
static bool tr_bpf_unit(const struct tracer *t, uint64_t instr, struct walk_frame *wf)
{
    int64_t diff = (int64_t)(instr - (wf->code_addr + (uint64_t)t->pp->lay->code_code_adaptive));

    if (wf->fp.type != t->pp->loc.syms.code_type || diff % 2 != 0 || diff < -2 ||
        diff / 2 > (int64_t)wf->fp.size)
        return false;
    wf->unit = diff / 2;
    return true;
}

/*
 * t->stack from the record's frames: code headers (tr_bpf_headers), units as walk.c. A code
 * object the live read does not show (the target exited, or freed it since the raise: a
 * finalising interpreter frees its functions) is taken from the code cache, which the CODE
 * records fill at the raise.
 */
static bool tr_bpf_stack(struct tracer *t, const struct exc_bpf_rec *r, size_t nframes)
{
    const struct layout *l = t->pp->lay;
    size_t hlen = code_header_len(l);
    uint8_t *hdrs = t->bpf_hdrs;
    struct ps_err ignored = {0};
    bool gone;

    t->stack.n = 0;
    t->stack.truncated = r->truncated != 0;
    if (nframes == 0 || hlen > CODE_HEADER_MAX)
        return false;
    /* a record read after the target exited: code objects the cache knows are trusted */
    gone = tr_bpf_headers(t, r, nframes, hlen, hdrs, &ignored) < 0;
    if (gone && ignored.code != -PS_EGONE)
        return false;
    for (size_t i = 0; i < nframes; i++) {
        struct walk_frame *wf = &t->stack.frames[i];
        memset(wf, 0, sizeof(*wf));
        wf->frame_addr = r->frames[i].frame;
        wf->code_addr = r->frames[i].code;
        if (!gone)
            code_fp_parse(l, hdrs + i * CODE_HEADER_MAX, &wf->fp);
        if ((gone || !tr_bpf_unit(t, r->frames[i].instr, wf)) &&
            (!code_cache_peek(t->pp->codes, wf->code_addr, &wf->fp) ||
             !tr_bpf_unit(t, r->frames[i].instr, wf)))
            return false; /* the code object went away since the raise, unseen */
    }
    t->stack.n = nframes;
    return true;
}

/* Keep the program's known_types within the type names held: the types the name cache dropped,
 * and the raised type when it could not be named, get their name copied again. */
static void tr_bpf_names_sync(struct tracer *t, uint64_t type)
{
    for (size_t i = 0; i < t->names.ndropped; i++)
        bpf_exc_forget_type(t->bx, t->names.dropped[i]);
    t->names.ndropped = 0;
    if (!exc_names_has(&t->names, type))
        bpf_exc_forget_type(t->bx, type);
}

static void tr_bpf_raise(struct tracer *t, const struct exc_bpf_rec *r, size_t len)
{
    size_t nframes = r->nframes < EXC_BPF_MAX_FRAMES ? r->nframes : EXC_BPF_MAX_FRAMES;
    const struct walk_tstate w = {
        .addr = r->tstate, .thread_id = r->thread_id, .native_id = (pid_t)r->tid};
    const struct exc_raw raw = {.value = r->value, .type = r->type, .traceback = r->traceback};
    struct pyctx stop;

    if (len < offsetof(struct exc_bpf_rec, blob)) {
        t->st.read_errors++;
        return;
    }
    tr_bpf_put_ranges(t, r->ranges,
                      r->nranges < EXC_BPF_MAX_RANGES ? r->nranges : EXC_BPF_MAX_RANGES, r->blob,
                      tr_bpf_blob_len(len, offsetof(struct exc_bpf_rec, blob)));
    stop = pyproc_ctx(t->pp);
    stop.src = t->memo; /* the record's bytes, then the live process (tracer_memo.c) */
    t->stack_ok = tr_bpf_stack(t, r, nframes) && t->stack.frames[0].frame_addr == r->iframe;
    t->hit_time = (double)r->time_ns / 1e9 + t->bpf_clock_shift;
    tr_new_raise(t, &stop, (pid_t)r->tid, &w, &raw);
    t->hit_time = 0;
    tr_bpf_names_sync(t, r->type);
}

/*
 * A CODE record (a code object of the next RAISE record, new to this reader, copied at the
 * raise): resolve it into the code cache from its copies (read live only where the copy falls
 * short), so that its frames resolve even when the target has exited before that RAISE record
 * is read (tr_bpf_stack then trusts the cache). Not resolved: the program is told to send it
 * again.
 */
static void tr_bpf_code(struct tracer *t, const struct exc_bpf_code_rec *c, size_t len)
{
    size_t have = tr_bpf_blob_len(len, offsetof(struct exc_bpf_code_rec, blob));
    uint32_t n = c->nranges < EXC_BPF_CODE_RANGES ? c->nranges : EXC_BPF_CODE_RANGES;
    size_t hlen = code_header_len(t->pp->lay);
    const uint8_t *hdr = NULL;
    const struct code_info *ci = NULL;
    struct ps_err ignored = {0};
    struct pyctx from = pyproc_ctx(t->pp);
    struct code_fp fp;

    if (len < offsetof(struct exc_bpf_code_rec, blob))
        return;
    tr_bpf_put_ranges(t, c->ranges, n, c->blob, have);
    for (uint32_t i = 0; i < n && !hdr; i++) { /* the header: a whole range at the code object */
        const struct exc_bpf_range *g = &c->ranges[i];
        if (g->addr == c->code && g->len >= hlen && g->off <= have && g->len <= have - g->off)
            hdr = c->blob + g->off;
    }
    from.src = t->memo; /* the record's bytes, then the live process */
    if (hdr)
        code_fp_parse(t->pp->lay, hdr, &fp);
    if (!hdr || code_cache_resolve(t->pp->codes, &from, c->code, &fp, &ci, &ignored) < 0)
        bpf_exc_forget_code(t->bx, c->code);
}

/* The code cache dropped a code object: the program sends it again when a raise shows it. */
static void tr_bpf_code_dropped(void *ctx, uint64_t addr)
{
    struct tracer *t = ctx;

    if (t->bx)
        bpf_exc_forget_code(t->bx, addr);
}

static void tr_bpf_prop(struct tracer *t, const struct exc_bpf_rec *r, size_t len)
{
    struct tr_open *o = tr_open_of(t, (pid_t)r->tid);
    uint64_t key = r->value ? r->value : r->type;
    size_t nframes = r->nframes < 2 ? r->nframes : 2;
    const struct pyctx live = pyproc_ctx(t->pp); /* a propagation record: live reads */

    if (!o || o->key != key ||
        len < offsetof(struct exc_bpf_rec, frames) + 2 * sizeof(r->frames[0]))
        return; /* its RAISE was lost or filtered: nothing to follow */
    t->stack_ok = tr_bpf_stack(t, r, nframes);
    tr_propagate(t, &live, o);
}

/* End o, whose fate its thread's exit (or the exec) hid: "unknown", never a guess. */
static void tr_bpf_end_unknown(struct tracer *t, struct tr_open *o)
{
    o->raise.exit_unknown = true;
    tr_end(t, o, true);
    o->raise.exit_unknown = false;
}

/*
 * A thread exits: the fate of the exception it was followed in, from its in-flight exception read
 * at the exit. Still that one: it was propagating when the thread died. Another or none, or a
 * thread state Python had already cleared (the thread's Python code ended): it was handled at
 * its last frame (as tr_check_ends decides while the thread runs). Unreadable: unknown.
 */
static void tr_bpf_exit(struct tracer *t, const struct exc_bpf_rec *r)
{
    struct tr_open *o = tr_open_of(t, (pid_t)r->tid);
    uint64_t now = r->value ? r->value : r->type;

    if (!o)
        return;
    if (r->truncated == EXC_BPF_EXIT_READ)
        tr_end(t, o, now == o->key);
    else if (r->truncated == EXC_BPF_EXIT_CLEARED)
        tr_end(t, o, false);
    else
        tr_bpf_end_unknown(t, o);
}

static void tr_bpf_on_rec(void *ctx, const struct exc_bpf_rec *r, size_t len)
{
    struct tracer *t = ctx;

    switch (r->kind) {
    case EXC_BPF_RAISE:
        t->st.hits++;
        tr_bpf_raise(t, r, len);
        break;
    case EXC_BPF_PROP:
        t->st.hits++;
        tr_bpf_prop(t, r, len);
        break;
    case EXC_BPF_EXIT: tr_bpf_exit(t, r); break;
    case EXC_BPF_EXEC: t->exec_seen = true; break;
    case EXC_BPF_CODE: tr_bpf_code(t, (const struct exc_bpf_code_rec *)(const void *)r, len); break;
    default: break;
    }
}

/* Every record queued now (bounded: a storm may keep filling the ring). */
static void tr_bpf_drain(struct tracer *t)
{
    for (int i = 0; i < 64; i++) {
        tr_bpf_new_batch(t);
        if (bpf_exc_poll(t->bx, TR_BPF_BATCH, tr_bpf_on_rec, t) != TR_BPF_BATCH)
            break;
        tr_deliver(t);
    }
}

/* ---- budget and exact per-site counts --------------------------------------------------- */

/* Set the sampling from the cost since the last look (see TR_BPF_BUDGET_S). */
static void tr_bpf_budget(struct tracer *t, double now)
{
    uint64_t cnt[EXC_BPF_CNT_N];
    double dt = now - t->bpf_bud_at, cost, allowed, cap, step;
    uint32_t every = t->bpf_every ? t->bpf_every : 1;

    if (t->budget < 0 || dt < TR_BPF_BUDGET_S)
        return;
    tr_budget_cpu(t, now);
    bpf_exc_counters(t->bx, cnt);
    cost = (double)(cnt[EXC_BPF_CNT_NS] - t->bpf_bud_ns) / 1e9 +
           (double)(cnt[EXC_BPF_CNT_HITS] - t->bpf_bud_hits) * t->bpf_trap_s +
           (t->bpf_own_s - t->bpf_bud_own);
    allowed = tr_budget_refill(t) * dt;
    if (t->bpf_bud_at > 0) {
        t->st.spent_s += cost;
        cap = fmax(TR_BPF_BURST_S, 2 * allowed);
        t->bpf_credit = fmax(-cap, fmin(cap, t->bpf_credit + allowed - cost));
        if (t->bpf_credit < 0 && cost > allowed) {
            step = fmin(8.0, fmax(2.0, cost / allowed));
            every = (uint32_t)fmin(TR_BPF_MAX_EVERY, ceil(every * step));
        } else if (t->bpf_credit >= 0 && cost < allowed / 2 && every > 1) {
            step = cost > 0 ? fmin(8.0, fmax(2.0, allowed / (2 * cost))) : 8.0;
            every = (uint32_t)fmax(1.0, floor(every / step));
        }
    }
    if (every != (t->bpf_every ? t->bpf_every : 1))
        bpf_exc_set_sampling(t->bx, every);
    t->bpf_every = every;
    t->bpf_bud_at = now;
    t->bpf_bud_ns = cnt[EXC_BPF_CNT_NS];
    t->bpf_bud_hits = cnt[EXC_BPF_CNT_HITS];
    t->bpf_bud_own = t->bpf_own_s;
}

/* The type name of a type object: the describer's (read live), else its cache (target gone). */
static bool tr_bpf_type_name(struct tracer *t, uint64_t type, char *out, size_t cap)
{
    const struct pyctx live = pyproc_ctx(t->pp);
    const struct exc_raw raw = {.type = type};
    struct ps_err ignored = {0};
    struct exc_desc d;

    if (exc_describe_cached(&live, &raw, &t->names, &d, &ignored) == 0) {
        (void)snprintf(out, cap, "%s", d.type);
        return true;
    }
    for (size_t i = 0; i < EXC_NAME_SLOTS; i++)
        if (t->names.slot[i].type == type) {
            (void)snprintf(out, cap, "%s", t->names.slot[i].name);
            return true;
        }
    return false;
}

void tr_bpf_sites(struct tracer *t)
{
    const struct pyctx live = pyproc_ctx(t->pp);
    struct exc_bpf_site *keys;
    uint64_t *counts;
    struct exc_bpf_rec *r;
    size_t n;

    if (!t->bx)
        return; /* stopped: the last sync (tr_bpf_stop's) stands */
    keys = malloc(TR_BPF_SITES_MAX * sizeof(*keys));
    counts = malloc(TR_BPF_SITES_MAX * sizeof(*counts));
    r = calloc(1, sizeof(*r));
    n = keys && counts && r ? bpf_exc_sites(t->bx, keys, counts, TR_BPF_SITES_MAX) : 0;
    t->bpf_sync_gen++;
    for (size_t i = 0; i < n; i++) {
        char type[TRACER_TYPE_MAX];
        struct tracer_frame at = {.line = -1};
        r->nframes = 1;
        r->frames[0] = (struct exc_bpf_frame){.code = keys[i].code, .instr = keys[i].instr};
        if (!tr_bpf_type_name(t, keys[i].type, type, sizeof(type)) || !tr_bpf_stack(t, r, 1))
            continue; /* left to the records' own count */
        tr_frame_of(&live, &t->stack.frames[0], &at);
        tr_site_add_exact(t, type, &at, counts[i], t->bpf_sync_gen);
    }
    free(keys);
    free(counts);
    free(r);
}

/* ---- threads ------------------------------------------------------------------------------ */

/* Give the program every thread state (tid -> tstate): it needs no fallback for those. */
static void tr_bpf_tell_tstates(struct tracer *t)
{
    const struct pyctx live = pyproc_ctx(t->pp);
    struct ps_err ignored = {0};

    if (walk_tstates(&live, t->ts, WALK_MAX_THREADS, &t->nts, NULL, NULL, &ignored) < 0)
        t->nts = 0;
    for (size_t i = 0; i < t->nts; i++)
        bpf_exc_set_tstate(t->bx, t->ts[i].native_id, t->ts[i].addr);
}

static int tr_bpf_tid_cmp(const void *a, const void *b)
{
    pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;

    return (x > y) - (x < y);
}

/* End the open exceptions of threads that exited; 1 when the target is gone (no thread, or
 * only its leader, a zombie: a process that exited and awaits its parent's wait). */
static int tr_bpf_sync(struct tracer *t)
{
    struct ps_err ignored = {0};
    size_t n = 0;
    char state = 0;

    if (procstat_tids(t->pp->pid, t->tids, TARGET_MAX_THREADS, &n, &ignored) < 0) {
        if (ignored.code != -ESRCH)
            return 0;
        n = 0;
    }
    /* a thread's EXIT record precedes its leaving /proc: read what is queued first */
    for (size_t i = 0; i < TR_MAX_OPEN; i++)
        if (t->open[i].tid &&
            !bsearch(&t->open[i].tid, t->tids, n, sizeof(*t->tids), tr_bpf_tid_cmp)) {
            tr_bpf_drain(t);
            break;
        }
    for (size_t i = 0; i < TR_MAX_OPEN; i++)
        if (t->open[i].tid &&
            !bsearch(&t->open[i].tid, t->tids, n, sizeof(*t->tids), tr_bpf_tid_cmp)) {
            if (bpf_exc_sees_exits(t->bx))
                tr_bpf_end_unknown(t, &t->open[i]); /* its EXIT record was lost */
            else
                tr_end(t, &t->open[i], false);
        }
    if (n == 1 && (procstat_state(t->pp->pid, t->pp->pid, &state, &ignored) < 0 || state == 'Z' ||
                   state == 'X'))
        return 1;
    return n == 0;
}

/* ---- the mechanism ------------------------------------------------------------------------- */

/* The program stamps records with CLOCK_MONOTONIC; events carry CLOCK_REALTIME. */
static void tr_bpf_clock(struct tracer *t)
{
    t->bpf_clock_shift = evloop_wall() - evloop_now(); /* the kernel's clock: real */
}

int tr_bpf_start(struct tracer *t, struct ps_err *err)
{
    struct ps_err why = {0};
    bool forced = t->opts.force_mech == TRACER_MECH_BPF;
    int rc;

    if (t->opts.force_mech && !forced)
        return 0;
    /* The program matches thread states by the kernel's (our namespace's) thread id, while a
     * target in a deeper pid namespace stores its own: no raise would ever match. */
    if (t->pp->tids.other_pidns) {
        (void)snprintf(t->mech_note, sizeof(t->mech_note),
                       "bpf: the target is in another pid namespace, whose thread ids the "
                       "kernel-side reader cannot match yet; using breakpoints");
        if (forced)
            return ps_err_set(err, -ENOTSUP, "%s", t->mech_note);
        return 0;
    }
    rc = bpf_exc_open(t->pp, t->addr, t->opts.type_filter, &t->bx, &why);
    if (rc < 0) {
        t->bx = NULL;
        if (forced) {
            *err = why;
            return rc;
        }
        (void)snprintf(t->mech_note, sizeof(t->mech_note), "%.255s", why.msg);
        return 0;
    }
    t->bpf_hdrs = malloc((size_t)EXC_BPF_MAX_FRAMES * CODE_HEADER_MAX);
    t->bpf_hdr_cache = calloc(TR_BPF_HDR_SLOTS, sizeof(*t->bpf_hdr_cache));
    t->bpf_batch = 1;
    t->chld_fd = dup(bpf_exc_fd(t->bx)); /* what tracer_run and the TUI poll */
    if (!t->bpf_hdrs || !t->bpf_hdr_cache || t->chld_fd < 0)
        return ps_err_set(err, -ENOMEM, "out of memory for the bpf exception reader");
    if (t->opts.max_rate == 0)
        tracer_bucket_init(&t->bucket, -1.0, 0, tr_now(t)); /* unlimited: no stop to budget */
    t->bpf_credit = TR_BPF_BURST_S;
    t->bpf_trap_s = bpf_exc_trap_cost_s(t->bx);
    if (t->bpf_trap_s <= 0)
        t->bpf_trap_s = TR_BPF_TRAP_S; /* unmeasured: issue 15's figure */
    tr_bpf_tell_tstates(t);
    code_cache_on_drop(t->pp->codes, tr_bpf_code_dropped, t);
    tr_bpf_budget(t, tr_now(t)); /* the first look: the first decision TR_BPF_BUDGET_S on */
    return 1;
}

int tr_bpf_step(struct tracer *t, struct ps_err *err)
{
    double now = tr_now(t), cpu = evloop_thread_cpu();
    int rc;

    (void)err;
    if (t->stopped)
        return 1;
    tr_bpf_clock(t);
    tr_bpf_new_batch(t);
    rc = bpf_exc_poll(t->bx, TR_BPF_BATCH, tr_bpf_on_rec, t);
    if (t->exec_seen) { /* the probe watched the old image: the trace is over */
        t->exited = true;
        tr_deliver(t);
        return 1;
    }
    if (now - t->last_sync >= TR_BPF_SYNC_S) {
        t->last_sync = now;
        if (tr_bpf_sync(t)) {
            t->exited = true;
            tr_deliver(t);
            return 1;
        }
    }
    if (now - t->last_end_check >= 0.01) {
        t->last_end_check = now;
        tr_check_ends(t, false);
    }
    tr_deliver(t);
    t->bpf_own_s += evloop_thread_cpu() - cpu; /* records, events, output: the budget's */
    tr_bpf_budget(t, now);
    return rc < 0 ? rc : 0;
}

/* The program's counters, summed over CPUs, into the tracer's last-read copies. */
static void tr_bpf_read_counters(struct tracer *t)
{
    uint64_t cnt[EXC_BPF_CNT_N] = {0};

    bpf_exc_counters(t->bx, cnt);
    t->bpf_cnt_lost = cnt[EXC_BPF_CNT_LOST_RAISES];
    t->bpf_cnt_hits = cnt[EXC_BPF_CNT_HITS];
    t->bpf_cnt_filtered = cnt[EXC_BPF_CNT_FILTERED_RAISES];
    t->bpf_cnt_in_flight = cnt[EXC_BPF_CNT_IN_FLIGHT];
    t->bpf_cnt_sampled = cnt[EXC_BPF_CNT_SAMPLED_OUT];
    t->bpf_cnt_ns = cnt[EXC_BPF_CNT_NS];
    t->bpf_cnt_unread = cnt[EXC_BPF_CNT_NO_TSTATE] + cnt[EXC_BPF_CNT_READ_ERRORS];
}

int tr_bpf_stop(struct tracer *t)
{
    t->stopping = true;
    tr_bpf_clock(t);
    /* no raise counted after this: the records drained, the counters and the per-site counts
     * below then agree (the summary's exact counts = reported + not reported) */
    bpf_exc_detach(t->bx);
    tr_bpf_drain(t); /* what was queued before the end */
    tr_bpf_read_counters(t);
    tr_bpf_sites(t); /* the last exact counts, while the maps exist */
    code_cache_on_drop(t->pp->codes, NULL, NULL);
    bpf_exc_close(t->bx); /* the kernel removes the uprobe */
    t->bx = NULL;
    if (!t->exited)
        tr_check_ends(t, false); /* first read: a second one below ends what is gone */
    for (size_t i = 0; i < TR_MAX_OPEN; i++) {
        if (!t->open[i].tid)
            continue;
        if (t->exited) /* no EXIT record for it (lost, or an exec): not a guess */
            tr_bpf_end_unknown(t, &t->open[i]);
        else
            tr_end(t, &t->open[i], !t->open[i].gone_once);
    }
    t->stopped = true;
    tr_deliver(t);
    return 0;
}

void tr_bpf_stats(struct tracer *t, struct tracer_stats *out)
{
    if (t->bx)
        tr_bpf_read_counters(t);
    out->in_flight_at_start = t->bpf_cnt_in_flight;
    out->hits = t->bpf_cnt_hits; /* every hit, counted in the kernel */
    out->counted_total = t->bpf_cnt_hits;
    out->counting = true;
    out->unseen_hits = 0;
    out->unseen_raises_est = 0;
    out->ring_lost = t->bpf_cnt_lost;
    out->read_errors += t->bpf_cnt_unread; /* the kernel's, beside the records user space failed */
    out->not_reported += t->bpf_cnt_lost + t->bpf_cnt_sampled;
    out->raises += t->bpf_cnt_lost + t->bpf_cnt_filtered + t->bpf_cnt_sampled;
    out->filtered += t->bpf_cnt_filtered;
    out->armed = t->bx != NULL;
    out->threads_armed = 0;
    out->count_cost_us = t->bpf_cnt_hits ? (double)t->bpf_cnt_ns / (double)t->bpf_cnt_hits / 1e3 +
                                               t->bpf_trap_s * 1e6
                                         : -1.0;
    out->own_cpu_s = t->bpf_own_s;
    out->budget = t->budget;
    out->sampled_every = t->bpf_every ? t->bpf_every : 1;
}
