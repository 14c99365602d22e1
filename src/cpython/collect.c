/* SPDX-License-Identifier: MIT */
/*
 * The snapshot builder (see collect.h): pyproc -> walk -> code cache -> struct snap.
 *
 * Per thread: walk the stack, check it did not move (retrying a bounded number of times),
 * resolve every frame through the code cache and copy the strings into the snapshot's arena
 * (the cache may evict entries later; the snapshot stays valid). Names come from the threading
 * module's registry, read once per interpreter. OS state comes from /proc/PID/task/TID.
 *
 * Never: leaves a thread stopped (blocking mode resumes through target_release on every
 * path), or prints (errors are data in the snapshot or a ps_err for the caller).
 */
#include "pyscope/collect.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>

#include "pyscope/evloop.h"
#include "pyscope/locals.h"
#include "pyscope/native.h"
#include "pyscope/exc.h"
#include "pyscope/procstat.h"
#include "pyscope/target.h"
#include "pyscope/tasks.h"
#include "pyscope/walk.h"

#define THREAD_NAME_MAX 256

/* Torn reads of one thread (walk_consistent): the last whole chain read and the longest
 * outer part two of them agreed on. WALK_MAX_DEPTH frames each, allocated at the first tear. */
struct tear {
    struct walk_frame *prev, *best;
    size_t nprev, nbest;
    bool have_prev;
};

struct collector {
    struct pyproc *pp; /* pid, locate facts, liveness */
    struct pyctx cx;   /* pp's readers' context (pyproc_ctx) */
    const struct collect_opts *opts;
    struct snap *snap;
    struct walk_stack stack;
    struct walk_tstate *ts;
    size_t nts;
    struct walk_interp interps[WALK_MAX_INTERPS];
    size_t ninterps;
    uint64_t threading_active[WALK_MAX_INTERPS]; /* threading._active per interps[i], 0 if none */
    struct tear tear;
    bool stopped; /* the threads are stopped for this read (--blocking, or auto's retake) */
};

/* threading._active of every interpreter (best effort: no threading module, no names). Each
 * interpreter has its own sys.modules, so a subinterpreter's threads are named by its own. */
static void find_thread_registry(struct collector *c)
{
    for (size_t i = 0; i < c->ninterps; i++) {
        struct ps_err ignored = {0};
        uint64_t mod, active;

        c->threading_active[i] = 0;
        if (pyobj_module(&c->cx, c->interps[i].addr, "threading", &mod, &ignored) == 0 &&
            pyobj_module_global(&c->cx, mod, "_active", &active, &ignored) == 0)
            c->threading_active[i] = active;
    }
}

/* The Thread object's _name for ident in its interpreter's registry, or NULL. */
static const char *thread_name(struct collector *c, const struct walk_tstate *t)
{
    struct ps_err ignored = {0};
    char buf[THREAD_NAME_MAX];
    uint64_t thread, name, active = 0;

    for (size_t i = 0; i < c->ninterps; i++)
        if (c->interps[i].addr == t->interp)
            active = c->threading_active[i];
    if (!active)
        return NULL;
    /* Keys are the ints get_ident() returned; an int below 2^61-1 hashes to itself. */
    if (t->thread_id >= (1ull << 61) - 1 ||
        pyobj_dict_get_hash(&c->cx, active, (int64_t)t->thread_id, &thread, &ignored) < 0)
        return NULL;
    if (pyobj_instance_attr(&c->cx, thread, "_name", &name, &ignored) < 0 ||
        pyobj_str(&c->cx, name, buf, sizeof(buf), NULL, &ignored) < 0)
        return NULL;
    return snap_strdup(c->snap, buf);
}

static const struct walk_interp *interp_of(const struct collector *c, uint64_t addr)
{
    for (size_t i = 0; i < c->ninterps; i++)
        if (c->interps[i].addr == addr)
            return &c->interps[i];
    return NULL;
}

