/* SPDX-License-Identifier: MIT */
/*
 * Walker, code cache and collector against recorded fixtures (tests/fixtures/<minor>/shapes.*,
 * made by scripts/record-fixtures from tests/targets/shapes.py, whose ground truth is the
 * target's own traceback.extract_stack()). Then the same walk under the fault-injecting source:
 * every read failing in turn, garbled, zeroed, and hand-made cycles and huge lengths: the
 * engine must return an error or a flagged snapshot, within its caps, never crash (this binary
 * also runs under ASan+UBSan).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.h"
#include "pyscope/collect.h"
#include "pyscope/procstat.h"
#include "pyscope/memsrc.h"
#include "pyscope/pyproc.h"
#include "pyscope/snap.h"
#include "pyscope/walk.h"

static const char *const minors[] = TEST_MINORS;

/* Recorded fixture "shapes" of a minor (support/fixture.h). */
static void load_fixture(const char *minor, struct test_fixture *fx)
{
    test_fixture_load(minor, "shapes", fx);
}

/* Open the fixture, optionally behind a faulty wrapper. Returns the open rc. */
static int open_fixture(const struct test_fixture *fx, int fault, uint64_t nth, uint64_t seed,
                        struct pyproc **pp, struct memsrc **faulty_out)
{
    struct ps_err err = {0};
    struct memsrc *src = NULL, *top;
    int rc;

    assert_int_equal(memsrc_fixture_open(fx->mem, &src, &err), 0);
    top = src;
    if (fault >= 0) {
        assert_int_equal(
            memsrc_faulty_wrap(src, (enum memsrc_fault)fault, nth, 0, seed, &top, &err), 0);
    }
    if (faulty_out)
        *faulty_out = top;
    rc = pyproc_open_source(top, &fx->loc, pp, &err);
    if (rc < 0) {
        assert_true(err.msg[0] != '\0'); /* every failure says why */
        memsrc_close(top);
    }
    return rc;
}

static const struct snap_thread *find_thread(const struct snap *s, json_int_t native)
{
    for (size_t i = 0; i < s->nthreads; i++)
        if (s->threads[i].native_id == native)
            return &s->threads[i];
    return NULL;
}

/* Truth frames are outermost first (traceback order); the snapshot's innermost first. */
static void compare_thread(const json_t *tt, const struct snap_thread *st, const char *minor)
{
    const json_t *frames = json_object_get(tt, "frames");
    size_t n = json_array_size(frames);
    const json_t *name = json_object_get(tt, "name");

    assert_int_equal(st->status, SNAP_THREAD_OK);
    assert_int_equal(st->thread_id, (uint64_t)json_integer_value(json_object_get(tt, "ident")));
    if (json_is_string(name) && st->name)
        assert_string_equal(st->name, json_string_value(name));
    if (st->nframes != n)
        fail_msg("%s: thread %d has %zu frames, truth %zu", minor, (int)st->native_id, st->nframes,
                 n);
    for (size_t i = 0; i < n; i++) {
        const json_t *tf = json_array_get(frames, n - 1 - i);
        const struct snap_frame *sf = &st->frames[i];

        assert_string_equal(sf->function, json_string_value(json_object_get(tf, "function")));
        assert_string_equal(sf->qualname, json_string_value(json_object_get(tf, "qualname")));
        assert_string_equal(sf->file, json_string_value(json_object_get(tf, "file")));
        assert_int_equal(sf->line, json_integer_value(json_object_get(tf, "line")));
    }
}

