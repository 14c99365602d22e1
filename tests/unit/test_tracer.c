/* SPDX-License-Identifier: MIT */
/*
 * tracer unit tests: the token bucket that bounds how many raises stop the target (burst, then
 * the rate, refill capped at the burst, unlimited mode). The breakpoint paths need a live
 * target: tests/integration/test_exceptions.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_then_empty),
        cmocka_unit_test(test_refill_at_rate),
        cmocka_unit_test(test_refill_capped_at_burst),
        cmocka_unit_test(test_time_going_back_adds_nothing),
        cmocka_unit_test(test_unlimited),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
