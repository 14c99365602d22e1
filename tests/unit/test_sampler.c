/* SPDX-License-Identifier: MIT */
/*
 * The sampler's hot path against the recorded shapes fixtures (3.11/3.12/3.13, see
 * test_collect.c for their provenance and ground truth):
 *  - the walker's warm walk is ONE read that also carries the caller's co-reads and confirms
 *    its top (walk.h: top_confirmed), and a tail that disagrees with the head is not confirmed;
 *  - profile_add_below continues an existing path;
 *  - a walk whose top moved is still taken when the next walk shows the thread inside it
 *    (sampler_grew_from), and only then;
 *  - a few sampler ticks count every thread's stack exactly as the target's own traceback has
 *    it (busy-thread walks, unchanged reuse and the prefix cache in play).
 *
 * The fixtures hold only the bytes a cold dump read, while a warm walk reads a little past a
 * thread's data-stack top (room to grow) and neighbouring code headers as one range, gaps
 * included. A test source ("lenient") serves the recorded bytes of such a range and zeros in
 * the gaps; a range with no recorded byte at all still fails.
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
#include <unistd.h>

#include "pyscope/evloop.h"
#include "pyscope/memsrc.h"
#include "pyscope/profile.h"
#include "pyscope/pyproc.h"
#include "pyscope/sampler.h"
#include "pyscope/walk.h"

#include "../../src/cpython/layout_tables.h"
#include "../../src/sample/sampler_int.h"

/* Every supported version (the generated table list): the fixtures are recorded for each. */
static const char *const minors[] = {LAYOUT_VERSION_NAMES};

/* ---- the lenient source ------------------------------------------------------------------ */

struct lenient {
    struct memsrc base;
    struct memsrc *inner;
    bool tamper; /* flip a bit of the last range of every read of 3+ ranges (the walk's tail) */
    /* fail (-EFAULT) the next `faults` reads whose first range is a whole block at fault_addr
     * (a walk's first read: the thread state block), as a pointer dropped while read would */
    uint64_t fault_addr;
    int faults, fault_skip; /* after letting fault_skip such reads through (the listing's) */
};

/* The longest recorded run at addr (1..len bytes), 0 when addr itself is not recorded. */
static size_t recorded_run(struct memsrc *inner, uint64_t addr, uint8_t *buf, size_t len)
{
    struct ps_err ignored = {0};
    size_t lo = 1, hi = len + 1;

    if (memsrc_read(inner, addr, buf, 1, &ignored) < 0)
        return 0;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;

        if (memsrc_read(inner, addr, buf, mid, &ignored) == 0)
            lo = mid;
        else
            hi = mid;
    }
    return memsrc_read(inner, addr, buf, lo, &ignored) == 0 ? lo : 0;
}

/* Read v's recorded bytes, zeros elsewhere; fails only when none of it is recorded. */
static int read_recorded(struct memsrc *inner, const struct memsrc_iov *v, struct ps_err *err)
{
    uint8_t *buf = v->buf;
    size_t got = 0;

    if (memsrc_read(inner, v->addr, v->buf, v->len, err) == 0)
        return 0;
    memset(buf, 0, v->len);
    for (size_t o = 0; o < v->len;) {
        size_t run = recorded_run(inner, v->addr + o, buf + o, v->len - o);

        got += run;
        o += run ? run : 1;
    }
    if (got == 0)
        return -EFAULT;
    ps_err_clear(err);
    return 0;
}

static int lenient_readv(struct memsrc *src, const struct memsrc_iov *iov, size_t n,
                         struct ps_err *err)
{
    struct lenient *l = (struct lenient *)src;

    if (l->faults > 0 && n > 0 && iov[0].addr == l->fault_addr && iov[0].len >= 64 &&
        l->fault_skip-- <= 0) {
        l->faults--;
        return -EFAULT;
    }
    for (size_t i = 0; i < n; i++)
        if (read_recorded(l->inner, &iov[i], err) < 0)
            return -EFAULT;
    if (l->tamper && n >= 3)
        ((uint8_t *)iov[n - 1].buf)[0] ^= 0x40;
    return 0;
}

