/* SPDX-License-Identifier: MIT */
/*
 * target tests against real forked victims: a child with three pthreads (two sleepers, one
 * spinner) whose main thread answers pings on a pipe, so "the victim runs" is checked by a
 * round trip, not by sleeping. Covered: seize/stop/resume/detach with per-thread states from
 * /proc; exit while seized and while resumed (our waitpid still gets the child's status);
 * signals arriving while seized are passed on; a user's SIGSTOP survives us; threads created
 * during the seize; a tracer process killed by SIGTERM/SIGINT/SIGHUP/SIGQUIT/SIGKILL leaves the
 * victim running and untraced; the async-signal-safe teardown alone detaches; EPERM diagnosis;
 * draining breakpoint traps before detach (queued, queued while blocked, at the breakpoint).
 * No wall time: every wait is for an answer on a pipe, a /proc state, a counter the victim's
 * spinning threads advance or an exit, with a hang guard only (support/guard.h).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "guard.h"
#include "pyscope/procstat.h"
#include "pyscope/target.h"

/* ---- the victim (runs in a forked child) ----------------------------------------------------- */

enum victim_mode {
    VICTIM_PLAIN = 0,
    VICTIM_SPAWNER,       /* also creates short-lived threads without pause */
    VICTIM_ZOMBIE_LEADER, /* the main thread calls pthread_exit; a thread serves pings */
    VICTIM_SIGNAL_STORM,  /* a thread sends SIGUSR2 to the process without pause */
    VICTIM_TRAP_BLOCKER,  /* also a spinning thread "trapblk" that blocks SIGTRAP */
};

static int victim_reply_fd = -1; /* child-side only: the SIGUSR1 handler writes 'U' here */

/* The victim's spinning threads count their loops here; the test reads the counters from the
 * child's memory (the same address after the fork) to see that a thread ran user code. */
enum {
    SPIN_SPIN,
    SPIN_TRAPBLK,
    SPIN_THREADS
};
static volatile unsigned long victim_spins[SPIN_THREADS];

static void victim_on_usr1(int sig)
{
    char c = 'U';

    (void)sig;
    (void)!write(victim_reply_fd, &c, 1);
}

static void *victim_sleeper(void *arg)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 1000000};

    (void)arg;
    for (;;)
        (void)nanosleep(&ts, NULL);
    return NULL;
}

/* Name the calling thread (the tests find it by /proc/PID/task/TID/comm), then spin, counting
 * the loops in victim_spins[which]. */
static void *victim_spin_as(const char *name, int which)
{
    (void)prctl(PR_SET_NAME, name);
    for (;;)
        victim_spins[which] = victim_spins[which] + 1;
    return NULL;
}

static void *victim_spinner(void *arg)
{
    (void)arg;
    return victim_spin_as("spin", SPIN_SPIN);
}

static void *victim_trap_blocker(void *arg)
{
    sigset_t set;

    (void)arg;
    (void)sigemptyset(&set);
    (void)sigaddset(&set, SIGTRAP);
    (void)pthread_sigmask(SIG_BLOCK, &set, NULL);
    return victim_spin_as("trapblk", SPIN_TRAPBLK); /* named only once SIGTRAP is blocked */
}

static void *victim_quick(void *arg)
{
    return arg;
}

static void *victim_spawner(void *arg)
{
    pthread_attr_t attr;
    pthread_t th;

    (void)arg;
    (void)pthread_attr_init(&attr);
    (void)pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    for (;;)
        (void)pthread_create(&th, &attr, victim_quick, NULL);
    return NULL;
}

static void victim_on_usr2(int sig)
{
    (void)sig;
}

static void *victim_storm(void *arg)
{
    (void)arg;
    for (;;)
        (void)kill(getpid(), SIGUSR2);
    return NULL;
}

static void victim_start_threads(enum victim_mode mode)
{
    pthread_t th;
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = victim_on_usr1;
    sa.sa_flags = SA_RESTART;
    (void)sigaction(SIGUSR1, &sa, NULL);
    (void)pthread_create(&th, NULL, victim_sleeper, NULL);
    (void)pthread_create(&th, NULL, victim_sleeper, NULL);
    (void)pthread_create(&th, NULL, victim_spinner, NULL);
    if (mode == VICTIM_SPAWNER)
        (void)pthread_create(&th, NULL, victim_spawner, NULL);
    if (mode == VICTIM_TRAP_BLOCKER)
        (void)pthread_create(&th, NULL, victim_trap_blocker, NULL);
    if (mode == VICTIM_SIGNAL_STORM) {
        sa.sa_handler = victim_on_usr2;
        (void)sigaction(SIGUSR2, &sa, NULL);
        (void)pthread_create(&th, NULL, victim_storm, NULL);
    }
}

static int victim_ctl_fd = -1;

/* Serve pings: 'p' -> 'P'; 'q' or EOF -> exit 0. */
static void victim_serve(int ctl, int reply)
{
    char c;

    for (;;) {
        ssize_t r = read(ctl, &c, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || c == 'q')
            _exit(0);
        c = 'P';
        (void)!write(reply, &c, 1);
    }
}

static void *victim_server(void *arg)
{
    (void)arg;
    victim_serve(victim_ctl_fd, victim_reply_fd);
    return NULL;
}

static void victim_main(int ctl, int reply, enum victim_mode mode)
{
    char c = 'R';
    pthread_t th;

    victim_reply_fd = reply;
    victim_ctl_fd = ctl;
    victim_start_threads(mode);
    if (mode == VICTIM_ZOMBIE_LEADER) {
        (void)pthread_create(&th, NULL, victim_server, NULL);
        (void)!write(reply, &c, 1);
        pthread_exit(NULL); /* the leader stays a zombie while the other threads run */
    }
    (void)!write(reply, &c, 1);
    victim_serve(ctl, reply);
}

