/* SPDX-License-Identifier: MIT */
/*
 * asyncio tasks against recorded fixtures (tests/fixtures/<minor>/tasks.*, made by
 * scripts/record-fixtures from tests/targets/tasks.py, whose ground truth it wrote from inside
 * its event loop): every task found with its state, name, coroutine chain and what it awaits,
 * the running task placed in its thread, the deadlock flagged. Then the task reads under the
 * fault-injecting source: every read past the thread walk failing, zeroed or garbled in turn;
 * the dump must still come back (tasks as data, an error sentence, or a clean failure), within
 * its caps, never crash (this binary also runs under ASan+UBSan).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "fixture.h"
#include "pyscope/collect.h"
#include "pyscope/memsrc.h"
#include "pyscope/pyproc.h"
#include "pyscope/snap.h"
#include "pyscope/tasks.h"

static const char *const minors[] = TEST_MINORS;

/* Recorded fixture "tasks" of a minor (support/fixture.h). */
static void load_fixture(const char *minor, struct test_fixture *fx)
{
    test_fixture_load(minor, "tasks", fx);
}

/* Open the fixture, optionally behind a faulty wrapper; collect (with tasks unless no_tasks). */
static int collect_ex(const struct test_fixture *fx, int fault, uint64_t nth, uint64_t seed,
                      bool no_tasks, struct memsrc **faulty_out, struct snap **out,
                      struct pyproc **pp_out)
{
    struct collect_opts co = {.retries = 1, .tasks = !no_tasks, .max_tasks = TASKS_DEFAULT_MAX};
    struct ps_err err = {0};
    struct memsrc *src = NULL, *top;
    struct pyproc *pp = NULL;
    int rc;

    assert_int_equal(memsrc_fixture_open(fx->mem, &src, &err), 0);
    top = src;
    if (fault >= 0)
        assert_int_equal(
            memsrc_faulty_wrap(src, (enum memsrc_fault)fault, nth, 0, seed, &top, &err), 0);
    if (faulty_out)
        *faulty_out = top;
    rc = pyproc_open_source(top, &fx->loc, &pp, &err);
    if (rc < 0) {
        memsrc_close(top);
        return rc;
    }
    rc = collect_snapshot(pp, &co, out, &err);
    if (rc < 0)
        assert_true(err.msg[0] != '\0'); /* every failure says why */
    *pp_out = pp;
    return rc;
}

static int collect(const struct test_fixture *fx, int fault, uint64_t nth, uint64_t seed,
                   struct memsrc **faulty_out, struct snap **out, struct pyproc **pp_out)
{
    return collect_ex(fx, fault, nth, seed, false, faulty_out, out, pp_out);
}

static const struct snap_task *find_task(const struct snap_tasks *ts, json_int_t addr)
{
    for (size_t i = 0; i < ts->ntasks; i++)
        if (ts->tasks[i].addr == (uint64_t)addr)
            return &ts->tasks[i];
    return NULL;
}

/* Frames innermost first on both sides. */
static void compare_chain(const json_t *chain, const struct snap_task *t)
{
    size_t n = json_array_size(chain);

    if (t->nframes != n)
        fail_msg("task %s: %zu frames, truth %zu", t->name, t->nframes, n);
    for (size_t i = 0; i < n; i++) {
        const json_t *f = json_array_get(chain, i);

        assert_string_equal(t->frames[i].function,
                            json_string_value(json_object_get(f, "function")));
        assert_string_equal(t->frames[i].file, json_string_value(json_object_get(f, "file")));
        assert_int_equal(t->frames[i].line, json_integer_value(json_object_get(f, "line")));
    }
}

static void compare_task(const json_t *truth, const json_t *tt, const struct snap_tasks *ts)
{
    static const char *const states[] = {"pending", "running", "done", "cancelled"};
    const struct snap_task *t = find_task(ts, json_integer_value(json_object_get(tt, "addr")));
    const json_t *name = json_object_get(tt, "name"), *aw = json_object_get(tt, "awaits");

    assert_non_null(t);
    assert_null(t->error);
    if (json_is_string(name))
        assert_string_equal(t->name, json_string_value(name));
    else
        assert_memory_equal(t->name, "Task-", 5);
    assert_string_equal(states[t->state], json_string_value(json_object_get(tt, "state")));
    if (t->state == SNAP_TASK_RUNNING) {
        compare_chain(json_object_get(truth, "running_chain"), t);
        assert_int_equal(t->thread_frame, (long)t->nframes - 1);
        return;
    }
    compare_chain(json_object_get(tt, "chain"), t);
    if (json_is_null(aw))
        assert_int_equal(t->awaits, SNAP_AWAIT_NONE);
    else
        assert_string_equal(tasks_await_name(t->awaits),
                            json_string_value(json_object_get(aw, "kind")));
}