static void lenient_describe(const struct memsrc *src, char *buf, size_t len)
{
    (void)src;
    (void)snprintf(buf, len, "lenient fixture");
}

static void lenient_close(struct memsrc *src)
{
    struct lenient *l = (struct lenient *)src;

    memsrc_close(l->inner);
    free(l);
}

static const struct memsrc_ops lenient_ops = {
    .name = "lenient",
    .readv = lenient_readv,
    .describe = lenient_describe,
    .close = lenient_close,
};

struct fixture {
    struct locate_info loc;
    json_t *truth;
    struct pyproc *pp;
    struct lenient *src;
};

static void open_fixture(const char *minor, struct fixture *fx)
{
    char mem[512], path[600];
    struct ps_err err = {0};
    struct memsrc *inner = NULL;
    json_error_t jerr;

    (void)snprintf(mem, sizeof(mem), "%s/tests/fixtures/%s/shapes.mem", PYSCOPE_SOURCE_DIR, minor);
    (void)snprintf(path, sizeof(path), "%s.meta", mem);
    assert_int_equal(pyproc_meta_read(path, &fx->loc, &err), 0);
    (void)snprintf(path, sizeof(path), "%s/tests/fixtures/%s/shapes.truth.json", PYSCOPE_SOURCE_DIR,
                   minor);
    fx->truth = json_load_file(path, 0, &jerr);
    if (!fx->truth)
        fail_msg("cannot load %s: %s", path, jerr.text);
    assert_int_equal(memsrc_fixture_open(mem, &inner, &err), 0);
    fx->src = calloc(1, sizeof(*fx->src));
    assert_non_null(fx->src);
    fx->src->base.ops = &lenient_ops;
    fx->src->inner = inner;
    if (pyproc_open_source(&fx->src->base, &fx->loc, &fx->pp, &err) < 0)
        fail_msg("%s: %s", minor, err.msg);
}

static void close_fixture(struct fixture *fx)
{
    pyproc_close(fx->pp);
    json_decref(fx->truth);
}

/* ---- the walker's one-read warm walk ----------------------------------------------------- */

/* Walk every thread cold, then warm with one co-read; returns how many warm walks confirmed. */
static size_t warm_walks(struct fixture *fx, bool tamper)
{
    struct walk_tstate *ts = calloc(WALK_MAX_THREADS, sizeof(*ts));
    struct walk_stack st, cold;
    struct ps_err err = {0};
    size_t n = 0, confirmed = 0;
    const struct pyctx c = pyproc_ctx(fx->pp);

    assert_non_null(ts);
    assert_int_equal(walk_tstates(&c, ts, WALK_MAX_THREADS, &n, NULL, NULL, &err), 0);
    assert_true(n >= 5);
    assert_int_equal(walk_stack_init(&st, &err), 0);
    assert_int_equal(walk_stack_init(&cold, &err), 0);
    for (size_t i = 0; i < n; i++) {
        uint64_t word = 0, expected = 0, calls;
        const struct memsrc_iov co = {.addr = ts[i].addr, .buf = &word, .len = 8};

        fx->src->tamper = false;
        assert_int_equal(walk_stack(&c, ts[i].addr, &cold, &err), 0);
        assert_false(cold.top_confirmed && cold.n > 0); /* a cold walk predicts nothing */
        assert_int_equal(memsrc_read_u64(fx->pp->src, ts[i].addr, &expected, &err), 0);
        assert_int_equal(walk_stack(&c, ts[i].addr, &st, &err), 0); /* st's hint: warm */
        st.co_reads = &co;
        st.nco_reads = 1;
        fx->src->tamper = tamper;
        calls = fx->pp->src->stats.calls;
        assert_int_equal(walk_stack(&c, ts[i].addr, &st, &err), 0);
        assert_int_equal(word, expected);
        assert_int_equal(st.n, cold.n);
        for (size_t f = 0; f < st.n; f++)
            assert_int_equal(st.frames[f].code_addr, cold.frames[f].code_addr);
        if (st.top_confirmed) {
            assert_int_equal(fx->pp->src->stats.calls, calls + 1);
            confirmed++;
        }
        st.co_reads = NULL;
        st.nco_reads = 0;
    }
    fx->src->tamper = false;
    walk_stack_free(&cold);
    walk_stack_free(&st);
    free(ts);
    return confirmed;
}

