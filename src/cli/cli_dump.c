/* SPDX-License-Identifier: MIT */
/*
 * `pyscope dump`: one snapshot of every thread, as text (traceback-like) or JSON. Wires
 * pyproc -> collect -> out; no logic of its own beyond choosing the exit code (1 when some
 * thread could not be read consistently).
 *
 * SIGINT/SIGTERM/SIGHUP/SIGQUIT are held from the end of parsing to exit (cli_hold_stop_signals):
 * the snapshot, the dump's final output, takes milliseconds, so a stop signal lets it finish, be
 * written and the target be released, and the exit code is the dump's own. A crash signal still
 * detaches what --blocking stopped (target_install_signal_teardown).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pyscope/cli.h"
#include "pyscope/collect.h"
#include "pyscope/core.h"
#include "pyscope/pycore.h"
#include "pyscope/native.h"
#include "pyscope/out.h"
#include "pyscope/pyproc.h"
#include "pyscope/snap.h"
#include "pyscope/target.h"
#include "pyscope/tasks.h"

struct dump_args {
    bool json, pretty, blocking, no_source;
    bool blocking_auto; /* --blocking=auto */
    bool native, verbose, locals;
    bool tasks;                        /* --tasks */
    long max_tasks;                    /* --max-tasks */
    const char *core, *exe, *lib_root; /* --core, --exe, --lib-search-root */
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
    "  --blocking=auto     read without stopping; when a stack keeps changing under every\n"
    "                      read, stop the threads briefly and read again (the header says so)\n"
    "  --retries N         consistency retries per thread without --blocking (default 8)\n"
    "  --no-source         do not print source lines in the text output\n"
    "  --native            also unwind each thread's C stack and merge the Python frames into\n"
    "                      it (stops the threads briefly, as --blocking does)\n"
    "  -v, --verbose       with --native, show the instruction at each native pc\n"
    "  --core FILE         read an ELF core file (kernel or gcore) instead of a live pid\n"
    "  --exe PATH          with --core: the executable to use instead of the recorded path\n"
    "  --lib-search-root DIR  with --core: look for every recorded file under DIR\n"
    "  --locals            also show each frame's arguments, locals, cells and free variables\n"
    "                      (bounded reprs of the common types; others as <Type at 0x...>)\n"
    "  --tasks             also list every asyncio task: state, coroutine chain, what it awaits,\n"
    "                      and the await graph between tasks (deadlocks flagged)\n"
    "  --max-tasks N       list at most N tasks, running first (default 200; counts cover all)\n"
    "  -o, --output FILE   write to FILE instead of standard output\n"
    "  --record FILE       also save every byte read from the target to FILE (+ FILE.meta),\n"
    "                      a replayable fixture for bug reports and tests\n";

enum dump_opt {
    OPT_JSON = 256,
    OPT_PRETTY,
    OPT_BLOCKING,
    OPT_RETRIES,
    OPT_NO_SOURCE,
    OPT_RECORD,
    OPT_NATIVE,
    OPT_CORE,
    OPT_EXE,
    OPT_LIB_ROOT,
    OPT_LOCALS,
    OPT_TASKS,
    OPT_MAX_TASKS
};

static const struct option dump_opts[] = {
    {"json", no_argument, NULL, OPT_JSON},
    {"pretty", no_argument, NULL, OPT_PRETTY},
    {"blocking", optional_argument, NULL, OPT_BLOCKING},
    {"retries", required_argument, NULL, OPT_RETRIES},
    {"no-source", no_argument, NULL, OPT_NO_SOURCE},
    {"record", required_argument, NULL, OPT_RECORD},
    {"native", no_argument, NULL, OPT_NATIVE},
    {"core", required_argument, NULL, OPT_CORE},
    {"exe", required_argument, NULL, OPT_EXE},
    {"lib-search-root", required_argument, NULL, OPT_LIB_ROOT},
    {"locals", no_argument, NULL, OPT_LOCALS},
    {"tasks", no_argument, NULL, OPT_TASKS},
    {"max-tasks", required_argument, NULL, OPT_MAX_TASKS},
    {"verbose", no_argument, NULL, 'v'},
    {"output", required_argument, NULL, 'o'},
    {"help", no_argument, NULL, 'h'},
    CLI_LONGOPT_LOG_FORMAT,
    {NULL, 0, NULL, 0},
};

