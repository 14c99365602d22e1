/* SPDX-License-Identifier: MIT */
/*
 * tfile tests: names a hostile target could choose, resolved inside a directory tree built
 * here (a "root" beside an "outside" secret): absolute, relative and ".." symlinks, ".." names,
 * a symlink loop, links that stay inside. The by-hand walk (kernels without openat2) must
 * reach the same file as openat2 RESOLVE_IN_ROOT, or fail where it fails; FIFOs are refused
 * without blocking.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "pyscope/tfile.h"

struct tree {
    char top[64];
    char root[96];
    char secret[96];
    int rootfd;
};

static void put(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
}

static void link_at(const struct tree *t, const char *to, const char *name)
{
    char path[256];

    (void)snprintf(path, sizeof(path), "%s%s", t->root, name);
    assert_int_equal(symlink(to, path), 0);
}

static int setup(void **state)
{
    struct tree *t = calloc(1, sizeof(*t));
    char path[256], to[256];

    assert_non_null(t);
    (void)snprintf(t->top, sizeof(t->top), "/tmp/pyscope-tfile.XXXXXX");
    assert_non_null(mkdtemp(t->top));
    (void)snprintf(t->root, sizeof(t->root), "%s/root", t->top);
    (void)snprintf(t->secret, sizeof(t->secret), "%s/secret.txt", t->top);
    assert_int_equal(mkdir(t->root, 0755), 0);
    (void)snprintf(path, sizeof(path), "%s/app", t->root);
    assert_int_equal(mkdir(path, 0755), 0);
    put(t->secret, "SECRET\n");
    (void)snprintf(path, sizeof(path), "%s/app/real.py", t->root);
    put(path, "inside\n");
    link_at(t, t->secret, "/app/abs");          /* the host's file, by absolute path */
    link_at(t, "../../secret.txt", "/app/rel"); /* climbing out of the root */
    link_at(t, "../../../../../../secret.txt", "/app/far");
    link_at(t, "/app/real.py", "/app/inside"); /* absolute, but inside: followed */
    link_at(t, "/app", "/app/dir");
    link_at(t, "loop", "/app/loop");
    (void)snprintf(to, sizeof(to), "/proc/self/root%s", t->secret);
    link_at(t, to, "/app/magic"); /* a magic link on the way */
    (void)snprintf(path, sizeof(path), "%s/app/fifo", t->root);
    assert_int_equal(mkfifo(path, 0644), 0);
    t->rootfd = open(t->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    assert_true(t->rootfd >= 0);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    struct tree *t = *state;
    char cmd[128];

    (void)close(t->rootfd);
    (void)snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->top);
    assert_int_equal(system(cmd), 0);
    free(t);
    return 0;
}

/* What the file opened for name holds ("" when nothing was opened). */
static const char *content(int fd, char *buf, size_t cap)
{
    ssize_t n = fd >= 0 ? read(fd, buf, cap - 1) : 0;

    buf[n > 0 ? n : 0] = '\0';
    if (fd >= 0)
        (void)close(fd);
    return buf;
}

static void test_names_stay_in_the_root(void **state)
{
    struct tree *t = *state;
    static const char *const inside[] = {"/app/real.py", "/app/inside", "/app/dir/real.py",
                                         "/../../app/./real.py", "/app/../app/dir/inside"};
    char name[256], buf[64];
    const char *outside[] = {"/app/abs", "/app/rel", "/app/far", "/app/magic", name};

    (void)snprintf(name, sizeof(name), "/../../../..%s", t->secret);
    for (size_t i = 0; i < sizeof(inside) / sizeof(inside[0]); i++) {
        assert_string_equal(
            content(tfile_open_in_root_compat(t->rootfd, inside[i]), buf, sizeof(buf)), "inside\n");
        assert_string_equal(
            content(tfile_open_as(t->rootfd, inside[i], NULL, NULL), buf, sizeof(buf)), "inside\n");
    }
    for (size_t i = 0; i < sizeof(outside) / sizeof(outside[0]); i++) {
        assert_true(tfile_open_in_root_compat(t->rootfd, outside[i]) < 0);
        assert_true(tfile_open_as(t->rootfd, outside[i], NULL, NULL) < 0);
    }
    assert_int_equal(tfile_open_in_root_compat(t->rootfd, "/app/loop"), -ELOOP);
    assert_int_equal(tfile_open_in_root_compat(t->rootfd, "/"), -EISDIR);
    assert_int_equal(tfile_open_as(t->rootfd, "/app", NULL, NULL), -PS_EFORMAT);
}

static void test_fifos_are_refused_without_blocking(void **state)
{
    struct tree *t = *state;
    struct ps_err err = {0};
    char path[256];

    (void)snprintf(path, sizeof(path), "%s/app/fifo", t->root);
    assert_int_equal(tfile_open_regular(path, "library", &err), -PS_EFORMAT);
    assert_non_null(strstr(err.msg, "it is a FIFO, not a regular file"));
    assert_int_equal(tfile_open_as(t->rootfd, "/app/fifo", NULL, NULL), -PS_EFORMAT);
    assert_int_equal(tfile_open_regular("/dev/null", "core", NULL), -PS_EFORMAT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_names_stay_in_the_root, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fifos_are_refused_without_blocking, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