static void test_warm_walk_is_one_confirmed_read(void **state)
{
    (void)state;
    for (size_t m = 0; m < sizeof(minors) / sizeof(minors[0]); m++) {
        struct fixture fx = {0};
        size_t confirmed;

        open_fixture(minors[m], &fx);
        confirmed = warm_walks(&fx, false);
        if (confirmed < 3)
            fail_msg("%s: only %zu warm walks confirmed their top", minors[m], confirmed);
        close_fixture(&fx);
    }
}

static void test_moved_top_is_not_confirmed(void **state)
{
    (void)state;
    for (size_t m = 0; m < sizeof(minors) / sizeof(minors[0]); m++) {
        struct fixture fx = {0};

        open_fixture(minors[m], &fx);
        assert_int_equal(warm_walks(&fx, true), 0);
        close_fixture(&fx);
    }
}

/* ---- profile_add_below ------------------------------------------------------------------- */

static void test_profile_add_below(void **state)
{
    struct ps_err err = {0};
    struct profile *p = NULL;
    uint32_t t, f[3], leaf, below, again;

    (void)state;
    assert_int_equal(profile_new(&p, &err), 0);
    assert_int_equal(profile_thread(p, 1, 1, "main", &t, &err), 0);
    f[0] = profile_frame_intern(p, "a", "x.py", 1);
    f[1] = profile_frame_intern(p, "b", "x.py", 2);
    f[2] = profile_frame_intern(p, "c", "x.py", 3);
    leaf = profile_add(p, t, f, 2, 1);                                            /* a;b */
    below = profile_add_below(p, profile_node_get(p, leaf)->parent, f + 2, 1, 2); /* a;c */
    again = profile_add(p, t, (const uint32_t[]){f[0], f[2]}, 2, 1);
    assert_int_equal(below, again);
    assert_int_equal(profile_node_get(p, below)->self, 3);
    assert_int_equal(profile_node_get(p, below)->depth, 2);
    assert_int_equal(profile_add_below(p, leaf, NULL, 0, 1), leaf);
    assert_int_equal(profile_node_get(p, leaf)->self, 2);
    assert_int_equal(profile_add_below(p, 1000000, f, 1, 1), PROFILE_NONE);
    profile_free(p);
}

/* ---- torn-read rescue -------------------------------------------------------------------- */

/* A stack of n frames, innermost first: frame k (from the outermost) at 0x1000 + 0x100 k, code
 * 0x9000 + k, unit 10 + k. */
static void fake_stack(struct walk_stack *st, struct walk_frame *f, size_t n)
{
    *st = (struct walk_stack){.frames = f, .n = n};
    for (size_t i = 0; i < n; i++) {
        size_t k = n - 1 - i;

        f[i] = (struct walk_frame){
            .frame_addr = 0x1000 + 0x100 * k, .code_addr = 0x9000 + k, .unit = (int64_t)(10 + k)};
    }
}

static void test_grew_from(void **state)
{
    struct walk_frame fo[8], fc[8];
    struct walk_stack old, cur;

    (void)state;
    fake_stack(&old, fo, 3);
    fake_stack(&cur, fc, 5); /* two calls deeper */
    assert_true(sampler_grew_from(&old, &cur));
    fc[2].unit = 99; /* old's top ran on (its unit moved), then called: still inside it */
    assert_true(sampler_grew_from(&old, &cur));
    fc[3].unit = 99; /* a caller below old's top is at another instruction: it returned */
    assert_false(sampler_grew_from(&old, &cur));
    fake_stack(&cur, fc, 5);
    fc[2].code_addr = 0x7777; /* another function at old's top address: it returned, called */
    assert_false(sampler_grew_from(&old, &cur));
    fake_stack(&cur, fc, 2); /* shallower */
    assert_false(sampler_grew_from(&old, &cur));
    fake_stack(&cur, fc, 5);
    cur.truncated = true;
    assert_false(sampler_grew_from(&old, &cur));
}

