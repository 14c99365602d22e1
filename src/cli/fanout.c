/* SPDX-License-Identifier: MIT */
/*
 * One forked pyscope process per Python process of a tree, their output merged (fanout.h).
 * Place in the data flow: the CLI's `exceptions --subprocesses` calls fanout_run instead of
 * tracing one pid; each child runs the ordinary one-pid command with its stdout on a pipe, and
 * this loop copies whole lines from the pipes to stdout.
 *
 * The loop: poll over the children's pipes and a signalfd of the stop signals, waking at least
 * every FANOUT_SCAN_MS to list the tree again (subproc_descendants), start children for new
 * Python processes, reap the ones that ended and check the deadline and the root.
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
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pyscope/evloop.h"
#include "pyscope/pyproc.h"
#include "pyscope/subproc.h"

/* How long the end waits for the children to finish their traces and exit (then SIGKILL is
 * not sent: the kernel's PR_SET_PDEATHSIG still ends each cleanly when we exit). */
#define FANOUT_END_WAIT_S 10.0
/* At the duration's end: how long the children may take to end on their own first. */
#define FANOUT_GRACE_S 2.0

struct fan_kid {
    pid_t target; /* the traced process */
    pid_t proc;   /* our child running fn; 0 once reaped */
    int fd;       /* read end of its stdout; -1 at EOF */
    size_t len;
    char *buf; /* FANOUT_LINE_MAX bytes: the line being assembled */
};

struct fan_seen {
    pid_t pid;
    uint32_t tries;
    bool done; /* followed, over the cap, or given up */
};

struct fanout {
    pid_t root;
    double remaining_end; /* monotonic deadline, 0: none */
    fanout_fn fn;
    void *arg;
    int sigfd;
    bool out_failed;
    struct fan_kid kids[FANOUT_MAX];
    size_t nkids;
    struct fan_seen seen[FANOUT_SCAN_MAX], next[FANOUT_SCAN_MAX];
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

/* Read what k wrote; at EOF its last partial line goes out with a newline. */
static void fan_read(struct fanout *f, struct fan_kid *k)
{
    ssize_t n = read(k->fd, k->buf + k->len, FANOUT_LINE_MAX - k->len);

    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n <= 0) {
        if (k->len > 0) {
            fan_write(f, k->buf, k->len);
            fan_write(f, "\n", 1);
        }
        k->len = 0;
        (void)close(k->fd);
        k->fd = -1;
        return;
    }
    k->len += (size_t)n;
    fan_lines(f, k);
}

/* ---- children ------------------------------------------------------------------------------ */

/* In the forked child: stdout to the pipe, nothing of the parent's loop kept; never returns. */
static void fan_child(struct fanout *f, int wfd, pid_t target)
{
    double remaining = 0;
    int code;

    (void)prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() == 1) /* the parent died before the line above */
        _exit(1);
    for (size_t i = 0; i < f->nkids; i++)
        if (f->kids[i].fd >= 0)
            (void)close(f->kids[i].fd);
    (void)close(f->sigfd);
    if (dup2(wfd, STDOUT_FILENO) < 0)
        _exit(1);
    (void)close(wfd);
    if (f->remaining_end > 0) {
        remaining = f->remaining_end - evloop_now();
        if (remaining < 0.001)
            _exit(0);
    }
    code = f->fn(f->arg, target, remaining);
    (void)fflush(stdout);
    exit(code);
}

/* Start a child for target. False when the pipe or the fork failed. */
static bool fan_start(struct fanout *f, pid_t target)
{
    struct fan_kid *k = &f->kids[f->nkids];
    int p[2];
    pid_t child;

    k->buf = k->buf ? k->buf : malloc(FANOUT_LINE_MAX);
    if (!k->buf || pipe2(p, O_CLOEXEC) != 0)
        return false;
    (void)fflush(stdout);
    (void)fflush(stderr);
    child = fork();
    if (child < 0) {
        (void)close(p[0]);
        (void)close(p[1]);
        return false;
    }
    if (child == 0) {
        (void)close(p[0]);
        fan_child(f, p[1], target);
    }
    (void)close(p[1]);
    k->target = target;
    k->proc = child;
    k->fd = p[0];
    k->len = 0;
    f->nkids++;
    f->st.followed++;
    return true;
}

/* Reap the children that exited; drop the ones both reaped and read to EOF. */
static void fan_reap(struct fanout *f)
{
    for (size_t i = 0; i < f->nkids;) {
        struct fan_kid *k = &f->kids[i];
        int status = 0;

        if (k->proc > 0 && waitpid(k->proc, &status, WNOHANG) == k->proc) {
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                f->st.failed++;
            k->proc = 0;
        }
        if (k->proc == 0 && k->fd < 0) {
            char *buf = k->buf;

            f->kids[i] = f->kids[--f->nkids];
            f->kids[f->nkids] = (struct fan_kid){.fd = -1, .buf = buf};
            continue;
        }
        i++;
    }
}

static bool fan_is_kid(const struct fanout *f, pid_t pid)
{
    for (size_t i = 0; i < f->nkids; i++)
        if (f->kids[i].proc == pid || (f->kids[i].target == pid && f->kids[i].proc > 0))
            return true;
    return false;
}

/* ---- discovery ----------------------------------------------------------------------------- */

static const struct fan_seen *fan_find_seen(const struct fanout *f, pid_t pid)
{
    for (size_t i = 0; i < f->nseen; i++)
        if (f->seen[i].pid == pid)
            return &f->seen[i];
    return NULL;
}

