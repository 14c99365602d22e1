/* SPDX-License-Identifier: MIT */
/*
 * The sampler's clock and loop (see sampler.h): every tick is due a jittered period after the
 * previous one (uniform in [1 - SAMPLER_JITTER, 1 + SAMPLER_JITTER] x the period, so that the
 * samples cannot alias with a periodic workload). A caller's event loop (the TUI) arms a timer
 * of its evloop at sampler_due and calls sampler_tick when it fires; sampler_run is an evloop
 * of its own (evloop.h): the stop signals, a pidfd (the target's exit) and timers (ticks, status
 * reports, the duration), one ppoll per tick with the due time as its timeout.
 *
 * Missed ticks (a tick that took longer than the period, or a descheduled pyscope) are counted
 * and skipped, never made up in a burst.
 *
 * Never: leaves the signal mask changed after sampler_run (the evloop restores it), or sleeps
 * without a bound.
 */
#include "sampler_int.h"

#include "pyscope/evloop.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

/* sampler_run calls on_status this often. */
#define STATUS_EVERY_S 0.25

double sampler_clock(const struct sampler *s)
{
    return evloop_clock_read(s->opts.clock);
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
    advance_due(s, s->t0);
    rc = alloc_tables(s, err);
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

double sampler_due(const struct sampler *s)
{
    return s->next_due;
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
    int rc = sampler_sample_once(s, err);

    advance_due(s, sampler_clock(s));
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
 * sampler_run's loop waits in one ppoll (evloop) on the signalfd and the pidfd, its timeout the
 * next tick's due time: one syscall per tick, and every tick still gets its own jitter
 * (computed here, free). ppoll may wake up to the thread's timer slack late (50 us by default:
 * half a 10 kHz period), so the run sets the slack to 1/RUN_SLACK_DIV of the period (at most
 * the default) for its duration and puts the old value back.
 */
#define RUN_SLACK_DIV 20

/* sampler_run's own reason to end (evloop_stop): the duration elapsed. */
#define RUN_END_DURATION EVLOOP_END_OWN

struct run {
    struct sampler *s;
    struct evloop *l;
    int tick, status;
    long slack; /* the thread's timer slack before the loop, -1 when unknown */
};

static void report(struct sampler *s)
{
    struct sampler_stats st;

    if (!s->opts.on_status)
        return;
    sampler_stats_get(s, &st);
    s->opts.on_status(s->opts.status_arg, &st);
}

/* The tick timer: sample, the owner's on_tick, then the next due time (misses counted). */
static int run_tick(void *arg, struct evloop *l, unsigned events, struct ps_err *err)
{
    struct run *r = arg;
    struct sampler *s = r->s;
    int rc = sampler_sample_once(s, err);

    (void)events;
    if (rc == 0 && s->opts.on_tick)
        rc = s->opts.on_tick(s->opts.tick_arg, err);
    advance_due(s, sampler_clock(s));
    evloop_timer_at(l, r->tick, s->next_due);
    if (rc == -PS_EGONE) {
        ps_err_clear(err);
        evloop_stop(l, EVLOOP_END_EXITED);
        return 0;
    }
    return rc;
}

static int run_status(void *arg, struct evloop *l, unsigned events, struct ps_err *err)
{
    struct run *r = arg;

    (void)events;
    (void)err;
    report(r->s);
    evloop_timer_at(l, r->status, sampler_clock(r->s) + STATUS_EVERY_S);
    return 0;
}

/* The loop and its sources: stop signals (forwarded once to opts.forward_signals), the
 * target's pidfd (best effort, Linux 5.3+: without it a failing walk detects the exit), the
 * ticks, the status reports, the duration. */
static int run_setup(struct run *r, struct ps_err *err)
{
    struct sampler *s = r->s;
    const struct evloop_opts o = {
        .signals = EVLOOP_SIG_STOP, .clock = s->opts.clock, .forward_to = s->opts.forward_signals};
    double now = sampler_clock(s);
    struct ps_err ignored = {0};
    int rc;

    r->slack = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
    if (r->slack > 0 && s->period * 1e9 / RUN_SLACK_DIV < (double)r->slack)
        (void)prctl(PR_SET_TIMERSLACK, (unsigned long)(s->period * 1e9 / RUN_SLACK_DIV) + 1, 0, 0,
                    0);
    rc = evloop_new(&o, &r->l, err);
    if (rc < 0)
        return rc;
    if (s->pid > 0 && evloop_add_pid(r->l, s->pid, NULL, NULL, &ignored) < 0)
        ps_err_clear(&ignored);
    if (s->next_due < now)
        s->next_due = now;
    rc = r->tick = evloop_add_timer(r->l, s->next_due, run_tick, r, err);
    if (rc >= 0)
        rc = r->status = evloop_add_timer(r->l, now + STATUS_EVERY_S, run_status, r, err);
    if (rc >= 0 && s->opts.duration_s > 0)
        rc = evloop_add_deadline(r->l, s->t0 + s->opts.duration_s, RUN_END_DURATION, err);
    return rc < 0 ? rc : 0;
}

static void run_teardown(struct run *r)
{
    evloop_free(r->l);
    if (r->slack > 0)
        (void)prctl(PR_SET_TIMERSLACK, (unsigned long)r->slack, 0, 0, 0);
}

int sampler_run(struct sampler *s, struct ps_err *err)
{
    struct run r = {.s = s, .tick = -1, .status = -1};
    int rc = run_setup(&r, err);

    s->stats.end = SAMPLER_END_NONE;
    if (rc == 0 && !(s->opts.duration_s > 0 && sampler_clock(s) >= s->t0 + s->opts.duration_s))
        rc = evloop_run(r.l, err);
    if (rc == 0) {
        int why = r.l ? evloop_end(r.l) : RUN_END_DURATION;

        s->stats.end = why == EVLOOP_END_SIGNAL   ? SAMPLER_END_SIGNAL
                       : why == EVLOOP_END_EXITED ? SAMPLER_END_EXITED
                                                  : SAMPLER_END_DURATION;
    }
    run_teardown(&r);
    report(s);
    return rc;
}