struct victim {
    pid_t pid;
    int ctl;   /* write end: commands to the victim */
    int reply; /* read end: its answers */
};

/* Read one byte from fd, waiting for it; '\0' on EOF. A wait past the hang guard fails the
 * test, saying what was awaited. */
static char read_byte(int fd, const char *what)
{
    char c = '\0';

    if (!test_wait_readable(fd))
        fail_msg("no %s within the hang guard (%d s)", what, test_guard_s());
    if (read(fd, &c, 1) != 1)
        c = '\0';
    return c;
}

static struct victim victim_spawn(enum victim_mode mode)
{
    struct victim v;
    int ctl[2], rep[2];

    assert_int_equal(pipe(ctl), 0);
    assert_int_equal(pipe(rep), 0);
    v.pid = fork();
    assert_true(v.pid >= 0);
    if (v.pid == 0) {
        /* Dies with the test binary: a victim a failed test left stopped would otherwise hold
         * the test's output pipe, and ctest would wait for it. */
        (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
        (void)close(ctl[1]);
        (void)close(rep[0]);
        victim_main(ctl[0], rep[1], mode);
    }
    (void)close(ctl[0]);
    (void)close(rep[1]);
    v.ctl = ctl[1];
    v.reply = rep[0];
    assert_int_equal(read_byte(v.reply, "'R' from the victim"), 'R'); /* its threads exist */
    return v;
}

/* True when the victim's main thread answers a ping (skipping 'U' bytes); false when it died.
 * A victim that stays stopped fails the test at the hang guard. */
static bool victim_ping(const struct victim *v)
{
    char c = 'p';

    if (write(v->ctl, &c, 1) != 1)
        return false;
    do
        c = read_byte(v->reply, "answer to a ping");
    while (c == 'U');
    return c == 'P';
}

/* Kill and reap; assert the status came to us (target did not swallow our child's exit). */
static void victim_kill(struct victim *v)
{
    int status = 0;

    (void)kill(v->pid, SIGKILL);
    assert_int_equal(waitpid(v->pid, &status, 0), v->pid);
    assert_true(WIFSIGNALED(status));
    (void)close(v->ctl);
    (void)close(v->reply);
}

static bool held(pid_t pid)
{
    bool h = true;

    assert_int_equal(target_is_stopped_or_traced(pid, &h, NULL), 0);
    return h;
}

/* Every seized tid is in a ptrace stop, and so is every live thread of the process. */
static void assert_all_traced_stopped(pid_t pid)
{
    pid_t tids[TARGET_MAX_THREADS];
    size_t n = 0;

    assert_int_equal(procstat_tids(pid, tids, TARGET_MAX_THREADS, &n, NULL), 0);
    for (size_t i = 0; i < n; i++) {
        char st = '?';
        if (procstat_state(pid, tids[i], &st, NULL) < 0)
            continue; /* exited since listing */
        if (st != 't' && st != 'Z' && st != 'X')
            fail_msg("thread %d of %d is in state %c, not t", (int)tids[i], (int)pid, st);
    }
}

struct want_state {
    pid_t pid, tid; /* tid 0: every thread of pid */
    char want;
    bool gone; /* the process vanished while we looked */
};

static bool in_state(void *arg)
{
    struct want_state *w = arg;
    pid_t tids[64];
    size_t n = 1, ok = 0;

    tids[0] = w->tid;
    if (w->tid == 0 && procstat_tids(w->pid, tids, 64, &n, NULL) < 0) {
        w->gone = true;
        return true;
    }
    for (size_t i = 0; i < n; i++) {
        char st = '?';
        ok += procstat_state(w->pid, tids[i], &st, NULL) == 0 && st == w->want;
    }
    return ok == n;
}

/* Wait until thread tid of pid (every thread when tid is 0) is in state want: /proc gives no
 * event, so it is polled. False when the process is gone or the hang guard expired. */
static bool wait_state(pid_t pid, pid_t tid, char want)
{
    struct want_state w = {.pid = pid, .tid = tid, .want = want};

    return test_wait_until(in_state, &w) && !w.gone;
}

static bool wait_all_state(pid_t pid, char want)
{
    return wait_state(pid, 0, want);
}

/* ---- seize / stop / resume / detach ---------------------------------------------------------- */

static void test_seize_resume_detach(void **state)
{
    struct victim v = victim_spawn(VICTIM_PLAIN);
    pid_t tids[16];
    size_t n = 0;
    struct ps_err err;

    (void)state;
    ps_err_clear(&err);
    assert_false(held(v.pid));
    assert_int_equal(target_seize_all(v.pid, &n, &err), 0);
    assert_int_equal(n, 4); /* main + 2 sleepers + spinner */
    assert_int_equal(target_current_pid(), v.pid);
    assert_int_equal(target_tids(tids, 16), 4);
    for (size_t i = 0; i < 4; i++) {
        char st = '?';
        assert_int_equal(procstat_state(v.pid, tids[i], &st, NULL), 0);
        assert_int_equal(st, 't');
    }
    assert_true(held(v.pid));

    assert_int_equal(target_resume_all(&err), 0);
    assert_true(victim_ping(&v)); /* runs while still seized */
    assert_int_equal(target_stop_all(&err), 0);
    assert_all_traced_stopped(v.pid);

    assert_int_equal(target_detach_all(&err), 0);
    assert_int_equal(err.code, 0);
    assert_int_equal(target_current_pid(), 0);
    assert_false(held(v.pid));
    assert_true(victim_ping(&v));
    victim_kill(&v);
}

/* Many short cycles: a stale second PTRACE_INTERRUPT would re-stop a thread after resume. */
static void test_repeated_cycles(void **state)
{
    struct victim v = victim_spawn(VICTIM_PLAIN);
    size_t n = 0;

    (void)state;
    for (int i = 0; i < 40; i++) {
        assert_int_equal(target_seize_all(v.pid, &n, NULL), 0);
        assert_int_equal(target_resume_all(NULL), 0);
        assert_true(victim_ping(&v));
        assert_int_equal(target_stop_all(NULL), 0);
        assert_int_equal(target_resume_all(NULL), 0);
        assert_true(victim_ping(&v));
        assert_int_equal(target_detach_all(NULL), 0);
    }
    victim_kill(&v);
}

/* The kernel refuses to seize a zombie (EPERM): a zombie leader is skipped, not an error. */
static void test_zombie_leader(void **state)
{
    struct victim v = victim_spawn(VICTIM_ZOMBIE_LEADER);
    struct ps_err err;
    size_t n = 0;
    char st = '?';

    (void)state;
    ps_err_clear(&err);
    assert_true(wait_state(v.pid, v.pid, 'Z'));
    assert_int_equal(procstat_state(v.pid, v.pid, &st, NULL), 0);
    assert_int_equal(st, 'Z');
    if (target_seize_all(v.pid, &n, &err) != 0)
        fail_msg("seize: %s", err.msg);
    assert_int_equal(n, 4); /* 2 sleepers, spinner, server */
    assert_all_traced_stopped(v.pid);
    assert_int_equal(target_resume_all(NULL), 0);
    assert_true(victim_ping(&v));
    assert_int_equal(target_detach_all(NULL), 0);
    assert_false(held(v.pid));
    assert_true(victim_ping(&v));
    victim_kill(&v);
}

static void test_detach_from_stopped(void **state)
{
    struct victim v = victim_spawn(VICTIM_PLAIN);
    size_t n = 0;

    (void)state;
    assert_int_equal(target_seize_all(v.pid, &n, NULL), 0);
    assert_int_equal(target_detach_all(NULL), 0); /* straight from the stop, no resume */
    assert_false(held(v.pid));
    assert_true(victim_ping(&v));
    victim_kill(&v);
}

static void test_exit_while_seized(void **state)
{
    struct victim v = victim_spawn(VICTIM_PLAIN);
    size_t n = 0;
    struct ps_err err;

    (void)state;
    ps_err_clear(&err);
    assert_int_equal(target_seize_all(v.pid, &n, &err), 0);
    assert_int_equal(kill(v.pid, SIGKILL), 0); /* dies while every thread is stopped */
    assert_int_equal(target_detach_all(&err), 0);
    assert_int_equal(target_current_pid(), 0);
    victim_kill(&v); /* our waitpid still gets SIGKILL: the leader's status was not taken */
}

static void test_exit_while_resumed(void **state)
{
    struct victim v = victim_spawn(VICTIM_PLAIN);
    size_t n = 0;
    int status = 0;
    char c = 'q';

    (void)state;
    assert_int_equal(target_seize_all(v.pid, &n, NULL), 0);
    assert_int_equal(target_resume_all(NULL), 0);
    assert_int_equal(write(v.ctl, &c, 1), 1); /* the victim exits by itself */
    assert_int_equal(target_detach_all(NULL), 0);
    assert_int_equal(waitpid(v.pid, &status, 0), v.pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    (void)close(v.ctl);
    (void)close(v.reply);
}

/* ---- signals to the target ------------------------------------------------------------------- */

/* One round of a resumed target's event loop: pass stops on; true once the victim's SIGUSR1
 * handler wrote its 'U' (a byte is waiting on the reply pipe). */
static bool serviced_until_reply(void *arg)
{
    const struct victim *v = arg;
    struct pollfd p = {.fd = v->reply, .events = POLLIN};

    assert_int_equal(target_service(NULL), 0);
    return poll(&p, 1, 0) == 1;
}

static void test_signal_passed_on_while_resumed(void **state)
{
    struct victim v = victim_spawn(VICTIM_PLAIN);
    size_t n = 0;

    (void)state;
    assert_int_equal(target_seize_all(v.pid, &n, NULL), 0);
    assert_int_equal(target_resume_all(NULL), 0);
    assert_int_equal(kill(v.pid, SIGUSR1), 0);
    /* The receiving thread sits in a signal-delivery stop until target_service passes it on;
     * a signal never passed on leaves the pipe empty until the hang guard. */
    if (!test_wait_until(serviced_until_reply, &v))
        fail_msg("SIGUSR1 was not passed on within the hang guard (%d s)", test_guard_s());
    assert_int_equal(read_byte(v.reply, "'U' from the victim"), 'U');
    assert_int_equal(target_detach_all(NULL), 0);
    assert_false(held(v.pid));
    victim_kill(&v);
}

static void test_signal_while_stopped_delivered_after_detach(void **state)
{
    struct victim v = victim_spawn(VICTIM_PLAIN);
    size_t n = 0;

    (void)state;
    assert_int_equal(target_seize_all(v.pid, &n, NULL), 0);
    assert_int_equal(kill(v.pid, SIGUSR1), 0);
    assert_int_equal(target_detach_all(NULL), 0);
    assert_int_equal(read_byte(v.reply, "'U' from the victim"), 'U');
    assert_false(held(v.pid));
    victim_kill(&v);
}

static void test_user_sigstop_survives(void **state)
{
    struct victim v = victim_spawn(VICTIM_PLAIN);
    size_t n = 0;
    char st = '?';

    (void)state;
    assert_int_equal(kill(v.pid, SIGSTOP), 0);
    assert_true(wait_all_state(v.pid, 'T'));
    assert_int_equal(target_seize_all(v.pid, &n, NULL), 0);
    assert_int_equal(n, 4);
    assert_int_equal(target_resume_all(NULL), 0); /* must not undo the user's SIGSTOP */
    assert_int_equal(target_service(NULL), 0);
    assert_int_equal(procstat_state(v.pid, v.pid, &st, NULL), 0);
    assert_int_equal(st, 't');
    assert_int_equal(target_detach_all(NULL), 0);
    assert_true(wait_all_state(v.pid, 'T')); /* stopped as the user left it, untraced */
    assert_int_equal(kill(v.pid, SIGCONT), 0);
    assert_true(victim_ping(&v));
    assert_false(held(v.pid));
    victim_kill(&v);
}

/* ---- draining breakpoint traps before detach --------------------------------------------------- */

/* The tid of the victim thread named comm, or 0. */
static pid_t victim_thread_now(pid_t pid, const char *comm)
{
    pid_t tids[16];
    size_t n = 0;

    assert_int_equal(procstat_tids(pid, tids, 16, &n, NULL), 0);
    for (size_t i = 0; i < n; i++) {
        char path[64], name[32] = "";
        FILE *f;
        (void)snprintf(path, sizeof(path), "/proc/%d/task/%d/comm", (int)pid, (int)tids[i]);
        f = fopen(path, "re");
        if (f && fgets(name, sizeof(name), f) && strncmp(name, comm, strlen(comm)) == 0 &&
            name[strlen(comm)] == '\n') {
            (void)fclose(f);
            return tids[i];
        }
        if (f)
            (void)fclose(f);
    }
    return 0;
}

struct named_thread {
    pid_t pid, tid;
    const char *comm;
};

static bool thread_named(void *arg)
{
    struct named_thread *t = arg;

    t->tid = victim_thread_now(t->pid, t->comm);
    return t->tid > 0;
}

/* The tid of the victim thread named comm, waiting for it to name itself. */
static pid_t victim_thread(pid_t pid, const char *comm)
{
    struct named_thread t = {.pid = pid, .comm = comm};

    if (!test_wait_until(thread_named, &t))
        fail_msg("no victim thread named %s within the hang guard (%d s)", comm, test_guard_s());
    return t.tid;
}

/* Whether SIGTRAP is in the thread's /proc status mask `field` (SigPnd, SigBlk). */
static bool sigtrap_in(pid_t pid, pid_t tid, const char *field)
{
    char path[64], line[128];
    unsigned long long mask = 0;
    FILE *f;

    (void)snprintf(path, sizeof(path), "/proc/%d/task/%d/status", (int)pid, (int)tid);
    f = fopen(path, "re");
    assert_non_null(f);
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, field, strlen(field)) == 0 && line[strlen(field)] == ':')
            mask = strtoull(line + strlen(field) + 1, NULL, 16);
    (void)fclose(f);
    return (mask >> (SIGTRAP - 1)) & 1;
}

