/* SPDX-License-Identifier: MIT */
/*
 * `pyscope ps`: every Python process in view, masters with their workers. Wires pslist -> out_ps;
 * no arguments beyond the output format. The stop signals are held from the end of parsing
 * (cli_hold_stop_signals): a stop during the scan lets the list be written, and the exit code
 * is the scan's own.
 */
#include <getopt.h>
#include <stdio.h>

#include "pyscope/cli.h"
#include "pyscope/out_ps.h"
#include "pyscope/pslist.h"

static const char ps_usage[] =
    "usage: pyscope ps [--json]\n"
    "\n"
    "List every Python process in view: pid, parent, Python version, threads, resident memory,\n"
    "CPU seconds used and command line; a master (gunicorn, uvicorn, multiprocessing) is\n"
    "followed by its Python workers, indented. A process counts as Python when it maps a\n"
    "libpython3.* or its executable is named python*; the version is read from its memory\n"
    "(or, where that is refused, taken from those names). Nothing is stopped or traced.\n"
    "\n"
    "  --json              one JSON document {\"processes\": [...], \"unreadable\": N, ...}\n";

enum ps_opt {
    OPT_JSON = 256
};

static const struct option ps_opts[] = {
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, 'h'},
    CLI_LONGOPT_LOG_FORMAT,
    {NULL, 0, NULL, 0},
};

static int ps_opt(const struct cli_common *c, void *args, int opt, const char *arg)
{
    bool *json = args;

    (void)arg;
    switch (opt) {
    case OPT_JSON: *json = true; return -1;
    case CLI_OPT_LOG_FORMAT: return -1;
    case 'h': (void)fputs(ps_usage, stdout); return CLI_EXIT_OK;
    default: return cli_usage(c, "unknown option for ps");
    }
}

int cli_ps(const struct cli_common *common, int argc, char **argv)
{
    struct ps_err err = {0};
    struct pslist l = {0};
    bool json = false;
    int rc = cli_getopt(common, argc, argv, "h", ps_opts, ps_opt, &json);
    char note[160];

    if (rc >= 0)
        return rc;
    if (optind != argc)
        return cli_usage(common, "ps takes no arguments");
    cli_hold_stop_signals();
    rc = pslist_scan(&l, &err);
    if (rc == 0)
        rc = json ? out_ps_json(stdout, &l, &err) : out_ps_text(stdout, &l, &err);
    if (rc == 0 && l.unreadable) {
        (void)snprintf(note, sizeof(note),
                       "%zu process%s could not be inspected (another user's, or no "
                       "CAP_SYS_PTRACE); run as root to see them",
                       l.unreadable, l.unreadable == 1 ? "" : "es");
        cli_log(common, "warning", 0, note);
    }
    pslist_free(&l);
    return rc < 0 ? cli_fail(common, &err, rc) : CLI_EXIT_OK;
}
