/* SPDX-License-Identifier: MIT */
/*
 * asyncio tasks (see tasks.h): registries -> task headers -> selection -> chains -> await graph.
 *
 * Data flow: sys.modules["asyncio.tasks"] gives the registries (CPYTHON.md section 6). Their set
 * tables are scanned in chunks (one scatter read per chunk resolves every weakref's referent and
 * type), the candidates are de-duplicated and their TaskObj headers read in batches; only
 * objects whose type is _asyncio.Task survive. _current_tasks marks the running task of each
 * loop. Counts cover every task found; the chains (tasks_chain.c), names and await targets are
 * read only for the listed ones (opts->max_tasks), so thousands of tasks cost a few scatter
 * reads plus the listed tasks' own reads.
 *
 * The running task's frames are on its loop's thread (loop._thread_id, matched against the
 * snapshot's threads): its chain is that thread's frames from the innermost out to the task's
 * coroutine frame. The await graph has an edge for a task awaiting a listed task (through
 * fut_waiter), for a TaskGroup's __aexit__ waiting for its children, and for a gather() future
 * waiting for its children; tasks on a cycle (Tarjan's strongly connected components) are
 * flagged as deadlocked.
 *
 * Never writes to the target; every loop is bounded by a cap in tasks.h; a task that cannot be
 * read is that task's error. No globals.
 */
#include "pyscope/tasks.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pyscope/pyobj.h"
#include "tasks_int.h"

/* Set entries read per scatter read (16 bytes each: 16 KiB). */
#define SET_CHUNK 1024
/* Task headers read per scatter read. */
#define HDR_BATCH 256
/* Largest TaskObj prefix we read (3.12: task_name @144 + 8). */
#define HDR_MAX 256
/* Event loops whose thread we look up (one _thread_id read each). */
#define MAX_LOOPS 256
/* Longest task name kept (characters beyond are cut). */
#define NAME_MAX_BYTES 256

const char *tasks_state_name(enum snap_task_state state)
{
    switch (state) {
    case SNAP_TASK_PENDING: return "pending";
    case SNAP_TASK_RUNNING: return "running";
    case SNAP_TASK_DONE: return "done";
    case SNAP_TASK_CANCELLED: return "cancelled";
    }
    return "pending";
}

const char *tasks_await_name(enum snap_await_kind kind)
{
    switch (kind) {
    case SNAP_AWAIT_NONE: return "none";
    case SNAP_AWAIT_TASK: return "task";
    case SNAP_AWAIT_FUTURE: return "future";
    case SNAP_AWAIT_SLEEP: return "sleep";
    case SNAP_AWAIT_OTHER: return "other";
    }
    return "none";
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* ---- types ---------------------------------------------------------------------------------- */

static enum tasks_kind kind_by_name(const char *name)
{
    static const struct {
        const char *name;
        enum tasks_kind kind;
    } names[] = {
        {"_asyncio.Task", TK_TASK},
        {"_asyncio.Future", TK_FUTURE},
        {"asyncio.tasks._GatheringFuture", TK_GATHER},
        {"_asyncio.FutureIter", TK_FUTUREITER},
        {"async_generator", TK_ASYNCGEN},
        {"async_generator_asend", TK_ASEND},
        {"weakref.ReferenceType", TK_WEAKREF},
    };
    size_t n = strlen(name);

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(name, names[i].name) == 0)
            return names[i].kind;
    /* Python Future subclasses keep the C layout; classify them by their name. */
    return n >= 6 && strcmp(name + n - 6, "Future") == 0 ? TK_FUTURE : TK_OTHER;
}

int tasks_type_of(struct tasks_ctx *x, uint64_t type, const struct tasks_type **t,
                  struct ps_err *err)
{
    struct tasks_type *e = x->ntypes < TASKS_TYPE_CACHE ? &x->types[x->ntypes] : &x->scratch;
    int rc;

    for (size_t i = 0; i < x->ntypes; i++)
        if (x->types[i].addr == type) {
            *t = &x->types[i];
            return 0;
        }
    memset(e, 0, sizeof(*e));
    e->addr = type;
    if (type == x->c->syms->coro_type || type == x->c->syms->gen_type) {
        e->kind = type == x->c->syms->coro_type ? TK_CORO : TK_GEN;
        (void)snprintf(e->name, sizeof(e->name), "%s",
                       e->kind == TK_CORO ? "coroutine" : "generator");
    } else {
        rc = pyobj_type_name(x->c, type, e->name, sizeof(e->name), err);
        if (rc < 0)
            return rc;
        e->kind = kind_by_name(e->name);
    }
    if (e != &x->scratch)
        x->ntypes++;
    *t = e;
    return 0;
}

int tasks_kind_of(struct tasks_ctx *x, uint64_t obj, const struct tasks_type **t,
                  struct ps_err *err)
{
    uint64_t type = 0;
    int rc = pyobj_type(x->c, obj, &type, err);

