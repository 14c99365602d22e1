/* SPDX-License-Identifier: MIT */
/*
 * tracer: exception events from a hardware breakpoint on PyTraceBack_Here (see tracer.h).
 * Data flow: target.c (ptrace stops, via its event hooks) -> tr_claim at each hit, while the
 * hitting thread is stopped: registers (rdi = PyFrameObject*), tstate, in-flight exception
 * (exc.c), stack (walk.c + code cache) -> events in a fixed ring. bkpt.c owns the breakpoints.
 *
 * The tracer is four files sharing struct tracer (tracer_int.h), one concern each: this one
 * (events and their ring, the reads at a stop, target hooks, open exceptions and threads,
 * tracer_new/step/events/stats/free); tracer_rate.c (token bucket, arming and disarming,
 * counting hits while disarmed, how long the loop may wait); tracer_stop.c (the exit paths:
 * tracer_stop and the blocking loop tracer_run); tracer_memo.c (the per-stop memo source).
 *
 * New raise vs propagation (CPYTHON.md 5.2): new when the exception's traceback is NULL at entry
 * (3.12+: exc->traceback; 3.11: curexc_traceback), or the exception is not the thread's open
 * one, or the hit frame is not the caller of the open exception's last frame. A bare `raise`
 * in the catching frame therefore continues the same exception (its next hit is in the caller).
 *
 * Invariants: the target is stopped only by breakpoint hits, each resumed by target.c as soon as
 * the hook returns; every exit (tracer_stop, tracer_stop.c) clears the breakpoints, then stops
 * every thread, drains the breakpoint SIGTRAPs still on their way, then detaches. Memory is allocated at
 * tracer_new only (ring, open-exception slots, thread tables): flat for hours.
 */
#include "pyscope/evloop.h"
#include "pyscope/tracer.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <time.h>
#include <unistd.h>

#include "pyscope/bkpt.h"
#include "pyscope/bpf_exc.h"
#include "pyscope/exc.h"
#include "pyscope/linetab.h"
#include "pyscope/target.h"
#include "pyscope/tfile.h"
#include "pyscope/walk.h"
#include "tracer_int.h"

#define TR_END_CHECK_S 0.01 /* least time between two reads of the open exceptions */
#define TR_SYNC_S      0.1  /* least time between two thread-list reconciliations */

/* ---- time, events --------------------------------------------------------------------------- */

double tr_now(const struct tracer *t)
{
    return evloop_clock_read(t->opts.clock);
}

static void tr_copy(char *dst, size_t cap, const char *src, bool keep_tail)
{
    size_t n = src ? strlen(src) : 0;

    if (keep_tail && n >= cap)
        src += n - (cap - 1);
    (void)snprintf(dst, cap, "%s", src ? src : "");
}

static void tr_count_type(struct tracer *t, const char *type)
{
    size_t i;

    for (i = 0; i < t->st.ntypes; i++)
        if (strcmp(t->st.types[i].type, type) == 0)
            break;
    if (i == t->st.ntypes && i == TRACER_MAX_TYPES)
        i = TRACER_MAX_TYPES - 1; /* the last slot becomes "other" */
    if (i == t->st.ntypes) {
        tr_copy(t->st.types[i].type, sizeof(t->st.types[i].type), type, false);
        t->st.ntypes++;
    } else if (i == TRACER_MAX_TYPES - 1 && strcmp(t->st.types[i].type, type) != 0) {
        tr_copy(t->st.types[i].type, sizeof(t->st.types[i].type), "other", false);
    }
    t->st.types[i].count++;
}

/* Copy an event's used part: frames past nframes are left as they were (an event is 6 KiB,
 * most use a few hundred bytes, and this runs while the target is stopped). */
static void tr_event_copy(struct tracer_event *dst, const struct tracer_event *src)
{
    size_t n = src->nframes < TRACER_MAX_FRAMES ? src->nframes : TRACER_MAX_FRAMES;

    memcpy(dst, src, offsetof(struct tracer_event, frames) + n * sizeof(src->frames[0]));
}

