/* SPDX-License-Identifier: MIT */
/*
 * Growth: the least-squares rate on exact, gappy and degenerate series; the scan and samples
 * replayed from recorded fixtures (tests/fixtures/<minor>/growth.*, made by
 * scripts/record-growth-fixtures from tests/targets/growth.py, whose truth holds each stable
 * container's len() and sys.getsizeof()); then the same scan and samples under the faulty source
 * (each read in turn failing, zeroed, garbled): an error with a message or a bounded table,
 * never a crash (this binary also runs under ASan+UBSan).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "fixture.h"
#include "pyscope/growth.h"
#include "pyscope/memsrc.h"
#include "pyscope/pyproc.h"

static const char *const minors[] = TEST_MINORS;

/* ---- rates --------------------------------------------------------------------------------- */

static void test_slope_exact_line(void **state)
{
    double t[10];
    int64_t v[10];

    (void)state;
    for (int i = 0; i < 10; i++) {
        t[i] = 100.0 + 0.5 * i;
        v[i] = 7 + 3 * i; /* 6 items per second */
    }
    assert_float_equal(growth_slope(t, v, 10), 6.0, 1e-9);
}

static void test_slope_skips_missing_points(void **state)
{
    double t[6] = {0, 1, 2, 3, 4, 5};
    int64_t v[6] = {10, -1, 30, -1, -1, 60};

    (void)state;
    assert_float_equal(growth_slope(t, v, 6), 10.0, 1e-9);
}

static void test_slope_degenerate(void **state)
{
    double t[3] = {1, 1, 1};
    int64_t v[3] = {5, 9, 2};
    int64_t gaps[3] = {-1, 4, -1};

    (void)state;
    assert_float_equal(growth_slope(t, v, 0), 0.0, 0);
    assert_float_equal(growth_slope(t, v, 1), 0.0, 0);
    assert_float_equal(growth_slope(t, v, 3), 0.0, 0); /* all at one time */
    t[2] = 2;
    assert_float_equal(growth_slope(t, gaps, 3), 0.0, 0); /* one real point */
    v[0] = v[1] = v[2] = 42;
    t[0] = 0;
    assert_float_equal(growth_slope(t, v, 3), 0.0, 0); /* stable */
}

static void test_slope_symmetric_noise(void **state)
{
    /* residuals +1, -1, -1, +1 around 2t + 100: orthogonal to t, so the slope stays 2 */
    double t[4] = {0, 1, 2, 3};
    int64_t v[4] = {101, 101, 103, 107};

    (void)state;
    assert_float_equal(growth_slope(t, v, 4), 2.0, 1e-9);
}

/* ---- fixtures ------------------------------------------------------------------------------ */

/* Recorded fixture "growth" of a minor (support/fixture.h). */
static void load_fixture(const char *minor, struct test_fixture *fx)
{
    test_fixture_load(minor, "growth", fx);
}

/* Open the fixture behind a faulty wrapper (nth 0: count only). Returns the open rc. */
static int open_fixture(const struct test_fixture *fx, enum memsrc_fault fault, uint64_t nth,
                        uint64_t seed, struct pyproc **pp, struct memsrc **faulty)
{
    struct ps_err err = {0};
    struct memsrc *src = NULL;
    int rc;

    assert_int_equal(memsrc_fixture_open(fx->mem, &src, &err), 0);
    assert_int_equal(memsrc_faulty_wrap(src, fault, nth, 0, seed, faulty, &err), 0);
    rc = pyproc_open_source(*faulty, &fx->loc, pp, &err);
    if (rc < 0) {
        assert_true(err.msg[0] != '\0');
        memsrc_close(*faulty);
    }
    return rc;
}

/* Scan, then two samples one second apart. */
static int watch(struct pyproc *pp, struct growth **g, struct ps_err *err)
{
    struct growth_opts o = {.history = 8};
    int rc = growth_new(pp, &o, g, err);

    if (rc == 0)
        rc = growth_scan(*g, err);
    if (rc == 0)
        rc = growth_sample(*g, 10.0, err);
    if (rc == 0)
        rc = growth_sample(*g, 11.0, err);
    return rc;
}

static bool find_row(const struct growth *g, const char *name, struct growth_row *row)
{
    for (size_t i = 0; growth_row(g, i, row); i++)
        if (strcmp(row->name, name) == 0)
            return true;
    return false;
}

static void check_stable(const struct growth *g, const char *name, json_t *want)
{
    struct growth_row r;
    json_t *sizeof_ = json_object_get(want, "sizeof");

    if (!find_row(g, name, &r))
        fail_msg("%s not found by the scan", name);
    assert_string_equal(r.type_name, json_string_value(json_object_get(want, "type")));
    assert_int_equal(r.length, json_integer_value(json_object_get(want, "length")));
    if (sizeof_)
        assert_int_equal(r.size, json_integer_value(sizeof_));
    assert_false(r.gone);
    assert_int_equal(r.points, 2);
    assert_float_equal(r.rate_per_min, 0.0, 0);
}

