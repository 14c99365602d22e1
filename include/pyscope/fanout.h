/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_FANOUT_H
#define PYSCOPE_FANOUT_H

/*
 * fanout: run one command per Python process of a tree (`exceptions --subprocesses`), each in
 * its own forked pyscope process, and merge their output lines into ours.
 *
 * Why processes: a tracer holds its target through ptrace from one thread (target.h: one target
 * at a time per process), and a process that is SIGKILLed must take only its own targets' traces
 * with it. A forked process per traced process gives every mechanism (bpf, perf, debugreg) the
 * same one-target code path, its own guard (guard.h) and its own clean exit.
 *
 * Every FANOUT_SCAN_MS the root and its descendants (subproc_descendants: children of children,
 * through shells) are listed; each one not yet followed is opened with pyproc_open and, when
 * it is a supported CPython, followed: fn(arg, pid, remaining) runs in a forked child whose
 * stdout is a pipe to us, and that child exits with fn's return value. A process that is not
 * Python yet (forked, runtime starting) is tried again at the next scans, FANOUT_TRIES in
 * all. Each child's stdout is copied to ours whole lines at a time (a line never mixes two
 * processes' output); its stderr is ours. A child that ends (its target exited) is reaped; a
 * pid is followed at most once while it lives (a respawned worker has a new pid and is followed
 * anew).
 *
 * The run is a session loop (evloop.h): it ends when the root is gone, when duration_s has
 * passed (0: no limit; each child is given what is left of it, so it ends on its own with
 * reason "duration"), on a stop signal (SIGINT, SIGTERM, SIGHUP, SIGQUIT: EVLOOP_SIG_STOP, taken
 * through the loop's signalfd; the caller holds them from the start, cli_hold_stop_signals), or
 * when our stdout fails. Then every child still running gets SIGTERM and its remaining output
 * is copied until it exits (children end their traces cleanly on SIGTERM; a child whose parent
 * dies gets SIGTERM from the kernel, PR_SET_PDEATHSIG). SIGTSTP is left to its default action
 * (the children, holding targets, take it themselves).
 *
 * Memory: FANOUT_MAX children, each with a FANOUT_LINE_MAX line buffer; FANOUT_SCAN_MAX
 * remembered pids. More Python processes than FANOUT_MAX at once are counted, not followed.
 */

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pyscope/err.h"

#define FANOUT_MAX      64
#define FANOUT_SCAN_MS  50
#define FANOUT_SCAN_MAX 1024
#define FANOUT_TRIES    200 /* scans: 10 s for a child's runtime to become readable */
#define FANOUT_LINE_MAX ((size_t)64 * 1024)

/*
 * The command for one process, run in the forked child (stdout: the pipe to the parent; the
 * signal mask the caller had, so its stop signals still blocked; nothing of the loop kept). remaining_s: seconds left of the run (0: no limit).
 * Returns the child's exit code.
 */
typedef int (*fanout_fn)(void *arg, pid_t pid, double remaining_s);

struct fanout_stats {
    uint64_t followed;   /* processes a child was started for */
    uint64_t not_python; /* descendants given up on (not a readable supported CPython) */
    uint64_t over_cap;   /* Python processes not followed: FANOUT_MAX children running */
    uint64_t failed;     /* children that exited with a code other than 0 */
};

/*
 * Follow root's Python tree until one of the ends above; *why gets the reason ("duration",
 * "signal SIGINT", "target exited", "output closed"), *st the counts. Call from main's thread
 * with no thread started and no target attached (the children are forks of this process).
 * Returns 0, or a negative code with err set: the run could not start (-ESRCH: root does not
 * exist; -ENOMEM; evloop_new's errors) or the loop's wait failed (*why "error"; the children
 * were ended all the same).
 */
int fanout_run(pid_t root, double duration_s, fanout_fn fn, void *arg, const char **why,
               struct fanout_stats *st, struct ps_err *err) PS_WARN_UNUSED;

#endif