static void tr_emit(struct tracer *t, struct tracer_event *ev)
{
    ev->seq = ++t->seq;
    if (ev->kind == TRACER_EV_RAISE)
        ev->raise_seq = ev->seq;
    if (t->ring_n >= TRACER_RING_CAP)
        t->st.ring_overwritten++;
    tr_event_copy(&t->ring[t->ring_n % TRACER_RING_CAP], ev);
    t->ring_n++;
}

void tr_deliver(struct tracer *t)
{
    size_t first = t->ring_n > TRACER_RING_CAP ? t->ring_n - TRACER_RING_CAP : 0;

    if (t->delivered < first)
        t->delivered = first; /* overwritten before delivery: counted in ring_overwritten */
    if (!t->opts.on_event)
        return;
    for (; t->delivered < t->ring_n; t->delivered++)
        t->opts.on_event(t->opts.ctx, &t->ring[t->delivered % TRACER_RING_CAP]);
    /* the flush point even with nothing new: output a full pipe refused before (a reader
     * slower than us) is written now, not at the next raise, which a quiet target may never
     * make (the round's last records waited for the stop) */
    t->opts.on_event(t->opts.ctx, NULL);
}

void tr_end(struct tracer *t, struct tr_open *o, bool propagating)
{
    if (o->reported) {
        struct tracer_event *ev = &o->raise;
        ev->kind = TRACER_EV_END;
        ev->time = evloop_wall();
        ev->propagating = propagating;
        ev->fate_unknown = o->blind;
        ev->handled_at = o->last;
        tr_emit(t, ev);
    }
    o->tid = 0;
}

static bool tr_type_wanted(const struct tracer *t, const char *type)
{
    const char *f = t->opts.type_filter, *dot;

    if (!f || !*f)
        return true;
    dot = strrchr(type, '.');
    return strcmp(type, f) == 0 || (dot && strcmp(dot + 1, f) == 0);
}

/* ---- reading at a stop ---------------------------------------------------------------------- */

struct tr_open *tr_open_of(struct tracer *t, pid_t tid)
{
    for (size_t i = 0; i < TR_MAX_OPEN; i++)
        if (t->open[i].tid == tid)
            return &t->open[i];
    return NULL;
}

static const struct walk_tstate *tr_find_ts(const struct tracer *t, pid_t tid)
{
    for (size_t i = 0; i < t->nts; i++)
        if (t->ts[i].native_id == tid)
            return &t->ts[i];
    return NULL;
}

/* The thread state of tid, re-listing thread states once on a miss. */
static const struct walk_tstate *tr_tstate(struct tracer *t, pid_t tid)
{
    const struct walk_tstate *w = tr_find_ts(t, tid);
    const struct pyctx live = pyproc_ctx(t->pp);
    struct ps_err ignored = {0};

    if (w)
        return w;
    if (walk_tstates(&live, t->ts, WALK_MAX_THREADS, &t->nts, NULL, NULL, &ignored) < 0)
        t->nts = 0;
    return tr_find_ts(t, tid);
}

/* Identity of an in-flight exception: the object, or 3.11's unnormalised type. */
static uint64_t tr_key(const struct exc_raw *r)
{
    return r->value ? r->value : r->type;
}

void tr_frame_of(const struct pyctx *c, const struct walk_frame *wf, struct tracer_frame *out)
{
    const struct code_info *ci = NULL;
    struct ps_err ignored = {0};

    out->line = -1;
    if (code_cache_resolve(c->codes, c, wf->code_addr, &wf->fp, &ci, &ignored) < 0) {
        tr_copy(out->function, sizeof(out->function), "?", false);
        tr_copy(out->file, sizeof(out->file), "?", false);
        return;
    }
    tr_copy(out->function, sizeof(out->function), ci->name, false);
    tr_copy(out->file, sizeof(out->file), ci->filename, true);
    out->line = linetab_lookup(&ci->lines, ci->firstlineno, wf->unit).line;
}

