/* SPDX-License-Identifier: MIT */
/*
 * Tests for the /proc/PID/maps parser: text fixtures (paths with spaces, " (deleted)",
 * anonymous and special mappings, malformed and over-long lines, the entry cap), the queries
 * (find, readable across adjacent entries, find_lib, first_of), and the real /proc/self/maps.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "pyscope/maps.h"

static const char sample[] =
    "00400000-00452000 r-xp 00000000 08:02 173521                     /usr/bin/python3.12\n"
    "00651000-00652000 r--p 00051000 08:02 173521                     /usr/bin/python3.12\n"
    "00652000-00655000 rw-p 00052000 08:02 173521                     /usr/bin/python3.12\n"
    "00e03000-00e24000 rw-p 00000000 00:00 0                          [heap]\n"
    "7f0000000000-7f0000021000 rw-p 00000000 00:00 0 \n"
    "7f1000000000-7f1000001000 r--p 00000000 fd:01 99                 /usr/lib/libpython3.so\n"
    "7f1c30000000-7f1c30200000 r--p 00000000 fd:01 4242               "
    "/opt/My Python/lib/libpython3.12.so.1.0\n"
    "7f1c30200000-7f1c30500000 r-xp 00200000 fd:01 4242               "
    "/opt/My Python/lib/libpython3.12.so.1.0\n"
    "7f1c30500000-7f1c30501000 ---p 00500000 fd:01 4242               "
    "/opt/My Python/lib/libpython3.12.so.1.0\n"
    "7f1c30600000-7f1c30601000 rw-s 00000000 00:01 77                 /memfd:shm (deleted)\n"
    "7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                  [stack]\n"
    "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0          [vsyscall]";

static void parse_ok(const char *text, struct maps *m)
{
    struct ps_err err = {0};

    assert_int_equal(maps_parse(text, strlen(text), m, &err), 0);
    assert_int_equal(err.code, 0);
}

static int parse_err(const char *text, struct ps_err *err)
{
    struct maps m = {.v = NULL, .n = 12345};
    int rc;

    ps_err_clear(err);
    rc = maps_parse(text, strlen(text), &m, err);
    assert_int_equal(m.n, 12345); /* out-param untouched on failure */
    assert_int_equal(err->code, rc);
    return rc;
}

static void test_parse_fields(void **state)
{
    struct maps m;

    (void)state;
    parse_ok(sample, &m);
    assert_int_equal(m.n, 12);
    assert_int_equal(m.v[0].start, 0x400000);
    assert_int_equal(m.v[0].end, 0x452000);
    assert_true(m.v[0].r && !m.v[0].w && m.v[0].x && m.v[0].p);
    assert_int_equal(m.v[1].offset, 0x51000);
    assert_int_equal(m.v[1].dev_major, 8);
    assert_int_equal(m.v[1].dev_minor, 2);
    assert_int_equal(m.v[1].inode, 173521);
    assert_string_equal(m.v[0].path, "/usr/bin/python3.12");
    assert_string_equal(m.v[3].path, "[heap]");
    assert_string_equal(m.v[4].path, "");
    assert_string_equal(m.v[6].path, "/opt/My Python/lib/libpython3.12.so.1.0");
    assert_int_equal(m.v[6].dev_major, 0xfd);
    assert_false(m.v[8].r);
    assert_string_equal(m.v[9].path, "/memfd:shm");
    assert_true(m.v[9].deleted);
    assert_false(m.v[9].p);
    assert_false(m.v[6].deleted);
    assert_int_equal(m.v[11].start, 0xffffffffff600000ULL);
    maps_free(&m);
    assert_null(m.v);
    assert_int_equal(m.n, 0);
    maps_free(&m);
    maps_free(NULL);
}

static void test_parse_empty_and_blank(void **state)
{
    struct maps m;

    (void)state;
    parse_ok("", &m);
    assert_int_equal(m.n, 0);
    maps_free(&m);
    parse_ok("\n\n00001000-00002000 r--p 00000000 00:00 0\n\n", &m);
    assert_int_equal(m.n, 1);
    assert_string_equal(m.v[0].path, "");
    maps_free(&m);
}

