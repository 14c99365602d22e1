/* SPDX-License-Identifier: MIT */
/*
 * Tests for the memory sources: the live backend on this process and on a forked child (killed
 * and reaped in teardown), its errors (unmapped, exited, denied), the /proc/PID/mem path, forced
 * and as the fallback under a seccomp filter; the fixture (in memory and on file), the record
 * wrapper's round trip, the faulty wrapper, the caps and the counters.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "pyscope/memsrc.h"

/* Exit code of a checking child that could not set up its test (e.g. no seccomp): skip. */
#define CHILD_SKIP 77

static uint64_t addr_of(const void *p)
{
    return (uint64_t)(uintptr_t)p;
}

static struct memsrc *open_self(void)
{
    struct memsrc *src = NULL;
    struct ps_err err = {0};

    assert_int_equal(memsrc_live_open(getpid(), &src, &err), 0);
    assert_non_null(src);
    return src;
}

/* ---- a child that sleeps (setup / teardown) ----------------------------------------------- */

struct child {
    pid_t pid;
    unsigned char *buf; /* same virtual address in parent and child; contents differ */
};

#define CHILD_BUF 8192

static int child_setup(void **state)
{
    struct child *c = calloc(1, sizeof(*c));
    int fds[2];
    char ready = 0;

    if (!c || pipe(fds) < 0)
        return -1;
    c->buf = malloc(CHILD_BUF);
    memset(c->buf, 0x11, CHILD_BUF);
    c->pid = fork();
    if (c->pid == 0) {
        memset(c->buf, 0xc5, CHILD_BUF);
        memcpy(c->buf, "child!", 6);
        if (write(fds[1], "r", 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    (void)close(fds[1]);
    if (c->pid < 0 || read(fds[0], &ready, 1) != 1)
        return -1;
    (void)close(fds[0]);
    *state = c;
    return 0;
}

static void child_reap(struct child *c)
{
    if (c->pid > 0) {
        (void)kill(c->pid, SIGKILL);
        (void)waitpid(c->pid, NULL, 0);
        c->pid = 0;
    }
}

static int child_teardown(void **state)
{
    struct child *c = *state;

    child_reap(c);
    free(c->buf);
    free(c);
    return 0;
}

/* ---- live backend ------------------------------------------------------------------------- */

static void test_live_self(void **state)
{
    uint64_t word = 0x1122334455667788ULL;
    uint32_t half = 0xdeadbeefu;
    char text[] = "hello, target";
    char got[sizeof(text)] = {0};
    uint64_t w = 0;
    uint32_t h = 0;
    char desc[64];
    struct ps_err err = {0};
    struct memsrc *src = open_self();

    (void)state;
    assert_int_equal(memsrc_read(src, addr_of(text), got, sizeof(text), &err), 0);
    assert_string_equal(got, text);
    assert_int_equal(memsrc_read_u64(src, addr_of(&word), &w, &err), 0);
    assert_int_equal(w, word);
    assert_int_equal(memsrc_read_u32(src, addr_of(&half), &h, &err), 0);
    assert_int_equal(h, half);
    memsrc_describe(src, desc, sizeof(desc));
    assert_int_equal(strncmp(desc, "pid ", 4), 0);
    assert_int_equal(atoi(desc + 4), getpid());
    assert_int_equal(err.code, 0);
    memsrc_close(src);
}

static void test_live_scatter(void **state)
{
    unsigned char a[100], b[5000], c[3];
    unsigned char ga[100], gb[5000], gc[3];
    struct memsrc_iov iov[4] = {
        {addr_of(a), ga, sizeof(a)},
        {addr_of(b), gb, 0},
        {addr_of(b), gb, sizeof(b)},
        {addr_of(c), gc, sizeof(c)},
    };
    struct ps_err err = {0};
    struct memsrc *src = open_self();

    (void)state;
    for (size_t i = 0; i < sizeof(b); i++)
        b[i] = (unsigned char)(i * 7);
    memset(a, 0xa1, sizeof(a));
    memset(c, 0xc3, sizeof(c));
    assert_int_equal(memsrc_readv(src, iov, 4, &err), 0);
    assert_memory_equal(ga, a, sizeof(a));
    assert_memory_equal(gb, b, sizeof(b));
    assert_memory_equal(gc, c, sizeof(c));
    assert_int_equal(src->stats.calls, 1);
    assert_int_equal(src->stats.ranges, 4);
    assert_int_equal(src->stats.bytes, sizeof(a) + sizeof(b) + sizeof(c));
    assert_int_equal(src->stats.failures, 0);
    memsrc_close(src);
}

/* MEMSRC_MAX_IOV ranges in one call; one more is refused. */
static void test_live_max_iov(void **state)
{
    static struct memsrc_iov iov[MEMSRC_MAX_IOV + 1];
    uint32_t *vals = calloc(MEMSRC_MAX_IOV + 1, sizeof(*vals));
    uint32_t *got = calloc(MEMSRC_MAX_IOV + 1, sizeof(*got));
    struct ps_err err = {0};
    struct memsrc *src = open_self();

    (void)state;
    assert_non_null(vals);
    assert_non_null(got);
    for (size_t i = 0; i <= MEMSRC_MAX_IOV; i++) {
        vals[i] = (uint32_t)(i * 2654435761u);
        iov[i] = (struct memsrc_iov){addr_of(&vals[MEMSRC_MAX_IOV - i]), &got[i], 4};
    }
    assert_int_equal(memsrc_readv(src, iov, MEMSRC_MAX_IOV, &err), 0);
    for (size_t i = 0; i < MEMSRC_MAX_IOV; i++)
        assert_int_equal(got[i], vals[MEMSRC_MAX_IOV - i]);
    assert_int_equal(memsrc_readv(src, iov, MEMSRC_MAX_IOV + 1, &err), -EINVAL);
    assert_int_equal(err.code, -EINVAL);
    free(vals);
    free(got);
    memsrc_close(src);
}

static void test_live_child(void **state)
{
    struct child *c = *state;
    unsigned char got[CHILD_BUF];
    struct memsrc *src = NULL;
    struct ps_err err = {0};

    assert_int_equal(memsrc_live_open(c->pid, &src, &err), 0);
    assert_int_equal(src->pid, c->pid);
    assert_int_equal(memsrc_read(src, addr_of(c->buf), got, sizeof(got), &err), 0);
    assert_memory_equal(got, "child!", 6);
    assert_int_equal(got[CHILD_BUF - 1], 0xc5);
    assert_int_equal(c->buf[0], 0x11); /* our copy differs: the bytes came from the child */
    memsrc_close(src);

    memset(got, 0, sizeof(got));
    assert_int_equal(memsrc_live_open_procmem(c->pid, &src, &err), 0);
    assert_int_equal(memsrc_read(src, addr_of(c->buf) + 100, got, 16, &err), 0);
    assert_int_equal(got[0], 0xc5);
    memsrc_close(src);
}

/* A page followed by an unmapped one: reads that cross the boundary fail naming it. */
static unsigned char *map_edge(size_t *page)
{
    long ps = sysconf(_SC_PAGESIZE);
    unsigned char *p =
        mmap(NULL, 2 * (size_t)ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    assert_true(p != MAP_FAILED);
    assert_int_equal(munmap(p + ps, (size_t)ps), 0);
    memset(p, 0x5a, (size_t)ps);
    *page = (size_t)ps;
    return p;
}

static void check_faults(struct memsrc *src)
{
    size_t page = 0;
    unsigned char *p = map_edge(&page);
    unsigned char got[64];
    char want[64];
    struct ps_err err = {0};
    uint64_t u = 7;
    struct memsrc_iov iov[2] = {{addr_of(p), got, 8}, {0x10, got + 8, 8}};

    assert_int_equal(memsrc_read_u64(src, 0x10, &u, &err), -EFAULT);
    assert_int_equal(u, 7); /* out-param untouched */
    assert_non_null(strstr(err.msg, "0x10 "));
    ps_err_clear(&err);
    assert_int_equal(memsrc_read(src, addr_of(p + page - 8), got, 16, &err), -EFAULT);
    (void)snprintf(want, sizeof(want), "address 0x%" PRIx64 " ", addr_of(p + page));
    assert_non_null(strstr(err.msg, want));
    ps_err_clear(&err);
    assert_int_equal(memsrc_readv(src, iov, 2, &err), -EFAULT);
    assert_non_null(strstr(err.msg, "address 0x10 "));
    assert_int_equal(munmap(p, page), 0);
}

static void test_live_unmapped(void **state)
{
    struct memsrc *src = open_self();
    struct ps_err err = {0};

    (void)state;
    check_faults(src);
    assert_int_equal(src->stats.failures, 3);
    memsrc_close(src);
    assert_int_equal(memsrc_live_open_procmem(getpid(), &src, &err), 0);
    check_faults(src);
    memsrc_close(src);
}

static void test_live_procmem(void **state)
{
    uint64_t word = 0xfeedfacecafebeefULL;
    uint64_t w = 0;
    char desc[64];
    char want[64];
    struct memsrc *src = NULL;
    struct ps_err err = {0};

    (void)state;
    assert_int_equal(memsrc_live_open_procmem(getpid(), &src, &err), 0);
    assert_int_equal(memsrc_read_u64(src, addr_of(&word), &w, &err), 0);
    assert_int_equal(w, word);
    memsrc_describe(src, desc, sizeof(desc));
    (void)snprintf(want, sizeof(want), "/proc/%d/mem", (int)getpid());
    assert_non_null(strstr(desc, want));
    memsrc_close(src);
}

/* The child exits: a zombie reads as gone; once reaped, open says no such process. */
static void test_live_exited(void **state)
{
    struct memsrc *src = NULL;
    struct memsrc *pm = NULL;
    struct ps_err err = {0};
    siginfo_t si;
    uint64_t u;
    int go[2];
    pid_t pid;
    char c = 'x';

    (void)state;
    /* The child exits only once the parent has opened its /proc/PID/mem: on a busy machine it
     * could otherwise exit first, and a zombie's mem cannot be opened. */
    assert_int_equal(pipe(go), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        (void)close(go[1]);
        (void)!read(go[0], &c, 1);
        _exit(0);
    }
    (void)close(go[0]);
    assert_int_equal(memsrc_live_open_procmem(pid, &pm, &err), 0);
    assert_int_equal(write(go[1], &c, 1), 1);
    (void)close(go[1]);
    assert_int_equal(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT), 0);
    assert_int_equal(memsrc_live_open(pid, &src, &err), 0);
    assert_int_equal(memsrc_read_u64(src, addr_of(&u), &u, &err), -PS_EGONE);
    assert_non_null(strstr(err.msg, "exited"));
    ps_err_clear(&err);
    assert_int_equal(memsrc_read_u64(pm, addr_of(&u), &u, &err), -PS_EGONE);
    memsrc_close(src);
    memsrc_close(pm);
    assert_int_equal(waitpid(pid, NULL, 0), pid);
    ps_err_clear(&err);
    src = NULL;
    assert_int_equal(memsrc_live_open(pid, &src, &err), -ESRCH);
    assert_null(src);
    assert_int_equal(memsrc_live_open_procmem(pid, &src, &err), -ESRCH);
    assert_int_equal(memsrc_live_open(-1, &src, &err), -ESRCH);
}

/* A live source on the child; the child dies under it. */
static void test_live_child_dies(void **state)
{
    struct child *c = *state;
    struct memsrc *src = NULL;
    struct ps_err err = {0};
    uint64_t u;

    assert_int_equal(memsrc_live_open(c->pid, &src, &err), 0);
    assert_int_equal(memsrc_read_u64(src, addr_of(c->buf), &u, &err), 0);
    child_reap(c);
    assert_int_equal(memsrc_read_u64(src, addr_of(c->buf), &u, &err), -PS_EGONE);
    assert_int_equal(err.code, -PS_EGONE);
    memsrc_close(src);
}

/* In a child: make process_vm_readv fail with `e`, then read through a live source. */
static int seccomp_child(int e)
{
    struct sock_filter prog[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_process_vm_readv, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)e & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog fprog = {.len = sizeof(prog) / sizeof(prog[0]), .filter = prog};
    uint64_t word = 0x0123456789abcdefULL;
    uint64_t w = 0;
    char desc[64];
    struct memsrc *src = NULL;
    struct ps_err err = {0};

    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog, 0, 0) < 0)
        return CHILD_SKIP;
    if (memsrc_live_open(getpid(), &src, &err) < 0)
        return 1;
    if (memsrc_read_u64(src, addr_of(&word), &w, &err) < 0 || w != word)
        return 2;
    memsrc_describe(src, desc, sizeof(desc));
    memsrc_close(src);
    return strstr(desc, "/mem") ? 0 : 3;
}

static int run_child(int (*fn)(int), int arg)
{
    int status = 0;
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0)
        _exit(fn(arg));
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void test_live_fallback_seccomp(void **state)
{
    int rc;

    (void)state;
    rc = run_child(seccomp_child, EPERM);
    if (rc == CHILD_SKIP)
        skip();
    assert_int_equal(rc, 0);
    assert_int_equal(run_child(seccomp_child, ENOSYS), 0);
}

/* In a child that dropped root: reading the (root) parent is denied on both paths. */
static int denied_child(int unused)
{
    struct memsrc *src = NULL;
    struct ps_err err = {0};
    uint64_t u;

    (void)unused;
    if (setgid(65534) < 0 || setuid(65534) < 0)
        return CHILD_SKIP;
    if (memsrc_live_open(getppid(), &src, &err) < 0)
        return 1;
    if (memsrc_read_u64(src, addr_of(&u), &u, &err) != -EPERM)
        return 2;
    memsrc_close(src);
    return strstr(err.msg, "permission denied") ? 0 : 3;
}

static void test_live_denied(void **state)
{
    int rc;

    (void)state;
    if (geteuid() != 0)
        skip();
    rc = run_child(denied_child, 0);
    if (rc == CHILD_SKIP)
        skip();
    assert_int_equal(rc, 0);
}

/* ---- caps and counters -------------------------------------------------------------------- */

static void test_caps(void **state)
{
    struct memsrc *src = NULL;
    struct ps_err err = {0};
    unsigned char b[16];
    struct memsrc_iov iov[2] = {{0x1000, b, 8}, {0x2000, NULL, 8}};

    (void)state;
    assert_int_equal(memsrc_fixture_new(&src, &err), 0);
    assert_int_equal(memsrc_fixture_add(src, 0x1000, "abcdefgh", 8, &err), 0);
    assert_int_equal(memsrc_read(src, 0x1000, b, MEMSRC_MAX_READ + 1, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "cap"));
    ps_err_clear(&err);
    assert_int_equal(memsrc_readv(src, iov, MEMSRC_MAX_IOV + 1, &err), -EINVAL);
    ps_err_clear(&err);
    assert_int_equal(memsrc_readv(src, iov, 2, &err), -EINVAL);
    ps_err_clear(&err);
    assert_int_equal(memsrc_readv(src, NULL, 3, &err), -EINVAL);
    ps_err_clear(&err);
    assert_int_equal(memsrc_read(src, UINT64_MAX - 3, b, 8, &err), -EFAULT);
    ps_err_clear(&err);
    assert_int_equal(memsrc_readv(src, NULL, 0, &err), 0);
    assert_int_equal(memsrc_read(src, 0x1000, b, 8, &err), 0);
    assert_int_equal(memsrc_read(src, 0x5000, b, 0, &err), 0);
    assert_int_equal(memsrc_read(src, 0x1004, b, 8, &err), -EFAULT);
    assert_int_equal(src->stats.calls, 9);
    assert_int_equal(src->stats.failures, 6);
    assert_int_equal(src->stats.ranges, 3);
    assert_int_equal(src->stats.bytes, 16);
    assert_int_equal(memsrc_readv(NULL, iov, 1, &err), -EINVAL);
    memsrc_close(src);
}

static void test_describe_and_close(void **state)
{
    struct memsrc *src = NULL;
    struct ps_err err = {0};
    char tiny[5];

    (void)state;
    assert_int_equal(memsrc_fixture_new(&src, &err), 0);
    memset(tiny, 'x', sizeof(tiny));
    memsrc_describe(src, tiny, sizeof(tiny));
    assert_int_equal(strlen(tiny), 4);
    memsrc_describe(src, tiny, 0);
    memsrc_describe(NULL, tiny, sizeof(tiny));
    assert_string_equal(tiny, "");
    memsrc_close(src);
    memsrc_close(NULL);
}

/* ---- fixture ------------------------------------------------------------------------------ */

static void expect_bytes(struct memsrc *src, uint64_t addr, const char *want)
{
    char got[64] = {0};
    struct ps_err err = {0};
    size_t len = strlen(want);

    assert_true(len < sizeof(got));
    assert_int_equal(memsrc_read(src, addr, got, len, &err), 0);
    assert_string_equal(got, want);
}

static void expect_fault(struct memsrc *src, uint64_t addr, size_t len)
{
    char got[64];
    char want[32];
    struct ps_err err = {0};

    assert_true(len <= sizeof(got));
    assert_int_equal(memsrc_read(src, addr, got, len, &err), -EFAULT);
    (void)snprintf(want, sizeof(want), "at 0x%" PRIx64 " ", addr);
    assert_non_null(strstr(err.msg, want));
}

static void test_fixture_reads(void **state)
{
    struct memsrc *src = NULL;
    struct ps_err err = {0};
    unsigned char le[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    uint64_t u = 0;
    uint32_t h = 0;

    (void)state;
    assert_int_equal(memsrc_fixture_new(&src, &err), 0);
    assert_int_equal(src->pid, 0);
    assert_int_equal(memsrc_fixture_add(src, 0x2000, "ABCDEFGH", 8, &err), 0);
    assert_int_equal(memsrc_fixture_add(src, 0x1000, "abcdefgh", 8, &err), 0);
    assert_int_equal(memsrc_fixture_add(src, 0x3000, le, 8, &err), 0);
    expect_bytes(src, 0x1000, "abcdefgh");
    expect_bytes(src, 0x1003, "defgh");
    expect_bytes(src, 0x2007, "H");
    expect_fault(src, 0xfff, 2);
    expect_fault(src, 0x1007, 2);
    expect_fault(src, 0x1008, 1);
    expect_fault(src, 0x1800, 4);
    expect_fault(src, 0x3008, 1);
    expect_fault(src, 0, 1);
    assert_int_equal(memsrc_read_u64(src, 0x3000, &u, &err), 0);
    assert_int_equal(u, 0x0807060504030201ULL);
    assert_int_equal(memsrc_read_u32(src, 0x3004, &h, &err), 0);
    assert_int_equal(h, 0x08070605u);
    assert_int_equal(memsrc_fixture_add(src, 0x4000, NULL, 0, &err), 0);
    expect_fault(src, 0x4000, 1);
    memsrc_close(src);
}

static void test_fixture_merge(void **state)
{
    struct memsrc *src = NULL;
    struct memsrc *live = open_self();
    struct ps_err err = {0};

    (void)state;
    assert_int_equal(memsrc_fixture_new(&src, &err), 0);
    /* adjacent adds merge: a read across the seam is served */
    assert_int_equal(memsrc_fixture_add(src, 0x1000, "abcd", 4, &err), 0);
    assert_int_equal(memsrc_fixture_add(src, 0x1004, "efgh", 4, &err), 0);
    expect_bytes(src, 0x1002, "cdef");
    /* overlap: the later add wins */
    assert_int_equal(memsrc_fixture_add(src, 0x1006, "XYZW", 4, &err), 0);
    expect_bytes(src, 0x1000, "abcdefXYZW");
    /* inside one segment: overwrite in place */
    assert_int_equal(memsrc_fixture_add(src, 0x1001, "B", 1, &err), 0);
    expect_bytes(src, 0x1000, "aBcdefXYZW");
    /* one add touching A, covering B and overlapping C merges all three */
    assert_int_equal(memsrc_fixture_add(src, 0x1010, "1234", 4, &err), 0);
    assert_int_equal(memsrc_fixture_add(src, 0x1020, "5678", 4, &err), 0);
    expect_fault(src, 0x1008, 4);
    {
        char fill[0x18];

        memset(fill, '.', sizeof(fill));
        memcpy(fill + 6, "mid", 3);
        assert_int_equal(memsrc_fixture_add(src, 0x100a, fill, sizeof(fill), &err), 0);
    }
    expect_bytes(src, 0x1000, "aBcdefXYZW......mid.");
    expect_bytes(src, 0x1013, "...");
    expect_bytes(src, 0x1020, "..78");
    expect_fault(src, 0x1023, 2);
    /* extend the low end over the first byte */
    assert_int_equal(memsrc_fixture_add(src, 0x0ff8, "........!", 9, &err), 0);
    expect_bytes(src, 0x0ffe, "..!Bcdef");
    assert_int_equal(memsrc_fixture_add(live, 0x1000, "x", 1, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "live"));
    ps_err_clear(&err);
    assert_int_equal(memsrc_fixture_add(src, UINT64_MAX, "xy", 2, &err), -EINVAL);
    memsrc_close(live);
    memsrc_close(src);
}

/* ---- fixture files ------------------------------------------------------------------------ */

struct tmpdir {
    char dir[64];
    char path[128];
};

static int tmp_setup(void **state)
{
    struct tmpdir *t = calloc(1, sizeof(*t));

    if (!t)
        return -1;
    (void)snprintf(t->dir, sizeof(t->dir), "/tmp/pyscope-memsrc-XXXXXX");
    if (!mkdtemp(t->dir))
        return -1;
    (void)snprintf(t->path, sizeof(t->path), "%s/fixture.bin", t->dir);
    *state = t;
    return 0;
}

static int tmp_teardown(void **state)
{
    struct tmpdir *t = *state;
    char tmp[160];

    (void)snprintf(tmp, sizeof(tmp), "%s.tmp", t->path);
    (void)unlink(tmp);
    (void)unlink(t->path);
    (void)rmdir(t->dir);
    free(t);
    return 0;
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *fp = fopen(path, "wb");

    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

static void test_record_round_trip(void **state)
{
    struct tmpdir *t = *state;
    char text[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    char got[sizeof(text)] = {0};
    char other[16] = "not recorded";
    struct memsrc *rec = NULL;
    struct memsrc *fix = NULL;
    struct ps_err err = {0};
    char desc[256];
    struct memsrc_iov iov[2] = {{addr_of(text) + 20, got, 6}, {addr_of(text) + 4, got + 8, 6}};

    assert_int_equal(memsrc_record_wrap(open_self(), t->path, &rec, &err), 0);
    assert_int_equal(rec->pid, getpid());
    memsrc_describe(rec, desc, sizeof(desc));
    assert_non_null(strstr(desc, t->path));
    assert_int_equal(memsrc_read(rec, addr_of(text), got, 4, &err), 0);
    assert_int_equal(memsrc_readv(rec, iov, 2, &err), 0); /* [4,10) touches [0,4) */
    assert_int_equal(memsrc_read(rec, addr_of(text) + 8, got, 6, &err), 0); /* overlaps */
    assert_int_equal(memsrc_read(rec, 0x10, got, 4, &err), -EFAULT);        /* not kept */
    assert_int_equal(memsrc_record_flush(rec, &err), 0);
    assert_int_equal(memsrc_fixture_open(t->path, &fix, &err), 0);
    memset(got, 0, sizeof(got));
    assert_int_equal(memsrc_read(fix, addr_of(text), got, 14, &err), 0);
    assert_memory_equal(got, text, 14);
    assert_int_equal(memsrc_read(fix, addr_of(text) + 20, got, 6, &err), 0);
    assert_memory_equal(got, text + 20, 6);
    expect_fault(fix, addr_of(text) + 14, 1);
    expect_fault(fix, addr_of(text) + 19, 2);
    memsrc_close(fix);

    /* a later read reaches the file on close, without a flush */
    assert_int_equal(memsrc_read(rec, addr_of(other), got, sizeof(other), &err), 0);
    memsrc_close(rec);
    assert_int_equal(memsrc_fixture_open(t->path, &fix, &err), 0);
    expect_bytes(fix, addr_of(other), "not recorded");
    memsrc_describe(fix, desc, sizeof(desc));
    assert_non_null(strstr(desc, "fixture.bin"));
    memsrc_close(fix);
}

static void test_record_errors(void **state)
{
    struct tmpdir *t = *state;
    char bad[192];
    struct memsrc *inner = open_self();
    struct memsrc *rec = NULL;
    struct ps_err err = {0};

    (void)snprintf(bad, sizeof(bad), "%s/no/such/dir/f.bin", t->dir);
    assert_int_equal(memsrc_record_wrap(inner, bad, &rec, &err), -ENOENT);
    assert_null(rec);
    assert_int_equal(memsrc_record_flush(inner, &err), -EINVAL); /* not a recorder */
    memsrc_close(inner);                                         /* still ours */
    /* an empty recording is a valid, empty fixture */
    assert_int_equal(memsrc_record_wrap(open_self(), t->path, &rec, &err), 0);
    memsrc_close(rec);
    assert_int_equal(memsrc_fixture_open(t->path, &rec, &err), 0);
    expect_fault(rec, 0x1000, 1);
    memsrc_close(rec);
}

/* A valid two-segment file, then corruptions of it. */
static size_t good_file(unsigned char *f)
{
    static const unsigned char head[24] = {'P', 'Y', 'S', 'C', 'O', 'P', 'E', 'F', 1, 0, 0, 0,
                                           0,   0,   0,   0,   2,   0,   0,   0,   0, 0, 0, 0};
    static const unsigned char seg1[20] = {0x00, 0x10, 0, 0, 0, 0, 0,   0,   4,   0,
                                           0,    0,    0, 0, 0, 0, 'a', 'b', 'c', 'd'};
    static const unsigned char seg2[18] = {0x04, 0x10, 0, 0, 0, 0, 0, 0,   2,
                                           0,    0,    0, 0, 0, 0, 0, 'e', 'f'};

    memcpy(f, head, sizeof(head));
    memcpy(f + 24, seg1, sizeof(seg1));
    memcpy(f + 44, seg2, sizeof(seg2));
    return 62;
}

static int open_file(const char *path, const unsigned char *data, size_t len, struct ps_err *err)
{
    struct memsrc *src = NULL;
    int rc;

    write_file(path, data, len);
    ps_err_clear(err);
    rc = memsrc_fixture_open(path, &src, err);
    if (rc == 0)
        memsrc_close(src);
    else
        assert_null(src);
    return rc;
}

static void test_fixture_file_format(void **state)
{
    struct tmpdir *t = *state;
    unsigned char f[96];
    size_t n = good_file(f);
    struct memsrc *src = NULL;
    struct ps_err err = {0};

    write_file(t->path, f, n);
    assert_int_equal(memsrc_fixture_open(t->path, &src, &err), 0);
    expect_bytes(src, 0x1000, "abcdef"); /* adjacent segments merge on load */
    memsrc_close(src);
    assert_int_equal(open_file(t->path, f, n - 1, &err), -PS_EFORMAT); /* truncated data */
    assert_non_null(strstr(err.msg, "truncated"));
    assert_int_equal(open_file(t->path, f, 20, &err), -PS_EFORMAT); /* truncated header */
    f[n] = 0;
    assert_int_equal(open_file(t->path, f, n + 1, &err), -PS_EFORMAT); /* trailing byte */
    n = good_file(f);
    f[0] = 'X';
    assert_int_equal(open_file(t->path, f, n, &err), -PS_EFORMAT);
    assert_non_null(strstr(err.msg, "magic"));
    n = good_file(f);
    f[8] = 2;
    assert_int_equal(open_file(t->path, f, n, &err), -PS_EFORMAT);
    assert_non_null(strstr(err.msg, "version 2"));
    n = good_file(f);
    f[12] = 1;
    assert_int_equal(open_file(t->path, f, n, &err), -PS_EFORMAT);
    n = good_file(f);
    f[23] = 0x80; /* nseg absurd */
    assert_int_equal(open_file(t->path, f, n, &err), -PS_EFORMAT);
    n = good_file(f);
    f[44] = 0x02; /* second segment at 0x1002 overlaps the first */
    assert_int_equal(open_file(t->path, f, n, &err), -PS_EFORMAT);
    n = good_file(f);
    f[32] = 0; /* empty first segment */
    assert_int_equal(open_file(t->path, f, n, &err), -PS_EFORMAT);
    n = good_file(f);
    f[39] = 0x7f; /* first segment longer than the file */
    assert_int_equal(open_file(t->path, f, n, &err), -PS_EFORMAT);
    (void)unlink(t->path);
    ps_err_clear(&err);
    assert_int_equal(memsrc_fixture_open(t->path, &src, &err), -ENOENT);
    assert_int_equal(memsrc_fixture_open(t->dir, &src, &err), -PS_EFORMAT);
}

/* ---- faulty ------------------------------------------------------------------------------- */

static struct memsrc *fixture_abc(void)
{
    struct memsrc *src = NULL;
    struct ps_err err = {0};

    assert_int_equal(memsrc_fixture_new(&src, &err), 0);
    assert_int_equal(memsrc_fixture_add(src, 0x1000, "abcdefghijklmnop", 16, &err), 0);
    return src;
}

static struct memsrc *faulty(enum memsrc_fault kind, uint64_t nth, uint64_t every, uint64_t seed)
{
    struct memsrc *src = NULL;
    struct ps_err err = {0};

    assert_int_equal(memsrc_faulty_wrap(fixture_abc(), kind, nth, every, seed, &src, &err), 0);
    return src;
}

/* Read range k (1-based) of 8 bytes; return 0, or the error. */
static int faulty_read(struct memsrc *src, char *got)
{
    struct ps_err err = {0};

    memset(got, '?', 8);
    return memsrc_read(src, 0x1000, got, 8, &err);
}

static void test_faulty_fail(void **state)
{
    struct memsrc *src = faulty(MEMSRC_FAULT_FAIL, 3, 4, 0);
    char got[8];
    char iovbuf[16];
    struct ps_err err = {0};
    struct memsrc_iov iov[2] = {{0x1000, iovbuf, 8}, {0x1008, iovbuf + 8, 8}};
    char desc[64];

    (void)state;
    /* hits: ranges 3, 7, 11, 15, ... */
    for (uint64_t k = 1; k <= 9; k++)
        assert_int_equal(faulty_read(src, got), (k == 3 || k == 7) ? -EFAULT : 0);
    assert_int_equal(memsrc_faulty_count(src), 9);
    assert_int_equal(memsrc_readv(src, iov, 2, &err), -EFAULT); /* ranges 10, 11 */
    assert_non_null(strstr(err.msg, "injected"));
    assert_non_null(strstr(err.msg, "0x1008"));
    ps_err_clear(&err);
    assert_int_equal(memsrc_readv(src, iov, 2, &err), 0); /* 12, 13 */
    assert_memory_equal(iovbuf, "abcdefghijklmnop", 16);
    assert_int_equal(memsrc_faulty_count(src), 13);
    assert_int_equal(src->stats.failures, 3);
    memsrc_describe(src, desc, sizeof(desc));
    assert_non_null(strstr(desc, "faulty"));
    memsrc_close(src);
}

static void test_faulty_once_and_never(void **state)
{
    struct memsrc *src = faulty(MEMSRC_FAULT_FAIL, 2, 0, 0);
    char got[8];

    (void)state;
    assert_int_equal(faulty_read(src, got), 0);
    assert_int_equal(faulty_read(src, got), -EFAULT);
    for (int k = 0; k < 10; k++)
        assert_int_equal(faulty_read(src, got), 0);
    memsrc_close(src);
    src = faulty(MEMSRC_FAULT_FAIL, 0, 1, 0);
    for (int k = 0; k < 10; k++)
        assert_int_equal(faulty_read(src, got), 0);
    assert_int_equal(memsrc_faulty_count(src), 10);
    memsrc_close(src);
    src = fixture_abc();
    assert_int_equal(memsrc_faulty_count(src), 0);
    assert_int_equal(memsrc_faulty_count(NULL), 0);
    memsrc_close(src);
}

static void test_faulty_zero_garble(void **state)
{
    struct memsrc *z = faulty(MEMSRC_FAULT_ZERO, 1, 1, 0);
    struct memsrc *g1 = faulty(MEMSRC_FAULT_GARBLE, 2, 0, 42);
    struct memsrc *g2 = faulty(MEMSRC_FAULT_GARBLE, 2, 0, 42);
    char got[8];
    char got2[8];
    static const char zeros[8] = {0};

    (void)state;
    assert_int_equal(faulty_read(z, got), 0);
    assert_memory_equal(got, zeros, 8);
    assert_int_equal(faulty_read(z, got), 0);
    assert_memory_equal(got, zeros, 8);
    assert_int_equal(faulty_read(g1, got), 0);
    assert_memory_equal(got, "abcdefgh", 8);
    assert_int_equal(faulty_read(g1, got), 0);
    assert_memory_not_equal(got, "abcdefgh", 8);
    assert_int_equal(faulty_read(g2, got2), 0);
    assert_int_equal(faulty_read(g2, got2), 0);
    assert_memory_equal(got, got2, 8); /* same seed, same bytes */
    assert_int_equal(faulty_read(g1, got), 0);
    assert_memory_equal(got, "abcdefgh", 8);
    memsrc_close(z);
    memsrc_close(g1);
    memsrc_close(g2);
}

static void test_faulty_errors(void **state)
{
    struct memsrc *inner = fixture_abc();
    struct memsrc *src = NULL;
    struct ps_err err = {0};
    char got[8];

    (void)state;
    assert_int_equal(memsrc_faulty_wrap(inner, (enum memsrc_fault)99, 1, 0, 0, &src, &err),
                     -EINVAL);
    assert_int_equal(memsrc_faulty_wrap(NULL, MEMSRC_FAULT_FAIL, 1, 0, 0, &src, &err), -EINVAL);
    assert_null(src);
    /* an inner failure passes through a ZERO wrapper */
    assert_int_equal(memsrc_faulty_wrap(inner, MEMSRC_FAULT_ZERO, 1, 0, 0, &src, &err), 0);
    ps_err_clear(&err);
    assert_int_equal(memsrc_read(src, 0x2000, got, 8, &err), -EFAULT);
    assert_int_equal(inner->stats.failures, 1);
    memsrc_close(src);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_live_self),
        cmocka_unit_test(test_live_scatter),
        cmocka_unit_test(test_live_max_iov),
        cmocka_unit_test_setup_teardown(test_live_child, child_setup, child_teardown),
        cmocka_unit_test(test_live_unmapped),
        cmocka_unit_test(test_live_procmem),
        cmocka_unit_test(test_live_exited),
        cmocka_unit_test_setup_teardown(test_live_child_dies, child_setup, child_teardown),
        cmocka_unit_test(test_live_fallback_seccomp),
        cmocka_unit_test(test_live_denied),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_describe_and_close),
        cmocka_unit_test(test_fixture_reads),
        cmocka_unit_test(test_fixture_merge),
        cmocka_unit_test_setup_teardown(test_record_round_trip, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_record_errors, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_fixture_file_format, tmp_setup, tmp_teardown),
        cmocka_unit_test(test_faulty_fail),
        cmocka_unit_test(test_faulty_once_and_never),
        cmocka_unit_test(test_faulty_zero_garble),
        cmocka_unit_test(test_faulty_errors),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