    return rc < 0 ? rc : tasks_type_of(x, type, t, err);
}

/* ---- registries ----------------------------------------------------------------------------- */

struct registries {
    uint64_t scheduled; /* WeakSet */
    uint64_t eager;     /* set, 0 before 3.12 */
    uint64_t current;   /* dict loop -> task */
};

static int main_interp(struct tasks_ctx *x, uint64_t *interp, struct ps_err *err)
{
    uint64_t rt = x->c->syms->runtime + (uint64_t)x->lay->runtime_interpreters_main;

    return memsrc_read_u64(x->c->src, rt, interp, err);
}

/* asyncio.tasks' registries; -ENOENT (with a sentence) when asyncio is not imported. */
static int find_registries(struct tasks_ctx *x, struct registries *r, struct ps_err *err)
{
    uint64_t interp = 0, mod = 0;
    int rc = main_interp(x, &interp, err);

    if (rc == 0)
        rc = pyobj_module(x->c, interp, "asyncio.tasks", &mod, err);
    if (rc == -ENOENT)
        return ps_err_replace(err, -ENOENT, "asyncio is not imported in the target: no tasks");
    /* 3.12+ _scheduled_tasks; 3.11 _all_tasks (Lib/asyncio/tasks.py). */
    if (rc == 0 && pyobj_module_global(x->c, mod, "_scheduled_tasks", &r->scheduled, err) < 0) {
        ps_err_clear(err);
        rc = pyobj_module_global(x->c, mod, "_all_tasks", &r->scheduled, err);
    }
    if (rc == 0)
        rc = pyobj_module_global(x->c, mod, "_current_tasks", &r->current, err);
    if (rc == 0 && pyobj_module_global(x->c, mod, "_eager_tasks", &r->eager, err) < 0) {
        ps_err_clear(err);
        r->eager = 0;
    }
    return rc;
}

/* ---- scanning sets -------------------------------------------------------------------------- */

static int hdrs_push(struct tasks_ctx *x, uint64_t addr, struct ps_err *err)
{
    struct tasks_hdr *n;

    if (addr == 0 || (addr & 7) != 0)
        return 0;
    if (x->nhdrs == TASKS_MAX_FOUND) {
        x->out->capped = true;
        return 0;
    }
    if (x->nhdrs == x->caphdrs) {
        size_t cap = x->caphdrs ? x->caphdrs * 2 : 1024;

        n = realloc(x->hdrs, cap * sizeof(*n));
        if (!n)
            return ps_err_set(err, -ENOMEM, "cannot list tasks: out of memory");
        x->hdrs = n;
        x->caphdrs = cap;
    }
    memset(&x->hdrs[x->nhdrs], 0, sizeof(x->hdrs[0]));
    x->hdrs[x->nhdrs++].addr = addr;
    return 0;
}

/* A weakref key: its type and referent, read for a whole chunk in one scatter read. */
struct wref {
    uint8_t raw[32];
};

static int weak_chunk(struct tasks_ctx *x, const uint64_t *keys, size_t n, struct ps_err *err)
{
    const struct layout *l = x->lay;
    size_t len = (size_t)(l->weakref_object > l->object_type ? l->weakref_object : l->object_type);
    struct memsrc_iov iov[SET_CHUNK];
    struct wref *w = calloc(n ? n : 1, sizeof(*w));
    const struct tasks_type *t;
    int rc = 0;

    if (!w)
        return ps_err_set(err, -ENOMEM, "cannot scan the task registry: out of memory");
    for (size_t i = 0; i < n; i++)
        iov[i] = (struct memsrc_iov){keys[i], w[i].raw, len + 8};
    rc = len + 8 <= sizeof(w->raw) ? memsrc_readv(x->c->src, iov, n, err) : -PS_ECORRUPT;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = tasks_type_of(x, le64(w[i].raw + l->object_type), &t, err);
        if (rc == 0 && t->kind == TK_WEAKREF)
            rc = hdrs_push(x, le64(w[i].raw + l->weakref_object), err);
        if (rc < 0 && rc != -ENOMEM) { /* a dummy or torn key: skip it */
            ps_err_clear(err);
            rc = 0;
        }
    }
    free(w);
    return rc;
}

