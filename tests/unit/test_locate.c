/* SPDX-License-Identifier: MIT */
/*
 * locate tests against real processes: each reference interpreter is spawned with its stdout on
 * a pipe, prints its own version and "ready", and parks; the test then reads its maps, locates
 * the runtime and checks the result against what the interpreter said about itself and against
 * its memory (type names read through the resolved PyCode_Type/PyUnicode_Type, 3.13's
 * _Py_DebugOffsets cookie). Exec completion and readiness are observed on pipes, never by
 * sleeping (the only bound is the hang guard of support/guard.h). Children park until killed and
 * reaped in teardown, or until the test binary dies (PR_SET_PDEATHSIG). A missing interpreter
 * fails under CI=true and skips otherwise.
 */
#include "pyscope/locate.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "guard.h"
#include "pyscope/layout.h"
#include "pyscope/procstat.h"

#define PYENV     "/root/.pyenv/versions/"
#define DEBIAN_PY "/usr/bin/python3.11"

static const char py_script[] =
    "import signal,sys; sys.stdout.write('%s %d\\n' % (sys.version.split()[0], sys.hexversion)); "
    "sys.stdout.write('ready\\n'); sys.stdout.flush(); signal.pause()";

struct fixture {
    pid_t pid;
    int out;        /* read end of the child's stdout */
    char line[512]; /* what the child printed before "ready" */
    char copy[64];  /* a temporary copy of an interpreter to delete, or "" */
    struct maps maps;
    struct locate_info *info;
    struct ps_err err;
};

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));

    if (!fx)
        return -1;
    fx->info = calloc(1, sizeof(*fx->info));
    if (!fx->info) {
        free(fx);
        return -1;
    }
    fx->pid = -1;
    fx->out = -1;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;

    if (fx->pid > 0) {
        (void)kill(fx->pid, SIGKILL);
        (void)waitpid(fx->pid, NULL, 0);
    }
    if (fx->out >= 0)
        (void)close(fx->out);
    if (fx->copy[0])
        (void)unlink(fx->copy);
    maps_free(&fx->maps);
    free(fx->info);
    free(fx);
    return 0;
}

static void require_interp(const char *path)
{
    const char *ci = getenv("CI");

    if (access(path, X_OK) == 0)
        return;
    if (ci && strcmp(ci, "true") == 0)
        fail_msg("%s is missing and CI=true: install the reference interpreters", path);
    skip();
}

/*
 * Fork and exec argv with stdout on a pipe. Returns once exec has happened: a CLOEXEC pipe
 * reports an exec failure as an errno, success as EOF.
 */