/* Stand-in breakpoint traps: a SIGTRAP sent with tgkill. */
static bool trap_is_tkill(void *ctx, pid_t tid, const siginfo_t *si)
{
    (void)ctx;
    (void)tid;
    return si->si_signo == SIGTRAP && si->si_code == SI_TKILL;
}

static bool trap_never(void *ctx, pid_t tid, const siginfo_t *si)
{
    (void)ctx;
    (void)tid;
    (void)si;
    return false;
}

static const struct target_trap_test tkill_traps = {.is_trap = trap_is_tkill};
static const struct target_trap_test no_traps = {.is_trap = trap_never};

/* A copy of the victim's victim_spins. */
struct spin_counts {
    unsigned long n[SPIN_THREADS];
};
_Static_assert(sizeof(struct spin_counts) == sizeof(victim_spins), "one copy of the counters");

/* The victim's spin counters, read from its memory into *out; false once it is gone. */
static bool victim_spins_read(pid_t pid, struct spin_counts *out)
{
    struct iovec local = {.iov_base = out->n, .iov_len = sizeof(victim_spins)};
    struct iovec remote = {.iov_base = (void *)victim_spins, .iov_len = sizeof(victim_spins)};

    return process_vm_readv(pid, &local, 1, &remote, 1, 0) == (ssize_t)sizeof(victim_spins);
}