/* Scan set `set` (PySet_Type checked): weak = keys are weakrefs to tasks, else tasks. */
static int set_scan(struct tasks_ctx *x, uint64_t set, bool weak, struct ps_err *err)
{
    uint64_t type = 0, mask = 0, table = 0, keys[SET_CHUNK];
    uint8_t ent[SET_CHUNK * 16];
    int rc = pyobj_type(x->c, set, &type, err);

    if (rc == 0 && type != x->c->syms->set_type)
        rc = ps_err_set(err, -PS_ECORRUPT, "asyncio's task registry at 0x%" PRIx64 " is not a set",
                        set);
    if (rc == 0)
        rc = memsrc_read_u64(x->c->src, set + (uint64_t)x->lay->set_mask, &mask, err);
    if (rc == 0)
        rc = memsrc_read_u64(x->c->src, set + (uint64_t)x->lay->set_table, &table, err);
    if (rc == 0 && ((mask + 1) & mask) != 0)
        rc = ps_err_set(err, -PS_ECORRUPT, "a task registry has a bad size (mask 0x%" PRIx64 ")",
                        mask);
    if (rc == 0 && mask >= TASKS_MAX_SCAN) {
        x->out->capped = true;
        mask = TASKS_MAX_SCAN - 1;
    }
    for (uint64_t at = 0; rc == 0 && at <= mask; at += SET_CHUNK) {
        size_t chunk = mask + 1 - at < SET_CHUNK ? (size_t)(mask + 1 - at) : SET_CHUNK, n = 0;

        rc = memsrc_read(x->c->src, table + at * 16, ent, chunk * 16, err);
        for (size_t i = 0; rc == 0 && i < chunk; i++) {
            uint64_t key = le64(ent + i * 16);

            if (key != 0 && (key & 7) == 0)
                keys[n++] = key;
        }
        for (size_t i = 0; rc == 0 && !weak && i < n; i++)
            rc = hdrs_push(x, keys[i], err);
        if (rc == 0 && weak)
            rc = weak_chunk(x, keys, n, err);
    }
    return rc;
}

static int cmp_hdr_addr(const void *a, const void *b)
{
    const struct tasks_hdr *p = a, *q = b;

    return p->addr < q->addr ? -1 : p->addr > q->addr;
}

static void hdrs_dedup(struct tasks_ctx *x)
{
    size_t out = 0;

    if (x->nhdrs == 0)
        return;
    qsort(x->hdrs, x->nhdrs, sizeof(*x->hdrs), cmp_hdr_addr);
    for (size_t i = 0; i < x->nhdrs; i++)
        if (out == 0 || x->hdrs[out - 1].addr != x->hdrs[i].addr)
            x->hdrs[out++] = x->hdrs[i];
    x->nhdrs = out;
}

/* ---- task headers --------------------------------------------------------------------------- */

static size_t hdr_len(const struct layout *l)
{
    int32_t m = l->object_type;
    const int32_t f[] = {l->task_state, l->task_fut_waiter, l->task_coro, l->task_name,
                         l->task_loop};

    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
        m = f[i] > m ? f[i] : m;
    return (size_t)m + 8;
}

/* A raw fut_state through the layout's values (absent ones match nothing). */
static enum tasks_fut fut_state(const struct layout *l, int64_t raw)
{
    if (l->fut_state_pending >= 0 && raw == l->fut_state_pending)
        return TASKS_FUT_PENDING;
    if (l->fut_state_cancelled >= 0 && raw == l->fut_state_cancelled)
        return TASKS_FUT_CANCELLED;
    if (l->fut_state_finished >= 0 && raw == l->fut_state_finished)
        return TASKS_FUT_FINISHED;
    return TASKS_FUT_UNKNOWN;
}

static void hdr_parse(const struct layout *l, const uint8_t *b, struct tasks_hdr *h)
{
    h->type = le64(b + l->object_type);
    h->loop = le64(b + l->task_loop);
    h->coro = le64(b + l->task_coro);
    h->name = le64(b + l->task_name);
    h->fut_waiter = le64(b + l->task_fut_waiter);
    h->state = fut_state(l, (int64_t)(le64(b + l->task_state) & 0xffffffffu));
}

/* Read one batch of headers; a batch that fails is retried task by task (dead ones dropped). */
static int hdr_batch(struct tasks_ctx *x, struct tasks_hdr *h, size_t n, uint8_t *buf, bool *ok,
                     struct ps_err *err)
{
    size_t len = hdr_len(x->lay);
    struct memsrc_iov iov[HDR_BATCH];
    int rc;

    for (size_t i = 0; i < n; i++)
        iov[i] = (struct memsrc_iov){h[i].addr, buf + i * len, len};
    rc = memsrc_readv(x->c->src, iov, n, err);
    for (size_t i = 0; i < n; i++) {
        ok[i] = rc == 0;
        if (rc < 0 && rc != -PS_EGONE) {
            struct ps_err one = {0};

            ok[i] = memsrc_read(x->c->src, h[i].addr, buf + i * len, len, &one) == 0;
        }
        if (ok[i])
            hdr_parse(x->lay, buf + i * len, &h[i]);
    }
    if (rc == -PS_EGONE)
        return rc;
    ps_err_clear(err);
    return 0;
}