static void spawn(struct fixture *fx, char *const argv[])
{
    int out[2], ex[2], e = 0;
    ssize_t n;

    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    assert_int_equal(pipe2(ex, O_CLOEXEC), 0);
    fx->pid = fork();
    assert_true(fx->pid >= 0);
    if (fx->pid == 0) {
        /* parks until teardown kills it; a crashed test binary takes it along */
        (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
        (void)dup2(out[1], STDOUT_FILENO);
        execv(argv[0], argv);
        e = errno;
        if (write(ex[1], &e, sizeof(e)) < 0)
            _exit(126);
        _exit(127);
    }
    (void)close(out[1]);
    (void)close(ex[1]);
    fx->out = out[0];
    n = read(ex[0], &e, sizeof(e));
    (void)close(ex[0]);
    if (n != 0)
        fail_msg("cannot exec %s: %s", argv[0], strerror(e));
}

/* Read the child's stdout until a line "ready"; keep what came before in fx->line. */
static void wait_ready(struct fixture *fx)
{
    char buf[sizeof(fx->line)];
    size_t used = 0;
    char *ready;

    for (;;) {
        buf[used] = '\0';
        ready = strstr(buf, "ready\n");
        if (ready)
            break;
        if (!test_wait_readable(fx->out))
            fail_msg("child %d did not print ready within the hang guard (%d s)", (int)fx->pid,
                     test_guard_s());
        ssize_t n = read(fx->out, buf + used, sizeof(buf) - 1 - used);
        if (n <= 0)
            fail_msg("child %d closed stdout before ready (got \"%s\")", (int)fx->pid, buf);
        used += (size_t)n;
    }
    *ready = '\0';
    memcpy(fx->line, buf, sizeof(fx->line));
}

static void spawn_python(struct fixture *fx, const char *python)
{
    char *argv[] = {(char *)python, (char *)"-I",      (char *)"-S",
                    (char *)"-c",   (char *)py_script, NULL};

    spawn(fx, argv);
    wait_ready(fx);
}

static int run_locate(struct fixture *fx)
{
    ps_err_clear(&fx->err);
    if (fx->pid > 0)
        assert_int_equal(maps_read(fx->pid, &fx->maps, &fx->err), 0);
    return locate_python(fx->pid, &fx->maps, fx->info, &fx->err);
}

/* Read a type object's tp_name (PyTypeObject.tp_name: the layout's type_name). */
static void check_tp_name(pid_t pid, uint32_t version_hex, uint64_t type_addr, const char *want)
{
    const struct layout *lay = layout_for_version(version_hex);
    uint64_t name_addr = 0;
    char name[32] = {0};
    struct iovec local = {&name_addr, sizeof(name_addr)};
    struct iovec remote;

    assert_non_null(lay);
    remote = (struct iovec){(void *)(uintptr_t)(type_addr + (uint64_t)lay->type_name),
                            sizeof(name_addr)};

    assert_int_equal(process_vm_readv(pid, &local, 1, &remote, 1, 0), sizeof(name_addr));
    local = (struct iovec){name, sizeof(name) - 1};
    remote = (struct iovec){(void *)(uintptr_t)name_addr, strlen(want) + 1};
    assert_int_equal(process_vm_readv(pid, &local, 1, &remote, 1, 0), strlen(want) + 1);
    assert_string_equal(name, want);
}

/* Every resolved symbol is non-zero and mapped; _PyRuntime lies in a mapping of the image. */
static void check_syms(const struct fixture *fx)
{
    const struct locate_info *in = fx->info;
    const uint64_t *s = (const uint64_t *)&in->syms;
    size_t n = sizeof(in->syms) / sizeof(uint64_t);
    const struct maps_entry *e;

    for (size_t i = 0; i < n; i++) {
        if (s[i] == 0 || !maps_find(&fx->maps, s[i]))
            fail_msg("locate_syms member %zu is 0x%" PRIx64 ", not mapped", i, s[i]);
    }
    e = maps_find(&fx->maps, in->syms.runtime);
    assert_non_null(e);
    assert_string_equal(e->path, in->image);
}

/* "3.12.1 51118576": the child's sys.version word and sys.hexversion. */
static void parse_line(const char *line, char *version, size_t len, unsigned long *hex)
{
    const char *sp = strchr(line, ' ');
    char *end = NULL;

    assert_non_null(sp);
    assert_true((size_t)(sp - line) < len);
    memcpy(version, line, (size_t)(sp - line));
    version[sp - line] = '\0';
    errno = 0;
    *hex = strtoul(sp + 1, &end, 10);
    assert_int_equal(errno, 0);
    assert_true(end != sp + 1 && *end == '\n');
}

static void check_python(void **state, const char *python, bool shared)
{
    struct fixture *fx = *state;
    struct locate_info *in = fx->info;
    char version[64] = "", prefix[64];
    unsigned long hex;
    int rc;

    require_interp(python);
    spawn_python(fx, python);
    parse_line(fx->line, version, sizeof(version), &hex);
    rc = run_locate(fx);
    if (rc != 0)
        fail_msg("locate_python: %s", fx->err.msg);
    assert_string_equal(in->version, version);
    assert_int_equal(in->version_hex, hex);
    assert_int_equal(in->shared, shared);
    assert_non_null(strstr(in->image, shared ? "/libpython3." : "/python3"));
    assert_string_equal(in->exe, python);
    (void)snprintf(prefix, sizeof(prefix), "/proc/%d/root/", (int)fx->pid);
    assert_memory_equal(in->opened, prefix, strlen(prefix));
    assert_true(in->runtime_section_size > 0);
    if (!shared)
        assert_int_equal(in->bias, 0); /* Debian's python3.11 is not PIE */
    check_syms(fx);
    check_tp_name(fx->pid, in->version_hex, in->syms.code_type, "code");
    check_tp_name(fx->pid, in->version_hex, in->syms.unicode_type, "str");
    if (in->version_hex >= 0x030d0000) { /* _Py_DebugOffsets.cookie, pycore_runtime.h 3.13 */
        char cookie[8];
        struct iovec l = {cookie, sizeof(cookie)};
        struct iovec r = {(void *)(uintptr_t)in->syms.runtime, sizeof(cookie)};
        assert_int_equal(process_vm_readv(fx->pid, &l, 1, &r, 1, 0), sizeof(cookie));
        assert_memory_equal(cookie, "xdebugpy", sizeof(cookie));
    }
}

static void test_pyenv_311(void **state)
{
    check_python(state, PYENV "3.11.7/bin/python3.11", true);
}

static void test_pyenv_312(void **state)
{
    check_python(state, PYENV "3.12.1/bin/python3.12", true);
}

static void test_pyenv_313(void **state)
{
    check_python(state, PYENV "3.13.0/bin/python3.13", true);
}

static void test_debian_311(void **state)
{
    check_python(state, DEBIAN_PY, false);
}

/*
 * The stable-ABI shim libpython3.so (no runtime) mapped below the real library must be skipped:
 * a fake shim entry is put first in a shallow copy of the real maps.
 */
static void test_skips_stable_abi_shim(void **state)
{
    struct fixture *fx = *state;
    const char *py = PYENV "3.12.1/bin/python3.12";
    struct maps_entry *v;
    struct maps fake;
    int rc;

    require_interp(py);
    spawn_python(fx, py);
    assert_int_equal(maps_read(fx->pid, &fx->maps, &fx->err), 0);
    assert_true(fx->maps.n > 0 && fx->maps.v[0].start >= 0x2000);
    v = calloc(fx->maps.n + 1, sizeof(*v));
    assert_non_null(v);
    memcpy(v + 1, fx->maps.v, fx->maps.n * sizeof(*v));
    v[0] = (struct maps_entry){.start = 0x1000,
                               .end = 0x2000,
                               .r = true,
                               .p = true,
                               .path = (char *)PYENV "3.12.1/lib/libpython3.so"};
    fake = (struct maps){.v = v, .n = fx->maps.n + 1};
    rc = locate_python(fx->pid, &fake, fx->info, &fx->err);
    free(v);
    if (rc != 0)
        fail_msg("locate_python: %s", fx->err.msg);
    assert_non_null(strstr(fx->info->image, "/libpython3.12.so"));
    assert_string_equal(fx->info->version, "3.12.1");
}

/* Copy of Debian's static python, deleted while running: opened through map_files. */
static void copy_file(const char *from, char *to_template)
{
    char buf[65536];
    int in = open(from, O_RDONLY | O_CLOEXEC);
    int out = mkstemp(to_template);
    ssize_t n;

    assert_true(in >= 0 && out >= 0);
    while ((n = read(in, buf, sizeof(buf))) > 0)
        assert_int_equal(write(out, buf, (size_t)n), n);
    assert_int_equal(n, 0);
    assert_int_equal(fchmod(out, 0755), 0);
    assert_int_equal(close(out), 0);
    assert_int_equal(close(in), 0);
}

static void test_deleted_executable(void **state)
{
    struct fixture *fx = *state;
    char cmd[64];
    static const char tmpl[] = "/tmp/pyscope-locate-XXXXXX";

    require_interp(DEBIAN_PY);
    memcpy(fx->copy, tmpl, sizeof(tmpl));
    copy_file(DEBIAN_PY, fx->copy);
    spawn_python(fx, fx->copy);
    assert_int_equal(unlink(fx->copy), 0);
    fx->copy[0] = '\0';
    if (run_locate(fx) != 0)
        fail_msg("locate_python: %s", fx->err.msg);
    (void)snprintf(cmd, sizeof(cmd), "/proc/%d/map_files/", (int)fx->pid);
    assert_memory_equal(fx->info->opened, cmd, strlen(cmd));
    assert_false(fx->info->shared);
    assert_string_equal(fx->info->version, "3.11.2");
    check_syms(fx);
    check_tp_name(fx->pid, fx->info->version_hex, fx->info->syms.code_type, "code");
}

/* True once child *pid sits in sleep(1)'s own pause or nanosleep: its exec is complete (the
 * CLOEXEC pipe closes before the kernel renames the task and maps the new image). */
static bool sleeping_in_sleep(void *arg)
{
    const pid_t pid = *(const pid_t *)arg;
    struct snap_os os;

    return procstat_thread_os(pid, pid, &os, NULL) == 0 && os.state == 'S' &&
           strcmp(os.comm, "sleep") == 0 &&
           (os.syscall == SYS_pause || os.syscall == SYS_clock_nanosleep ||
            os.syscall == SYS_nanosleep || os.syscall == -2 /* /proc/PID/syscall needs root */);
}

static void test_not_python(void **state)
{
    struct fixture *fx = *state;
    char *argv[] = {(char *)"/bin/sleep", (char *)"infinity", NULL};

    spawn(fx, argv);
    if (!test_wait_until(sleeping_in_sleep, &fx->pid))
        fail_msg("sleep %d did not reach its pause or nanosleep within the hang guard (%d s)",
                 (int)fx->pid, test_guard_s());
    assert_int_equal(run_locate(fx), -PS_ENOTPYTHON);
    assert_int_equal(fx->err.code, -PS_ENOTPYTHON);
    assert_non_null(strstr(fx->err.msg, "(sleep)"));
    assert_non_null(strstr(fx->err.msg, "/sleep"));
    assert_non_null(strstr(fx->err.msg, "libpython3."));
    assert_non_null(strstr(fx->err.msg, "_PyRuntime"));
}

static void test_python_310(void **state)
{
    struct fixture *fx = *state;

    require_interp(PYENV "3.10.13/bin/python3.10");
    spawn_python(fx, PYENV "3.10.13/bin/python3.10");
    assert_int_equal(run_locate(fx), -PS_EVERSION);
    assert_int_equal(fx->err.code, -PS_EVERSION);
    assert_non_null(strstr(fx->err.msg, "Python 3.10"));
    assert_non_null(strstr(fx->err.msg, "Py_Version"));
}

static void test_missing_pid(void **state)
{
    struct fixture *fx = *state;
    pid_t gone = fork();

    assert_true(gone >= 0);
    if (gone == 0)
        _exit(0);
    assert_int_equal(waitpid(gone, NULL, 0), gone);
    fx->info->version_hex = 0xdeadbeef;
    assert_int_equal(locate_python(gone, &fx->maps, fx->info, &fx->err), -ESRCH);
    assert_int_equal(fx->err.code, -ESRCH);
    assert_non_null(strstr(fx->err.msg, "no process"));
    assert_int_equal(fx->info->version_hex, 0xdeadbeef); /* untouched on failure */
    ps_err_clear(&fx->err);
    assert_int_equal(locate_python(-1, &fx->maps, fx->info, &fx->err), -ESRCH);
}

static void test_version_string(void **state)
{
    char buf[32];

    (void)state;
    locate_version_string(0x030c01f0, buf, sizeof(buf));
    assert_string_equal(buf, "3.12.1");
    locate_version_string(0x030d00c2, buf, sizeof(buf));
    assert_string_equal(buf, "3.13.0rc2");
    locate_version_string(0x030e00a1, buf, sizeof(buf));
    assert_string_equal(buf, "3.14.0a1");
    locate_version_string(0x030b00b4, buf, sizeof(buf));
    assert_string_equal(buf, "3.11.0b4");
    locate_version_string(0x030b07f0, buf, sizeof(buf));
    assert_string_equal(buf, "3.11.7");
    locate_version_string(0x030d0af0, buf, sizeof(buf));
    assert_string_equal(buf, "3.13.10");
    memset(buf, 'x', sizeof(buf));
    locate_version_string(0x030d00c2, buf, 4);
    assert_string_equal(buf, "3.1");
    assert_int_equal(buf[4], 'x');
    locate_version_string(0x030d00c2, NULL, 0);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_pyenv_311),
        T(test_pyenv_312),
        T(test_pyenv_313),
        T(test_debian_311),
        T(test_skips_stable_abi_shim),
        T(test_deleted_executable),
        T(test_not_python),
        T(test_python_310),
        T(test_missing_pid),
        cmocka_unit_test(test_version_string),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
