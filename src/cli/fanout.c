/* SPDX-License-Identifier: MIT */
/*
 * One forked pyscope process per Python process of a tree, their output merged (fanout.h).
 * Place in the data flow: the CLI's `exceptions --subprocesses` calls fanout_run instead of
 * tracing one pid; each child runs the ordinary one-pid command with its stdout on a pipe, and
 * this loop copies whole lines from the pipes to stdout.
 *
 * The loop is a session loop (evloop.h) with these sources: one fd source per child's pipe,
 * a timer every FANOUT_SCAN_MS that lists the tree again (subproc_descendants), starts children
 * for new Python processes and checks the root, a timer at the deadline, and the stop signals
 * (the loop's signalfd). After every turn the children that ended are reaped. The end runs the
 * same loop again with the pipes only and a FANOUT_END_TICK_S tick, until every child is
 * reaped and read to EOF or the end's wait is over; a stop signal then ends nothing more.
 *
 * Never: traces, stops or signals a target (only our own children, with SIGTERM); waits on a
 * child while it could hold a target (the end drains their output while they exit on their own).
 */
#include "pyscope/fanout.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pyscope/evloop.h"
#include "pyscope/subproc.h"

/* How long the end waits for the children to finish their traces and exit (then SIGKILL is
 * not sent: the kernel's PR_SET_PDEATHSIG still ends each cleanly when we exit). */
#define FANOUT_END_WAIT_S 10.0
/* At the duration's end: how long the children may take to end on their own first (they end at
 * the same deadline; this only bounds a slow detach and a last write on a loaded machine). */
#define FANOUT_GRACE_S 5.0
/* The end's tick: how often it reaps while the children exit. */
#define FANOUT_END_TICK_S 0.02

/* Every child's pipe and the two timers fit in one loop. */
_Static_assert(FANOUT_MAX + 2 <= EVLOOP_MAX_SOURCES, "a loop holds every child's pipe");

/* fanout_run's own reasons to end the loop (evloop_stop). */
enum {
    FAN_END_DURATION = EVLOOP_END_OWN,
    FAN_END_ROOT,   /* the root exited */
    FAN_END_OUTPUT, /* our stdout failed */
    FAN_END_DRAINED /* the end: every child reaped and read, or its wait over */
};

struct fanout;

/* A slot of the children's table; free when proc is 0 and fd is -1. Slots never move (a
 * pipe's source points at its slot). */
struct fan_kid {
    struct fanout *f;
    pid_t target; /* the traced process */
    pid_t proc;   /* our child running fn; 0 once reaped */
    int fd;       /* read end of its stdout; -1 at EOF */
    int src;      /* the pipe's source in the loop */
    size_t len;
    char *buf; /* FANOUT_LINE_MAX bytes: the line being assembled */
};

struct fanout {
    pid_t root;
    double remaining_end; /* deadline on the loop's clock, 0: none */
    fanout_fn fn;
    void *arg;
    struct evloop *l;
    int tick;       /* the scan timer, then the end's tick */
    double give_up; /* the end: when it stops waiting (0 while the run goes on) */
    bool out_failed;
    struct fan_kid kids[FANOUT_MAX];
    size_t nkids; /* slots in use */
    struct subproc_try seen[FANOUT_SCAN_MAX], next[FANOUT_SCAN_MAX];
    size_t nseen;
    pid_t tree[FANOUT_SCAN_MAX];
    struct fanout_stats st;
};

/* ---- output ------------------------------------------------------------------------------ */

static void fan_write(struct fanout *f, const char *p, size_t n)
{
    if (f->out_failed)
        return;
    if (fwrite(p, 1, n, stdout) != n || fflush(stdout) != 0)
        f->out_failed = true;
}

/* Copy the complete lines of k's buffer to stdout, keep the partial last one. */
static void fan_lines(struct fanout *f, struct fan_kid *k)
{
    char *nl = memrchr(k->buf, '\n', k->len);
    size_t whole;

    if (!nl) {
        if (k->len == FANOUT_LINE_MAX) { /* a line longer than the buffer goes out in parts */
            fan_write(f, k->buf, k->len);
            k->len = 0;
        }
        return;
    }
    whole = (size_t)(nl - k->buf) + 1;
    fan_write(f, k->buf, whole);
    memmove(k->buf, k->buf + whole, k->len - whole);
    k->len -= whole;
}