static void test_replay_matches_truth(void **state)
{
    (void)state;
    for (size_t m = 0; m < sizeof(minors) / sizeof(minors[0]); m++) {
        struct test_fixture fx = {0};
        struct ps_err err = {0};
        struct pyproc *pp = NULL;
        struct memsrc *faulty = NULL;
        struct growth *g = NULL;
        struct growth_row r;
        const char *name;
        json_t *want;
        double t[8];
        int64_t len[8];

        load_fixture(minors[m], &fx);
        assert_int_equal(open_fixture(&fx, MEMSRC_FAULT_FAIL, 0, 0, &pp, &faulty), 0);
        assert_int_equal(watch(pp, &g, &err), 0);
        json_object_foreach(json_object_get(fx.truth, "stable"), name, want)
            check_stable(g, name, want);
        assert_true(find_row(g, "__main__.LEAK", &r));
        assert_int_equal(r.length, 0);
        assert_int_equal(growth_stats(g)->torn, 0);
        assert_int_equal(growth_history(g, 0, t, len, 8), 2);
        assert_float_equal(t[0], 10.0, 0);
        assert_float_equal(t[1], 11.0, 0);
        growth_free(g);
        pyproc_close(pp);
        test_fixture_free(&fx);
    }
}

/* One faulty run: an error with a message, or a table within its caps. */
static void run_faulty(const struct test_fixture *fx, enum memsrc_fault fault, uint64_t nth)
{
    struct ps_err err = {0};
    struct pyproc *pp = NULL;
    struct memsrc *faulty = NULL;
    struct growth *g = NULL;
    struct growth_row r;
    int rc;

    if (open_fixture(fx, fault, nth, nth * 7919, &pp, &faulty) < 0)
        return;
    rc = watch(pp, &g, &err);
    if (rc < 0)
        assert_true(err.msg[0] != '\0');
    for (size_t i = 0; g && growth_row(g, i, &r); i++) {
        assert_true(strlen(r.name) < GROWTH_NAME_MAX);
        assert_true(r.length >= -1);
        assert_true(r.points <= 2);
    }
    assert_true(!g || growth_count(g) <= GROWTH_DEFAULT_MAX_CONTAINERS);
    growth_free(g);
    pyproc_close(pp);
}

static uint64_t count_ranges(const struct test_fixture *fx)
{
    struct ps_err err = {0};
    struct pyproc *pp = NULL;
    struct memsrc *faulty = NULL;
    struct growth *g = NULL;
    uint64_t n;

    assert_int_equal(open_fixture(fx, MEMSRC_FAULT_FAIL, 0, 0, &pp, &faulty), 0);
    assert_int_equal(watch(pp, &g, &err), 0);
    n = memsrc_faulty_count(faulty);
    growth_free(g);
    pyproc_close(pp);
    return n;
}

/* About this many faulty runs per kind and version: every read early on (open, sys.modules),
 * then a stride through the rest, which keeps the binary under a few seconds with ASan. */
#define SWEEP_POINTS 40

static void test_fault_sweep(void **state)
{
    (void)state;
    for (size_t m = 0; m < sizeof(minors) / sizeof(minors[0]); m++) {
        struct test_fixture fx = {0};
        uint64_t n, stride;

        load_fixture(minors[m], &fx);
        n = count_ranges(&fx);
        assert_true(n > 100);
        stride = n / SWEEP_POINTS + 1;
        for (uint64_t i = 1; i <= n; i += i < 16 ? 1 : stride) {
            run_faulty(&fx, MEMSRC_FAULT_FAIL, i);
            run_faulty(&fx, MEMSRC_FAULT_ZERO, i);
            run_faulty(&fx, MEMSRC_FAULT_GARBLE, i);
        }
        test_fixture_free(&fx);
    }
}

/* Options out of range are refused with -EINVAL and a message; nothing is returned. */
static void test_options_are_checked(void **state)
{
    struct test_fixture fx = {0};
    struct ps_err err = {0};
    struct pyproc *pp = NULL;
    struct memsrc *faulty = NULL;
    struct growth *g = NULL;
    struct growth_opts bad = {.history = 1};

    (void)state;
    load_fixture("3.12", &fx);
    assert_int_equal(open_fixture(&fx, MEMSRC_FAULT_FAIL, 0, 0, &pp, &faulty), 0);
    assert_int_equal(growth_new(pp, &bad, &g, &err), -EINVAL);
    assert_null(g);
    assert_true(err.msg[0] != '\0');
    pyproc_close(pp);
    test_fixture_free(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slope_exact_line),
        cmocka_unit_test(test_slope_skips_missing_points),
        cmocka_unit_test(test_slope_degenerate),
        cmocka_unit_test(test_slope_symmetric_noise),
        cmocka_unit_test(test_replay_matches_truth),
        cmocka_unit_test(test_options_are_checked),
        cmocka_unit_test(test_fault_sweep),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
