/* SPDX-License-Identifier: MIT */
/*
 * Frame variables and bounded reprs (locals.c, locals_repr.c) against recorded fixtures
 * (tests/fixtures/<minor>/locals.*, scripts/record-fixtures from tests/targets/locals.py, whose
 * truth is each parked frame's own frame.f_locals): replayed snapshots must match the truth;
 * then every read of the variables of the two richest frames fails, is garbled or zeroed in
 * turn (faulty memory source): locals_frame must return an error or vars within their caps
 * (valid kinds, bounded reprs), never crash (this binary also runs under ASan+UBSan).
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

#include "fixture.h"
#include "pyscope/collect.h"
#include "pyscope/locals.h"
#include "pyscope/memsrc.h"
#include "pyscope/pyproc.h"
#include "pyscope/walk.h"

static const char *const minors[] = TEST_MINORS;
static const char *const reproduced[] = {"NoneType", "bool",  "int",  "float", "str",
                                         "bytes",    "tuple", "list", "dict",  "set"};

/* Recorded fixture "locals" of a minor (support/fixture.h). */
static void load_fixture(const char *minor, struct test_fixture *fx)
{
    test_fixture_load(minor, "locals", fx);
}

static struct pyproc *open_fixture(const struct test_fixture *fx)
{
    struct ps_err err = {0};
    struct memsrc *src = NULL;
    struct pyproc *pp = NULL;

    assert_int_equal(memsrc_fixture_open(fx->mem, &src, &err), 0);
    if (pyproc_open_source(src, &fx->loc, &pp, &err) < 0)
        fail_msg("%s: %s", fx->mem, err.msg);
    return pp;
}

static bool is_reproduced(const char *type)
{
    for (size_t i = 0; i < sizeof(reproduced) / sizeof(reproduced[0]); i++)
        if (strcmp(type, reproduced[i]) == 0)
            return true;
    return false;
}

/* Exact, or cut at "..." with the text before it a prefix of Python's repr. */
static void check_var(const char *where, const struct snap_var *v, const json_t *truth)
{
    const char *type = json_string_value(json_object_get(truth, "type"));
    const char *want = json_string_value(json_object_get(truth, "repr"));
    const char *cut;

    if (v->unreadable || !v->repr)
        fail_msg("%s: unreadable", where);
    assert_true(strlen(v->repr) < LOCALS_REPR_MAX);
    if (!type || !want || !is_reproduced(type)) {
        assert_true(v->repr[0] == '<' && strstr(v->repr, " at 0x"));
        return;
    }
    assert_string_equal(v->type, type);
    cut = strstr(v->repr, "...");
    if (!cut) {
        if (strcmp(v->repr, want) != 0)
            fail_msg("%s: %s != %s", where, v->repr, want);
    } else if (strncmp(v->repr, want, (size_t)(cut - v->repr)) != 0) {
        fail_msg("%s: %s is not a prefix of %.200s", where, v->repr, want);
    }
}

/* Variables of one frame against the truth's f_locals (same names, same reprs). */
static size_t check_frame(const char *minor, const json_t *tf, const struct snap_frame *sf)
{
    const json_t *locals = json_object_get(tf, "locals");
    char where[256];

    assert_string_equal(sf->qualname, json_string_value(json_object_get(tf, "qualname")));
    assert_non_null(sf->vars);
    assert_int_equal(sf->nvars, json_object_size(locals));
    for (size_t i = 0; i < sf->nvars; i++) {
        const json_t *t = json_object_get(locals, sf->vars[i].name);

        (void)snprintf(where, sizeof(where), "%s %s.%s", minor, sf->qualname, sf->vars[i].name);
        if (!t)
            fail_msg("%s: not in f_locals", where);
        check_var(where, &sf->vars[i], t);
    }
    return sf->nvars;
}

static const struct snap_thread *find_thread(const struct snap *s, json_int_t native)
{
    for (size_t i = 0; i < s->nthreads; i++)
        if (s->threads[i].native_id == native)
            return &s->threads[i];
    fail_msg("thread %lld missing", (long long)native);
    return NULL;
}

static void test_replay_matches_f_locals(void **state)
{
    (void)state;
    for (size_t m = 0; m < sizeof(minors) / sizeof(minors[0]); m++) {
        struct collect_opts co = {.retries = 2, .locals = true};
        struct test_fixture fx = {0};
        struct ps_err err = {0};
        struct snap *s = NULL;
        struct pyproc *pp;
        const json_t *tt;
        size_t i, checked = 0;

        load_fixture(minors[m], &fx);
        pp = open_fixture(&fx);
        assert_int_equal(collect_snapshot(pp, &co, &s, &err), 0);
        json_array_foreach(json_object_get(fx.truth, "threads"), i, tt)
        {
            const struct snap_thread *st =
                find_thread(s, json_integer_value(json_object_get(tt, "native_id")));
            const json_t *frames = json_object_get(tt, "frames");

            assert_int_equal(st->nframes, json_array_size(frames));
            for (size_t f = 0; f < st->nframes; f++)
                checked += check_frame(minors[m], json_array_get(frames, f), &st->frames[f]);
        }
        assert_true(checked >= 60);
        snap_free(s);
        pyproc_close(pp);
        test_fixture_free(&fx);
    }
}

