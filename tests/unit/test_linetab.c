/* SPDX-License-Identifier: MIT */
/*
 * linetab: ground truth from real interpreters plus malformed tables. The fixtures
 * (tests/fixtures/3.1X/linetab.txt, scripts/gen-linetab-fixtures) hold, per code object, its
 * co_firstlineno, co_linetable and co_positions(); every unit of every code object must match.
 * A fixture with fewer than MIN_CODE_OBJECTS code objects fails, so a missing or truncated file
 * cannot pass silently.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pyscope/linetab.h"

#define MIN_CODE_OBJECTS 300
#define FIXTURE_LINE_MAX (4u << 20)

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Parse hex (or "-" for empty) into a malloc'ed buffer. */
static uint8_t *parse_hex(const char *hex, size_t *len)
{
    size_t n = strcmp(hex, "-") == 0 ? 0 : strlen(hex) / 2;
    uint8_t *out = malloc(n + 1);

    assert_non_null(out);
    assert_true(n == 0 || strlen(hex) % 2 == 0);
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(hex[2 * i]);
        int lo = hexval(hex[2 * i + 1]);
        assert_true(hi >= 0 && lo >= 0);
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    *len = n;
    return out;
}

static char *next_tok(char **save)
{
    char *t = strtok_r(NULL, " \n", save);

    assert_non_null(t);
    return t;
}

/* Check one fixture line; returns the number of units compared. */
static size_t check_code_line(char *line, const char *ver)
{
    char *save = NULL;
    char *name = strtok_r(line, " \n", &save);
    int first = atoi(next_tok(&save));
    size_t len = 0;
    uint8_t *bytes = parse_hex(next_tok(&save), &len);
    long units = atol(next_tok(&save));
    long npos = atol(next_tok(&save));
    struct linetab tab = {0};
    struct ps_err err = {0};

    assert_non_null(name);
    assert_int_equal(linetab_decode(bytes, len, first, &tab, &err), 0);
    for (long i = 0; i < npos; i++) {
        struct linetab_pos want = {0};
        struct linetab_pos got = linetab_lookup(&tab, first, i);
        assert_int_equal(sscanf(next_tok(&save), "%d,%d,%d,%d", &want.line, &want.end_line,
                                &want.col, &want.end_col),
                         4);
        if (memcmp(&want, &got, sizeof(want)) != 0)
            fail_msg("%s %s unit %ld: want %d,%d,%d,%d got %d,%d,%d,%d", ver, name, i, want.line,
                     want.end_line, want.col, want.end_col, got.line, got.end_line, got.col,
                     got.end_col);
    }
    assert_true(npos <= units);
    assert_int_equal(linetab_lookup(&tab, first, npos).line, -1);
    assert_int_equal(linetab_lookup(&tab, first, -1).line, first);
    linetab_free(&tab);
    free(bytes);
    return (size_t)npos;
}

static void check_fixture(const char *ver)
{
    char path[512];
    char *line = NULL;
    size_t cap = 0;
    size_t codes = 0;
    size_t units = 0;
    FILE *f = NULL;

    (void)snprintf(path, sizeof(path), "%s/tests/fixtures/%s/linetab.txt", PYSCOPE_SOURCE_DIR, ver);
    f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open %s", path);
    while (getline(&line, &cap, f) > 0) {
        if (line[0] == '#')
            continue;
        units += check_code_line(line, ver);
        codes++;
    }
    free(line);
    (void)fclose(f);
    print_message("%s: %zu code objects, %zu units matched\n", ver, codes, units);
    assert_true(codes >= MIN_CODE_OBJECTS);
}

static void test_fixture_311(void **state)
{
    (void)state;
    check_fixture("3.11");
}

static void test_fixture_312(void **state)
{
    (void)state;
    check_fixture("3.12");
}

static void test_fixture_313(void **state)
{
    (void)state;
    check_fixture("3.13");
}

static int decode_rc(const uint8_t *b, size_t len)
{
    struct linetab tab = {0};
    struct ps_err err = {0};
    int rc = linetab_decode(b, len, 10, &tab, &err);

    if (rc < 0) {
        assert_int_equal(err.code, rc);
        assert_true(strlen(err.msg) > 0);
        assert_null(tab.ranges);
    }
    linetab_free(&tab);
    return rc;
}

#define E(form, units) ((uint8_t)(0x80 | (form) << 3 | ((units)-1)))

static void test_hand_encoded(void **state)
{
    /* form 1 short (col 8+2, width 3), form 11 (+1 line, cols 4..9), form 13 (-2 lines,
     * svarint 5 = -2), form 14 (+40 lines as 2-byte svarint 80 = 0x50,0x01; end +2; col 0,
     * end unknown), form 15 (none), form 10 same line twice (merged). */
    const uint8_t t[] = {E(1, 2), 0x23,     E(11, 1), 4, 9, E(13, 3), 5, E(14, 1), 0x50, 0x01, 2, 1,
                         0,       E(15, 2), E(10, 8), 7, 8, E(10, 1), 7, 8};
    struct linetab tab = {0};
    struct ps_err err = {0};
    struct linetab_pos p;

    (void)state;
    assert_int_equal(linetab_decode(t, sizeof(t), 100, &tab, &err), 0);
    assert_int_equal(tab.n, 6);
    p = linetab_lookup(&tab, 100, 1);
    assert_true(p.line == 100 && p.end_line == 100 && p.col == 10 && p.end_col == 13);
    p = linetab_lookup(&tab, 100, 2);
    assert_true(p.line == 101 && p.end_line == 101 && p.col == 4 && p.end_col == 9);
    p = linetab_lookup(&tab, 100, 5);
    assert_true(p.line == 99 && p.end_line == 99 && p.col == -1 && p.end_col == -1);
    p = linetab_lookup(&tab, 100, 6);
    assert_true(p.line == 139 && p.end_line == 141 && p.col == 0 && p.end_col == -1);
    p = linetab_lookup(&tab, 100, 8);
    assert_true(p.line == -1 && p.end_line == -1 && p.col == -1 && p.end_col == -1);
    p = linetab_lookup(&tab, 100, 17);
    assert_true(p.line == 139 && p.col == 7 && p.end_col == 8);
    assert_int_equal(tab.ranges[5].start, 9);
    assert_int_equal(tab.ranges[5].end, 18);
    assert_int_equal(linetab_lookup(&tab, 100, 18).line, -1);
    assert_int_equal(linetab_lookup(&tab, 100, -1).line, 100);
    assert_int_equal(linetab_lookup(&tab, 100, -1).col, -1);
    assert_int_equal(linetab_lookup(&tab, 100, -2).line, -1);
    assert_int_equal(linetab_lookup(&tab, 100, INT64_MAX).line, -1);
    assert_int_equal(linetab_lookup(NULL, 100, 0).line, -1);
    linetab_free(&tab);
    linetab_free(&tab);
    linetab_free(NULL);
}

