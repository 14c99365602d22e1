/* SPDX-License-Identifier: MIT */
/*
 * tracer_rate: how much the exception tracer may cost the target (tracer.h "Rate control").
 * A token bucket (tracer_bucket_*) pays for each reported raise; a stop that finds it empty
 * only sets want_disarm, and tracer_step then turns the stopping breakpoint off (tr_disarm),
 * never during a stop; it turns it on again once the bucket holds TRACER_REARM_TOKENS
 * (tr_maybe_rearm). Arming and disarming happen only between stops, from the tracer thread:
 * perf toggles its events while the threads run, debug registers need every thread stopped.
 * While disarmed, hits are counted, exactly or in sampled windows (TR_COUNT_*), so the stats can
 * say how many raises went unseen. Between close hits the loop's wait busy-polls instead of
 * sleeping (tracer_timeout_ms, TR_SPIN_*).
 *
 * Invariants: only the tracer thread calls in here; nothing is allocated; the counter is on
 * before the stopping breakpoint is re-armed, so no hit goes uncounted.
 */
#include "pyscope/tracer.h"

#include <errno.h>
#include <math.h>
#include <time.h>

#include "pyscope/bkpt.h"
#include "pyscope/target.h"
#include "tracer_int.h"

/* Counting (perf): the non-stopping counter is on while the stopping breakpoint is armed (they
 * share one debug exception per hit, so it is free) and, while rate-limited off, all the time
 * as long as the hit rate keeps its cost under TR_COUNT_BUDGET of the target's time (the cost
 * of one counted hit is measured at start: bkpt_count_cost_us; ~10 us in a KVM guest, where
 * the count stays exact up to ~2000 hits/s). Above that rate the counter runs TR_COUNT_WINDOW_S
 * of every TR_COUNT_PERIOD_S (2%) and the rest is estimated from the window's rate. */
#define TR_COUNT_PERIOD_S  0.1
#define TR_COUNT_WINDOW_S  0.002
#define TR_COUNT_BUDGET    0.02
#define TR_COUNT_FULL_RATE 1000.0 /* exact-counting limit when the cost could not be measured */
/* Busy-waiting between close hits (tracer_timeout_ms): a stop that finds us asleep must wake
 * our CPU first, which in a VM whose idle vCPUs halt costs the target ~40 us per raise (10k
 * raises/s unlimited: ~100 -> ~60 us each, scripts/bench-exceptions). So while hits come less
 * than TR_SPIN_GAP_S apart on average, the wait after a hit polls without sleeping for up to
 * twice that gap (at most TR_SPIN_GAP_S). Slower hits never spin; neither does a rate-limited
 * trace between its bursts: the spinning is bounded by the stopped raises themselves. */
#define TR_SPIN_GAP_S 0.0005
#define TR_SPIN_EWMA  0.2 /* weight of the newest gap in the running mean */

/* ---- time, bucket ------------------------------------------------------------------------- */

