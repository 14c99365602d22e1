/* SPDX-License-Identifier: MIT */
/*
 * The pyscope command line: parses arguments, wires the engine's modules, prints the one error
 * sentence and maps it to a documented exit code. No engine logic lives here.
 *
 * Exit codes (eu-stack's convention extended; documented in README.md and --help):
 *   0 ok, 1 partial (some thread could not be read consistently), 2 error, 3 permission
 *   denied, 4 not a Python process, 5 unsupported Python version, 6 no such process, 64 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pyscope/collect.h"
#include "pyscope/err.h"
#include "pyscope/layout.h"
#include "pyscope/out.h"
#include "pyscope/pyproc.h"
#include "pyscope/snap.h"
#include "pyscope/target.h"

#define PYSCOPE_VERSION "0.1.0"

enum exit_code {
    EXIT_OK = 0,
    EXIT_PARTIAL = 1,
    EXIT_ERROR = 2,
    EXIT_PERM = 3,
    EXIT_NOTPYTHON = 4,
    EXIT_VERSION = 5,
    EXIT_NOPROC = 6,
    EXIT_USAGE = 64,
};

enum log_format { LOG_TEXT, LOG_JSON };

struct cli {
    enum log_format log_format;
    bool json;
    bool pretty;
    bool blocking;
    bool no_source;
    int retries;
    const char *output;
    const char *record;
    pid_t pid;
};

static const char usage_text[] =
    "usage: pyscope <command> [options] <pid>\n"
    "\n"
    "Read a running Python process from the outside: nothing is injected, the target keeps\n"
    "running (unless --blocking) and is never left stopped or traced.\n"
    "\n"
    "commands:\n"
    "  dump <pid>          print every thread's Python stack (innermost last, like a traceback)\n"
    "\n"
    "dump options:\n"
    "  --json              one JSON document (schema: docs/schema/dump.schema.json)\n"
    "  --pretty            indent the JSON\n"
    "  --blocking          stop the threads while reading, for an exact snapshot\n"
    "  --retries N         consistency retries per thread without --blocking (default 8)\n"
    "  --no-source         do not print source lines in the text output\n"
    "  -o, --output FILE   write to FILE instead of standard output\n"
    "  --record FILE       also save every byte read from the target to FILE (+ FILE.meta),\n"
    "                      a replayable fixture for bug reports and tests\n"
    "\n"
    "common options:\n"
    "  --log-format text|json  errors as a sentence (default) or one JSON object on stderr\n"
    "  -h, --help          this help\n"
    "  -V, --version       print the version and the supported Python versions\n"
    "\n"
    "exit codes: 0 ok, 1 partial (a thread could not be read consistently), 2 error,\n"
    "  3 permission denied, 4 not a Python process, 5 unsupported Python version,\n"
    "  6 no such process, 64 usage\n";

static int exit_code_for(int code)
{
    switch (-code) {
    case 0: return EXIT_OK;
    case ESRCH: return EXIT_NOPROC;
    case EPERM:
    case EACCES:
    case PS_EPERM: return EXIT_PERM;
    case PS_ENOTPYTHON: return EXIT_NOTPYTHON;
    case PS_EVERSION: return EXIT_VERSION;
    case PS_EUSAGE: return EXIT_USAGE;
    default: return EXIT_ERROR;
    }
}

/* Print one message on stderr in the chosen format. */
static void log_msg(const struct cli *cli, const char *level, int code, const char *msg)
{
    json_t *o;
    char *s;

    if (cli->log_format == LOG_TEXT) {
        (void)fprintf(stderr, "pyscope: %s%s\n", strcmp(level, "error") != 0 ? "warning: " : "",
                      msg);
        return;
    }
    o = json_pack("{s:s, s:s, s:s, s:i}", "level", level, "code", ps_err_name(code), "message",
                  msg, "exit_code", exit_code_for(code));
    s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    (void)fprintf(stderr, "%s\n", s ? s : "{\"level\":\"error\",\"message\":\"out of memory\"}");
    free(s);
    json_decref(o);
}

static int fail(const struct cli *cli, const struct ps_err *err, int code)
{
    log_msg(cli, "error", code, err->msg[0] ? err->msg : "unknown error");
    return exit_code_for(code);
}

static int usage_error(const struct cli *cli, const char *msg)
{
    struct ps_err err = {0};

    (void)ps_err_set(&err, -PS_EUSAGE, "%s; run `pyscope --help` for usage", msg);
    return fail(cli, &err, -PS_EUSAGE);
}

static bool parse_int(const char *s, long min, long max, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return false;
    *out = v;
    return true;
}

enum opt_id {
    OPT_JSON = 256,
    OPT_PRETTY,
    OPT_BLOCKING,
    OPT_RETRIES,
    OPT_NO_SOURCE,
    OPT_LOG,
    OPT_RECORD,
};