struct survival {
    pid_t pid;
    unsigned spinners; /* bits 1 << SPIN_*: the threads that must run */
    struct spin_counts before;
    int status;
    bool died;
};

/* True once every awaited spinner counted a loop past `before`, or the victim died. */
static bool ran_or_died(void *arg)
{
    struct survival *s = arg;
    struct spin_counts now;

    if (waitpid(s->pid, &s->status, WNOHANG) == s->pid) {
        s->died = true;
        return true;
    }
    if (!victim_spins_read(s->pid, &now))
        return false; /* dying: the next round reaps it */
    for (int i = 0; i < SPIN_THREADS; i++)
        if ((s->spinners & (1u << i)) && now.n[i] == s->before.n[i])
            return false;
    return true;
}

/*
 * The detached victim survives its spinning threads `spinners` (bits 1 << SPIN_*) running again:
 * each ran user code after this call (its counter moved), and the victim is alive and answers.
 * A SIGTRAP left queued to such a thread, and not blocked, is delivered on the thread's first
 * return to user space and kills the process before its counter can move: the bug shows as a
 * death (reaped here, with its signal), whatever the machine's speed. A spinner left stopped
 * fails at the hang guard. Call it after the detach, and after the SIGCONT that ends a user's
 * stop.
 */
static void assert_victim_survived(struct victim *v, unsigned spinners)
{
    struct survival s = {.pid = v->pid, .spinners = spinners};

    (void)victim_spins_read(v->pid, &s.before); /* gone already: ran_or_died reaps it */
    if (!test_wait_until(ran_or_died, &s))
        fail_msg("the victim's spinners did not run within the hang guard (%d s)", test_guard_s());
    if (s.died || waitpid(v->pid, &s.status, WNOHANG) == v->pid) {
        v->pid = -1; /* reaped: nothing left to kill */
        fail_msg("the victim died after the detach (%s %d)",
                 WIFSIGNALED(s.status) ? "signal" : "exit status",
                 WIFSIGNALED(s.status) ? WTERMSIG(s.status) : WEXITSTATUS(s.status));
    }
    assert_true(victim_ping(v));
}

