/* SPDX-License-Identifier: MIT */
/*
 * tracer_est unit tests: the estimate of the raises not counted while a rate-limited
 * breakpoint trace is disarmed (issue 19 item 10), on synthetic sequences where the truth is
 * known. A schedule of the shape tracer_rate.c makes (armed briefly; disarmed for an episode in
 * which 100 ms counting windows open after jittered gaps; a window still open at re-arming is
 * left out) is laid over a known raise rate: steady, a burst that starts while disarmed, a rate
 * that halves, zero, and a steady rate with every 9th window read 1.5x high (a target catching up
 * after losing its CPU, the effect the median was for). Each case compares tr_est with the
 * estimator it replaced (the median of the last 9 window rates when a stretch off ends,
 * re-implemented here as it was) against the true raises in the time off. A model, not a
 * measurement: hardware breakpoints do not fire on the machine this was written on.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../src/trace/tracer_int.h"

#define WINDOW_S 0.1 /* TR_COUNT_WINDOW_S */
#define MAX_SEGS 4096
#define SPAN_S   20.0

enum seg_kind {
    SEG_OFF,
    SEG_WINDOW
};

struct seg {
    enum seg_kind kind;
    double from, to;
};

/* The shape of a trace: armed for armed_s (counted exactly, nothing to estimate), disarmed for
 * episode_s (x 0.5-1.5 when jittered), the next window gap_s x (0.5-1.5) after the disarming or
 * the last window. */
struct regime {
    const char *name;
    double armed_s, episode_s, gap_s;
    bool jitter_episode;
};

/* --budget 0 --max-rate 50 at 20,000/s (docs/exceptions.md's measured case): re-armed when 50
 * tokens refilled (1 s); the counter may take 2% of a core at ~7 us a hit: frac 0.14, gaps 0.6 s */
static const struct regime long_episodes = {"1 s episodes", 0.003, 1.0, 0.6, false};
/* episodes about as long as the gaps: many hold no window, the off time waits for a later one */
static const struct regime short_episodes = {"short episodes", 0.001, 0.5, 0.3, true};

struct schedule {
    struct seg seg[MAX_SEGS];
    size_t n;
};

static uint32_t rng = 12345u;

static double jitter(void)
{
    rng = rng * 1664525u + 1013904223u;
    return 0.5 + (double)(rng >> 8) / (double)(1u << 24);
}

static void add(struct schedule *s, enum seg_kind kind, double from, double to)
{
    assert_true(s->n < MAX_SEGS);
    if (to > from)
        s->seg[s->n++] = (struct seg){kind, from, to};
}

static void make_schedule(struct schedule *s, const struct regime *r)
{
    double t = 0;

    rng = 12345u;
    s->n = 0;
    while (t < SPAN_S) {
        double start = t + r->armed_s;
        double end = start + r->episode_s * (r->jitter_episode ? jitter() : 1.0);
        double off_from = start, next = start + r->gap_s * jitter();

        while (next + WINDOW_S <= end) {
            add(s, SEG_OFF, off_from, next);
            add(s, SEG_WINDOW, next, next + WINDOW_S);
            off_from = next + WINDOW_S;
            next = off_from + r->gap_s * jitter();
        }
        /* a window cut by the re-arming is counted exactly but not used for a rate */
        add(s, SEG_OFF, off_from, fmin(next, end));
        t = end;
    }
}

/* A raise rate: r0 before t1, r1 from t1 to t2, r2 after. */
struct rate {
    double t1, t2, r0, r1, r2;
};

static double overlap(double a, double b, double lo, double hi)
{
    return fmax(0.0, fmin(b, hi) - fmax(a, lo));
}

static double raises(const struct rate *q, double a, double b)
{
    return q->r0 * overlap(a, b, -(double)INFINITY, q->t1) + q->r1 * overlap(a, b, q->t1, q->t2) +
           q->r2 * overlap(a, b, q->t2, (double)INFINITY);
}

/* The replaced estimator, as tracer_rate.c had it: each stretch off, when it ends, at the median
 * of the last 9 window rates (the rate while armed before any window). */