/* One more try at a process of the tree: follow it when it is Python. */
static void fan_consider(struct fanout *f, struct fan_seen *e)
{
    struct ps_err ignored = {0};
    struct pyproc *pp = NULL;
    int rc;

    if (e->done)
        return;
    e->tries++;
    rc = pyproc_open(e->pid, &pp, &ignored);
    pyproc_close(pp);
    if (rc == 0) {
        e->done = true;
        if (f->nkids >= FANOUT_MAX)
            f->st.over_cap++;
        else if (!fan_start(f, e->pid))
            e->done = false; /* pipe or fork failed: try again at the next scan */
        return;
    }
    if (rc == -PS_EVERSION || rc == -PS_EPERM || rc == -ESRCH || e->tries >= FANOUT_TRIES) {
        e->done = true;
        if (rc != -ESRCH)
            f->st.not_python++;
    }
}

/* List the tree, try the new or pending processes; `seen` keeps only the live ones. */
static void fan_scan(struct fanout *f)
{
    size_t n = subproc_descendants(f->root, f->tree, FANOUT_SCAN_MAX), nnext = 0;

    for (size_t i = 0; i < n; i++) {
        const struct fan_seen *old = fan_find_seen(f, f->tree[i]);
        struct fan_seen *e = &f->next[nnext++];

        *e = old ? *old : (struct fan_seen){.pid = f->tree[i]};
        if (!old && (f->tree[i] == getpid() || fan_is_kid(f, f->tree[i])))
            e->done = true; /* ourselves, or a pid still followed */
        fan_consider(f, e);
    }
    memcpy(f->seen, f->next, sizeof(f->seen[0]) * nnext);
    f->nseen = nnext;
}

/* ---- loop ---------------------------------------------------------------------------------- */

static const char *fan_sig_why(int sig)
{
    switch (sig) {
    case SIGINT: return "signal SIGINT";
    case SIGTERM: return "signal SIGTERM";
    case SIGHUP: return "signal SIGHUP";
    case SIGQUIT: return "signal SIGQUIT";
    case SIGTSTP: return "signal SIGTSTP";
    default: return "signal";
    }
}

/* One poll over the pipes and the signalfd (timeout_ms); returns a stop signal or 0. */
static int fan_poll(struct fanout *f, int timeout_ms)
{
    struct pollfd pfd[FANOUT_MAX + 1];
    struct fan_kid *who[FANOUT_MAX];
    nfds_t n = 0;

    pfd[n++] = (struct pollfd){.fd = f->sigfd, .events = POLLIN};
    for (size_t i = 0; i < f->nkids; i++) {
        if (f->kids[i].fd < 0)
            continue;
        who[n - 1] = &f->kids[i];
        pfd[n++] = (struct pollfd){.fd = f->kids[i].fd, .events = POLLIN};
    }
    if (poll(pfd, n, timeout_ms) <= 0)
        return 0;
    for (nfds_t i = 1; i < n; i++)
        if (pfd[i].revents)
            fan_read(f, who[i - 1]);
    if (pfd[0].revents & POLLIN) {
        struct signalfd_siginfo si;

        if (read(f->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
            return (int)si.ssi_signo;
    }
    return 0;
}

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

/* The end: SIGTERM to every child still running, their output copied until they exit. At the
 * duration's end the children, given the same deadline, first get FANOUT_GRACE_S to end on
 * their own (their stop records then say "duration"). */
static void fan_end(struct fanout *f, bool at_duration)
{
    double give_up = evloop_now() + (at_duration ? FANOUT_GRACE_S : 0);

    while (at_duration && f->nkids > 0 && evloop_now() < give_up) {
        (void)fan_poll(f, 20);
        fan_reap(f);
    }
    give_up = evloop_now() + FANOUT_END_WAIT_S;
    for (size_t i = 0; i < f->nkids; i++)
        if (f->kids[i].proc > 0)
            (void)kill(f->kids[i].proc, SIGTERM);
    while (f->nkids > 0 && evloop_now() < give_up) {
        (void)fan_poll(f, 20);
        fan_reap(f);
    }
}

int fanout_run(pid_t root, double duration_s, const sigset_t *stop_sigs, fanout_fn fn, void *arg,
               const char **why, struct fanout_stats *st, struct ps_err *err)
{
    struct fanout *f = calloc(1, sizeof(*f));
    double start = evloop_now(), next_scan = 0;

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
    f->remaining_end = duration_s > 0 ? start + duration_s : 0;
    for (size_t i = 0; i < FANOUT_MAX; i++)
        f->kids[i].fd = -1;
    f->sigfd = signalfd(-1, stop_sigs, SFD_CLOEXEC);
    if (f->sigfd < 0) {
        int e = errno;

        free(f);
        return ps_err_set(err, -e, "signalfd failed: %s", strerror(e));
    }
    for (;;) {
        double now = evloop_now();
        int sig;

        if (f->remaining_end > 0 && now >= f->remaining_end) {
            *why = "duration";
            break;
        }
        if (now >= next_scan) {
            next_scan = now + FANOUT_SCAN_MS / 1000.0;
            if (fan_root_gone(root)) {
                *why = "target exited";
                break;
            }
            fan_scan(f);
        }
        sig = fan_poll(f, FANOUT_SCAN_MS);
        fan_reap(f);
        if (sig != 0) {
            *why = fan_sig_why(sig);
            break;
        }
        if (f->out_failed) {
            *why = "output closed";
            break;
        }
    }
    fan_end(f, strcmp(*why, "duration") == 0);
    *st = f->st;
    (void)close(f->sigfd);
    for (size_t i = 0; i < FANOUT_MAX; i++)
        free(f->kids[i].buf);
    free(f);
    return 0;
}