/* Keep the readable objects whose type is _asyncio.Task with a plausible state. */
static int hdrs_read(struct tasks_ctx *x, struct ps_err *err)
{
    uint8_t *buf = malloc((size_t)HDR_BATCH * HDR_MAX);
    bool ok[HDR_BATCH];
    size_t out = 0;
    int rc = buf && hdr_len(x->lay) <= HDR_MAX ? 0 : ps_err_set(err, -ENOMEM, "out of memory");

    for (size_t at = 0; rc == 0 && at < x->nhdrs; at += HDR_BATCH) {
        size_t n = x->nhdrs - at < HDR_BATCH ? x->nhdrs - at : HDR_BATCH;

        rc = hdr_batch(x, x->hdrs + at, n, buf, ok, err);
        for (size_t i = 0; rc == 0 && i < n; i++) {
            const struct tasks_type *t = NULL;
            struct tasks_hdr *h = &x->hdrs[at + i];

            if (!ok[i] || h->state == TASKS_FUT_UNKNOWN)
                continue;
            rc = tasks_type_of(x, h->type, &t, err);
            if (rc == -ENOMEM)
                break;
            if (rc == 0 && t->kind == TK_TASK)
                x->hdrs[out++] = *h;
            ps_err_clear(err);
            rc = 0;
        }
    }
    free(buf);
    x->nhdrs = out;
    return rc;
}

static struct tasks_hdr *hdr_find(struct tasks_ctx *x, uint64_t addr)
{
    struct tasks_hdr key = {.addr = addr};

    if (x->nhdrs == 0)
        return NULL;
    return bsearch(&key, x->hdrs, x->nhdrs, sizeof(*x->hdrs), cmp_hdr_addr);
}

static int mark_running_cb(uint64_t key, uint64_t value, void *arg)
{
    struct tasks_ctx *x = arg;
    struct tasks_hdr *h = hdr_find(x, value);

    if (h && h->loop == key && h->state == TASKS_FUT_PENDING)
        h->running = true;
    return 0;
}

/* _current_tasks: loop -> the task running on it right now. */
static int mark_running(struct tasks_ctx *x, uint64_t current, struct ps_err *err)
{
    int rc = pyobj_dict_iter(x->c, current, MAX_LOOPS, mark_running_cb, x, err);

    return rc < 0 ? rc : 0;
}

/* ---- selection ------------------------------------------------------------------------------ */

static enum snap_task_state hdr_state(const struct tasks_hdr *h)
{
    if (h->running)
        return SNAP_TASK_RUNNING;
    if (h->state == TASKS_FUT_CANCELLED)
        return SNAP_TASK_CANCELLED;
    return h->state == TASKS_FUT_FINISHED ? SNAP_TASK_DONE : SNAP_TASK_PENDING;
}

/* Listing rank: running, pending, done, cancelled. */
static int state_rank(enum snap_task_state s)
{
    static const int rank[] = {[SNAP_TASK_RUNNING] = 0,
                               [SNAP_TASK_PENDING] = 1,
                               [SNAP_TASK_DONE] = 2,
                               [SNAP_TASK_CANCELLED] = 3};

    return rank[s];
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t p = *(const uint64_t *)a, q = *(const uint64_t *)b;

    return p < q ? -1 : p > q;
}

/* Counts by state and distinct loops over every task found. */
static int count_found(struct tasks_ctx *x, struct ps_err *err)
{
    uint64_t *loops = malloc((x->nhdrs ? x->nhdrs : 1) * sizeof(*loops));
    size_t n = 0;

    if (!loops)
        return ps_err_set(err, -ENOMEM, "cannot count tasks: out of memory");
    for (size_t i = 0; i < x->nhdrs; i++) {
        x->out->by_state[hdr_state(&x->hdrs[i])]++;
        loops[i] = x->hdrs[i].loop;
    }
    qsort(loops, x->nhdrs, sizeof(*loops), cmp_u64);
    for (size_t i = 0; i < x->nhdrs; i++)
        n += i == 0 || loops[i] != loops[i - 1];
    x->out->found = x->nhdrs;
    x->out->loops = n;
    free(loops);
    return 0;
}

/* Pick the tasks to list: the first max_tasks by rank (then address). */
static int select_tasks(struct tasks_ctx *x, size_t max, struct ps_err *err)
{
    size_t n = 0;

    x->sel = malloc((x->nhdrs ? x->nhdrs : 1) * sizeof(*x->sel));
    if (!x->sel)
        return ps_err_set(err, -ENOMEM, "cannot list tasks: out of memory");
    for (int r = 0; r < 4; r++)
        for (size_t i = 0; i < x->nhdrs && n < max; i++)
            if (state_rank(hdr_state(&x->hdrs[i])) == r)
                x->sel[n++] = i;
    x->out->ntasks = n;
    if (n < x->nhdrs)
        x->out->capped = true;
    x->out->tasks = snap_alloc(x->s, (n ? n : 1) * sizeof(*x->out->tasks));
    return x->out->tasks ? 0 : ps_err_set(err, -ENOMEM, "cannot list tasks: out of memory");
}

/* ---- one task ------------------------------------------------------------------------------- */

