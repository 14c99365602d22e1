/* SPDX-License-Identifier: MIT */
/*
 * `pyscope dump`: one snapshot of every thread, as text (traceback-like) or JSON. Wires
 * pyproc -> collect -> out; no logic of its own beyond choosing the exit code (1 when some
 * thread could not be read consistently).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "pyscope/cli.h"
#include "pyscope/collect.h"
#include "pyscope/out.h"
#include "pyscope/pyproc.h"
#include "pyscope/snap.h"
#include "pyscope/target.h"

struct dump_args {
    bool json, pretty, blocking, no_source;
    int retries;
    const char *output;
    const char *record;
    pid_t pid;
};

static const char dump_usage[] =
    "usage: pyscope dump [options] <pid>\n"
    "\n"
    "Print every thread's Python stack (innermost last, like a traceback), with thread names,\n"
    "the GIL holder and each thread's OS state.\n"
    "\n"
    "  --json              one JSON document (schema: docs/schema/dump.schema.json)\n"
    "  --pretty            indent the JSON\n"
    "  --blocking          stop the threads while reading, for an exact snapshot\n"
    "  --retries N         consistency retries per thread without --blocking (default 8)\n"
    "  --no-source         do not print source lines in the text output\n"
    "  -o, --output FILE   write to FILE instead of standard output\n"
    "  --record FILE       also save every byte read from the target to FILE (+ FILE.meta),\n"
    "                      a replayable fixture for bug reports and tests\n";

enum dump_opt {
    OPT_JSON = 256,
    OPT_PRETTY,
    OPT_BLOCKING,
    OPT_RETRIES,
    OPT_NO_SOURCE,
    OPT_RECORD
};

static const struct option dump_opts[] = {
    {"json", no_argument, NULL, OPT_JSON},
    {"pretty", no_argument, NULL, OPT_PRETTY},
    {"blocking", no_argument, NULL, OPT_BLOCKING},
    {"retries", required_argument, NULL, OPT_RETRIES},
    {"no-source", no_argument, NULL, OPT_NO_SOURCE},
    {"record", required_argument, NULL, OPT_RECORD},
    {"output", required_argument, NULL, 'o'},
    {"help", no_argument, NULL, 'h'},
    CLI_LONGOPT_LOG_FORMAT,
    {NULL, 0, NULL, 0},
};

/* One option; returns -1 to go on, else an exit code. */
static int dump_opt(const struct cli_common *c, struct dump_args *a, int opt, const char *arg)
{
    long v;

    switch (opt) {
    case OPT_JSON: a->json = true; return -1;
    case OPT_PRETTY: a->pretty = true; return -1;
    case OPT_BLOCKING: a->blocking = true; return -1;
    case OPT_NO_SOURCE: a->no_source = true; return -1;
    case OPT_RECORD: a->record = arg; return -1;
    case 'o': a->output = arg; return -1;
    case CLI_OPT_LOG_FORMAT: return -1;
    case OPT_RETRIES:
        if (!cli_parse_long(arg, 0, COLLECT_MAX_RETRIES, &v))
            return cli_usage(c, "--retries takes a number from 0 to %d", COLLECT_MAX_RETRIES);
        a->retries = (int)v;
        return -1;
    case 'h': (void)fputs(dump_usage, stdout); return CLI_EXIT_OK;
    default: return cli_usage(c, "unknown option for dump");
    }
}

static int dump_parse(const struct cli_common *c, int argc, char **argv, struct dump_args *a)
{
    int opt, rc;

    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "o:h", dump_opts, NULL)) != -1) {
        rc = dump_opt(c, a, opt, optarg);
        if (rc >= 0)
            return rc;
    }
    if (optind != argc - 1)
        return cli_usage(c, "dump takes exactly one pid");
    return cli_parse_pid(c, argv[optind], &a->pid) ? -1 : CLI_EXIT_USAGE;
}

static int dump_write(const struct dump_args *a, const struct snap *s, struct ps_err *err)
{
    char root[64];
    struct out_opts o = {0};
    FILE *fp = stdout;
    int rc;

    (void)snprintf(root, sizeof(root), "/proc/%d/root", (int)a->pid);
    o.source_lines = !a->no_source;
    o.source_root = root;
    o.json_indent = a->pretty ? 2 : 0;
    if (a->output) {
        fp = fopen(a->output, "w");
        if (!fp)
            return ps_err_set(err, -errno, "cannot write %s: %s", a->output, strerror(errno));
    }
    rc = a->json ? out_json_write(fp, s, &o, err) : out_text_write(fp, s, &o, err);
    if (fp != stdout && fclose(fp) != 0 && rc == 0)
        rc = ps_err_set(err, -EIO, "cannot write %s: %s", a->output, strerror(errno));
    if (fp == stdout && fflush(stdout) != 0 && rc == 0)
        rc = ps_err_set(err, -EIO, "cannot write the output: %s", strerror(errno));
    return rc;
}

static bool snapshot_partial(const struct snap *s)
{
    for (size_t i = 0; i < s->nthreads; i++)
        if (s->threads[i].status == SNAP_THREAD_INCONSISTENT ||
            s->threads[i].status == SNAP_THREAD_ERROR)
            return true;
    return false;
}

static int dump_run(const struct cli_common *c, const struct dump_args *a)
{
    struct collect_opts co = {.blocking = a->blocking, .retries = a->retries};
    struct ps_err err = {0};
    struct pyproc *pp = NULL;
    struct snap *s = NULL;
    int rc, status;

    rc = pyproc_open(a->pid, &pp, &err);
    if (rc < 0)
        return cli_fail(c, &err, rc);
    if (pp->warning[0])
        cli_log(c, "warning", 0, pp->warning);
    rc = a->record ? pyproc_record(pp, a->record, &err) : 0;
    if (rc == 0)
        rc = collect_snapshot(pp, &co, &s, &err);
    if (rc == 0)
        rc = dump_write(a, s, &err);
    if (rc < 0)
        status = cli_fail(c, &err, rc);
    else
        status = snapshot_partial(s) ? CLI_EXIT_PARTIAL : CLI_EXIT_OK;
    snap_free(s);
    pyproc_close(pp);
    return status;
}

int cli_dump(const struct cli_common *common, int argc, char **argv)
{
    struct dump_args a = {.retries = COLLECT_DEFAULT_RETRIES};
    struct ps_err err = {0};
    int rc = dump_parse(common, argc, argv, &a);

    if (rc >= 0)
        return rc;
    /* From here on, a signal detaches anything we stopped (blocking mode). */
    if (a.blocking) {
        rc = target_install_signal_teardown(&err);
        if (rc < 0)
            return cli_fail(common, &err, rc);
    }
    return dump_run(common, &a);
}