/* ---- sampler ticks ----------------------------------------------------------------------- */

#define TICKS 4

/* The node of thread tid counted TICKS times: its stack must be the truth's, outermost first. */
static void check_thread_profile(const struct profile *p, const json_t *tt, const char *minor)
{
    const json_t *frames = json_object_get(tt, "frames");
    uint64_t ident = (uint64_t)json_integer_value(json_object_get(tt, "ident"));
    pid_t tid = (pid_t)json_integer_value(json_object_get(tt, "native_id"));
    uint32_t ids[512];
    size_t n = json_array_size(frames), depth, found = 0;

    for (uint32_t i = 0; i < profile_nnodes(p); i++) {
        const struct profile_node *nd = profile_node_get(p, i);

        /* Threads are told apart by native id (profile keys mix it with the ident). */
        if (nd->self == 0 || profile_thread_get(p, nd->thread)->native_id != tid)
            continue;
        assert_int_equal(nd->self, TICKS);
        depth = profile_stack(p, i, ids, 512);
        if (depth != n)
            fail_msg("%s: thread %llu: %zu frames sampled, truth %zu", minor,
                     (unsigned long long)ident, depth, n);
        for (size_t k = 0; k < n && k < 512; k++) {
            const json_t *tf = json_array_get(frames, k);
            const struct profile_frame *pf = profile_frame_get(p, ids[k]);

            assert_string_equal(pf->function, json_string_value(json_object_get(tf, "qualname")));
            assert_int_equal(pf->line, json_integer_value(json_object_get(tf, "line")));
        }
        found++;
    }
    assert_int_equal(found, 1);
}

/* The sampler's clock for this test: 1 ms per reading, whatever the machine's load (with the
 * real clock, a tick delayed past the re-list period changed the counts: 2 != 4 under load). */
static double fake_clock(void *arg)
{
    double *t = arg;

    *t += 0.001;
    return *t;
}

static void test_ticks_count_the_truth(void **state)
{
    (void)state;
    for (size_t m = 0; m < sizeof(minors) / sizeof(minors[0]); m++) {
        double fake_now = 1000.0;
        const struct evloop_clock clk = {.now = fake_clock, .arg = &fake_now};
        struct sampler_opts so = {.rate_hz = 100, .idle = true, .clock = &clk};
        struct sampler_stats st;
        struct fixture fx = {0};
        struct ps_err err = {0};
        struct profile *p = NULL;
        struct sampler *s = NULL;
        const json_t *threads, *tt;
        size_t i;

        open_fixture(minors[m], &fx);
        assert_int_equal(profile_new(&p, &err), 0);
        assert_int_equal(sampler_new(fx.pp, p, &so, &s, &err), 0);
        for (int k = 0; k < TICKS; k++)
            assert_int_equal(sampler_sample_once(s, &err), 0);
        sampler_stats_get(s, &st);
        threads = json_object_get(fx.truth, "threads");
        assert_int_equal(st.torn + st.errors, 0);
        assert_int_equal(st.threads, json_array_size(threads));
        assert_int_equal(st.samples, TICKS * st.threads);
        assert_true(st.reused >= (TICKS - 2) * st.threads); /* unchanged stacks reused */
        json_array_foreach(threads, i, tt) check_thread_profile(p, tt, minors[m]);
        sampler_free(s);
        profile_free(p);
        close_fixture(&fx);
    }
}

/*
 * A walk whose reads fault (a pointer the thread dropped while it was read: freed memory, a
 * stale _PyCFrame) is walked again within the tick, as a torn one is: here the first walks of
 * one thread fail, and the tick still counts its stack, with nothing lost.
 */