static void test_replay_matches_truth(void **state)
{
    (void)state;
    for (size_t m = 0; m < sizeof(minors) / sizeof(minors[0]); m++) {
        struct collect_opts co = {.retries = 2};
        struct test_fixture fx = {0};
        struct ps_err err = {0};
        struct pyproc *pp = NULL;
        struct snap *s = NULL;
        const json_t *threads, *tt;
        size_t i;

        load_fixture(minors[m], &fx);
        assert_int_equal(open_fixture(&fx, -1, 0, 0, &pp, NULL), 0);
        assert_int_equal(collect_snapshot(pp, &co, &s, &err), 0);
        threads = json_object_get(fx.truth, "threads");
        assert_true(json_array_size(threads) >= 5);
        json_array_foreach(threads, i, tt)
        {
            const struct snap_thread *st =
                find_thread(s, json_integer_value(json_object_get(tt, "native_id")));

            if (!st)
                fail_msg("%s: thread %lld missing", minors[m],
                         (long long)json_integer_value(json_object_get(tt, "native_id")));
            compare_thread(tt, st, minors[m]);
        }
        snap_free(s);
        pyproc_close(pp);
        test_fixture_free(&fx);
    }
}

/* Check the caps on whatever a faulty walk produced. */
static void check_bounds(const struct snap *s)
{
    assert_true(s->nthreads <= WALK_MAX_THREADS);
    for (size_t i = 0; i < s->nthreads; i++) {
        const struct snap_thread *t = &s->threads[i];

        assert_true(t->nframes <= WALK_MAX_DEPTH);
        if (t->status == SNAP_THREAD_ERROR || t->status == SNAP_THREAD_INCONSISTENT)
            assert_non_null(t->error);
        for (size_t f = 0; f < t->nframes; f++)
            assert_non_null(t->frames[f].file);
    }
}

/* Run open + collect with the fault at range nth; returns 1 when a fault-free run happened. */
static void run_faulty(const struct test_fixture *fx, int fault, uint64_t nth, uint64_t seed)
{
    struct collect_opts co = {.retries = 1};
    struct ps_err err = {0};
    struct pyproc *pp = NULL;
    struct snap *s = NULL;
    int rc;

    if (open_fixture(fx, fault, nth, seed, &pp, NULL) < 0)
        return;
    rc = collect_snapshot(pp, &co, &s, &err);
    if (rc < 0)
        assert_true(err.msg[0] != '\0');
    else
        check_bounds(s);
    snap_free(s);
    pyproc_close(pp);
}

/* How many ranges a clean open + collect reads (the faulty wrapper counts with nth == 0). */
static uint64_t count_ranges(const struct test_fixture *fx)
{
    struct collect_opts co = {.retries = 1};
    struct ps_err err = {0};
    struct pyproc *pp = NULL;
    struct memsrc *faulty = NULL;
    struct snap *s = NULL;
    uint64_t n;

    assert_int_equal(open_fixture(fx, MEMSRC_FAULT_FAIL, 0, 0, &pp, &faulty), 0);
    assert_int_equal(collect_snapshot(pp, &co, &s, &err), 0);
    n = memsrc_faulty_count(faulty);
    snap_free(s);
    pyproc_close(pp);
    return n;
}

static void test_fault_sweep(void **state)
{
    (void)state;
    for (size_t m = 0; m < sizeof(minors) / sizeof(minors[0]); m++) {
        struct test_fixture fx = {0};
        uint64_t n;

        load_fixture(minors[m], &fx);
        n = count_ranges(&fx);
        assert_true(n > 20);
        for (uint64_t i = 1; i <= n; i++) {
            run_faulty(&fx, MEMSRC_FAULT_FAIL, i, 0);
            run_faulty(&fx, MEMSRC_FAULT_ZERO, i, 0);
            run_faulty(&fx, MEMSRC_FAULT_GARBLE, i, i * 7919);
        }
        test_fixture_free(&fx);
    }
}

/* A fixture whose frames are overlaid by hand: the overlay wins over the recorded bytes. */
static struct pyproc *open_overlaid(const struct test_fixture *fx, struct memsrc **src_out)
{
    struct ps_err err = {0};
    struct memsrc *src = NULL;
    struct pyproc *pp = NULL;

    assert_int_equal(memsrc_fixture_open(fx->mem, &src, &err), 0);
    assert_int_equal(pyproc_open_source(src, &fx->loc, &pp, &err), 0);
    *src_out = src;
    return pp;
}