static void tr_fill_raise(struct tracer *t, const struct pyctx *c, struct tracer_event *ev,
                          bool have_stack)
{
    size_t n = have_stack ? t->stack.n : 0;

    ev->nframes = n < TRACER_MAX_FRAMES ? n : TRACER_MAX_FRAMES;
    ev->frames_truncated = n > TRACER_MAX_FRAMES || (have_stack && t->stack.truncated);
    for (size_t i = 0; i < ev->nframes; i++)
        tr_frame_of(c, &t->stack.frames[i], &ev->frames[i]);
}

/* Describe the exception into ev (type, message, chain). */
static int tr_describe(struct tracer *t, const struct pyctx *stop, const struct exc_raw *raw,
                       struct tracer_event *ev)
{
    struct ps_err ignored = {0};
    struct exc_desc d;

    /* bpf: the record's copies are already in the memo, taken at the raise (a prefetch would
     * re-read, live, what they hold in other lengths: two syscalls per record) */
    if (!t->used_bpf)
        tr_prefetch_desc(t->memo, stop, raw->value, raw->type);
    if (exc_describe_cached(stop, raw, &t->names, &d, &ignored) < 0)
        return -1;
    tr_copy(ev->type, sizeof(ev->type), d.type, false);
    tr_copy(ev->message, sizeof(ev->message), d.message, false);
    ev->has_message = d.has_message;
    ev->message_truncated = d.message_truncated;
    tr_copy(ev->cause_type, sizeof(ev->cause_type), d.cause_type, false);
    tr_copy(ev->context_type, sizeof(ev->context_type), d.context_type, false);
    return 0;
}

/* A free open slot for tid (ending the oldest-found one when all are taken is not attempted:
 * with TR_MAX_OPEN threads mid-exception, the newcomer is simply not followed). */
static struct tr_open *tr_open_new(struct tracer *t, pid_t tid)
{
    struct tr_open *o = tr_open_of(t, tid);

    if (o)
        tr_end(t, o, false);
    return tr_open_of(t, 0);
}

/* Start following an exception in slot o (its RAISE event is filled in place, not zeroed:
 * an event is 6 KiB and this runs while the target is stopped). */
static void tr_open_init(struct tr_open *o, pid_t tid, uint64_t tstate, uint64_t key)
{
    o->tid = tid;
    o->tstate = tstate;
    o->key = key;
    o->expect_next = 0;
    o->last = (struct tracer_frame){.line = -1};
    o->gone_once = false;
    o->blind = false;
    o->reported = false;
}

