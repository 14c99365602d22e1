/* SPDX-License-Identifier: MIT */
/*
 * procstat tests: the /proc parsers with hostile text (a comm full of ')' and spaces, missing
 * lines, garbage), the activity texts, and the live readers on ourselves and on forked
 * children whose state we control (a child blocked in read on a pipe, an exec'd sleep). The
 * children's states are polled in /proc (the kernel gives no event) with a hang guard only
 * (support/guard.h), never for a time.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "guard.h"
#include "pyscope/procstat.h"

/* ---- helpers ------------------------------------------------------------------------------- */

struct want_state {
    pid_t pid, tid;
    char want;
};

static bool in_state(void *arg)
{
    const struct want_state *w = arg;
    char st = '?';

    return procstat_state(w->pid, w->tid, &st, NULL) == 0 && st == w->want;
}

/* Poll until thread tid of pid is in state want (the kernel gives no event); false only when
 * the hang guard expired. */
static bool wait_state(pid_t pid, pid_t tid, char want)
{
    struct want_state w = {.pid = pid, .tid = tid, .want = want};

    return test_wait_until(in_state, &w);
}

/* A child blocked in read() on a pipe; the write end is returned to close at the end. */
static pid_t spawn_reader(int *wfd)
{
    int p[2];
    pid_t pid;
    char c;

    assert_int_equal(pipe(p), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        (void)close(p[1]);
        _exit(read(p[0], &c, 1) < 0 ? 1 : 0);
    }
    (void)close(p[0]);
    *wfd = p[1];
    return pid;
}

static void reap(pid_t pid)
{
    int status;

    (void)kill(pid, SIGKILL);
    (void)waitpid(pid, &status, 0);
}

/* ---- parsers ------------------------------------------------------------------------------- */

static void test_parse_stat_hostile_comm(void **state)
{
    /* comm is "a) S (b ) x)": the state is the first field after the LAST ')'. */
    static const char text[] = "4242 (a) S (b ) x)) R 1 4242 4242 0 -1 4194560 100 0 0 0 "
                               "1234 567 0 0 20 0 7 0 98765 1000000 200 18446744073709551615\n";
    struct procstat_stat st;

    (void)state;
    assert_int_equal(procstat_parse_stat(text, strlen(text), &st, NULL), 0);
    assert_int_equal(st.state, 'R');
    assert_int_equal(st.ppid, 1);
    assert_int_equal(st.utime_ticks, 1234);
    assert_int_equal(st.stime_ticks, 567);
    assert_int_equal(st.num_threads, 7);
    assert_int_equal(st.start_ticks, 98765);
}

static void test_parse_stat_newline_in_comm(void)
{
    static const char text[] = "7 (x\ny) t 1 7 7 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 3 0 0\n";
    struct procstat_stat st;

    assert_int_equal(procstat_parse_stat(text, strlen(text), &st, NULL), 0);
    assert_int_equal(st.state, 't');
    assert_int_equal(st.utime_ticks, 5);
}

static void test_parse_stat_malformed(void **state)
{
    struct procstat_stat st = {.state = 'Q'};
    struct ps_err err;
    static const char noparen[] = "12 comm S 1 2 3";
    static const char few[] = "12 (comm) S 1 2 3";
    static const char notnum[] = "1 (c) S 1 1 1 0 -1 0 0 0 0 0 zz 6 0 0 20 0 1 0 3 0 0";
    static const char twoletter[] = "1 (c) SS 1 1 1 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 3 0 0";

    (void)state;
    test_parse_stat_newline_in_comm();
    ps_err_clear(&err);
    assert_int_equal(procstat_parse_stat(noparen, strlen(noparen), &st, &err), -PS_EFORMAT);
    assert_non_null(strstr(err.msg, "')'"));
    ps_err_clear(&err);
    assert_int_equal(procstat_parse_stat(few, strlen(few), &st, &err), -PS_EFORMAT);
    assert_non_null(strstr(err.msg, "too few"));
    assert_int_equal(procstat_parse_stat(notnum, strlen(notnum), &st, NULL), -PS_EFORMAT);
    assert_int_equal(procstat_parse_stat(twoletter, strlen(twoletter), &st, NULL), -PS_EFORMAT);
    /* len bounds the parse: the same text cut before its fields is malformed */
    assert_int_equal(procstat_parse_stat(few, 9, &st, NULL), -PS_EFORMAT);
    assert_int_equal(st.state, 'Q'); /* out untouched on failure */
}

