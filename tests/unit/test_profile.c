/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for the profile aggregate (src/sample/profile.c): interning, the stack trie and its
 * counts, per-thread roots, the top view (own/total, recursion counted once), merging threads,
 * reset, and the caps' overflow rules (frames past the cap, nodes past the cap).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "pyscope/profile.h"

static struct profile *new_profile(void)
{
    struct ps_err err = {0};
    struct profile *p = NULL;

    assert_int_equal(profile_new(&p, &err), 0);
    assert_non_null(p);
    return p;
}

static uint32_t thread_of(struct profile *p, uint64_t ident, const char *name)
{
    struct ps_err err = {0};
    uint32_t t = PROFILE_NONE;

    assert_int_equal(profile_thread(p, ident, (pid_t)(ident + 100), name, &t, &err), 0);
    return t;
}

static void test_intern_dedups(void **state)
{
    struct profile *p = new_profile();
    uint32_t a = profile_frame_intern(p, "f", "a.py", 3);
    uint32_t b = profile_frame_intern(p, "f", "a.py", 3);
    uint32_t c = profile_frame_intern(p, "f", "a.py", 4);
    uint32_t d = profile_frame_intern(p, "f", "b.py", 3);

    (void)state;
    assert_int_equal(a, b);
    assert_int_not_equal(a, c);
    assert_int_not_equal(a, d);
    assert_int_equal(profile_frame_get(p, a)->function_id, profile_frame_get(p, c)->function_id);
    assert_int_not_equal(profile_frame_get(p, a)->function_id,
                         profile_frame_get(p, d)->function_id);
    assert_string_equal(profile_frame_get(p, c)->file, "a.py");
    assert_int_equal(profile_frame_get(p, c)->line, 4);
    assert_null(profile_frame_get(p, 99));
    assert_string_equal(profile_frame_get(p, profile_frame_intern(p, NULL, NULL, -1))->function,
                        "");
    profile_free(p);
}

static void test_trie_counts_and_stacks(void **state)
{
    struct profile *p = new_profile();
    uint32_t t = thread_of(p, 1, "main");
    uint32_t f[3] = {profile_frame_intern(p, "main", "m.py", 1),
                     profile_frame_intern(p, "work", "m.py", 5),
                     profile_frame_intern(p, "leaf", "m.py", 9)};
    uint32_t out[3];
    uint32_t leaf = profile_add(p, t, f, 3, 2);
    uint32_t mid = profile_add(p, t, f, 2, 1);
    struct profile_stats st;
    uint64_t *totals;

    (void)state;
    assert_int_equal(profile_add(p, t, f, 3, 5), leaf);
    assert_int_equal(profile_node_get(p, leaf)->self, 7);
    assert_int_equal(profile_node_get(p, leaf)->depth, 3);
    assert_int_equal(profile_node_get(p, profile_node_get(p, leaf)->parent)->self, 1);
    assert_int_equal(profile_node_get(p, leaf)->parent, mid);
    assert_int_equal(profile_stack(p, leaf, out, 3), 3);
    assert_memory_equal(out, f, sizeof(f));
    assert_int_equal(profile_stack(p, leaf, out, 1), 3); /* outermost only */
    assert_int_equal(out[0], f[0]);
    profile_add_node(p, leaf, 1);
    profile_stats_get(p, &st);
    assert_int_equal(st.samples, 9);
    assert_int_equal(profile_thread_get(p, t)->samples, 9);
    totals = calloc(profile_nnodes(p), sizeof(*totals));
    assert_non_null(totals);
    profile_node_totals(p, totals);
    assert_int_equal(totals[profile_thread_get(p, t)->root], 9);
    assert_int_equal(totals[mid], 9);
    free(totals);
    assert_int_equal(profile_add(p, 77, f, 3, 1), PROFILE_NONE); /* bad thread id */
    profile_free(p);
}

static void test_threads_are_separate_roots(void **state)
{
    struct profile *p = new_profile();
    uint32_t a = thread_of(p, 1, "a"), b = thread_of(p, 2, "b");
    uint32_t f = profile_frame_intern(p, "run", "t.py", 1);
    struct ps_err err = {0};
    uint32_t again = PROFILE_NONE;

    (void)state;
    assert_int_not_equal(profile_add(p, a, &f, 1, 1), profile_add(p, b, &f, 1, 1));
    assert_int_equal(profile_thread(p, 1, 0, "renamed", &again, &err), 0);
    assert_int_equal(again, a);
    assert_string_equal(profile_thread_get(p, a)->name, "renamed");
    assert_int_equal(profile_thread_get(p, a)->native_id, 101);
    assert_int_equal(profile_nthreads(p), 2);
    profile_free(p);
}

/* rec -> rec -> leaf twice and rec -> other once: rec's total is 3, not 5. */
static void test_top_counts_recursion_once(void **state)
{
    struct profile *p = new_profile();
    uint32_t t = thread_of(p, 1, "main");
    uint32_t rec = profile_frame_intern(p, "rec", "r.py", 1);
    uint32_t rec2 = profile_frame_intern(p, "rec", "r.py", 2);
    uint32_t leaf = profile_frame_intern(p, "leaf", "r.py", 9);
    uint32_t other = profile_frame_intern(p, "other", "r.py", 12);
    uint32_t s1[3] = {rec, rec2, leaf}, s2[2] = {rec, other};
    struct profile_top_row rows[8];
    struct ps_err err = {0};
    uint64_t samples = 0;
    size_t n = 0;

    (void)state;
    (void)profile_add(p, t, s1, 3, 2);
    (void)profile_add(p, t, s2, 2, 1);
    assert_int_equal(profile_top(p, PROFILE_TOP_FUNCTION, PROFILE_SORT_TOTAL, PROFILE_NONE, rows, 8,
                                 &n, &samples, &err),
                     0);
    assert_int_equal(samples, 3);
    assert_int_equal(n, 3);
    assert_string_equal(profile_frame_get(p, rows[0].frame)->function, "rec");
    assert_int_equal(rows[0].total, 3);
    assert_int_equal(rows[0].own, 0);
    assert_int_equal(rows[0].line, -1);
    assert_string_equal(profile_frame_get(p, rows[1].frame)->function, "leaf");
    assert_int_equal(rows[1].own, 2);
    assert_int_equal(profile_top(p, PROFILE_TOP_LINE, PROFILE_SORT_OWN, t, rows, 2, &n, NULL, &err),
                     0);
    assert_int_equal(n, 2); /* capped */
    assert_int_equal(rows[0].frame, leaf);
    assert_int_equal(rows[0].line, 9);
    assert_int_equal(rows[1].frame, other);
    profile_free(p);
}

