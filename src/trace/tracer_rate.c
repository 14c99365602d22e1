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
#include "pyscope/evloop.h"
#include "pyscope/tracer.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pyscope/bkpt.h"
#include "pyscope/target.h"
#include "tracer_int.h"

/* Counting (perf): the non-stopping counter is on while the stopping breakpoint is armed (they
 * share one debug exception per hit, so it is free). While disarmed it is on for windows of
 * TR_COUNT_WINDOW_S, as large a share of the time as its cost allows (the cost of one counted
 * hit is measured at start: bkpt_count_cost_us, ~5-10 us in a KVM guest): TR_COUNT_SHARE of
 * the budget, or TR_COUNT_BUDGET of a core without one; all the time (exact) when the last
 * window's rate allows. Between windows (jittered), the hits are estimated from the windows
 * before and after (tracer_est.c: a burst or a step is followed within a window). A
 * window is long against the scheduler's time slices: with 2 ms windows opened as pyscope woke
 * up, the target's catch-up after losing its CPU to pyscope fell inside the window and the
 * estimate ran 40% high under load (issue 19 item 10 measured 2x). Only sampled threads are
 * estimated: a pinned thread's counter is always on. */
#define TR_COUNT_WINDOW_S  0.1
#define TR_COUNT_BUDGET    0.02   /* of a core, without a budget */
#define TR_COUNT_SHARE     0.5    /* of the budget, with one */
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
                       opts->burst ? opts->burst : TRACER_DEFAULT_BURST, tr_now(t));
    t->count_cost_us = opts->force_mech == TRACER_MECH_DEBUGREG ? -1.0 : bkpt_count_cost_us();
    t->count_max_rate = opts->exact_count        ? (double)INFINITY
                        : t->count_cost_us > 0.0 ? TR_COUNT_BUDGET / (t->count_cost_us * 1e-6)
                                                 : TR_COUNT_FULL_RATE;
    t->rate_w = -1;
    tr_est_init(&t->est);
    tr_budget_init(t);
}

/* Turn the counter on or off at now (its on-time is summed for the per-thread rates). */
static void tr_counter(struct tracer *t, bool on, double now)
{
    if (on == t->cnt_on)
        return;
    if (on)
        t->cnt_on_at = now;
    else
        t->cnt_on_total += now - t->cnt_on_at;
    bkpt_count_enable(t->bp, on);
    t->cnt_on = on;
}

/* Hits counted in the sampled threads: a pinned thread's counter counts its stops too. */
static uint64_t tr_sampled_count(struct tracer *t)
{
    bool exact = false;
    uint64_t n = bkpt_count(t->bp, &exact);

    return n > t->pinned_hits ? n - t->pinned_hits : 0;
}

/* The share of the time off that the counter may run: what the budget (or TR_COUNT_BUDGET of a
 * core without one) leaves for counted hits at the last measured rate; 1 = count exactly. */
static double tr_count_frac(struct tracer *t)
{
    double share = t->budget >= 0 ? TR_COUNT_SHARE * tr_budget_refill(t) : TR_COUNT_BUDGET;

    if (t->opts.exact_count) {
        t->count_max_rate = (double)INFINITY;
        return 1.0;
    }
    t->count_max_rate =
        t->count_cost_us > 0 ? share / (t->count_cost_us * 1e-6) : TR_COUNT_FULL_RATE;
    return t->rate_w <= 0 ? 1.0 : fmin(1.0, t->count_max_rate / t->rate_w);
}

/* The counter was off since off_at: those hits are estimated from the windows around
 * (tracer_est.c). Off time happens only with a rate known (tr_count_frac counts exactly without). */
static void tr_uncounted_end(struct tracer *t, double now)
{
    if (t->off_at > 0 && now > t->off_at) {
        tr_est_off(&t->est, t->off_at, now);
        t->estimated = true;
    }
    t->off_at = 0;
}

static void tr_window_open(struct tracer *t, double now)
{
    tr_uncounted_end(t, now);
    tr_counter(t, true, now);
    /* Count, then clock, at both ends of the window: the loop's `now` is older than the
     * count when pyscope was preempted in between (a loaded machine), which inflated the rate. */
    t->win_count = tr_sampled_count(t);
    t->win_at = fmax(now, tr_now(t));
    t->win_armed = t->disarmed_at == 0;
}

/* Turn the counter off while disarmed, until the next window (jittered). */
static void tr_uncounted_begin(struct tracer *t, double now, double frac)
{
    tr_counter(t, false, now);
    t->off_at = now;
    t->next_win = now + TR_COUNT_WINDOW_S * (1.0 / frac - 1.0) * (0.5 + tr_budget_jitter(t));
}