/* One option; returns -1 to go on, else an exit code. */
static int dump_opt(const struct cli_common *c, void *args, int opt, const char *arg)
{
    struct dump_args *a = args;
    long v;

    switch (opt) {
    case OPT_JSON: a->json = true; return -1;
    case OPT_PRETTY: a->pretty = true; return -1;
    case OPT_BLOCKING:
        if (arg && strcmp(arg, "auto") != 0)
            return cli_usage(c, "--blocking takes no value or =auto");
        *(arg ? &a->blocking_auto : &a->blocking) = true;
        return -1;
    case OPT_NO_SOURCE: a->no_source = true; return -1;
    case OPT_RECORD: a->record = arg; return -1;
    case OPT_NATIVE: a->native = a->blocking = true; return -1;
    case OPT_LOCALS: a->locals = true; return -1;
    case OPT_TASKS: a->tasks = true; return -1;
    case OPT_MAX_TASKS:
        if (!cli_parse_long(arg, 1, TASKS_MAX_MAX, &a->max_tasks))
            return cli_usage(c, "--max-tasks takes a number from 1 to %d", TASKS_MAX_MAX);
        return -1;
    case 'v': a->verbose = true; return -1;
    case OPT_CORE: a->core = arg; return -1;
    case OPT_EXE: a->exe = arg; return -1;
    case OPT_LIB_ROOT: a->lib_root = arg; return -1;
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
    int rc = cli_getopt(c, argc, argv, "o:hv", dump_opts, dump_opt, a);

    if (rc >= 0)
        return rc;
    if (a->core)
        return optind == argc ? -1 : cli_usage(c, "dump --core takes no pid");
    if (a->exe || a->lib_root)
        return cli_usage(c, "--exe and --lib-search-root go with --core");
    return cli_one_pid(c, argc, argv, "dump", &a->pid);
}

/* Write the report. as: for a core, the credentials its source lines are read with (NULL:
 * pyscope's own); a live target's are read from /proc at each file. */
static int dump_write(const struct dump_args *a, const struct snap *s,
                      const struct procstat_status *as, struct ps_err *err)
{
    struct out_opts o = {0};
    FILE *fp = stdout;
    int rc;

    o.source_lines = !a->no_source;
    o.source_root = a->core ? a->lib_root : NULL;
    o.source_pid = a->core ? 0 : a->pid;
    o.source_as = as;
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
            s->threads[i].status == SNAP_THREAD_PARTIAL ||
            s->threads[i].status == SNAP_THREAD_ERROR)
            return true;
    return false;
}

static int dump_native_open(const struct dump_args *a, struct pyproc *pp, struct native_ctx **out,
                            struct ps_err *err)
{
    char root[64];
    struct native_opts no = {.disasm = a->verbose, .file_root = root};

    (void)snprintf(root, sizeof(root), "/proc/%d/root", (int)a->pid);
    return native_open_live(pp->pid, &pp->maps, pp->src, &no, out, err);
}

/* The core's thread ids, for listing the threads that have no Python thread state. */
static pid_t *core_tids(const struct core *core)
{
    pid_t *tids = calloc(core->nthreads ? core->nthreads : 1, sizeof(*tids));

    for (size_t i = 0; tids && i < core->nthreads; i++)
        tids[i] = core->threads[i].tid;
    return tids;
}

/* The credentials the crashed process had (NT_PRPSINFO), as tfile_open_as takes them: its real
 * ids for all four, no supplementary group. False when the core does not say, or when pyscope
 * is not root: it then reads as itself, which shows no file its user could not read anyway
 * (and tfile could not take the ids: a user with supplementary groups would see no line). */