/* A pipe's source: read what its child wrote; at EOF its last partial line goes out with a
 * newline and the pipe leaves the loop. */
static int fan_on_pipe(void *arg, struct evloop *l, unsigned events, struct ps_err *err)
{
    struct fan_kid *k = arg;
    struct fanout *f = k->f;
    ssize_t n = read(k->fd, k->buf + k->len, FANOUT_LINE_MAX - k->len);

    (void)events;
    (void)err;
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return 0;
    if (n <= 0) {
        if (k->len > 0) {
            fan_write(f, k->buf, k->len);
            fan_write(f, "\n", 1);
        }
        k->len = 0;
        evloop_remove(l, k->src);
        (void)close(k->fd);
        k->fd = -1;
        return 0;
    }
    k->len += (size_t)n;
    fan_lines(f, k);
    return 0;
}

/* ---- children ------------------------------------------------------------------------------ */

/* In the forked child: stdout to the pipe, nothing of the parent's loop kept (its copy of the
 * loop freed: no teardown step is ever added, and the mask it gives back is the caller's);
 * never returns. */
static void fan_child(struct fanout *f, int wfd, pid_t target)
{
    double remaining = f->remaining_end > 0 ? f->remaining_end - evloop_clock_now(f->l) : 0;
    int code;

    (void)prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() == 1) /* the parent died before the line above */
        _exit(1);
    for (size_t i = 0; i < FANOUT_MAX; i++)
        if (f->kids[i].fd >= 0)
            (void)close(f->kids[i].fd);
    evloop_free(f->l);
    f->l = NULL;
    if (dup2(wfd, STDOUT_FILENO) < 0)
        _exit(1);
    (void)close(wfd);
    if (f->remaining_end > 0 && remaining < 0.001)
        _exit(0);
    code = f->fn(f->arg, target, remaining);
    (void)fflush(stdout);
    exit(code);
}

/* Start a child for target in a free slot (there is one: nkids < FANOUT_MAX). False when the
 * pipe, its source or the fork failed. */
static bool fan_start(struct fanout *f, pid_t target)
{
    struct fan_kid *k = f->kids;
    struct ps_err ignored = {0};
    int p[2], src;
    pid_t child;

    while (k->target > 0)
        k++;
    k->buf = k->buf ? k->buf : malloc(FANOUT_LINE_MAX);
    if (!k->buf || pipe2(p, O_CLOEXEC) != 0)
        return false;
    src = evloop_add_fd(f->l, p[0], fan_on_pipe, k, &ignored);
    (void)fflush(stdout);
    (void)fflush(stderr);
    child = src < 0 ? -1 : fork();
    if (child < 0) {
        evloop_remove(f->l, src);
        (void)close(p[0]);
        (void)close(p[1]);
        return false;
    }
    if (child == 0) {
        (void)close(p[0]);
        fan_child(f, p[1], target);
    }
    (void)close(p[1]);
    *k = (struct fan_kid){
        .f = f, .target = target, .proc = child, .fd = p[0], .src = src, .buf = k->buf};
    f->nkids++;
    f->st.followed++;
    return true;
}

/* Reap the children that exited; free the slots both reaped and read to EOF. */
static void fan_reap(struct fanout *f)
{
    for (size_t i = 0; i < FANOUT_MAX; i++) {
        struct fan_kid *k = &f->kids[i];
        int status = 0;

        if (k->target == 0)
            continue;
        if (k->proc > 0 && waitpid(k->proc, &status, WNOHANG) == k->proc) {
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                f->st.failed++;
            k->proc = 0;
        }
        if (k->proc == 0 && k->fd < 0) {
            k->target = 0;
            f->nkids--;
        }
    }
}

static bool fan_is_kid(const struct fanout *f, pid_t pid)
{
    for (size_t i = 0; i < FANOUT_MAX; i++)
        if (f->kids[i].proc == pid || (f->kids[i].target == pid && f->kids[i].proc > 0))
            return true;
    return false;
}
/* ---- discovery ----------------------------------------------------------------------------- */