static int task_name(struct tasks_ctx *x, const struct tasks_hdr *h, struct snap_task *t,
                     struct ps_err *err)
{
    char buf[NAME_MAX_BYTES];
    uint64_t type = 0;
    int64_t n = 0;
    int rc = pyobj_type(x->c, h->name, &type, err);

    /* 3.12+: an unnamed task holds an int n until get_name() makes it "Task-n". */
    if (rc == 0 && type == x->c->syms->long_type) {
        rc = pyobj_long(x->c, h->name, &n, err);
        if (rc == 0)
            (void)snprintf(buf, sizeof(buf), "Task-%" PRId64, n);
    } else if (rc == 0) {
        rc = pyobj_str(x->c, h->name, buf, sizeof(buf), NULL, err);
    }
    if (rc < 0 && rc != -ENOMEM && rc != -PS_EGONE) {
        (void)snprintf(buf, sizeof(buf), "<unreadable name>");
        ps_err_clear(err);
        rc = 0;
    }
    if (rc == 0)
        t->name = snap_strdup(x->s, buf);
    return rc == 0 && !t->name ? ps_err_set(err, -ENOMEM, "out of memory") : rc;
}

/* The thread of a loop: loop._thread_id (set by run_forever) matched to a snapshot thread. */
static long loop_thread(struct tasks_ctx *x, uint64_t loop)
{
    struct ps_err ignored = {0};
    uint64_t ident_obj = 0;
    int64_t ident = 0;

    if (pyobj_instance_attr(x->c, loop, "_thread_id", &ident_obj, &ignored) < 0 ||
        pyobj_long(x->c, ident_obj, &ident, &ignored) < 0)
        return -1;
    for (size_t i = 0; i < x->s->nthreads; i++)
        if (x->s->threads[i].thread_id == (uint64_t)ident)
            return (long)i;
    return -1;
}

/* The running task: its chain is its thread's frames out to its coroutine's frame. */
static int task_running(struct tasks_ctx *x, const struct tasks_hdr *h, struct snap_task *t,
                        struct ps_err *err)
{
    const struct snap_thread *th;
    uint64_t code = 0;
    long frame = -1;
    int rc;

    t->thread = loop_thread(x, h->loop);
    if (t->thread < 0) {
        t->error = "its event loop's thread was not found";
        return 0;
    }
    th = &x->s->threads[t->thread];
    rc = memsrc_read_u64(x->c->src,
                         h->coro + (uint64_t)x->lay->gen_iframe + (uint64_t)x->lay->frame_code,
                         &code, err);
    for (size_t i = 0; rc == 0 && i < th->nframes; i++)
        if (th->frames[i].code_addr == code && th->frames[i].owner == SNAP_OWNER_GENERATOR)
            frame = (long)i; /* the outermost: frames outside it belong to the loop */
    if (rc < 0)
        return rc;
    if (frame < 0) {
        t->error = "its coroutine's frame is not on its thread's stack (it moved on)";
        return 0;
    }
    t->thread_frame = frame;
    t->frames = th->frames;
    t->nframes = (size_t)frame + 1;
    return 0;
}

static bool is_sleep_frame(const struct snap_frame *f)
{
    static const char suffix[] = "/asyncio/tasks.py";
    size_t n = strlen(f->file), m = sizeof(suffix) - 1;

    return strcmp(f->function, "sleep") == 0 && n >= m && strcmp(f->file + n - m, suffix) == 0;
}

/* What a suspended task waits for: fut_waiter, else whatever its chain ended at. */
static int task_awaits(struct tasks_ctx *x, const struct tasks_hdr *h,
                       const struct tasks_chain_end *end, struct snap_task *t, struct ps_err *err)
{
    uint64_t target = h->fut_waiter ? h->fut_waiter : end->obj;
    const struct tasks_type *ty = NULL;
    int rc;

    if (target == 0)
        return 0;
    rc = tasks_kind_of(x, target, &ty, err);
    if (rc < 0)
        return rc;
    t->awaits_addr = target;
    t->awaits_type = snap_strdup(x->s, ty->name);
    if (ty->kind == TK_TASK)
        t->awaits = SNAP_AWAIT_TASK;
    else if (ty->kind == TK_FUTURE || ty->kind == TK_GATHER)
        t->awaits =
            t->nframes > 0 && is_sleep_frame(&t->frames[0]) ? SNAP_AWAIT_SLEEP : SNAP_AWAIT_FUTURE;
    else
        t->awaits = SNAP_AWAIT_OTHER;
    return t->awaits_type ? 0 : ps_err_set(err, -ENOMEM, "out of memory");
}

/* Resolve a listed task (its name is set); per-task read failures become t->error.
 * *taskgroup: the TaskGroup its chain waits in, 0 if none. */