static void test_merge_threads(void **state)
{
    struct profile *p = new_profile(), *m = NULL;
    uint32_t a = thread_of(p, 1, "a"), b = thread_of(p, 2, "b");
    uint32_t f[2] = {profile_frame_intern(p, "main", "m.py", 1),
                     profile_frame_intern(p, "hot", "m.py", 2)};
    struct ps_err err = {0};
    struct profile_stats st;
    uint32_t leaf;

    (void)state;
    (void)profile_add(p, a, f, 2, 3);
    (void)profile_add(p, b, f, 2, 4);
    (void)profile_add(p, b, f, 1, 1);
    assert_int_equal(profile_merge_threads(p, &m, &err), 0);
    assert_int_equal(profile_nthreads(m), 1);
    assert_string_equal(profile_thread_get(m, 0)->name, "all threads");
    profile_stats_get(m, &st);
    assert_int_equal(st.samples, 8);
    leaf = profile_add(m, 0, f, 2, 0); /* same frame ids: interned in order */
    assert_int_equal(profile_node_get(m, leaf)->self, 7);
    profile_free(m);
    profile_free(p);
}

static void test_reset_empties_and_bumps_generation(void **state)
{
    struct profile *p = new_profile();
    uint32_t t = thread_of(p, 1, "main");
    uint32_t f = profile_frame_intern(p, "x", "x.py", 1);
    uint64_t g = profile_generation(p);
    struct profile_stats st;

    (void)state;
    (void)profile_add(p, t, &f, 1, 1);
    profile_reset(p);
    profile_stats_get(p, &st);
    assert_int_not_equal(profile_generation(p), g);
    assert_int_equal(st.samples, 0);
    assert_int_equal(st.nodes, 0);
    assert_int_equal(st.frames, 0);
    assert_int_equal(profile_nthreads(p), 0);
    t = thread_of(p, 1, "main");
    f = profile_frame_intern(p, "y", "y.py", 2);
    assert_string_equal(profile_frame_get(p, f)->function, "y");
    assert_int_equal(profile_node_get(p, profile_add(p, t, &f, 1, 1))->self, 1);
    profile_free(p);
}

/* Past PROFILE_MAX_NODES, new stacks land on "[profile full]"; known ones still count. */
static void test_node_cap_overflow(void **state)
{
    struct profile *p = new_profile();
    uint32_t t = thread_of(p, 1, "main");
    uint32_t fa[1024], known[2], leaf;
    struct profile_stats st;
    size_t added = 0;

    (void)state;
    for (uint32_t i = 0; i < 1024; i++) {
        char name[16];

        (void)snprintf(name, sizeof(name), "f%u", i);
        fa[i] = profile_frame_intern(p, name, "c.py", (int)i);
    }
    known[0] = fa[0];
    known[1] = fa[1];
    leaf = profile_add(p, t, known, 2, 1);
    for (uint32_t a = 0; a < 1024 && profile_nnodes(p) < PROFILE_MAX_NODES + 10; a++)
        for (uint32_t b = 0; b < 1024; b++) {
            uint32_t s[2] = {fa[a], fa[b]};

            (void)profile_add(p, t, s, 2, 1);
            added++;
        }
    profile_stats_get(p, &st);
    assert_true(st.nodes <= PROFILE_MAX_NODES + 2);
    assert_true(st.dropped_nodes > 0);
    assert_int_equal(st.samples, added + 1);
    assert_int_equal(profile_add(p, t, known, 2, 1), leaf);
    {
        uint32_t s[2] = {fa[1023], fa[1022]};
        uint32_t node = profile_add(p, t, s, 2, 1);

        assert_string_equal(profile_frame_get(p, profile_node_get(p, node)->frame)->function,
                            "[profile full]");
    }
    profile_free(p);
}

/* Past PROFILE_MAX_FRAMES, new frames become "[frames full]". */
static void test_frame_cap_placeholder(void **state)
{
    struct profile *p = new_profile();
    uint32_t id = 0;

    (void)state;
    for (int i = 0; i <= (int)PROFILE_MAX_FRAMES; i++)
        id = profile_frame_intern(p, "f", "cap.py", i);
    assert_string_equal(profile_frame_get(p, id)->function, "[frames full]");
    assert_true(profile_nframes(p) <= PROFILE_MAX_FRAMES + 4);
    profile_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_intern_dedups),
        cmocka_unit_test(test_trie_counts_and_stacks),
        cmocka_unit_test(test_threads_are_separate_roots),
        cmocka_unit_test(test_top_counts_recursion_once),
        cmocka_unit_test(test_merge_threads),
        cmocka_unit_test(test_reset_empties_and_bumps_generation),
        cmocka_unit_test(test_node_cap_overflow),
        cmocka_unit_test(test_frame_cap_placeholder),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
