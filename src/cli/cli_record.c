/* SPDX-License-Identifier: MIT */
/*
 * `pyscope record <pid>` and `pyscope run [options] -- cmd...`: wire pyproc -> sampler ->
 * profile -> writer, print the live status line and the end statistics. `run` forks and execs
 * the command, waits (bounded) until its Python runtime can be opened, and records until it
 * exits, forwarding SIGINT/SIGTERM/SIGHUP/SIGQUIT sent to pyscope itself (not the terminal's,
 * which the child's process group receives anyway).
 *
 * SIGINT/SIGTERM/SIGHUP/SIGQUIT are blocked from the start until exit (cli_hold_stop_signals),
 * so the output file is complete whatever arrives, however often; the sampler reads them
 * through a signalfd. `run`'s own waits (the command's start, its end) are session loops too:
 * the first stop signal is passed on, the second ends the recording and gives the command
 * RUN_STOP_GRACE_MS before SIGKILL, a third sends SIGKILL at once; nothing waits unbounded
 * in waitpid once pyscope was asked to stop twice.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pyscope/cli.h"
#include "pyscope/evloop.h"
#include "pyscope/layout.h"
#include "pyscope/locate.h"
#include "pyscope/out_profile.h"
#include "pyscope/out_record.h"
#include "pyscope/profile.h"
#include "pyscope/pyproc.h"
#include "pyscope/procstat.h"
#include "pyscope/sampler.h"
#include "pyscope/subproc.h"

/* `run`: how long to wait for the child's runtime to become readable, and how often to try. */
#define RUN_START_TIMEOUT_MS 10000
#define RUN_START_POLL_MS    5
/* `run --subprocesses`: a command not Python after this long is followed through its children. */
#define RUN_NOTPY_MS 300
/* `run -d`: how long the command gets after SIGINT, then after SIGTERM, before the next. */
#define RUN_GRACE_MS 2000
/* `run`: how long the command gets after pyscope's second stop signal (the recording ended,
 * the profile written) before pyscope sends it SIGKILL; a third stop signal sends it at once. */
#define RUN_STOP_GRACE_MS 5000

struct record_args {
    struct sampler_opts so;
    enum out_profile_format format;
    bool per_thread, quiet, subprocesses;
    bool keep_running; /* run: leave the command running at the end of the duration */
    const char *output;
    pid_t pid;
    char **cmd; /* run: the command */
};

static const char record_usage[] =
    "usage: pyscope record [options] <pid>\n"
    "       pyscope run [options] -- <command> [args...]\n"
    "\n"
    "Sample the Python stacks of a running process (record) or of a command started for the\n"
    "purpose (run) at a fixed rate, without stopping it, and write a profile when the duration\n"
    "ends, on Ctrl-C/SIGTERM/SIGHUP, or when the target exits.\n"
    "\n"
    "  -r, --rate HZ       samples per second (default 100, at most 20000), jittered\n"
    "  -d, --duration S    stop after S seconds (default: until a signal or the target exits)\n"
    "  -f, --format F      flamegraph (SVG, default), speedscope, collapsed, pprof (gzipped\n"
    "                      profile.proto), or json (raw samples as JSON lines;\n"
    "                      docs/profile-formats.md)\n"
    "  -o, --output FILE   write to FILE (default: standard output)\n"
    "  --idle              also sample idle threads (default: only threads holding the GIL)\n"
    "  --gil               only sample the thread holding the GIL\n"
    "  --threads           one root per thread in the output\n"
    "  --thread NAME|ID    only the thread with this name, ident or native id\n"
    "  --blocking          stop the threads for each sample (exact, slower for the target)\n"
    "  --subprocesses      also sample the Python processes it starts (children, grandchildren,\n"
    "                      as they come and go), one root per process in the output; the\n"
    "                      target may be a shell or supervisor that is not Python itself\n"
    "  --tasks             root each stack at the asyncio task running it (\"task: NAME\")\n"
    "  --native            merge each stack with its C frames (implies --blocking)\n"
    "  -q, --quiet         no live status line and no statistics on stderr\n"
    "\n"
    "  --keep-running      run: leave the command running when the duration ends (default: end\n"
    "                      it with SIGINT, then SIGTERM after %d s)\n"
    "\n"
    "run: the command's exit status becomes pyscope's (128+N when killed by signal N); 0 when\n"
    "pyscope ended it at the end of the duration. A first stop signal is passed on to the\n"
    "command, a second ends the recording (the command then has %d s before SIGKILL), a third\n"
    "sends SIGKILL at once.\n";

