/* SPDX-License-Identifier: MIT */
/*
 * The sampler's clock and loop (see sampler.h): every tick is due a jittered period after the
 * previous one (uniform in [1 - SAMPLER_JITTER, 1 + SAMPLER_JITTER] x the period, so that the
 * samples cannot alias with a periodic workload). For a caller's event loop (sampler_fd /
 * sampler_tick) a one-shot absolute timerfd is re-armed after every tick; sampler_run's own
 * loop instead waits in ppoll over a signalfd (SIGINT/SIGTERM/SIGHUP) and a pidfd (the target's
 * exit) with the due time as its timeout, which saves two syscalls per tick.
 *
 * Missed ticks (a tick that took longer than the period, or a descheduled pyscope) are counted
 * and skipped, never made up in a burst.
 *
 * Never: leaves the signal mask changed after sampler_run, or sleeps without a bound.
 */
#include "sampler_int.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

/* sampler_run calls on_status this often. */
#define STATUS_EVERY_S 0.25

double sampler_now(void)
{
    struct timespec t;

    (void)clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

double sampler_clock(const struct sampler *s)
{
    return s->opts.clock ? s->opts.clock(s->opts.clock_arg) : sampler_now();
}

double sampler_wall(void)
{
    struct timespec t;

    (void)clock_gettime(CLOCK_REALTIME, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* xorshift64*: the jitter needs no quality, only independence from the target's period. */
static double jitter(struct sampler *s)
{
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return 1.0 + SAMPLER_JITTER * (2.0 * (double)((s->rng * 0x2545f4914f6cdd1dull) >> 11) /
                                       (double)(1ull << 53) -
                                   1.0);
}

/* Move next_due to the next tick after now (a jittered period on), counting missed ticks. */
static void advance_due(struct sampler *s, double now)
{
    s->next_due += s->period * jitter(s);
    if (s->next_due <= now) {
        uint64_t missed = (uint64_t)((now - s->next_due) / s->period) + 1;

        s->stats.missed_ticks += missed;
        s->next_due += (double)missed * s->period;
    }
}

/* Arm the timer for the next tick after now, counting the ticks that were missed. */
static int arm(struct sampler *s, double now, struct ps_err *err)
{
    struct itimerspec it = {0};

    advance_due(s, now);
    it.it_value.tv_sec = (time_t)s->next_due;
    it.it_value.tv_nsec = (long)((s->next_due - floor(s->next_due)) * 1e9);
    if (timerfd_settime(s->tfd, TFD_TIMER_ABSTIME, &it, NULL) < 0)
        return ps_err_set(err, -errno, "cannot arm the sampling timer: %s", strerror(errno));
    return 0;
}

static bool rate_ok(double hz)
{
    return hz >= 1.0 && hz <= SAMPLER_MAX_RATE;
}

static int alloc_tables(struct sampler *s, struct ps_err *err)
{
    s->threads = calloc(WALK_MAX_THREADS, sizeof(*s->threads));
    s->old = calloc(WALK_MAX_THREADS, sizeof(*s->old));
    s->ts = calloc(WALK_MAX_THREADS, sizeof(*s->ts));
    s->winterps = calloc(WALK_MAX_INTERPS, sizeof(*s->winterps));
    s->ids = calloc(WALK_MAX_DEPTH + 1, sizeof(*s->ids));
    s->loc = calloc(SAMPLER_LOC_CACHE, sizeof(*s->loc));
    s->pfx = calloc(SAMPLER_PREFIX_SLOTS, sizeof(*s->pfx));
    if (s->opts.tasks && !(s->tasks = calloc(SAMPLER_TASKS_MAX, sizeof(*s->tasks))))
        return ps_err_set(err, -ENOMEM, "out of memory creating the sampler");
    if (s->opts.native && !s->opts.blocking)
        return ps_err_set(err, -EINVAL, "native stacks need the threads stopped (--blocking)");
    if (!s->threads || !s->old || !s->ts || !s->winterps || !s->ids || !s->loc || !s->pfx)
        return ps_err_set(err, -ENOMEM, "out of memory creating the sampler");
    if (s->opts.native && s->pp) {
        int rc = sampler_native_open(s, err);

        if (rc < 0)
            return rc;
    }
    if (walk_stack_init(&s->st_prev, err) < 0)
        return -ENOMEM;
    return walk_stack_init(&s->st, err);
}

int sampler_new(struct pyproc *pp, struct profile *p, const struct sampler_opts *opts,
                struct sampler **out, struct ps_err *err)
{
    struct sampler *s;
    double hz = opts->rate_hz > 0 ? opts->rate_hz : SAMPLER_DEFAULT_RATE;
    int rc;

    if (!rate_ok(hz))
        return ps_err_set(err, -EINVAL, "the sampling rate must be between 1 and %d Hz",
                          SAMPLER_MAX_RATE);
    if (!pp && opts->clock_pid <= 0)
        return ps_err_set(err, -EINVAL, "a sampler needs a Python process or a pid to follow");
    s = calloc(1, sizeof(*s));
    if (!s)
        return ps_err_set(err, -ENOMEM, "out of memory creating the sampler");
    s->pp = pp;
    s->pid = pp ? pp->pid : opts->clock_pid;
    s->prof = p;
    s->opts = *opts;
    s->opts.thread = NULL;
    s->opts.process_frame = NULL;
    if (opts->thread)
        (void)snprintf(s->thread_filter, sizeof(s->thread_filter), "%s", opts->thread);
    if (opts->process_frame)
        (void)snprintf(s->process_frame, sizeof(s->process_frame), "%s", opts->process_frame);
    s->period = 1.0 / hz;
    s->t0 = s->next_due = sampler_clock(s);
    s->rng = (uint64_t)(s->t0 * 1e9) ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ull;
    s->generation = profile_generation(p);
    s->truncated_frame = PROFILE_NONE;
    s->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    rc = s->tfd < 0
             ? ps_err_set(err, -errno, "cannot create the sampling timer: %s", strerror(errno))
             : alloc_tables(s, err);
    if (rc == 0)
        rc = arm(s, s->t0, err);
    if (rc < 0) {
        sampler_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void sampler_free(struct sampler *s)
{
    if (!s)
        return;
    if (s->tfd >= 0)
        (void)close(s->tfd);
    walk_stack_free(&s->st);
    walk_stack_free(&s->st_prev);
    free(s->tasks);
    sampler_native_close(s);
    free(s->pfx);
    free(s->loc);
    free(s->ids);
    free(s->winterps);
    free(s->ts);
    free(s->old);
    free(s->threads);
    free(s);
}

int sampler_fd(const struct sampler *s)
{
    return s->tfd;
}

int sampler_set_rate(struct sampler *s, double rate_hz, struct ps_err *err)
{
    if (!rate_ok(rate_hz))
        return ps_err_set(err, -EINVAL, "the sampling rate must be between 1 and %d Hz",
                          SAMPLER_MAX_RATE);
    s->period = 1.0 / rate_hz;
    return 0;
}

int sampler_tick(struct sampler *s, struct ps_err *err)
{
    uint64_t expirations = 0;
    int rc;

    if (read(s->tfd, &expirations, sizeof(expirations)) != (ssize_t)sizeof(expirations))
        return errno == EAGAIN || errno == EINTR
                   ? 0
                   : ps_err_set(err, -errno, "cannot read the sampling timer: %s", strerror(errno));
    rc = sampler_sample_once(s, err);
    if (rc == 0)
        rc = arm(s, sampler_clock(s), err);
    return rc;
}

void sampler_lost_words(const struct sampler_stats *st, char *buf, size_t cap)
{
    uint64_t lost = st->torn + st->errors;
    double pct = lost ? 100.0 * (double)lost / (double)(st->samples + lost) : 0;
    char share[16];

    if (!lost) {
        (void)snprintf(buf, cap, "no samples lost");
        return;
    }
    if (pct < 0.1)
        (void)snprintf(share, sizeof(share), "<0.1%%");
    else
        (void)snprintf(share, sizeof(share), pct >= 10 ? "%.0f%%" : "%.1f%%", pct);
    if (!st->errors)
        (void)snprintf(buf, cap, "%s of samples lost: stacks changed while read", share);
    else if (!st->torn)
        (void)snprintf(buf, cap, "%s of samples lost: reads failed", share);
    else
        (void)snprintf(buf, cap,
                       "%s of samples lost: %llu stacks changed while read, %llu reads failed",
                       share, (unsigned long long)st->torn, (unsigned long long)st->errors);
}

void sampler_stats_get(const struct sampler *s, struct sampler_stats *out)
{
    *out = s->stats;
    out->elapsed = sampler_clock(s) - s->t0;
    out->rate = out->elapsed > 0 ? (double)s->stats.ticks / out->elapsed : 0;
}

/* ---- the blocking loop ------------------------------------------------------------------- */

/*
 * sampler_run waits with ppoll on the signalfd and the pidfd, its timeout the next tick's due
 * time, instead of polling the timerfd: one syscall per tick instead of three (poll, the
 * timer's read, its jittered re-arm), and every tick still gets its own jitter (computed here,
 * free). ppoll may wake up to the thread's timer slack late (50 us by default: half a 10 kHz
 * period), so the loop sets the slack to 1/RUN_SLACK_DIV of the period (at most the default)
 * for its duration and puts the old value back.
 */
#define RUN_SLACK_DIV 20

struct run_fds {
    int sig, pid;
    sigset_t old;
    bool masked;
    long slack; /* the thread's timer slack before the loop, -1 when unknown */
};

static int run_setup(struct sampler *s, struct run_fds *r, struct ps_err *err)
{
    sigset_t set;

    r->sig = r->pid = -1;
    r->slack = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
    if (r->slack > 0 && s->period * 1e9 / RUN_SLACK_DIV < (double)r->slack)
        (void)prctl(PR_SET_TIMERSLACK, (unsigned long)(s->period * 1e9 / RUN_SLACK_DIV) + 1, 0, 0,
                    0);
    (void)sigemptyset(&set);
    (void)sigaddset(&set, SIGINT);
    (void)sigaddset(&set, SIGTERM);
    (void)sigaddset(&set, SIGHUP);
    (void)sigaddset(&set, SIGQUIT);
    if (sigprocmask(SIG_BLOCK, &set, &r->old) < 0)
        return ps_err_set(err, -errno, "cannot block signals: %s", strerror(errno));
    r->masked = true;
    r->sig = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (r->sig < 0)
        return ps_err_set(err, -errno, "cannot create a signalfd: %s", strerror(errno));
#ifdef SYS_pidfd_open
    /* Best effort (Linux 5.3+); without it a failing walk detects the exit. */
    if (s->pid > 0)
        r->pid = (int)syscall(SYS_pidfd_open, s->pid, 0);
#endif
    return 0;
}

static void run_teardown(struct run_fds *r)
{
    if (r->pid >= 0)
        (void)close(r->pid);
    if (r->sig >= 0)
        (void)close(r->sig);
    if (r->masked)
        (void)sigprocmask(SIG_SETMASK, &r->old, NULL);
    if (r->slack > 0)
        (void)prctl(PR_SET_TIMERSLACK, (unsigned long)r->slack, 0, 0, 0);
}

/* A signal arrived: forward it once to our child, else end. Returns true to end. */
static bool on_signal(struct sampler *s, int fd, bool *forwarded)
{
    struct signalfd_siginfo si;

    if (read(fd, &si, sizeof(si)) != (ssize_t)sizeof(si))
        return false;
    if (s->opts.forward_signals > 0 && !*forwarded) {
        /* A terminal's Ctrl-C (SI_KERNEL) already reached the child's process group. */
        *forwarded = true;
        if (si.ssi_code != SI_KERNEL)
            (void)kill(s->opts.forward_signals, (int)si.ssi_signo);
        return false;
    }
    return true;
}

/* How long to wait from now: until the next tick, status report or the end of the duration. */
static struct timespec wait_for(const struct sampler *s, double now, double next_status)
{
    double until = next_status < s->next_due ? next_status : s->next_due, d;
    struct timespec ts;

    if (s->opts.duration_s > 0 && s->t0 + s->opts.duration_s < until)
        until = s->t0 + s->opts.duration_s;
    d = until > now ? until - now : 0;
    ts.tv_sec = (time_t)d;
    ts.tv_nsec = (long)((d - floor(d)) * 1e9);
    return ts;
}

static void report(struct sampler *s)
{
    struct sampler_stats st;

    if (!s->opts.on_status)
        return;
    sampler_stats_get(s, &st);
    s->opts.on_status(s->opts.status_arg, &st);
}

/* Wait for the next event; end the run on a signal or the target's exit. */
static int run_wait(struct sampler *s, struct run_fds *r, double next_status, bool *forwarded,
                    struct ps_err *err)
{
    struct pollfd fds[2] = {{.fd = r->sig, .events = POLLIN}, {.fd = r->pid, .events = POLLIN}};
    struct timespec ts = wait_for(s, sampler_clock(s), next_status);
    int got = ppoll(fds, 2, &ts, NULL);

    if (got < 0 && errno != EINTR)
        return ps_err_set(err, -errno, "poll failed: %s", strerror(errno));
    if (got <= 0)
        return 0;
    if ((fds[0].revents & POLLIN) && on_signal(s, r->sig, forwarded))
        s->stats.end = SAMPLER_END_SIGNAL;
    else if (fds[1].revents & POLLIN)
        s->stats.end = SAMPLER_END_EXITED;
    return 0;
}

int sampler_run(struct sampler *s, struct ps_err *err)
{
    struct run_fds r;
    bool forwarded = false;
    double now = sampler_clock(s), next_status = now + STATUS_EVERY_S;
    int rc = run_setup(s, &r, err);

    s->stats.end = SAMPLER_END_NONE;
    if (s->next_due < now)
        s->next_due = now;
    while (rc == 0 && s->stats.end == SAMPLER_END_NONE) {
        rc = run_wait(s, &r, next_status, &forwarded, err);
        now = sampler_clock(s);
        if (rc == 0 && s->stats.end == SAMPLER_END_NONE && now >= s->next_due) {
            rc = sampler_sample_once(s, err);
            if (rc == 0 && s->opts.on_tick)
                rc = s->opts.on_tick(s->opts.tick_arg, err);
            now = sampler_clock(s);
            advance_due(s, now);
        }
        if (rc == -PS_EGONE) {
            rc = 0;
            s->stats.end = SAMPLER_END_EXITED;
        }
        if (s->opts.duration_s > 0 && now >= s->t0 + s->opts.duration_s &&
            s->stats.end == SAMPLER_END_NONE)
            s->stats.end = SAMPLER_END_DURATION;
        if (now >= next_status) {
            report(s);
            next_status = now + STATUS_EVERY_S;
        }
    }
    run_teardown(&r);
    report(s);
    return rc;
}
