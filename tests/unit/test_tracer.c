/* SPDX-License-Identifier: MIT */
/*
 * tracer unit tests: the token bucket that bounds how many raises stop the target (burst, then
 * the rate, refill capped at the burst, unlimited mode), and the per-stop read memo (served
 * reads never reach the inner source; a failed prefetch keeps nothing; a thread's next stop
 * replays the ranges its last one used), and the tracer's schedule on an injected clock
 * (tracer_opts.clock: its bucket and its waits follow a virtual clock, never the machine's).
 * The breakpoint paths need a live target: tests/integration/test_exceptions.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../src/trace/tracer_int.h"
#include "pyscope/evloop.h"
#include "pyscope/tracer.h"

static int take_n(struct tracer_bucket *b, int n, double now)
{
    int got = 0;

    for (int i = 0; i < n; i++)
        got += tracer_bucket_take(b, now);
    return got;
}

static void test_burst_then_empty(void **state)
{
    struct tracer_bucket b;

    (void)state;
    tracer_bucket_init(&b, 100.0, 500.0, 10.0);
    assert_int_equal(take_n(&b, 600, 10.0), 500);
    assert_false(tracer_bucket_take(&b, 10.0));
}

static void test_refill_at_rate(void **state)
{
    struct tracer_bucket b;

    (void)state;
    tracer_bucket_init(&b, 100.0, 500.0, 0.0);
    assert_int_equal(take_n(&b, 500, 0.0), 500);
    /* 0.25 s at 100/s: 25 tokens */
    assert_int_equal(take_n(&b, 100, 0.25), 25);
    assert_true(tracer_bucket_level(&b, 0.25) < 1.0);
}

static void test_refill_capped_at_burst(void **state)
{
    struct tracer_bucket b;

    (void)state;
    tracer_bucket_init(&b, 100.0, 50.0, 0.0);
    assert_int_equal(take_n(&b, 50, 0.0), 50);
    assert_true(tracer_bucket_level(&b, 3600.0) <= 50.0);
    assert_int_equal(take_n(&b, 100, 3600.0), 50);
}

static void test_time_going_back_adds_nothing(void **state)
{
    struct tracer_bucket b;

    (void)state;
    tracer_bucket_init(&b, 100.0, 10.0, 5.0);
    assert_int_equal(take_n(&b, 10, 5.0), 10);
    assert_false(tracer_bucket_take(&b, 4.0));
}

static void test_unlimited(void **state)
{
    struct tracer_bucket b;

    (void)state;
    tracer_bucket_init(&b, -1.0, 10.0, 0.0);
    assert_int_equal(take_n(&b, 10000, 0.0), 10000);
}

/* A fixture with two mapped ranges, wrapped by a memo. */
static void memo_setup(struct memsrc **inner, struct memsrc **memo)
{
    struct ps_err err = {0};
    uint8_t a[256], b[64];

    for (size_t i = 0; i < sizeof(a); i++)
        a[i] = (uint8_t)i;
    memset(b, 0xab, sizeof(b));
    assert_int_equal(memsrc_fixture_new(inner, &err), 0);
    assert_int_equal(memsrc_fixture_add(*inner, 0x1000, a, sizeof(a), &err), 0);
    assert_int_equal(memsrc_fixture_add(*inner, 0x9000, b, sizeof(b), &err), 0);
    assert_int_equal(tr_memo_new(*inner, memo, &err), 0);
}

static void test_memo_serves_prefetched_ranges(void **state)
{
    struct memsrc *inner, *memo;
    struct ps_err err = {0};
    struct memsrc_iov iov[2] = {{.addr = 0x1000, .len = 128}, {.addr = 0x9000, .len = 64}};
    uint8_t buf[16];
    uint64_t calls;

    (void)state;
    memo_setup(&inner, &memo);
    tr_memo_begin(memo, 42);
    tr_memo_prefetch(memo, iov, 2);
    calls = inner->stats.calls;
    assert_int_equal(calls, 1); /* one scatter read for both */
    assert_int_equal(memsrc_read(memo, 0x1010, buf, sizeof(buf), &err), 0);
    assert_int_equal(buf[0], 0x10);
    assert_int_equal(memsrc_read(memo, 0x9030, buf, sizeof(buf), &err), 0);
    assert_int_equal(buf[15], 0xab);
    assert_int_equal(inner->stats.calls, calls); /* served from the memo */
    /* past the prefetched part: read from the source, then kept */
    assert_int_equal(memsrc_read(memo, 0x1078, buf, sizeof(buf), &err), 0);
    assert_int_equal(buf[15], 0x87);
    assert_int_equal(inner->stats.calls, calls + 1);
    assert_int_equal(memsrc_read(memo, 0x1078, buf, sizeof(buf), &err), 0);
    assert_int_equal(inner->stats.calls, calls + 1);
    tr_memo_free(memo);
    memsrc_close(inner);
}

