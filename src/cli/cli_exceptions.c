/* SPDX-License-Identifier: MIT */
/*
 * `pyscope exceptions`: a live feed of every exception the target raises, swallowed ones
 * included (tracer.h), as text lines or JSON lines, with an optional summary table, or (with
 * --format) a profile of the raise stacks written at the end. Wires pyproc -> tracer ->
 * writers (out_exc.h: feed lines, the summary table, the raise-stack profile; out_profile.h).
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pyscope/cli.h"
#include "pyscope/evloop.h"
#include "pyscope/fanout.h"
#include "pyscope/out_exc.h"
#include "pyscope/out_profile.h"
#include "pyscope/out_sites.h"
#include "pyscope/outq.h"
#include "pyscope/pyproc.h"
#include "pyscope/target.h"
#include "pyscope/tracer.h"

struct exc_args {
    bool json, stack, summary, exact_count;
    bool subprocesses; /* every Python process of the tree, one forked tracer each (fanout.h) */
    bool in_tree;      /* this is one of those tracers: events show their pid */
    bool profile;      /* --format: the raise stacks as a profile, instead of the feed */
    enum out_profile_format format;
    const char *type, *output;
    double duration, max_rate, budget;
    double deadline; /* in a tree: the run's end, evloop_now (0: none); see exc_tree_one */
    unsigned burst;
    enum tracer_mech mech;
    pid_t pid;
};

struct exc_out {
    const struct exc_args *a;
    struct out_exc_summary *summary; /* with --summary */
    struct profile *prof;            /* with --format: the raise stacks */
    struct ps_err prof_err;          /* its first error (it stops counting) */
    FILE *prof_fp;                   /* -o FILE (opened before the trace), or stdout */
    bool closing;                    /* stdout failed: the trace is being ended */
    struct outq *q;                  /* non-blocking stdout while threads are under ptrace */
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
    "  --subprocesses      also trace the target's Python children and their descendants\n"
    "                      (a gunicorn or uvicorn master's workers, a shell's python), as they\n"
    "                      come and go; every event carries its pid (one tracer process each)\n"
    "  --mechanism M       bpf, perf or debugreg (default: the first the kernel allows;\n"
    "                      bpf reads each raise in the kernel without stopping the target)\n"
    "  --format F          instead of the feed, write where exceptions come from at the end:\n"
    "                      the reported raises' stacks weighted by count, as collapsed,\n"
    "                      flamegraph (SVG) or speedscope (see docs/exceptions.md)\n"
    "  -o, --output FILE   where --format writes (default: stdout)\n"
    "  --budget PCT        keep the target time tracing takes (stops, records) under PCT% of\n"
    "                      the target's CPU time (default 1; 0 = no budget); raises not\n"
    "                      stopped for are estimated per raise site (the \"sites\" record);\n"
    "                      with bpf every raise is still counted exactly, at the cost of a\n"
    "                      uprobe trap each, which the budget does not limit (the summary\n"
    "                      and attach's header say what tracing took)\n";

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
    OPT_FORMAT,
    OPT_BUDGET,
    OPT_SUBPROCESSES
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
    {"format", required_argument, NULL, OPT_FORMAT},
    {"output", required_argument, NULL, 'o'},
    {"budget", required_argument, NULL, OPT_BUDGET},
    {"subprocesses", no_argument, NULL, OPT_SUBPROCESSES},
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
    case OPT_SUBPROCESSES: a->subprocesses = true; return -1;
    case OPT_TYPE: a->type = arg; return -1;
    case 'o': a->output = arg; return -1;
    case OPT_FORMAT:
        a->profile = true;
        if (!out_profile_parse_format(arg, &a->format) || a->format == OUT_PROFILE_SAMPLES) {
            char names[128];
            return cli_usage(c, "--format takes %s",
                             out_profile_names(false, names, sizeof(names)));
        }
        return -1;
    case OPT_DURATION:
    case OPT_MAX_RATE:
    case OPT_BURST: return exc_opt_value(c, a, opt, arg);
    case OPT_BUDGET:
        if (!cli_parse_budget(arg, &a->budget))
            return cli_usage(c, "--budget takes a percentage from 0 to 100");
        return -1;
    case OPT_MECH: {
        int mech = 0;

        if (!cli_parse_mech(arg, &mech))
            return cli_usage(c, "--mechanism takes `bpf`, `perf` or `debugreg`");
        a->mech = (enum tracer_mech)mech;
        return -1;
    }
    case CLI_OPT_LOG_FORMAT: return -1;
    case 'h': (void)fputs(exc_usage, stdout); return CLI_EXIT_OK;
    default: return cli_usage(c, "unknown option for exceptions");
    }
}