/* A full stat line of pid 4242 whose code starts at `code` and stack at `stack`. */
static void stat_line(char *buf, size_t cap, unsigned long long code, unsigned long long stack)
{
    (void)snprintf(buf, cap,
                   "4242 (python3) R 1 4242 4242 0 -1 4194560 100 0 0 0 10 2 0 0 20 0 1 0 "
                   "98765 20000000 2000 18446744073709551615 %llu %llu %llu 0 0 0 0 16781312 "
                   "134234626 0 0 0 17 1 0 0 0 0 0 94000000 94001000 94010000 %llu %llu %llu "
                   "%llu 0\n",
                   code, code + 4096, stack, stack + 100, stack + 200, stack + 300, stack + 400);
}

/* image changes with the addresses an exec places anew, is 0 when they are hidden or the
 * line stops before them, and the older fields parse as before. */
static void test_parse_stat_image(void **state)
{
    char a[512], b[512], c[512];
    static const char hidden[] = "4242 (python3) R 1 4242 4242 0 -1 4194560 100 0 0 0 10 2 0 0 "
                                 "20 0 1 0 98765 0 0 18446744073709551615 0 0 0 0 0 0 0 0 0 0 "
                                 "0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n";
    static const char short_line[] = "1 (c) S 1 1 1 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 3 0 0";
    struct procstat_stat sa, sb, sc, sh, ss;

    (void)state;
    stat_line(a, sizeof(a), 0x400000, 0x7ffd12340000ull);
    stat_line(b, sizeof(b), 0x400000, 0x7ffc55550000ull); /* the same binary exec'd again */
    stat_line(c, sizeof(c), 0x400000, 0x7ffd12340000ull);
    assert_int_equal(procstat_parse_stat(a, strlen(a), &sa, NULL), 0);
    assert_int_equal(procstat_parse_stat(b, strlen(b), &sb, NULL), 0);
    assert_int_equal(procstat_parse_stat(c, strlen(c), &sc, NULL), 0);
    assert_int_equal(sa.start_ticks, 98765);
    assert_int_not_equal(sa.image, 0);
    assert_int_not_equal(sa.image, sb.image);
    assert_int_equal(sa.image, sc.image);
    assert_int_equal(procstat_parse_stat(hidden, strlen(hidden), &sh, NULL), 0);
    assert_int_equal(sh.image, 0);
    assert_int_equal(procstat_parse_stat(short_line, strlen(short_line), &ss, NULL), 0);
    assert_int_equal(ss.image, 0);
}

static void test_parse_status(void **state)
{
    static const char text[] = "Name:\tpython3\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t42\n"
                               "PPid:\t7\nTracerPid:\t99\nUid:\t1000\t1001\t1002\t1003\n"
                               "Gid:\t50\t51\t52\t53\nGroups:\t4 24 27 \n"
                               "NSpid:\t1067\t12\t1\nCapEff:\t00000000000800c0\n"
                               "Seccomp:\t2\nSeccomp_filters:\t1\n";
    struct procstat_status st;

    (void)state;
    procstat_parse_status(text, strlen(text), &st);
    assert_int_equal(st.state, 'S');
    assert_int_equal(st.ppid, 7);
    assert_int_equal(st.tracer_pid, 99);
    assert_true(st.ids_known);
    assert_int_equal(st.uid[0], 1000);
    assert_int_equal(st.uid[1], 1001);
    assert_int_equal(st.uid[2], 1002);
    assert_int_equal(st.gid[3], 53);
    assert_int_equal(st.ngroups, 3);
    assert_int_equal(st.groups[0], 4);
    assert_int_equal(st.groups[2], 27);
    assert_int_equal(st.nspid_levels, 3); /* ours first, the task's own namespace last */
    assert_int_equal(st.nspid_inner, 1);
    assert_true(st.cap_eff_known);
    assert_int_equal((st.cap_eff >> PROCSTAT_CAP_SYS_PTRACE) & 1, 1);
    assert_int_equal(st.seccomp, 2);
}