static void test_memo_failed_prefetch_keeps_nothing(void **state)
{
    struct memsrc *inner, *memo;
    struct ps_err err = {0};
    struct memsrc_iov iov[2] = {{.addr = 0x1000, .len = 16}, {.addr = 0x5000, .len = 8}};
    uint8_t buf[8];

    (void)state;
    memo_setup(&inner, &memo);
    tr_memo_begin(memo, 42);
    tr_memo_prefetch(memo, iov, 2); /* 0x5000 is unmapped: the whole read fails */
    assert_int_equal(memsrc_read(memo, 0x1000, buf, sizeof(buf), &err), 0);
    assert_int_equal(inner->stats.calls, 2); /* not kept: read again */
    assert_true(memsrc_read(memo, 0x5000, buf, sizeof(buf), &err) < 0);
    tr_memo_free(memo);
    memsrc_close(inner);
}

static void test_memo_replays_the_last_stop(void **state)
{
    struct memsrc *inner, *memo;
    struct ps_err err = {0};
    uint8_t buf[8];
    uint64_t calls;

    (void)state;
    memo_setup(&inner, &memo);
    tr_memo_begin(memo, 42);
    assert_int_equal(memsrc_read(memo, 0x1020, buf, sizeof(buf), &err), 0);
    assert_int_equal(memsrc_read(memo, 0x9000, buf, sizeof(buf), &err), 0);
    tr_memo_end(memo, 42);
    calls = inner->stats.calls;
    tr_memo_begin(memo, 42); /* one scatter read of both ranges */
    assert_int_equal(inner->stats.calls, calls + 1);
    assert_int_equal(memsrc_read(memo, 0x1020, buf, sizeof(buf), &err), 0);
    assert_int_equal(buf[0], 0x20);
    assert_int_equal(memsrc_read(memo, 0x9000, buf, sizeof(buf), &err), 0);
    assert_int_equal(inner->stats.calls, calls + 1);
    tr_memo_end(memo, 42);
    tr_memo_begin(memo, 7); /* another thread: nothing to replay */
    assert_int_equal(inner->stats.calls, calls + 1);
    tr_memo_free(memo);
    memsrc_close(inner);
}

/* A virtual clock: it reads *arg, and only the test moves it. */
static double virtual_now(void *arg)
{
    return *(const double *)arg;
}

/*
 * The tracer reads time only through tracer_opts.clock: its bucket is filled at the virtual
 * start (5 s, which the machine's monotonic clock is long past), refills by virtual seconds
 * only, and its loop's waits (a counting window's end, the spin after close hits) are measured
 * on the virtual clock. With the real clock read anywhere, the bucket's start, the refill and
 * the waits would all be off by the machine's uptime.
 */
static void test_schedule_runs_on_an_injected_clock(void **state)
{
    double now = 5.0;
    const struct evloop_clock clk = {.now = virtual_now, .arg = &now};
    struct tracer *t = calloc(1, sizeof(*t));
    int ms;

    (void)state;
    assert_non_null(t);
    t->opts = (struct tracer_opts){
        .max_rate = 10, .burst = 2, .force_mech = TRACER_MECH_DEBUGREG, .clock = &clk};
    tr_rate_init(t);
    assert_true(t->bucket.last == 5.0); /* filled at the virtual start */
    assert_int_equal(take_n(&t->bucket, 3, tr_now(t)), 2);
    now += 0.15; /* 1.5 tokens at 10/s, virtual */
    assert_int_equal(take_n(&t->bucket, 2, tr_now(t)), 1);
    assert_int_equal(tracer_timeout_ms(t), 101); /* quiet: the 100 ms wait */
    t->win_at = now;                             /* a counting window opened */
    now += 0.03;
    ms = tracer_timeout_ms(t); /* its end, 70 ms on */
    assert_true(ms >= 70 && ms <= 71);
    t->win_at = 0;
    tr_spin_note_hit(t, now);
    now += 0.0001;
    tr_spin_note_hit(t, now); /* hits 100 us apart: spin after them */
    assert_int_equal(tracer_timeout_ms(t), 0);
    now += 1.0; /* a second of silence: sleep again */
    assert_int_equal(tracer_timeout_ms(t), 101);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_then_empty),
        cmocka_unit_test(test_refill_at_rate),
        cmocka_unit_test(test_refill_capped_at_burst),
        cmocka_unit_test(test_time_going_back_adds_nothing),
        cmocka_unit_test(test_unlimited),
        cmocka_unit_test(test_memo_serves_prefetched_ranges),
        cmocka_unit_test(test_memo_failed_prefetch_keeps_nothing),
        cmocka_unit_test(test_memo_replays_the_last_stop),
        cmocka_unit_test(test_schedule_runs_on_an_injected_clock),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
