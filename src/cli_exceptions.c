/* SPDX-License-Identifier: MIT */
/*
 * `pyscope exceptions`: a live feed of every exception the target raises, swallowed ones
 * included (tracer.h), as text lines or JSON lines, with an optional summary table. Wires
 * pyproc -> tracer -> writers; the only state here is the summary's bounded table.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include "pyscope/cli.h"
#include "pyscope/out_sites.h"
#include "pyscope/outq.h"
#include "pyscope/pyproc.h"
#include "pyscope/target.h"
#include "pyscope/tracer.h"

/* Summary rows kept (type x raise site x handler); further distinct rows count as "other". */
#define EXC_SUMMARY_MAX 1024

struct exc_row {
    char type[TRACER_TYPE_MAX];
    struct tracer_frame raised;
    struct tracer_frame handled; /* function "" = still propagating */
    uint64_t count;
};

struct exc_args {
    bool json, stack, summary, exact_count;
    const char *type;
    double duration, max_rate, budget;
    unsigned burst;
    enum tracer_mech mech;
    pid_t pid;
};

struct exc_out {
    const struct exc_args *a;
    struct exc_row *rows; /* EXC_SUMMARY_MAX */
    size_t nrows;
    uint64_t other_rows;
    bool closing;   /* stdout failed: the trace is being ended */
    struct outq *q; /* non-blocking stdout while threads are under ptrace */
};

static const char exc_usage[] =
    "usage: pyscope exceptions [options] <pid>\n"
    "\n"
    "Show every exception the target raises, including the ones it swallows, as it is raised:\n"
    "time, thread, type: message, where it was raised and where it was handled. Uses a hardware\n"
    "breakpoint (never a code patch); each traced raise stops the raising thread ~30 us.\n"
    "\n"
    "  --json              JSON lines: {\"event\":\"raise\",...}, then \"handled\" or\n"
    "                      \"propagating\" for its end; \"start\"/\"stop\" records\n"
    "  --stack             print the whole stack of each raise (text)\n"
    "  --type NAME         only exceptions of this type (ValueError, or mod.MyError)\n"
    "  --duration SECONDS  stop after this long (default: until Ctrl-C)\n"
    "  --summary           end with a table: type x raise site x count x where caught\n"
    "  --max-rate N        report at most N raises per second after a burst (default 200;\n"
    "                      0 = unlimited); the rest are counted, and the breakpoint is off\n"
    "                      meanwhile so a busy target is barely slowed\n"
    "  --burst N           raises reported in full before the rate applies (default 500)\n"
    "  --exact-count       while rate-limited, count every raise exactly whatever the rate\n"
    "                      (each counted raise costs the target a debug exception, ~10 us in\n"
    "                      a VM; by default counting samples once it would cost over 2%)\n"
    "  --mechanism M       perf or debugreg (default: perf when the kernel allows it)\n"
    "  --budget PCT        keep the target time tracing takes (stops, counting) under PCT% of\n"
    "                      the target's CPU time (default 1; 0 = no budget); raises not\n"
    "                      stopped for are estimated per raise site (the \"sites\" record)\n";

enum exc_opt {
    OPT_JSON = 256,
    OPT_STACK,
    OPT_TYPE,
    OPT_DURATION,
    OPT_SUMMARY,
    OPT_MAX_RATE,
    OPT_BURST,
    OPT_MECH,
    OPT_EXACT_COUNT,
    OPT_BUDGET
};

static const struct option exc_opts[] = {
    {"json", no_argument, NULL, OPT_JSON},
    {"stack", no_argument, NULL, OPT_STACK},
    {"type", required_argument, NULL, OPT_TYPE},
    {"duration", required_argument, NULL, OPT_DURATION},
    {"summary", no_argument, NULL, OPT_SUMMARY},
    {"max-rate", required_argument, NULL, OPT_MAX_RATE},
    {"burst", required_argument, NULL, OPT_BURST},
    {"mechanism", required_argument, NULL, OPT_MECH},
    {"exact-count", no_argument, NULL, OPT_EXACT_COUNT},
    {"budget", required_argument, NULL, OPT_BUDGET},
    {"help", no_argument, NULL, 'h'},
    CLI_LONGOPT_LOG_FORMAT,
    {NULL, 0, NULL, 0},
};

