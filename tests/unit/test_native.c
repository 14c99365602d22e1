/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the native module's pure parts: merging Python frames into a C stack (counts,
 * order, mismatches), the GIL verdict, and the address -> function index of symtab on this test
 * binary itself (a real ELF with .symtab).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "pyscope/native.h"
#include "pyscope/symtab.h"

static struct snap_native_frame nf(const char *sym)
{
    return (struct snap_native_frame){.symbol = sym, .python_frame = -1};
}

/* Two eval calls: frames 0-1 (entry at 1) and 2-4 (entry at 4), innermost first. */
static void test_merge_in_order(void **state)
{
    struct snap_frame frames[5] = {{.function = "inner"},
                                   {.function = "cb", .is_entry = true},
                                   {.function = "outer"},
                                   {.function = "run"},
                                   {.function = "<module>", .is_entry = true}};
    struct snap_native_frame native[6] = {nf("read"),     nf("_PyEval_EvalFrameDefault"),
                                          nf("nat_call"), nf("_PyEval_EvalFrameDefault.cold"),
                                          nf("main"),     nf(NULL)};
    struct snap_thread t = {.nframes = 5, .frames = frames, .nnative = 6, .native = native};
    struct ps_err err = {0};

    (void)state;
    assert_int_equal(native_merge(&t, &err), 0);
    assert_int_equal(native[0].python_frame, -1);
    assert_int_equal(native[1].python_frame, 0);
    assert_int_equal(native[2].python_frame, -1);
    assert_int_equal(native[3].python_frame, 2);
    assert_int_equal(native[5].python_frame, -1);
}

static void test_merge_mismatch_links_nothing(void **state)
{
    struct snap_frame frames[2] = {{.function = "f"}, {.function = "<module>", .is_entry = true}};
    struct snap_native_frame native[3] = {nf("_PyEval_EvalFrameDefault"),
                                          nf("_PyEval_EvalFrameDefault"), nf("main")};
    struct snap_thread t = {.nframes = 2, .frames = frames, .nnative = 3, .native = native};
    struct ps_err err = {0};

    (void)state;
    assert_int_equal(native_merge(&t, &err), -PS_ECORRUPT);
    assert_non_null(strstr(err.msg, "2 evaluation calls"));
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(native[i].python_frame, -1);
}

static void test_merge_no_python(void **state)
{
    struct snap_native_frame native[2] = {nf("epoll_wait"), nf("start_thread")};
    struct snap_thread t = {.nnative = 2, .native = native};
    struct ps_err err = {0};

    (void)state;
    assert_int_equal(native_merge(&t, &err), 0);
    /* A lookalike name is not the eval function. */
    native[0] = nf("_PyEval_EvalFrameDefaultX");
    assert_int_equal(native_merge(&t, &err), 0);
}

/* One OS thread, two interpreters: the deeper thread state (lower C-stack anchor) runs inside
 * the other, whatever their order in the snapshot. */
static void test_merge_nested_interpreters(void **state)
{
    struct snap_frame outer[2] = {{.function = "runner", .is_entry = true},
                                  {.function = "<module>", .is_entry = true}};
    struct snap_frame inner[1] = {{.function = "<string>", .is_entry = true}};
    struct snap_native_frame n0[4] = {nf("_PyEval_EvalFrameDefault"), nf("run_string"),
                                      nf("_PyEval_EvalFrameDefault"),
                                      nf("_PyEval_EvalFrameDefault")};
    struct snap_native_frame n1[4] = {nf("_PyEval_EvalFrameDefault"), nf("run_string"),
                                      nf("_PyEval_EvalFrameDefault"),
                                      nf("_PyEval_EvalFrameDefault")};
    struct snap_thread threads[2] = {{.native_id = 7,
                                      .nframes = 2,
                                      .frames = outer,
                                      .nnative = 4,
                                      .native = n0,
                                      .c_anchor = 0x7000},
                                     {.native_id = 7,
                                      .nframes = 1,
                                      .frames = inner,
                                      .nnative = 4,
                                      .native = n1,
                                      .c_anchor = 0x6000}};
    struct snap s = {.nthreads = 2, .threads = threads};
    struct ps_err err = {0};

    (void)state;
    assert_int_equal(native_merge_snapshot(&s, &err), 0);
    assert_null(threads[0].native_error);
    assert_int_equal(n0[0].python_frame, -1);
    assert_int_equal(n0[0].nested_thread, 1);
    assert_int_equal(n0[0].nested_frame, 0);
    assert_int_equal(n0[2].python_frame, 0);
    assert_int_equal(n0[3].python_frame, 1);
    assert_int_equal(n1[0].python_frame, 0);
    assert_int_equal(n1[2].nested_thread, 0);
    assert_int_equal(n1[3].nested_frame, 1);
    /* Alone, the outer thread state's stack does not add up. */
    assert_int_equal(native_merge(&threads[0], &err), -PS_ECORRUPT);
}

static void test_gil_verdict(void **state)
{
    struct snap_native_frame native[3] = {nf("__futex_abstimed_wait_common"), nf("take_gil"),
                                          nf("PyEval_RestoreThread")};
    struct snap_thread t = {.nnative = 3, .native = native};

    (void)state;
    assert_true(native_waits_for_gil(&t));
    native[1] = nf("take_gil_later");
    assert_false(native_waits_for_gil(&t));
}

/* A function of this binary, looked up by its own address through the index. */
static void test_symtab_addr_lookup(void **state)
{
    struct ps_err err = {0};
    struct symtab *st = NULL;
    uint64_t vaddr = 0, size = 0, start = 0;
    const char *name = NULL;

    (void)state;
    assert_int_equal(symtab_open("/proc/self/exe", &st, &err), 0);
    assert_int_equal(symtab_addr_lookup(st, 0, &name, &start), -ENOENT); /* no index yet */
    assert_int_equal(symtab_index_build(st, NULL, &err), 0);
    assert_int_equal(symtab_index_build(st, NULL, &err), 0); /* idempotent */
    assert_string_equal(symtab_index_source(st), ".symtab");
    assert_int_equal(symtab_lookup(st, "native_merge", &vaddr, &size), 0);
    assert_int_equal(symtab_addr_lookup(st, vaddr + size / 2, &name, &start), 0);
    assert_string_equal(name, "native_merge");
    assert_int_equal(start, vaddr);
    assert_int_equal(symtab_addr_lookup(st, 1, &name, &start), -ENOENT);
    symtab_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_merge_in_order),  cmocka_unit_test(test_merge_mismatch_links_nothing),
        cmocka_unit_test(test_merge_no_python), cmocka_unit_test(test_merge_nested_interpreters),
        cmocka_unit_test(test_gil_verdict),     cmocka_unit_test(test_symtab_addr_lookup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