/* A trap queued to a stopped thread: resuming and re-stopping it may never let it take the
 * trap (the interrupt is served first), so the drain must, and leave it stopped. */
static void test_drain_queued_trap(void **state)
{
    struct victim v = victim_spawn(VICTIM_PLAIN);
    pid_t spin = victim_thread(v.pid, "spin");
    struct ps_err err;
    size_t n = 0;
    char st = '?';

    (void)state;
    ps_err_clear(&err);
    assert_int_equal(target_seize_all(v.pid, &n, &err), 0);
    assert_int_equal(syscall(SYS_tgkill, v.pid, spin, SIGTRAP), 0);
    assert_true(sigtrap_in(v.pid, spin, "SigPnd"));
    assert_int_equal(target_drain_traps(0, &no_traps, &err), 0);
    assert_true(sigtrap_in(v.pid, spin, "SigPnd")); /* not ours: left for the target */
    if (target_drain_traps(0, &tkill_traps, &err) != 0)
        fail_msg("drain: %s", err.msg);
    assert_false(sigtrap_in(v.pid, spin, "SigPnd"));
    assert_int_equal(procstat_state(v.pid, spin, &st, NULL), 0);
    assert_int_equal(st, 't');
    assert_int_equal(target_detach_all(&err), 0);
    assert_victim_survived(&v, 1u << SPIN_SPIN);
    victim_kill(&v);
}

/* A trap queued to a thread in the user's group stop (SIGSTOP came between the breakpoint hit
 * and the trap's delivery: the kernel serves the stop first): a detach would leave it queued, and
 * the target would die of it at SIGCONT. The drain takes it, and the detached threads go back
 * into the user's stop (the kernel re-instates a group stop in effect at detach). */
static void test_drain_trap_in_group_stop(void **state)
{
    struct victim v = victim_spawn(VICTIM_PLAIN);
    pid_t spin = victim_thread(v.pid, "spin");
    struct ps_err err;
    size_t n = 0;

    (void)state;
    ps_err_clear(&err);
    assert_int_equal(kill(v.pid, SIGSTOP), 0);
    assert_true(wait_all_state(v.pid, 'T'));
    assert_int_equal(target_seize_all(v.pid, &n, &err), 0);
    assert_int_equal(syscall(SYS_tgkill, v.pid, spin, SIGTRAP), 0);
    assert_true(sigtrap_in(v.pid, spin, "SigPnd"));
    if (target_drain_traps(0, &tkill_traps, &err) != 0)
        fail_msg("drain: %s", err.msg);
    assert_false(sigtrap_in(v.pid, spin, "SigPnd"));
    assert_int_equal(target_detach_all(&err), 0);
    assert_true(wait_all_state(v.pid, 'T')); /* still stopped as the user left it */
    assert_int_equal(kill(v.pid, SIGCONT), 0);
    assert_victim_survived(&v, 1u << SPIN_SPIN);
    victim_kill(&v);
}

/* A trap queued to a thread pyscope had stopped just before a SIGSTOP took hold (another thread
 * dequeued it): the thread is in an interrupt stop, not a group stop, but the kernel marked it to
 * join the group stop, so resumed for its drain it enters the stop before taking the trap
 * (issue 19 item 6). The drain must end the stop (SIGCONT) and drain it again; the old code
 * returned 0 with the trap still queued, and the target died of it after SIGCONT. */
static void test_drain_trap_marked_for_group_stop(void **state)
{
    struct victim v = victim_spawn(VICTIM_PLAIN);
    pid_t spin = victim_thread(v.pid, "spin");
    struct ps_err err;
    size_t n = 0;
    int st = 0;

    (void)state;
    ps_err_clear(&err);
    assert_int_equal(target_seize_all(v.pid, &n, &err), 0);
    assert_int_equal(syscall(SYS_tgkill, v.pid, spin, SIGTRAP), 0);
    assert_true(sigtrap_in(v.pid, spin, "SigPnd"));
    /* Behind target.c's back, the main thread alone runs and takes a SIGSTOP: it starts the
     * group stop, which marks every other thread (spin included) to join it. Its stops are
     * collected here, so target.c still sees it in a ptrace stop, as it is. */
    assert_int_equal(ptrace(PTRACE_CONT, v.pid, NULL, NULL), 0);
    assert_int_equal(kill(v.pid, SIGSTOP), 0);
    assert_int_equal(waitpid(v.pid, &st, __WALL), v.pid);
    assert_true(WIFSTOPPED(st) && WSTOPSIG(st) == SIGSTOP && (st >> 16) == 0);
    assert_int_equal(ptrace(PTRACE_CONT, v.pid, NULL, (void *)(long)SIGSTOP), 0);
    assert_int_equal(waitpid(v.pid, &st, __WALL), v.pid);
    assert_true(WIFSTOPPED(st) && WSTOPSIG(st) == SIGSTOP && (st >> 16) == PTRACE_EVENT_STOP);
    if (target_drain_traps(0, &tkill_traps, &err) != 0 || sigtrap_in(v.pid, spin, "SigPnd")) {
        (void)kill(v.pid, SIGKILL); /* a stopped victim would hold the test's output pipe */
        fail_msg("the trap is still queued after the drain (%s)", err.msg);
    }
    assert_int_equal(target_detach_all(&err), 0);
    assert_true(wait_all_state(v.pid, 'T')); /* the user's stop holds again */
    assert_int_equal(kill(v.pid, SIGCONT), 0);
    assert_victim_survived(&v, 1u << SPIN_SPIN);
    victim_kill(&v);
}