/* The deepest thread (the recursion) of a snapshot's walk: its tstate. */
static uint64_t deepest_tstate(struct pyproc *pp)
{
    struct walk_tstate ts[64];
    struct walk_stack st;
    struct ps_err err = {0};
    size_t n = 0, best = 0;
    uint64_t addr = 0;
    const struct pyctx c = pyproc_ctx(pp);

    assert_int_equal(walk_tstates(&c, ts, 64, &n, NULL, NULL, &err), 0);
    assert_int_equal(walk_stack_init(&st, &err), 0);
    for (size_t i = 0; i < n; i++) {
        if (walk_stack(&c, ts[i].addr, &st, &err) == 0 && st.n > best) {
            best = st.n;
            addr = ts[i].addr;
        }
    }
    walk_stack_free(&st);
    assert_true(best > 100);
    return addr;
}

static void test_frame_cycle_is_bounded(void **state)
{
    (void)state;
    for (size_t m = 0; m < sizeof(minors) / sizeof(minors[0]); m++) {
        struct test_fixture fx = {0};
        struct ps_err err = {0};
        struct memsrc *src = NULL;
        struct pyproc *pp;
        struct pyctx c;
        struct walk_stack st;
        uint64_t tstate, inner, outer;
        int rc;

        load_fixture(minors[m], &fx);
        pp = open_overlaid(&fx, &src);
        c = pyproc_ctx(pp);
        tstate = deepest_tstate(pp);
        assert_int_equal(walk_stack_init(&st, &err), 0);
        assert_int_equal(walk_stack(&c, tstate, &st, &err), 0);
        inner = st.frames[1].frame_addr;
        outer = st.frames[50].frame_addr;
        /* Make frame 50 point back at frame 1: a loop of 49 frames. */
        assert_int_equal(memsrc_fixture_add(src, outer + (uint64_t)pp->lay->frame_previous, &inner,
                                            sizeof(inner), &err),
                         0);
        rc = walk_stack(&c, tstate, &st, &err);
        assert_true(rc == 0 || rc == -PS_ECORRUPT);
        if (rc == 0)
            assert_true(st.truncated && st.n == WALK_MAX_DEPTH);
        /* A frame pointing at itself is refused outright. */
        assert_int_equal(memsrc_fixture_add(src, outer + (uint64_t)pp->lay->frame_previous, &outer,
                                            sizeof(outer), &err),
                         0);
        ps_err_clear(&err);
        assert_int_equal(walk_stack(&c, tstate, &st, &err), -PS_ECORRUPT);
        assert_non_null(strstr(err.msg, "invalid"));
        walk_stack_free(&st);
        pyproc_close(pp);
        test_fixture_free(&fx);
    }
}

/* A thread state freed mid-walk: its `next` reads as garbage that is no address at all (seen on a
 * churning 3.13 under load: dump failed with the read error, exit 2). The walk says the list
 * changed (-PS_ECORRUPT, which its callers retry), not a read failure that ends the dump. */
static void test_garbage_thread_link_is_a_changing_list(void **state)
{
    (void)state;
    for (size_t m = 0; m < sizeof(minors) / sizeof(minors[0]); m++) {
        const uint64_t garbage = 0x183661b9ab7f06a9ull;
        struct test_fixture fx = {0};
        struct walk_tstate ts[64];
        struct ps_err err = {0};
        struct memsrc *src = NULL;
        struct pyproc *pp;
        struct pyctx c;
        size_t n = 0;

        load_fixture(minors[m], &fx);
        pp = open_overlaid(&fx, &src);
        c = pyproc_ctx(pp);
        assert_int_equal(walk_tstates(&c, ts, 64, &n, NULL, NULL, &err), 0);
        assert_true(n >= 1);
        assert_int_equal(memsrc_fixture_add(src, ts[0].addr + (uint64_t)pp->lay->tstate_next,
                                            &garbage, sizeof(garbage), &err),
                         0);
        assert_int_equal(walk_tstates(&c, ts, 64, &n, NULL, NULL, &err), -PS_ECORRUPT);
        assert_non_null(strstr(err.msg, "the thread list changed while read"));
        assert_int_equal(err.code, -PS_ECORRUPT);
        pyproc_close(pp);
        test_fixture_free(&fx);
    }
}