static bool same_frame(const struct walk_frame *a, const struct walk_frame *b)
{
    return a->frame_addr == b->frame_addr && a->code_addr == b->code_addr && a->unit == b->unit &&
           a->owner == b->owner && a->is_entry == b->is_entry;
}

/* A walk that read a whole chain but saw its top move: keep the outer frames it shares with
 * the previous such walk when they beat the best so far (frames are innermost first, so the
 * shared part is the common tail). Two reads agreeing on a frame, its code and its position
 * saw it standing still. */
static void keep_stable(struct collector *c)
{
    struct tear *t = &c->tear;
    const struct walk_stack *ws = &c->stack;
    size_t k = 0;

    while (t->have_prev && k < ws->n && k < t->nprev &&
           same_frame(&ws->frames[ws->n - 1 - k], &t->prev[t->nprev - 1 - k]))
        k++;
    if (k > t->nbest) {
        memcpy(t->best, ws->frames + (ws->n - k), k * sizeof(*t->best));
        t->nbest = k;
    }
    memcpy(t->prev, ws->frames, ws->n * sizeof(*t->prev));
    t->nprev = ws->n;
    t->have_prev = true;
}

/* After the retries: the stable outer frames into c->stack, the thread marked partial. */
static int use_stable(struct collector *c, struct snap_thread *out, struct ps_err *err)
{
    struct tear *t = &c->tear;
    char msg[PS_ERR_MSG_MAX];

    memcpy(c->stack.frames, t->best, t->nbest * sizeof(*t->best));
    c->stack.n = t->nbest;
    c->stack.truncated = false;
    out->status = SNAP_THREAD_PARTIAL;
    (void)snprintf(msg, sizeof(msg),
                   "the innermost frames kept changing while they were read (%d attempts): "
                   "only the %zu outer frames two reads agreed on are shown; use --blocking or "
                   "--blocking=auto for the whole stack",
                   out->attempts, t->nbest);
    ps_err_clear(err);
    out->error = snap_strdup(c->snap, msg);
    return out->error ? 0 : ps_err_set(err, -ENOMEM, "out of memory");
}

static int tear_alloc(struct tear *t, struct ps_err *err)
{
    if (!t->prev)
        t->prev = calloc(WALK_MAX_DEPTH, sizeof(*t->prev));
    if (!t->best)
        t->best = calloc(WALK_MAX_DEPTH, sizeof(*t->best));
    return t->prev && t->best ? 0 : ps_err_set(err, -ENOMEM, "out of memory");
}

/* Walk until two consecutive reads agree (or retries run out: then the outer frames that
 * stood still, when some did). */
static int walk_consistent(struct collector *c, const struct walk_tstate *t,
                           struct snap_thread *out, struct ps_err *err)
{
    int max = c->stopped ? 1 : c->opts->retries + 1;
    int rc = 0;

    c->tear.have_prev = false;
    c->tear.nprev = c->tear.nbest = 0;
    for (int attempt = 1; attempt <= max; attempt++) {
        bool changed = false;

        ps_err_clear(err);
        out->attempts = attempt;
        rc = walk_stack(&c->cx, t->addr, &c->stack, err);
        if (rc == -PS_EGONE || rc == -ENOMEM)
            return rc;
        if (rc == 0 && !c->stopped)
            rc = walk_stack_changed(&c->cx, t->addr, &c->stack, &changed, err);
        if (rc == 0 && !changed)
            return 0;
        if (rc == 0 && !c->stack.truncated && tear_alloc(&c->tear, err) == 0)
            keep_stable(c);
        if (rc == 0)
            rc = ps_err_set(err, -PS_ECORRUPT,
                            "the stack kept changing while it was read (%d attempts); use "
                            "--blocking or --blocking=auto for an exact stack",
                            attempt);
    }
    if (rc == -PS_ECORRUPT && c->tear.nbest > 0)
        return use_stable(c, out, err);
    return rc;
}

