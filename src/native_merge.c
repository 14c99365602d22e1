/* SPDX-License-Identifier: MIT */
/*
 * Native stacks, part 3 (see native.h): one thread's native stack into the snapshot, merged with
 * its Python frames, and the GIL-wait verdict.
 *
 * The merge is pure arithmetic on the snapshot (unit-tested without a target): the k-th frame of
 * _PyEval_EvalFrameDefault on the C stack, innermost first, runs the k-th run of Python frames,
 * where a run ends at (and includes) a frame flagged is_entry. A mismatch in counts links
 * nothing and is reported; it never hides the Python stack.
 */
#include "native_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The interpreter's evaluation function (3.11-3.13), including GCC's split ".cold" part. */
#define NATIVE_EVAL_SYMBOL "_PyEval_EvalFrameDefault"
/* The GIL acquisition function (Python/ceval_gil.c, 3.11-3.13; static, so from .symtab). */
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

int native_merge(struct snap_thread *t, struct ps_err *err)
{
    size_t evals = 0, runs = count_runs(t), next = 0;

    for (size_t i = 0; i < t->nnative; i++) {
        t->native[i].python_frame = -1;
        if (sym_is(t->native[i].symbol, NATIVE_EVAL_SYMBOL))
            evals++;
    }
    if (evals != runs)
        return ps_err_set(err, -PS_ECORRUPT,
                          "cannot merge the stacks: %zu evaluation calls on the C stack but %zu "
                          "runs of Python frames (the thread may be entering or leaving Python)",
                          evals, runs);
    for (size_t i = 0; i < t->nnative; i++) {
        if (!sym_is(t->native[i].symbol, NATIVE_EVAL_SYMBOL))
            continue;
        t->native[i].python_frame = (int)next;
        next = run_end(t, next);
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
    if (rc == 0 && urc == 0 && native_merge(t, &why) < 0)
        urc = why.code;
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