static void test_faulting_walk_is_retried(void **state)
{
    (void)state;
    for (size_t m = 0; m < sizeof(minors) / sizeof(minors[0]); m++) {
        double fake_now = 1000.0;
        const struct evloop_clock clk = {.now = fake_clock, .arg = &fake_now};
        struct sampler_opts so = {.rate_hz = 100, .idle = true, .clock = &clk};
        struct walk_tstate ts[WALK_MAX_THREADS];
        struct sampler_stats st;
        struct fixture fx = {0};
        struct ps_err err = {0};
        struct profile *p = NULL;
        struct sampler *s = NULL;
        size_t n = 0;

        open_fixture(minors[m], &fx);
        const struct pyctx c = pyproc_ctx(fx.pp);
        assert_int_equal(walk_tstates(&c, ts, WALK_MAX_THREADS, &n, NULL, NULL, &err), 0);
        assert_true(n >= 2);
        assert_int_equal(profile_new(&p, &err), 0);
        assert_int_equal(sampler_new(fx.pp, p, &so, &s, &err), 0);
        fx.src->fault_addr = ts[n - 1].addr;
        fx.src->faults = 5;
        fx.src->fault_skip = 1; /* the thread list's read of it */
        assert_int_equal(sampler_sample_once(s, &err), 0);
        sampler_stats_get(s, &st);
        assert_int_equal(fx.src->faults, 0); /* the thread was walked, and walked again */
        assert_int_equal(st.torn + st.errors, 0);
        assert_int_equal(st.samples, n);
        sampler_free(s);
        profile_free(p);
        close_fixture(&fx);
    }
}

/* A virtual clock that only moves when the loop sleeps: no real wait ever happens. */
static double virtual_now(void *arg)
{
    return *(const double *)arg;
}

static void virtual_sleep(void *arg, double seconds)
{
    *(double *)arg += seconds;
}

static int count_tick(void *arg, struct ps_err *err)
{
    (void)err;
    ++*(int *)arg;
    return 0;
}

/*
 * sampler_run, the whole session, on one injected clock: its evloop sleeps on the virtual
 * clock, its ticks are due on it, and the duration ends on it. A part left on the real clock
 * would hang (the virtual time never moves) or end at a real, not a virtual, duration.
 */
static void test_run_on_a_virtual_clock(void **state)
{
    double now = 1000.0;
    const struct evloop_clock clk = {.now = virtual_now, .sleep = virtual_sleep, .arg = &now};
    int ticks = 0;
    struct sampler_opts so = {.rate_hz = 100,
                              .duration_s = 2.0,
                              .clock_pid = getpid(), /* clock-only: nothing to read */
                              .on_tick = count_tick,
                              .tick_arg = &ticks,
                              .clock = &clk};
    struct sampler_stats st;
    struct ps_err err = {0};
    struct profile *p = NULL;
    struct sampler *s = NULL;

    (void)state;
    assert_int_equal(profile_new(&p, &err), 0);
    assert_int_equal(sampler_new(NULL, p, &so, &s, &err), 0);
    assert_int_equal(sampler_run(s, &err), 0);
    sampler_stats_get(s, &st);
    assert_int_equal(st.end, SAMPLER_END_DURATION);
    assert_true(now >= 1002.0 && now < 1002.1); /* 2 s of virtual time passed, no more */
    assert_true(st.elapsed >= 2.0 && st.elapsed < 2.1);
    assert_int_equal(st.ticks, (uint64_t)ticks);
    assert_true(ticks >= 180 && ticks <= 201); /* 100 Hz, jittered, for 2 virtual seconds */
    sampler_free(s);
    profile_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_warm_walk_is_one_confirmed_read),
        cmocka_unit_test(test_moved_top_is_not_confirmed),
        cmocka_unit_test(test_profile_add_below),
        cmocka_unit_test(test_grew_from),
        cmocka_unit_test(test_ticks_count_the_truth),
        cmocka_unit_test(test_faulting_walk_is_retried),
        cmocka_unit_test(test_run_on_a_virtual_clock),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