struct old_est {
    double rates[9];
    size_t n;
    double rate_w, total;
};

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static void old_window(struct old_est *o, double rate)
{
    double tmp[9];
    size_t k;

    o->rates[o->n++ % 9] = rate;
    k = o->n < 9 ? o->n : 9;
    memcpy(tmp, o->rates, k * sizeof(*tmp));
    qsort(tmp, k, sizeof(*tmp), cmp_dbl);
    o->rate_w = k % 2 ? tmp[k / 2] : (tmp[k / 2 - 1] + tmp[k / 2]) / 2;
}

struct outcome {
    double truth, old_est, new_est;
};

/* Run the schedule over the rate; every `high_every`-th window (0: none) reads 1.5x. */
static struct outcome run(const struct schedule *s, const struct rate *q, unsigned high_every)
{
    struct outcome out = {0};
    struct old_est o = {.rate_w = q->r0};
    struct tr_est e;
    unsigned windows = 0;

    tr_est_init(&e);
    for (size_t i = 0; i < s->n; i++) {
        const struct seg *g = &s->seg[i];
        double n = raises(q, g->from, g->to);
        if (g->kind == SEG_OFF) {
            out.truth += n;
            o.total += o.rate_w * (g->to - g->from);
            tr_est_off(&e, g->from, g->to);
            continue;
        }
        if (high_every && ++windows % high_every == 0)
            n *= 1.5;
        n = round(n); /* a counter counts whole hits */
        old_window(&o, n / (g->to - g->from));
        tr_est_window(&e, (uint64_t)n, g->from, g->to);
    }
    out.old_est = o.total;
    out.new_est = tr_est_hits(&e, q->r0);
    return out;
}

static double rel_err(double est, double truth)
{
    return truth > 0 ? (est - truth) / truth : est;
}

static struct schedule sched; /* large: not on the stack */

/* One case over a steady rate (no change): the errors of both estimators. */
static struct outcome run_steady(const struct regime *r, const char *what, double rate,
                                 unsigned high_every)
{
    struct rate q = {0, 0, rate, rate, rate};
    struct outcome out;

    make_schedule(&sched, r);
    out = run(&sched, &q, high_every);
    print_message("%-15s %-30s truth %8.0f  old %+6.1f%%  new %+6.1f%%\n", r->name, what, out.truth,
                  100 * rel_err(out.old_est, out.truth), 100 * rel_err(out.new_est, out.truth));
    return out;
}

struct sweep {
    double old_mean, new_mean, old_max, new_max; /* of |relative error| */
};

/* A change that begins while disarmed: q's change starts at the middle of each stretch off in
 * the middle half of the span in turn (q.t2 is given as its length; 0: it lasts). */
static struct sweep run_sweep(const struct regime *r, const char *what, struct rate q)
{
    struct sweep sw = {0};
    double len = q.t2;
    unsigned n = 0;

    make_schedule(&sched, r);
    for (size_t i = 0; i < sched.n; i++) {
        const struct seg *g = &sched.seg[i];
        struct outcome out;
        double o, e;
        if (g->kind != SEG_OFF || g->from < SPAN_S / 4 || g->to > SPAN_S * 3 / 4)
            continue;
        q.t1 = (g->from + g->to) / 2;
        q.t2 = len > 0 ? q.t1 + len : (double)INFINITY;
        out = run(&sched, &q, 0);
        o = fabs(rel_err(out.old_est, out.truth));
        e = fabs(rel_err(out.new_est, out.truth));
        sw.old_mean += o;
        sw.new_mean += e;
        sw.old_max = fmax(sw.old_max, o);
        sw.new_max = fmax(sw.new_max, e);
        n++;
    }
    assert_true(n >= 5);
    sw.old_mean /= n;
    sw.new_mean /= n;
    print_message("%-15s %-30s %2u starts: |error| old %5.1f%% mean %5.1f%% worst, new %5.1f%% "
                  "mean %5.1f%% worst\n",
                  r->name, what, n, 100 * sw.old_mean, 100 * sw.old_max, 100 * sw.new_mean,
                  100 * sw.new_max);
    return sw;
}

