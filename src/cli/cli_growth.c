/* SPDX-License-Identifier: MIT */
/*
 * `pyscope growth`: which module-level containers grow. Wires pyproc -> growth and prints the
 * table (text, or JSON lines with --json) every --report seconds and once more at the end.
 * The loop is an evloop (evloop.h) with one timer (sampling ticks); its stop signals (SIGINT,
 * SIGTERM, SIGHUP, SIGQUIT) end the watch early with the summary (cli_hold_stop_signals keeps
 * them blocked). With
 * --subprocesses the target's Python workers (pslist_descendant_workers, looked for again at
 * every rescan) are watched in the same loop, each its own pyproc and growth, each table and JSON
 * line carrying its pid; a worker that exits is dropped with a warning, the target's own failure
 * still ends the watch. Never stops or traces anything: growth only reads memory, so there is
 * nothing to undo on any exit path.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pyscope/cli.h"
#include "pyscope/evloop.h"
#include "pyscope/growth.h"
#include "pyscope/out_growth.h"
#include "pyscope/pslist.h"
#include "pyscope/pyproc.h"

/* Processes watched with --subprocesses: the target and up to 63 of its workers (each costs a
 * pyproc and a growth, with their own caps). More workers are left out, with a warning. */
#define GROWTH_PROCS_MAX 64

struct growth_args {
    double interval, duration, rescan, report;
    long top;
    bool json, subprocesses;
    const char *record;
    struct growth_opts gopts;
    pid_t pid;
};

static const char growth_usage[] =
    "usage: pyscope growth [options] <pid>\n"
    "\n"
    "Watch the lengths of the containers held by loaded modules (globals, and attributes of\n"
    "module-level classes): dict, list, set, collections.deque and functools.lru_cache caches.\n"
    "Reports the fastest growing first: name, type, length, growth per minute (least squares\n"
    "over the last samples) and a shallow size estimate (sys.getsizeof's arithmetic). The\n"
    "target keeps running; nothing is stopped or injected.\n"
    "\n"
    "  --interval S        seconds between samples (default 1)\n"
    "  --duration S        stop after S seconds (default 60; 0: until Ctrl-C)\n"
    "  --rescan S          look for new or replaced containers every S seconds (default 30)\n"
    "  --report S          print the table every S seconds (default 10; 0: only at the end)\n"
    "  --top N             rows per table (default 20; 0: all)\n"
    "  --json              JSON lines: one {\"event\":\"report\"} per report, then\n"
    "                      {\"event\":\"summary\"}\n"
    "  --max-modules N     modules scanned (default 5000)\n"
    "  --max-containers N  containers watched (default 20000)\n"
    "  --no-classes        do not look into module-level classes\n"
    "  --subprocesses      also watch the target's Python workers (a gunicorn or uvicorn\n"
    "                      master's children), one table per process, each with its pid\n"
    "  --record FILE       also save every byte read from the target to FILE (+ FILE.meta),\n"
    "                      a replayable fixture for bug reports and tests\n";

enum growth_opt {
    OPT_INTERVAL = 256,
    OPT_DURATION,
    OPT_RESCAN,
    OPT_REPORT,
    OPT_TOP,
    OPT_JSON,
    OPT_MAX_MODULES,
    OPT_MAX_CONTAINERS,
    OPT_NO_CLASSES,
    OPT_RECORD,
    OPT_SUBPROCESSES
};

static const struct option growth_opts_long[] = {
    {"interval", required_argument, NULL, OPT_INTERVAL},
    {"duration", required_argument, NULL, OPT_DURATION},
    {"rescan", required_argument, NULL, OPT_RESCAN},
    {"report", required_argument, NULL, OPT_REPORT},
    {"top", required_argument, NULL, OPT_TOP},
    {"json", no_argument, NULL, OPT_JSON},
    {"max-modules", required_argument, NULL, OPT_MAX_MODULES},
    {"max-containers", required_argument, NULL, OPT_MAX_CONTAINERS},
    {"no-classes", no_argument, NULL, OPT_NO_CLASSES},
    {"record", required_argument, NULL, OPT_RECORD},
    {"subprocesses", no_argument, NULL, OPT_SUBPROCESSES},
    {"help", no_argument, NULL, 'h'},
    CLI_LONGOPT_LOG_FORMAT,
    {NULL, 0, NULL, 0},
};

