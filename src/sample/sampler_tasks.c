/* SPDX-License-Identifier: MIT */
/*
 * record --tasks: attribute samples to the asyncio task running them. At every re-list the
 * tasks module lists the target's tasks (tasks_collect into a throwaway snapshot, at most
 * SAMPLER_TASKS_MAX, running ones first) and we keep, sorted, each task's coroutine address
 * (its task_coro field, read in one scatter read) with its name. A walked stack's coroutine
 * frames (owned by a generator: the frame lives inside its coroutine object, at coro + gen_iframe) are
 * looked up innermost first; the first hit is the running task (an eager task started inside
 * another one is the innermost), and the stack is counted under a "task: NAME" node between
 * the thread's base and its frames. A task created after the last re-list is attributed from
 * the next one on (at most SAMPLER_RELIST_MS late). Memory: the fixed table only.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pyscope/snap.h"
#include "pyscope/tasks.h"
#include "sampler_int.h"

static int cmp_stask(const void *a, const void *b)
{
    const struct stask *p = a, *q = b;

    return p->coro < q->coro ? -1 : p->coro > q->coro;
}

/* Read the coroutine of each listed task (one scatter read); unreadable ones are dropped. */
static int map_fill(struct sampler *s, const struct snap_tasks *st, struct ps_err *err)
{
    size_t n = st->ntasks < SAMPLER_TASKS_MAX ? st->ntasks : SAMPLER_TASKS_MAX, out = 0;
    struct memsrc_iov iov[SAMPLER_TASKS_MAX]; /* 16 KiB; <= MEMSRC_MAX_IOV ranges */
    int rc;

    for (size_t i = 0; i < n; i++) {
        s->tasks[i].coro = 0;
        iov[i] = (struct memsrc_iov){st->tasks[i].addr + (uint64_t)s->cx.lay->task_coro,
                                     &s->tasks[i].coro, 8};
    }
    rc = n ? memsrc_readv(s->cx.src, iov, n, err) : 0;
    if (rc < 0) {
        s->ntasks = 0;
        return rc == -PS_EGONE || rc == -ENOMEM ? rc : (ps_err_clear(err), 0);
    }
    for (size_t i = 0; i < n; i++) {
        struct stask *t = &s->tasks[out];

        t->coro = s->tasks[i].coro;
        if (t->coro == 0 || (t->coro & 7) != 0)
            continue;
        (void)snprintf(t->name, sizeof(t->name), "task: %s",
                       st->tasks[i].name ? st->tasks[i].name : "?");
        out++;
    }
    s->ntasks = out;
    qsort(s->tasks, out, sizeof(*s->tasks), cmp_stask);
    return 0;
}

int sampler_tasks_refresh(struct sampler *s, struct ps_err *err)
{
    struct tasks_opts o = {.max_tasks = SAMPLER_TASKS_MAX};
    struct snap *sn = NULL;
    int rc;

    s->ntasks = 0;
    if (!s->tasks || !LAYOUT_HAS(s->cx.lay, task_coro) || !LAYOUT_HAS(s->cx.lay, gen_iframe))
        return 0;
    rc = snap_new(&sn, err);
    if (rc == 0)
        rc = tasks_collect(&s->cx, sn, &o, err);
    if (rc == 0 && sn->tasks && !sn->tasks->error)
        rc = map_fill(s, sn->tasks, err);
    snap_free(sn);
    return rc;
}

static const struct stask *task_of(const struct sampler *s, uint64_t coro)
{
    struct stask key = {.coro = coro};

    return bsearch(&key, s->tasks, s->ntasks, sizeof(*s->tasks), cmp_stask);
}

uint32_t sampler_tasks_base(struct sampler *s, const struct sthread *t)
{
    uint64_t off = (uint64_t)s->cx.lay->gen_iframe;
    const struct stask *k = NULL;
    uint32_t f;

    for (size_t i = 0; s->ntasks && i < s->st.n && !k; i++)
        if (s->st.frames[i].owner == (uint8_t)s->cx.lay->frame_owner_generator &&
            s->st.frames[i].frame_addr > off)
            k = task_of(s, s->st.frames[i].frame_addr - off);
    if (!k)
        return t->base_node;
    f = profile_frame_intern(s->prof, k->name, "", -1);
    f = profile_add_below(s->prof, t->base_node, &f, 1, 0);
    return f == PROFILE_NONE ? t->base_node : f;
}