static const struct subproc_try *fan_find_seen(const struct fanout *f, pid_t pid)
{
    for (size_t i = 0; i < f->nseen; i++)
        if (f->seen[i].pid == pid)
            return &f->seen[i];
    return NULL;
}

/* One more try at a process of the tree (subproc_try_open): follow it when it is Python. */
static void fan_consider(struct fanout *f, struct subproc_try *e)
{
    switch (subproc_try_open(e, FANOUT_TRIES, NULL)) {
    case SUBPROC_PYTHON:
        if (f->nkids >= FANOUT_MAX)
            f->st.over_cap++;
        else if (!fan_start(f, e->pid))
            e->done = false; /* pipe or fork failed: try again at the next scan */
        break;
    case SUBPROC_NOT_PYTHON: f->st.not_python++; break;
    default: break;
    }
}

/* List the tree, try the new or pending processes; `seen` keeps only the live ones. */
static void fan_scan(struct fanout *f)
{
    size_t n = subproc_descendants(f->root, f->tree, FANOUT_SCAN_MAX), nnext = 0;

    for (size_t i = 0; i < n; i++) {
        const struct subproc_try *old = fan_find_seen(f, f->tree[i]);
        struct subproc_try *e = &f->next[nnext++];

        *e = old ? *old : (struct subproc_try){.pid = f->tree[i]};
        if (!old && (f->tree[i] == getpid() || fan_is_kid(f, f->tree[i])))
            e->done = true; /* ourselves, or a pid still followed */
        fan_consider(f, e);
    }
    memcpy(f->seen, f->next, sizeof(f->seen[0]) * nnext);
    f->nseen = nnext;
}

/* ---- loop ---------------------------------------------------------------------------------- */

static bool fan_root_gone(pid_t root)
{
    char path[32];
    char state = 0;
    FILE *fp;

    (void)snprintf(path, sizeof(path), "/proc/%d/stat", (int)root);
    fp = fopen(path, "re");
    if (!fp)
        return true;
    /* a zombie root (state Z) has ended too; comm may hold ')' so read the last one */
    {
        char buf[512];
        size_t len = fread(buf, 1, sizeof(buf) - 1, fp);
        char *rp;

        buf[len] = '\0';
        rp = strrchr(buf, ')');
        if (rp && rp[1] == ' ')
            state = rp[2];
    }
    (void)fclose(fp);
    return state == 'Z' || state == 'X';
}

/* The run's tick, every FANOUT_SCAN_MS: the root's end, else a scan of the tree. */
static int fan_on_scan(void *arg, struct evloop *l, unsigned events, struct ps_err *err)
{
    struct fanout *f = arg;

    (void)events;
    (void)err;
    (void)evloop_timer_every(l, f->tick, FANOUT_SCAN_MS / 1000.0);
    if (fan_root_gone(f->root)) {
        evloop_stop(l, FAN_END_ROOT);
        return 0;
    }
    fan_scan(f);
    return 0;
}

/* The end's tick, every FANOUT_END_TICK_S: it only wakes the turn hook until give_up. */
static int fan_on_end_tick(void *arg, struct evloop *l, unsigned events, struct ps_err *err)
{
    struct fanout *f = arg;

    (void)events;
    (void)err;
    if (evloop_clock_now(l) >= f->give_up)
        evloop_stop(l, FAN_END_DRAINED);
    else
        (void)evloop_timer_every(l, f->tick, FANOUT_END_TICK_S);
    return 0;
}

/* After every turn: reap; the run ends when our stdout failed, the end when every child is
 * reaped and read to EOF. */
static int fan_on_turn(void *arg, struct evloop *l, unsigned events, struct ps_err *err)
{
    struct fanout *f = arg;

    (void)events;
    (void)err;
    fan_reap(f);
    if (f->give_up == 0 && f->out_failed)
        evloop_stop(l, FAN_END_OUTPUT);
    else if (f->give_up > 0 && f->nkids == 0)
        evloop_stop(l, FAN_END_DRAINED);
    return 0;
}

