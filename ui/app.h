/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_UI_APP_H
#define PYSCOPE_UI_APP_H

/*
 * The TUI's entry point, for src/cli/cli_attach.c (no curses in this header). ui_attach_run takes
 * the terminal, runs the one event loop (timer, signals, keys, sampler, exception tracer) until
 * `q`, a signal, max_frames frames, or an error, and gives the terminal back on every path,
 * with the tracer stopped and the target detached.
 */

#include <stdbool.h>
#include <stdio.h>

#include "pyscope/err.h"
#include "pyscope/pyproc.h"

struct evloop_clock; /* evloop.h */

#define UI_DEFAULT_RATE 100 /* samples per second for the top table */

struct ui_attach_opts {
    long max_frames;    /* exit after this many drawn frames (tests); 0 = until `q` */
    double rate_hz;     /* sampler rate, 1..SAMPLER_MAX_RATE */
    bool no_exceptions; /* start with exception tracing off (`e` turns it on) */
    bool locals;        /* start with locals shown in the stack pane (`v` toggles) */
    bool native;        /* C frames in the stack pane (snapshots stop the threads briefly;
                           skipped while exception tracing holds them) */
    const char *notice; /* shown in the status line from the start (the target's Python
                           workers, pslist_workers_note); NULL for none; borrowed */
    double budget;      /* exception tracing's budget (tracer_opts.budget): 0 default */
    int mech;           /* exception tracing's mechanism (enum tracer_mech): 0 automatic */
    pid_t *switch_to;   /* out: set to the pid chosen with `w` (the session then ends as with
                           `q`; the caller attaches to it), 0 otherwise; NULL disables `w` */
    /* The session's clock (evloop.h), borrowed: NULL the real one; a test's virtual clock runs
     * the loop, the sampler, the tracer and every rate and schedule of the TUI. */
    const struct evloop_clock *clock;
};

/*
 * Run the TUI on pp (borrowed; opened by the caller). Returns 0 after `q`, max_frames, or
 * SIGINT, SIGTERM, SIGHUP or SIGQUIT (blocked and read through a signalfd while it runs: the
 * session ends as with `q`), or a negative code with err set. On every return the terminal is
 * restored, exception tracing is stopped and the target detached. Main thread only.
 */
int ui_attach_run(struct pyproc *pp, const struct ui_attach_opts *opts,
                  struct ps_err *err) PS_WARN_UNUSED;

/* The key list, as text lines (for --help) or as a Markdown list (for the README). */
void ui_attach_write_keys(FILE *fp, bool markdown);

#endif