static void test_replay_matches_truth(void **state)
{
    (void)state;
    for (size_t m = 0; m < sizeof(minors) / sizeof(minors[0]); m++) {
        struct test_fixture fx = {0};
        struct pyproc *pp = NULL;
        struct snap *s = NULL;
        const json_t *tasks, *tt;
        size_t i, cycles = 0;

        load_fixture(minors[m], &fx);
        assert_int_equal(collect(&fx, -1, 0, 0, NULL, &s, &pp), 0);
        assert_non_null(s->tasks);
        assert_null(s->tasks->error);
        tasks = json_object_get(fx.truth, "tasks");
        assert_int_equal(s->tasks->found, json_array_size(tasks));
        assert_int_equal(s->tasks->ntasks, s->tasks->found);
        json_array_foreach(tasks, i, tt) compare_task(fx.truth, tt, s->tasks);
        for (i = 0; i < s->tasks->ntasks; i++)
            cycles += s->tasks->tasks[i].in_cycle;
        assert_int_equal(cycles, 2); /* dl-a <-> dl-b */
        snap_free(s);
        pyproc_close(pp);
        test_fixture_free(&fx);
    }
}

/* Whatever a faulty read produced stays within the caps and is internally consistent. */
static void check_bounds(const struct snap_tasks *ts)
{
    if (!ts)
        return;
    if (ts->error) {
        assert_int_equal(ts->ntasks, 0);
        return;
    }
    assert_true(ts->ntasks <= ts->found && ts->ntasks <= TASKS_DEFAULT_MAX);
    for (size_t i = 0; i < ts->ntasks; i++) {
        const struct snap_task *t = &ts->tasks[i];

        assert_non_null(t->name);
        assert_true(t->nframes <= TASKS_MAX_CHAIN || t->state == SNAP_TASK_RUNNING);
        assert_true(t->awaits_task < (long)ts->ntasks);
        for (size_t f = 0; f < t->nframes; f++)
            assert_non_null(t->frames[f].file);
    }
    for (size_t e = 0; e < ts->nedges; e++)
        assert_true(ts->edges[e].from < ts->ntasks && ts->edges[e].to < ts->ntasks);
}

/* Ranges read by a clean open + collect, without (no_tasks) or with the task reads. */
static uint64_t count_ranges(const struct test_fixture *fx, bool no_tasks)
{
    struct memsrc *faulty = NULL;
    struct pyproc *pp = NULL;
    struct snap *s = NULL;
    uint64_t n;

    assert_int_equal(collect_ex(fx, MEMSRC_FAULT_FAIL, 0, 0, no_tasks, &faulty, &s, &pp), 0);
    n = memsrc_faulty_count(faulty);
    snap_free(s);
    pyproc_close(pp);
    return n;
}

static void run_faulty(const struct test_fixture *fx, int fault, uint64_t nth, uint64_t seed)
{
    struct pyproc *pp = NULL;
    struct snap *s = NULL;
    int rc = collect(fx, fault, nth, seed, NULL, &s, &pp);

    if (rc == 0)
        check_bounds(s->tasks);
    snap_free(s);
    pyproc_close(pp);
}

static void test_fault_sweep(void **state)
{
    (void)state;
    for (size_t m = 0; m < sizeof(minors) / sizeof(minors[0]); m++) {
        struct test_fixture fx = {0};
        uint64_t first, n;

        load_fixture(minors[m], &fx);
        /* The reads before the tasks' are test_collect's sweep; these are the task reads. */
        first = count_ranges(&fx, true) + 1;
        n = count_ranges(&fx, false);
        assert_true(n > first + 50);
        /* A stride keeps this fast under ASan: each fault kind hits every fourth range, the
         * three kinds at different offsets (shifted per version), so 3/4 of the ranges see a
         * fault in every version. */
        for (uint64_t i = first + m; i + 2 <= n; i += 4) {
            run_faulty(&fx, MEMSRC_FAULT_FAIL, i, 0);
            run_faulty(&fx, MEMSRC_FAULT_ZERO, i + 1, 0);
            run_faulty(&fx, MEMSRC_FAULT_GARBLE, i + 2, i * 7919);
        }
        test_fixture_free(&fx);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replay_matches_truth),
        cmocka_unit_test(test_fault_sweep),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