static const struct option long_opts[] = {
    {"json", no_argument, NULL, OPT_JSON},
    {"pretty", no_argument, NULL, OPT_PRETTY},
    {"blocking", no_argument, NULL, OPT_BLOCKING},
    {"retries", required_argument, NULL, OPT_RETRIES},
    {"no-source", no_argument, NULL, OPT_NO_SOURCE},
    {"log-format", required_argument, NULL, OPT_LOG},
    {"record", required_argument, NULL, OPT_RECORD},
    {"output", required_argument, NULL, 'o'},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

/* Returns -1 to go on, else an exit code. */
static int parse_opt(struct cli *cli, int c, const char *arg)
{
    long v;

    switch (c) {
    case OPT_JSON: cli->json = true; return -1;
    case OPT_PRETTY: cli->pretty = true; return -1;
    case OPT_BLOCKING: cli->blocking = true; return -1;
    case OPT_NO_SOURCE: cli->no_source = true; return -1;
    case 'o': cli->output = arg; return -1;
    case OPT_RECORD: cli->record = arg; return -1;
    case OPT_RETRIES:
        if (!parse_int(arg, 0, COLLECT_MAX_RETRIES, &v))
            return usage_error(cli, "--retries takes a number from 0 to 100");
        cli->retries = (int)v;
        return -1;
    case OPT_LOG:
        if (strcmp(arg, "json") != 0 && strcmp(arg, "text") != 0)
            return usage_error(cli, "--log-format takes `text` or `json`");
        cli->log_format = strcmp(arg, "json") == 0 ? LOG_JSON : LOG_TEXT;
        return -1;
    case 'h': (void)fputs(usage_text, stdout); return EXIT_OK;
    case 'V':
        (void)printf("pyscope %s (Python %s)\n", PYSCOPE_VERSION, layout_supported());
        return EXIT_OK;
    default: return usage_error(cli, "unknown option");
    }
}

/* Pre-scan for --log-format so that errors in earlier options are already formatted right. */
static void prescan_log_format(struct cli *cli, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--log-format=json") ||
            (!strcmp(argv[i], "--log-format") && i + 1 < argc && !strcmp(argv[i + 1], "json")))
            cli->log_format = LOG_JSON;
    }
}

static int parse_args(struct cli *cli, int argc, char **argv)
{
    long pid;
    int c, rc;

    prescan_log_format(cli, argc, argv);
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+o:hV", long_opts, NULL)) != -1) {
        rc = parse_opt(cli, c, optarg);
        if (rc >= 0)
            return rc;
    }
    if (optind >= argc)
        return usage_error(cli, "missing command (try `pyscope dump <pid>`)");
    if (strcmp(argv[optind], "dump") != 0)
        return usage_error(cli, "unknown command (the commands are: dump)");
    optind++;
    while ((c = getopt_long(argc, argv, "o:hV", long_opts, NULL)) != -1) {
        rc = parse_opt(cli, c, optarg);
        if (rc >= 0)
            return rc;
    }
    if (optind != argc - 1)
        return usage_error(cli, "dump takes exactly one pid");
    if (!parse_int(argv[optind], 1, INT_MAX, &pid))
        return usage_error(cli, "the pid must be a positive number");
    cli->pid = (pid_t)pid;
    return -1;
}

static int write_snapshot(const struct cli *cli, const struct snap *s, struct ps_err *err)
{
    char root[64];
    struct out_opts o = {0};
    FILE *fp = stdout;
    int rc;

    (void)snprintf(root, sizeof(root), "/proc/%d/root", (int)cli->pid);
    o.source_lines = !cli->no_source;
    o.source_root = root;
    o.color = false;
    o.json_indent = cli->pretty ? 2 : 0;
    if (cli->output) {
        fp = fopen(cli->output, "w");
        if (!fp)
            return ps_err_set(err, -errno, "cannot write %s: %s", cli->output, strerror(errno));
    }
    rc = cli->json ? out_json_write(fp, s, &o, err) : out_text_write(fp, s, &o, err);
    if (fp != stdout && fclose(fp) != 0 && rc == 0)
        rc = ps_err_set(err, -EIO, "cannot write %s: %s", cli->output, strerror(errno));
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

static int cmd_dump(const struct cli *cli)
{
    struct collect_opts co = {.blocking = cli->blocking, .retries = cli->retries};
    struct ps_err err = {0};
    struct pyproc *pp = NULL;
    struct snap *s = NULL;
    int rc, status;

    rc = pyproc_open(cli->pid, &pp, &err);
    if (rc < 0)
        return fail(cli, &err, rc);
    if (pp->warning[0])
        log_msg(cli, "warning", 0, pp->warning);
    rc = cli->record ? pyproc_record(pp, cli->record, &err) : 0;
    if (rc == 0)
        rc = collect_snapshot(pp, &co, &s, &err);
    if (rc == 0)
        rc = write_snapshot(cli, s, &err);
    status = rc < 0 ? fail(cli, &err, rc) : snapshot_partial(s) ? EXIT_PARTIAL : EXIT_OK;
    snap_free(s);
    pyproc_close(pp);
    return status;
}

int main(int argc, char **argv)
{
    struct cli cli = {.retries = COLLECT_DEFAULT_RETRIES};
    int rc;

    rc = parse_args(&cli, argc, argv);
    if (rc >= 0)
        return rc;
    /* Whatever happens from here on, a signal detaches anything we stopped or traced. */
    if (cli.blocking) {
        struct ps_err err = {0};

        rc = target_install_signal_teardown(&err);
        if (rc < 0)
            return fail(&cli, &err, rc);
    }
    return cmd_dump(&cli);
}