static void test_parse_status_missing_lines(void **state)
{
    static const char text[] = "Name:\tx\nUid:\t1\t2\nbogus line without colon\n";
    struct procstat_status st;

    (void)state;
    procstat_parse_status(text, strlen(text), &st);
    assert_int_equal(st.state, '?');
    assert_int_equal(st.ppid, -1);
    assert_int_equal(st.tracer_pid, -1);
    assert_false(st.ids_known); /* a Uid line with 2 of 4 ids is not trusted */
    assert_false(st.cap_eff_known);
    assert_int_equal(st.seccomp, -1);
    assert_int_equal(st.ngroups, -1); /* no Groups line: unknown, not "none" */
}

/* Groups decide what a source line may show: a cut or overlong line is unknown, never a guess
 * (a number cut in two would name another group). */
static void test_parse_status_groups_bounded(void **state)
{
    char text[4096];
    size_t off = (size_t)snprintf(text, sizeof(text), "Groups:\t");
    struct procstat_status st;

    (void)state;
    procstat_parse_status("Groups:\t\n", 9, &st);
    assert_int_equal(st.ngroups, 0);
    for (int i = 0; i < PROCSTAT_GROUPS_MAX + 1; i++)
        off += (size_t)snprintf(text + off, sizeof(text) - off, "%d ", 100 + i);
    procstat_parse_status(text, off, &st);
    assert_int_equal(st.ngroups, -1); /* one past the cap */
    for (; off < 1500; off++)
        text[off] = '7'; /* a line longer than the parser's buffer */
    procstat_parse_status(text, off, &st);
    assert_int_equal(st.ngroups, -1);
    procstat_parse_status("Groups:\t5 x\n", 12, &st);
    assert_int_equal(st.ngroups, -1);
}

static void test_parse_syscall_arg0(void **state)
{
    static const char futex[] = "202 0x7f1c2a3b4c50 0x80 0x0 0x0 0x0 0x0 0x7ffd8 0x7f1c\n";
    uint64_t a = 0;

    (void)state;
    assert_true(procstat_parse_syscall_arg0(futex, sizeof(futex) - 1, &a));
    assert_int_equal(a, 0x7f1c2a3b4c50ull);
    assert_false(procstat_parse_syscall_arg0("running\n", 8, &a));
    assert_false(procstat_parse_syscall_arg0("202 zz\n", 7, &a));
    assert_false(procstat_parse_syscall_arg0("202 0x12g4\n", 11, &a));
    assert_false(procstat_parse_syscall_arg0("202", 3, &a));
}

static void test_parse_syscall(void **state)
{
    (void)state;
    assert_int_equal(procstat_parse_syscall("running\n", 8), -1);
    assert_int_equal(procstat_parse_syscall("202 0x7f 0x0 0x0 0x0 0x0 0x0 0x7ffd 0x7f\n", 40), 202);
    assert_int_equal(procstat_parse_syscall("-1 0x7ffd 0x7f\n", 15), -1);
    assert_int_equal(procstat_parse_syscall("0 0x3\n", 6), 0);
    assert_int_equal(procstat_parse_syscall("garbage", 7), -2);
    assert_int_equal(procstat_parse_syscall("12x", 3), -2);
    assert_int_equal(procstat_parse_syscall("", 0), -2);
    assert_int_equal(procstat_parse_syscall("-7 0x0", 6), -2);
}

/* ---- activity ------------------------------------------------------------------------------ */

static const char *activity(char state, long sys, const char *wchan)
{
    static char buf[96];
    struct snap_os os;

    memset(&os, 0, sizeof(os));
    os.state = state;
    os.syscall = sys;
    (void)snprintf(os.wchan, sizeof(os.wchan), "%s", wchan);
    return procstat_activity(&os, buf, sizeof(buf));
}