static void test_parse_malformed(void **state)
{
    static const char *const bad[] = {
        "zzzz-2000 r--p 00000000 00:00 0\n",
        "1000 r--p 00000000 00:00 0\n",
        "1000-2000 rwzp 00000000 00:00 0\n",
        "1000-2000 r--q 00000000 00:00 0\n",
        "1000-2000 r--p 00000000 0000 0\n",
        "1000-2000 r--p 00000000 00:00 x\n",
        "1000-2000 r--p 00000000 00:00 12x /a\n",
        "1000-2000 r--p 00000000 00:00 99999999999999999999999\n",
        "10000000000000000-10000000000000001 r--p 00000000 00:00 0\n",
        "2000-1000 r--p 00000000 00:00 0\n",
        "2000-2000 r--p 00000000 00:00 0\n",
        "1000-2000  r--p 00000000 00:00 0\n",
        "1000-2000 r--p\n",
    };
    struct ps_err err;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(parse_err(bad[i], &err), -PS_EFORMAT);
        assert_non_null(strstr(err.msg, "maps line 1 "));
    }
    assert_int_equal(parse_err("1000-2000 r--p 00000000 00:00 0\n"
                               "1800-3000 r--p 00000000 00:00 0\n",
                               &err),
                     -PS_EFORMAT);
    assert_non_null(strstr(err.msg, "line 2 "));
    assert_non_null(strstr(err.msg, "overlapping"));
    assert_int_equal(parse_err("3000-4000 r--p 00000000 00:00 0\n\n"
                               "1000-2000 r--p 00000000 00:00 0\n",
                               &err),
                     -PS_EFORMAT);
    assert_non_null(strstr(err.msg, "line 3 "));
}

static void test_parse_long_lines(void **state)
{
    size_t plen = 3 * MAPS_PATH_MAX;
    size_t cap = plen + 128;
    char *text = malloc(cap);
    struct maps m;
    struct ps_err err;
    int off;

    (void)state;
    assert_non_null(text);
    off = snprintf(text, cap, "1000-2000 r--p 00000000 00:00 7 /");
    memset(text + off, 'a', plen);
    (void)snprintf(text + off + plen, cap - (size_t)off - plen, " (deleted)\n");
    parse_ok(text, &m);
    assert_int_equal(m.n, 1);
    assert_int_equal(strlen(m.v[0].path), MAPS_PATH_MAX - 1);
    assert_true(m.v[0].deleted);
    maps_free(&m);

    memset(text, 'x', cap - 1);
    text[cap - 1] = '\0';
    assert_int_equal(parse_err(text, &err), -PS_EFORMAT);
    assert_true(strlen(err.msg) < 300); /* the quote of the bad line is bounded */
    assert_non_null(strstr(err.msg, "..."));
    free(text);
}

static void test_parse_entry_cap(void **state)
{
    size_t line = 64;
    size_t cap = (MAPS_MAX_ENTRIES + 1) * line + 1;
    char *text = malloc(cap);
    size_t len = 0;
    struct maps m;
    struct ps_err err = {0};

    (void)state;
    assert_non_null(text);
    for (uint64_t i = 0; i < MAPS_MAX_ENTRIES; i++)
        len += (size_t)snprintf(text + len, cap - len,
                                "%" PRIx64 "-%" PRIx64 " r--p 00000000 00:00 0\n", (i + 1) * 0x1000,
                                (i + 2) * 0x1000);
    assert_int_equal(maps_parse(text, len, &m, &err), 0);
    assert_int_equal(m.n, MAPS_MAX_ENTRIES);
    maps_free(&m);
    len += (size_t)snprintf(text + len, cap - len, "f0000000000-f0000001000 r--p 0 00:00 0\n");
    assert_int_equal(maps_parse(text, len, &m, &err), -PS_ELIMIT);
    assert_int_equal(err.code, -PS_ELIMIT);
    free(text);
}

