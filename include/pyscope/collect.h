/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_COLLECT_H
#define PYSCOPE_COLLECT_H

/*
 * Taking one snapshot of a Python process: every thread of every interpreter with its resolved
 * Python stack, name, GIL ownership and OS state, plus process facts. This is what `pyscope
 * dump` prints.
 *
 * Consistency: without stopping the target, a thread's stack is walked, then its current frame
 * and instruction are read again; if they moved, the walk is repeated, up to `retries` times,
 * after which the thread is reported INCONSISTENT with what the last attempt read rather than a
 * torn stack being passed off as real. With `blocking`, every thread is stopped
 * (PTRACE_SEIZE + PTRACE_INTERRUPT) for the read and resumed and detached before this returns,
 * on every path.
 */

#include <stdbool.h>
#include <stddef.h>

#include "pyscope/err.h"
#include "pyscope/pyproc.h"
#include "pyscope/snap.h"

#define COLLECT_DEFAULT_RETRIES 8
#define COLLECT_MAX_RETRIES     100

struct native_ctx; /* native.h */

struct collect_opts {
    bool blocking; /* stop the threads while reading */
    /* without blocking: when a thread's stack keeps changing under every read (inconsistent
     * or partial), take the whole snapshot again with the threads stopped (snap.blocking and
     * snap.blocking_auto say it happened). The caller must be ready to stop the target (signal
     * teardown installed), as for blocking. */
    bool blocking_auto;
    int retries; /* consistency retries per thread (0..COLLECT_MAX_RETRIES) */
    /* --native: unwind each thread's C stack through this context (borrowed; a live target
     * needs blocking, as threads must be stopped to unwind), NULL for none */
    struct native_ctx *native;
    /* --locals: each frame's arguments, locals, cells and free variables (locals.h) */
    bool locals;
    /* --tasks: asyncio tasks into snap->tasks (tasks.h), at most max_tasks listed */
    bool tasks;
    size_t max_tasks;
    /* dump: also list every OS thread that has no Python thread state (threads C code started),
     * after the Python threads, by kernel TID. A live target's come from /proc/PID/task (read
     * while stopped in blocking mode); any other source's are tids[0..ntids) (a core's thread
     * notes; borrowed). At most WALK_MAX_THREADS threads in all. */
    bool os_threads;
    const pid_t *tids;
    size_t ntids;
};

/*
 * Take a snapshot. On success *out is owned by the caller (snap_free). A thread whose stack
 * cannot be read is data (status ERROR/INCONSISTENT/PARTIAL with a sentence), not a failure of the
 * whole call. Errors: -PS_EGONE (the target exited), -PS_EPERM (blocking mode could not stop
 * the target; diagnosed), -ENOMEM, -PS_ECORRUPT (the thread list itself is unreadable).
 */
int collect_snapshot(struct pyproc *pp, const struct collect_opts *opts, struct snap **out,
                     struct ps_err *err) PS_WARN_UNUSED;

#endif
