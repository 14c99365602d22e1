/* SPDX-License-Identifier: MIT */
/*
 * tracer unit tests: the token bucket that bounds how many raises stop the target (burst, then
 * the rate, refill capped at the burst, unlimited mode), and the per-stop read memo (served
 * reads never reach the inner source; a failed prefetch keeps nothing; a thread's next stop
 * replays the ranges its last one used). The breakpoint paths need a live target:
 * tests/integration/test_exceptions.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../../src/trace/tracer_int.h"
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
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
