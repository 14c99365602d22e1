/* SPDX-License-Identifier: MIT */
/*
 * guard tests: the worker gets each stop signal once, by every route (issue 16). A real guard
 * and worker pair (guard_fork in a child of the test, in a process group of its own) with a
 * worker that runs an evloop and counts the copies of the stop signal that reached it: the one
 * its loop took, plus one if the same signal is pending again after that (a second copy;
 * further ones merge with it). The routes: a kill of the guard's pid alone (forwarded), of the
 * process group (already in the worker: not forwarded again), `timeout`'s order (the guard's
 * pid, then the group), a terminal's Ctrl-C (the kernel, to the foreground group) and the
 * hang-up of a terminal whose session leader is the guard (to the guard alone: forwarded).
 *
 * Nothing waits on wall time: the test holds the guard stopped (SIGSTOP) while the worker takes
 * its copy, so that the guard decides after it, which is the order that sent a second copy;
 * then a SIGCONT to the guard, which the guard forwards after every stop signal sent before
 * it (it handles them lowest number first, and in order), tells the worker to count.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "pyscope/evloop.h"
#include "pyscope/guard.h"

/* What the worker tells the test, in memory shared by the test, the guard and the worker. */
struct g_shared {
    volatile pid_t worker;
    volatile int ended;  /* 1: the worker's loop ended by a stop signal */
    volatile int signo;  /* that signal */
    volatile int copies; /* how many copies of it reached the worker; -1 until counted */
    volatile int others; /* other stop signals pending in the worker when it counted */
};

/* A failure bound for the waits on the pair (never a success criterion). */
#define G_WAIT_MS 30000

static struct g_shared *g_sh;
static pid_t g_guard;

/* The worker: a session loop until a stop signal, then the count once the guard forwarded the
 * test's SIGCONT. */
static void g_worker(struct g_shared *sh)
{
    const struct evloop_opts o = {.signals = EVLOOP_SIG_STOP};
    struct evloop *l = NULL;
    struct ps_err err = {0};
    sigset_t pend, cont;
    int signo, taken;

    sh->worker = getpid();
    if (evloop_new(&o, &l, &err) < 0 || evloop_run(l, &err) < 0 ||
        evloop_end(l) != EVLOOP_END_SIGNAL)
        _exit(4);
    signo = evloop_signo(l);
    evloop_free(l);
    (void)sigpending(&pend);
    taken = !sigismember(&pend, signo); /* the loop read it, or it is still pending */
    sh->signo = signo;
    __atomic_store_n(&sh->ended, 1, __ATOMIC_SEQ_CST);
    (void)sigemptyset(&cont);
    (void)sigaddset(&cont, SIGCONT);
    while (sigwaitinfo(&cont, NULL) < 0)
        ;
    (void)sigpending(&pend);
    evloop_signals(EVLOOP_SIG_STOP, &cont);
    for (int sig = 1; sig < NSIG; sig++)
        sh->others += sig != signo && sigismember(&cont, sig) == 1 && sigismember(&pend, sig) == 1;
    __atomic_store_n(&sh->copies, taken + sigismember(&pend, signo), __ATOMIC_SEQ_CST);
    _exit(0);
}

/* Fork the guard and its worker, as the CLI does (stop signals held, then guard_fork), in a
 * new process group, or in a new session whose terminal is tty when tty is not NULL (master:
 * the pty's other end, closed in the pair so that the test's close hangs the terminal up). */