enum record_opt {
    OPT_IDLE = 256,
    OPT_GIL,
    OPT_THREADS,
    OPT_THREAD,
    OPT_BLOCKING,
    OPT_SUBPROCESSES,
    OPT_TASKS,
    OPT_NATIVE,
    OPT_KEEP_RUNNING
};

static const struct option record_opts[] = {
    {"rate", required_argument, NULL, 'r'},
    {"duration", required_argument, NULL, 'd'},
    {"format", required_argument, NULL, 'f'},
    {"output", required_argument, NULL, 'o'},
    {"idle", no_argument, NULL, OPT_IDLE},
    {"gil", no_argument, NULL, OPT_GIL},
    {"threads", no_argument, NULL, OPT_THREADS},
    {"thread", required_argument, NULL, OPT_THREAD},
    {"blocking", no_argument, NULL, OPT_BLOCKING},
    {"subprocesses", no_argument, NULL, OPT_SUBPROCESSES},
    {"tasks", no_argument, NULL, OPT_TASKS},
    {"native", no_argument, NULL, OPT_NATIVE},
    {"keep-running", no_argument, NULL, OPT_KEEP_RUNNING},
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    CLI_LONGOPT_LOG_FORMAT,
    {NULL, 0, NULL, 0},
};

static bool parse_seconds(const char *s, double *out)
{
    char *end = NULL;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || *end || !(v > 0) || v > 1e7)
        return false;
    *out = v;
    return true;
}

/* One option; returns -1 to go on, else an exit code. */
static int record_opt(const struct cli_common *c, void *args, int opt, const char *arg)
{
    struct record_args *a = args;
    switch (opt) {
    case 'r':
        if (!parse_seconds(arg, &a->so.rate_hz) || a->so.rate_hz < 1 ||
            a->so.rate_hz > SAMPLER_MAX_RATE)
            return cli_usage(c, "--rate takes a number of Hz from 1 to %d", SAMPLER_MAX_RATE);
        return -1;
    case 'd':
        if (!parse_seconds(arg, &a->so.duration_s))
            return cli_usage(c, "--duration takes a positive number of seconds");
        return -1;
    case 'f':
        if (!out_profile_parse_format(arg, &a->format)) {
            char names[128];
            return cli_usage(c, "--format takes %s", out_profile_names(true, names, sizeof(names)));
        }
        return -1;
    case 'o': a->output = arg; return -1;
    case OPT_IDLE: a->so.idle = true; return -1;
    case OPT_GIL: a->so.gil_only = true; return -1;
    case OPT_THREADS: a->per_thread = true; return -1;
    case OPT_THREAD: a->so.thread = arg; return -1;
    case OPT_BLOCKING: a->so.blocking = true; return -1;
    case OPT_SUBPROCESSES: a->subprocesses = true; return -1;
    case OPT_TASKS: a->so.tasks = true; return -1;
    case OPT_NATIVE: a->so.native = a->so.blocking = true; return -1;
    case OPT_KEEP_RUNNING: a->keep_running = true; return -1;
    case 'q': a->quiet = true; return -1;
    case CLI_OPT_LOG_FORMAT: return -1;
    case 'h':
        (void)printf(record_usage, RUN_GRACE_MS / 1000, RUN_STOP_GRACE_MS / 1000);
        return CLI_EXIT_OK;
    default: return cli_usage(c, "unknown option for %s", a->cmd ? "run" : "record");
    }
}