static int task_resolve(struct tasks_ctx *x, const struct tasks_hdr *h, struct snap_task *t,
                        uint64_t *taskgroup, struct ps_err *err)
{
    struct tasks_chain_end end = {0};
    int rc;

    t->addr = h->addr;
    t->loop_addr = h->loop;
    t->state = hdr_state(h);
    t->awaits_task = t->thread = t->thread_frame = -1;
    rc = 0;
    if (t->state == SNAP_TASK_RUNNING)
        rc = task_running(x, h, t, err);
    else if (rc == 0 && t->state == SNAP_TASK_PENDING)
        rc = tasks_chain(x, h->coro, t, &end, err);
    if (rc == 0 && t->state == SNAP_TASK_PENDING)
        rc = task_awaits(x, h, &end, t, err);
    *taskgroup = end.taskgroup;
    if (rc < 0 && rc != -ENOMEM && rc != -PS_EGONE) {
        t->error = snap_strdup(x->s, err->msg);
        ps_err_clear(err);
        rc = t->error ? 0 : ps_err_set(err, -ENOMEM, "out of memory");
    }
    return rc;
}

/* ---- await graph ---------------------------------------------------------------------------- */

/* Listed index of the task at addr, -1 when it is not listed. */
static long listed_index(const struct tasks_ctx *x, uint64_t addr)
{
    for (size_t i = 0; i < x->out->ntasks; i++)
        if (x->out->tasks[i].addr == addr)
            return (long)i;
    return -1;
}

static int edge_add(struct tasks_ctx *x, size_t from, long to, const char *via, struct ps_err *err)
{
    struct snap_await_edge *n;

    if (to < 0)
        return 0;
    for (size_t i = 0; i < x->nedges; i++)
        if (x->edges[i].from == from && x->edges[i].to == (size_t)to)
            return 0;
    if (x->nedges == x->capedges) {
        size_t cap = x->capedges ? x->capedges * 2 : 64;

        n = realloc(x->edges, cap * sizeof(*n));
        if (!n)
            return ps_err_set(err, -ENOMEM, "cannot build the await graph: out of memory");
        x->edges = n;
        x->capedges = cap;
    }
    x->edges[x->nedges++] = (struct snap_await_edge){from, (size_t)to, via};
    return 0;
}

/* Children of a TaskGroup (its _tasks set) or of a gather() future (its _children list). */
static int children_edges(struct tasks_ctx *x, size_t from, uint64_t owner, bool gather,
                          struct ps_err *err);

static int graph_build(struct tasks_ctx *x, const uint64_t *taskgroups, struct ps_err *err)
{
    int rc = 0;

    for (size_t i = 0; rc == 0 && i < x->out->ntasks; i++) {
        const struct snap_task *t = &x->out->tasks[i];

        if (t->awaits == SNAP_AWAIT_TASK) {
            x->out->tasks[i].awaits_task = listed_index(x, t->awaits_addr);
            rc = edge_add(x, i, t->awaits_task, "await", err);
        }
        if (rc == 0 && taskgroups[i] != 0)
            rc = children_edges(x, i, taskgroups[i], false, err);
        if (rc == 0 && t->awaits_type &&
            strcmp(t->awaits_type, "asyncio.tasks._GatheringFuture") == 0)
            rc = children_edges(x, i, t->awaits_addr, true, err);
    }
    return rc;
}

/* A list's items (PyList_Type checked), at most max. */
static int list_items(struct tasks_ctx *x, uint64_t list, uint64_t *items, size_t max, size_t *n,
                      struct ps_err *err)
{
    uint64_t type = 0, size = 0, arr = 0;
    int rc = pyobj_type(x->c, list, &type, err);

    if (rc == 0 && (type != x->c->syms->list_type || !LAYOUT_HAS(x->lay, list_items)))
        return ps_err_set(err, -PS_ECORRUPT, "gather()'s _children is not a list");
    if (rc == 0)
        rc = memsrc_read_u64(x->c->src, list + (uint64_t)x->lay->varobject_size, &size, err);
    if (rc == 0)
        rc = memsrc_read_u64(x->c->src, list + (uint64_t)x->lay->list_items, &arr, err);
    *n = size < max ? (size_t)size : max;
    if (rc == 0 && *n > 0)
        rc = memsrc_read(x->c->src, arr, items, *n * 8, err);
    return rc;
}

/* The keys of a small set (a TaskGroup's _tasks), at most max. */
static int set_keys(struct tasks_ctx *x, uint64_t set, uint64_t *keys, size_t max, size_t *n,
                    struct ps_err *err)
{
    uint64_t type = 0, mask = 0, table = 0;
    uint8_t ent[16];
    int rc = pyobj_type(x->c, set, &type, err);

    *n = 0;
    if (rc == 0 && type != x->c->syms->set_type)
        return ps_err_set(err, -PS_ECORRUPT, "a TaskGroup's _tasks is not a set");
    if (rc == 0)
        rc = memsrc_read_u64(x->c->src, set + (uint64_t)x->lay->set_mask, &mask, err);
    if (rc == 0)
        rc = memsrc_read_u64(x->c->src, set + (uint64_t)x->lay->set_table, &table, err);
    for (uint64_t i = 0; rc == 0 && i <= mask && i < TASKS_MAX_CHILDREN && *n < max; i++) {
        rc = memsrc_read(x->c->src, table + i * 16, ent, sizeof(ent), err);
        if (rc == 0 && le64(ent) != 0)
            keys[(*n)++] = le64(ent);
    }
    return rc;
}

