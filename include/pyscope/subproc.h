/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_SUBPROC_H
#define PYSCOPE_SUBPROC_H

/*
 * subproc: follow the Python descendants of a sampled process (`record --subprocesses`).
 *
 * Every SUBPROC_SCAN_MS the descendants of the root pid are listed from
 * /proc/PID/task/TID/children (children of children too, through non-Python processes such as
 * a shell), at most SUBPROC_SCAN_MAX processes. Each new one is opened with pyproc_open; when it
 * is a supported CPython, a sampler (sampler.h) is started for it, filling the SAME profile as
 * the root's, with its own process frame ("process PID NAME") as the outermost frame of every
 * stack, so the output has one root per process. A process that is not Python yet (just forked,
 * runtime still starting) is tried again at the next scans, SUBPROC_TRIES times in all, then
 * left alone. subproc_tick, called after every root tick (sampler_opts.on_tick), samples every
 * followed child once; a child that exits is closed and its samples stay in the profile. A
 * descendant that exec()s (same pid, new image: procstat_stat.image changed) is closed and
 * considered anew, so a Python that execs Python, or a shell that execs Python, is sampled
 * under its pid in its new image.
 *
 * Memory: fixed tables of SUBPROC_MAX followed children and SUBPROC_SCAN_MAX remembered pids
 * (the processes seen, so that none is opened twice); each child costs one pyproc and one
 * sampler (their own caps). Children past SUBPROC_MAX are counted, not followed.
 * One owner thread. Never stops or traces anything beyond what each sampler's options say.
 * The root need not be Python (a shell, a supervisor): its sampler is then clock-only
 * (sampler_new with pp NULL) and only its descendants are sampled.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pyscope/err.h"
#include "pyscope/profile.h"
#include "pyscope/sampler.h"

#define SUBPROC_SCAN_MS  50
#define SUBPROC_SCAN_MAX 1024
#define SUBPROC_MAX      64
#define SUBPROC_TRIES    200 /* scans: 10 s for a child's runtime to become readable */

struct subproc;

struct subproc_stats {
    uint64_t followed;   /* children sampled at some point */
    uint64_t active;     /* being sampled now */
    uint64_t not_python; /* descendants given up on (not a readable supported CPython) */
    uint64_t over_cap;   /* Python descendants not followed: SUBPROC_MAX reached */
    uint64_t execs;      /* descendants seen to exec() a new image (opened again) */
    uint64_t samples;    /* samples counted by the children's samplers */
    uint64_t torn, errors;
};

/*
 * Follow the descendants of root into profile p (borrowed; must outlive the group). opts is
 * copied for every child sampler, minus its callbacks (on_status, on_tick), its thread filter
 * stays; the raw-sample callback (on_sample) is kept. No scan happens before the first tick.
 * Errors: -ENOMEM.
 */
int subproc_new(pid_t root, struct profile *p, const struct sampler_opts *opts,
                struct subproc **out, struct ps_err *err) PS_WARN_UNUSED;

/* Close every child's sampler and process handle; NULL-safe. */
void subproc_free(struct subproc *g);

/*
 * Scan for new descendants when due, then take one sample of every followed child. A sampler
 * callback: arg is the group. A child's own failures (it exited, it could not be read) are
 * data, not errors. Errors: -ENOMEM.
 */
int subproc_tick(void *arg, struct ps_err *err) PS_WARN_UNUSED;

/*
 * root, then its descendants breadth first (children of every thread, from
 * /proc/PID/task/TID/children, through non-Python processes too), into out: at most cap pids
 * (root included), in the order found; returns how many were written (0 only when cap is 0).
 * A process that exits meanwhile is skipped. Any thread.
 */
size_t subproc_descendants(pid_t root, pid_t *out, size_t cap);

void subproc_stats_get(const struct subproc *g, struct subproc_stats *out);

struct pyproc;

/* A descendant being tried (subproc's scans and the CLI's fanout remember one per live pid). */
struct subproc_try {
    pid_t pid;
    uint32_t tries;
    bool done; /* followed, over the cap, given up, or gone: never tried again */
};

/* What one try (subproc_try_open) found. */
enum subproc_verdict {
    SUBPROC_DONE,       /* e was done already: nothing tried */
    SUBPROC_PYTHON,     /* a supported CPython: follow it (e->done set) */
    SUBPROC_NOT_PYTHON, /* not a readable supported CPython, or out of tries (e->done set) */
    SUBPROC_GONE,       /* it exited (e->done set) */
    SUBPROC_LATER,      /* not readable yet (forked, runtime starting): try at the next scan */
};

/*
 * One more try at descendant e, the one policy of both followers: unless done, count the try
 * and open e->pid with pyproc_open. SUBPROC_PYTHON: *pp is the open process, the caller's
 * (pp NULL: closed again); a caller that cannot follow it after all may clear e->done to try
 * again. Not Python (-PS_EVERSION), not ours to read (-PS_EPERM) and max_tries used up are
 * final, as is the process's exit; other failures are SUBPROC_LATER. *pp is NULL on any other
 * verdict. Any thread.
 */
enum subproc_verdict subproc_try_open(struct subproc_try *e, uint32_t max_tries,
                                      struct pyproc **pp);

#endif