static int exc_opt_value(const struct cli_common *c, struct exc_args *a, int opt, const char *arg)
{
    long v;

    if (!cli_parse_long(arg, 0, 100000000, &v))
        return cli_usage(c, "--%s takes a whole number from 0", exc_opts[opt - OPT_JSON].name);
    if (opt == OPT_DURATION)
        a->duration = (double)v;
    else if (opt == OPT_MAX_RATE)
        a->max_rate = v == 0 ? -1.0 : (double)v;
    else
        a->burst = (unsigned)v;
    return -1;
}

/* One option; returns -1 to go on, else an exit code. */
static int exc_opt(const struct cli_common *c, void *args, int opt, const char *arg)
{
    struct exc_args *a = args;

    switch (opt) {
    case OPT_JSON: a->json = true; return -1;
    case OPT_STACK: a->stack = true; return -1;
    case OPT_SUMMARY: a->summary = true; return -1;
    case OPT_EXACT_COUNT: a->exact_count = true; return -1;
    case OPT_TYPE: a->type = arg; return -1;
    case OPT_DURATION:
    case OPT_MAX_RATE:
    case OPT_BURST: return exc_opt_value(c, a, opt, arg);
    case OPT_BUDGET:
        if (!cli_parse_budget(arg, &a->budget))
            return cli_usage(c, "--budget takes a percentage from 0 to 100");
        return -1;
    case OPT_MECH:
        if (strcmp(arg, "perf") != 0 && strcmp(arg, "debugreg") != 0)
            return cli_usage(c, "--mechanism takes `perf` or `debugreg`");
        a->mech = arg[0] == 'p' ? TRACER_MECH_PERF : TRACER_MECH_DEBUGREG;
        return -1;
    case CLI_OPT_LOG_FORMAT: return -1;
    case 'h': (void)fputs(exc_usage, stdout); return CLI_EXIT_OK;
    default: return cli_usage(c, "unknown option for exceptions");
    }
}

static int exc_parse(const struct cli_common *c, int argc, char **argv, struct exc_args *a)
{
    int rc = cli_getopt(c, argc, argv, "h", exc_opts, exc_opt, a);

    return rc >= 0 ? rc : cli_one_pid(c, argc, argv, "exceptions", &a->pid);
}

/* ---- text ---------------------------------------------------------------------------------- */

static void exc_clock(double t, char *buf, size_t cap)
{
    time_t s = (time_t)t;
    struct tm tm;

    (void)localtime_r(&s, &tm);
    (void)snprintf(buf, cap, "%02d:%02d:%02d.%03d", tm.tm_hour, tm.tm_min, tm.tm_sec,
                   (int)((t - (double)s) * 1000.0) % 1000);
}

static void exc_text_fate(FILE *fp, const struct tracer_event *ev)
{
    if (ev->propagating)
        (void)fputs("; still propagating", fp);
    else
        (void)fprintf(fp, "; handled in %s at line %d%s", ev->handled_at.function,
                      ev->handled_at.line, ev->fate_unknown ? " or above (rate-limited)" : "");
}

static void exc_text(FILE *fp, const struct exc_args *a, const struct tracer_event *ev)
{
    char when[32];

    exc_clock(ev->time, when, sizeof(when));
    (void)fprintf(fp, "%s [tid %d] %s%s%s", when, (int)ev->native_id, ev->type,
                  ev->has_message ? ": " : "", ev->has_message ? ev->message : "");
    if (ev->nframes > 0)
        (void)fprintf(fp, "  raised at %s:%d in %s", ev->frames[0].file, ev->frames[0].line,
                      ev->frames[0].function);
    if (ev->reraise)
        (void)fputs(" (re-raised)", fp);
    exc_text_fate(fp, ev);
    if (ev->cause_type[0])
        (void)fprintf(fp, "; caused by %s", ev->cause_type);
    else if (ev->context_type[0])
        (void)fprintf(fp, "; during handling of %s", ev->context_type);
    (void)fputc('\n', fp);
    for (size_t i = 0; a->stack && i < ev->nframes; i++)
        (void)fprintf(fp, "    %s:%d in %s\n", ev->frames[i].file, ev->frames[i].line,
                      ev->frames[i].function);
}

