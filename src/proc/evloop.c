/* SPDX-License-Identifier: MIT */
/*
 * The one session loop (see evloop.h). A fixed table of sources (no allocation after
 * evloop_new), one ppoll per turn over the signalfd and the enabled fd and pid sources, its
 * timeout the earliest enabled timer. Time is the loop's one clock: CLOCK_MONOTONIC, or a unit
 * test's injected clock, with which the loop never waits in real time for a timer.
 *
 * Never: blocks or unblocks a signal outside evloop_new/evloop_hold_signals/evloop_free, waits
 * without a bound other than an event, or calls a source after a stop in the same turn.
 */
#include "pyscope/evloop.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* evloop_keep_stop_signals: the process's loops leave the stop signals pending, never read.
 * Process-wide like the signal dispositions; set once, before any loop, on main's thread. */
static bool ev_keep_stop;

enum ev_kind {
    EV_FREE,
    EV_FD,
    EV_TIMER,
    EV_PID
};

struct ev_source {
    enum ev_kind kind;
    bool enabled;
    int fd;         /* EV_FD: the owner's; EV_PID: ours */
    double due;     /* EV_TIMER: absolute, < 0 disarmed */
    double last;    /* EV_TIMER: the due time it last fired for, < 0 never */
    uint64_t order; /* adding order: ties between timers */
    evloop_fn fn;
    void *arg;
};

struct ev_hook {
    evloop_fn fn;
    void *arg;
};

struct ev_undo {
    evloop_undo_fn fn;
    void *arg;
};

struct evloop {
    struct evloop_opts opts;
    int sigfd;
    sigset_t old_mask;
    bool masked;
    struct ev_source src[EVLOOP_MAX_SOURCES];
    int hi; /* one past the highest slot ever taken: the turn looks at no more */
    uint64_t added;
    struct ev_hook turn, tstp, winch;
    struct ev_undo undo[EVLOOP_MAX_TEARDOWN];
    size_t n_undo;
    bool torn_down;
    bool forwarded;
    int end, signo;
    bool kernel_sig;
};

/* ---- clocks and signals ------------------------------------------------------------------ */