static int resolve_frame(struct collector *c, const struct walk_frame *wf, struct snap_frame *sf,
                         struct ps_err *err)
{
    const struct code_info *ci;
    struct linetab_pos pos;
    int rc;

    rc = code_cache_resolve(c->cx.codes, &c->cx, wf->code_addr, &wf->fp, &ci, err);
    if (rc < 0)
        return rc;
    pos = linetab_lookup(&ci->lines, ci->firstlineno, wf->unit);
    sf->function = snap_strdup(c->snap, ci->name);
    sf->qualname = snap_strdup(c->snap, ci->qualname);
    sf->file = snap_strdup(c->snap, ci->filename);
    if (!sf->function || !sf->qualname || !sf->file)
        return ps_err_set(err, -ENOMEM, "cannot copy frame names: out of memory");
    sf->line = pos.line;
    sf->end_line = pos.end_line;
    sf->col = pos.col;
    sf->end_col = pos.end_col;
    sf->code_addr = wf->code_addr;
    sf->is_entry = wf->is_entry;
    sf->owner = wf->owner == (uint8_t)c->cx.lay->frame_owner_thread      ? SNAP_OWNER_THREAD
                : wf->owner == (uint8_t)c->cx.lay->frame_owner_generator ? SNAP_OWNER_GENERATOR
                                                                         : SNAP_OWNER_FRAME_OBJECT;
    return 0;
}

/* --locals: a frame whose variables cannot be read just has none; only ENOMEM is fatal. */
static int frame_locals(struct collector *c, const struct walk_frame *wf, struct snap_frame *sf,
                        struct ps_err *err)
{
    struct ps_err lerr = {0};
    int rc = locals_frame(&c->cx, wf->frame_addr, wf->code_addr, c->snap, sf, &lerr);

    return rc == -ENOMEM ? ps_err_set(err, rc, "%s", lerr.msg) : 0;
}

static int resolve_stack(struct collector *c, struct snap_thread *st, struct ps_err *err)
{
    const struct walk_stack *ws = &c->stack;
    int rc;

    st->frames = snap_alloc(c->snap, (ws->n ? ws->n : 1) * sizeof(*st->frames));
    if (!st->frames)
        return ps_err_set(err, -ENOMEM, "cannot allocate frames: out of memory");
    for (size_t i = 0; i < ws->n; i++) {
        rc = resolve_frame(c, &ws->frames[i], &st->frames[i], err);
        if (rc == 0 && c->opts->locals)
            rc = frame_locals(c, &ws->frames[i], &st->frames[i], err);
        if (rc < 0)
            return rc;
        st->nframes = i + 1;
    }
    if (ws->truncated)
        st->status = SNAP_THREAD_TRUNCATED;
    return 0;
}

/* Everything about one thread except its OS state. */
static int collect_thread(struct collector *c, const struct walk_tstate *t, struct snap_thread *st)
{
    const struct walk_interp *wi = interp_of(c, t->interp);
    struct ps_err err = {0};
    int rc;

    st->thread_id = t->thread_id;
    st->native_id = t->native_id;
    st->tstate_addr = t->addr;
    st->interp_id = t->interp_id;
    st->gil = wi && wi->gil_holder == t->addr;
    st->active = t->has_status ? layout_tstate_active(c->cx.lay, t->status_bits) : st->gil;
    st->name = thread_name(c, t);
    rc = walk_consistent(c, t, st, &err);
    st->c_anchor = c->stack.cframe ? c->stack.cframe : c->stack.entry_shim;
    if (rc == 0)
        rc = resolve_stack(c, st, &err);
    if (rc != -ENOMEM && rc != -PS_EGONE && exc_snap_thread(&c->cx, c->snap, st, &err) < 0)
        rc = -ENOMEM; /* raising / handled exceptions (exc.c): only ENOMEM is an error */
    if (rc == -ENOMEM || rc == -PS_EGONE)
        return rc;
    if (rc < 0) {
        st->status = rc == -PS_ECORRUPT ? SNAP_THREAD_INCONSISTENT : SNAP_THREAD_ERROR;
        st->error = snap_strdup(c->snap, err.msg);
        /* Keep what the last attempt resolved, flagged: better than nothing in a post-mortem. */
    }
    return 0;
}