/* ---- JSON lines ---------------------------------------------------------------------------- */

/* A JSON line built in a local buffer, written with one fwrite per 4 KiB (an event is written
 * for every raise: jansson's object model costs more than the breakpoint stop itself). */
struct exc_jl {
    FILE *fp;
    size_t n;
    char buf[4096];
};

static void exc_jl_raw(struct exc_jl *j, const char *s, size_t len)
{
    while (len > 0) {
        size_t room = sizeof(j->buf) - j->n, k = len < room ? len : room;
        memcpy(j->buf + j->n, s, k);
        j->n += k;
        s += k;
        len -= k;
        if (j->n == sizeof(j->buf)) {
            (void)fwrite(j->buf, 1, j->n, j->fp);
            j->n = 0;
        }
    }
}

static void exc_jl_fmt(struct exc_jl *j, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void exc_jl_fmt(struct exc_jl *j, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap); // NOLINT(clang-analyzer-valist.*): clang 14 FP
    va_end(ap);
    if (n > 0)
        exc_jl_raw(j, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* A JSON string (the tracer's strings are UTF-8 from pyobj_str; controls are escaped). */
static void exc_jl_str(struct exc_jl *j, const char *s)
{
    const char *run = s;

    exc_jl_raw(j, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        exc_jl_raw(j, run, (size_t)(s - run));
        if (c == '"' || c == '\\')
            exc_jl_fmt(j, "\\%c", c);
        else
            exc_jl_fmt(j, "\\u%04x", c);
        run = s + 1;
    }
    exc_jl_raw(j, run, (size_t)(s - run));
    exc_jl_raw(j, "\"", 1);
}

static void exc_jl_str_or_null(struct exc_jl *j, bool have, const char *s)
{
    if (have)
        exc_jl_str(j, s);
    else
        exc_jl_raw(j, "null", 4);
}

static void exc_jl_frame(struct exc_jl *j, const struct tracer_frame *f)
{
    exc_jl_raw(j, "{\"function\":", 12);
    exc_jl_str(j, f->function);
    exc_jl_raw(j, ",\"file\":", 8);
    exc_jl_str(j, f->file);
    exc_jl_fmt(j, ",\"line\":%d}", f->line);
}

/* The RAISE-only fields: frames, reraise, cause, context. */
static void exc_jl_raise(struct exc_jl *j, const struct tracer_event *ev)
{
    exc_jl_raw(j, ",\"frames\":[", 11);
    for (size_t i = 0; i < ev->nframes && i < TRACER_MAX_FRAMES; i++) {
        if (i)
            exc_jl_raw(j, ",", 1);
        exc_jl_frame(j, &ev->frames[i]);
    }
    exc_jl_fmt(j, "],\"reraise\":%s,\"cause\":", ev->reraise ? "true" : "false");
    exc_jl_str_or_null(j, ev->cause_type[0] != '\0', ev->cause_type);
    exc_jl_raw(j, ",\"context\":", 11);
    exc_jl_str_or_null(j, ev->context_type[0] != '\0', ev->context_type);
}

/* One event as a JSON line: "raise", or "handled" / "propagating" for its end. */
static void exc_json_event(FILE *fp, const struct tracer_event *ev)
{
    bool end = ev->kind == TRACER_EV_END;
    const char *kind = !end ? "raise" : ev->propagating ? "propagating" : "handled";
    struct exc_jl j = {.fp = fp};

    exc_jl_fmt(&j, "{\"event\":\"%s\",\"seq\":%llu,\"type\":", kind,
               (unsigned long long)ev->raise_seq);
    exc_jl_str(&j, ev->type);
    exc_jl_fmt(&j, ",\"thread_id\":%llu,\"native_id\":%d,\"time\":%.6f,\"message\":",
               (unsigned long long)ev->thread_id, (int)ev->native_id, ev->time);
    exc_jl_str_or_null(&j, ev->has_message, ev->message);
    if (!end) {
        exc_jl_raise(&j, ev);
    } else if (!ev->propagating) {
        exc_jl_raw(&j, ",\"handled_at\":", 14);
        exc_jl_frame(&j, &ev->handled_at);
        exc_jl_fmt(&j, ",\"fate_unknown\":%s", ev->fate_unknown ? "true" : "false");
    }
    exc_jl_raw(&j, "}\n", 2);
    (void)fwrite(j.buf, 1, j.n, fp);
}

/* One JSON line (flushed by the caller: per batch of events, or right away for records). */
static void exc_json_put(FILE *fp, json_t *o)
{
    if (o && json_dumpf(o, fp, JSON_COMPACT) == 0)
        (void)fputc('\n', fp);
    json_decref(o);
}

/* ---- summary ------------------------------------------------------------------------------- */

static bool exc_same_frame(const struct tracer_frame *x, const struct tracer_frame *y)
{
    return x->line == y->line && strcmp(x->function, y->function) == 0 &&
           strcmp(x->file, y->file) == 0;
}

static void exc_summary_add(struct exc_out *o, const struct tracer_event *ev)
{
    static const struct tracer_frame none = {.line = -1};
    const struct tracer_frame *raised = ev->nframes ? &ev->frames[0] : &none;
    const struct tracer_frame *handled = ev->propagating ? &none : &ev->handled_at;
    size_t i;

    for (i = 0; i < o->nrows; i++)
        if (strcmp(o->rows[i].type, ev->type) == 0 && exc_same_frame(&o->rows[i].raised, raised) &&
            exc_same_frame(&o->rows[i].handled, handled))
            break;
    if (i == o->nrows && o->nrows == EXC_SUMMARY_MAX) {
        o->other_rows++;
        return;
    }
    if (i == o->nrows) {
        (void)snprintf(o->rows[i].type, sizeof(o->rows[i].type), "%s", ev->type);
        o->rows[i].raised = *raised;
        o->rows[i].handled = *handled;
        o->nrows++;
    }
    o->rows[i].count++;
}

static int exc_row_cmp(const void *x, const void *y)
{
    const struct exc_row *a = x, *b = y;

    return (a->count < b->count) - (a->count > b->count);
}

static void exc_summary_print(FILE *fp, struct exc_out *o)
{
    qsort(o->rows, o->nrows, sizeof(*o->rows), exc_row_cmp);
    (void)fprintf(fp, "\n%8s  %-28s %-40s %s\n", "count", "type", "raised at", "handled in");
    for (size_t i = 0; i < o->nrows; i++) {
        const struct exc_row *r = &o->rows[i];
        char site[TRACER_NAME_MAX * 2 + 32];
        (void)snprintf(site, sizeof(site), "%s:%d in %s", r->raised.file, r->raised.line,
                       r->raised.function);
        if (r->handled.function[0])
            (void)fprintf(fp, "%8llu  %-28s %-40s %s:%d\n", (unsigned long long)r->count, r->type,
                          site, r->handled.function, r->handled.line);
        else
            (void)fprintf(fp, "%8llu  %-28s %-40s (still propagating)\n",
                          (unsigned long long)r->count, r->type, site);
    }
    if (o->other_rows)
        (void)fprintf(fp, "%8llu  (other rows beyond the %d kept)\n",
                      (unsigned long long)o->other_rows, EXC_SUMMARY_MAX);
}

static void exc_on_event(void *ctx, const struct tracer_event *ev)
{
    struct exc_out *o = ctx;

    FILE *fp;

    if (!ev) { /* end of a batch */
        /* A reader that went away (`| head`): end the trace cleanly through tracer_run's own
         * SIGTERM path; SIGPIPE is ignored (exc_run), since dying with a hit in flight could
         * kill the target. A reader that is merely slow never blocks us (outq.h). */
        if (outq_drain(o->q) == -EPIPE && !o->closing) {
            o->closing = true;
            (void)raise(SIGTERM);
        }
        return;
    }
    fp = outq_begin(o->q);
    if (fp && o->a->json)
        exc_json_event(fp, ev);
    else if (fp && ev->kind == TRACER_EV_END)
        exc_text(fp, o->a, ev);
    outq_commit(o->q);
    if (ev->kind == TRACER_EV_END && o->a->summary)
        exc_summary_add(o, ev);
}

/* ---- run ----------------------------------------------------------------------------------- */

static void exc_report_stats(const struct cli_common *c, const struct exc_args *a,
                             const struct tracer_stats *s, const char *why)
{
    char msg[512], unseen[160];

    if (a->json) {
        json_t *o = json_pack(
            "{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:I, s:I, s:f, s:I, s:f, s:f}", "event",
            "stop", "reason", why, "hits", (json_int_t)s->hits, "raises", (json_int_t)s->raises,
            "reported", (json_int_t)s->reported, "not_reported", (json_int_t)s->not_reported,
            "filtered", (json_int_t)s->filtered, "counted_hits", (json_int_t)s->counted_total,
            "counting", s->counting, "unseen_hits", (json_int_t)s->unseen_hits, "unseen_raises_est",
            (json_int_t)s->unseen_raises_est, "disarmed_seconds", s->disarmed_seconds, "disarms",
            (json_int_t)s->disarms, "count_cost_us", s->count_cost_us, "count_exact_rate",
            s->count_exact_rate);

        if (o && json_object_update_new(
                     o, json_pack("{s:f, s:f, s:f, s:f, s:I, s:I, s:f}", "budget", s->budget,
                                  "budget_spent_s", s->spent_s, "target_cpu_s", s->target_cpu_s,
                                  "stop_cost_us", s->stop_cost_us, "pinned_threads",
                                  (json_int_t)s->pinned_threads, "episodes",
                                  (json_int_t)s->episodes, "raises_est", s->raises_est)) < 0) {
            json_decref(o);
            o = NULL;
        }
        exc_json_put(stdout, o);
        (void)fflush(stdout);
        return;
    }
    if (s->counted_total == 0 && s->disarms > 0)
        (void)snprintf(unseen, sizeof(unseen),
                       "raises while rate-limited off not counted "
                       "(debug registers have no counter)");
    else
        (void)snprintf(unseen, sizeof(unseen),
                       "%llu breakpoint hits while rate-limited off (%s; about %llu raises)",
                       (unsigned long long)s->unseen_hits, s->counting ? "exact" : "estimated",
                       (unsigned long long)s->unseen_raises_est);
    (void)snprintf(msg, sizeof(msg),
                   "stopped (%s): %llu raises reported, %llu seen but not reported (rate limit), "
                   "%llu filtered out; %s, off for %.1f s",
                   why, (unsigned long long)s->reported, (unsigned long long)s->not_reported,
                   (unsigned long long)s->filtered, unseen, s->disarmed_seconds);
    cli_log(c, "info", 0, msg);
}

/* The per-site raise counts and estimates (out_sites.h), before the stop record. */
static void exc_sites_json(struct tracer *t)
{
    struct tracer_site *sites = malloc(TRACER_MAX_SITES * sizeof(*sites));

    if (sites && out_sites_json(stdout, sites, tracer_sites(t, sites, TRACER_MAX_SITES)) < 0)
        (void)fputs("{\"event\":\"sites\",\"error\":\"out of memory\"}\n", stdout);
    free(sites);
}

static void exc_report_start(const struct cli_common *c, const struct exc_args *a,
                             struct exc_out *o, const struct pyproc *pp, const struct tracer *t)
{
    char msg[256];

    if (a->json) {
        FILE *fp = outq_begin(o->q);

        if (fp)
            exc_json_put(fp,
                         json_pack("{s:s, s:i, s:s, s:s}", "event", "start", "pid", (int)pp->pid,
                                   "python", pp->loc.version, "mechanism", tracer_mechanism(t)));
        outq_commit(o->q);
        return;
    }
    (void)snprintf(msg, sizeof(msg),
                   "tracing exceptions of pid %d (Python %s) with %s breakpoints; Ctrl-C stops",
                   (int)pp->pid, pp->loc.version, tracer_mechanism(t));
    cli_log(c, "info", 0, msg);
}

static int exc_run(const struct cli_common *c, const struct exc_args *a, struct exc_out *o)
{
    struct tracer_opts to = {.max_rate = a->max_rate,
                             .burst = a->burst,
                             .type_filter = a->type,
                             .force_mech = a->mech,
                             .exact_count = a->exact_count,
                             .budget = a->budget,
                             .on_event = exc_on_event,
                             .ctx = o};
    struct ps_err err = {0};
    struct pyproc *pp = NULL;
    struct tracer *t = NULL;
    struct tracer_stats *st = NULL;
    const char *why = "error";
    struct ps_err oerr = {0};
    sigset_t stop_sigs, old_mask;
    int rc = pyproc_open(a->pid, &pp, &err);

    if (rc == 0)
        rc = outq_open(STDOUT_FILENO, OUTQ_DEFAULT_CAP, &o->q, &err);
    if (rc < 0) {
        pyproc_close(pp);
        return cli_fail(c, &err, rc);
    }
    if (pp->warning[0])
        cli_log(c, "warning", 0, pp->warning);
    (void)signal(SIGPIPE, SIG_IGN); /* a closed stdout is an EPIPE to handle, not a death */
    tracer_signals(&stop_sigs);
    (void)pthread_sigmask(SIG_BLOCK, &stop_sigs, &old_mask); /* see tracer_signals */
    rc = target_install_signal_teardown(&err); /* a crash of ours must not kill the target */
    if (rc == 0)
        rc = tracer_new(pp, &to, &t, &err);
    if (rc < 0)
        goto out_close;
    exc_report_start(c, a, o, pp, t);
    rc = tracer_run(t, a->duration, &why, &err);
    /* The target is released: what the reader did not take yet may now be written blocking. */
    if (outq_finish(o->q, &oerr) < 0 && rc == 0)
        why = "output closed";
    if (outq_dropped(o->q) > 0) {
        char msg[160];

        (void)snprintf(msg, sizeof(msg),
                       "%llu records were dropped because the output was not read fast enough "
                       "(pyscope never waits for its reader while it holds the target)",
                       (unsigned long long)outq_dropped(o->q));
        cli_log(c, "warning", 0, msg);
    }
    st = malloc(sizeof(*st));
    if (a->json)
        exc_sites_json(t);
    if (st) {
        tracer_stats(t, st);
        exc_report_stats(c, a, st, why);
    }
    if (a->summary)
        exc_summary_print(stdout, o);
    free(st);
    tracer_free(t);
out_close:
    (void)pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    outq_close(o->q);
    o->q = NULL;
    pyproc_close(pp);
    return rc < 0 ? cli_fail(c, &err, rc) : CLI_EXIT_OK;
}

int cli_exceptions(const struct cli_common *common, int argc, char **argv)
{
    struct exc_args a = {0};
    struct exc_out o = {.a = &a};
    int rc = exc_parse(common, argc, argv, &a);

    if (rc >= 0)
        return rc;
    cli_guard(common, a.pid);
    o.rows = calloc(EXC_SUMMARY_MAX, sizeof(*o.rows));
    if (!o.rows) {
        struct ps_err err = {0};
        return cli_fail(common, &err, ps_err_set(&err, -ENOMEM, "out of memory"));
    }
    rc = exc_run(common, &a, &o);
    free(o.rows);
    return rc;
}