static int children_edges(struct tasks_ctx *x, size_t from, uint64_t owner, bool gather,
                          struct ps_err *err)
{
    uint64_t *kids = malloc(TASKS_MAX_CHILDREN * sizeof(*kids)), coll = 0;
    size_t n = 0;
    int rc;

    if (!kids)
        return ps_err_set(err, -ENOMEM, "out of memory");
    rc = pyobj_instance_attr(x->c, owner, gather ? "_children" : "_tasks", &coll, err);
    if (rc == 0)
        rc = gather ? list_items(x, coll, kids, TASKS_MAX_CHILDREN, &n, err)
                    : set_keys(x, coll, kids, TASKS_MAX_CHILDREN, &n, err);
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = edge_add(x, from, listed_index(x, kids[i]), gather ? "gather" : "taskgroup", err);
    free(kids);
    if (rc < 0 && rc != -ENOMEM && rc != -PS_EGONE) { /* a torn group: no edges, no failure */
        ps_err_clear(err);
        rc = 0;
    }
    return rc;
}

/* Tarjan's strongly connected components, iteratively; tasks in a component of two or more
 * (or with an edge to themselves) are on a cycle. adj is CSR: start[v]..start[v+1]. */
struct scc {
    size_t *start, *adj, *index, *low, *stack, *cs_node, *cs_edge;
    bool *on;
    size_t sp, csp, counter;
};

#define SCC_UNSET SIZE_MAX

static void scc_enter(struct scc *g, size_t v)
{
    g->index[v] = g->low[v] = g->counter++;
    g->stack[g->sp++] = v;
    g->on[v] = true;
    g->cs_node[g->csp] = v;
    g->cs_edge[g->csp++] = g->start[v];
}

static void scc_close(struct scc *g, size_t v, struct snap_task *tasks)
{
    size_t size = 0, top = g->sp;
    bool self = false;

    for (size_t e = g->start[v]; e < g->start[v + 1]; e++)
        self = self || g->adj[e] == v;
    do
        size++;
    while (g->stack[--top] != v);
    for (size_t i = top; i < g->sp; i++) {
        g->on[g->stack[i]] = false;
        tasks[g->stack[i]].in_cycle = size > 1 || self;
    }
    g->sp = top;
}

static void scc_run(struct scc *g, size_t n, struct snap_task *tasks)
{
    for (size_t root = 0; root < n; root++) {
        if (g->index[root] != SCC_UNSET)
            continue;
        scc_enter(g, root);
        while (g->csp > 0) {
            size_t v = g->cs_node[g->csp - 1], e = g->cs_edge[g->csp - 1];

            if (e < g->start[v + 1]) {
                size_t w = g->adj[e];

                g->cs_edge[g->csp - 1]++;
                if (g->index[w] == SCC_UNSET)
                    scc_enter(g, w);
                else if (g->on[w] && g->index[w] < g->low[v])
                    g->low[v] = g->index[w];
                continue;
            }
            g->csp--;
            if (g->low[v] == g->index[v])
                scc_close(g, v, tasks);
            if (g->csp > 0 && g->low[v] < g->low[g->cs_node[g->csp - 1]])
                g->low[g->cs_node[g->csp - 1]] = g->low[v];
        }
    }
}

static int graph_cycles(struct tasks_ctx *x, struct ps_err *err)
{
    size_t n = x->out->ntasks, m = x->nedges;
    size_t *mem = calloc(7 * n + 1 + m + 1, sizeof(size_t));
    bool *on = calloc(n ? n : 1, sizeof(bool));
    struct scc g = {0};

    if (!mem || !on) {
        free(mem);
        free(on);
        return ps_err_set(err, -ENOMEM, "cannot check the await graph: out of memory");
    }
    g.start = mem;
    g.adj = g.start + n + 1;
    g.index = g.adj + m + 1;
    g.low = g.index + n;
    g.stack = g.low + n;
    g.cs_node = g.stack + n;
    g.cs_edge = g.cs_node + n;
    g.on = on;
    for (size_t e = 0; e < m; e++)
        g.start[x->edges[e].from + 1]++;
    for (size_t v = 0; v < n; v++) {
        g.start[v + 1] += g.start[v];
        g.index[v] = SCC_UNSET;
    }
    for (size_t e = 0, *fill = g.cs_edge; e < m; e++) /* cs_edge doubles as fill cursors */
        g.adj[g.start[x->edges[e].from] + fill[x->edges[e].from]++] = x->edges[e].to;
    memset(g.cs_edge, 0, n * sizeof(size_t));
    scc_run(&g, n, x->out->tasks);
    free(mem);
    free(on);
    return 0;
}