/* A new raise at a stop: emit its RAISE when wanted and allowed. */
void tr_new_raise(struct tracer *t, const struct pyctx *stop, pid_t tid,
                  const struct walk_tstate *w, const struct exc_raw *raw)
{
    struct tr_open *o = tr_open_new(t, tid);
    struct tracer_event *ev = o ? &o->raise : &t->evtmp;
    bool have_stack = t->stack_ok, fresh;
    struct tracer_frame at = {.line = -1};
    struct tr_site *site;

    t->st.raises++;
    if (o)
        tr_open_init(o, tid, w->addr, tr_key(raw));
    memset(ev, 0, offsetof(struct tracer_event, frames));
    ev->kind = TRACER_EV_RAISE;
    ev->time = t->hit_time > 0 ? t->hit_time : evloop_wall();
    ev->native_id = tid;
    ev->pid = t->pp->pid;
    ev->thread_id = w->thread_id;
    ev->reraise = raw->traceback != 0;
    if (tr_describe(t, stop, raw, ev) < 0) {
        t->st.read_errors++;
        tr_copy(ev->type, sizeof(ev->type), "?", false);
    }
    if (have_stack)
        tr_frame_of(stop, &t->stack.frames[0], &at);
    if (o) {
        o->expect_next = have_stack && t->stack.n > 1 ? t->stack.frames[1].frame_addr : 0;
        o->last = at;
    }
    fresh = tr_site_seen(t, ev->type, have_stack ? &at : NULL, t->hit_pinned, &site);
    if (!tr_type_wanted(t, ev->type)) {
        t->st.filtered++;
        return;
    }
    /* A site never reported goes first: it is reported whatever the bucket holds. */
    if (!tracer_bucket_take(&t->bucket, tr_now(t)) && !fresh) {
        t->st.not_reported++;
        t->want_disarm = true; /* by tracer_step, once this thread runs again */
        return;
    }
    if (!have_stack)
        t->st.read_errors++;
    tr_fill_raise(t, stop, ev, have_stack);
    tr_count_type(t, ev->type);
    tr_site_reported(site);
    t->st.reported++;
    tr_emit(t, ev);
    if (o) {
        o->reported = true;
    } else { /* not followed (TR_MAX_OPEN threads mid-exception): its end is unknown */
        ev->kind = TRACER_EV_END;
        ev->propagating = true;
        ev->fate_unknown = true;
        tr_emit(t, ev);
    }
}

/* A propagation hit: the open exception crossed one more frame. */
void tr_propagate(struct tracer *t, const struct pyctx *c, struct tr_open *o)
{
    o->gone_once = false;
    if (!t->stack_ok) {
        t->st.read_errors++;
        o->expect_next = 0;
        return;
    }
    tr_frame_of(c, &t->stack.frames[0], &o->last);
    o->expect_next = t->stack.n > 1 ? t->stack.frames[1].frame_addr : 0;
}

/* Begin (on) or end tid's stop in the memo; the stop's readers get the memo as their source
 * through tr_hit_read's context, pp is never changed. */
static void tr_memo_use(struct tracer *t, pid_t tid, bool on)
{
    if (on)
        tr_memo_begin(t->memo, tid);
    else
        tr_memo_end(t->memo, tid);
}

/*
 * The reads of one stop, through the memo: the walk first (its one scatter read keeps the
 * thread state, so the exception pointer comes free), then the exception object with the hit
 * frame's f_frame in one read; a new raise adds two levels (tr_describe).
 */
static void tr_hit_read(struct tracer *t, pid_t tid, const struct walk_tstate *w, uint64_t frameobj)
{
    struct pyctx stop_ctx = pyproc_ctx(t->pp);
    const struct pyctx *stop = &stop_ctx;
    struct ps_err ignored = {0};
    bool walked;
    uint64_t iframe = 0;
    struct exc_raw raw;
    struct tr_open *o;

    stop_ctx.src = t->memo; /* this stop's reads: a copy with the memo, never a swap of pp's */
    walked = walk_stack(stop, w->addr, &t->stack, &ignored) == 0 && t->stack.n > 0;
    tr_prefetch_exc(t->memo, stop, w->addr, frameobj);
    if (memsrc_read_u64(stop->src, frameobj + (uint64_t)stop->lay->frameobj_f_frame, &iframe,
                        &ignored) < 0 ||
        exc_in_flight(stop, w->addr, &raw, &ignored) < 0 || (raw.value == 0 && raw.type == 0)) {
        t->st.read_errors++;
        return;
    }
    t->stack_ok = walked && t->stack.frames[0].frame_addr == iframe;
    o = tr_open_of(t, tid);
    if (o && raw.traceback != 0 && tr_key(&raw) == o->key && iframe == o->expect_next)
        tr_propagate(t, stop, o);
    else
        tr_new_raise(t, stop, tid, w, &raw);
}

