/* SPDX-License-Identifier: MIT */
/*
 * record --native: each sampled thread's C stack, merged with its Python frames the way dump
 * --native merges them (native.h's rule: the k-th _PyEval_EvalFrameDefault call, outermost
 * first here, runs the k-th run of Python frames, a run ending at an is_entry frame). Only in
 * blocking mode: the threads are seized and stopped by the tick (sample_stopped) on this very
 * thread, as libunwind's ptrace accessors need.
 *
 * Symbolizing is the cost: a direct-mapped cache of SAMPLER_NATIVE_CACHE pcs -> profile frame
 * ids avoids it for the pcs seen before. Symbol strings live in a scratch snapshot that is
 * renewed, with the cache, every SAMPLER_NATIVE_CACHE misses and when the profile is reset:
 * memory stays flat.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pyscope/native.h"
#include "pyscope/snap.h"
#include "sampler_int.h"

#define SAMPLER_NATIVE_CACHE 4096
#define NATIVE_EVAL_SYMBOL   "_PyEval_EvalFrameDefault"

struct pc_slot {
    uint64_t pc; /* pc + 1 when innermost (its own lookup), 0 = empty */
    uint32_t id;
    bool eval;
};

struct snative {
    struct native_ctx *ctx;
    struct snap *scratch;
    struct pc_slot cache[SAMPLER_NATIVE_CACHE];
    size_t misses;
    uint64_t generation;
    uint64_t pcs[NATIVE_MAX_DEPTH];
    bool eval[NATIVE_MAX_DEPTH];
    uint32_t out[NATIVE_MAX_DEPTH + WALK_MAX_DEPTH + 1];
};

int sampler_native_open(struct sampler *s, struct ps_err *err)
{
    char root[64];
    struct native_opts no = {.file_root = root};
    struct snative *x = calloc(1, sizeof(*x));
    int rc;

    if (!x)
        return ps_err_set(err, -ENOMEM, "out of memory creating the native unwinder");
    (void)snprintf(root, sizeof(root), "/proc/%d/root", (int)s->pp->pid);
    s->native = x;
    x->generation = profile_generation(s->prof);
    rc = snap_new(&x->scratch, err);
    if (rc == 0)
        rc = native_open_live(s->pp->pid, &s->pp->maps, s->pp->src, &no, &x->ctx, err);
    return rc;
}

void sampler_native_close(struct sampler *s)
{
    if (!s->native)
        return;
    native_close(s->native->ctx);
    snap_free(s->native->scratch);
    free(s->native);
    s->native = NULL;
}

/* Empty the cache (and the strings behind it) when full of misses or the profile was reset. */
static void cache_renew(struct sampler *s)
{
    struct snative *x = s->native;
    struct snap *fresh = NULL;
    struct ps_err e = {0};
    uint64_t g = profile_generation(s->prof);

    if (x->misses < SAMPLER_NATIVE_CACHE && g == x->generation)
        return;
    if (snap_new(&fresh, &e) < 0)
        return; /* keep the old arena: it still works, only grows */
    snap_free(x->scratch);
    x->scratch = fresh;
    memset(x->cache, 0, sizeof(x->cache));
    x->misses = 0;
    x->generation = g;
}

static int frame_of(struct sampler *s, uint64_t pc, bool innermost, uint32_t *id, bool *eval)
{
    struct snative *x = s->native;
    uint64_t key = pc + (innermost ? 1 : 0);
    struct pc_slot *slot = &x->cache[(key >> 2) % SAMPLER_NATIVE_CACHE];
    struct snap_native_frame f = {0};
    struct ps_err e = {0};
    char name[48];

    if (slot->pc == key && key != 0) {
        *id = slot->id;
        *eval = slot->eval;
        return 0;
    }
    x->misses++;
    if (native_symbolize(x->ctx, pc, innermost, x->scratch, &f, &e) < 0)
        return -ENOMEM;
    (void)snprintf(name, sizeof(name), "0x%llx", (unsigned long long)pc);
    *eval = f.symbol && strncmp(f.symbol, NATIVE_EVAL_SYMBOL, strlen(NATIVE_EVAL_SYMBOL)) == 0;
    *id = profile_frame_intern(s->prof, f.symbol ? f.symbol : name, f.module, -1);
    *slot = (struct pc_slot){.pc = key, .id = *id, .eval = *eval};
    return 0;
}

/* Python runs (outermost first) in s->st.frames, innermost first: count them. */
static size_t count_runs(const struct sampler *s)
{
    size_t runs = 0;
    bool open = false;

    for (size_t i = 0; i < s->st.n; i++) {
        open = true;
        if (s->st.frames[i].is_entry) {
            runs++;
            open = false;
        }
    }
    return runs + (open ? 1 : 0);
}

/* Merge pcs[0..np) (innermost first) with s->ids[0..n) (outermost first) into x->out. */
static size_t merge(struct sampler *s, size_t np, size_t n)
{
    struct snative *x = s->native;
    size_t out = 0, py = 0;

    for (size_t i = np; i-- > 0;) {
        if (!x->eval[i]) {
            x->out[out++] = (uint32_t)x->pcs[i]; /* the frame id, see sampler_native_stack */
            continue;
        }
        /* This evaluation call runs Python frames from py up to the next is_entry, inclusive
         * (s->ids is outermost first, s->st.frames innermost first). */
        while (py < n) {
            bool entry_next = py + 1 < n && s->st.frames[n - 2 - py].is_entry;

            x->out[out++] = s->ids[py++];
            if (entry_next)
                break;
        }
    }
    return out;
}

const uint32_t *sampler_native_stack(struct sampler *s, const struct sthread *t, size_t *n)
{
    struct snative *x = s->native;
    size_t np = 0, evals = 0;
    struct ps_err e = {0};
    int rc;

    if (!x || *n != s->st.n)
        return s->ids;
    cache_renew(s);
    rc = native_unwind_thread(x->ctx, (pid_t)t->ts.native_id, x->pcs, NATIVE_MAX_DEPTH, &np, &e);
    if ((rc < 0 && rc != -PS_ECORRUPT) || np == 0)
        return s->ids;
    for (size_t i = 0; i < np; i++) {
        uint32_t id = 0;

        if (frame_of(s, x->pcs[i], i == 0, &id, &x->eval[i]) < 0)
            return s->ids;
        x->pcs[i] = id;
        evals += x->eval[i];
    }
    if (evals != count_runs(s))
        return s->ids;
    *n = merge(s, np, *n);
    return x->out;
}