static int exc_parse(const struct cli_common *c, int argc, char **argv, struct exc_args *a)
{
    int rc = cli_getopt(c, argc, argv, "ho:", exc_opts, exc_opt, a);
    bool to_stdout = !a->output || strcmp(a->output, "-") == 0;

    if (rc >= 0)
        return rc;
    if (a->output && !a->profile)
        return cli_usage(c, "-o goes with --format (the feed itself is written to stdout)");
    if (a->profile && (a->json || a->stack))
        return cli_usage(c, "--format replaces the feed: drop --json and --stack");
    if (a->subprocesses && (a->profile || a->summary))
        return cli_usage(c, "--subprocesses gives the live feed only: drop --format and --summary "
                            "(or run them on one pid)");
    if (a->profile && a->summary && to_stdout)
        return cli_usage(c, "--summary with --format needs -o FILE for the profile");
    return cli_one_pid(c, argc, argv, "exceptions", &a->pid);
}

/* ---- feed ---------------------------------------------------------------------------------- */

/* One event of the live feed, as a JSON line or (its END) a text line. */
static void exc_feed(struct exc_out *o, const struct tracer_event *ev)
{
    FILE *fp = outq_begin(o->q);

    if (fp && o->a->json)
        out_exc_json(fp, ev);
    else if (fp && ev->kind == TRACER_EV_END)
        out_exc_text(fp, ev,
                     (o->a->stack ? OUT_EXC_STACK : 0u) | (o->a->in_tree ? OUT_EXC_PID : 0u));
    outq_commit(o->q);
}

static void exc_on_event(void *ctx, const struct tracer_event *ev)
{
    struct exc_out *o = ctx;

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
    if (!o->prof)
        exc_feed(o, ev);
    else if (o->prof_err.code == 0 && out_exc_profile_add(o->prof, ev, &o->prof_err) < 0)
        return; /* reported at the end, with what was counted */
    if (ev->kind == TRACER_EV_END && o->summary)
        out_exc_summary_add(o->summary, ev);
}

/* ---- run ----------------------------------------------------------------------------------- */

static void exc_report_stats(const struct cli_common *c, const struct exc_args *a,
                             const struct tracer_stats *s, const char *why)
{
    char msg[600];

    if (a->json) {
        out_exc_json_stop(stdout, a->pid, why, s);
        (void)fflush(stdout);
        return;
    }
    out_exc_stop_words(msg, sizeof(msg), a->pid, a->in_tree, why, s);
    cli_log(c, "info", 0, msg);
}

/* The summary's counts from the exact per-site counts (bpf: the kernel counted every raise). */
static void exc_summary_exact(struct tracer *t, struct out_exc_summary *sum)
{
    struct tracer_site *sites;

    if (strcmp(tracer_mechanism(t), "bpf") != 0)
        return;
    sites = malloc(TRACER_MAX_SITES * sizeof(*sites));
    if (sites)
        out_exc_summary_exact(sum, sites, tracer_sites(t, sites, TRACER_MAX_SITES));
    free(sites);
}

/* The per-site raise counts and estimates (out_sites.h), before the stop record. */
static void exc_sites_json(struct tracer *t, pid_t pid)
{
    struct tracer_site *sites = malloc(TRACER_MAX_SITES * sizeof(*sites));

    /* a write error shows at the final flush of stdout, as for every record */
    int rc = sites ? out_sites_json(stdout, pid, sites, tracer_sites(t, sites, TRACER_MAX_SITES))
                   : -ENOMEM;

    if (rc == -ENOMEM)
        out_sites_json_oom(stdout);
    free(sites);
}

static void exc_report_start(const struct cli_common *c, const struct exc_args *a,
                             struct exc_out *o, const struct pyproc *pp, const struct tracer *t)
{
    char msg[640];

    if (a->json) {
        FILE *fp = outq_begin(o->q);

        if (fp)
            out_exc_json_start(fp, pp->pid, pp->loc.version, tracer_mechanism(t),
                               tracer_mechanism_note(t));
        outq_commit(o->q);
        (void)outq_drain(o->q); /* at once: a reader waits for it to know tracing began */
        return;
    }
    out_exc_start_words(msg, sizeof(msg), pp->pid, pp->loc.version, tracer_mechanism(t),
                        tracer_mechanism_note(t));
    cli_log(c, "info", 0, msg);
}

/* The trace's length: --duration, or in a tree what is left of the run (at least a moment, so
 * that a tracer set up after the run's end still ends by "duration"). */
static double exc_duration(const struct exc_args *a)
{
    if (a->deadline <= 0)
        return a->duration;
    return fmax(a->deadline - evloop_now(), 0.001);
}

