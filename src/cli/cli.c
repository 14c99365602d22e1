/* SPDX-License-Identifier: MIT */
/*
 * Shared command-line pieces (see cli.h): exit codes, the error printer, number parsing. The
 * only place besides the TUI that writes to stderr; nothing here touches a target.
 */
#include "pyscope/cli.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pyscope/evloop.h"
#include "pyscope/guard.h"
#include "pyscope/out_log.h"
#include "pyscope/pslist.h"
#include "pyscope/tracer.h"

int cli_exit_code(int code)
{
    switch (-code) {
    case 0: return CLI_EXIT_OK;
    case ESRCH: return CLI_EXIT_NOPROC;
    case EPERM:
    case EACCES:
    case PS_EPERM: return CLI_EXIT_PERM;
    case PS_ENOTPYTHON: return CLI_EXIT_NOTPYTHON;
    case PS_EVERSION: return CLI_EXIT_VERSION;
    case PS_EUSAGE: return CLI_EXIT_USAGE;
    default: return CLI_EXIT_ERROR;
    }
}

void cli_log(const struct cli_common *c, const char *level, int code, const char *msg)
{
    out_log_line(stderr, c->log_format == CLI_LOG_JSON, level, ps_err_name(code), msg,
                 cli_exit_code(code));
}

int cli_fail(const struct cli_common *c, const struct ps_err *err, int code)
{
    cli_log(c, "error", code, err->msg[0] ? err->msg : "unknown error");
    return cli_exit_code(code);
}

int cli_usage(const struct cli_common *c, const char *fmt, ...)
{
    char what[512];
    struct ps_err err = {0};
    va_list ap;

    va_start(ap, fmt);
    (void)vsnprintf(what, sizeof(what), fmt, ap); // NOLINT(clang-analyzer-valist.*): clang 14 FP
    va_end(ap);
    (void)ps_err_set(&err, -PS_EUSAGE, "%s; run `pyscope --help` for usage", what);
    return cli_fail(c, &err, -PS_EUSAGE);
}

bool cli_parse_long(const char *s, long min, long max, long *out)
{
    char *end = NULL;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return false;
    *out = v;
    return true;
}

void cli_hold_stop_signals(void)
{
    evloop_hold_signals(EVLOOP_SIG_STOP);
}

bool cli_parse_mech(const char *s, int *mech)
{
    static const struct {
        const char *name;
        enum tracer_mech mech;
    } names[] = {
        {"bpf", TRACER_MECH_BPF}, {"perf", TRACER_MECH_PERF}, {"debugreg", TRACER_MECH_DEBUGREG}};

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(s, names[i].name) == 0) {
            *mech = (int)names[i].mech;
            return true;
        }
    return false;
}

bool cli_parse_budget(const char *s, double *share)
{
    char *end = NULL;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= 0 && v <= 100))
        return false;
    *share = v == 0 ? -1.0 : v / 100.0;
    return true;
}

void cli_guard(const struct cli_common *c, pid_t target)
{
    char msg[160];
    int rc = guard_fork(target);

    if (rc < 0) {
        (void)snprintf(msg, sizeof(msg),
                       "could not start the guard process (%s): a SIGKILL of pyscope while it "
                       "traces could kill the target; stop pyscope with Ctrl-C or SIGTERM",
                       strerror(-rc));
        cli_log(c, "warning", 0, msg);
    }
}

int cli_getopt(const struct cli_common *c, int argc, char **argv, const char *shortopts,
               const struct option *longopts, cli_opt_fn fn, void *args)
{
    int opt, rc;

    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
        rc = fn(c, args, opt, optarg);
        if (rc >= 0)
            return rc;
    }
    return -1;
}

int cli_open_output(const char *path, FILE **out, struct ps_err *err)
{
    *out = stdout;
    if (!path || strcmp(path, "-") == 0)
        return 0;
    *out = fopen(path, "we");
    if (!*out)
        return ps_err_set(err, -errno, "cannot write %s: %s", path, strerror(errno));
    return 0;
}

int cli_close_output(const char *path, FILE *f, int rc, struct ps_err *err)
{
    if (f != stdout) {
        if (fclose(f) != 0 && rc == 0)
            rc = ps_err_set(err, -EIO, "cannot write %s: %s", path, strerror(errno));
    } else if (fflush(stdout) != 0 && rc == 0) {
        rc = ps_err_set(err, -EIO, "cannot write the output: %s", strerror(errno));
    }
    return rc;
}

int cli_one_pid(const struct cli_common *c, int argc, char **argv, const char *command, pid_t *pid)
{
    if (optind != argc - 1)
        return cli_usage(c, "%s takes exactly one pid", command);
    return cli_parse_pid(c, argv[optind], pid) ? -1 : CLI_EXIT_USAGE;
}

bool cli_parse_pid(const struct cli_common *c, const char *s, pid_t *out)
{
    long v;

    if (!cli_parse_long(s, 1, INT_MAX, &v)) {
        (void)cli_usage(c, "`%s` is not a pid (a positive number)", s);
        return false;
    }
    *out = (pid_t)v;
    return true;
}

void cli_workers_note(const struct cli_common *c, pid_t pid, const char *command)
{
    char note[512];

    if (pslist_workers_note(pid, command, note, sizeof(note)))
        cli_log(c, "info", 0, note);
}
