/* SPDX-License-Identifier: MIT */
/*
 * `pyscope exceptions`: a live feed of every exception the target raises, swallowed ones
 * included (tracer.h), as text lines or JSON lines, with an optional summary table. Wires
 * pyproc -> tracer -> writers; the only state here is the summary's bounded table.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pyscope/cli.h"
#include "pyscope/pyproc.h"
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
    bool json, stack, summary;
    const char *type;
    double duration, max_rate;
    unsigned burst;
    enum tracer_mech mech;
    pid_t pid;
};

struct exc_out {
    const struct exc_args *a;
    struct exc_row *rows; /* EXC_SUMMARY_MAX */
    size_t nrows;
    uint64_t other_rows;
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
    "  --mechanism M       perf or debugreg (default: perf when the kernel allows it)\n";

enum exc_opt {
    OPT_JSON = 256,
    OPT_STACK,
    OPT_TYPE,
    OPT_DURATION,
    OPT_SUMMARY,
    OPT_MAX_RATE,
    OPT_BURST,
    OPT_MECH
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
static int exc_opt(const struct cli_common *c, struct exc_args *a, int opt, const char *arg)
{
    switch (opt) {
    case OPT_JSON: a->json = true; return -1;
    case OPT_STACK: a->stack = true; return -1;
    case OPT_SUMMARY: a->summary = true; return -1;
    case OPT_TYPE: a->type = arg; return -1;
    case OPT_DURATION:
    case OPT_MAX_RATE:
    case OPT_BURST: return exc_opt_value(c, a, opt, arg);
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
    int opt, rc;

    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "h", exc_opts, NULL)) != -1) {
        rc = exc_opt(c, a, opt, optarg);
        if (rc >= 0)
            return rc;
    }
    if (optind != argc - 1)
        return cli_usage(c, "exceptions takes exactly one pid");
    return cli_parse_pid(c, argv[optind], &a->pid) ? -1 : CLI_EXIT_USAGE;
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

static json_t *exc_json_frame(const struct tracer_frame *f)
{
    return json_pack("{s:s, s:s, s:i}", "function", f->function, "file", f->file, "line", f->line);
}

static json_t *exc_json_event(const struct tracer_event *ev)
{
    bool end = ev->kind == TRACER_EV_END;
    const char *kind = !end ? "raise" : ev->propagating ? "propagating" : "handled";
    json_t *o =
        json_pack("{s:s, s:I, s:s, s:I, s:i, s:f}", "event", kind, "seq", (json_int_t)ev->raise_seq,
                  "type", ev->type, "thread_id", (json_int_t)ev->thread_id, "native_id",
                  (int)ev->native_id, "time", ev->time);
    json_t *frames = json_array();

    if (!o || !frames) {
        json_decref(o);
        json_decref(frames);
        return NULL;
    }
    (void)json_object_set_new(o, "message",
                              ev->has_message ? json_string(ev->message) : json_null());
    if (!end) {
        for (size_t i = 0; i < ev->nframes; i++)
            (void)json_array_append_new(frames, exc_json_frame(&ev->frames[i]));
        (void)json_object_set_new(o, "frames", frames);
        (void)json_object_set_new(o, "reraise", json_boolean(ev->reraise));
        (void)json_object_set_new(o, "cause",
                                  ev->cause_type[0] ? json_string(ev->cause_type) : json_null());
        (void)json_object_set_new(
            o, "context", ev->context_type[0] ? json_string(ev->context_type) : json_null());
        return o;
    }
    json_decref(frames);
    if (!ev->propagating) {
        (void)json_object_set_new(o, "handled_at", exc_json_frame(&ev->handled_at));
        (void)json_object_set_new(o, "fate_unknown", json_boolean(ev->fate_unknown));
    }
    return o;
}

static void exc_json_put(FILE *fp, json_t *o)
{
    if (o && json_dumpf(o, fp, JSON_COMPACT) == 0)
        (void)fputc('\n', fp);
    json_decref(o);
    (void)fflush(fp);
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

    if (o->a->json)
        exc_json_put(stdout, exc_json_event(ev));
    else if (ev->kind == TRACER_EV_END)
        exc_text(stdout, o->a, ev);
    if (ev->kind == TRACER_EV_END && o->a->summary)
        exc_summary_add(o, ev);
    (void)fflush(stdout);
}

/* ---- run ----------------------------------------------------------------------------------- */

static void exc_report_stats(const struct cli_common *c, const struct exc_args *a,
                             const struct tracer_stats *s, const char *why)
{
    char msg[512];

    if (a->json) {
        exc_json_put(
            stdout,
            json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:I, s:I, s:f}", "event",
                      "stop", "reason", why, "hits", (json_int_t)s->hits, "raises",
                      (json_int_t)s->raises, "reported", (json_int_t)s->reported, "not_reported",
                      (json_int_t)s->not_reported, "filtered", (json_int_t)s->filtered,
                      "counted_hits", (json_int_t)s->counted_total, "counting", s->counting,
                      "unseen_hits", (json_int_t)s->unseen_hits, "unseen_raises_est",
                      (json_int_t)s->unseen_raises_est, "disarmed_seconds", s->disarmed_seconds));
        return;
    }
    (void)snprintf(msg, sizeof(msg),
                   "stopped (%s): %llu raises reported, %llu seen but not reported (rate limit), "
                   "%llu filtered out; %llu breakpoint hits while rate-limited off (about %llu "
                   "raises), off for %.1f s",
                   why, (unsigned long long)s->reported, (unsigned long long)s->not_reported,
                   (unsigned long long)s->filtered, (unsigned long long)s->unseen_hits,
                   (unsigned long long)s->unseen_raises_est, s->disarmed_seconds);
    cli_log(c, "info", 0, msg);
}

static void exc_report_start(const struct cli_common *c, const struct exc_args *a,
                             const struct pyproc *pp, const struct tracer *t)
{
    char msg[256];

    if (a->json) {
        exc_json_put(stdout,
                     json_pack("{s:s, s:i, s:s, s:s}", "event", "start", "pid", (int)pp->pid,
                               "python", pp->loc.version, "mechanism", tracer_mechanism(t)));
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
                             .on_event = exc_on_event,
                             .ctx = o};
    struct ps_err err = {0};
    struct pyproc *pp = NULL;
    struct tracer *t = NULL;
    struct tracer_stats *st = NULL;
    const char *why = "error";
    int rc = pyproc_open(a->pid, &pp, &err);

    if (rc < 0)
        return cli_fail(c, &err, rc);
    if (pp->warning[0])
        cli_log(c, "warning", 0, pp->warning);
    rc = tracer_new(pp, &to, &t, &err);
    if (rc < 0)
        goto out_close;
    exc_report_start(c, a, pp, t);
    rc = tracer_run(t, a->duration, &why, &err);
    st = malloc(sizeof(*st));
    if (st) {
        tracer_stats(t, st);
        exc_report_stats(c, a, st, why);
    }
    if (a->summary)
        exc_summary_print(stdout, o);
    free(st);
    tracer_free(t);
out_close:
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
    o.rows = calloc(EXC_SUMMARY_MAX, sizeof(*o.rows));
    if (!o.rows) {
        struct ps_err err = {0};
        return cli_fail(common, &err, ps_err_set(&err, -ENOMEM, "out of memory"));
    }
    rc = exc_run(common, &a, &o);
    free(o.rows);
    return rc;
}