static int tr_dbl_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/* The median of v[0..n) (1 <= n <= TR_WIN_RATES), v left as it was. */
static double tr_median(const double *v, size_t n)
{
    double tmp[TR_WIN_RATES];

    memcpy(tmp, v, n * sizeof(*v));
    qsort(tmp, n, sizeof(*tmp), tr_dbl_cmp);
    return n % 2 ? tmp[n / 2] : (tmp[n / 2 - 1] + tmp[n / 2]) / 2;
}

/* End a window: its rate (while disarmed throughout: stops slow the target), its cost (a debug
 * exception per counted hit), and whether the counter stays on (exact) or goes off. */
static void tr_window_close(struct tracer *t, double now)
{
    uint64_t n = tr_sampled_count(t) - t->win_count;
    double frac, cost = fmax(t->count_cost_us, 0.0) * 1e-6;
    double len = tr_now(t) - t->win_at, lost = (double)n * cost;

    /* Not corrected for the counting's own cost (a debug exception per hit): a raise rate
     * paced by the world (requests) does not change while counted; a loop that only raises,
     * flat out, raises several times slower while counted and is undercounted as much. */
    if (!t->win_armed && len > 0) {
        tr_est_window(&t->est, n, t->win_at, t->win_at + len);
        t->win_rates[t->nwin++ % TR_WIN_RATES] = (double)n / len;
        t->rate_w = tr_median(t->win_rates, t->nwin < TR_WIN_RATES ? t->nwin : TR_WIN_RATES);
        tr_budget_charge(t, lost);
    }
    t->win_at = 0;
    frac = tr_count_frac(t);
    if (t->disarmed_at == 0)
        return;
    if (frac >= 1.0)
        tr_window_open(t, now); /* exact: the counter stays on */
    else
        tr_uncounted_begin(t, now, frac);
}

void tr_count_tick(struct tracer *t, double now)
{
    if (bkpt_mechanism(t->bp) != BKPT_PERF)
        return;
    if (t->win_at > 0 && now - t->win_at >= TR_COUNT_WINDOW_S)
        tr_window_close(t, now);
    if (t->win_at == 0 && t->off_at > 0 && now >= t->next_win)
        tr_window_open(t, now);
}

void tr_count_end(struct tracer *t, double now)
{
    if (bkpt_mechanism(t->bp) == BKPT_PERF)
        tr_uncounted_end(t, now);
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
    double now, frac;

    t->want_disarm = false;
    if (!bkpt_armed(t->bp) || tr_arm(t, false, &ignored) < 0)
        return;
    now = tr_now(t);
    t->disarmed_at = now;
    t->st.disarms++;
    for (size_t i = 0; i < TR_MAX_OPEN; i++)
        if (t->open[i].tid && !bkpt_pinned(t->bp, t->open[i].tid))
            t->open[i].blind = true;
    if (bkpt_mechanism(t->bp) != BKPT_PERF)
        return;
    if (t->rate_w < 0 && now > t->armed_at) /* no window yet: the rate while armed */
        t->rate_w = (double)(tr_sampled_count(t) - t->count_at_arm) / (now - t->armed_at);
    if (t->win_at > 0)
        return; /* the window in progress decides at its end */
    frac = tr_count_frac(t);
    if (frac >= 1.0)
        tr_window_open(t, now);
    else
        tr_uncounted_begin(t, now, frac);
}

void tr_maybe_rearm(struct tracer *t, double now)
{
    struct ps_err ignored = {0};
    bool perf = bkpt_mechanism(t->bp) == BKPT_PERF;

    if (t->disarmed_at == 0 || tracer_bucket_level(&t->bucket, now) < TRACER_REARM_TOKENS ||
        !tr_budget_episode_due(t))
        return;
    if (perf) {
        tr_uncounted_end(t, now);
        tr_counter(t, true, now);
        t->win_armed = true;
    }
    tr_sites_cycle(t);
    if (tr_arm(t, true, &ignored) < 0)
        return;
    tr_budget_episode(t);
    t->armed_at = now;
    t->count_at_arm = perf ? tr_sampled_count(t) : 0;
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
    double left = 0.1, now = tr_now(t);

    if (t->gap_mean > 0 && t->gap_mean < TR_SPIN_GAP_S &&
        now - t->last_hit_at < fmin(2 * t->gap_mean, TR_SPIN_GAP_S))
        return 0;
    if (t->win_at > 0)
        left = fmin(left, TR_COUNT_WINDOW_S - (now - t->win_at));
    else if (t->off_at > 0)
        left = fmin(left, t->next_win - now);
    if (t->disarmed_at != 0)
        left = fmin(left, tr_budget_wait(t));
    return left <= 0 ? 0 : (int)(left * 1000.0) + 1;
}
