/* SPDX-License-Identifier: MIT */
/*
 * _Py_DebugOffsets (debugoffsets.c through pyproc_open_source) against the recorded 3.13 fixture
 * (tests/fixtures/3.13/shapes.*, scripts/record-fixtures): the real struct agrees with the
 * table; a patched slot is preferred and reported; the same bytes presented as an unknown minor
 * (meta and debug-offsets version patched to 3.15) still decode the target's own stacks from the
 * debug offsets plus the 3.13 table; a free-threaded flag, a broken cookie or an implausible
 * group refuse an unknown minor and only warn for a known one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pyscope/collect.h"
#include "pyscope/debugoffsets.h"
#include "pyscope/memsrc.h"
#include "pyscope/pyproc.h"

#include "../../src/cpython/debugoffsets_tables.h" /* generated: the 3.13 slots */

/* Byte positions in the 3.13 struct, from the generated layout the parser uses (gen-layouts
 * checks it against 3.13's .PyRuntime; CPYTHON.md section 1): the header, then 8-byte slots. */
#define POS_VERSION       (sizeof(DEBUGOFFSETS_COOKIE) - 1)
#define POS_FREE_THREADED (POS_VERSION + 8)
#define POS_RUNTIME_SIZE  slot_pos("runtime_state.size")
#define POS_INTERP_SIZE   slot_pos("interpreter_state.size")
#define POS_CODE_ARGCOUNT slot_pos("code_object.argcount")

#define VERSION_3_15 0x030f00f0u

static size_t slot_pos(const char *slot)
{
    size_t n = sizeof(debugoffsets_slots_3_13) / sizeof(debugoffsets_slots_3_13[0]);

    for (size_t i = 0; i < n; i++)
        if (strcmp(debugoffsets_slots_3_13[i], slot) == 0)
            return DEBUGOFFSETS_HEADER + 8 * i;
    fail_msg("no slot %s in the 3.13 layout", slot);
    return 0;
}

struct patch {
    size_t pos;
    uint64_t value;
    bool set;
};

static void fixture_paths(char *mem, size_t cap)
{
    (void)snprintf(mem, cap, "%s/tests/fixtures/3.13/shapes.mem", PYSCOPE_SOURCE_DIR);
}

static void load_meta(struct locate_info *loc)
{
    char mem[512], meta[600];
    struct ps_err err = {0};

    fixture_paths(mem, sizeof(mem));
    (void)snprintf(meta, sizeof(meta), "%s.meta", mem);
    assert_int_equal(pyproc_meta_read(meta, loc, &err), 0);
    assert_int_equal(loc->version_hex >> 16, 0x030d);
}

/* Present the fixture as Python 3.15.0 (meta side). */
static void as_3_15(struct locate_info *loc)
{
    loc->version_hex = VERSION_3_15;
    (void)snprintf(loc->version, sizeof(loc->version), "3.15.0");
}

/* Open the fixture with up to two 8-byte patches of the debug offsets; returns the open rc. */
static int open_patched(const struct locate_info *loc, const struct patch *p, size_t np,
                        struct pyproc **pp, struct ps_err *err)
{
    char mem[512];
    struct memsrc *src = NULL;
    int rc;

    fixture_paths(mem, sizeof(mem));
    assert_int_equal(memsrc_fixture_open(mem, &src, err), 0);
    for (size_t i = 0; i < np; i++)
        if (p[i].set)
            assert_int_equal(memsrc_fixture_add(src, loc->syms.runtime + p[i].pos, &p[i].value,
                                                sizeof(p[i].value), err),
                             0);
    rc = pyproc_open_source(src, loc, pp, err);
    if (rc < 0) {
        assert_true(err->msg[0] != '\0');
        memsrc_close(src);
    }
    return rc;
}

static void test_real_struct_agrees(void **state)
{
    struct locate_info loc;
    struct ps_err err = {0};
    struct pyproc *pp = NULL;

    (void)state;
    load_meta(&loc);
    assert_int_equal(open_patched(&loc, NULL, 0, &pp, &err), 0);
    assert_string_equal(pp->warning, "");
    assert_false(pp->table_standin);
    assert_memory_equal(pp->lay, pp->table, sizeof(*pp->lay));
    pyproc_close(pp);
}

static void test_disagreement_prefers_target(void **state)
{
    struct patch p[] = {{POS_CODE_ARGCOUNT, 56, true}};
    struct locate_info loc;
    struct ps_err err = {0};
    struct pyproc *pp = NULL;

    (void)state;
    load_meta(&loc);
    assert_int_equal(open_patched(&loc, p, 1, &pp, &err), 0);
    assert_int_equal(pp->lay->code_argcount, 56);
    assert_int_equal(pp->table->code_argcount, 52);
    assert_non_null(strstr(pp->warning, "disagree"));
    assert_non_null(strstr(pp->warning, "code_argcount: target 56, table 52"));
    pyproc_close(pp);
}