/* One breakpoint hit of tid (stopped at PyTraceBack_Here's entry). */
static void tr_hit(struct tracer *t, pid_t tid)
{
    struct user_regs_struct regs;
    const struct walk_tstate *w;
    double now = tr_now(t);

    t->st.hits++;
    tr_spin_note_hit(t, now);
    if (syscall(SYS_ptrace, (long)PTRACE_GETREGS, (long)tid, 0L, (long)&regs) != 0 ||
        (regs.rip != t->addr && regs.rip != t->addr + 1) || regs.rdi == 0 ||
        !(w = tr_tstate(t, tid))) {
        t->st.read_errors++;
        return;
    }
    t->hit_pinned = bkpt_mechanism(t->bp) == BKPT_PERF && bkpt_pinned(t->bp, tid);
    tr_memo_use(t, tid, true);
    tr_hit_read(t, tid, w, regs.rdi);
    tr_memo_use(t, tid, false);
    (void)tr_budget_stop(t, tid, tr_now(t) - now);
}

/* ---- target hooks --------------------------------------------------------------------------- */

static bool tr_claim(void *ctx, pid_t tid, const siginfo_t *si)
{
    struct tracer *t = ctx;

    if (!bkpt_is_hit(t->bp, tid, si))
        return false;
    if (!t->stopping)
        tr_hit(t, tid);
    return true;
}

/* A thread the target created. During tr_attach's seize rounds there is no breakpoint yet
 * (t->bp NULL): the thread is seized, and armed with the others once the breakpoint exists. */
static void tr_new_thread(void *ctx, pid_t tid)
{
    struct tracer *t = ctx;
    struct ps_err ignored = {0};

    if (!t->stopping && t->bp && bkpt_add_thread(t->bp, tid, &ignored) == 0) {
        t->st.threads_armed++;
        tr_budget_thread(t, tid);
    }
}

bool tr_is_trap(void *ctx, pid_t tid, const siginfo_t *si)
{
    const struct tracer *t = ctx;

    return t->bp && bkpt_is_hit(t->bp, tid, si);
}

static void tr_disarm_signal_safe(void *ctx, pid_t tid)
{
    const struct tracer *t = ctx;

    if (t->bp)
        bkpt_disarm_signal_safe(t->bp, tid);
}

static void tr_exec(void *ctx, pid_t tid)
{
    struct tracer *t = ctx;

    (void)tid;
    t->exec_seen = true;
}

/* ---- open exceptions and threads, between hits ------------------------------------------- */
void tr_check_ends(struct tracer *t, bool stopped)
{
    const struct pyctx live = pyproc_ctx(t->pp);
    struct ps_err ignored = {0};
    struct exc_raw raw;

    for (size_t i = 0; i < TR_MAX_OPEN; i++) {
        struct tr_open *o = &t->open[i];
        if (!o->tid)
            continue;
        if (exc_in_flight(&live, o->tstate, &raw, &ignored) == 0 && tr_key(&raw) == o->key) {
            o->gone_once = false;
            continue;
        }
        if (o->gone_once || stopped)
            tr_end(t, o, false);
        else
            o->gone_once = true;
    }
}

static int tr_tid_cmp(const void *a, const void *b)
{
    pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;

    return (x > y) - (x < y);
}

/* Forget threads that exited: their breakpoints, their open exceptions. */
static size_t tr_sync_threads(struct tracer *t)
{
    size_t n = target_tids(t->tids, TARGET_MAX_THREADS);

    qsort(t->tids, n, sizeof(*t->tids), tr_tid_cmp);
    bkpt_sync(t->bp, t->tids, n);
    for (size_t i = 0; i < TR_MAX_OPEN; i++)
        if (t->open[i].tid && !bsearch(&t->open[i].tid, t->tids, n, sizeof(*t->tids), tr_tid_cmp))
            tr_end(t, &t->open[i], false);
    return n;
}

/* ---- public ------------------------------------------------------------------------------ */