static int record_parse(const struct cli_common *c, int argc, char **argv, bool run,
                        struct record_args *a)
{
    /* run: stop at the command (`+`), whose own options are not ours. */
    int rc =
        cli_getopt(c, argc, argv, run ? "+r:d:f:o:qh" : "r:d:f:o:qh", record_opts, record_opt, a);

    if (rc >= 0)
        return rc;
    if (run) {
        if (optind >= argc)
            return cli_usage(c, "run needs a command after `--`");
        a->cmd = argv + optind;
        return -1;
    }
    return cli_one_pid(c, argc, argv, "record", &a->pid);
}

/* ---- status and statistics --------------------------------------------------------------- */

static void on_status(void *arg, const struct sampler_stats *st)
{
    (void)arg;
    out_record_status(stderr, st);
}

static double self_cpu_seconds(void)
{
    struct rusage ru;

    if (getrusage(RUSAGE_SELF, &ru) < 0)
        return 0;
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void print_subproc_stats(const struct subproc *g)
{
    struct subproc_stats ss;

    if (!g)
        return;
    subproc_stats_get(g, &ss);
    out_record_subproc_stats(stderr, &ss);
}

static void print_stats(const struct sampler_stats *st, const struct profile *p)
{
    out_record_stats(stderr, st, p, self_cpu_seconds());
}

/* ---- recording --------------------------------------------------------------------------- */

static int write_profile(const struct record_args *a, const struct profile *p, FILE *f,
                         struct ps_err *err)
{
    char title[128];
    struct out_profile_opts o = {.per_thread = a->per_thread,
                                 .title = title,
                                 .rate_hz = a->so.rate_hz,
                                 .exporter = "pyscope@" PYSCOPE_VERSION};

    (void)snprintf(title, sizeof(title), "pyscope profile of pid %d", (int)a->pid);
    return out_profile_write(f, a->format, p, &o, err);
}

/* --subprocesses: the root's own process frame, and the group following its descendants. */
static int follow_subprocesses(const struct record_args *a, struct profile *p,
                               struct sampler_opts *so, char *frame, size_t cap, struct subproc **g,
                               struct ps_err *err)
{
    struct ps_err ignored = {0};
    char comm[32] = "";
    int rc;

    if (!a->subprocesses)
        return 0;
    if (procstat_comm(a->pid, comm, sizeof(comm), &ignored) < 0)
        comm[0] = '\0';
    (void)snprintf(frame, cap, "process %d %s", (int)a->pid, comm);
    so->process_frame = frame;
    rc = subproc_new(a->pid, p, so, g, err);
    if (rc == 0) {
        so->on_tick = subproc_tick;
        so->tick_arg = *g;
    }
    return rc;
}

/*
 * A recording that ended on an error after it had samples (another tracer took the target
 * under --blocking, a read failed for good, ...): keep what was sampled. Returns 1 with the
 * reason, as one sentence, in err; else rc unchanged.
 */
static int record_early_stop(int rc, const struct sampler_stats *st, struct ps_err *err)
{
    char why[sizeof(err->msg)];

    if (rc >= 0 || st->samples == 0)
        return rc;
    (void)snprintf(why, sizeof(why), "%s", err->msg);
    ps_err_clear(err);
    (void)ps_err_set(err, rc,
                     "the recording stopped early on an error, and the output holds the %llu "
                     "samples taken before it: %s",
                     (unsigned long long)st->samples, why);
    return 1;
}

/* Write what was sampled (the samples stream's end, or the profile) and close the output.
 * rc is the recording's result; after an early stop (early) the recording's reason stays in
 * err unless writing fails too. Returns the first failure, else rc. */
static int record_write(const struct record_args *a, const struct profile *p, FILE *f,
                        struct out_samples *samples, const struct sampler_stats *st, int rc,
                        bool early, struct ps_err *err)
{
    struct ps_err ignored = {0};
    struct ps_err *werr = early ? &ignored : err;

    if (samples) {
        int wrc = out_samples_close(samples, st, werr);
        rc = rc ? rc : wrc;
    } else if (rc == 0) {
        rc = write_profile(a, p, f, werr);
    }
    if (f)
        rc = cli_close_output(a->output, f, rc, werr);
    if (rc < 0 && early) { /* writing failed too: that is the error */
        ps_err_clear(err);
        (void)ps_err_set(err, rc, "%s", ignored.msg);
    }
    return rc;
}

/* Sample pp until the end, then write the output: 0, 1 when it stopped early on an error
 * (record_early_stop, the output written), or a negative code (nothing usable written). pp
 * NULL (--subprocesses of a process that is not Python): a clock-only sampler for a->pid ticks
 * its Python descendants. */
static int record_pyproc(const struct record_args *a, struct pyproc *pp, enum sampler_end *end,
                         struct ps_err *err)
{
    struct sampler_opts so = a->so;
    struct subproc *group = NULL;
    char frame[64];
    struct out_samples *samples = NULL;
    struct profile *p = NULL;
    struct sampler *s = NULL;
    struct sampler_stats st = {0};
    FILE *f = NULL;
    bool early;
    int rc = cli_open_output(a->output, &f, err);

    if (rc == 0)
        rc = profile_new(&p, err);
    if (rc == 0 && a->format == OUT_PROFILE_SAMPLES)
        rc = out_samples_open(f, a->pid, pp ? pp->loc.version : "", so.rate_hz, &samples, err);
    if (samples) {
        so.on_sample = out_samples_on_sample;
        so.sample_arg = samples;
    }
    if (rc == 0)
        rc = follow_subprocesses(a, p, &so, frame, sizeof(frame), &group, err);
    if (!a->quiet && isatty(STDERR_FILENO))
        so.on_status = on_status;
    so.clock_pid = a->pid;
    if (rc == 0)
        rc = sampler_new(pp, p, &so, &s, err);
    if (rc == 0)
        rc = sampler_run(s, err);
    if (s)
        sampler_stats_get(s, &st);
    *end = st.end;
    rc = s ? record_early_stop(rc, &st, err) : rc;
    early = rc == 1;
    rc = early ? 0 : rc;
    if (so.on_status)
        (void)fputc('\n', stderr);
    rc = record_write(a, p, f, samples, &st, rc, early, err);
    if (rc == 0 && !a->quiet) {
        print_stats(&st, p);
        print_subproc_stats(group);
    }
    subproc_free(group);
    sampler_free(s);
    profile_free(p);
    return rc == 0 && early ? 1 : rc;
}

int cli_record(const struct cli_common *common, int argc, char **argv)
{
    struct record_args a = {.so.rate_hz = SAMPLER_DEFAULT_RATE, .format = OUT_PROFILE_FLAMEGRAPH};
    struct ps_err err = {0};
    struct pyproc *pp = NULL;
    enum sampler_end end = SAMPLER_END_NONE;
    int rc = record_parse(common, argc, argv, false, &a);

    if (rc >= 0)
        return rc;
    cli_hold_stop_signals();
    rc = pyproc_open(a.pid, &pp, &err);
    if (rc == -PS_ENOTPYTHON && a.subprocesses) /* a shell or supervisor: its children */
        rc = 0;
    if (rc == 0 && pp && pp->warning[0])
        cli_log(common, "warning", 0, pp->warning);
    if (rc == 0)
        rc = record_pyproc(&a, pp, &end, &err);
    pyproc_close(pp);
    if (rc == 1)
        cli_log(common, "warning", err.code, err.msg);
    return rc < 0 ? cli_fail(common, &err, rc) : rc == 1 ? CLI_EXIT_PARTIAL : CLI_EXIT_OK;
}

/* ---- run --------------------------------------------------------------------------------- */

/* Fork and exec the command with the signal mask `mask` (the one pyscope had before it held the
 * stop signals); a CLOEXEC pipe reports an exec failure as its errno. */
static int spawn(char **cmd, const sigset_t *mask, pid_t *out, struct ps_err *err)
{
    int fds[2], child_errno = 0;
    pid_t pid;

    if (pipe2(fds, O_CLOEXEC) < 0)
        return ps_err_set(err, -errno, "cannot create a pipe: %s", strerror(errno));
    pid = fork();
    if (pid < 0) {
        (void)close(fds[0]);
        (void)close(fds[1]);
        return ps_err_set(err, -errno, "cannot fork: %s", strerror(errno));
    }
    if (pid == 0) {
        (void)close(fds[0]);
        (void)sigprocmask(SIG_SETMASK, mask, NULL);
        execvp(cmd[0], cmd);
        child_errno = errno;
        (void)!write(fds[1], &child_errno, sizeof(child_errno));
        _exit(127);
    }
    (void)close(fds[1]);
    if (read(fds[0], &child_errno, sizeof(child_errno)) == (ssize_t)sizeof(child_errno)) {
        (void)close(fds[0]);
        (void)waitpid(pid, NULL, 0);
        return ps_err_set(err, -child_errno, "cannot run %s: %s", cmd[0], strerror(child_errno));
    }
    (void)close(fds[0]);
    *out = pid;
    return 0;
}

/* The child is settled as not Python: its executable cannot hold a runtime and it sleeps in a
 * syscall (so it is not a wrapper on its way to exec a Python, like env). */
static bool run_not_python(pid_t pid, int rc)
{
    struct ps_err ignored = {0};
    char state = '?';

    return rc == -PS_ENOTPYTHON && procstat_state(pid, pid, &state, &ignored) == 0 &&
           state == 'S' && !locate_exe_may_be_python(pid);
}

/*
 * `run`'s waits are session loops (evloop) of their own: the command's exit is a pid source, the
 * retries and the grace are timers, the stop signals come from the loop's signalfd. None blocks
 * in waitpid, none sleeps; each is bounded by its timers or by the command's exit.
 */

/* The command: its pid, and its wait status once reaped. */
struct run_child {
    pid_t pid;
    bool reaped;
    int status;
    int poll; /* the current loop's poll timer (used only without a pidfd) */
};

/* Reap the command if it exited; true when it is reaped (now or before). */
static bool run_reap(struct run_child *ch)
{
    if (!ch->reaped && waitpid(ch->pid, &ch->status, WNOHANG) == ch->pid)
        ch->reaped = true;
    return ch->reaped;
}

/* The command's wait status as an exit code: its own, or 128+N when killed by signal N. */
static int run_status_code(int status)
{
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* A loop for one of run's waits: the stop signals, the command's exit (pid source; without a
 * pidfd, a poll timer reaps), nothing else yet. */
static int run_poll_exit(void *arg, struct evloop *l, unsigned events, struct ps_err *err)
{
    struct run_child *ch = arg;

    (void)events;
    (void)err;
    if (run_reap(ch))
        evloop_stop(l, EVLOOP_END_EXITED);
    else
        evloop_timer_at(l, ch->poll, evloop_clock_now(l) + RUN_START_POLL_MS / 1000.0);
    return 0;
}

static int run_loop_new(struct run_child *ch, struct evloop **l, struct ps_err *err)
{
    const struct evloop_opts o = {.signals = EVLOOP_SIG_STOP};
    struct ps_err ignored = {0};
    int rc = evloop_new(&o, l, err);

    if (rc < 0)
        return rc;
    rc = ch->poll = evloop_add_timer(*l, -1, run_poll_exit, ch, err);
    if (rc >= 0 && evloop_add_pid(*l, ch->pid, NULL, NULL, &ignored) < 0)
        evloop_timer_at(*l, ch->poll, evloop_clock_now(*l) + RUN_START_POLL_MS / 1000.0);
    return rc < 0 ? rc : 0;
}

/* Forward the stop signal that ended the loop to the command, unless the terminal sent it (the
 * kernel signalled the command's process group too). */
static void run_forward(const struct evloop *l, pid_t pid)
{
    if (!evloop_signal_from_kernel(l))
        (void)kill(pid, evloop_signo(l));
}

/* ---- the start: wait until the command's runtime can be read --------------------------------- */

#define START_READY   EVLOOP_END_OWN       /* pyproc_open gave its answer */
#define START_TIMEOUT (EVLOOP_END_OWN + 1) /* RUN_START_TIMEOUT_MS passed */

struct run_start {
    struct run_child *ch;
    bool subprocesses;
    struct pyproc **pp;
    struct ps_err last;
    double t0;
    int rc, timer;
};

/* The retry timer: one pyproc_open; the answer ends the loop, else the next try. */
static int start_try(void *arg, struct evloop *l, unsigned events, struct ps_err *err)
{
    struct run_start *s = arg;
    pid_t pid = s->ch->pid;

    (void)events;
    (void)err;
    ps_err_clear(&s->last);
    s->rc = pyproc_open(pid, s->pp, &s->last);
    if (s->rc == 0 || s->rc == -PS_EPERM || s->rc == -PS_EVERSION ||
        (!s->subprocesses && run_not_python(pid, s->rc))) {
        evloop_stop(l, START_READY);
        return 0;
    }
    /* real time: on a loaded machine each try can take far longer than the poll */
    if (s->rc == -PS_ENOTPYTHON && s->subprocesses &&
        (evloop_now() - s->t0) * 1000 >= RUN_NOTPY_MS) {
        *s->pp = NULL;
        s->rc = 0;
        evloop_stop(l, START_READY);
        return 0;
    }
    evloop_timer_at(l, s->timer, evloop_clock_now(l) + RUN_START_POLL_MS / 1000.0);
    return 0;
}

/* The start's loop ended: its result (see open_child). */
static int start_result(const struct run_start *s, const struct evloop *l, struct ps_err *err)
{
    switch (evloop_end(l)) {
    case START_READY: return s->rc < 0 ? ps_err_set(err, s->rc, "%s", s->last.msg) : 0;
    case EVLOOP_END_EXITED:
        return ps_err_set(err, -PS_EGONE,
                          "the command exited (status %d) before its Python runtime could be read",
                          run_status_code(s->ch->status));
    case EVLOOP_END_SIGNAL: return 1;
    default:
        return ps_err_set(err, -ETIMEDOUT,
                          "the command's Python runtime was not readable after %d s (%s); is it "
                          "a program of a supported CPython (%s)?",
                          RUN_START_TIMEOUT_MS / 1000, s->last.msg, layout_supported());
    }
}

/*
 * Open the command's runtime once it is initialised: tries every RUN_START_POLL_MS for at most
 * RUN_START_TIMEOUT_MS, ending if it exits. With --subprocesses, a command that is still not
 * Python after RUN_NOTPY_MS (a shell, a supervisor) is recorded through its Python descendants:
 * 0 with *pp NULL. Returns 0, 1 when a stop signal came first (forwarded to the command: the
 * start is abandoned), or a negative code with err filled.
 */
static int open_child(struct run_child *ch, bool subprocesses, struct pyproc **pp,
                      struct ps_err *err)
{
    struct run_start s = {.ch = ch, .subprocesses = subprocesses, .pp = pp, .t0 = evloop_now()};
    struct evloop *l = NULL;
    int rc = run_loop_new(ch, &l, err);

    if (rc == 0)
        rc = s.timer = evloop_add_timer(l, evloop_clock_now(l), start_try, &s, err);
    if (rc >= 0)
        rc = evloop_add_deadline(l, s.t0 + RUN_START_TIMEOUT_MS / 1000.0, START_TIMEOUT, err);
    if (rc >= 0)
        rc = evloop_run(l, err);
    if (rc == 0 && evloop_end(l) == EVLOOP_END_EXITED)
        (void)run_reap(ch);
    if (rc == 0 && evloop_end(l) == EVLOOP_END_SIGNAL)
        run_forward(l, ch->pid);
    if (rc == 0)
        rc = start_result(&s, l, err);
    evloop_free(l);
    return rc;
}

/* ---- the end: wait for the command ----------------------------------------------------------- */

#define WAIT_GAVE_UP EVLOOP_END_OWN /* the last step's signal sent, and a step more passed */

/*
 * How run waits for its command at the end. stops counts the stop signals pyscope got (the
 * first is forwarded; the second arms the grace: SIGKILL after RUN_STOP_GRACE_MS; a third sends
 * it at once). ladder: the signals pyscope sends itself, one per step, the first at first_due
 * (< 0: only when a second stop signal arms it).
 */
struct run_wait {
    struct run_child *ch;
    int stops;
    const int *ladder;
    size_t n, next;
    double step, first_due;
    int timer, sent; /* sent: the last signal pyscope sent itself, 0 none */
};

static int wait_step(void *arg, struct evloop *l, unsigned events, struct ps_err *err)
{
    struct run_wait *w = arg;

    (void)events;
    (void)err;
    if (w->next >= w->n) {
        evloop_stop(l, WAIT_GAVE_UP);
        return 0;
    }
    w->sent = w->ladder[w->next++];
    (void)kill(w->ch->pid, w->sent);
    evloop_timer_at(l, w->timer, evloop_clock_now(l) + w->step);
    return 0;
}

/* A stop signal while waiting: forward the first, arm the grace at the second, kill at the
 * third. */
static void wait_on_stop(struct run_wait *w, struct evloop *l)
{
    static const int kill_now[] = {SIGKILL};

    w->stops++;
    if (w->stops == 1) {
        run_forward(l, w->ch->pid);
    } else if (w->stops == 2) {
        if (w->next == 0)
            evloop_timer_at(l, w->timer, evloop_clock_now(l) + RUN_STOP_GRACE_MS / 1000.0);
    } else if (w->sent != SIGKILL) {
        w->ladder = kill_now;
        w->n = 1;
        w->next = 0;
        evloop_timer_at(l, w->timer, evloop_clock_now(l));
    }
}

/* Wait for the command as w says. Returns 0 with ch reaped, or a negative code with err
 * filled (the command did not exit a step after SIGKILL; it is not reaped). */
static int wait_child(struct run_wait *w, struct ps_err *err)
{
    struct evloop *l = NULL;
    int rc = run_reap(w->ch) ? 0 : run_loop_new(w->ch, &l, err);

    if (w->ch->reaped)
        return 0;
    if (rc == 0)
        rc = w->timer = evloop_add_timer(l, w->first_due, wait_step, w, err);
    while (rc >= 0 && !run_reap(w->ch)) {
        rc = evloop_run(l, err);
        /* the pidfd says it exited: waitpid returns at once */
        if (rc == 0 && evloop_end(l) == EVLOOP_END_EXITED && !run_reap(w->ch) &&
            waitpid(w->ch->pid, &w->ch->status, 0) != w->ch->pid)
            rc = ps_err_set(err, -errno, "cannot wait for the command (pid %d): %s",
                            (int)w->ch->pid, strerror(errno));
        w->ch->reaped = w->ch->reaped || (rc == 0 && evloop_end(l) == EVLOOP_END_EXITED);
        if (rc == 0 && evloop_end(l) == EVLOOP_END_SIGNAL)
            wait_on_stop(w, l);
        else if (rc == 0 && evloop_end(l) == WAIT_GAVE_UP)
            rc = ps_err_set(err, -ETIMEDOUT, "the command (pid %d) did not exit after SIGKILL",
                            (int)w->ch->pid);
    }
    evloop_free(l);
    return rc < 0 ? rc : 0;
}

/* The duration ended: end the command as py-spy does (SIGINT, then SIGTERM, then SIGKILL, each
 * after RUN_GRACE_MS; a stop signal sends SIGKILL at once). Returns the exit code of `run`: 0
 * when it ended at a signal of ours. */
static int end_child(const struct cli_common *c, struct run_child *ch)
{
    static const int sigs[] = {SIGINT, SIGTERM, SIGKILL};
    struct run_wait w = {.ch = ch, .stops = 2, .ladder = sigs, .n = 3, .step = RUN_GRACE_MS / 1e3};
    struct ps_err err = {0};
    int rc;

    w.first_due = evloop_now();
    rc = wait_child(&w, &err);
    if (rc < 0)
        return cli_fail(c, &err, rc);
    return WIFSIGNALED(ch->status) && WTERMSIG(ch->status) == w.sent ? CLI_EXIT_OK
                                                                     : run_status_code(ch->status);
}

/* The recording is over (stops: the stop signals it took, 2 when one ended it): wait for the
 * command's exit and return its status, or an error's exit code. */
static int child_exit_code(const struct cli_common *c, struct run_child *ch, int stops)
{
    static const int sigs[] = {SIGKILL};
    struct run_wait w = {.ch = ch,
                         .stops = stops,
                         .ladder = sigs,
                         .n = 1,
                         .step = RUN_STOP_GRACE_MS / 1e3,
                         .first_due = -1};
    struct ps_err err = {0};
    int rc;

    if (stops >= 2)
        w.first_due = evloop_now() + RUN_STOP_GRACE_MS / 1e3;
    rc = wait_child(&w, &err);
    return rc < 0 ? cli_fail(c, &err, rc) : run_status_code(ch->status);
}

/* An error before or during the recording: end the command (SIGTERM, then SIGKILL after
 * RUN_GRACE_MS), without waiting for it for ever. */
static void kill_child(struct run_child *ch)
{
    static const int sigs[] = {SIGTERM, SIGKILL};
    struct run_wait w = {.ch = ch, .stops = 2, .ladder = sigs, .n = 2, .step = RUN_GRACE_MS / 1e3};
    struct ps_err ignored = {0};

    w.first_due = evloop_now();
    (void)wait_child(&w, &ignored);
}

/* A stop before the command's runtime could be read: the output is a profile of no samples. */
static int record_nothing(const struct record_args *a, struct ps_err *err)
{
    struct sampler_stats st = {0};
    struct out_samples *samples = NULL;
    struct profile *p = NULL;
    FILE *f = NULL;
    int rc = cli_open_output(a->output, &f, err);

    if (rc == 0)
        rc = profile_new(&p, err);
    if (rc == 0 && a->format == OUT_PROFILE_SAMPLES)
        rc = out_samples_open(f, a->pid, "", a->so.rate_hz, &samples, err);
    rc = record_write(a, p, f, samples, &st, rc, false, err);
    profile_free(p);
    return rc;
}

int cli_run(const struct cli_common *common, int argc, char **argv)
{
    struct record_args a = {.so.rate_hz = SAMPLER_DEFAULT_RATE, .format = OUT_PROFILE_FLAMEGRAPH};
    struct ps_err err = {0};
    struct pyproc *pp = NULL;
    struct run_child ch = {0};
    enum sampler_end end = SAMPLER_END_NONE;
    int rc = record_parse(common, argc, argv, true, &a);
    int stops = 0;
    sigset_t mask;

    if (rc >= 0 || !a.cmd)
        return rc >= 0 ? rc : CLI_EXIT_USAGE;
    /* Held before the spawn (a stop signal meanwhile must not kill pyscope and orphan the
     * command); the command starts with the mask pyscope had. */
    (void)sigprocmask(SIG_BLOCK, NULL, &mask);
    cli_hold_stop_signals();
    rc = spawn(a.cmd, &mask, &a.pid, &err);
    if (rc < 0)
        return cli_fail(common, &err, rc);
    ch.pid = a.pid;
    a.so.forward_signals = a.pid;
    rc = open_child(&ch, a.subprocesses, &pp, &err);
    if (rc == 0) {
        rc = record_pyproc(&a, pp, &end, &err);
        stops = end == SAMPLER_END_SIGNAL ? 2 : 0; /* the second stop signal ended it */
    } else if (rc == 1) { /* a stop signal, forwarded, before the runtime could be read */
        stops = 1;
        rc = record_nothing(&a, &err);
        cli_log(common, "warning", 0,
                "stopped before the command's Python runtime could be read: the profile is empty");
    }
    pyproc_close(pp);
    if (rc == 1) /* the command runs on: its exit status is still run's */
        cli_log(common, "warning", err.code, err.msg);
    if (rc == 0 && end == SAMPLER_END_DURATION)
        return a.keep_running ? CLI_EXIT_OK : end_child(common, &ch);
    if (rc < 0) {
        int status = cli_fail(common, &err, rc);

        kill_child(&ch);
        return status;
    }
    return child_exit_code(common, &ch, stops);
}