static void test_huge_name_length_is_an_error(void **state)
{
    (void)state;
    for (size_t m = 0; m < sizeof(minors) / sizeof(minors[0]); m++) {
        struct collect_opts co = {.retries = 0};
        struct test_fixture fx = {0};
        struct ps_err err = {0};
        struct memsrc *src = NULL;
        struct pyproc *pp;
        struct pyctx c;
        struct walk_stack st;
        struct snap *s = NULL;
        uint64_t tstate, huge = (uint64_t)1 << 40;
        const struct snap_thread *t = NULL;

        load_fixture(minors[m], &fx);
        pp = open_overlaid(&fx, &src);
        c = pyproc_ctx(pp);
        tstate = deepest_tstate(pp);
        assert_int_equal(walk_stack_init(&st, &err), 0);
        assert_int_equal(walk_stack(&c, tstate, &st, &err), 0);
        /* The innermost frame's function name claims 2^40 characters. */
        assert_int_equal(memsrc_fixture_add(src,
                                            st.frames[0].fp.name + (uint64_t)pp->lay->str_length,
                                            &huge, sizeof(huge), &err),
                         0);
        assert_int_equal(collect_snapshot(pp, &co, &s, &err), 0);
        for (size_t i = 0; i < s->nthreads; i++)
            if (s->threads[i].tstate_addr == tstate)
                t = &s->threads[i];
        assert_non_null(t);
        assert_int_not_equal(t->status, SNAP_THREAD_OK);
        assert_non_null(t->error);
        snap_free(s);
        walk_stack_free(&st);
        pyproc_close(pp);
        test_fixture_free(&fx);
    }
}

/* Overlay the thread's top frame as a generator's that has just yielded: owned by the generator,
 * `previous` cleared (and, 3.11, is_entry still set from its resume). */
static void overlay_yielded_top(struct memsrc *src, const struct layout *l, uint64_t top)
{
    struct ps_err err = {0};
    uint64_t zero = 0;
    uint8_t one = 1;

    assert_int_equal(
        memsrc_fixture_add(src, top + (uint64_t)l->frame_previous, &zero, sizeof(zero), &err), 0);
    assert_int_equal(memsrc_fixture_add(src, top + (uint64_t)l->frame_owner, &one, 1, &err), 0);
    if (LAYOUT_HAS(l, frame_is_entry))
        assert_int_equal(memsrc_fixture_add(src, top + (uint64_t)l->frame_is_entry, &one, 1, &err),
                         0);
}

/* Link a _PyCFrame at cframe to prev (the fake cframes live at addresses the fixture lacks). */
static void link_cframe(struct memsrc *src, const struct layout *l, uint64_t cframe, uint64_t prev)
{
    struct ps_err err = {0};

    assert_int_equal(
        memsrc_fixture_add(src, cframe + (uint64_t)l->cframe_previous, &prev, sizeof(prev), &err),
        0);
}

/*
 * A chain read across a generator's yield stops at the generator's frame: previous NULL. On
 * 3.12+ it does not end at a C-stack shim, so it is cut. On 3.11 the frame still carries
 * is_entry, which alone made it look like the bottom of the thread (a sample of only the
 * innermost generator frames); the _PyCFrame chain tells: one _PyCFrame above the thread
 * state's root per entry frame, so a second one above the root means the caller's frames were
 * cut off, as does a chain that never reaches the root (a stale _PyCFrame's garbage), and a
 * generator truly at the bottom of its thread (its _PyCFrame right above the root) still walks.
 */
