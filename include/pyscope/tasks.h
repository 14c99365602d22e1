/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_TASKS_H
#define PYSCOPE_TASKS_H

/*
 * asyncio tasks of a Python process (dump --tasks): every task of every event loop, its name and
 * state, the coroutine chain it is suspended in (following `await` into nested coroutines,
 * generators and async generators), what it awaits, where the running task sits in its thread's
 * stack, and the await graph between tasks with its cycles (deadlocks).
 *
 * Found through asyncio's own registries (CPYTHON.md section 6): asyncio.tasks._scheduled_tasks
 * (3.11: _all_tasks), a WeakSet; _eager_tasks (3.12+), a set; _current_tasks, a dict loop ->
 * running task. Only C tasks (_asyncio.Task) are listed: Python subclasses are missed.
 *
 * Bounds: at most TASKS_MAX_SCAN registry slots are scanned and TASKS_MAX_FOUND tasks counted;
 * at most opts->max_tasks tasks are resolved and listed (running first, then pending, then done
 * and cancelled, each group by name); chains stop at TASKS_MAX_CHAIN coroutines; a TaskGroup's or
 * gather()'s children are read up to TASKS_MAX_CHILDREN. Racy while the loop runs (a task may
 * move between reads): every object is type-checked and a chain that cannot be read is that
 * task's error, never the dump's.
 */

#include <stddef.h>

#include "pyscope/err.h"
#include "pyscope/pyctx.h"
#include "pyscope/snap.h"

#define TASKS_DEFAULT_MAX  200
#define TASKS_MAX_MAX      100000
#define TASKS_MAX_CHAIN    64
#define TASKS_MAX_SCAN     (1u << 20) /* registry slots: a 16 MiB set table */
#define TASKS_MAX_FOUND    (1u << 18) /* 56 bytes each: at most 14 MiB of headers */
#define TASKS_MAX_CHILDREN 4096

struct tasks_opts {
    size_t max_tasks; /* tasks resolved and listed, 1..TASKS_MAX_MAX */
};

/*
 * Read the target's asyncio tasks into s->tasks (allocated in s's arena). s->threads must be
 * filled already (the running task is placed in its loop's thread stack). A target without
 * asyncio, or with registries that cannot be read, gets s->tasks->error (one sentence) and no
 * tasks: that is data, not a failure. Errors: -ENOMEM, -PS_EGONE (the target exited).
 * Owner thread of c's process only; c->codes must be set.
 */
int tasks_collect(const struct pyctx *c, struct snap *s, const struct tasks_opts *opts,
                  struct ps_err *err) PS_WARN_UNUSED;

/* "pending", "running", "done", "cancelled"; never NULL. */
const char *tasks_state_name(enum snap_task_state state);

/* "none", "task", "future", "sleep", "other"; never NULL. */
const char *tasks_await_name(enum snap_await_kind kind);

#endif