static void test_find(void **state)
{
    struct maps m;

    (void)state;
    parse_ok(sample, &m);
    assert_null(maps_find(&m, 0));
    assert_null(maps_find(&m, 0x3fffff));
    assert_ptr_equal(maps_find(&m, 0x400000), &m.v[0]);
    assert_ptr_equal(maps_find(&m, 0x451fff), &m.v[0]);
    assert_null(maps_find(&m, 0x452000));
    assert_ptr_equal(maps_find(&m, 0x651000), &m.v[1]);
    assert_ptr_equal(maps_find(&m, 0x652000), &m.v[2]);
    assert_ptr_equal(maps_find(&m, 0xffffffffff600fffULL), &m.v[11]);
    assert_null(maps_find(&m, UINT64_MAX));
    assert_null(maps_find(NULL, 0x400000));
    maps_free(&m);
}

static void test_readable(void **state)
{
    struct maps m;

    (void)state;
    parse_ok(sample, &m);
    assert_true(maps_readable(&m, 0x400000, 0x52000));
    assert_false(maps_readable(&m, 0x400000, 0x52001));
    /* 0x651000..0x655000 spans two adjacent readable entries */
    assert_true(maps_readable(&m, 0x651ff0, 0x20));
    assert_true(maps_readable(&m, 0x651000, 0x4000));
    assert_false(maps_readable(&m, 0x651000, 0x4001));
    /* the r-x part runs into a ---p guard */
    assert_true(maps_readable(&m, 0x7f1c301ffff0, 0x10 + 0x300000));
    assert_false(maps_readable(&m, 0x7f1c304ffff0, 0x20));
    assert_false(maps_readable(&m, 0x7f1c30500000, 1));
    assert_false(maps_readable(&m, 0xffffffffff600000ULL, 8)); /* --xp */
    assert_false(maps_readable(&m, 0x10, 8));
    assert_false(maps_readable(&m, UINT64_MAX - 4, 8));
    assert_true(maps_readable(&m, 0x10, 0));
    assert_false(maps_readable(NULL, 0x400000, 8));
    maps_free(&m);
}

static void test_find_lib(void **state)
{
    struct maps m;
    const struct maps_entry *e;

    (void)state;
    parse_ok(sample, &m);
    e = maps_find_lib(&m, "libpython3.");
    assert_ptr_equal(e, &m.v[6]); /* not libpython3.so, which is mapped lower */
    assert_ptr_equal(maps_find_lib(&m, "libpython3.12"), &m.v[6]);
    assert_null(maps_find_lib(&m, "libpython3.11"));
    assert_null(maps_find_lib(&m, "python3.12")); /* the executable is no .so */
    assert_null(maps_find_lib(NULL, "libpython3."));
    assert_null(maps_find_lib(&m, NULL));
    maps_free(&m);

    parse_ok("1000-2000 r-xp 00001000 08:01 5 /lib/libpython3.12.so.1.0\n"
             "3000-4000 r--p 00000000 08:01 6 /x/libpython3.13d.so (deleted)\n",
             &m);
    e = maps_find_lib(&m, "libpython3.");
    assert_ptr_equal(e, &m.v[1]); /* offset 0 required; deleted libraries count */
    assert_true(e->deleted);
    assert_string_equal(e->path, "/x/libpython3.13d.so");
    maps_free(&m);
}

static void test_first_of(void **state)
{
    struct maps m;

    (void)state;
    parse_ok(sample, &m);
    assert_ptr_equal(maps_first_of(&m, "/usr/bin/python3.12"), &m.v[0]);
    assert_ptr_equal(maps_first_of(&m, "/opt/My Python/lib/libpython3.12.so.1.0"), &m.v[6]);
    assert_ptr_equal(maps_first_of(&m, "/memfd:shm"), &m.v[9]);
    assert_null(maps_first_of(&m, "/usr/bin/python3"));
    assert_null(maps_first_of(&m, NULL));
    maps_free(&m);
}

