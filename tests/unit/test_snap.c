/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for the snapshot arena and its UTF-8 sanitising copy (src/base/snap.c). The expected
 * replacements were produced by CPython's bytes.decode("utf-8", "replace"), the policy snap.c
 * promises to follow (one U+FFFD per maximal subpart).
 */
#include <setjmp.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "pyscope/snap.h"

#define R "\xef\xbf\xbd" /* U+FFFD */

struct utf8_case {
    const char *in;
    size_t len;
    const char *want;
};

static int setup_snap(void **state)
{
    struct snap *s = NULL;
    struct ps_err err = {0};

    if (snap_new(&s, &err) != 0)
        return -1;
    *state = s;
    return 0;
}

static int teardown_snap(void **state)
{
    snap_free(*state);
    return 0;
}

static void test_new_is_empty(void **state)
{
    struct snap *s = *state;

    assert_non_null(s->arena);
    assert_int_equal(s->nthreads, 0);
    assert_null(s->threads);
    assert_string_equal(s->python_version, "");
    snap_free(NULL);
}

static void test_strndup_keeps_valid_utf8(void **state)
{
    static const char *const valid[] = {"",
                                        "MainThread",
                                        "na\xc3\xafve",
                                        "\xe2\x9c\x93 ok",
                                        "\xf0\x9f\x98\x80",
                                        "\xf4\x8f\xbf\xbf",
                                        "\xed\x9f\xbf"};
    struct snap *s = *state;

    for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
        const char *copy = snap_strdup(s, valid[i]);
        assert_non_null(copy);
        assert_ptr_not_equal(copy, valid[i]);
        assert_string_equal(copy, valid[i]);
    }
}

static void test_strndup_replaces_invalid_utf8(void **state)
{
    static const struct utf8_case cases[] = {
        {"\xff", 1, R},
        {"a\x80"
         "b",
         3, "a" R "b"},
        {"\xc0\xaf", 2, R R},             /* overlong '/' */
        {"\xe0\x80\xaf", 3, R R R},       /* overlong, 3 bytes */
        {"\xed\xa0\x80", 3, R R R},       /* surrogate U+D800 */
        {"\xf4\x90\x80\x80", 4, R R R R}, /* past U+10FFFF */
        {"\xf0\x9f\x98", 3, R},           /* truncated 4-byte: one maximal subpart */
        {"\xe2\x82x", 3, R "x"},
        {"\xc3", 1, R},
        {"\xf5\x80", 2, R R},
        {"\xf0\x9f\x98\x80\xff\xc3\xa9", 7, "\xf0\x9f\x98\x80" R "\xc3\xa9"},
    };
    struct snap *s = *state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *copy = snap_strndup(s, cases[i].in, cases[i].len);
        assert_non_null(copy);
        assert_string_equal(copy, cases[i].want);
    }
}

static void test_strndup_bounds(void **state)
{
    struct snap *s = *state;

    assert_string_equal(snap_strndup(s, "abc\0def", 7), "abc");
    assert_string_equal(snap_strndup(s, "abcdef", 3), "abc");
    assert_string_equal(snap_strndup(s, "abcdef", 0), "");
    /* n cutting a sequence leaves an incomplete one: replaced, never read past n */
    assert_string_equal(snap_strndup(s, "\xe2\x9c\x93", 2), R);
    assert_null(snap_strdup(s, NULL));
    assert_null(snap_strndup(NULL, "x", 1));
}

static void test_alloc_zeroed_aligned(void **state)
{
    struct snap *s = *state;
    unsigned char *prev = NULL;

    for (size_t size = 0; size < 40000; size = size * 2 + 1) {
        unsigned char *p = snap_alloc(s, size);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % alignof(max_align_t), 0);
        for (size_t i = 0; i < size; i++)
            assert_int_equal(p[i], 0);
        memset(p, 0xAB, size); /* a later region overlapping this one would not read as 0 */
        assert_ptr_not_equal(p, prev);
        prev = p;
    }
}

static void test_alloc_large_and_small_interleaved(void **state)
{
    struct snap *s = *state;
    char *small1 = snap_alloc(s, 10);
    unsigned char *big = snap_alloc(s, (size_t)1 << 20);
    char *small2 = snap_alloc(s, 10);

    assert_non_null(small1);
    assert_non_null(big);
    assert_non_null(small2);
    assert_int_equal(big[0], 0);
    assert_int_equal(big[((size_t)1 << 20) - 1], 0);
    memset(big, 0xFF, (size_t)1 << 20);
    /* a big block sits beside the current block, so small ones keep filling the latter */
    assert_true(small2 > small1 && small2 < small1 + (ptrdiff_t)64 * 1024);
    assert_int_equal(small2[0], 0);
}

static void test_alloc_is_capped(void **state)
{
    struct snap *s = *state;

    assert_null(snap_alloc(s, SIZE_MAX));
    assert_null(snap_alloc(s, SIZE_MAX - 8)); /* rounding must not wrap */
    assert_null(snap_alloc(s, (size_t)300 << 20));
    assert_non_null(snap_alloc(s, (size_t)150 << 20));
    assert_null(snap_alloc(s, (size_t)150 << 20)); /* the cap is on the whole snapshot */
    assert_non_null(snap_alloc(s, 100));
    assert_null(snap_alloc(NULL, 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_new_is_empty, setup_snap, teardown_snap),
        cmocka_unit_test_setup_teardown(test_strndup_keeps_valid_utf8, setup_snap, teardown_snap),
        cmocka_unit_test_setup_teardown(test_strndup_replaces_invalid_utf8, setup_snap,
                                        teardown_snap),
        cmocka_unit_test_setup_teardown(test_strndup_bounds, setup_snap, teardown_snap),
        cmocka_unit_test_setup_teardown(test_alloc_zeroed_aligned, setup_snap, teardown_snap),
        cmocka_unit_test_setup_teardown(test_alloc_large_and_small_interleaved, setup_snap,
                                        teardown_snap),
        cmocka_unit_test_setup_teardown(test_alloc_is_capped, setup_snap, teardown_snap),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