/* The frames of the thread named `name` (walker frames, innermost first). */
static void find_frames(struct pyproc *pp, json_int_t native, struct walk_stack *st)
{
    struct walk_tstate *ts = calloc(WALK_MAX_THREADS, sizeof(*ts));
    struct ps_err err = {0};
    size_t n = 0, ni = 0;
    bool found = false;
    const struct pyctx c = pyproc_ctx(pp);

    assert_non_null(ts);
    assert_int_equal(walk_tstates(&c, ts, WALK_MAX_THREADS, &n, NULL, &ni, &err), 0);
    for (size_t i = 0; i < n && !found; i++) {
        if (ts[i].native_id != (pid_t)native)
            continue;
        assert_int_equal(walk_stack(&c, ts[i].addr, st, &err), 0);
        found = true;
    }
    free(ts);
    assert_true(found);
}

static void check_bounds(const struct snap_frame *sf)
{
    static const char *const kinds[] = {"arg", "local", "cell", "free"};

    assert_true(sf->nvars <= LOCALS_MAX_VARS);
    for (size_t i = 0; i < sf->nvars; i++) {
        const struct snap_var *v = &sf->vars[i];
        bool kind_ok = false;

        for (size_t k = 0; k < 4; k++)
            kind_ok = kind_ok || (v->kind && strcmp(v->kind, kinds[k]) == 0);
        assert_true(kind_ok);
        assert_non_null(v->name);
        if (v->repr)
            assert_true(strlen(v->repr) < LOCALS_REPR_MAX);
        assert_true(v->unreadable == (v->repr == NULL));
    }
}

/* locals_frame of one frame through a fresh faulty source; returns the ranges it read. */
static uint64_t run_faulty(const struct test_fixture *fx, struct pyproc *pp,
                           const struct walk_frame *wf, int fault, uint64_t nth)
{
    struct ps_err err = {0};
    struct memsrc *src = NULL, *faulty = NULL;
    struct pyctx c = pyproc_ctx(pp);
    struct snap_frame sf = {0};
    struct snap *s = NULL;
    uint64_t ranges;

    assert_int_equal(memsrc_fixture_open(fx->mem, &src, &err), 0);
    assert_int_equal(
        memsrc_faulty_wrap(src, (enum memsrc_fault)fault, nth, 0, nth * 7919, &faulty, &err), 0);
    assert_int_equal(snap_new(&s, &err), 0);
    c.src = faulty;
    if (locals_frame(&c, wf->frame_addr, wf->code_addr, s, &sf, &err) == 0)
        check_bounds(&sf);
    else
        assert_true(err.msg[0] != '\0');
    ranges = memsrc_faulty_count(faulty);
    snap_free(s);
    memsrc_close(faulty);
    return ranges;
}

/* Every read of the scalars and containers frames failing, garbled, zeroed in turn. */
static void test_fault_sweep(void **state)
{
    struct test_fixture fx = {0};
    struct walk_stack st = {0};
    struct ps_err err = {0};
    struct pyproc *pp;
    const json_t *tt;
    size_t i, swept = 0;

    (void)state;
    load_fixture("3.12", &fx);
    pp = open_fixture(&fx);
    assert_int_equal(walk_stack_init(&st, &err), 0);
    json_array_foreach(json_object_get(fx.truth, "threads"), i, tt)
    {
        const char *name = json_string_value(json_object_get(tt, "name"));
        uint64_t total;

        if (strcmp(name, "locals-closure") == 0)
            continue;
        find_frames(pp, json_integer_value(json_object_get(tt, "native_id")), &st);
        assert_true(st.n >= 2);
        total = run_faulty(&fx, pp, &st.frames[1], MEMSRC_FAULT_FAIL, 0); /* frame under park */
        assert_true(total > 20);
        for (int fault = MEMSRC_FAULT_FAIL; fault <= MEMSRC_FAULT_ZERO; fault++)
            for (uint64_t nth = 1; nth <= total; nth++, swept++)
                (void)run_faulty(&fx, pp, &st.frames[1], fault, nth);
    }
    assert_true(swept > 100);
    walk_stack_free(&st);
    pyproc_close(pp);
    test_fixture_free(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replay_matches_f_locals),
        cmocka_unit_test(test_fault_sweep),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