/* The snapshot of the 3.15-presented fixture equals the 3.13 one, frame by frame. */
static void compare_snaps(const struct snap *a, const struct snap *b)
{
    size_t frames = 0;

    assert_int_equal(a->nthreads, b->nthreads);
    for (size_t t = 0; t < a->nthreads; t++) {
        const struct snap_thread *x = &a->threads[t], *y = &b->threads[t];

        assert_int_equal(x->native_id, y->native_id);
        assert_int_equal(x->status, SNAP_THREAD_OK);
        assert_int_equal(y->status, SNAP_THREAD_OK);
        assert_int_equal(x->nframes, y->nframes);
        for (size_t f = 0; f < x->nframes; f++) {
            assert_string_equal(x->frames[f].qualname, y->frames[f].qualname);
            assert_string_equal(x->frames[f].file, y->frames[f].file);
            assert_int_equal(x->frames[f].line, y->frames[f].line);
        }
        frames += x->nframes;
    }
    assert_true(frames >= 10); /* shapes.py parks several threads with real stacks */
}

static struct snap *snapshot(struct pyproc *pp)
{
    struct collect_opts co = {.retries = 2};
    struct ps_err err = {0};
    struct snap *s = NULL;

    assert_int_equal(collect_snapshot(pp, &co, &s, &err), 0);
    return s;
}

static void test_unknown_minor_decodes(void **state)
{
    struct patch p[] = {{POS_VERSION, VERSION_3_15, true}};
    struct locate_info loc, loc15;
    struct ps_err err = {0};
    struct pyproc *known = NULL, *unknown = NULL;
    struct snap *a, *b;

    (void)state;
    load_meta(&loc);
    loc15 = loc;
    as_3_15(&loc15);
    assert_int_equal(open_patched(&loc, NULL, 0, &known, &err), 0);
    if (open_patched(&loc15, p, 1, &unknown, &err) != 0)
        fail_msg("3.15 with debug offsets did not open: %s", err.msg);
    assert_true(unknown->table_standin);
    assert_string_equal(unknown->table->name, "3.13");
    assert_non_null(strstr(unknown->warning, "3.15.0 is newer"));
    assert_non_null(strstr(unknown->warning, "assumed: "));
    a = snapshot(known);
    b = snapshot(unknown);
    compare_snaps(a, b);
    snap_free(a);
    snap_free(b);
    pyproc_close(known);
    pyproc_close(unknown);
}

/* Without the debug-offsets version patched, Py_Version (3.15) and the struct (3.13) disagree. */
static void test_unknown_minor_refusals(void **state)
{
    const struct patch cases[][2] = {
        {{POS_VERSION, 0, false}, {0, 0, false}},                          /* version mismatch */
        {{POS_VERSION, VERSION_3_15, true}, {POS_FREE_THREADED, 1, true}}, /* 3.15t */
        {{POS_VERSION, VERSION_3_15, true}, {0, 0x6f6f6f6f6f6f6f6full, true}}, /* cookie */
        {{POS_VERSION, VERSION_3_15, true}, {POS_INTERP_SIZE, 0, true}},       /* implausible */
        {{POS_VERSION, VERSION_3_15, true}, {POS_RUNTIME_SIZE, 4096, true}},   /* size */
    };
    struct locate_info loc;

    (void)state;
    load_meta(&loc);
    as_3_15(&loc);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct ps_err err = {0};
        struct pyproc *pp = NULL;

        if (open_patched(&loc, cases[i], 2, &pp, &err) != -PS_EVERSION)
            fail_msg("case %zu: an unusable 3.15 opened or failed otherwise: %s", i, err.msg);
        assert_non_null(strstr(err.msg, "3.15"));
    }
}

/* A known minor with a broken cookie keeps its table and says so; 3.13t is refused. */
static void test_known_minor_fallbacks(void **state)
{
    struct patch cookie[] = {{0, 0x6f6f6f6f6f6f6f6full, true}};
    struct patch ft[] = {{POS_FREE_THREADED, 1, true}};
    struct locate_info loc;
    struct ps_err err = {0};
    struct pyproc *pp = NULL;

    (void)state;
    load_meta(&loc);
    assert_int_equal(open_patched(&loc, cookie, 1, &pp, &err), 0);
    assert_non_null(strstr(pp->warning, "xdebugpy"));
    assert_memory_equal(pp->lay, pp->table, sizeof(*pp->lay));
    pyproc_close(pp);
    assert_int_equal(open_patched(&loc, ft, 1, &pp, &err), -PS_EVERSION);
    assert_non_null(strstr(err.msg, "free-threaded"));
}

/* A read failure (a fixture recorded before debug offsets were read) is a warning for 3.13. */
static void test_unreadable_keeps_table(void **state)
{
    char mem[512];
    struct locate_info loc;
    struct ps_err err = {0};
    struct memsrc *src = NULL, *faulty = NULL;
    struct pyproc *pp = NULL;

    (void)state;
    load_meta(&loc);
    fixture_paths(mem, sizeof(mem));
    assert_int_equal(memsrc_fixture_open(mem, &src, &err), 0);
    /* Fail the first range read: the debug offsets are the first thing read after locate. */
    assert_int_equal(memsrc_faulty_wrap(src, MEMSRC_FAULT_FAIL, 1, 0, 0, &faulty, &err), 0);
    assert_int_equal(pyproc_open_source(faulty, &loc, &pp, &err), 0);
    assert_non_null(strstr(pp->warning, "could not be used"));
    assert_memory_equal(pp->lay, pp->table, sizeof(*pp->lay));
    pyproc_close(pp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_struct_agrees),
        cmocka_unit_test(test_disagreement_prefers_target),
        cmocka_unit_test(test_unknown_minor_decodes),
        cmocka_unit_test(test_unknown_minor_refusals),
        cmocka_unit_test(test_known_minor_fallbacks),
        cmocka_unit_test(test_unreadable_keeps_table),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