/* Turn the loop with the end's tick until every child is reaped and read, or until `until`
 * (monotonic). A stop signal meanwhile ends nothing more: the loop turns again. */
static void fan_drain(struct fanout *f, double until)
{
    struct ps_err ignored = {0};

    f->give_up = until;
    evloop_timer_at(f->l, f->tick, evloop_clock_now(f->l) + FANOUT_END_TICK_S);
    while (f->nkids > 0 && evloop_clock_now(f->l) < until && evloop_run(f->l, &ignored) == 0 &&
           evloop_end(f->l) != FAN_END_DRAINED)
        ;
}

/* The end: SIGTERM to every child still running, their output copied until they exit. At the
 * duration's end the children, given the same deadline, first get FANOUT_GRACE_S to end on
 * their own (their stop records then say "duration"). */
static void fan_end(struct fanout *f, bool at_duration)
{
    struct ps_err ignored = {0};

    evloop_remove(f->l, f->tick);
    f->tick = evloop_add_timer(f->l, -1, fan_on_end_tick, f, &ignored);
    if (f->tick < 0) /* not reached: the scan timer's slot was just freed */
        return;
    if (at_duration)
        fan_drain(f, evloop_clock_now(f->l) + FANOUT_GRACE_S);
    for (size_t i = 0; i < FANOUT_MAX; i++)
        if (f->kids[i].proc > 0)
            (void)kill(f->kids[i].proc, SIGTERM);
    fan_drain(f, evloop_clock_now(f->l) + FANOUT_END_WAIT_S);
}

/* Why the run's loop ended, in words. */
static const char *fan_why(const struct evloop *l)
{
    switch (evloop_end(l)) {
    case EVLOOP_END_SIGNAL: return evloop_signal_why(evloop_signo(l));
    case FAN_END_DURATION: return "duration";
    case FAN_END_ROOT: return "target exited";
    case FAN_END_OUTPUT: return "output closed";
    default: return "error";
    }
}

/* The run's loop: the stop signals, the scan timer first due now, the deadline (duration_s
 * on, when > 0), all on the loop's clock. */
static int fan_loop_new(struct fanout *f, double duration_s, struct ps_err *err)
{
    const struct evloop_opts o = {.signals = EVLOOP_SIG_STOP};
    int rc = evloop_new(&o, &f->l, err);
    double now;

    if (rc < 0)
        return rc;
    now = evloop_clock_now(f->l);
    f->remaining_end = duration_s > 0 ? now + duration_s : 0;
    if (f->remaining_end > 0) /* before the scan: at a tie the deadline first */
        rc = evloop_add_deadline(f->l, f->remaining_end, FAN_END_DURATION, err);
    if (rc >= 0)
        rc = f->tick = evloop_add_timer(f->l, now, fan_on_scan, f, err);
    if (rc >= 0)
        evloop_on_turn(f->l, fan_on_turn, f);
    return rc < 0 ? rc : 0;
}

int fanout_run(pid_t root, double duration_s, fanout_fn fn, void *arg, const char **why,
               struct fanout_stats *st, struct ps_err *err)
{
    struct fanout *f = calloc(1, sizeof(*f));
    int rc;

    *why = "error";
    if (!f)
        return ps_err_set(err, -ENOMEM, "out of memory following subprocesses");
    if (fan_root_gone(root)) {
        free(f);
        return ps_err_set(err, -ESRCH, "no process %d (it may have exited)", (int)root);
    }
    f->root = root;
    f->fn = fn;
    f->arg = arg;
    for (size_t i = 0; i < FANOUT_MAX; i++)
        f->kids[i].fd = -1;
    rc = fan_loop_new(f, duration_s, err);
    if (rc == 0)
        rc = evloop_run(f->l, err);
    if (f->l) {
        *why = rc < 0 ? "error" : fan_why(f->l);
        fan_end(f, evloop_end(f->l) == FAN_END_DURATION && rc == 0);
    }
    *st = f->st;
    evloop_free(f->l);
    for (size_t i = 0; i < FANOUT_MAX; i++)
        free(f->kids[i].buf);
    free(f);
    return rc;
}
