/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_UI_VIEW_H
#define PYSCOPE_UI_VIEW_H

/*
 * ui_view: the TUI's models, without curses. Engine data (a snapshot, the previous one, a
 * profile, exception events) and a pane width in; display lines out, each already fitted to
 * exactly `width` terminal columns (UTF-8 aware through the C library's wcwidth; characters the
 * locale cannot show and control characters become '?', so a hostile thread name cannot drive
 * the terminal). Lines carry a style and an identity key so that panes keep a selection on the
 * same thread, frame or raise while the lines around it change.
 *
 * All output goes to caller-owned arrays of fixed capacity; nothing here allocates, except
 * ui_view_top (profile_top's scratch, freed before it returns). Any thread, but one owner per
 * array.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pyscope/err.h"
#include "pyscope/growth.h"
#include "pyscope/profile.h"
#include "pyscope/snap.h"
#include "pyscope/srcline.h"
#include "pyscope/tracer.h"

/* Bytes of one display line: 4 bytes per column for 250 columns, and a NUL. */
#define UI_LINE_MAX 1024
/* Points kept for the header's trend sparklines. */
#define UI_TREND_N 12
/* Raises kept for the feed (full copies, for Enter), and (type, location) groups counted. */
#define UI_EXC_KEEP   64
#define UI_EXC_GROUPS 128

enum ui_style {
    UI_STYLE_NORMAL,
    UI_STYLE_HEADING, /* column headings */
    UI_STYLE_DIM,     /* secondary text: source lines, idle threads */
    UI_STYLE_GIL,     /* the GIL holder, a running thread */
    UI_STYLE_HOT,     /* something to look at: a hot function, an exception type */
    UI_STYLE_ERROR,   /* a failure or a warning */
};

struct ui_line {
    char text[UI_LINE_MAX]; /* exactly `width` columns */
    enum ui_style style;
    bool selectable;
    uint64_t key; /* identity: native tid, frame index + 1, top frame id + 1, raise seq */
};

/*
 * Fit src into dst (cap bytes) as exactly cols columns: cut at a character boundary (the last
 * column becomes '~' when cut and cols > 1), padded with spaces; control characters and bytes
 * the locale cannot decode become '?'. Returns dst. cols < 0 counts as 0.
 */
char *ui_fit(char *dst, size_t cap, const char *src, int cols);

/* Fill one pane line: text fitted to width cells, style, and key (selectable when non-zero). */
void ui_line_set(struct ui_line *l, const char *text, int width, enum ui_style style, uint64_t key);

/*
 * As ui_fit, but cutting from the left ("~/site-packages/x.py"), for paths whose end matters.
 */
char *ui_fit_left(char *dst, size_t cap, const char *src, int cols);

/*
 * Append src to the string dst of length `used` (cap bytes; cut when full, always
 * NUL-terminated, a UTF-8 sequence may be cut: pass the result through ui_fit). Returns the
 * new length.
 */
size_t ui_cat(char *dst, size_t cap, size_t used, const char *src);

/* The last two components of a path ("email/feedparser.py"), a pointer into path. Pure. */
const char *ui_short_path(const char *path);

/* Human size: "512 B", "1.5 KiB", "45.2 MiB", "3.1 GiB". Returns buf. */
const char *ui_bytes(char *buf, size_t cap, double bytes);

/* Human duration: "42s", "5m07s", "3h02m", "2d04h". Returns buf. */
const char *ui_duration(char *buf, size_t cap, double seconds);

/*
 * Sparkline of v[0..n) (oldest first; negative values are gaps) scaled to their own minimum
 * and maximum: U+2581..U+2588 blocks when utf8, else " .:-=+*#". Returns buf.
 */
const char *ui_spark(char *buf, size_t cap, const double *v, size_t n, bool utf8);

/* ---- header ----------------------------------------------------------------------------- */

