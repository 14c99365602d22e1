/* SPDX-License-Identifier: MIT */
/*
 * tracer_est: the hits of the sampled threads while their counter was off (perf, disarmed,
 * between counting windows: tracer_rate.c), estimated from the windows around that time.
 * Pure arithmetic over (counted hits, window times, off times), so that a unit test can drive
 * it with recorded or synthetic sequences (tests/unit/test_tracer_est.c).
 *
 * Each stretch off is estimated at the rate of the straight line through the rates of the
 * counted window just before it and the one just after it (each placed at its middle), taken
 * at the stretch's middle: a steady rate is exact, a ramp too, and a step between two windows
 * is split between them. Until the window after it has closed, the off time is provisional,
 * at the last window's rate; the trace's end settles it so. The estimator this replaced
 * (issue 19 item 10) took the median of the last 9 window rates when a stretch ended: robust
 * to one window read high, but blind to a burst shorter than five windows and slow to follow
 * a step (five windows, seconds at high rates). The unit test shows both on the same sequences.
 *
 * Invariants: no allocation, no I/O, no clock: every time is the caller's (seconds, one
 * monotonic clock). Only the tracer thread calls in here.
 */
#include <math.h>

#include "tracer_int.h"

void tr_est_init(struct tr_est *e)
{
    *e = (struct tr_est){.rate = -1.0};
}

void tr_est_off(struct tr_est *e, double from, double to)
{
    double len = to - from;

    if (!(len > 0))
        return;
    e->pend_s += len;
    e->pend_mid_s += len * (from + to) / 2;
}

void tr_est_window(struct tr_est *e, uint64_t hits, double from, double to)
{
    double len = to - from, rate, mid, slope, before;

    if (!(len > 0))
        return;
    rate = (double)hits / len;
    mid = (from + to) / 2;
    if (e->pend_s > 0) {
        /* the line through (e->mid, e->rate) and (mid, rate), summed over the pending
         * stretches: sum(len_i * line(mid_i)) = before * S + slope * (M - e->mid * S) */
        before = e->rate >= 0 ? e->rate : rate;
        slope = e->rate >= 0 && mid > e->mid ? (rate - before) / (mid - e->mid) : 0.0;
        e->settled += fmax(0.0, before * e->pend_s + slope * (e->pend_mid_s - e->mid * e->pend_s));
        e->pend_s = e->pend_mid_s = 0;
    }
    e->rate = rate;
    e->mid = mid;
}

double tr_est_hits(const struct tr_est *e, double fallback_rate)
{
    double rate = e->rate >= 0 ? e->rate : fallback_rate;

    return e->settled + (rate > 0 ? rate * e->pend_s : 0.0);
}