static void test_yielded_generator_is_a_cut_chain(void **state)
{
    (void)state;
    for (size_t m = 0; m < sizeof(minors) / sizeof(minors[0]); m++) {
        const uint64_t fake_a = 0x7f00dead1000ull, fake_b = 0x7f00dead2000ull;
        struct test_fixture fx = {0};
        struct ps_err err = {0};
        struct memsrc *src = NULL;
        const struct layout *l;
        struct pyproc *pp;
        struct pyctx c;
        struct walk_stack st;
        uint64_t tstate, top, cframe, root = 0;

        load_fixture(minors[m], &fx);
        pp = open_overlaid(&fx, &src);
        c = pyproc_ctx(pp);
        l = pp->lay;
        tstate = deepest_tstate(pp);
        assert_int_equal(walk_stack_init(&st, &err), 0);
        assert_int_equal(walk_stack(&c, tstate, &st, &err), 0);
        top = st.top_frame;
        cframe = st.cframe;
        assert_true(st.n > 100);
        overlay_yielded_top(src, l, top);
        if (LAYOUT_HAS(l, tstate_root_cframe)) {
            root = tstate + (uint64_t)l->tstate_root_cframe;
            link_cframe(src, l, cframe, fake_a); /* the caller's evaluation loop, then root */
            link_cframe(src, l, fake_a, root);
        }
        assert_int_equal(walk_stack(&c, tstate, &st, &err), -PS_ECORRUPT);
        assert_non_null(strstr(err.msg, "cut"));
        if (LAYOUT_HAS(l, frame_is_entry)) {
            /* A _PyCFrame read after its loop returned: C-stack garbage whose `previous` leads
             * to something that looks like a root (previous NULL) but is not the thread's. */
            link_cframe(src, l, cframe, fake_b);
            link_cframe(src, l, fake_b, 0);
            ps_err_clear(&err);
            assert_int_equal(walk_stack(&c, tstate, &st, &err), -PS_ECORRUPT);
            /* The generator's _PyCFrame right above the root: the thread's bottom, complete. */
            link_cframe(src, l, cframe, root);
            ps_err_clear(&err);
            assert_int_equal(walk_stack(&c, tstate, &st, &err), 0);
            assert_int_equal(st.n, 1);
            assert_int_equal(st.frames[0].frame_addr, top);
        }
        walk_stack_free(&st);
        pyproc_close(pp);
        test_fixture_free(&fx);
    }
}

/* A reused pid is noticed: the start time recorded at open no longer matches. */
static void test_check_alive(void **state)
{
    struct pyproc pp;
    struct procstat_stat st;
    struct ps_err err = {0};
    pid_t child;
    int status;

    (void)state;
    memset(&pp, 0, sizeof(pp));
    child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        pause();
        _exit(0);
    }
    assert_int_equal(procstat_stat(child, child, &st, &err), 0);
    pp.pid = child;
    pp.start_ticks = st.start_ticks;
    assert_int_equal(pyproc_check_alive(&pp, &err), 0);
    pp.start_ticks = st.start_ticks + 1; /* as if another process had got the pid */
    assert_int_equal(pyproc_check_alive(&pp, &err), -PS_EGONE);
    assert_non_null(strstr(err.msg, "another process"));
    pp.start_ticks = st.start_ticks;
    assert_int_equal(kill(child, SIGKILL), 0);
    assert_int_equal(waitpid(child, &status, 0), child);
    ps_err_clear(&err);
    assert_int_equal(pyproc_check_alive(&pp, &err), -PS_EGONE);
    pp.pid = 0; /* a fixture: nothing to check */
    assert_int_equal(pyproc_check_alive(&pp, &err), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replay_matches_truth),
        cmocka_unit_test(test_check_alive),
        cmocka_unit_test(test_frame_cycle_is_bounded),
        cmocka_unit_test(test_garbage_thread_link_is_a_changing_list),
        cmocka_unit_test(test_yielded_generator_is_a_cut_chain),
        cmocka_unit_test(test_huge_name_length_is_an_error),
        cmocka_unit_test(test_fault_sweep),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