static void test_read_self(void **state)
{
    struct maps m;
    struct ps_err err = {0};
    int local = 1;
    char exe[MAPS_PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    const struct maps_entry *e;

    (void)state;
    assert_true(n > 0);
    exe[n] = '\0';
    assert_int_equal(maps_read(getpid(), &m, &err), 0);
    assert_true(m.n > 5);
    e = maps_find(&m, (uint64_t)(uintptr_t)&local);
    assert_non_null(e);
    assert_string_equal(e->path, "[stack]");
    assert_true(maps_readable(&m, (uint64_t)(uintptr_t)&local, sizeof(local)));
    e = maps_find(&m, (uint64_t)(uintptr_t)test_read_self);
    assert_non_null(e);
    assert_true(e->x);
    assert_string_equal(e->path, exe);
    assert_non_null(maps_first_of(&m, exe));
    for (size_t i = 1; i < m.n; i++)
        assert_true(m.v[i - 1].end <= m.v[i].start);
    maps_free(&m);
}

static void test_read_errors(void **state)
{
    struct maps m = {.v = NULL, .n = 7};
    struct ps_err err = {0};
    pid_t pid = fork();

    (void)state;
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(0);
    assert_int_equal(waitpid(pid, NULL, 0), pid);
    assert_int_equal(maps_read(pid, &m, &err), -ESRCH);
    assert_non_null(strstr(err.msg, "no process"));
    ps_err_clear(&err);
    assert_int_equal(maps_read(0, &m, &err), -ESRCH);
    assert_int_equal(m.n, 7);
}

/* A child that maps and unmaps all the time, as a process starting and ending threads does: a
 * page of a few hundred mappings, each reshaped in turn (unmapped, mapped again at a size that
 * joins or splits its neighbours). It writes one byte when its mappings are set up. */
static pid_t churner(void)
{
    enum {
        N = 400,
        PAGE = 4096
    };
    int fds[2];
    pid_t pid;
    char c = 1;

    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char *base;

        (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
        base = mmap(NULL, (size_t)2 * N * PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (base == MAP_FAILED)
            _exit(1);
        for (int i = 0; i < 2 * N; i += 2) /* a hole after each: N separate lines */
            (void)mprotect(base + (size_t)i * PAGE, PAGE, PROT_READ | PROT_WRITE);
        if (write(fds[1], &c, 1) != 1)
            _exit(1);
        for (unsigned k = 0;; k++) {
            char *at = base + (size_t)(k % (2 * N)) * PAGE;

            (void)mprotect(at, PAGE, (k / (2 * N)) % 2 ? PROT_READ : PROT_READ | PROT_WRITE);
        }
    }
    (void)close(fds[1]);
    assert_int_equal(read(fds[0], &c, 1), 1);
    (void)close(fds[0]);
    return pid;
}

/* Reading the maps of a process that keeps changing them: every read must succeed (a line of a
 * read the kernel tore between two pages overlaps the one before it: the newer view wins),
 * ascending and disjoint. One try at the strict parse failed 2 of 4 runs of this test. */
static void test_read_while_mappings_change(void **state)
{
    pid_t pid = churner();
    int status;

    (void)state;
    for (int i = 0; i < 2000; i++) {
        struct maps m = {0};
        struct ps_err err = {0};

        if (maps_read(pid, &m, &err) != 0)
            fail_msg("read %d: %s", i, err.msg);
        for (size_t k = 1; k < m.n; k++)
            assert_true(m.v[k].start >= m.v[k - 1].end);
        maps_free(&m);
    }
    assert_int_equal(kill(pid, SIGKILL), 0);
    assert_int_equal(waitpid(pid, &status, 0), pid);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_fields),    cmocka_unit_test(test_parse_empty_and_blank),
        cmocka_unit_test(test_parse_malformed), cmocka_unit_test(test_parse_long_lines),
        cmocka_unit_test(test_parse_entry_cap), cmocka_unit_test(test_find),
        cmocka_unit_test(test_readable),        cmocka_unit_test(test_find_lib),
        cmocka_unit_test(test_first_of),        cmocka_unit_test(test_read_self),
        cmocka_unit_test(test_read_errors),     cmocka_unit_test(test_read_while_mappings_change),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
