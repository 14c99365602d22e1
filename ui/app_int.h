/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_UI_APP_INT_H
#define PYSCOPE_UI_APP_INT_H

/*
 * The TUI's state, shared by app.c (the event loop) and the pane files, which read it to build
 * their lines. One instance per session, heap-allocated (the exception feed is ~1.3 MiB).
 * Main thread only.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "app.h"
#include "layout.h"
#include "pane.h"
#include "panes.h"
#include "pyscope/growth.h"
#include "pyscope/native.h"
#include "pyscope/profile.h"
#include "pyscope/sampler.h"
#include "pyscope/snap.h"
#include "pyscope/srcline.h"
#include "pyscope/tracer.h"
#include "term.h"
#include "view.h"

/* Lines each pane can hold (threads: a heading per thread; stacks: frame, source, locals). */
#define UI_THREAD_LINES 1024
#define UI_STACK_LINES  2048
#define UI_TOP_LINES    512
#define UI_EXC_LINES    (2 * (UI_EXC_KEEP > UI_EXC_GROUPS ? UI_EXC_KEEP : UI_EXC_GROUPS))
#define UI_FILTER_MAX   64
/* Growth rows shown (the fastest growing). */
#define UI_GROWTH_ROWS 256
/* Events copied from the tracer's ring per call. */
#define UI_EV_BATCH 16

struct ui_app {
    struct pyproc *pp; /* borrowed */
    struct ui_attach_opts opts;
    struct ui_term term;
    struct ui_layout layout;
    struct ui_pane panes[UI_AREA_COUNT];
    enum ui_area focus;
    pid_t switch_to; /* `w`: the process to attach to next (quits this session), 0 none */
    bool help, paused, gone, quit, locals;
    long frames;
    uint64_t ticks; /* 100 ms timer ticks */

    /* snapshots: the latest and the one before (for CPU% and rates) */
    struct snap *snap, *prev;
    long hz; /* clock ticks per second */
    double cpu_pct, gil_rate;
    double cpu_trend[UI_TREND_N], rss_trend[UI_TREND_N];
    double start_age, start_mono; /* target's age at attach, and ui_app_now then */
    struct srcline_cache *src;
    struct native_ctx *native; /* --native: the unwinder (symbol caches), NULL otherwise */

    /* top table */
    struct profile *profile;
    struct sampler *sampler;
    enum profile_top_by top_by;
    enum profile_top_sort top_sort;
    struct profile_top_row *top_scratch;
    uint64_t top_samples;
    char filter[UI_FILTER_MAX];
    bool filter_edit;
    enum ui_area filter_area; /* the pane whose filter `/` edits: UI_AREA_TOP or UI_AREA_EXC */

    /* exceptions */
    struct tracer *tracer;
    const char *trace_mech;
    uint64_t last_seq;
    struct ui_excfeed *feed;
    struct tracer_event *evbuf;  /* UI_EV_BATCH events copied out of the tracer's ring */
    struct tracer_stats *tstats; /* ~27 KiB: kept off the stack */
    struct tracer_site *sites;   /* TRACER_MAX_SITES: the tracer's per-site counts, each second */
    uint64_t raise_view; /* seq of the raise the stack pane shows, 0 = the selected thread */
    struct tracer_event raise_ev; /* its copy: the feed's ring may drop it meanwhile */
    double exc_rate, exc_last_t;
    double exc_shown_t; /* when the exceptions pane was last rebuilt for new events */
    uint64_t exc_last_raises;
    double exc_last_spent, exc_last_cpu; /* the tracer's budget_spent_s and target CPU then */
    double trace_cost_pct; /* tracing's cost over the last second, % of the target's CPU; -1 */
    bool exc_feed;         /* the raw newest-first feed (f); else one row per raise site */
    bool exc_mine;         /* my code only (m): hide raises wholly inside library code */
    bool exc_mine_set;     /* m was pressed: exc_mine no longer follows the process's code */
    size_t exc_hidden;     /* sites or raises the last build hid for exc_mine */
    char exc_filter[UI_FILTER_MAX];

    /* the lower-right pane's view; growing containers */
    enum ui_lower lower;
    struct growth *growth;
    struct growth_row *growth_rows; /* UI_GROWTH_ROWS */
    double growth_scanned;          /* monotonic time of the last scan */

    /* the status message (header line 3) and the note in the key bar */
    char status[PS_ERR_MSG_MAX + 64];
    bool status_error;
    bool exc_pending; /* events drained since exc_shown_t, not yet shown */
    char note[PS_ERR_MSG_MAX + 64];
    uint64_t note_until; /* tick */
};

/* Selected thread's native id (threads pane), 0 when none. */
pid_t ui_app_selected_tid(const struct ui_app *app);

/* The filter text of pane `area` (the exceptions pane's or, for any other, the top table's). */
char *ui_app_filter(struct ui_app *app, enum ui_area area);

/* The session's clock in seconds (opts.clock, the loop's; the real one without): every time
 * the TUI reads for its rates and schedules. */
double ui_app_now(const struct ui_app *app);

/* Show a transient note in the key bar (about 5 s). printf-style. */
void ui_app_note(struct ui_app *app, const char *fmt, ...) PS_PRINTF(2, 3);

#endif