double tr_mono(void)
{
    struct timespec t;

    (void)clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

void tracer_bucket_init(struct tracer_bucket *b, double rate, double burst, double now)
{
    b->rate = rate;
    b->burst = burst;
    b->tokens = burst;
    b->last = now;
}

double tracer_bucket_level(struct tracer_bucket *b, double now)
{
    if (b->rate < 0)
        return b->burst;
    if (now > b->last) {
        b->tokens = fmin(b->burst, b->tokens + (now - b->last) * b->rate);
        b->last = now;
    }
    return b->tokens;
}

bool tracer_bucket_take(struct tracer_bucket *b, double now)
{
    if (b->rate < 0)
        return true;
    if (tracer_bucket_level(b, now) < 1.0)
        return false;
    b->tokens -= 1.0;
    return true;
}

/* ---- counting, arming ------------------------------------------------------------------- */

void tr_rate_init(struct tracer *t)
{
    const struct tracer_opts *opts = &t->opts;

    tracer_bucket_init(&t->bucket, opts->max_rate == 0 ? TRACER_DEFAULT_RATE : opts->max_rate,
                       opts->burst ? opts->burst : TRACER_DEFAULT_BURST, tr_mono());
    t->count_cost_us = opts->force_mech == TRACER_MECH_DEBUGREG ? -1.0 : bkpt_count_cost_us();
    t->count_max_rate = opts->exact_count        ? (double)INFINITY
                        : t->count_cost_us > 0.0 ? TR_COUNT_BUDGET / (t->count_cost_us * 1e-6)
                                                 : TR_COUNT_FULL_RATE;
}

/* Turn the counter on or off at now, accounting its on-time in the current period. */
static void tr_counter(struct tracer *t, bool on, double now)
{
    if (on == t->cnt_on)
        return;
    if (on)
        t->cnt_on_at = now;
    else
        t->period_on_s += now - t->cnt_on_at;
    bkpt_count_enable(t->bp, on);
    t->cnt_on = on;
}

/* Start a counting period at now with the counter on (for the period, or a window). */
static void tr_period_begin(struct tracer *t, double now)
{
    bool exact = false;

    t->period_start = now;
    t->period_on_s = 0;
    t->count_at_period = bkpt_count(t->bp, &exact);
    if (t->cnt_on)
        t->cnt_on_at = now;
    tr_counter(t, true, now);
}

void tr_period_end(struct tracer *t, double now)
{
    bool exact = false;
    double len = now - t->period_start, n;

    if (t->cnt_on) {
        t->period_on_s += now - t->cnt_on_at;
        t->cnt_on_at = now;
    }
    n = (double)(bkpt_count(t->bp, &exact) - t->count_at_period);
    if (t->period_on_s > 0)
        t->last_rate = n / t->period_on_s;
    if (len > 0 && t->period_on_s < len - 1e-6) {
        t->est_extra += t->last_rate * (len - t->period_on_s);
        t->estimated = true;
    }
    t->sampling = t->last_rate > t->count_max_rate;
}

void tr_count_tick(struct tracer *t, double now)
{
    if (t->disarmed_at == 0 || bkpt_mechanism(t->bp) != BKPT_PERF)
        return;
    if (t->cnt_on && t->sampling && now - t->cnt_on_at >= TR_COUNT_WINDOW_S)
        tr_counter(t, false, now);
    if (now - t->period_start >= TR_COUNT_PERIOD_S) {
        tr_period_end(t, now);
        tr_period_begin(t, now);
    }
}

/* Arm or disarm the stopping breakpoint now, outside any stop: perf toggles its events while
 * the threads run; debug registers need every thread stopped (CPYTHON.md 5.3). */
static int tr_arm(struct tracer *t, bool on, struct ps_err *err)
{
    int rc;

    if (bkpt_mechanism(t->bp) == BKPT_PERF)
        return bkpt_arm(t->bp, on, err);
    rc = target_stop_all(err);
    if (rc == 0)
        rc = bkpt_arm(t->bp, on, err);
    if (target_resume_all(err) < 0 && rc == 0)
        rc = err->code;
    return rc;
}

void tr_disarm(struct tracer *t)
{
    struct ps_err ignored = {0};
    bool exact = false;
    double now;

    t->want_disarm = false;
    if (!bkpt_armed(t->bp) || tr_arm(t, false, &ignored) < 0)
        return;
    now = tr_mono();
    t->disarmed_at = now;
    t->st.disarms++;
    for (size_t i = 0; i < TR_MAX_OPEN; i++)
        if (t->open[i].tid)
            t->open[i].blind = true;
    if (bkpt_mechanism(t->bp) != BKPT_PERF)
        return;
    if (now > t->armed_at) /* the rate while armed picks the first period's mode */
        t->last_rate = (double)(bkpt_count(t->bp, &exact) - t->count_at_arm) / (now - t->armed_at);
    t->sampling = t->last_rate > t->count_max_rate;
    tr_period_begin(t, now);
}

void tr_maybe_rearm(struct tracer *t, double now)
{
    struct ps_err ignored = {0};
    bool perf = bkpt_mechanism(t->bp) == BKPT_PERF, exact = false;

    if (t->disarmed_at == 0 || tracer_bucket_level(&t->bucket, now) < TRACER_REARM_TOKENS)
        return;
    if (perf) {
        tr_period_end(t, now);
        tr_counter(t, true, now);
    }
    if (tr_arm(t, true, &ignored) < 0)
        return;
    t->armed_at = now;
    t->count_at_arm = perf ? bkpt_count(t->bp, &exact) : 0;
    t->st.disarmed_seconds += now - t->disarmed_at;
    t->disarmed_at = 0;
}

int tracer_enable(struct tracer *t, bool on, struct ps_err *err)
{
    if (t->stopped)
        return ps_err_set(err, -EINVAL, "the trace has ended");
    return tr_arm(t, on, err);
}

/* ---- the loop's wait ------------------------------------------------------------------- */

void tr_spin_note_hit(struct tracer *t, double now)
{
    if (t->last_hit_at > 0)
        t->gap_mean = t->gap_mean > 0
                          ? (1 - TR_SPIN_EWMA) * t->gap_mean + TR_SPIN_EWMA * (now - t->last_hit_at)
                          : now - t->last_hit_at;
    t->last_hit_at = now;
}

int tracer_timeout_ms(const struct tracer *t)
{
    double left = 0.1, now = tr_mono();

    if (t->gap_mean > 0 && t->gap_mean < TR_SPIN_GAP_S &&
        now - t->last_hit_at < fmin(2 * t->gap_mean, TR_SPIN_GAP_S))
        return 0;
    if (t->disarmed_at != 0 && t->cnt_on && t->sampling)
        left = TR_COUNT_WINDOW_S - (now - t->cnt_on_at);
    return left <= 0 ? 0 : (int)(left * 1000.0) + 1;
}