static double ts_seconds(clockid_t id)
{
    struct timespec t;

    (void)clock_gettime(id, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

double evloop_now(void)
{
    return ts_seconds(CLOCK_MONOTONIC);
}

double evloop_wall(void)
{
    return ts_seconds(CLOCK_REALTIME);
}

double evloop_thread_cpu(void)
{
    return ts_seconds(CLOCK_THREAD_CPUTIME_ID);
}

double evloop_clock_read(const struct evloop_clock *c)
{
    return c ? c->now(c->arg) : evloop_now();
}

double evloop_clock_now(const struct evloop *l)
{
    return evloop_clock_read(l->opts.clock);
}

void evloop_signals(unsigned classes, sigset_t *set)
{
    (void)sigemptyset(set);
    if (classes & EVLOOP_SIG_STOP) {
        (void)sigaddset(set, SIGINT);
        (void)sigaddset(set, SIGTERM);
        (void)sigaddset(set, SIGHUP);
        (void)sigaddset(set, SIGQUIT); /* Ctrl-\ quits as cleanly as Ctrl-C */
    }
    if (classes & EVLOOP_SIG_TSTP)
        (void)sigaddset(set, SIGTSTP);
    if (classes & EVLOOP_SIG_WINCH)
        (void)sigaddset(set, SIGWINCH);
    if (classes & EVLOOP_SIG_CHLD)
        (void)sigaddset(set, SIGCHLD);
}

void evloop_hold_signals(unsigned classes)
{
    sigset_t set;

    evloop_signals(classes, &set);
    (void)pthread_sigmask(SIG_BLOCK, &set, NULL);
}

int evloop_signal_fd(unsigned classes, sigset_t *held, struct ps_err *err)
{
    sigset_t set, before;
    int fd, e;

    evloop_signals(classes, &set);
    if (pthread_sigmask(SIG_BLOCK, &set, &before) != 0)
        return ps_err_set(err, -EINVAL, "cannot block the signals of a signalfd");
    (void)sigemptyset(held);
    for (int sig = 1; sig < NSIG; sig++)
        if (sigismember(&set, sig) == 1 && sigismember(&before, sig) == 0)
            (void)sigaddset(held, sig);
    fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd >= 0)
        return fd;
    e = errno;
    (void)pthread_sigmask(SIG_UNBLOCK, held, NULL);
    (void)sigemptyset(held);
    return ps_err_set(err, -e, "cannot create a signalfd: %s", strerror(e));
}

void evloop_signal_fd_close(int fd, const sigset_t *held)
{
    if (fd >= 0)
        (void)close(fd);
    (void)pthread_sigmask(SIG_UNBLOCK, held, NULL);
}

void evloop_keep_stop_signals(void)
{
    evloop_hold_signals(EVLOOP_SIG_STOP);
    ev_keep_stop = true;
}

/* ---- life ----------------------------------------------------------------------------------- */

int evloop_new(const struct evloop_opts *opts, struct evloop **out, struct ps_err *err)
{
    struct evloop *l = calloc(1, sizeof(*l));
    sigset_t set;

    if (!l)
        return ps_err_set(err, -ENOMEM, "out of memory creating the event loop");
    l->opts = *opts;
    l->sigfd = -1;
    if (opts->signals) {
        evloop_signals(opts->signals, &set);
        if (pthread_sigmask(SIG_BLOCK, &set, &l->old_mask) != 0) {
            free(l);
            return ps_err_set(err, -EINVAL, "cannot block the session's signals");
        }
        l->masked = true;
        l->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
        if (l->sigfd < 0) {
            int e = errno;

            evloop_free(l);
            return ps_err_set(err, -e, "cannot create a signalfd: %s", strerror(e));
        }
    }
    *out = l;
    return 0;
}

void evloop_free(struct evloop *l)
{
    struct ps_err err = {0};

    if (!l)
        return;
    if (evloop_teardown(l, &err) < 0)
        ps_err_clear(&err); /* nobody to tell: a caller that cares runs evloop_teardown */
    for (int i = 0; i < l->hi; i++)
        evloop_remove(l, i);
    if (l->sigfd >= 0)
        (void)close(l->sigfd);
    if (l->masked)
        (void)pthread_sigmask(SIG_SETMASK, &l->old_mask, NULL);
    free(l);
}

int evloop_add_teardown(struct evloop *l, evloop_undo_fn fn, void *arg, struct ps_err *err)
{
    if (l->n_undo >= EVLOOP_MAX_TEARDOWN)
        return ps_err_set(err, -ENOSPC, "too many teardown steps (at most %d)",
                          EVLOOP_MAX_TEARDOWN);
    l->undo[l->n_undo++] = (struct ev_undo){.fn = fn, .arg = arg};
    return 0;
}

int evloop_teardown(struct evloop *l, struct ps_err *err)
{
    int first = 0;

    if (l->torn_down)
        return 0;
    l->torn_down = true;
    for (size_t i = l->n_undo; i-- > 0;) {
        struct ps_err e = {0};
        int rc = l->undo[i].fn(l->undo[i].arg, &e);

        if (rc < 0 && first == 0) {
            first = rc;
            *err = e;
        }
    }
    return first;
}

/* ---- sources -------------------------------------------------------------------------------- */

static int ev_add(struct evloop *l, const struct ev_source *s, struct ps_err *err)
{
    for (int i = 0; i < EVLOOP_MAX_SOURCES; i++)
        if (l->src[i].kind == EV_FREE) {
            l->src[i] = *s;
            l->src[i].enabled = true;
            l->src[i].order = l->added++;
            l->hi = i >= l->hi ? i + 1 : l->hi;
            return i;
        }
    return ps_err_set(err, -ENOSPC, "too many event sources (at most %d)", EVLOOP_MAX_SOURCES);
}

int evloop_add_fd(struct evloop *l, int fd, evloop_fn fn, void *arg, struct ps_err *err)
{
    const struct ev_source s = {.kind = EV_FD, .fd = fd, .due = -1, .fn = fn, .arg = arg};

    return ev_add(l, &s, err);
}

int evloop_add_timer(struct evloop *l, double due, evloop_fn fn, void *arg, struct ps_err *err)
{
    const struct ev_source s = {
        .kind = EV_TIMER, .fd = -1, .due = due, .last = -1, .fn = fn, .arg = arg};

    return ev_add(l, &s, err);
}

/* A deadline's timer: arg is the reason to stop with. */
static int ev_deadline(void *arg, struct evloop *l, unsigned events, struct ps_err *err)
{
    (void)events;
    (void)err;
    evloop_stop(l, (int)(intptr_t)arg);
    return 0;
}

int evloop_add_deadline(struct evloop *l, double due, int why, struct ps_err *err)
{
    return evloop_add_timer(l, due, ev_deadline, (void *)(intptr_t)why, err);
}

int evloop_add_pid(struct evloop *l, pid_t pid, evloop_fn fn, void *arg, struct ps_err *err)
{
    struct ev_source s = {.kind = EV_PID, .fd = -1, .due = -1, .fn = fn, .arg = arg};
    int id;

#ifdef SYS_pidfd_open
    s.fd = (int)syscall(SYS_pidfd_open, pid, 0);
#else
    errno = ENOSYS;
#endif
    if (s.fd < 0)
        return ps_err_set(err, -errno, "cannot watch process %d for its exit: %s", (int)pid,
                          strerror(errno));
    id = ev_add(l, &s, err);
    if (id < 0)
        (void)close(s.fd);
    return id;
}

static struct ev_source *ev_get(struct evloop *l, int id)
{
    if (id < 0 || id >= EVLOOP_MAX_SOURCES || l->src[id].kind == EV_FREE)
        return NULL;
    return &l->src[id];
}

void evloop_remove(struct evloop *l, int id)
{
    struct ev_source *s = ev_get(l, id);

    if (!s)
        return;
    if (s->kind == EV_PID && s->fd >= 0)
        (void)close(s->fd);
    *s = (struct ev_source){.kind = EV_FREE, .fd = -1};
}

void evloop_enable(struct evloop *l, int id, bool on)
{
    struct ev_source *s = ev_get(l, id);

    if (s)
        s->enabled = on;
}

void evloop_timer_at(struct evloop *l, int id, double due)
{
    struct ev_source *s = ev_get(l, id);

    if (s && s->kind == EV_TIMER)
        s->due = due;
}

uint64_t evloop_timer_every(struct evloop *l, int id, double period)
{
    struct ev_source *s = ev_get(l, id);
    double now = evloop_clock_now(l), n;

    double from;

    if (!s || s->kind != EV_TIMER || !(period > 0))
        return 0;
    from = s->due >= 0 ? s->due : s->last >= 0 ? s->last : now;
    n = now >= from ? floor((now - from) / period) + 1 : 1;
    s->due = from + n * period;
    return (uint64_t)n;
}

void evloop_on_turn(struct evloop *l, evloop_fn fn, void *arg)
{
    l->turn = (struct ev_hook){.fn = fn, .arg = arg};
}

void evloop_on_tstp(struct evloop *l, evloop_fn fn, void *arg)
{
    l->tstp = (struct ev_hook){.fn = fn, .arg = arg};
}

void evloop_on_winch(struct evloop *l, evloop_fn fn, void *arg)
{
    l->winch = (struct ev_hook){.fn = fn, .arg = arg};
}

void evloop_stop(struct evloop *l, int why)
{
    if (l->end == EVLOOP_END_NONE)
        l->end = why;
}

int evloop_end(const struct evloop *l)
{
    return l->end;
}

int evloop_signo(const struct evloop *l)
{
    return l->signo;
}

const char *evloop_signal_why(int sig)
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

bool evloop_signal_from_kernel(const struct evloop *l)
{
    return l->kernel_sig;
}

/* ---- the turn ------------------------------------------------------------------------------- */

/* One signal: its one meaning. */
static int ev_signal(struct evloop *l, const struct signalfd_siginfo *si, struct ps_err *err)
{
    int sig = (int)si->ssi_signo;
    const struct ev_hook *h = sig == SIGWINCH ? &l->winch : sig == SIGTSTP ? &l->tstp : NULL;

    if (h)
        return h->fn ? h->fn(h->arg, l, 0, err) : 0;
    if (sig != SIGTSTP && l->opts.forward_to > 0 && !l->forwarded) {
        /* A terminal's Ctrl-C (SI_KERNEL) already reached the child's process group. */
        l->forwarded = true;
        if (si->ssi_code != SI_KERNEL)
            (void)kill(l->opts.forward_to, sig);
        return 0;
    }
    l->signo = sig;
    l->kernel_sig = si->ssi_code == SI_KERNEL;
    evloop_stop(l, EVLOOP_END_SIGNAL);
    return 0;
}

/* The lowest-numbered stop signal of the loop's pending for this thread or the process (what a
 * read would take first), 0 for none. */
static int ev_pending_stop(const struct evloop *l)
{
    sigset_t pend, stop;

    if (!(l->opts.signals & EVLOOP_SIG_STOP) || sigpending(&pend) != 0)
        return 0;
    evloop_signals(EVLOOP_SIG_STOP, &stop);
    for (int sig = 1; sig < NSIG; sig++)
        if (sigismember(&stop, sig) == 1 && sigismember(&pend, sig) == 1)
            return sig;
    return 0;
}

/* Take the next signal to handle into *si: from the signalfd, or, with the stop signals kept
 * (ev_keep_stop), the next of the others with sigtimedwait, which takes only those it is asked
 * for. Returns false when none is pending. */
static bool ev_take(const struct evloop *l, struct signalfd_siginfo *si)
{
    const struct timespec now = {0, 0};
    sigset_t set, stop;
    siginfo_t info;

    if (!ev_keep_stop)
        return read(l->sigfd, si, sizeof(*si)) == (ssize_t)sizeof(*si);
    evloop_signals(l->opts.signals & ~EVLOOP_SIG_STOP, &set);
    evloop_signals(EVLOOP_SIG_STOP, &stop);
    for (int sig = 1; sig < NSIG; sig++)
        if (sigismember(&stop, sig) == 1)
            (void)sigdelset(&set, sig);
    memset(si, 0, sizeof(*si));
    if (sigtimedwait(&set, &info, &now) < 0)
        return false;
    si->ssi_signo = (uint32_t)info.si_signo;
    si->ssi_code = info.si_code;
    return true;
}

static int ev_signals(struct evloop *l, struct ps_err *err)
{
    struct signalfd_siginfo si;
    int rc = 0, kept = ev_keep_stop ? ev_pending_stop(l) : 0;

    if (kept > 0) { /* left pending: a later copy of it merges with it (evloop.h) */
        l->signo = kept;
        l->kernel_sig = false;
        evloop_stop(l, EVLOOP_END_SIGNAL);
        return 0;
    }
    while (rc == 0 && l->end == EVLOOP_END_NONE && ev_take(l, &si)) {
        /* TSTP without a handler: releasing the target is the orderly stop's teardown. */
        if (si.ssi_signo == SIGTSTP && !l->tstp.fn) {
            l->signo = SIGTSTP;
            evloop_stop(l, EVLOOP_END_SIGNAL);
            break;
        }
        rc = ev_signal(l, &si, err);
    }
    return rc;
}

/* The wait's timeout: until the earliest enabled timer, -1 for none. */
static double ev_timeout(const struct evloop *l, double now)
{
    double until = -1;

    for (int i = 0; i < l->hi; i++) {
        const struct ev_source *s = &l->src[i];

        if (s->kind == EV_TIMER && s->enabled && s->due >= 0 && (until < 0 || s->due < until))
            until = s->due;
    }
    return until < 0 ? -1 : until > now ? until - now : 0;
}

struct ev_wait {
    struct pollfd p[EVLOOP_MAX_SOURCES + 1];
    int which[EVLOOP_MAX_SOURCES + 1]; /* source id, -1 for the signalfd */
    nfds_t n;
};

static void ev_fill(const struct evloop *l, struct ev_wait *w)
{
    int order[EVLOOP_MAX_SOURCES], k = 0;

    w->n = 0;
    if (l->sigfd >= 0) {
        w->p[w->n] = (struct pollfd){.fd = l->sigfd, .events = POLLIN};
        w->which[w->n++] = -1;
    }
    for (int i = 0; i < l->hi; i++)
        if ((l->src[i].kind == EV_FD || l->src[i].kind == EV_PID) && l->src[i].enabled)
            order[k++] = i;
    /* In adding order (a freed slot can be reused by a later source). */
    for (int a = 1; a < k; a++)
        for (int b = a; b > 0 && l->src[order[b]].order < l->src[order[b - 1]].order; b--) {
            int t = order[b];
            order[b] = order[b - 1];
            order[b - 1] = t;
        }
    for (int i = 0; i < k; i++) {
        w->p[w->n] = (struct pollfd){.fd = l->src[order[i]].fd, .events = POLLIN};
        w->which[w->n++] = order[i];
    }
}

static int ev_wait(struct evloop *l, struct ev_wait *w, struct ps_err *err)
{
    double d = ev_timeout(l, evloop_clock_now(l));
    struct timespec ts;
    bool fake = l->opts.clock != NULL;
    int got;

    ev_fill(l, w);
    if (fake && d >= 0)
        ts = (struct timespec){0, 0};
    else if (d >= 0)
        ts = (struct timespec){.tv_sec = (time_t)d, .tv_nsec = (long)((d - floor(d)) * 1e9)};
    got = ppoll(w->p, w->n, d >= 0 || fake ? &ts : NULL, NULL);
    if (fake && d < 0 && got == 0)
        got = ppoll(w->p, w->n, NULL, NULL); /* injected clock, no timer: wait for an fd */
    if (got < 0 && errno != EINTR)
        return ps_err_set(err, -errno, "waiting for events failed: %s", strerror(errno));
    if (got <= 0)
        w->n = 0;
    if (got == 0 && fake && d > 0 && l->opts.clock->sleep)
        l->opts.clock->sleep(l->opts.clock->arg, d);
    return 0;
}

static int ev_dispatch_fds(struct evloop *l, const struct ev_wait *w, struct ps_err *err)
{
    int rc = 0;

    for (nfds_t i = 0; i < w->n && rc == 0 && l->end == EVLOOP_END_NONE; i++) {
        struct ev_source *s;
        unsigned ev = (unsigned)w->p[i].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL);

        if (!ev)
            continue;
        if (w->which[i] < 0) {
            rc = ev_signals(l, err);
            continue;
        }
        s = ev_get(l, w->which[i]);
        if (!s || !s->enabled || s->fd != w->p[i].fd) /* removed by an earlier callback */
            continue;
        if (s->kind == EV_PID && !s->fn)
            evloop_stop(l, EVLOOP_END_EXITED);
        else
            rc = s->fn(s->arg, l, ev, err);
    }
    return rc;
}