static void test_malformed(void **state)
{
    const uint8_t no_start[] = {0x01, 0x02};
    const uint8_t trunc_varint[] = {E(13, 1), 0x41};
    const uint8_t long_varint[] = {E(13, 1), 0x41, 0x41, 0x41, 0x41, 0x41, 0x00};
    const uint8_t five_ok[] = {E(13, 1), 0x40, 0x40, 0x40, 0x40, 0x02};
    const uint8_t trunc_short[] = {E(0, 1)};
    const uint8_t trunc_long[] = {E(14, 1), 2, 1};
    const uint8_t start_in_payload[] = {E(10, 1), 3, E(0, 1), 0x11};
    const uint8_t second_no_start[] = {E(0, 1), 0x11, 0x11};
    /* Three +2^29-1 line jumps push the line past the 2^30 sanity bound. */
    const uint8_t overflow[] = {E(13, 1), 0x7e, 0x7f, 0x7f,     0x7f, 0x3f, E(13, 1), 0x7e, 0x7f,
                                0x7f,     0x7f, 0x3f, E(13, 1), 0x7e, 0x7f, 0x7f,     0x7f, 0x3f};
    struct linetab tab = {0};
    struct ps_err err = {0};

    (void)state;
    assert_int_equal(decode_rc(no_start, sizeof(no_start)), -PS_ECORRUPT);
    assert_int_equal(decode_rc(trunc_varint, sizeof(trunc_varint)), -PS_ECORRUPT);
    assert_int_equal(decode_rc(long_varint, sizeof(long_varint)), -PS_ECORRUPT);
    assert_int_equal(decode_rc(five_ok, sizeof(five_ok)), 0);
    assert_int_equal(decode_rc(trunc_short, sizeof(trunc_short)), -PS_ECORRUPT);
    assert_int_equal(decode_rc(trunc_long, sizeof(trunc_long)), -PS_ECORRUPT);
    assert_int_equal(decode_rc(start_in_payload, sizeof(start_in_payload)), -PS_ECORRUPT);
    assert_int_equal(decode_rc(second_no_start, sizeof(second_no_start)), -PS_ECORRUPT);
    assert_int_equal(decode_rc(overflow, sizeof(overflow)), -PS_ECORRUPT);
    assert_int_equal(decode_rc(no_start, (size_t)LINETAB_MAX_ENTRIES * 16 + 1), -PS_ELIMIT);

    /* Empty table: no ranges; unit -1 still maps to co_firstlineno. */
    assert_int_equal(linetab_decode(no_start, 0, 7, &tab, &err), 0);
    assert_int_equal(tab.n, 0);
    assert_null(tab.ranges);
    assert_int_equal(linetab_lookup(&tab, 7, -1).line, 7);
    assert_int_equal(linetab_lookup(&tab, 7, 0).line, -1);
    assert_int_equal(linetab_lookup(&tab, 7, 0).col, -1);
}

static void test_entry_cap(void **state)
{
    size_t n = (size_t)LINETAB_MAX_ENTRIES + 1;
    uint8_t *t = malloc(n);

    (void)state;
    assert_non_null(t);
    memset(t, E(15, 1), n);
    assert_int_equal(decode_rc(t, n - 1), 0);
    assert_int_equal(decode_rc(t, n), -PS_ELIMIT);
    free(t);
}

/* Random bytes: decoding fails cleanly or yields contiguous ranges from unit 0. */
static void test_garbage(void **state)
{
    uint64_t x = 0x9e3779b97f4a7c15u;
    uint8_t buf[64];

    (void)state;
    for (int round = 0; round < 20000; round++) {
        struct linetab tab = {0};
        struct ps_err err = {0};
        size_t len = (size_t)(round % (int)sizeof(buf));
        for (size_t i = 0; i < len; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf[i] = (uint8_t)(i == 0 || x % 3 == 0 ? (x | 0x80) : (x & 0x7f));
        }
        if (linetab_decode(buf, len, 1, &tab, &err) != 0)
            continue;
        for (size_t i = 0; i < tab.n; i++) {
            assert_int_equal(tab.ranges[i].start, i ? tab.ranges[i - 1].end : 0);
            assert_true(tab.ranges[i].end > tab.ranges[i].start);
        }
        linetab_free(&tab);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_311), cmocka_unit_test(test_fixture_312),
        cmocka_unit_test(test_fixture_313), cmocka_unit_test(test_hand_encoded),
        cmocka_unit_test(test_malformed),   cmocka_unit_test(test_entry_cap),
        cmocka_unit_test(test_garbage),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
