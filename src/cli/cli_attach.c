/* SPDX-License-Identifier: MIT */
/*
 * `pyscope attach`: the live terminal UI. Wires pyproc -> ui_attach_run (ui/app.h); parsing
 * and exit codes only. The target is opened before curses starts, so that "no such process"
 * or "permission denied" print as one sentence on a normal terminal. Never includes curses:
 * ui/app.h is the UI's whole interface. Compiled into the pyscope executable (not the engine
 * library), which links the UI.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "app.h"
#include "pyscope/cli.h"
#include "pyscope/guard.h"
#include "pyscope/pslist.h"
#include "pyscope/pyproc.h"
#include "pyscope/sampler.h"

struct attach_args {
    struct ui_attach_opts ui;
    char notice[512]; /* ui.notice points here */
    bool keys_markdown;
    pid_t pid;
};

static const char attach_usage[] =
    "usage: pyscope attach [options] <pid>\n"
    "\n"
    "A live view of a running Python process: threads and their state, the selected thread's\n"
    "stack with source lines, the functions where it spends its time (sampled), and the\n"
    "exceptions it raises as they happen (swallowed ones included). The target keeps running;\n"
    "exception tracing keeps its threads under ptrace (hardware breakpoints, never a write to\n"
    "its code) until you turn it off with `e` or quit.\n"
    "\n"
    "  --rate HZ           samples per second for the top table (default 100)\n"
    "  --no-exceptions     start with exception tracing off (`e` turns it on)\n"
    "  --locals            start with local variables shown in the stack pane\n"
    "  --native            show C frames in the stack pane, Python frames merged where the\n"
    "                      interpreter runs them (stops the threads briefly at each refresh;\n"
    "                      only while exception tracing is off)\n"
    "  --budget PCT        exception tracing keeps the target time it takes under PCT% of\n"
    "                      the target's CPU time (default 1; 0 = no budget)\n"
    "  --mechanism M       exception tracing by bpf, perf or debugreg (default: the first the\n"
    "                      kernel allows)\n"
    "  --max-frames N      draw N frames, then exit (for tests)\n"
    "  --keys-markdown     print the key list as Markdown (the README's list) and exit\n"
    "\n"
    "keys:\n";

enum attach_opt {
    OPT_RATE = 256,
    OPT_NO_EXC,
    OPT_LOCALS,
    OPT_NATIVE,
    OPT_MAX_FRAMES,
    OPT_KEYS_MD,
    OPT_BUDGET,
    OPT_MECH,
};

static const struct option attach_opts[] = {
    {"rate", required_argument, NULL, OPT_RATE},
    {"no-exceptions", no_argument, NULL, OPT_NO_EXC},
    {"locals", no_argument, NULL, OPT_LOCALS},
    {"native", no_argument, NULL, OPT_NATIVE},
    {"max-frames", required_argument, NULL, OPT_MAX_FRAMES},
    {"keys-markdown", no_argument, NULL, OPT_KEYS_MD},
    {"budget", required_argument, NULL, OPT_BUDGET},
    {"mechanism", required_argument, NULL, OPT_MECH},
    {"help", no_argument, NULL, 'h'},
    CLI_LONGOPT_LOG_FORMAT,
    {NULL, 0, NULL, 0},
};

static void attach_help(void)
{
    (void)fputs(attach_usage, stdout);
    ui_attach_write_keys(stdout, false);
    (void)fputs("\nCtrl-Z turns exception tracing off before suspending: a suspended pyscope\n"
                "holds nothing of the target.\n"
                "\nexit codes: as `pyscope --help`; 0 after `q`, or after SIGINT, SIGTERM or\n"
                "SIGHUP once the terminal is restored and the target released.\n",
                stdout);
}

/* One option; returns -1 to go on, else an exit code. */
static int attach_opt(const struct cli_common *c, void *args, int opt, const char *arg)
{
    struct attach_args *a = args;
    long v;

    switch (opt) {
    case OPT_NO_EXC: a->ui.no_exceptions = true; return -1;
    case OPT_LOCALS: a->ui.locals = true; return -1;
    case OPT_NATIVE: a->ui.native = true; return -1;
    case OPT_KEYS_MD: a->keys_markdown = true; return -1;
    case CLI_OPT_LOG_FORMAT: return -1;
    case OPT_RATE:
        if (!cli_parse_long(arg, 1, SAMPLER_MAX_RATE, &v))
            return cli_usage(c, "--rate takes a number from 1 to %d", SAMPLER_MAX_RATE);
        a->ui.rate_hz = (double)v;
        return -1;
    case OPT_MAX_FRAMES:
        if (!cli_parse_long(arg, 1, 1000000, &v))
            return cli_usage(c, "--max-frames takes a number from 1 to 1000000");
        a->ui.max_frames = v;
        return -1;
    case OPT_BUDGET:
        if (!cli_parse_budget(arg, &a->ui.budget))
            return cli_usage(c, "--budget takes a percentage from 0 to 100");
        return -1;
    case OPT_MECH:
        if (!cli_parse_mech(arg, &a->ui.mech))
            return cli_usage(c, "--mechanism takes `bpf`, `perf` or `debugreg`");
        return -1;
    case 'h': attach_help(); return CLI_EXIT_OK;
    default: return cli_usage(c, "unknown option for attach");
    }
}

static int attach_parse(const struct cli_common *c, int argc, char **argv, struct attach_args *a)
{
    int rc = cli_getopt(c, argc, argv, "h", attach_opts, attach_opt, a);

    if (rc >= 0)
        return rc;
    if (a->keys_markdown) {
        ui_attach_write_keys(stdout, true);
        return CLI_EXIT_OK;
    }
    return cli_one_pid(c, argc, argv, "attach", &a->pid);
}

/* One session on pid; *next is the process chosen with `w` (0: none). */
static int attach_session(const struct cli_common *common, struct attach_args *a, pid_t pid,
                          pid_t *next)
{
    struct ps_err err = {0};
    struct pyproc *pp = NULL;
    int rc;

    *next = 0;
    a->ui.switch_to = next;
    a->ui.notice = NULL;
    rc = pyproc_open(pid, &pp, &err);
    if (rc < 0)
        return cli_fail(common, &err, rc);
    if (pp->warning[0])
        cli_log(common, "warning", 0, pp->warning);
    if (pslist_workers_note(pid, "attach", a->notice, sizeof(a->notice)))
        a->ui.notice = a->notice;
    rc = ui_attach_run(pp, &a->ui, &err);
    pyproc_close(pp);
    if (rc < 0)
        return cli_fail(common, &err, rc);
    return CLI_EXIT_OK;
}

int cli_attach(const struct cli_common *common, int argc, char **argv)
{
    struct attach_args a = {.ui = {.rate_hz = UI_DEFAULT_RATE}};
    pid_t pid, next = 0;
    int rc = attach_parse(common, argc, argv, &a);

    if (rc >= 0)
        return rc;
    cli_hold_stop_signals();
    cli_guard(common, a.pid);
    /* `w` ends a session with the next process to attach to; everything of the last one is
     * released by then, and the guard is pointed at the new target before it is opened. */
    for (pid = a.pid;; pid = next) {
        rc = attach_session(common, &a, pid, &next);
        if (rc != CLI_EXIT_OK || next == 0)
            return rc;
        guard_retarget(next);
    }
}