static const struct regime *const regimes[] = {&long_episodes, &short_episodes};

static void test_steady_rate_is_exact(void **state)
{
    (void)state;
    for (size_t i = 0; i < 2; i++) {
        struct outcome o = run_steady(regimes[i], "steady 20,000/s", 2e4, 0);
        assert_true(fabs(rel_err(o.new_est, o.truth)) < 0.001);
        assert_true(fabs(rel_err(o.old_est, o.truth)) < 0.001);
    }
}

static void test_burst_starting_while_disarmed(void **state)
{
    (void)state;
    for (size_t i = 0; i < 2; i++) {
        /* 2,000/s, then 20,000/s for 1.5 s from the middle of a stretch off, then 2,000/s */
        struct sweep sw = run_sweep(regimes[i], "burst 10x for 1.5 s, begun off",
                                    (struct rate){0, 1.5, 2e3, 2e4, 2e3});
        assert_true(sw.new_mean < 0.15 && sw.new_max < 0.35);
        assert_true(sw.new_mean < sw.old_mean / 2 && sw.new_max < sw.old_max);
    }
}

static void test_rate_that_halves(void **state)
{
    (void)state;
    for (size_t i = 0; i < 2; i++) {
        struct sweep sw = run_sweep(regimes[i], "20,000/s halving, begun off",
                                    (struct rate){0, 0, 2e4, 1e4, 1e4});
        assert_true(sw.new_mean < 0.03 && sw.new_max < 0.05);
        assert_true(sw.new_mean < sw.old_mean / 2 && sw.new_max < sw.old_max);
    }
}

static void test_zero_hits(void **state)
{
    (void)state;
    for (size_t i = 0; i < 2; i++) {
        struct outcome o = run_steady(regimes[i], "no raise", 0, 0);
        assert_true(o.truth == 0 && o.new_est == 0 && o.old_est == 0);
    }
}

/* The trade: one window in 9 read 1.5x high moves the new estimate by about its share (+5.6%);
 * the median ignored it. Bounded here so that a change of the estimator shows in this test. */
static void test_one_window_in_nine_reads_high(void **state)
{
    (void)state;
    for (size_t i = 0; i < 2; i++) {
        struct outcome o = run_steady(regimes[i], "steady, 1 window in 9 at 1.5x", 2e4, 9);
        assert_true(fabs(rel_err(o.old_est, o.truth)) < 0.001);
        assert_true(rel_err(o.new_est, o.truth) > 0.01 && rel_err(o.new_est, o.truth) < 0.08);
    }
}

/* Edge cases of the contract: nothing given, off time before any window, empty stretches. */
static void test_contract_edges(void **state)
{
    struct tr_est e;

    (void)state;
    tr_est_init(&e);
    assert_true(tr_est_hits(&e, 100.0) == 0);
    tr_est_off(&e, 1.0, 1.0); /* empty: ignored */
    tr_est_off(&e, 2.0, 1.0); /* backwards: ignored */
    assert_true(e.pend_s == 0);
    tr_est_off(&e, 0.0, 2.0);
    assert_true(fabs(tr_est_hits(&e, 100.0) - 200.0) < 1e-9); /* fallback before any window */
    assert_true(tr_est_hits(&e, -1.0) == 0);                  /* no rate known: none */
    tr_est_window(&e, 50, 2.0, 2.1);                          /* 500/s settles it */
    assert_true(fabs(tr_est_hits(&e, 100.0) - 1000.0) < 1e-6);
    tr_est_off(&e, 2.1, 3.05);
    tr_est_window(&e, 150, 3.05, 3.15); /* 1500/s: the line from 500 at 2.05 to 1500 at 3.10 */
    assert_true(fabs(tr_est_hits(&e, 0) - (1000.0 + 0.95 * 1000.0)) < 1e-6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_steady_rate_is_exact),
        cmocka_unit_test(test_burst_starting_while_disarmed),
        cmocka_unit_test(test_rate_that_halves),
        cmocka_unit_test(test_zero_hits),
        cmocka_unit_test(test_one_window_in_nine_reads_high),
        cmocka_unit_test(test_contract_edges),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