static int tr_alloc(struct tracer *t, struct ps_err *err)
{
    t->ring = calloc(TRACER_RING_CAP, sizeof(*t->ring));
    t->open = calloc(TR_MAX_OPEN, sizeof(*t->open));
    t->ts = calloc(WALK_MAX_THREADS, sizeof(*t->ts));
    t->tids = calloc(TARGET_MAX_THREADS, sizeof(*t->tids));
    t->thr = calloc(TR_MAX_THR, sizeof(*t->thr));
    t->sites = calloc(TRACER_MAX_SITES, sizeof(*t->sites));
    if (!t->ring || !t->open || !t->ts || !t->tids || !t->thr || !t->sites)
        return ps_err_set(err, -ENOMEM, "out of memory for the exception tracer");
    if (tr_memo_new(t->inner, &t->memo, err) < 0)
        return err->code;
    return walk_stack_init(&t->stack, err);
}

/* Seize, arm every thread, resume. On failure nothing stays seized or armed. */
static int tr_attach(struct tracer *t, struct ps_err *err)
{
    const struct target_hooks hooks = {.ctx = t,
                                       .claim_sigtrap = tr_claim,
                                       .new_thread = tr_new_thread,
                                       .exec = tr_exec,
                                       .disarm_signal_safe = tr_disarm_signal_safe,
                                       .is_trap = tr_is_trap,
                                       .trap_addr = t->addr};
    enum bkpt_mech want = t->opts.force_mech == TRACER_MECH_PERF       ? BKPT_PERF
                          : t->opts.force_mech == TRACER_MECH_DEBUGREG ? BKPT_DEBUGREG
                                                                       : 0;
    size_t n = 0;
    int rc = target_set_hooks(&hooks, err);

    if (rc == 0)
        rc = target_seize_all(t->pp->pid, &n, err);
    if (rc < 0)
        return rc;
    rc = bkpt_new(t->pp->pid, t->pp->pid, t->addr, want, &t->bp, err);
    if (rc == 0)
        rc = bkpt_arm(t->bp, true, err);
    if (rc == 0 && bkpt_mechanism(t->bp) == BKPT_PERF) {
        bkpt_count_enable(t->bp, true); /* every event opened below counts from its start */
        t->cnt_on = true;
        t->armed_at = t->cnt_on_at = tr_now(t);
    }
    n = target_tids(t->tids, TARGET_MAX_THREADS);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = bkpt_add_thread(t->bp, t->tids[i], err);
        if (rc == -ESRCH)
            rc = 0; /* exited meanwhile */
        else if (rc == 0)
            tr_budget_thread(t, t->tids[i]);
        t->st.threads_armed += rc == 0;
    }
    if (rc == 0)
        rc = target_resume_all(err);
    if (rc == 0)
        return 0;
    t->stopping = true;
    if (t->bp && bkpt_clear(t->bp, err) < 0)
        ps_err_prefix(err, "while giving up: ");
    if (target_detach_all(err) < 0)
        ps_err_prefix(err, "while giving up: ");
    t->stopped = true;
    return rc;
}

/*
 * bkpt_check_entry, except that an int3 in memory (a uprobe's: a process forked from one
 * traced with bpf inherits the patched page, until its first hit there makes the kernel take
 * it out) sends the check to the bytes the mapped file holds there (/proc/PID/map_files, else
 * /proc/PID/root + the mapped path; regular files only, never blocking: tfile_open_regular).
 */
