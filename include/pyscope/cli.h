/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_CLI_H
#define PYSCOPE_CLI_H

/*
 * The command line's shared pieces: exit codes, the one-sentence error printer (text or JSON
 * lines on stderr), number parsing, and the signature every subcommand implements. Each
 * subcommand lives in its own src/cli/cli_<name>.c and only wires engine modules; src/cli/main.c holds
 * the command table and the global options.
 */

#include <getopt.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <sys/types.h>

#include "pyscope/err.h"

#define PYSCOPE_VERSION "0.1.0"

/* Exit codes (eu-stack's convention extended; documented in README.md and --help). */
enum cli_exit {
    CLI_EXIT_OK = 0,
    CLI_EXIT_PARTIAL = 1,   /* some thread could not be read consistently */
    CLI_EXIT_ERROR = 2,     /* any other failure, the target exiting included */
    CLI_EXIT_PERM = 3,      /* permission denied (diagnosed) */
    CLI_EXIT_NOTPYTHON = 4, /* not a Python process */
    CLI_EXIT_VERSION = 5,   /* unsupported Python version */
    CLI_EXIT_NOPROC = 6,    /* no such process */
    CLI_EXIT_USAGE = 64,
};

enum cli_log_format {
    CLI_LOG_TEXT,
    CLI_LOG_JSON
};

/* Options common to every command (parsed by main before the command word and by
 * cli_common_opt inside each command). */
struct cli_common {
    enum cli_log_format log_format;
};

/* A subcommand: argv[0] is the command word; returns an exit code. */
typedef int (*cli_command_fn)(const struct cli_common *common, int argc, char **argv);

/* The exit code for an engine error code (0 -> CLI_EXIT_OK). */
int cli_exit_code(int code);

/*
 * Print one message on stderr: "pyscope: <msg>" (warnings prefixed "warning: "; errors and
 * info not), or with --log-format json one object {"level","code","message","exit_code"} per
 * line; level is "error", "warning" or "info" (out_log.h writes it, escaped).
 */
void cli_log(const struct cli_common *c, const char *level, int code, const char *msg);

/* Print err (as an error) and return the exit code for code. */
int cli_fail(const struct cli_common *c, const struct ps_err *err, int code);

/* Print a usage error ("...; run `pyscope --help` for usage") and return CLI_EXIT_USAGE. */
int cli_usage(const struct cli_common *c, const char *fmt, ...) PS_PRINTF(2, 3);

/* Parse a whole decimal number in [min, max]; false when malformed or out of range. */
bool cli_parse_long(const char *s, long min, long max, long *out);

/*
 * --budget PCT (exceptions, attach): a percentage in [0, 100] into *share (0.01 for "1"; 0 means
 * no budget: tracer_opts.budget < 0). False when malformed or out of range.
 */
bool cli_parse_budget(const char *s, double *share);

/*
 * --mechanism M (exceptions, attach): "bpf", "perf" or "debugreg" into *mech (a tracer_mech
 * value). False when it names none of them.
 */
bool cli_parse_mech(const char *s, int *mech);

/*
 * For commands that arm breakpoints in the target (exceptions, attach): go on in a worker
 * process under a guard (guard.h) so that a SIGKILL of the pyscope the user started still ends
 * in a clean detach, and a SIGKILL of the worker gets the target's debug registers cleared
 * (guard_fork). Returns in the worker; warns and returns unguarded when fork fails. Call right
 * after parsing, before opening the target (pid).
 */
void cli_guard(const struct cli_common *c, pid_t target);

/*
 * For every command (attach, dump, exceptions, growth, ps, record, run): block SIGINT, SIGTERM,
 * SIGHUP and SIGQUIT for the rest of the process, so that each is an orderly stop read by the
 * command's loop from a signalfd (one arriving earlier waits there and ends the loop at its
 * first turn), and a second one (a process-group kill after a kill of our pid, `timeout`'s
 * resend; a guard's worker gets each once, guard.h) is discarded at exit instead of killing
 * pyscope while it writes its final output. The one-shot commands (dump, ps) have no loop: their
 * snapshot is finished and written, and the signal discarded at exit. A child forked afterwards
 * inherits the mask: put the old one back in it before exec (`run` does). Call right after
 * parsing, before cli_guard. The list is evloop's (evloop_hold_signals(EVLOOP_SIG_STOP)).
 */
void cli_hold_stop_signals(void);

/* Parse a pid argument; on failure prints a usage error and returns false. */
bool cli_parse_pid(const struct cli_common *c, const char *s, pid_t *out);

/* One option of a command: store what (opt, arg) says in the command's args (its own struct);
 * return -1 to go on, or an exit code to stop parsing (usage error, --help printed). */
typedef int (*cli_opt_fn)(const struct cli_common *c, void *args, int opt, const char *arg);

/*
 * Run getopt_long over argv (argv[0] is the command word; getopt's own messages off) and hand
 * each option to fn with args. Returns -1 when every option was taken, with optind at the
 * first operand, else the exit code fn returned. Not reentrant (getopt's globals).
 */
int cli_getopt(const struct cli_common *c, int argc, char **argv, const char *shortopts,
               const struct option *longopts, cli_opt_fn fn, void *args);

/*
 * The operands after cli_getopt must be exactly one pid: store it in *pid and return -1, else
 * print "<command> takes exactly one pid" (or why the pid is malformed) and return
 * CLI_EXIT_USAGE.
 */
int cli_one_pid(const struct cli_common *c, int argc, char **argv, const char *command, pid_t *pid);

/*
 * Open the output file of -o PATH for writing (created or truncated, close-on-exec), or stdout
 * when path is NULL or "-". Returns 0, or -errno with err naming the file.
 */
int cli_open_output(const char *path, FILE **out, struct ps_err *err) PS_WARN_UNUSED;

/*
 * Close (a file) or flush (stdout) what cli_open_output gave; returns rc, or when rc is 0 and
 * that fails, -EIO with err naming the file.
 */
int cli_close_output(const char *path, FILE *f, int rc, struct ps_err *err);

/*
 * Every command accepts --log-format (main applies it before dispatch, wherever it appears);
 * commands list this entry in their getopt_long table and ignore the option.
 */
#define CLI_OPT_LOG_FORMAT 1000
#define CLI_LONGOPT_LOG_FORMAT                                                                     \
    {                                                                                              \
        "log-format", 1, NULL, CLI_OPT_LOG_FORMAT                                                  \
    }

/*
 * When pid has Python worker processes (a gunicorn or uvicorn master), say so once on stderr,
 * with their pids, so that an idle master's empty result is not taken for the answer
 * (pslist_workers_note). command names the pyscope command to suggest for a worker.
 */
void cli_workers_note(const struct cli_common *c, pid_t pid, const char *command);

/* Subcommands (src/cli/cli_<name>.c). */
int cli_dump(const struct cli_common *common, int argc, char **argv);
/* src/cli/cli_attach.c, built into the executable with the UI (ui/app.h). */
int cli_attach(const struct cli_common *common, int argc, char **argv);
int cli_exceptions(const struct cli_common *common, int argc, char **argv);
int cli_growth(const struct cli_common *common, int argc, char **argv);
int cli_record(const struct cli_common *common, int argc, char **argv);
int cli_run(const struct cli_common *common, int argc, char **argv);
int cli_ps(const struct cli_common *common, int argc, char **argv);

#endif
