/* SPDX-License-Identifier: MIT */
/*
 * Native stacks, part 3 (see native.h): one thread's native stack into the snapshot, merged with
 * its Python frames, and the GIL-wait verdict.
 *
 * The merge is pure arithmetic on the snapshot (unit-tested without a target): the k-th frame of
 * _PyEval_EvalFrameDefault on the C stack, innermost first, runs the k-th run of Python frames,
 * where a run ends at (and includes) a frame flagged is_entry. An OS thread running nested
 * interpreters has one thread state per interpreter, each with its own runs: they are taken in
 * the order their eval calls sit on the C stack (struct snap_thread.c_anchor), innermost first.
 * A mismatch in counts links nothing and is reported; it never hides the Python stack.
 */
#include "native_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The interpreter's evaluation function, including GCC's split ".cold" part. */
#define NATIVE_EVAL_SYMBOL "_PyEval_EvalFrameDefault"
/* The GIL acquisition function (Python/ceval_gil.c; static, so from .symtab). */
#define NATIVE_GIL_SYMBOL "take_gil"

static bool sym_is(const char *sym, const char *name)
{
    size_t len = strlen(name);

    return sym && strncmp(sym, name, len) == 0 && (sym[len] == '\0' || sym[len] == '.');
}

/* Python frames from `from` to the end of its run (the next is_entry frame, inclusive). */
static size_t run_end(const struct snap_thread *t, size_t from)
{
    size_t i = from;

    while (i < t->nframes && !t->frames[i].is_entry)
        i++;
    return i < t->nframes ? i + 1 : t->nframes;
}

static size_t count_runs(const struct snap_thread *t)
{
    size_t runs = 0;

    for (size_t i = 0; i < t->nframes; i = run_end(t, i))
        runs++;
    return runs;
}

/* The thread states sharing t's OS thread (nested interpreters), t included, innermost first. */
struct nest {
    size_t n;
    size_t idx[NATIVE_MAX_NEST]; /* indexes in the snapshot's threads */
};

static bool eval_frame(const struct snap_native_frame *f)
{
    return sym_is(f->symbol, NATIVE_EVAL_SYMBOL);
}

/* Link t's eval calls, innermost first, to the runs of ts[nest.idx[0]], then of the next ... */
static int merge_nest(struct snap_thread *t, const struct snap_thread *ts, const struct nest *nest,
                      size_t self, struct ps_err *err)
{
    size_t evals = 0, runs = 0, k = 0, next = 0;

    for (size_t i = 0; i < t->nnative; i++) {
        t->native[i].python_frame = t->native[i].nested_thread = t->native[i].nested_frame = -1;
        evals += eval_frame(&t->native[i]);
    }
    for (size_t j = 0; j < nest->n; j++)
        runs += count_runs(&ts[nest->idx[j]]);
    if (evals != runs)
        return ps_err_set(err, -PS_ECORRUPT,
                          "cannot merge the stacks: %zu evaluation calls on the C stack but %zu "
                          "runs of Python frames%s (the thread may be entering or leaving Python)",
                          evals, runs, nest->n > 1 ? " in its nested interpreters" : "");
    for (size_t i = 0; i < t->nnative; i++) {
        const struct snap_thread *owner;

        if (!eval_frame(&t->native[i]))
            continue;
        while (k + 1 < nest->n && next >= ts[nest->idx[k]].nframes) { /* next run */
            k++;
            next = 0;
        }
        owner = &ts[nest->idx[k]];
        if (nest->idx[k] == self) {
            t->native[i].python_frame = (int)next;
        } else {
            t->native[i].nested_thread = (int)nest->idx[k];
            t->native[i].nested_frame = (int)next;
        }
        next = run_end(owner, next);
    }
    return 0;
}

int native_merge(struct snap_thread *t, struct ps_err *err)
{
    struct nest one = {.n = 1, .idx = {0}};

    return merge_nest(t, t, &one, 0, err);
}

/* The thread states on ts[self]'s OS thread, ordered by their C-stack anchors: the deeper
 * (lower address: the stack grows down) runs inside the other. Unknown anchors (no frames)
 * go last; they hold no runs. */
static void find_nest(const struct snap *s, size_t self, struct nest *nest)
{
    const struct snap_thread *ts = s->threads;

    memset(nest, 0, sizeof(*nest));
    for (size_t i = 0; i < s->nthreads && nest->n < NATIVE_MAX_NEST; i++) {
        size_t j;

        if (ts[i].os_only || ts[i].native_id != ts[self].native_id)
            continue;
        for (j = nest->n; j > 0; j--) {
            uint64_t a = ts[nest->idx[j - 1]].c_anchor - 1, b = ts[i].c_anchor - 1; /* 0 last */
            if (a <= b)
                break;
            nest->idx[j] = nest->idx[j - 1];
        }
        nest->idx[j] = i;
        nest->n++;
    }
}

int native_merge_snapshot(struct snap *s, struct ps_err *err)
{
    for (size_t i = 0; i < s->nthreads; i++) {
        struct snap_thread *t = &s->threads[i];
        struct ps_err why = {0};
        struct nest nest;

        if (t->nnative == 0 || t->native_error)
            continue;
        find_nest(s, i, &nest);
        if (merge_nest(t, s->threads, &nest, i, &why) == 0)
            continue;
        t->native_error = snap_strdup(s, why.msg);
        if (!t->native_error)
            return ps_err_set(err, -ENOMEM, "out of memory");
    }
    return 0;
}

bool native_waits_for_gil(const struct snap_thread *t)
{
    for (size_t i = 0; i < t->nnative; i++)
        if (sym_is(t->native[i].symbol, NATIVE_GIL_SYMBOL))
            return true;
    return false;
}

/* Symbolize pcs[0..n) into t->native. */
static int fill_frames(struct native_ctx *ctx, struct snap *s, struct snap_thread *t,
                       const uint64_t *pcs, size_t n, struct ps_err *err)
{
    int rc;

    t->native = snap_alloc(s, (n ? n : 1) * sizeof(*t->native));
    if (!t->native)
        return ps_err_set(err, -ENOMEM, "out of memory for native frames");
    for (size_t i = 0; i < n; i++) {
        rc = native_symbolize(ctx, pcs[i], i == 0, s, &t->native[i], err);
        if (rc < 0)
            return rc;
        t->nnative = i + 1;
    }
    return 0;
}

int native_collect_thread(struct native_ctx *ctx, struct snap *s, struct snap_thread *t,
                          struct ps_err *err)
{
    uint64_t *pcs = calloc(NATIVE_MAX_DEPTH, sizeof(*pcs));
    struct ps_err why = {0};
    size_t n = 0;
    int rc, urc;

    if (!pcs)
        return ps_err_set(err, -ENOMEM, "out of memory for native frames");
    urc = native_unwind_thread(ctx, t->native_id, pcs, NATIVE_MAX_DEPTH, &n, &why);
    rc = urc == -ENOMEM ? ps_err_set(err, -ENOMEM, "%s", why.msg) : 0;
    if (rc == 0)
        rc = fill_frames(ctx, s, t, pcs, n, err);
    if (rc == 0 && urc < 0) {
        t->native_error = snap_strdup(s, why.msg);
        rc = t->native_error ? 0 : ps_err_set(err, -ENOMEM, "out of memory");
    }
    if (rc == 0 && native_waits_for_gil(t)) {
        t->activity = snap_strdup(s, "waiting for the GIL");
        rc = t->activity ? 0 : ps_err_set(err, -ENOMEM, "out of memory");
    }
    free(pcs);
    return rc;
}