static bool core_as(const struct core *core, struct procstat_status *as)
{
    if (!core->cred.known || geteuid() != 0)
        return false;
    memset(as, 0, sizeof(*as));
    as->ids_known = true;
    for (size_t i = 0; i < 4; i++) {
        as->uid[i] = core->cred.uid;
        as->gid[i] = core->cred.gid;
    }
    as->ngroups = 0;
    return true;
}

/* --core: the same pipeline over a core file (no threads to stop, no /proc). */
static int dump_core_run(const struct cli_common *c, const struct dump_args *a)
{
    struct core_opts k = {.path = a->core, .exe_file = a->exe, .file_root = a->lib_root};
    struct native_opts no = {.disasm = a->verbose, .file_root = a->lib_root, .exe_file = a->exe};
    struct collect_opts co = {.retries = 0,
                              .locals = a->locals,
                              .tasks = a->tasks,
                              .max_tasks = (size_t)a->max_tasks,
                              .os_threads = true};
    pid_t *tids = NULL;
    struct ps_err err = {0};
    struct core *core = NULL;
    struct pyproc *pp = NULL;
    struct snap *s = NULL;
    int rc, status;

    rc = core_open(&k, &core, &err);
    if (rc == 0)
        rc = core_open_python(core, &k, &pp, &err);
    if (rc == 0 && a->native)
        rc = native_open_core(core, pp->src, &no, &co.native, &err);
    if (rc == 0) {
        tids = core_tids(core);
        co.tids = tids;
        co.ntids = tids ? core->nthreads : 0;
        rc = collect_snapshot(pp, &co, &s, &err);
    }
    if (rc == 0) {
        struct procstat_status as;

        s->pid = core->pid;
        rc = dump_write(a, s, core_as(core, &as) ? &as : NULL, &err);
    }
    if (rc == 0 && s)
        status = snapshot_partial(s) ? CLI_EXIT_PARTIAL : CLI_EXIT_OK;
    else
        status = cli_fail(c, &err, rc);
    free(tids);
    snap_free(s);
    native_close(co.native);
    pyproc_close(pp);
    core_close(core);
    return status;
}

static int dump_run(const struct cli_common *c, const struct dump_args *a)
{
    struct collect_opts co = {.blocking = a->blocking,
                              .blocking_auto = a->blocking_auto,
                              .retries = a->retries,
                              .locals = a->locals,
                              .tasks = a->tasks,
                              .max_tasks = (size_t)a->max_tasks,
                              .os_threads = true};
    struct ps_err err = {0};
    struct pyproc *pp = NULL;
    struct snap *s = NULL;
    int rc, status;

    if (a->core)
        return dump_core_run(c, a);
    rc = pyproc_open(a->pid, &pp, &err);
    if (rc < 0)
        return cli_fail(c, &err, rc);
    if (pp->warning[0])
        cli_log(c, "warning", 0, pp->warning);
    cli_workers_note(c, a->pid, "dump");
    rc = a->record ? pyproc_record(pp, a->record, &err) : 0;
    if (rc == 0 && a->native)
        rc = dump_native_open(a, pp, &co.native, &err);
    if (rc == 0)
        rc = collect_snapshot(pp, &co, &s, &err);
    if (rc == 0)
        rc = dump_write(a, s, NULL, &err);
    if (rc < 0)
        status = cli_fail(c, &err, rc);
    else
        status = snapshot_partial(s) ? CLI_EXIT_PARTIAL : CLI_EXIT_OK;
    snap_free(s);
    native_close(co.native);
    pyproc_close(pp);
    return status;
}

int cli_dump(const struct cli_common *common, int argc, char **argv)
{
    struct dump_args a = {.retries = COLLECT_DEFAULT_RETRIES, .max_tasks = TASKS_DEFAULT_MAX};
    struct ps_err err = {0};
    int rc = dump_parse(common, argc, argv, &a);

    if (rc >= 0)
        return rc;
    cli_hold_stop_signals();
    /* From here on, a crash detaches anything we stopped (blocking mode). */
    if ((a.blocking || a.blocking_auto) && !a.core) {
        rc = target_install_signal_teardown(&err);
        if (rc < 0)
            return cli_fail(common, &err, rc);
    }
    return dump_run(common, &a);
}