/* Everything the header shows; numbers < 0 are unknown and shown as "-". */
struct ui_header_in {
    const struct snap *snap; /* latest snapshot, NULL before the first */
    double uptime_s;
    double cpu_pct;                      /* process CPU over the last interval, 100 = one core */
    const double *cpu_trend, *rss_trend; /* UI_TREND_N points, oldest first */
    double gil_switch_rate;              /* per second */
    bool sampling;                       /* the sampler runs */
    double sample_rate;                  /* ticks per second achieved */
    const char *sample_lost;             /* samples lost, in words (sampler_lost_words) */
    bool tracing;                        /* exception tracing on */
    const char *trace_mech;              /* "perf", "debugreg" */
    double exc_rate;                     /* raises per second */
    double trace_cost_pct;   /* what tracing took over the last second, % of the target's CPU
                                (< 0 unknown) */
    double trace_budget_pct; /* the budget in force, % (< 0 none) */
    const char *status;      /* "PAUSED", "target exited ...", an error; or NULL */
    bool status_error;
    bool utf8; /* the terminal shows UTF-8 (sparkline blocks) */
};

/* The 3 header lines into out[0..3). */
void ui_view_header(const struct ui_header_in *in, int width, struct ui_line out[3]);

/* ---- threads ---------------------------------------------------------------------------- */

/*
 * One heading and one line per thread of s (key: native id), CPU% from the utime+stime tick
 * deltas against prev (NULL or a thread missing there: "-"), hz = clock ticks per second.
 * Returns the lines written (at most cap).
 */
size_t ui_view_threads(const struct snap *s, const struct snap *prev, long hz, int width,
                       struct ui_line *out, size_t cap);

/* The thread of s with native id tid, or NULL. */
const struct snap_thread *ui_view_find_thread(const struct snap *s, pid_t tid);

/* ---- stack ------------------------------------------------------------------------------ */

/*
 * Thread t's stack, innermost first: per frame "function  file:line" (key: frame index + 1)
 * and, when src is not NULL and has it, the source line below; then notes (status, the
 * exception being raised or handled, and each frame's locals when the snapshot has them).
 * Returns the lines written (at most cap).
 */
size_t ui_view_stack(const struct snap_thread *t, struct srcline_cache *src, int width,
                     struct ui_line *out, size_t cap);

/* The stack of one exception event, innermost first, with its message and where handled. */
size_t ui_view_raise(const struct tracer_event *ev, struct srcline_cache *src, int width,
                     struct ui_line *out, size_t cap);

/* ---- top -------------------------------------------------------------------------------- */

struct ui_top_in {
    const struct profile *profile;
    enum profile_top_by by;
    enum profile_top_sort sort;
    const char *filter;              /* substring of function or file; NULL or "" for all */
    struct profile_top_row *scratch; /* caller's array of nscratch rows */
    size_t nscratch;
};

/*
 * A heading and the top rows (key: frame id + 1) as "own% total% function file:line", rows
 * failing the filter left out. *samples gets the samples in scope. Returns the lines written,
 * or a negative code (-ENOMEM from profile_top, with err set).
 */
int ui_view_top(const struct ui_top_in *in, int width, struct ui_line *out, size_t cap,
                uint64_t *samples, struct ps_err *err) PS_WARN_UNUSED;

/* ---- growth and tasks ------------------------------------------------------------------- */

/* Points of a container's length history in its growth-pane sparkline. */
#define UI_GROWTH_SPARK_N   12
#define UI_GROWTH_SPARK_MAX (UI_GROWTH_SPARK_N * 4 + 1)

/*
 * Growing containers, fastest first: a heading (ending with `rss`, the process RSS and its
 * trend, when not NULL) and per row "rate/min length trend name (type, size)" where trend is
 * sparks[i] (a sparkline of the container's length; NULL or "" leaves it blank; sparks may be
 * NULL). Key: container address; gone ones dim. Returns the lines written.
 */
size_t ui_view_growth(const struct growth_row *rows, const char *const *sparks, const char *rss,
                      size_t n, int width, struct ui_line *out, size_t cap);

/*
 * asyncio tasks: a summary heading (found, by state, loops, or why there are none) and per
 * task "state name  awaits  innermost frame" (key: task address; a deadlocked task in the error
 * style). t may be NULL (tasks not read yet). Returns the lines written.
 */
size_t ui_view_tasks(const struct snap_tasks *t, int width, struct ui_line *out, size_t cap);