static void test_activity(void **state)
{
    char small[8];
    struct snap_os os = {.state = 'R', .syscall = -1};

    (void)state;
    assert_string_equal(activity('R', -1, "0"), "running");
    assert_string_equal(activity('S', SYS_clock_nanosleep, "hrtimer_nanosleep"),
                        "sleeping (hrtimer_nanosleep)");
    assert_string_equal(activity('S', SYS_nanosleep, ""), "sleeping");
    assert_string_equal(activity('S', SYS_futex, "futex_do_wait"), "waiting on a futex");
    assert_string_equal(activity('S', -2, "futex_wait_queue"), "waiting on a futex");
    assert_string_equal(activity('S', SYS_read, "pipe_read"), "blocked in read");
    assert_string_equal(activity('S', SYS_recvfrom, "0"), "blocked in recvfrom");
    assert_string_equal(activity('S', 9999, ""), "blocked in syscall 9999");
    assert_string_equal(activity('S', -2, "do_sys_poll"), "sleeping (do_sys_poll)");
    assert_string_equal(activity('S', -2, ""), "sleeping");
    assert_string_equal(activity('D', SYS_read, ""), "blocked in read (uninterruptible)");
    assert_string_equal(activity('T', -1, ""), "stopped");
    assert_string_equal(activity('t', -1, ""), "stopped by a tracer");
    assert_string_equal(activity('Z', -1, ""), "exited (zombie)");
    assert_string_equal(activity('?', -2, ""), "unknown");
    assert_string_equal(procstat_syscall_name(SYS_futex), "futex");
    assert_null(procstat_syscall_name(9999));
    /* truncation stays NUL-terminated */
    assert_string_equal(procstat_activity(&os, small, sizeof(small)), "running");
    os.state = 't';
    assert_string_equal(procstat_activity(&os, small, sizeof(small)), "stopped");
}

/* ---- live readers -------------------------------------------------------------------------- */

static pthread_mutex_t hold = PTHREAD_MUTEX_INITIALIZER;

static void *parked(void *arg)
{
    (void)arg;
    (void)pthread_mutex_lock(&hold);
    (void)pthread_mutex_unlock(&hold);
    return NULL;
}

static void test_tids_self(void **state)
{
    pid_t tids[8];
    pid_t one[1];
    size_t n = 0;
    pthread_t th;
    struct ps_err err;

    (void)state;
    (void)pthread_mutex_lock(&hold);
    assert_int_equal(pthread_create(&th, NULL, parked, NULL), 0);
    assert_int_equal(procstat_tids(getpid(), tids, 8, &n, NULL), 0);
    assert_int_equal(n, 2);
    assert_int_equal(tids[0], getpid()); /* sorted: the leader has the lowest tid here */
    assert_true(tids[1] > tids[0]);
    ps_err_clear(&err);
    assert_int_equal(procstat_tids(getpid(), one, 1, &n, &err), -PS_ELIMIT);
    assert_int_equal(err.code, -PS_ELIMIT);
    (void)pthread_mutex_unlock(&hold);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(procstat_tids(getpid(), tids, 8, &n, NULL), 0);
    assert_int_equal(n, 1);
}

static void test_gone(void **state)
{
    pid_t tids[4];
    size_t n;
    struct snap_os os;
    struct procstat_status st;
    struct ps_err err;
    int wfd;
    pid_t pid = spawn_reader(&wfd);

    (void)state;
    reap(pid); /* now pid names no process */
    (void)close(wfd);
    ps_err_clear(&err);
    assert_int_equal(procstat_tids(pid, tids, 4, &n, &err), -ESRCH);
    assert_non_null(strstr(err.msg, "no such process"));
    assert_int_equal(procstat_thread_os(pid, pid, &os, NULL), -ESRCH);
    assert_int_equal(procstat_read_status(pid, &st, NULL), -ESRCH);
}

static void test_thread_os_blocked_reader(void **state)
{
    char buf[96];
    struct snap_os os;
    int wfd;
    pid_t pid = spawn_reader(&wfd);

    (void)state;
    assert_true(wait_state(pid, pid, 'S'));
    assert_int_equal(procstat_thread_os(pid, pid, &os, NULL), 0);
    assert_int_equal(os.state, 'S');
    assert_int_equal(os.syscall, SYS_read); /* root may read /proc/PID/syscall */
    assert_string_equal(procstat_activity(&os, buf, sizeof(buf)), "blocked in read");
    (void)close(wfd); /* EOF: the child exits 0 */
    reap(pid);
}