/* A thread that blocks SIGTRAP never takes a queued trap by itself (it would die of it when it
 * unblocks, long after pyscope left): unblocked for the drain only, its mask restored. */
static void test_drain_blocked_trap(void **state)
{
    struct victim v = victim_spawn(VICTIM_TRAP_BLOCKER);
    pid_t tb = victim_thread(v.pid, "trapblk"); /* named after it blocked SIGTRAP */
    struct ps_err err;
    size_t n = 0;

    (void)state;
    ps_err_clear(&err);
    assert_true(sigtrap_in(v.pid, tb, "SigBlk"));
    assert_int_equal(target_seize_all(v.pid, &n, &err), 0);
    assert_int_equal(syscall(SYS_tgkill, v.pid, tb, SIGTRAP), 0);
    assert_true(sigtrap_in(v.pid, tb, "SigPnd"));
    if (target_drain_traps(0, &tkill_traps, &err) != 0)
        fail_msg("drain: %s", err.msg);
    assert_false(sigtrap_in(v.pid, tb, "SigPnd"));
    assert_true(sigtrap_in(v.pid, tb, "SigBlk")); /* its own mask again */
    assert_int_equal(target_detach_all(&err), 0);
    assert_victim_survived(&v, 1u << SPIN_TRAPBLK);
    assert_true(sigtrap_in(v.pid, tb, "SigBlk"));
    victim_kill(&v);
}

/* A thread standing at the breakpoint address is stepped one instruction; the step's own trap
 * must not reach the target either. */
static void test_drain_steps_at_breakpoint(void **state)
{
    struct victim v = victim_spawn(VICTIM_PLAIN);
    pid_t spin = victim_thread(v.pid, "spin");
    struct user_regs_struct before, after;
    struct ps_err err;
    size_t n = 0;
    char st = '?';

    (void)state;
    ps_err_clear(&err);
    assert_int_equal(target_seize_all(v.pid, &n, &err), 0);
    assert_int_equal(ptrace(PTRACE_GETREGS, spin, NULL, &before), 0);
    if (target_drain_traps(before.rip, &no_traps, &err) != 0)
        fail_msg("drain: %s", err.msg);
    assert_int_equal(procstat_state(v.pid, spin, &st, NULL), 0);
    assert_int_equal(st, 't');
    assert_int_equal(ptrace(PTRACE_GETREGS, spin, NULL, &after), 0);
    assert_true(after.rip != before.rip); /* one instruction of the spin loop ran */
    assert_false(sigtrap_in(v.pid, spin, "SigPnd"));
    assert_int_equal(target_detach_all(&err), 0);
    assert_victim_survived(&v, 1u << SPIN_SPIN);
    victim_kill(&v);
}

/* ---- threads appearing during the seize ------------------------------------------------------ */

static void test_threads_appear_during_seize(void **state)
{
    struct victim v = victim_spawn(VICTIM_SPAWNER);
    struct ps_err err;
    size_t n = 0;

    (void)state;
    for (int i = 0; i < 5; i++) {
        ps_err_clear(&err);
        assert_int_equal(target_seize_all(v.pid, &n, &err), 0);
        assert_true(n >= 5);
        assert_all_traced_stopped(v.pid); /* no thread escaped */
        assert_int_equal(target_detach_all(&err), 0);
        assert_false(held(v.pid));
        assert_true(victim_ping(&v));
    }
    victim_kill(&v);
}

/* Signal-delivery stops keep arriving while we wait for interrupt stops: each consumes the
 * pending interrupt, so the thread must be interrupted again after its signal is passed on. */
static void test_signal_storm(void **state)
{
    struct victim v = victim_spawn(VICTIM_SIGNAL_STORM);
    struct ps_err err;
    size_t n = 0;

    (void)state;
    for (int i = 0; i < 10; i++) {
        ps_err_clear(&err);
        if (target_seize_all(v.pid, &n, &err) != 0)
            fail_msg("seize: %s", err.msg);
        assert_int_equal(n, 5);
        assert_all_traced_stopped(v.pid);
        assert_int_equal(target_resume_all(NULL), 0);
        for (int k = 0; k < 50; k++)
            assert_int_equal(target_service(NULL), 0);
        assert_int_equal(target_detach_all(&err), 0);
        assert_false(held(v.pid));
        assert_true(victim_ping(&v));
    }
    victim_kill(&v);
}

/* ---- errors ---------------------------------------------------------------------------------- */