static int tr_check_entry(const struct pyproc *pp, uint64_t addr, struct ps_err *err)
{
    const struct maps_entry *e = maps_find(&pp->maps, addr);
    uint8_t code[BKPT_ENTRY_BYTES];
    char path[MAPS_PATH_MAX + 64];
    struct ps_err ignored = {0};
    int rc = memsrc_read(pp->src, addr, code, sizeof(code), err), fd;

    if (rc < 0)
        return rc;
    if (code[0] != 0xcc || !e || !e->path || e->path[0] != '/')
        return bkpt_check_code(code, addr, err);
    (void)snprintf(path, sizeof(path), "/proc/%d/map_files/%" PRIx64 "-%" PRIx64, (int)pp->pid,
                   e->start, e->end);
    fd = tfile_open_regular(path, "the mapped file", &ignored);
    if (fd < 0) {
        (void)snprintf(path, sizeof(path), "/proc/%d/root%s", (int)pp->pid, e->path);
        fd = tfile_open_regular(path, "the mapped file", &ignored);
    }
    if (fd >= 0) {
        if (pread(fd, code, sizeof(code), (off_t)(addr - e->start + e->offset)) !=
            (ssize_t)sizeof(code))
            code[0] = 0xcc;
        (void)close(fd);
    }
    return bkpt_check_code(code, addr, err);
}

/* Breakpoints trace this target: say so in the mechanism's note when they cannot fire here
 * (bkpt_fires), since the trace then sees no raise at all and would look like a quiet target. */
static void tr_note_dead_breakpoints(struct tracer *t)
{
    size_t len = strlen(t->mech_note);

    if (bkpt_fires() != 0)
        return;
    (void)snprintf(t->mech_note + len, sizeof(t->mech_note) - len,
                   "%shardware breakpoints do not fire on this machine (a test breakpoint on "
                   "pyscope's own code counted no hit; some VMs keep debug exceptions from their "
                   "guests): no raise will be seen; --mechanism bpf (root) does not use them",
                   len ? "; " : "");
}

int tracer_new(struct pyproc *pp, const struct tracer_opts *opts, struct tracer **out,
               struct ps_err *err)
{
    struct tracer *t = calloc(1, sizeof(*t));
    int rc;