/* A futex wait on an address inside the GIL struct (its condition variables and mutexes,
 * pycore_gil.h; the layout's gil_size) is a wait for the GIL. */
static bool waits_for_gil(const struct layout *lay, const struct snap_os *os,
                          const struct walk_interp *wi)
{
    return wi && wi->gil && lay->gil_size > 0 && os->syscall == SYS_futex &&
           os->syscall_arg0 >= wi->gil && os->syscall_arg0 < wi->gil + (uint64_t)lay->gil_size;
}

static void collect_os(struct collector *c, struct snap_thread *st, const struct walk_interp *wi)
{
    struct ps_err ignored = {0};
    char buf[128];

    memset(&st->os, 0, sizeof(st->os));
    st->os.state = '?';
    st->os.syscall = -2;
    /* pid 0: a replayed fixture, no live /proc to consult. */
    if (c->pp->pid <= 0 || st->native_id <= 0 ||
        procstat_thread_os(c->pp->pid, st->native_id, &st->os, &ignored) < 0)
        st->os.state = '?';
    if (st->os.comm[0])
        st->os_name = snap_strndup(c->snap, st->os.comm, strnlen(st->os.comm, sizeof(st->os.comm)));
    /* Blocking mode: every thread is in OUR ptrace stop ('t', wchan ptrace_stop); what it was
     * doing is the interrupted syscall, still reported in /proc/TID/syscall (-1: user code). */
    if (c->stopped && st->os.state == 't') {
        st->os.state = st->os.syscall == -1 ? 'R' : 'S';
        st->os.wchan[0] = '\0';
    }
    if (st->gil && (st->os.state == 'R' || st->os.syscall == -1))
        st->activity = snap_strdup(c->snap, "running");
    else if (!st->gil && waits_for_gil(c->cx.lay, &st->os, wi))
        st->activity = snap_strdup(c->snap, "waiting for the GIL");
    else
        st->activity = snap_strdup(c->snap, procstat_activity(&st->os, buf, sizeof(buf)));
}

static int collect_process(struct collector *c, struct ps_err *err)
{
    struct snap *s = c->snap;
    struct procstat_proc *proc = calloc(1, sizeof(*proc));
    struct ps_err ignored = {0};

    if (!proc)
        return ps_err_set(err, -ENOMEM, "out of memory");
    s->pid = c->pp->pid;
    s->version_hex = c->pp->loc.version_hex;
    (void)snprintf(s->python_version, sizeof(s->python_version), "%s", c->pp->loc.version);
    s->image = snap_strdup(s, c->pp->loc.image);
    s->exe = snap_strdup(s, c->pp->loc.exe);
    if (c->pp->pid > 0 && procstat_proc(c->pp->pid, proc, &ignored) == 0) {
        s->cmdline = snap_strdup(s, proc->cmdline);
        s->cpu_user_s = proc->cpu_user_s;
        s->cpu_system_s = proc->cpu_system_s;
        s->rss_bytes = proc->rss_bytes;
    }
    free(proc);
    return 0;
}

/* The thread states. A running target's list may change under the walk (a thread state freed
 * after it was reached: "does not point back at interpreter"): walked again, as a stack is,
 * up to retries more times; a stopped target or a core is read once. */
static int collect_tstates(struct collector *c, struct ps_err *err)
{
    int tries = c->stopped ? 1 : c->opts->retries + 1;
    struct ps_err one = {0};
    int rc = 0;

    for (int i = 0; i < tries; i++) {
        one = (struct ps_err){0};
        rc = walk_tstates(&c->cx, c->ts, WALK_MAX_THREADS, &c->nts, c->interps, &c->ninterps, &one);
        if (rc != -PS_ECORRUPT)
            break;
    }
    return rc < 0 ? ps_err_set(err, rc, "%s", one.msg) : 0;
}