static void test_errors(void **state)
{
    struct victim v = victim_spawn(VICTIM_PLAIN);
    struct ps_err err;
    size_t n = 0;
    int status;
    pid_t gone = fork();

    (void)state;
    assert_true(gone >= 0);
    if (gone == 0)
        _exit(0);
    assert_int_equal(waitpid(gone, &status, 0), gone);
    ps_err_clear(&err);
    assert_int_equal(target_seize_all(gone, &n, &err), -ESRCH);
    assert_non_null(strstr(err.msg, "no such process"));
    assert_int_equal(target_current_pid(), 0);
    ps_err_clear(&err);
    assert_int_equal(target_seize_all(getpid(), &n, &err), -EINVAL);
    assert_int_equal(target_resume_all(NULL), -EINVAL);
    assert_int_equal(target_stop_all(NULL), -EINVAL);
    assert_int_equal(target_detach_all(NULL), 0); /* nothing held: no-op */

    assert_int_equal(target_seize_all(v.pid, &n, NULL), 0);
    ps_err_clear(&err);
    assert_int_equal(target_seize_all(v.pid, &n, &err), -EBUSY);
    assert_int_equal(target_detach_all(NULL), 0);
    victim_kill(&v);
}

static void *resume_from_other_thread(void *arg)
{
    *(int *)arg = target_resume_all(NULL);
    return NULL;
}

static void test_wrong_thread(void **state)
{
    struct victim v = victim_spawn(VICTIM_PLAIN);
    size_t n = 0;
    int rc = 0;
    pthread_t th;

    (void)state;
    assert_int_equal(target_seize_all(v.pid, &n, NULL), 0);
    assert_int_equal(pthread_create(&th, NULL, resume_from_other_thread, &rc), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(rc, -EINVAL);
    assert_int_equal(target_detach_all(NULL), 0);
    victim_kill(&v);
}

static void test_eperm_diagnosed(void **state)
{
    struct victim v;
    char msg[PS_ERR_MSG_MAX] = "";
    int p[2], status = 0;
    pid_t helper;

    (void)state;
    if (getuid() != 0)
        skip(); /* needs to drop to another uid */
    v = victim_spawn(VICTIM_PLAIN);
    assert_int_equal(pipe(p), 0);
    helper = fork();
    assert_true(helper >= 0);
    if (helper == 0) {
        struct ps_err err;
        size_t n = 0;
        int rc;
        ps_err_clear(&err);
        if (setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0)
            _exit(3);
        rc = target_seize_all(v.pid, &n, &err);
        (void)!write(p[1], err.msg, strlen(err.msg) + 1);
        _exit(rc == -PS_EPERM ? 0 : 1);
    }
    (void)close(p[1]);
    assert_true(read(p[0], msg, sizeof(msg) - 1) > 0);
    assert_int_equal(waitpid(helper, &status, 0), helper);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) != 0)
        fail_msg("helper: %s", msg);
    assert_non_null(strstr(msg, "runs as uid 0"));
    assert_non_null(strstr(msg, "pyscope runs as uid 65534"));
    assert_non_null(strstr(msg, "CAP_SYS_PTRACE"));
    assert_false(held(v.pid));
    (void)close(p[0]);
    victim_kill(&v);
}

/* ---- teardown -------------------------------------------------------------------------------- */

/* What the handlers run, on a victim seized and stopped (or resumed: running threads, as the
 * tracer keeps them between hits, are interrupted and detached by the teardown too, not left to
 * the kernel's detach at our exit). We stay alive to look: only the teardown can have released
 * the victim. */
static void teardown_alone(bool resume)
{
    struct victim v = victim_spawn(VICTIM_PLAIN);
    pid_t left[16];
    size_t n = 0;

    assert_int_equal(target_seize_all(v.pid, &n, NULL), 0);
    if (resume) {
        assert_int_equal(target_resume_all(NULL), 0);
        assert_true(victim_ping(&v)); /* running, still seized */
    }
    assert_true(held(v.pid));
    target_teardown_signal_safe();
    assert_int_equal(target_tids(left, 16), 0);
    assert_false(held(v.pid));
    assert_true(victim_ping(&v));
    assert_int_equal(target_detach_all(NULL), 0); /* forgets the target */
    assert_int_equal(target_current_pid(), 0);
    victim_kill(&v);
}

static void test_signal_safe_teardown_alone(void **state)
{
    (void)state;
    teardown_alone(false);
}

static void test_signal_safe_teardown_running(void **state)
{
    (void)state;
    teardown_alone(true);
}

/* What the signal-time teardown asked of the disarm hook. */
struct disarm_log {
    int calls;
    pid_t first;
};

static void disarm_note(void *ctx, pid_t tid)
{
    struct disarm_log *log = ctx;

    if (log->calls++ == 0)
        log->first = tid;
}

/* The crash handler's teardown drains like tracer_stop: "breakpoint traps" queued to stopped
 * threads (one of which blocks SIGTRAP) are taken and suppressed before the detach, with the
 * disarm hook called first with tid 0, then for the threads. Without the drain the detached
 * spinner would die of its SIGTRAP at once. */