/* Parse seconds in [min, max]; false when malformed or out of range. */
static bool parse_seconds(const char *s, double min, double max, double *out)
{
    char *end = NULL;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static int opt_seconds(const struct cli_common *c, const char *name, const char *arg, double min,
                       double *out)
{
    if (parse_seconds(arg, min, 86400.0 * 365, out))
        return -1;
    return cli_usage(c, "--%s takes seconds from %g up to a year", name, min);
}

static int opt_count(const struct cli_common *c, const char *name, const char *arg, long max,
                     size_t *out)
{
    long v;

    if (!cli_parse_long(arg, 1, max, &v))
        return cli_usage(c, "--%s takes a number from 1 to %ld", name, max);
    *out = (size_t)v;
    return -1;
}

/* One option; returns -1 to go on, else an exit code. */
static int growth_opt(const struct cli_common *c, void *args, int opt, const char *arg)
{
    struct growth_args *a = args;
    switch (opt) {
    case OPT_INTERVAL: return opt_seconds(c, "interval", arg, 0.01, &a->interval);
    case OPT_DURATION: return opt_seconds(c, "duration", arg, 0, &a->duration);
    case OPT_RESCAN: return opt_seconds(c, "rescan", arg, 0.01, &a->rescan);
    case OPT_REPORT: return opt_seconds(c, "report", arg, 0, &a->report);
    case OPT_JSON: a->json = true; return -1;
    case OPT_NO_CLASSES: a->gopts.no_classes = true; return -1;
    case OPT_RECORD: a->record = arg; return -1;
    case OPT_SUBPROCESSES: a->subprocesses = true; return -1;
    case OPT_MAX_MODULES:
        return opt_count(c, "max-modules", arg, GROWTH_MAX_MODULES, &a->gopts.max_modules);
    case OPT_MAX_CONTAINERS:
        return opt_count(c, "max-containers", arg, GROWTH_MAX_CONTAINERS, &a->gopts.max_containers);
    case OPT_TOP:
        if (!cli_parse_long(arg, 0, GROWTH_MAX_CONTAINERS, &a->top))
            return cli_usage(c, "--top takes a number from 0 to %d", GROWTH_MAX_CONTAINERS);
        return -1;
    case CLI_OPT_LOG_FORMAT: return -1;
    case 'h': (void)fputs(growth_usage, stdout); return CLI_EXIT_OK;
    default: return cli_usage(c, "unknown option for growth");
    }
}

static int growth_parse(const struct cli_common *c, int argc, char **argv, struct growth_args *a)
{
    int rc = cli_getopt(c, argc, argv, "h", growth_opts_long, growth_opt, a);

    return rc >= 0 ? rc : cli_one_pid(c, argc, argv, "growth", &a->pid);
}

/* ---- output -------------------------------------------------------------------------------- */

static void print_table(const struct growth_args *a, pid_t pid, const struct growth *g, bool final,
                        double elapsed)
{
    size_t n = growth_count(g);
    size_t rows = a->top > 0 && (size_t)a->top < n ? (size_t)a->top : n;

    if (a->json)
        out_growth_json(stdout, g, pid, final ? "summary" : "report", rows, elapsed);
    else
        out_growth_text(stdout, g, pid, final ? "summary" : "growth", rows, elapsed);
    (void)fflush(stdout);
}

/* ---- the processes watched ----------------------------------------------------------------- */

struct watched {
    pid_t pid;
    struct pyproc *pp;
    struct growth *g;
};

/* w[0] is the target; the others its workers (--subprocesses). */
struct watchset {
    const struct cli_common *c;
    struct watched w[GROWTH_PROCS_MAX];
    size_t n;
    bool warned_cap;
};

static void watched_close(struct watched *w)
{
    growth_free(w->g);
    pyproc_close(w->pp);
    w->g = NULL;
    w->pp = NULL;
}

static void watchset_free(struct watchset *ws)
{
    for (size_t i = 0; i < ws->n; i++)
        watched_close(&ws->w[i]);
    ws->n = 0;
}

static bool watchset_has(const struct watchset *ws, pid_t pid)
{
    for (size_t i = 0; i < ws->n; i++)
        if (ws->w[i].pid == pid)
            return true;
    return false;
}

/* Open pid and start watching it: scanned and sampled once at time t. */
static int watchset_add(struct watchset *ws, const struct growth_args *a, pid_t pid, double t,
                        struct ps_err *err)
{
    struct watched *w = &ws->w[ws->n];
    int rc = pyproc_open(pid, &w->pp, err);

    w->pid = pid;
    if (rc == 0 && w->pp->warning[0])
        cli_log(ws->c, "warning", 0, w->pp->warning);
    rc = rc == 0 && a->record && ws->n == 0 ? pyproc_record(w->pp, a->record, err) : rc;
    if (rc == 0)
        rc = growth_new(w->pp, &a->gopts, &w->g, err);
    if (rc == 0 && t >= 0)
        rc = growth_scan(w->g, err);
    if (rc == 0 && t >= 0)
        rc = growth_sample(w->g, t, err);
    if (rc < 0) {
        watched_close(w);
        return rc;
    }
    ws->n++;
    return 0;
}

/* Watch the target's workers not watched yet (a worker that cannot be opened is skipped with a
 * warning: it may have exited, or not be a readable Python yet). */
static void watchset_add_workers(struct watchset *ws, const struct growth_args *a, double t)
{
    pid_t pids[GROWTH_PROCS_MAX];
    size_t n = pslist_descendant_workers(a->pid, pids, GROWTH_PROCS_MAX);

    for (size_t i = 0; i < n && i < GROWTH_PROCS_MAX; i++) {
        struct ps_err err = {0};
        char msg[PS_ERR_MSG_MAX + 64];

        if (watchset_has(ws, pids[i]))
            continue;
        if (ws->n == GROWTH_PROCS_MAX) {
            if (!ws->warned_cap)
                cli_log(ws->c, "warning", 0, "more workers than --subprocesses watches (63)");
            ws->warned_cap = true;
            return;
        }
        if (watchset_add(ws, a, pids[i], t, &err) < 0) {
            (void)snprintf(msg, sizeof(msg), "worker %d not watched: %s", (int)pids[i], err.msg);
            cli_log(ws->c, "warning", 0, msg);
        }
    }
}

/* A worker failed (it exited, most likely): say so and stop watching it. */
static void watchset_drop(struct watchset *ws, size_t i, const struct ps_err *err)
{
    char msg[PS_ERR_MSG_MAX + 64];

    (void)snprintf(msg, sizeof(msg), "worker %d no longer watched: %s", (int)ws->w[i].pid,
                   err->msg);
    cli_log(ws->c, "warning", 0, msg);
    watched_close(&ws->w[i]);
    ws->w[i] = ws->w[--ws->n];
}

/* ---- the loop ------------------------------------------------------------------------------ */

struct loop {
    const struct growth_args *a;
    struct watchset *ws;
    struct evloop *ev;
    int timer;
    double start, next_rescan, next_report;
};

/* Whether the watch has run its --duration (to within half an interval: the last tick). */
static bool loop_done(const struct loop *l, double now)
{
    return l->a->duration > 0 && now - l->start >= l->a->duration - l->a->interval / 2;
}

/* One process's tick: rescan when due, sample. */
static int tick_one(const struct loop *l, struct watched *w, bool rescan, double t,
                    struct ps_err *err)
{
    int rc = rescan ? growth_scan(w->g, err) : 0;

    return rc == 0 ? growth_sample(w->g, t - l->start, err) : rc;
}

/* The sampling timer (every --interval): one tick of every process watched; report when due.
 * Only the target's failure is fatal. */
static int loop_tick(void *arg, struct evloop *ev, unsigned events, struct ps_err *err)
{
    struct loop *l = arg;
    const struct growth_args *a = l->a;
    struct watchset *ws = l->ws;
    double t = evloop_clock_now(ev);
    bool rescan = t >= l->next_rescan;
    int rc = tick_one(l, &ws->w[0], rescan, t, err);

    (void)events;
    for (size_t i = ws->n; rc == 0 && i-- > 1;) {
        struct ps_err werr = {0};

        if (tick_one(l, &ws->w[i], rescan, t, &werr) < 0)
            watchset_drop(ws, i, &werr);
    }
    if (rescan) {
        l->next_rescan = t + a->rescan;
        if (rc == 0 && a->subprocesses)
            watchset_add_workers(ws, a, t - l->start);
    }
    if (rc == 0 && a->report > 0 && t >= l->next_report) {
        for (size_t i = 0; i < ws->n; i++)
            print_table(a, ws->w[i].pid, ws->w[i].g, false, t - l->start);
        l->next_report += a->report;
    }
    (void)evloop_timer_every(ev, l->timer, a->interval);
    if (loop_done(l, evloop_clock_now(ev)))
        evloop_stop(ev, EVLOOP_END_OWN);
    return rc;
}

/* The loop: the stop signals (cli_hold_stop_signals holds them) and the sampling timer. */
static int loop_open(struct loop *l, struct ps_err *err)
{
    const struct evloop_opts o = {.signals = EVLOOP_SIG_STOP};
    int rc = evloop_new(&o, &l->ev, err);

    if (rc < 0)
        return rc;
    l->start = evloop_clock_now(l->ev);
    l->next_rescan = l->start + l->a->rescan;
    l->next_report = l->start + l->a->report;
    l->timer = rc = evloop_add_timer(l->ev, l->start + l->a->interval, loop_tick, l, err);
    return rc < 0 ? rc : 0;
}

static int watch(const struct growth_args *a, struct watchset *ws, struct ps_err *err)
{
    struct loop l = {.a = a, .ws = ws};
    int rc = loop_open(&l, err);

    if (rc == 0)
        rc = growth_scan(ws->w[0].g, err);
    if (rc == 0)
        rc = growth_sample(ws->w[0].g, 0, err);
    if (rc == 0 && a->subprocesses)
        watchset_add_workers(ws, a, 0);
    if (rc == 0 && !loop_done(&l, evloop_clock_now(l.ev)))
        rc = evloop_run(l.ev, err);
    for (size_t i = 0; i < ws->n; i++)
        if (growth_stats(ws->w[i].g)->samples > 0)
            print_table(a, ws->w[i].pid, ws->w[i].g, true,
                        (l.ev ? evloop_clock_now(l.ev) : l.start) - l.start);
    evloop_free(l.ev);
    return rc;
}

static int growth_run(const struct cli_common *c, const struct growth_args *a)
{
    struct ps_err err = {0};
    struct watchset *ws = calloc(1, sizeof(*ws));
    int rc, status = CLI_EXIT_OK;

    if (!ws)
        return cli_fail(c, &err, ps_err_set(&err, -ENOMEM, "out of memory"));
    ws->c = c;
    rc = watchset_add(ws, a, a->pid, -1, &err);
    if (rc == 0 && !a->subprocesses)
        cli_workers_note(c, a->pid, "growth");
    if (rc == 0)
        rc = watch(a, ws, &err);
    if (rc < 0)
        status = cli_fail(c, &err, rc);
    watchset_free(ws);
    free(ws);
    return status;
}

int cli_growth(const struct cli_common *common, int argc, char **argv)
{
    struct growth_args a = {.interval = 1, .duration = 60, .rescan = 30, .report = 10, .top = 20};
    int rc = growth_parse(common, argc, argv, &a);

    if (rc >= 0)
        return rc;
    cli_hold_stop_signals();
    return growth_run(common, &a);
}