static int collect_threads(struct collector *c, struct ps_err *err)
{
    struct snap *s = c->snap;
    int rc;

    rc = collect_tstates(c, err);
    if (rc < 0)
        return rc;
    if (c->ninterps > 0)
        s->gil_switches = c->interps[c->ninterps - 1].gil_switches;
    find_thread_registry(c);
    s->threads = snap_alloc(s, (c->nts ? c->nts : 1) * sizeof(*s->threads));
    if (!s->threads)
        return ps_err_set(err, -ENOMEM, "cannot allocate threads: out of memory");
    /* Thread states are listed newest first; show the oldest (usually MainThread) first. */
    for (size_t i = 0; i < c->nts; i++) {
        struct snap_thread *st = &s->threads[i];

        rc = collect_thread(c, &c->ts[c->nts - 1 - i], st);
        if (rc < 0)
            return ps_err_set(err, rc,
                              "the target stopped being readable while reading thread "
                              "%d",
                              (int)st->native_id);
        collect_os(c, st, interp_of(c, c->ts[c->nts - 1 - i].interp));
        s->nthreads = i + 1;
        /* After collect_os: a native stack in take_gil overrides the activity. */
        rc = c->opts->native ? native_collect_thread(c->opts->native, s, st, err) : 0;
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* True when the snapshot already lists tid (it has a Python thread state). */
static bool snap_has_tid(const struct snap *s, pid_t tid)
{
    for (size_t i = 0; i < s->nthreads; i++)
        if (s->threads[i].native_id == tid)
            return true;
    return false;
}

/* One OS thread without a Python thread state: its OS view and, with --native, its C stack. */
static int collect_os_thread(struct collector *c, pid_t tid, struct ps_err *err)
{
    struct snap_thread *st = &c->snap->threads[c->snap->nthreads++];

    st->os_only = true;
    st->native_id = tid;
    collect_os(c, st, NULL);
    return c->opts->native ? native_collect_thread(c->opts->native, c->snap, st, err) : 0;
}

/* Grow the thread array to hold n more (arena memory: the old array is simply left behind). */
static int grow_threads(struct snap *s, size_t more, struct ps_err *err)
{
    struct snap_thread *t = snap_alloc(s, (s->nthreads + more) * sizeof(*t));

    if (!t)
        return ps_err_set(err, -ENOMEM, "cannot allocate threads: out of memory");
    if (s->nthreads > 0)
        memcpy(t, s->threads, s->nthreads * sizeof(*t));
    s->threads = t;
    return 0;
}

/* opts.os_threads: the threads C code started and Python never saw. Listing /proc is best
 * effort (a process with more threads than the cap just lists its Python ones). */
static int collect_os_threads(struct collector *c, struct ps_err *err)
{
    pid_t *live = NULL;
    const pid_t *tids = c->opts->tids;
    size_t n = c->opts->ntids, more = 0;
    struct ps_err ignored = {0};
    int rc = 0;

    if (c->pp->pid > 0) {
        live = calloc(WALK_MAX_THREADS, sizeof(*live));
        if (!live)
            return ps_err_set(err, -ENOMEM, "cannot list the OS threads: out of memory");
        if (procstat_tids(c->pp->pid, live, WALK_MAX_THREADS, &n, &ignored) < 0)
            n = 0;
        tids = live;
    }
    for (size_t i = 0; i < n; i++)
        more += !snap_has_tid(c->snap, tids[i]);
    if (more > WALK_MAX_THREADS - c->snap->nthreads)
        more = WALK_MAX_THREADS - c->snap->nthreads;
    if (more > 0)
        rc = grow_threads(c->snap, more, err);
    for (size_t i = 0, added = 0; rc == 0 && i < n && added < more; i++) {
        if (snap_has_tid(c->snap, tids[i]))
            continue;
        rc = collect_os_thread(c, tids[i], err);
        added++;
    }
    free(live);
    return rc;
}

/* --tasks: asyncio tasks, placed in the threads just read (a missing asyncio is data). */
static int collect_tasks(struct collector *c, struct ps_err *err)
{
    struct tasks_opts to = {.max_tasks = TASKS_DEFAULT_MAX};

    if (c->opts->max_tasks > 0)
        to.max_tasks = c->opts->max_tasks;
    return tasks_collect(&c->cx, c->snap, &to, err);
}

static int collect_all(struct collector *c, struct ps_err *err)
{
    uint64_t calls0 = c->pp->src->stats.calls;
    double t0 = evloop_now();
    int rc;

    c->snap->timestamp = evloop_wall();
    c->snap->blocking = c->stopped;
    rc = collect_process(c, err);
    if (rc == 0)
        rc = collect_threads(c, err);
    if (rc == 0 && c->opts->os_threads)
        rc = collect_os_threads(c, err);
    if (rc == 0 && c->opts->native)
        rc = native_merge_snapshot(c->snap, err);
    if (rc == 0 && c->opts->tasks)
        rc = collect_tasks(c, err);
    /* Reads by pid: make sure they all came from the process that was opened. */
    if (rc == 0)
        rc = pyproc_check_alive(c->pp, err);
    c->snap->read_seconds = evloop_now() - t0;
    c->snap->read_calls = c->pp->src->stats.calls - calls0;
    return rc;
}

static int collect_all_cb(void *arg, struct ps_err *err)
{
    return collect_all(arg, err);
}

/* Every thread stopped for the read (seize stops them), resumed and detached on every path. */
static int collect_blocking(struct collector *c, struct ps_err *err)
{
    return target_run_stopped(c->pp->pid, collect_all_cb, c, err);
}

static bool snap_torn(const struct snap *s)
{
    for (size_t i = 0; i < s->nthreads; i++)
        if (s->threads[i].status == SNAP_THREAD_INCONSISTENT ||
            s->threads[i].status == SNAP_THREAD_PARTIAL)
            return true;
    return false;
}

/* --blocking=auto: some stack kept tearing, so read everything again with the threads stopped
 * (briefly: one read of each stack) and say so in the snapshot. */
static int collect_stopped_again(struct collector *c, struct ps_err *err)
{
    int rc;

    snap_free(c->snap);
    c->snap = NULL;
    rc = snap_new(&c->snap, err);
    c->stopped = true;
    if (rc == 0)
        rc = collect_blocking(c, err);
    if (rc == 0)
        c->snap->blocking_auto = true;
    return rc;
}

int collect_snapshot(struct pyproc *pp, const struct collect_opts *opts, struct snap **out,
                     struct ps_err *err)
{
    struct collector *c = calloc(1, sizeof(*c));
    int rc;

    if (!c)
        return ps_err_set(err, -ENOMEM, "cannot allocate the collector: out of memory");
    c->pp = pp;
    c->cx = pyproc_ctx(pp);
    c->opts = opts;
    c->stopped = opts->blocking;
    c->ts = calloc(WALK_MAX_THREADS, sizeof(*c->ts));
    rc = c->ts ? snap_new(&c->snap, err) : ps_err_set(err, -ENOMEM, "out of memory");
    if (rc == 0)
        rc = walk_stack_init(&c->stack, err);
    if (rc == 0)
        rc = opts->blocking ? collect_blocking(c, err) : collect_all(c, err);
    if (rc == 0 && !opts->blocking && opts->blocking_auto && snap_torn(c->snap))
        rc = collect_stopped_again(c, err);
    if (rc == 0) {
        *out = c->snap;
        c->snap = NULL;
    }
    snap_free(c->snap);
    free(c->tear.prev);
    free(c->tear.best);
    walk_stack_free(&c->stack);
    free(c->ts);
    free(c);
    return rc;
}