static void test_thread_os_self(void **state)
{
    struct snap_os os;

    (void)state;
    assert_int_equal(procstat_thread_os(getpid(), (pid_t)syscall(SYS_gettid), &os, NULL), 0);
    assert_int_equal(os.state, 'R'); /* we are running while we read it */
    assert_true(os.syscall >= -1);
}

static void test_proc_self(void **state)
{
    static struct procstat_proc p; /* 8 KiB: keep it off the stack */

    (void)state;
    assert_int_equal(procstat_proc(getpid(), &p, NULL), 0);
    /* comm is the executable's name cut to 15 characters (TASK_COMM_LEN) */
    assert_int_equal(strncmp(p.comm, program_invocation_short_name, 15), 0);
    assert_true(strlen(p.comm) <= 15);
    assert_non_null(strstr(p.cmdline, program_invocation_short_name));
    assert_non_null(strstr(p.exe, program_invocation_short_name));
    assert_true(p.rss_bytes > 0);
    assert_true(p.cpu_user_s >= 0.0);
    assert_int_equal(p.status.uid[0], getuid());
    assert_int_equal(p.status.gid[0], getgid());
    assert_int_equal(p.status.tracer_pid, 0);
    assert_true(p.status.cap_eff_known);
    assert_true(p.status.seccomp >= 0);
    assert_int_equal(p.status.ppid, getppid());
}

/* True once child *pid, named "sleep", sits in sleep(1)'s pause or nanosleep: its exec is
 * complete (the kernel renames the task before it sets up the new image's arguments, so comm
 * alone is early). */
static bool sleeping_in_sleep(void *arg)
{
    const pid_t pid = *(const pid_t *)arg;
    char comm[PROCSTAT_COMM_MAX] = "";
    struct snap_os os;

    return procstat_comm(pid, comm, sizeof(comm), NULL) == 0 && strcmp(comm, "sleep") == 0 &&
           procstat_thread_os(pid, pid, &os, NULL) == 0 && os.state == 'S' &&
           (os.syscall == SYS_pause || os.syscall == SYS_clock_nanosleep ||
            os.syscall == SYS_nanosleep || os.syscall == -2 /* /proc/PID/syscall needs root */);
}

static void test_proc_cmdline_of_child(void **state)
{
    static struct procstat_proc p;
    pid_t pid = fork();

    (void)state;
    assert_true(pid >= 0);
    if (pid == 0) {
        (void)prctl(PR_SET_PDEATHSIG, SIGKILL); /* reaped below, or dies with the test binary */
        execl("/bin/sleep", "sleep", "infinity", (char *)NULL);
        _exit(127);
    }
    if (!test_wait_until(sleeping_in_sleep, &pid))
        fail_msg("sleep %d did not reach its pause or nanosleep within the hang guard (%d s)",
                 (int)pid, test_guard_s());
    assert_int_equal(procstat_proc(pid, &p, NULL), 0);
    assert_string_equal(p.cmdline, "sleep infinity"); /* NULs became spaces, the last dropped */
    assert_string_equal(p.comm, "sleep");
    assert_non_null(strstr(p.exe, "sleep"));
    reap(pid);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_stat_hostile_comm),
        cmocka_unit_test(test_parse_stat_malformed),
        cmocka_unit_test(test_parse_stat_image),
        cmocka_unit_test(test_parse_status),
        cmocka_unit_test(test_parse_status_missing_lines),
        cmocka_unit_test(test_parse_status_groups_bounded),
        cmocka_unit_test(test_parse_syscall),
        cmocka_unit_test(test_parse_syscall_arg0),
        cmocka_unit_test(test_activity),
        cmocka_unit_test(test_tids_self),
        cmocka_unit_test(test_gone),
        cmocka_unit_test(test_thread_os_blocked_reader),
        cmocka_unit_test(test_thread_os_self),
        cmocka_unit_test(test_proc_self),
        cmocka_unit_test(test_proc_cmdline_of_child),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