static int graph_store(struct tasks_ctx *x, struct ps_err *err)
{
    x->out->edges = snap_alloc(x->s, (x->nedges ? x->nedges : 1) * sizeof(*x->out->edges));
    if (!x->out->edges)
        return ps_err_set(err, -ENOMEM, "cannot store the await graph: out of memory");
    if (x->nedges)
        memcpy(x->out->edges, x->edges, x->nedges * sizeof(*x->edges));
    x->out->nedges = x->nedges;
    return 0;
}

/* ---- the whole collection ------------------------------------------------------------------- */

/* A listed task before it is resolved: sorted by rank, then name, then address. */
struct pick {
    size_t hdr;
    int rank;
    const char *name;
    uint64_t addr;
};

static int cmp_pick(const void *a, const void *b)
{
    const struct pick *p = a, *q = b;
    int r = p->rank - q->rank;

    if (r == 0)
        r = strcmp(p->name, q->name);
    return r != 0 ? r : (p->addr < q->addr ? -1 : p->addr > q->addr);
}

/* Names first (they order the listing), then everything else in listing order. */
static int resolve_listed(struct tasks_ctx *x, struct ps_err *err)
{
    size_t n = x->out->ntasks;
    struct pick *picks = calloc(n ? n : 1, sizeof(*picks));
    uint64_t *groups = calloc(n ? n : 1, sizeof(*groups));
    int rc = 0;

    if (!picks || !groups) {
        free(picks);
        free(groups);
        return ps_err_set(err, -ENOMEM, "cannot list tasks: out of memory");
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const struct tasks_hdr *h = &x->hdrs[x->sel[i]];

        rc = task_name(x, h, &x->out->tasks[i], err);
        picks[i] =
            (struct pick){x->sel[i], state_rank(hdr_state(h)), x->out->tasks[i].name, h->addr};
    }
    if (rc == 0)
        qsort(picks, n, sizeof(*picks), cmp_pick);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        x->out->tasks[i].name = picks[i].name;
        rc = task_resolve(x, &x->hdrs[picks[i].hdr], &x->out->tasks[i], &groups[i], err);
    }
    if (rc == 0)
        rc = graph_build(x, groups, err);
    free(picks);
    free(groups);
    return rc;
}

static int collect_tasks(struct tasks_ctx *x, const struct tasks_opts *opts, struct ps_err *err)
{
    struct registries r = {0};
    int rc = find_registries(x, &r, err);

    if (rc == 0) /* WeakSet.data: the set of weakrefs (an instance attribute) */
        rc = pyobj_instance_attr(x->c, r.scheduled, "data", &r.scheduled, err);
    if (rc == 0)
        rc = set_scan(x, r.scheduled, true, err);
    if (rc == 0 && r.eager != 0)
        rc = set_scan(x, r.eager, false, err);
    if (rc == 0) {
        hdrs_dedup(x);
        rc = hdrs_read(x, err);
    }
    if (rc == 0)
        rc = mark_running(x, r.current, err);
    if (rc == 0)
        rc = count_found(x, err);
    if (rc == 0)
        rc = select_tasks(x, opts->max_tasks, err);
    if (rc == 0)
        rc = resolve_listed(x, err);
    if (rc == 0)
        rc = graph_cycles(x, err);
    if (rc == 0)
        rc = graph_store(x, err);
    return rc;
}

int tasks_collect(const struct pyctx *c, struct snap *s, const struct tasks_opts *opts,
                  struct ps_err *err)
{
    struct tasks_ctx *x = calloc(1, sizeof(*x));
    int rc;

    if (!x)
        return ps_err_set(err, -ENOMEM, "cannot read tasks: out of memory");
    x->c = c;
    x->lay = c->lay;
    x->s = s;
    x->out = snap_alloc(s, sizeof(*x->out));
    if (!x->out) {
        free(x);
        return ps_err_set(err, -ENOMEM, "cannot read tasks: out of memory");
    }
    if (!LAYOUT_HAS(c->lay, task_coro) || !LAYOUT_HAS(c->lay, task_loop))
        rc = ps_err_set(err, -PS_EVERSION,
                        "Python %s has no asyncio task layout in this pyscope: tasks cannot be "
                        "listed",
                        c->lay->name);
    else
        rc = collect_tasks(x, opts, err);
    if (rc < 0 && rc != -ENOMEM && rc != -PS_EGONE) {
        /* The registries are unreadable: data for the dump, not a failure. */
        memset(x->out, 0, sizeof(*x->out));
        x->out->error = snap_strdup(s, err->msg);
        rc = x->out->error ? 0 : -ENOMEM;
        ps_err_clear(err);
    }
    if (rc == 0)
        s->tasks = x->out;
    free(x->hdrs);
    free(x->sel);
    free(x->edges);
    free(x);
    return rc;
}