/* ---- exceptions ------------------------------------------------------------------------- */

/* One raise site: the raises of one type at one place (file, line, function). */
struct ui_exc_group {
    char type[TRACER_TYPE_MAX];
    struct tracer_frame raised;
    uint64_t count;
    uint64_t count_at_tick;   /* count at the last ui_excfeed_tick */
    double rate;              /* raises/s between the last two ticks; < 0 before the second */
    bool library;             /* its newest raise was raised and handled in library code */
    struct tracer_event last; /* its newest raise (END events fill in where it was handled) */
};

/*
 * The exception feed: the newest UI_EXC_KEEP raises (ring; END events fill in where each was
 * handled) and one group per (type, raise site) for up to UI_EXC_GROUPS sites (more land in an
 * "other" count). Fixed size (~1.3 MiB); zero it (or ui_excfeed_reset) before use.
 */
struct ui_excfeed {
    struct tracer_event ev[UI_EXC_KEEP]; /* ring: ev[(head - 1) % KEEP] is the newest */
    size_t head, n;
    struct ui_exc_group groups[UI_EXC_GROUPS];
    size_t ngroups;
    uint64_t other;   /* raises in no group (the table was full) */
    uint64_t total;   /* raises added */
    bool own_code;    /* some raise or handler site is outside library code */
    double last_tick; /* time of the last ui_excfeed_tick, 0 before the first */
};

void ui_excfeed_reset(struct ui_excfeed *f);

/* Add one tracer event (RAISE: stored and counted in its group; END: its raise and its group
 * get handled_at, and the group's library flag is decided from both sites). */
void ui_excfeed_add(struct ui_excfeed *f, const struct tracer_event *ev);

/* The kept raise with seq `seq`, or NULL. */
const struct tracer_event *ui_excfeed_find(const struct ui_excfeed *f, uint64_t seq);

/* The newest raise of the group whose line key is `key` (ui_view_exc, grouped), or NULL. */
const struct tracer_event *ui_excfeed_group_event(const struct ui_excfeed *f, uint64_t key);

/*
 * Bring the groups' counts up to the tracer's per-site counts (tracer_sites: exact with bpf,
 * whose budget reports only a sample of the raises; estimates with breakpoints): a group whose
 * (type, raise site) is among sites[0..n) counts at least that site's estimate, and the total
 * at least their sum. Groups are made by raises (ui_excfeed_add); a site none was seen for
 * stays out. Call before ui_excfeed_tick, so the rates follow the counts.
 */
void ui_excfeed_sites(struct ui_excfeed *f, const struct tracer_site *sites, size_t n);

/* Update every group's rate: raises since the previous tick over the time between (now is
 * any monotonic clock in seconds, the caller's). */
void ui_excfeed_tick(struct ui_excfeed *f, double now);

/*
 * True when path is library code: the standard library (a `lib/pythonX.Y/` directory, or a
 * `<frozen ...>` module), or an installed package (`site-packages`, `dist-packages`). Pure.
 */
bool ui_exc_library_path(const char *path);

/* True when a frame of s runs code outside the library (ui_exc_library_path). NULL: false. */
bool ui_exc_snap_own_code(const struct snap *s);

/* How the exceptions pane shows the feed. */
struct ui_exc_view {
    bool feed;          /* the raw newest-first feed; else one row per site, most raised first */
    bool mine_only;     /* hide raises whose raise and handler sites are both library code */
    const char *filter; /* substring of type, message, function or file; NULL or "" for all */
    size_t hidden;      /* out: sites (grouped) or raises (feed) hidden by mine_only */
};

/*
 * Grouped: per site a line "count rate/s type: newest message" (key: group index + 1) and a
 * dimmer one "  at file:line -> handled at file:line in function" (its newest raise's handler).
 * Feed: per raise, newest first, "time xN type: message" (key: seq; N = its group's count) and
 * "  function (file:line) -> handled in function (file:line)". Rows failing the filter or hidden by mine_only are left out. Returns lines written.
 */
size_t ui_view_exc(const struct ui_excfeed *f, struct ui_exc_view *v, int width,
                   struct ui_line *out, size_t cap);

#endif