/* The earliest enabled timer due by now and not fired this turn, -1 for none. */
static int ev_next_due(const struct evloop *l, double now, const bool *fired)
{
    int best = -1;

    for (int i = 0; i < l->hi; i++) {
        const struct ev_source *s = &l->src[i];

        if (s->kind != EV_TIMER || !s->enabled || s->due < 0 || s->due > now || fired[i])
            continue;
        if (best < 0 || s->due < l->src[best].due ||
            (s->due == l->src[best].due && s->order < l->src[best].order))
            best = i;
    }
    return best;
}

/* The timers due at the wake-up (now): one re-armed by an fd's callback to "at once" fires at
 * the next turn, after a wait that does not block. */
static int ev_dispatch_timers(struct evloop *l, double now, struct ps_err *err)
{
    bool fired[EVLOOP_MAX_SOURCES] = {false};
    int rc = 0;

    /* Each timer at most once a turn: one re-armed into the past waits for the next turn. */
    for (int n = 0; n < l->hi && rc == 0 && l->end == EVLOOP_END_NONE; n++) {
        int i = ev_next_due(l, now, fired);
        struct ev_source *s;

        if (i < 0)
            break;
        s = &l->src[i];
        fired[i] = true;
        s->last = s->due;
        s->due = -1; /* one-shot until re-armed */
        rc = s->fn(s->arg, l, 0, err);
    }
    return rc;
}

int evloop_run(struct evloop *l, struct ps_err *err)
{
    int rc = 0;

    l->end = EVLOOP_END_NONE;
    l->signo = 0;
    while (rc == 0 && l->end == EVLOOP_END_NONE) {
        struct ev_wait w;

        double woke;

        rc = ev_wait(l, &w, err);
        woke = evloop_clock_now(l);
        if (rc == 0)
            rc = ev_dispatch_fds(l, &w, err);
        if (rc == 0 && l->end == EVLOOP_END_NONE)
            rc = ev_dispatch_timers(l, woke, err);
        if (rc == 0 && l->end == EVLOOP_END_NONE && l->turn.fn)
            rc = l->turn.fn(l->turn.arg, l, 0, err);
    }
    return rc;
}