static void g_start(const char *tty, int master)
{
    sigset_t cont;

    g_sh = mmap(NULL, sizeof(*g_sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(g_sh != MAP_FAILED);
    g_sh->copies = -1;
    g_guard = fork();
    assert_true(g_guard >= 0);
    if (g_guard == 0) {
        if (master >= 0)
            (void)close(master);
        if (tty ? setsid() < 0 || open(tty, O_RDWR) < 0 : setpgid(0, 0) != 0)
            _exit(5);
        (void)sigemptyset(&cont);
        (void)sigaddset(&cont, SIGCONT); /* the worker's "count now" */
        (void)sigprocmask(SIG_BLOCK, &cont, NULL);
        evloop_hold_signals(EVLOOP_SIG_STOP);
        if (guard_fork(0) != 0)
            _exit(6);
        g_worker(g_sh);
    }
    if (!tty)
        (void)setpgid(g_guard, g_guard); /* both sides, as a shell does: no race with killpg */
}

/* Wait until *flag is set (a failure after G_WAIT_MS). */
static void g_wait(const volatile int *flag, int want)
{
    const struct timespec ms = {0, 1000000L};

    for (int i = 0; i < G_WAIT_MS && __atomic_load_n(flag, __ATOMIC_SEQ_CST) != want; i++)
        (void)nanosleep(&ms, NULL);
    if (__atomic_load_n(flag, __ATOMIC_SEQ_CST) != want) {
        if (g_sh->worker > 0)
            (void)kill(g_sh->worker, SIGKILL);
        (void)kill(g_guard, SIGKILL);
        fail_msg("the guard and worker pair did not get there (ended %d, signo %d, copies %d)",
                 g_sh->ended, g_sh->signo, g_sh->copies);
    }
}

static void g_wait_worker(void)
{
    const struct timespec ms = {0, 1000000L};

    for (int i = 0; i < G_WAIT_MS && g_sh->worker == 0; i++)
        (void)nanosleep(&ms, NULL);
    assert_true(g_sh->worker > 0);
}

/* Hold the guard stopped: the signals sent meanwhile wait for it. */
static void g_hold_guard(void)
{
    int status = 0;

    assert_int_equal(kill(g_guard, SIGSTOP), 0);
    assert_int_equal(waitpid(g_guard, &status, WUNTRACED), g_guard);
    assert_true(WIFSTOPPED(status));
}

/* Continue the guard (if held) and tell the worker to count; the pair's exit; the count. */
static int g_finish(int want_signo)
{
    int status = 0, copies;

    assert_int_equal(kill(g_guard, SIGCONT), 0);
    assert_int_equal(waitpid(g_guard, &status, 0), g_guard);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(g_sh->signo, want_signo);
    assert_int_equal(g_sh->others, 0);
    copies = g_sh->copies;
    (void)munmap(g_sh, sizeof(*g_sh));
    return copies;
}

/* To the guard's pid alone: the worker gets it from the guard. */
static void test_kill_of_the_guard_is_forwarded(void **state)
{
    (void)state;
    g_start(NULL, -1);
    g_wait_worker();
    assert_int_equal(kill(g_guard, SIGTERM), 0);
    g_wait(&g_sh->ended, 1);
    assert_int_equal(g_finish(SIGTERM), 1);
}

/* To the process group, the worker taking its copy before the guard decides: the guard must
 * not send another. */
static void test_group_kill_reaches_the_worker_once(void **state)
{
    (void)state;
    g_start(NULL, -1);
    g_wait_worker();
    g_hold_guard();
    assert_int_equal(kill(-g_guard, SIGTERM), 0);
    g_wait(&g_sh->ended, 1);
    assert_int_equal(g_finish(SIGTERM), 1);
}

/* The same, the guard deciding while the worker's copy is still pending (the worker held too). */
static void test_group_kill_pending_in_the_worker_once(void **state)
{
    (void)state;
    g_start(NULL, -1);
    g_wait_worker();
    g_hold_guard();
    assert_int_equal(kill(g_sh->worker, SIGSTOP), 0);
    assert_int_equal(kill(-g_guard, SIGINT), 0);
    /* The guard decides while the worker is stopped, then forwards the SIGCONT that resumes it. */
    assert_int_equal(kill(g_guard, SIGCONT), 0);
    g_wait(&g_sh->ended, 1);
    assert_int_equal(g_finish(SIGINT), 1);
}

/* `timeout`'s order: the guard's pid (forwarded, taken by the worker), then the group. */
static void test_timeout_order_reaches_the_worker_once(void **state)
{
    (void)state;
    g_start(NULL, -1);
    g_wait_worker();
    assert_int_equal(kill(g_guard, SIGTERM), 0);
    g_wait(&g_sh->ended, 1);
    assert_int_equal(kill(-g_guard, SIGTERM), 0);
    assert_int_equal(g_finish(SIGTERM), 1);
}

/* A terminal's pty for a new session: the master's fd, the slave's name in *name. */
static int g_pty(char *name, size_t n)
{
    int m = posix_openpt(O_RDWR | O_NOCTTY);

    assert_true(m >= 0);
    assert_int_equal(grantpt(m), 0);
    assert_int_equal(unlockpt(m), 0);
    assert_int_equal(ptsname_r(m, name, n), 0);
    return m;
}

/* Ctrl-C: the kernel sends SIGINT to the whole foreground group; the guard adds nothing. */
static void test_terminal_interrupt_reaches_the_worker_once(void **state)
{
    char tty[64];
    int m = g_pty(tty, sizeof(tty));

    (void)state;
    g_start(tty, m);
    g_wait_worker();
    g_hold_guard();
    assert_int_equal(write(m, "\003", 1), 1);
    g_wait(&g_sh->ended, 1);
    assert_int_equal(g_finish(SIGINT), 1);
    (void)close(m);
}

/* Ctrl-C, then a SIGTERM to the guard's pid (a supervisor's): the worker is stopping already,
 * the guard sends it no second stop signal. */
static void test_kill_of_the_guard_after_ctrl_c_adds_nothing(void **state)
{
    char tty[64];
    int m = g_pty(tty, sizeof(tty));

    (void)state;
    g_start(tty, m);
    g_wait_worker();
    g_hold_guard();
    assert_int_equal(write(m, "\003", 1), 1);
    g_wait(&g_sh->ended, 1);
    assert_int_equal(kill(g_guard, SIGTERM), 0);
    assert_int_equal(g_finish(SIGINT), 1);
    (void)close(m);
}

/* The hang-up of the terminal whose session leader is the guard: SIGHUP (and SIGCONT) to the
 * guard alone, which forwards both. */
static void test_hangup_of_the_leaders_terminal_is_forwarded(void **state)
{
    char tty[64];
    int m = g_pty(tty, sizeof(tty)), status = 0;

    (void)state;
    g_start(tty, m);
    g_wait_worker();
    (void)close(m);
    g_wait(&g_sh->copies, 1);
    assert_int_equal(waitpid(g_guard, &status, 0), g_guard);
    assert_true(WIFEXITED(status));
    assert_int_equal(g_sh->signo, SIGHUP);
    assert_int_equal(g_sh->others, 0);
    (void)munmap(g_sh, sizeof(*g_sh));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill_of_the_guard_is_forwarded),
        cmocka_unit_test(test_group_kill_reaches_the_worker_once),
        cmocka_unit_test(test_group_kill_pending_in_the_worker_once),
        cmocka_unit_test(test_timeout_order_reaches_the_worker_once),
        cmocka_unit_test(test_terminal_interrupt_reaches_the_worker_once),
        cmocka_unit_test(test_kill_of_the_guard_after_ctrl_c_adds_nothing),
        cmocka_unit_test(test_hangup_of_the_leaders_terminal_is_forwarded),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