/* --format: the profile, written once the target is released (its errors first). */
static int exc_write_profile(const struct exc_args *a, struct exc_out *o, struct ps_err *err)
{
    char title[96];
    struct out_profile_opts po = {
        .title = title, .exporter = "pyscope@" PYSCOPE_VERSION, .unit = "raises"};

    int rc;

    (void)snprintf(title, sizeof(title), "pyscope exceptions of pid %d: where they are raised",
                   (int)a->pid);
    rc = out_profile_write(o->prof_fp, a->format, o->prof, &po, err);
    if (rc == 0 && o->prof_err.code < 0) { /* the raises counted until it failed are written */
        *err = o->prof_err;
        rc = o->prof_err.code;
    }
    return rc;
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
    if (!a->subprocesses && !a->in_tree)
        cli_workers_note(c, a->pid, "exceptions");
    (void)signal(SIGPIPE, SIG_IGN); /* a closed stdout is an EPIPE to handle, not a death */
    evloop_signals(EVLOOP_SIG_STOP | EVLOOP_SIG_TSTP, &stop_sigs);
    (void)pthread_sigmask(SIG_BLOCK, &stop_sigs, &old_mask); /* see tracer_run */
    rc = target_install_signal_teardown(&err); /* a crash of ours must not kill the target */
    if (rc == 0)
        rc = tracer_new(pp, &to, &t, &err);
    if (rc < 0)
        goto out_close;
    exc_report_start(c, a, o, pp, t);
    rc = tracer_run(t, exc_duration(a), &why, &err);
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
        exc_sites_json(t, a->pid);
    if (st) {
        tracer_stats(t, st);
        exc_report_stats(c, a, st, why);
    }
    if (o->prof && exc_write_profile(a, o, &err) < 0 && rc == 0)
        rc = err.code;
    if (o->summary) {
        exc_summary_exact(t, o->summary);
        out_exc_summary_write(stdout, o->summary);
    }
    free(st);
    tracer_free(t);
out_close:
    (void)pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    outq_close(o->q);
    o->q = NULL;
    pyproc_close(pp);
    return rc < 0 ? cli_fail(c, &err, rc) : CLI_EXIT_OK;
}

/* The summary's table and --format's profile and file, before anything is traced. */
static int exc_outputs_open(const struct exc_args *a, struct exc_out *o, struct ps_err *err)
{
    int rc = 0;

    if (a->summary)
        rc = out_exc_summary_new(&o->summary, err);
    if (rc == 0 && a->profile)
        rc = profile_new(&o->prof, err);
    if (rc == 0 && a->profile)
        rc = cli_open_output(a->output, &o->prof_fp, err);
    return rc;
}

/* --subprocesses: what each forked tracer needs. */
struct exc_tree {
    const struct cli_common *c;
    const struct exc_args *a;
};

/* fanout_fn: trace one process of the tree, as `exceptions PID` would, in a forked child. The
 * run's deadline is the same for every child: the seconds left are counted from the fork, not
 * from the moment the trace starts (attaching takes a while on a loaded machine), so that each
 * tracer ends by itself at the run's end, within fanout's grace (its stop record: "duration"). */
static int exc_tree_one(void *arg, pid_t pid, double remaining_s)
{
    const struct exc_tree *tree = arg;
    struct exc_args a = *tree->a;
    struct exc_out o = {.a = &a};

    a.pid = pid;
    a.duration = remaining_s;
    a.deadline = remaining_s > 0 ? evloop_now() + remaining_s : 0;
    a.subprocesses = false;
    a.in_tree = true;
    cli_guard(tree->c, pid);
    return exc_run(tree->c, &a, &o);
}

/* --subprocesses: one tracer process per Python process of the tree (fanout.h). */
static int exc_tree(const struct cli_common *c, const struct exc_args *a)
{
    const struct exc_tree tree = {.c = c, .a = a};
    struct fanout_stats st = {0};
    struct ps_err err = {0};
    const char *why = "error";
    char msg[256];
    int rc;

    (void)signal(SIGPIPE, SIG_IGN); /* a closed stdout is an EPIPE to handle, not a death */
    rc = fanout_run(a->pid, a->duration, exc_tree_one, (void *)&tree, &why, &st, &err);
    if (rc < 0)
        return cli_fail(c, &err, rc);
    out_exc_tree_words(msg, sizeof(msg), a->pid, why, st.followed, st.not_python, st.over_cap);
    if (!a->json)
        cli_log(c, "info", 0, msg);
    return CLI_EXIT_OK;
}

int cli_exceptions(const struct cli_common *common, int argc, char **argv)
{
    struct exc_args a = {0};
    struct exc_out o = {.a = &a};
    struct ps_err err = {0};
    int rc = exc_parse(common, argc, argv, &a);

    if (rc >= 0)
        return rc;
    cli_hold_stop_signals();
    if (a.subprocesses)
        return exc_tree(common, &a);
    cli_guard(common, a.pid);
    rc = exc_outputs_open(&a, &o, &err);
    if (rc == 0)
        rc = exc_run(common, &a, &o);
    else
        rc = cli_fail(common, &err, rc);
    if (o.prof_fp && cli_close_output(a.output, o.prof_fp, 0, &err) < 0 && rc == CLI_EXIT_OK)
        rc = cli_fail(common, &err, -EIO);
    profile_free(o.prof);
    out_exc_summary_free(o.summary);
    return rc;
}