    if (!t)
        return ps_err_set(err, -ENOMEM, "out of memory for the exception tracer");
    t->pp = pp;
    t->inner = pp->src;
    t->opts = *opts;
    t->chld_fd = -1;
    t->addr = pp->loc.syms.traceback_here;
    tr_rate_init(t);
    rc = tr_alloc(t, err);
    if (rc == 0 && t->addr == 0)
        rc = ps_err_set(err, -PS_ENOTPYTHON,
                        "PyTraceBack_Here is not exported by %s: cannot trace exceptions",
                        pp->loc.image);
    if (rc == 0)
        rc = tr_check_entry(pp, t->addr, err);
    if (rc == 0)
        rc = tr_bpf_start(t, err); /* 1: the bpf mechanism runs */
    t->used_bpf = rc == 1;
    if (rc == 0)
        tr_note_dead_breakpoints(t);
    if (rc == 0) {
        t->chld_fd = evloop_signal_fd(EVLOOP_SIG_CHLD, &t->chld_held, err);
        rc = t->chld_fd < 0 ? t->chld_fd : 0;
    }
    if (rc == 0)
        rc = tr_attach(t, err);
    rc = rc == 1 ? 0 : rc;
    if (rc < 0) {
        t->stopped = true;
        tracer_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

const char *tracer_mechanism(const struct tracer *t)
{
    if (t->used_bpf)
        return "bpf";
    return bkpt_mechanism(t->bp) == BKPT_PERF ? "perf" : "debugreg";
}

const char *tracer_mechanism_note(const struct tracer *t)
{
    return t->mech_note;
}

int tracer_fd(const struct tracer *t)
{
    return t->chld_fd;
}

static void tr_drain_fd(int fd)
{
    struct signalfd_siginfo si[8];

    while (read(fd, si, sizeof(si)) > 0)
        ;
}

int tracer_step(struct tracer *t, struct ps_err *err)
{
    double now = tr_now(t);
    int rc;

    if (t->used_bpf)
        return tr_bpf_step(t, err);
    if (t->stopped)
        return 1;
    tr_drain_fd(t->chld_fd);
    rc = target_service(err);
    tr_deliver(t);
    if (rc < 0)
        return rc;
    if (t->exec_seen)
        return 1;
    if (now - t->last_sync >= TR_SYNC_S) {
        t->last_sync = now;
        if (tr_sync_threads(t) == 0) {
            t->exited = true;
            return 1;
        }
    }
    if (now - t->last_end_check >= TR_END_CHECK_S) {
        t->last_end_check = now;
        tr_check_ends(t, false);
    }
    tr_budget_tick(t, now);
    if (t->want_disarm)
        tr_disarm(t);
    tr_maybe_rearm(t, now);
    tr_count_tick(t, now);
    tr_deliver(t);
    return 0;
}

size_t tracer_events(const struct tracer *t, uint64_t after, struct tracer_event *out, size_t cap)
{
    size_t first = t->ring_n > TRACER_RING_CAP ? t->ring_n - TRACER_RING_CAP : 0;
    size_t n = 0;

    if (after > first)
        first = after < t->ring_n ? (size_t)after : t->ring_n;
    for (size_t i = first; i < t->ring_n && n < cap; i++) {
        const struct tracer_event *ev = &t->ring[i % TRACER_RING_CAP];
        if (ev->seq > after)
            out[n++] = *ev;
    }
    return n;
}

void tracer_stats(struct tracer *t, struct tracer_stats *out)
{
    bool exact = false;
    uint64_t count = t->bp ? bkpt_count(t->bp, &exact) : 0;
    double ratio;

    t->st.counting = exact && !t->estimated;
    t->st.armed = t->bp && bkpt_armed(t->bp);
    if (t->bp && !t->stopped)
        t->st.threads_armed = bkpt_nthreads(t->bp);
    t->st.counted_total = exact ? count + (uint64_t)llround(tr_est_hits(&t->est, t->rate_w)) : 0;
    t->st.unseen_hits = t->st.counted_total > t->st.hits ? t->st.counted_total - t->st.hits : 0;
    t->st.count_cost_us = t->count_cost_us;
    t->st.count_exact_rate = isinf(t->count_max_rate) ? -1.0 : t->count_max_rate;
    ratio = t->st.hits ? (double)t->st.raises / (double)t->st.hits : 1.0;
    t->st.unseen_raises_est = (uint64_t)llround((double)t->st.unseen_hits * ratio);
    t->st.budget = t->budget;
    t->st.stop_cost_us = t->stop_cost * 1e6;
    t->st.target_cpu_s = t->cpu_at >= 0 ? t->cpu_last - t->cpu_first : 0;
    tr_sites_cycle(t);
    if (t->used_bpf)
        tr_bpf_sites(t);
    t->st.raises_est = t->unattributed * ratio;
    for (size_t i = 0; i < t->nsites; i++)
        t->st.raises_est += (double)t->sites[i].exact + t->sites[i].sampled_est;
    *out = t->st;
    if (t->disarmed_at != 0)
        out->disarmed_seconds += tr_now(t) - t->disarmed_at;
    if (t->used_bpf)
        tr_bpf_stats(t, out);
}

void tracer_free(struct tracer *t)
{
    struct ps_err ignored = {0};

    if (!t)
        return;
    if (!t->stopped && tracer_stop(t, &ignored) < 0)
        t->stopped = true;
    if (!t->used_bpf && target_current_pid() != 0)
        target_forget_hooks(); /* the detach failed: its later retries must not call into t */
    bkpt_free(t->bp);
    bpf_exc_close(t->bx);
    free(t->bpf_hdrs);
    free(t->bpf_hdr_cache);
    if (t->used_bpf) {
        if (t->chld_fd >= 0)
            (void)close(t->chld_fd); /* a dup of the ring buffer's fd */
    } else {
        evloop_signal_fd_close(t->chld_fd, &t->chld_held);
    }
    walk_stack_free(&t->stack);
    tr_memo_free(t->memo);
    free(t->ring);
    free(t->open);
    free(t->ts);
    free(t->tids);
    free(t->thr);
    free(t->sites);
    free(t);
}