static void test_signal_safe_teardown_drains(void **state)
{
    struct victim v = victim_spawn(VICTIM_TRAP_BLOCKER);
    pid_t spin = victim_thread(v.pid, "spin"), tb = victim_thread(v.pid, "trapblk");
    struct disarm_log log = {0};
    const struct target_hooks hooks = {.ctx = &log,
                                       .claim_sigtrap = trap_is_tkill,
                                       .is_trap = trap_is_tkill,
                                       .disarm_signal_safe = disarm_note};
    pid_t left[16];
    size_t n = 0;

    (void)state;
    assert_true(sigtrap_in(v.pid, tb, "SigBlk"));
    assert_int_equal(target_set_hooks(&hooks, NULL), 0);
    assert_int_equal(target_seize_all(v.pid, &n, NULL), 0);
    assert_int_equal(syscall(SYS_tgkill, v.pid, spin, SIGTRAP), 0);
    assert_int_equal(syscall(SYS_tgkill, v.pid, tb, SIGTRAP), 0);
    target_teardown_signal_safe();
    assert_int_equal(target_tids(left, 16), 0);
    assert_int_equal(log.first, 0);
    assert_true(log.calls >= 1 + (int)n);
    assert_false(sigtrap_in(v.pid, spin, "SigPnd"));
    assert_false(sigtrap_in(v.pid, tb, "SigPnd"));
    assert_true(sigtrap_in(v.pid, tb, "SigBlk")); /* its own mask again */
    assert_false(held(v.pid));
    assert_victim_survived(&v, 1u << SPIN_SPIN | 1u << SPIN_TRAPBLK);
    assert_int_equal(target_detach_all(NULL), 0); /* forgets the target and the hooks */
    victim_kill(&v);
}

/*
 * A separate tracer process seizes the victim (and optionally resumes it), reports, then
 * waits to be killed by sig. The victim must come out running and untraced.
 */
static void tracer_killed_by(int sig, bool resume)
{
    struct victim v = victim_spawn(VICTIM_PLAIN);
    int p[2], status = 0;
    pid_t tracer;

    assert_int_equal(pipe(p), 0);
    tracer = fork();
    assert_true(tracer >= 0);
    if (tracer == 0) {
        struct rlimit nocore = {0, 0};
        size_t n = 0;
        char c = 'S';
        (void)setrlimit(RLIMIT_CORE, &nocore);
        /* a shell's background job inherits SIGINT/SIGQUIT ignored, which the teardown keeps */
        (void)signal(sig, SIG_DFL);
        if (target_install_signal_teardown(NULL) < 0 || target_seize_all(v.pid, &n, NULL) < 0 ||
            (resume && target_resume_all(NULL) < 0))
            c = 'F';
        (void)!write(p[1], &c, 1);
        for (;;)
            (void)pause();
    }
    (void)close(p[1]);
    assert_int_equal(read_byte(p[0], "'S' from the tracer"), 'S');
    assert_true(held(v.pid)); /* the tracer really holds it */
    assert_int_equal(kill(tracer, sig), 0);
    /* a tracer that ignores its signal fails the test at the hang guard, not hangs it */
    if (!test_wait_exit(tracer, &status)) {
        (void)kill(tracer, SIGKILL);
        (void)waitpid(tracer, &status, 0);
        fail_msg("the tracer survived signal %d", sig);
    }
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), sig); /* the handler re-raised: died of the signal */
    assert_false(held(v.pid));
    assert_true(victim_ping(&v)); /* alive (no PTRACE_O_EXITKILL) and running */
    (void)close(p[0]);
    victim_kill(&v);
}

static void test_tracer_sigterm(void **state)
{
    (void)state;
    tracer_killed_by(SIGTERM, false);
}

static void test_tracer_other_signals(void **state)
{
    (void)state;
    tracer_killed_by(SIGINT, false);
    tracer_killed_by(SIGHUP, true);
    tracer_killed_by(SIGQUIT, false);
    tracer_killed_by(SIGTERM, true);
}

static void test_tracer_sigkill(void **state)
{
    (void)state;
    tracer_killed_by(SIGKILL, false); /* no handler runs: the kernel's detach must suffice */
    tracer_killed_by(SIGKILL, true);
}

/* After each test, even a failed one: release whatever is still seized. */
static int release_target(void **state)
{
    (void)state;
    return target_detach_all(NULL) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_seize_resume_detach, release_target),
        cmocka_unit_test_teardown(test_repeated_cycles, release_target),
        cmocka_unit_test_teardown(test_zombie_leader, release_target),
        cmocka_unit_test_teardown(test_detach_from_stopped, release_target),
        cmocka_unit_test_teardown(test_exit_while_seized, release_target),
        cmocka_unit_test_teardown(test_exit_while_resumed, release_target),
        cmocka_unit_test_teardown(test_signal_passed_on_while_resumed, release_target),
        cmocka_unit_test_teardown(test_signal_while_stopped_delivered_after_detach, release_target),
        cmocka_unit_test_teardown(test_user_sigstop_survives, release_target),
        cmocka_unit_test_teardown(test_drain_queued_trap, release_target),
        cmocka_unit_test_teardown(test_drain_blocked_trap, release_target),
        cmocka_unit_test_teardown(test_drain_trap_in_group_stop, release_target),
        cmocka_unit_test_teardown(test_drain_trap_marked_for_group_stop, release_target),
        cmocka_unit_test_teardown(test_drain_steps_at_breakpoint, release_target),
        cmocka_unit_test_teardown(test_threads_appear_during_seize, release_target),
        cmocka_unit_test_teardown(test_signal_storm, release_target),
        cmocka_unit_test_teardown(test_errors, release_target),
        cmocka_unit_test_teardown(test_wrong_thread, release_target),
        cmocka_unit_test_teardown(test_eperm_diagnosed, release_target),
        cmocka_unit_test_teardown(test_signal_safe_teardown_alone, release_target),
        cmocka_unit_test_teardown(test_signal_safe_teardown_running, release_target),
        cmocka_unit_test_teardown(test_signal_safe_teardown_drains, release_target),
        cmocka_unit_test_teardown(test_tracer_sigterm, release_target),
        cmocka_unit_test_teardown(test_tracer_other_signals, release_target),
        cmocka_unit_test_teardown(test_tracer_sigkill, release_target),
    };

    (void)signal(SIGPIPE, SIG_IGN); /* a dead victim fails a ping, not the whole binary */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
