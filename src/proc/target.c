/* SPDX-License-Identifier: MIT */
/*
 * target: ptrace stop/resume/detach of every thread of one process (see target.h). Sits beside
 * the memory source: it never reads or writes target memory, it only decides whether the
 * target's threads run. Invariants:
 *
 *  - PTRACE_SEIZE with no options (never PTRACE_O_EXITKILL, never PTRACE_ATTACH): if pyscope
 *    dies, the kernel detaches and restarts every tracee (ptrace(2), "the tracer dies");
 *  - a tid enters the registry BEFORE it is seized and leaves it only after it is detached or
 *    gone, so the signal-time teardown never misses a traced thread;
 *  - a signal-delivery stop is passed on at once with the same signal (never swallowed), and a
 *    group stop (user's SIGSTOP) is kept with PTRACE_LISTEN, so the target sees no difference;
 *  - at most one PTRACE_INTERRUPT per running period: the kernel clears a pending interrupt
 *    only when the thread enters a stop (kernel/signal.c ptrace_stop: "any trap clears pending
 *    STOP trap"), so a second one sent to a thread already in its interrupt stop would stay
 *    pending and stop it again right after PTRACE_CONT;
 *  - every wait polls with WNOHANG under one deadline; every /proc re-listing is bounded.
 *
 * Wait-status decoding (ptrace(2), "PTRACE_SEIZE" stops): status >> 16 == PTRACE_EVENT_STOP is an
 * interrupt stop (WSTOPSIG SIGTRAP) or a group stop (WSTOPSIG SIGSTOP/SIGTSTP/SIGTTIN/SIGTTOU);
 * status >> 16 == 0 with WIFSTOPPED is a signal-delivery stop.
 */
#include "pyscope/target.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pyscope/diag.h"
#include "pyscope/evloop.h"
#include "pyscope/procstat.h"

enum tgt_state {
    TGT_FREE = 0,
    TGT_RUNNING,       /* seized, may be running (an interrupt may be pending) */
    TGT_STOPPED,       /* in an interrupt (or other ptrace-event) stop, reported by waitpid */
    TGT_GROUP_STOPPED, /* in a group stop, reported by waitpid */
    TGT_LISTENING,     /* group-stopped, restarted with PTRACE_LISTEN */
};

struct tgt_slot {
    volatile sig_atomic_t tid; /* 0 = free; the only field the signal handler reads or clears */
    enum tgt_state state;      /* main path only; meaningless when tid == 0 */
    bool interrupted;          /* PTRACE_INTERRUPT sent and no stop reported since */
    bool fresh;                /* auto-attached by a clone event, its first stop not yet seen */
};

#define TGT_NS_PER_US INT64_C(1000)
#define TGT_NS_PER_MS INT64_C(1000000)
#define TGT_NS_PER_S  INT64_C(1000000000)
/* Poll backoff between waitpid sweeps: most stops arrive within 1 ms; 20 ms caps the latency. */
#define TGT_BACKOFF_MIN_NS (50 * TGT_NS_PER_US)
#define TGT_BACKOFF_MAX_NS (20 * TGT_NS_PER_MS)
/* After about 1.5 ms of waiting, check whether a silent thread is a zombie. */
#define TGT_ZOMBIE_CHECK_NS TGT_NS_PER_MS

/*
 * The one global of the engine, on purpose: the SIGINT/SIGTERM/SIGHUP/SIGQUIT handlers and the
 * atexit hook must find every traced tid without arguments, and a handler can reach only static
 * storage. A fixed array (no allocation) so the handler reads it safely at any moment; tids are
 * sig_atomic_t, written before PTRACE_SEIZE and cleared after PTRACE_DETACH.
 */
static struct {
    volatile sig_atomic_t pid;  /* the seized process, 0 when none */
    volatile sig_atomic_t used; /* slots [0, used) may hold tids */
    pid_t tracer;               /* thread (gettid) that seized: the only one ptrace obeys */
    bool leader_is_child;       /* pid is our child: leave its exit status to our caller */
    bool hooks_installed;
    volatile sig_atomic_t in_signal; /* target_teardown_signal_safe runs: pure hooks only */
    bool has_events;                 /* event mode (target_set_hooks) */
    struct target_hooks events;
    struct tgt_slot slot[TARGET_MAX_THREADS];
} tgt_reg;

/* ---- small helpers ------------------------------------------------------------------------- */

static long tgt_ptrace(int req, pid_t tid, long data)
{
    if (syscall(SYS_ptrace, (long)req, (long)tid, 0L, data) == 0)
        return 0;
    return -errno;
}

static int64_t tgt_now_ns(void)
{
    return (int64_t)(evloop_now() * (double)TGT_NS_PER_S); /* async-signal-safe */
}

static void tgt_sleep_ns(int64_t ns)
{
    struct timespec ts = {.tv_sec = (time_t)(ns / TGT_NS_PER_S),
                          .tv_nsec = (long)(ns % TGT_NS_PER_S)};

    (void)nanosleep(&ts, NULL);
}

static bool tgt_is_stop_signal(int sig)
{
    return sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
}

static bool tgt_is_live(size_t i)
{
    return tgt_reg.slot[i].tid != 0 &&
           (tgt_reg.slot[i].state == TGT_RUNNING || tgt_reg.slot[i].state == TGT_LISTENING);
}

static bool tgt_is_stopped(size_t i)
{
    return tgt_reg.slot[i].tid != 0 &&
           (tgt_reg.slot[i].state == TGT_STOPPED || tgt_reg.slot[i].state == TGT_GROUP_STOPPED);
}

static size_t tgt_count(void)
{
    size_t n = 0;

    for (size_t i = 0; i < (size_t)tgt_reg.used; i++)
        n += tgt_reg.slot[i].tid != 0;
    return n;
}

static int tgt_check_thread(struct ps_err *err)
{
    if (tgt_reg.pid == 0)
        return ps_err_set(err, -EINVAL, "no target is seized");
    if (gettid() != tgt_reg.tracer)
        return ps_err_set(err, -EINVAL,
                          "ptrace call from thread %d, but pid %d was seized by thread %d; the "
                          "kernel obeys only the seizing thread",
                          (int)gettid(), (int)tgt_reg.pid, (int)tgt_reg.tracer);
    return 0;
}

/* ---- registry -------------------------------------------------------------------------------- */

static ssize_t tgt_find(pid_t tid)
{
    for (size_t i = 0; i < (size_t)tgt_reg.used; i++)
        if (tgt_reg.slot[i].tid == tid)
            return (ssize_t)i;
    return -1;
}

/* Record tid (state RUNNING) before seizing it; the index, or -1 when full. */
static ssize_t tgt_add(pid_t tid)
{
    size_t i = 0;

    while (i < (size_t)tgt_reg.used && tgt_reg.slot[i].tid != 0)
        i++;
    if (i == TARGET_MAX_THREADS)
        return -1;
    tgt_reg.slot[i].state = TGT_RUNNING;
    tgt_reg.slot[i].interrupted = false;
    tgt_reg.slot[i].fresh = false;
    tgt_reg.slot[i].tid = tid;
    if (i == (size_t)tgt_reg.used)
        tgt_reg.used = (sig_atomic_t)(i + 1);
    return (ssize_t)i;
}

static void tgt_drop(size_t i)
{
    tgt_reg.slot[i].tid = 0;
    tgt_reg.slot[i].state = TGT_FREE;
    while (tgt_reg.used > 0 && tgt_reg.slot[tgt_reg.used - 1].tid == 0)
        tgt_reg.used--;
}

/* ---- stop-status handling -------------------------------------------------------------------- */

/* Ask slot i to stop, unless it was already asked during this running period. */
static void tgt_interrupt(size_t i)
{
    if (tgt_reg.slot[i].interrupted)
        return;
    tgt_reg.slot[i].interrupted = true;
    (void)tgt_ptrace(PTRACE_INTERRUPT, tgt_reg.slot[i].tid, 0);
}

/*
 * Let a stopped slot run: PTRACE_CONT, or PTRACE_LISTEN for a group stop so the user's SIGSTOP
 * keeps holding it. ESRCH means it is dying: marked running so the next wait collects it.
 * Returns 0 or the -errno of ptrace.
 */
static long tgt_restart(size_t i)
{
    struct tgt_slot *s = &tgt_reg.slot[i];
    bool group = s->state == TGT_GROUP_STOPPED;
    long r = tgt_ptrace(group ? PTRACE_LISTEN : PTRACE_CONT, s->tid, 0);

    if (r == 0 || r == -ESRCH)
        s->state = group && r == 0 ? TGT_LISTENING : TGT_RUNNING;
    return r;
}

/* A clone event of an event-mode thread: register the new thread (auto-attached, it reports an
 * attach stop before running), or, with a full registry, wait for that stop and detach it. */
static void tgt_on_clone(pid_t parent)
{
    unsigned long msg = 0;
    pid_t tid;
    ssize_t k;
    int st = 0;

    if (tgt_ptrace(PTRACE_GETEVENTMSG, parent, (long)&msg) < 0 || msg == 0)
        return;
    tid = (pid_t)msg;
    if (tgt_find(tid) >= 0)
        return; /* found by a /proc listing first (tgt_auto_attached) */
    k = tgt_add(tid);
    if (k >= 0) {
        tgt_reg.slot[k].fresh = true;
        tgt_reg.slot[k].interrupted = true; /* its attach stop is coming: no interrupt */
        return;
    }
    if (waitpid(tid, &st, __WALL) == tid && WIFSTOPPED(st))
        (void)tgt_ptrace(PTRACE_DETACH, tid, 0);
}

/*
 * Event mode: run the hooks for one stop of slot i and return the status to apply (a claimed
 * SIGTRAP becomes signal 0; a fresh thread's attach stop, which reads as a group stop, becomes a
 * plain event stop).
 */
static int tgt_on_event(size_t i, int status)
{
    struct tgt_slot *s = &tgt_reg.slot[i];
    const struct target_hooks *h = &tgt_reg.events;
    bool quiet = tgt_reg.in_signal; /* in a signal handler: no hook acts, is_trap decides */
    bool (*claim)(void *, pid_t, const siginfo_t *) = quiet ? h->is_trap : h->claim_sigtrap;
    int event = (int)((unsigned)status >> 16);
    siginfo_t si;

    if (s->fresh && event == PTRACE_EVENT_STOP) {
        s->fresh = false;
        if (h->new_thread && !quiet)
            h->new_thread(h->ctx, s->tid);
        return (PTRACE_EVENT_STOP << 16) | (SIGTRAP << 8) | 0x7f;
    }
    if (event == PTRACE_EVENT_CLONE)
        tgt_on_clone(s->tid);
    if (event == PTRACE_EVENT_EXEC && h->exec && !quiet)
        h->exec(h->ctx, s->tid);
    if (event != 0 || WSTOPSIG(status) != SIGTRAP || !claim)
        return status;
    memset(&si, 0, sizeof(si));
    if (tgt_ptrace(PTRACE_GETSIGINFO, s->tid, (long)&si) == 0 && claim(h->ctx, s->tid, &si))
        return 0x7f; /* stopped, signal 0 */
    return status;
}

/*
 * Apply one waitpid status of slot i. want_stop: we are collecting stops (re-interrupt after
 * passing a signal on) rather than servicing running threads (restart what stopped).
 */
static void tgt_on_status(size_t i, int status, bool want_stop)
{
    struct tgt_slot *s = &tgt_reg.slot[i];
    int event = (int)((unsigned)status >> 16);

    if (WIFEXITED(status) || WIFSIGNALED(status)) {
        tgt_drop(i);
        return;
    }
    if (!WIFSTOPPED(status))
        return;
    s->interrupted = false; /* any stop consumed a pending interrupt */
    if (tgt_reg.has_events)
        status = tgt_on_event(i, status);
    if (event == 0) {
        /* Signal-delivery stop: hand the signal on untouched; the target must not lose it
         * (unless tgt_on_event claimed it as a breakpoint trap: then WSTOPSIG is 0). */
        (void)tgt_ptrace(PTRACE_CONT, s->tid, WSTOPSIG(status));
        s->state = TGT_RUNNING;
        if (want_stop)
            tgt_interrupt(i);
        return;
    }
    s->state = event == PTRACE_EVENT_STOP && tgt_is_stop_signal(WSTOPSIG(status))
                   ? TGT_GROUP_STOPPED
                   : TGT_STOPPED;
    if (!want_stop)
        (void)tgt_restart(i);
}

/*
 * Our own child's leader: take only its stops (waitid WSTOPPED) and merely peek at its exit
 * (WNOWAIT), so the exit status stays for the caller's waitpid. A stop is returned in waitpid
 * form (si_status holds event << 8 | signal).
 */
static int tgt_wait_child_leader(pid_t tid, int *status)
{
    siginfo_t si;

    memset(&si, 0, sizeof(si));
    /* ptrace stops are reported even without WSTOPPED: look at si_code to tell an exit */
    if (waitid(P_PID, (id_t)tid, &si, WEXITED | WNOHANG | WNOWAIT | __WALL) == 0 &&
        si.si_pid == tid &&
        (si.si_code == CLD_EXITED || si.si_code == CLD_KILLED || si.si_code == CLD_DUMPED))
        return -1;
    memset(&si, 0, sizeof(si));
    if (waitid(P_PID, (id_t)tid, &si, WSTOPPED | WNOHANG | __WALL) < 0)
        return errno == EINTR ? 0 : -1;
    if (si.si_pid != tid)
        return 0;
    *status = (int)(((unsigned)si.si_status << 8) | 0x7fU);
    return 1;
}

/* One non-blocking wait on slot i: 1 with *status, 0 nothing yet, -1 no longer our tracee. */
static int tgt_wait_one(size_t i, int *status)
{
    pid_t tid = tgt_reg.slot[i].tid;
    pid_t r;

    if (tid == (pid_t)tgt_reg.pid && tgt_reg.leader_is_child)
        return tgt_wait_child_leader(tid, status);
    r = waitpid(tid, status, WNOHANG | __WALL);
    if (r < 0)
        return errno == EINTR ? 0 : -1; /* ECHILD: gone, or detached behind our back */
    return r == 0 ? 0 : 1;
}

/* Drain the pending wait statuses of slot i without blocking. */
static void tgt_poll_one(size_t i, bool want_stop)
{
    int status = 0;

    while (tgt_reg.slot[i].tid != 0 && !(want_stop && tgt_is_stopped(i))) {
        int r = tgt_wait_one(i, &status);
        if (r < 0)
            tgt_drop(i);
        if (r <= 0)
            return;
        tgt_on_status(i, status, want_stop);
    }
}

/* A thread whose stop never comes because it is a zombie (a leader that exited before its
 * threads reports nothing until they all go): forget it. */
static void tgt_drop_if_dead(size_t i)
{
    char state = '?';
    int rc = procstat_state((pid_t)tgt_reg.pid, tgt_reg.slot[i].tid, &state, NULL);

    if (rc == -ESRCH || (rc == 0 && (state == 'Z' || state == 'X')))
        tgt_drop(i);
}

/* Index of the first live (not yet stopped) slot, or -1. */
static ssize_t tgt_first_live(void)
{
    for (size_t i = 0; i < (size_t)tgt_reg.used; i++)
        if (tgt_is_live(i))
            return (ssize_t)i;
    return -1;
}

static int tgt_timeout_error(size_t i, struct ps_err *err)
{
    struct snap_os os = {.state = '?'};
    char what[64];
    pid_t tid = tgt_reg.slot[i].tid;

    if (procstat_thread_os((pid_t)tgt_reg.pid, tid, &os, NULL) < 0)
        (void)snprintf(what, sizeof(what), "unknown state");
    else
        (void)procstat_activity(&os, what, sizeof(what));
    return ps_err_set(err, -ETIMEDOUT,
                      "thread %d of pid %d did not stop within %d ms (%s, state %c); a thread in "
                      "uninterruptible sleep (D) cannot stop: retry, or drop --blocking",
                      (int)tid, (int)tgt_reg.pid, TARGET_STOP_TIMEOUT_MS, what, os.state);
}

/* Wait until every seized thread has reported a stop or is gone, or until deadline. */
static int tgt_wait_stops(int64_t deadline, struct ps_err *err)
{
    int64_t backoff = TGT_BACKOFF_MIN_NS;

    for (;;) {
        ssize_t live;
        for (size_t i = 0; i < (size_t)tgt_reg.used; i++) {
            if (tgt_is_live(i))
                tgt_poll_one(i, true);
            if (tgt_is_live(i) && backoff >= TGT_ZOMBIE_CHECK_NS)
                tgt_drop_if_dead(i);
        }
        live = tgt_first_live();
        if (live < 0)
            return 0;
        if (tgt_now_ns() >= deadline)
            return tgt_timeout_error((size_t)live, err);
        tgt_sleep_ns(backoff);
        backoff = backoff * 2 > TGT_BACKOFF_MAX_NS ? TGT_BACKOFF_MAX_NS : backoff * 2;
    }
}

static void tgt_interrupt_live(void)
{
    for (size_t i = 0; i < (size_t)tgt_reg.used; i++)
        if (tgt_is_live(i))
            tgt_interrupt(i);
}

/* ---- seizing --------------------------------------------------------------------------------- */

/*
 * Whether slot i's tid, whose seizing failed with EPERM, is ours already: in event mode a thread
 * cloned by a traced one is attached by the kernel before its parent's clone event is collected,
 * so a /proc listing can find it first (a stop racing thread creation; issue 19 item 7). It is
 * registered as tgt_on_clone would (its attach stop is coming), and tgt_on_clone then finds it.
 */
static bool tgt_auto_attached(size_t i)
{
    struct procstat_status st;

    if (!tgt_reg.has_events || procstat_read_status(tgt_reg.slot[i].tid, &st, NULL) != 0 ||
        st.tracer_pid != tgt_reg.tracer)
        return false;
    tgt_reg.slot[i].fresh = true;
    tgt_reg.slot[i].interrupted = true;
    return true;
}

/* Seize and interrupt one tid. 1 seized, 0 skipped (gone or a zombie), or a negative code. */
static int tgt_seize_one(pid_t tid, struct ps_err *err)
{
    pid_t pid = (pid_t)tgt_reg.pid;
    ssize_t i = tgt_add(tid);
    char state = '?';
    long rc;

    if (i < 0)
        return ps_err_set(err, -PS_ELIMIT, "pid %d has more than %d threads, pyscope's limit",
                          (int)pid, TARGET_MAX_THREADS);
    /* Never PTRACE_O_EXITKILL: it would kill the target if pyscope died. Event mode follows
     * clones and exec only (target_set_hooks). */
    rc = tgt_ptrace(PTRACE_SEIZE, tid,
                    tgt_reg.has_events ? PTRACE_O_TRACECLONE | PTRACE_O_TRACEEXEC : 0);
    if (rc == 0) {
        tgt_interrupt((size_t)i);
        return 1;
    }
    if (rc == -EPERM && tgt_auto_attached((size_t)i))
        return 1;
    tgt_drop((size_t)i);
    if (rc == -ESRCH)
        return 0;
    if (rc == -EPERM && procstat_state(pid, tid, &state, NULL) != 0)
        return 0;
    if (rc == -EPERM && (state == 'Z' || state == 'X'))
        return 0; /* the kernel refuses to seize an exiting thread */
    if (rc == -EPERM || rc == -EACCES)
        return diag_permission(pid, DIAG_OP_ATTACH, (int)-rc, err);
    return ps_err_set(err, (int)rc, "PTRACE_SEIZE of thread %d of pid %d failed: %s", (int)tid,
                      (int)pid, strerror((int)-rc));
}

/* List the target's threads and seize those not yet seized; the number seized, or an error. */
static int tgt_seize_new(struct ps_err *err)
{
    pid_t tids[TARGET_MAX_THREADS];
    size_t n = 0;
    int seized = 0;
    int rc;

    rc = procstat_tids((pid_t)tgt_reg.pid, tids, TARGET_MAX_THREADS, &n, err);
    if (rc < 0)
        return rc;
    for (size_t k = 0; k < n; k++) {
        if (tgt_find(tids[k]) >= 0)
            continue;
        rc = tgt_seize_one(tids[k], err);
        if (rc < 0)
            return rc;
        seized += rc;
    }
    return seized;
}

/*
 * Stop every thread, seizing new ones, until a re-listing after all stopped finds none new:
 * once every known thread is stopped, only a clone already under way can add one.
 */
static int tgt_stop_rounds(struct ps_err *err)
{
    int64_t deadline = tgt_now_ns() + TARGET_STOP_TIMEOUT_MS * TGT_NS_PER_MS;

    for (int round = 0; round < TARGET_SEIZE_ROUNDS; round++) {
        int rc = tgt_seize_new(err);
        if (rc < 0)
            return rc;
        if (round > 0 && rc == 0)
            return 0;
        tgt_interrupt_live();
        rc = tgt_wait_stops(deadline, err);
        if (rc < 0)
            return rc;
        if (tgt_count() == 0)
            return ps_err_set(err, -ESRCH, "pid %d exited while pyscope was stopping it",
                              (int)tgt_reg.pid);
    }
    return ps_err_set(err, -PS_ELIMIT,
                      "pid %d kept creating threads through %d rounds of stopping; retry, or "
                      "drop --blocking",
                      (int)tgt_reg.pid, TARGET_SEIZE_ROUNDS);
}

/* ---- detaching ------------------------------------------------------------------------------- */

/*
 * Detach every stopped slot, disarmed first in event mode: a thread that stopped only now (it
 * could not be stopped while the breakpoint was cleared, issue 19 item 6) must not leave with
 * its debug registers set. ESRCH means the thread is no longer in a stop we can act on (a
 * SIGKILL woke it, it is dying): mark it running so the next wait collects its exit.
 */
static void tgt_detach_stopped(void)
{
    const struct target_hooks *h = &tgt_reg.events;

    for (size_t i = 0; i < (size_t)tgt_reg.used; i++) {
        long r;
        if (!tgt_is_stopped(i))
            continue;
        if (tgt_reg.has_events && h->disarm_signal_safe)
            h->disarm_signal_safe(h->ctx, tgt_reg.slot[i].tid);
        r = tgt_ptrace(PTRACE_DETACH, tgt_reg.slot[i].tid, 0);
        if (r == -ESRCH)
            tgt_reg.slot[i].state = TGT_RUNNING;
        else
            tgt_drop(i); /* detached (or refused for good: nothing more we can do) */
    }
}

/* Passes of stop-then-detach: the second collects threads that were dying during the first. */
#define TGT_DETACH_PASSES 4

/* target_detach_all() without the warn_unused_result contract, for paths that already fail. */
static int tgt_release(struct ps_err *err)
{
    int64_t deadline = tgt_now_ns() + TARGET_STOP_TIMEOUT_MS * TGT_NS_PER_MS;
    int rc;

    if (tgt_reg.pid == 0)
        return 0;
    rc = tgt_check_thread(err);
    if (rc < 0)
        return rc;
    for (int pass = 0; pass < TGT_DETACH_PASSES && tgt_count() != 0 && rc == 0; pass++) {
        tgt_interrupt_live();
        rc = tgt_wait_stops(deadline, err);
        tgt_detach_stopped();
    }
    if (tgt_count() != 0)
        return ps_err_set(err, rc < 0 ? rc : -ETIMEDOUT,
                          "%zu thread(s) of pid %d could not be stopped to detach them; they run "
                          "on, traced until pyscope exits",
                          tgt_count(), (int)tgt_reg.pid);
    tgt_reg.used = 0;
    tgt_reg.pid = 0;
    tgt_reg.has_events = false;
    return 0;
}

int target_set_hooks(const struct target_hooks *hooks, struct ps_err *err)
{
    if (tgt_reg.pid != 0)
        return ps_err_set(err, -EBUSY, "event hooks must be set before seizing pid %d",
                          (int)tgt_reg.pid);
    tgt_reg.has_events = hooks != NULL;
    if (hooks)
        tgt_reg.events = *hooks;
    return 0;
}

void target_forget_hooks(void)
{
    if (tgt_reg.pid == 0)
        return;
    tgt_reg.events.claim_sigtrap = NULL; /* each checked before its call; ctx itself stays */
    tgt_reg.events.new_thread = NULL;
    tgt_reg.events.exec = NULL;
    tgt_reg.events.disarm_signal_safe = NULL;
    tgt_reg.events.is_trap = NULL;
}

static bool tgt_is_our_child(pid_t pid)
{
    struct procstat_status st;

    return procstat_read_status(pid, &st, NULL) == 0 && st.ppid == getpid();
}

static int tgt_begin(pid_t pid, struct ps_err *err)
{
    if (tgt_reg.pid != 0)
        return ps_err_set(err, -EBUSY, "pyscope already holds pid %d; detach it first",
                          (int)tgt_reg.pid);
    if (pid <= 0 || pid == getpid())
        return ps_err_set(err, -EINVAL, "cannot stop pid %d: %s", (int)pid,
                          pid <= 0 ? "not a process id" : "it is pyscope itself");
    tgt_reg.leader_is_child = tgt_is_our_child(pid);
    tgt_reg.tracer = gettid();
    tgt_reg.used = 0;
    tgt_reg.pid = pid;
    return 0;
}

int target_seize_all(pid_t pid, size_t *nthreads, struct ps_err *err)
{
    int rc = tgt_begin(pid, err);

    if (rc < 0)
        return rc;
    rc = tgt_stop_rounds(err);
    if (rc == -ESRCH && tgt_count() == 0)
        rc = diag_permission(pid, DIAG_OP_ATTACH, ESRCH, err);
    if (rc < 0)
        goto fail_detach;
    *nthreads = tgt_count();
    return 0;
fail_detach:
    (void)tgt_release(err); /* err keeps the first cause; a failed detach adds to nothing */
    return rc;
}

int target_stop_all(struct ps_err *err)
{
    int rc = tgt_check_thread(err);

    if (rc < 0)
        return rc;
    return tgt_stop_rounds(err);
}

/* ---- draining breakpoint traps ------------------------------------------------------------- */

#define TGT_SIGTRAP_BIT    (UINT64_C(1) << (SIGTRAP - 1))
#define TGT_PEEK_MAX       32 /* queued signals looked at per thread (standard ones queue once) */
#define TGT_DRAIN_STOPS    16 /* stops one thread may report while it is drained */
#define TGT_DRAIN_REGROUPS 2  /* drains again of a thread that entered a group stop instead */
#ifndef TRAP_TRACE
#define TRAP_TRACE 2 /* asm-generic/siginfo.h: process trace trap (single step) */
#endif

/* Whether the private signal queue of tid holds a SIGTRAP that is_trap accepts. Peeking
 * (PTRACE_PEEKSIGINFO) dequeues nothing. */
static bool tgt_trap_queued(pid_t tid, const struct target_trap_test *test)
{
    siginfo_t q[TGT_PEEK_MAX];
    struct __ptrace_peeksiginfo_args a = {.off = 0, .flags = 0, .nr = TGT_PEEK_MAX};
    long n = syscall(SYS_ptrace, (long)PTRACE_PEEKSIGINFO, (long)tid, &a, q);

    for (long k = 0; k < n && k < TGT_PEEK_MAX; k++)
        if (q[k].si_signo == SIGTRAP && test->is_trap(test->ctx, tid, &q[k]))
            return true;
    return false;
}

/* Wait for the next status of slot i until deadline: 1 with *status, 0 timed out, -1 gone. */
static int tgt_wait_status(size_t i, int64_t deadline, int *status)
{
    int64_t backoff = TGT_BACKOFF_MIN_NS / 10;

    for (;;) {
        int r = tgt_wait_one(i, status);
        if (r != 0)
            return r;
        if (tgt_now_ns() >= deadline)
            return 0;
        tgt_sleep_ns(backoff);
        backoff = backoff * 2 > TGT_BACKOFF_MAX_NS ? TGT_BACKOFF_MAX_NS : backoff * 2;
    }
}

/* Whether stopped slot i still has a trap on its way: standing at bp_addr (*at_bp: step it)
 * or a queued trap that test accepts. */
static bool tgt_drain_needed(size_t i, uint64_t bp_addr, const struct target_trap_test *test,
                             bool *at_bp)
{
    struct user_regs_struct regs;
    pid_t tid = tgt_reg.slot[i].tid;

    *at_bp =
        bp_addr != 0 && tgt_ptrace(PTRACE_GETREGS, tid, (long)&regs) == 0 && regs.rip == bp_addr;
    return *at_bp || tgt_trap_queued(tid, test);
}

enum tgt_drained {
    TGT_DRAIN_AGAIN, /* resume once more (passing *sig on) */
    TGT_DRAIN_DONE,  /* the proving stop came: the thread stays in it */
    TGT_DRAIN_LEFT,  /* gone, or in a user's group stop: nothing more to do */
};

/* What a stop of slot i during its drain means (see tgt_drain_run); *sig: signal to pass on. */
static enum tgt_drained tgt_drain_stop(size_t i, int status, bool step,
                                       const struct target_trap_test *test, int *sig)
{
    struct tgt_slot *s = &tgt_reg.slot[i];
    int event = (int)((unsigned)status >> 16);
    siginfo_t si;

    *sig = 0;
    s->state = TGT_STOPPED;
    if (event != 0) { /* an event stop: clone (register it), exec, a user's SIGSTOP */
        if (tgt_reg.has_events)
            (void)tgt_on_event(i, status);
        if (event != PTRACE_EVENT_STOP || !tgt_is_stop_signal(WSTOPSIG(status)))
            return TGT_DRAIN_AGAIN;
        s->state = TGT_GROUP_STOPPED;
        return TGT_DRAIN_LEFT;
    }
    *sig = WSTOPSIG(status);
    memset(&si, 0, sizeof(si));
    if (*sig != SIGTRAP || tgt_ptrace(PTRACE_GETSIGINFO, s->tid, (long)&si) < 0)
        return TGT_DRAIN_AGAIN; /* passed on with the next resume */
    if (step && si.si_code == TRAP_TRACE)
        return TGT_DRAIN_DONE;
    if (!test->is_trap(test->ctx, s->tid, &si))
        return TGT_DRAIN_AGAIN;
    *sig = 0;
    return step ? TGT_DRAIN_AGAIN : TGT_DRAIN_DONE;
}

/*
 * Resume slot i (single-stepping it when step) until it reports the stop that proves nothing of
 * before is in flight: the single-step trap (step), or a queued trap taken (!step). Traps that
 * is_trap accepts are suppressed, other signals passed on. The thread is left in that
 * signal-delivery stop (state STOPPED: detaching with signal 0 suppresses it). 0 done (or the
 * thread is gone or in a group stop), -ETIMEDOUT or -EAGAIN (too many stops) with the thread
 * running and interrupted, or a -errno of ptrace.
 */
static int tgt_drain_run(size_t i, bool step, const struct target_trap_test *test, int64_t deadline)
{
    struct tgt_slot *s = &tgt_reg.slot[i];
    int sig = 0;

    for (int n = 0; n < TGT_DRAIN_STOPS; n++) {
        int status = 0;
        long r = tgt_ptrace(step ? PTRACE_SINGLESTEP : PTRACE_CONT, s->tid, sig);
        s->state = TGT_RUNNING; /* also on ESRCH: it is dying, the next wait collects it */
        s->interrupted = false;
        if (r < 0)
            return r == -ESRCH ? 0 : (int)r;
        r = tgt_wait_status(i, deadline, &status);
        if (r == 0) {
            tgt_interrupt(i);
            return -ETIMEDOUT;
        }
        if (r < 0 || WIFEXITED(status) || WIFSIGNALED(status)) {
            tgt_drop(i);
            return 0;
        }
        if (WIFSTOPPED(status) && tgt_drain_stop(i, status, step, test, &sig) != TGT_DRAIN_AGAIN)
            return 0;
    }
    (void)tgt_ptrace(PTRACE_CONT, s->tid, sig);
    s->state = TGT_RUNNING;
    tgt_interrupt(i);
    return -EAGAIN;
}

/* Drain slot i: SIGTRAP unblocked for the while if the thread blocks it, then tgt_drain_run,
 * then its own mask back (in a stop; waiting for one if the run ended running). */
static int tgt_drain_one(size_t i, bool step, const struct target_trap_test *test, int64_t deadline,
                         struct ps_err *err)
{
    pid_t tid = tgt_reg.slot[i].tid;
    uint64_t mask = 0, open;
    bool restore = false;
    int rc;

    if (syscall(SYS_ptrace, (long)PTRACE_GETSIGMASK, (long)tid, sizeof(mask), &mask) == 0 &&
        (mask & TGT_SIGTRAP_BIT)) {
        open = mask & ~TGT_SIGTRAP_BIT;
        restore = syscall(SYS_ptrace, (long)PTRACE_SETSIGMASK, (long)tid, sizeof(open), &open) == 0;
    }
    rc = tgt_drain_run(i, step, test, deadline);
    if (rc < 0 && !tgt_reg.in_signal && tgt_reg.slot[i].tid == tid && tgt_is_live(i))
        (void)tgt_wait_stops(deadline + TARGET_STOP_TIMEOUT_MS * TGT_NS_PER_MS, NULL);
    if (restore && tgt_reg.slot[i].tid == tid && tgt_is_stopped(i))
        (void)syscall(SYS_ptrace, (long)PTRACE_SETSIGMASK, (long)tid, sizeof(mask), &mask);
    if (rc >= 0 || !err)
        return rc < 0 ? rc : 0;
    return ps_err_set(err, rc,
                      "thread %d of pid %d could not be cleared of breakpoint traps (%s); it may "
                      "receive a SIGTRAP after pyscope detaches",
                      (int)tid, (int)tgt_reg.pid,
                      rc == -EAGAIN ? "it kept reporting other stops" : strerror(-rc));
}

/*
 * target_drain_traps over the registry, without the thread check (also for signal time). Every
 * thread is tried; the first error is returned. A thread in the user's group stop may hold a
 * trap too: a SIGSTOP that comes between a breakpoint hit and its trap's delivery is served
 * first (issue 19 item 6), and the detached thread would die of the trap at SIGCONT. A seized
 * thread cannot leave a group stop in effect (each resume re-traps), so the stop is ended with
 * SIGCONT (our threads stay in their ptrace stops), the trap drained, and SIGSTOP sent: the
 * pending SIGCONT is discarded by it, each thread takes it as it is detached, and the target is
 * stopped again before running any code. Its parent sees a continue and a stop. The same for a
 * thread that was only marked to join the group stop: its drain ends in the stop, trap queued.
 */
static int tgt_drain_all(uint64_t bp_addr, const struct target_trap_test *test, struct ps_err *err)
{
    int64_t deadline = tgt_now_ns() + TARGET_STOP_TIMEOUT_MS * TGT_NS_PER_MS;
    bool restop = false;
    int rc = 0;

    for (size_t i = 0; i < (size_t)tgt_reg.used; i++) {
        pid_t tid = tgt_reg.slot[i].tid;
        bool at_bp = false;
        int r = 0;
        if (tid == 0 || !tgt_is_stopped(i) || !tgt_drain_needed(i, bp_addr, test, &at_bp))
            continue; /* running: a new thread, it ran nothing yet */
        /* A thread we stopped just before a SIGSTOP took hold (another thread dequeued it) is
         * STOPPED but marked to join the group stop: resumed, it enters the stop before taking
         * its trap (issue 19 item 6). Then SIGCONT and once more, bounded (a user may keep
         * sending SIGSTOP). */
        for (int round = 0; round <= TGT_DRAIN_REGROUPS; round++) {
            if (round > 0 && (tgt_reg.slot[i].tid != tid || !tgt_is_stopped(i) ||
                              tgt_reg.slot[i].state != TGT_GROUP_STOPPED ||
                              !tgt_drain_needed(i, bp_addr, test, &at_bp)))
                break;
            if (tgt_reg.slot[i].state == TGT_GROUP_STOPPED && (round > 0 || !restop) &&
                kill((pid_t)tgt_reg.pid, SIGCONT) == 0)
                restop = true;
            r = tgt_drain_one(i, at_bp, test, deadline, err);
            if (r < 0)
                break;
        }
        if (r == 0 && tgt_reg.slot[i].tid == tid && tgt_is_stopped(i) &&
            tgt_drain_needed(i, bp_addr, test, &at_bp))
            r = err ? ps_err_set(err, -EAGAIN,
                                 "thread %d of pid %d could not be cleared of breakpoint traps "
                                 "(it kept entering a group stop); it may receive a SIGTRAP "
                                 "after pyscope detaches",
                                 (int)tid, (int)tgt_reg.pid)
                    : -EAGAIN;
        if (rc == 0)
            rc = r;
    }
    if (restop)
        (void)kill((pid_t)tgt_reg.pid, SIGSTOP); /* taken by every thread as it is detached */
    return rc;
}

int target_drain_traps(uint64_t bp_addr, const struct target_trap_test *test, struct ps_err *err)
{
    int rc = tgt_check_thread(err);

    return rc < 0 ? rc : tgt_drain_all(bp_addr, test, err);
}

/* ---- public control --------------------------------------------------------------------- */

int target_resume_all(struct ps_err *err)
{
    int rc = tgt_check_thread(err);

    if (rc < 0)
        return rc;
    for (size_t i = 0; i < (size_t)tgt_reg.used; i++) {
        pid_t tid = tgt_reg.slot[i].tid;
        long r = tgt_is_stopped(i) ? tgt_restart(i) : 0;
        if (r < 0 && r != -ESRCH && rc == 0)
            rc = ps_err_set(err, (int)r, "resuming thread %d of pid %d failed: %s", (int)tid,
                            (int)tgt_reg.pid, strerror((int)-r));
    }
    return rc;
}

int target_service(struct ps_err *err)
{
    int rc = tgt_check_thread(err);

    if (rc < 0)
        return rc;
    for (size_t i = 0; i < (size_t)tgt_reg.used; i++)
        if (tgt_is_live(i))
            tgt_poll_one(i, false);
    return 0;
}

int target_detach_all(struct ps_err *err)
{
    return tgt_release(err);
}

size_t target_stopped_tids(pid_t *out, size_t cap)
{
    size_t n = 0;

    for (size_t i = 0; i < (size_t)tgt_reg.used && n < cap; i++)
        if (tgt_is_stopped(i))
            out[n++] = tgt_reg.slot[i].tid;
    return n;
}

pid_t target_current_pid(void)
{
    return (pid_t)tgt_reg.pid;
}

size_t target_tids(pid_t *out, size_t cap)
{
    size_t n = 0;

    for (size_t i = 0; i < (size_t)tgt_reg.used && n < cap; i++)
        if (tgt_reg.slot[i].tid != 0)
            out[n++] = tgt_reg.slot[i].tid;
    return n;
}

/* ---- teardown on signals and exit ------------------------------------------------------------ */

/* Bounded wait of the signal-time teardown for the stops of threads it interrupted. */
#define TGT_SIGNAL_WAIT_MS 300

/*
 * Stop every seized thread for the signal-time teardown: interrupt the running ones and collect
 * stops with tgt_poll_one (which passes other signals on and, in_signal, takes breakpoint traps
 * by is_trap alone) for at most TGT_SIGNAL_WAIT_MS. Raw syscalls only: no /proc, no allocation.
 */
static void tgt_stop_signal_safe(void)
{
    const struct timespec ms = {.tv_sec = 0, .tv_nsec = 1000000};

    for (int waited = 0; waited < TGT_SIGNAL_WAIT_MS; waited++) {
        bool live = false;
        for (size_t i = 0; i < (size_t)tgt_reg.used && i < TARGET_MAX_THREADS; i++) {
            if (!tgt_is_live(i))
                continue;
            tgt_interrupt(i);
            tgt_poll_one(i, true);
            live = live || tgt_is_live(i);
        }
        if (!live)
            return;
        (void)nanosleep(&ms, NULL);
    }
}

void target_teardown_signal_safe(void)
{
    int saved_errno = errno;
    const struct target_hooks *h = &tgt_reg.events;
    bool hooks = tgt_reg.has_events;

    tgt_reg.in_signal = 1;
    if (hooks && h->disarm_signal_safe)
        h->disarm_signal_safe(h->ctx, 0); /* first: no new breakpoint trap from here on */
    tgt_stop_signal_safe();
    for (size_t i = 0; hooks && i < (size_t)tgt_reg.used && i < TARGET_MAX_THREADS; i++)
        if (tgt_is_stopped(i) && h->disarm_signal_safe)
            h->disarm_signal_safe(h->ctx, tgt_reg.slot[i].tid);
    if (hooks && h->is_trap) {
        const struct target_trap_test test = {.ctx = h->ctx, .is_trap = h->is_trap};
        (void)tgt_drain_all(h->trap_addr, &test, NULL);
    }
    tgt_detach_stopped();
    /* A slot still marked running may be in a stop whose status the interrupted main path had
     * already taken: try it as it is (signal 0 suppresses a SIGTRAP it was stopped for). What
     * really runs refuses, and the kernel detaches it at our exit. */
    for (size_t i = 0; i < (size_t)tgt_reg.used && i < TARGET_MAX_THREADS; i++) {
        pid_t tid = tgt_reg.slot[i].tid;
        if (tid == 0)
            continue;
        if (hooks && h->disarm_signal_safe)
            h->disarm_signal_safe(h->ctx, tid);
        if (tgt_ptrace(PTRACE_DETACH, tid, 0) == 0)
            tgt_drop(i);
    }
    tgt_reg.in_signal = 0;
    errno = saved_errno;
}

/* Detach, then die of the signal as if we had no handler (memset, sigemptyset, sigaction and
 * raise are async-signal-safe; the signal is delivered when this handler returns). */
static void tgt_on_signal(int sig)
{
    struct sigaction dfl;

    target_teardown_signal_safe();
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    (void)sigemptyset(&dfl.sa_mask);
    (void)sigaction(sig, &dfl, NULL);
    (void)raise(sig);
}

/* The crash signals, and the handlers they had before ours (ASan's, or the default). */
static const int tgt_crash_sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGSYS};
static struct sigaction tgt_crash_old[sizeof(tgt_crash_sigs) / sizeof(tgt_crash_sigs[0])];

/* A crash of pyscope while it holds the target: tear down first (a thread left in a breakpoint's
 * signal-delivery stop would get the SIGTRAP when the kernel detaches it), then hand the signal
 * to the previous handler: a fault re-executes and faults again when we return, a sent signal
 * (si_code <= 0: kill, raise, abort) is sent again. */
static void tgt_on_crash(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    target_teardown_signal_safe();
    for (size_t k = 0; k < sizeof(tgt_crash_sigs) / sizeof(tgt_crash_sigs[0]); k++)
        if (tgt_crash_sigs[k] == sig)
            (void)sigaction(sig, &tgt_crash_old[k], NULL);
    if (si == NULL || si->si_code <= 0)
        (void)raise(sig);
}

static void tgt_atexit(void)
{
    if (tgt_reg.pid == 0)
        return;
    if (gettid() == tgt_reg.tracer)
        (void)tgt_release(NULL);
    else
        target_teardown_signal_safe(); /* e.g. a forked child: not the tracer, does nothing */
}

static int tgt_install_one(int sig, struct ps_err *err)
{
    struct sigaction old, sa;

    if (sigaction(sig, NULL, &old) < 0)
        return ps_err_set(err, -errno, "cannot read the handler of signal %d: %s", sig,
                          strerror(errno));
    if (old.sa_handler == SIG_IGN)
        return 0; /* the user asked to ignore it (nohup): it cannot kill us, keep it so */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = tgt_on_signal;
    (void)sigfillset(&sa.sa_mask); /* no other handler runs inside the teardown */
    if (sigaction(sig, &sa, NULL) < 0)
        return ps_err_set(err, -errno, "cannot install the teardown handler for signal %d: %s", sig,
                          strerror(errno));
    return 0;
}

/* Crash handlers on an alternate stack (a stack overflow must still tear down), unless one is
 * set already (ASan sets its own). */
static int tgt_install_crash(struct ps_err *err)
{
    static char altstack[64 * 1024];
    stack_t cur;
    struct sigaction sa;

    if (sigaltstack(NULL, &cur) == 0 && (cur.ss_flags & SS_DISABLE)) {
        stack_t ss = {.ss_sp = altstack, .ss_size = sizeof(altstack), .ss_flags = 0};
        (void)sigaltstack(&ss, NULL);
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = tgt_on_crash;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    (void)sigfillset(&sa.sa_mask);
    for (size_t k = 0; k < sizeof(tgt_crash_sigs) / sizeof(tgt_crash_sigs[0]); k++)
        if (sigaction(tgt_crash_sigs[k], &sa, &tgt_crash_old[k]) < 0)
            return ps_err_set(err, -errno, "cannot install the crash teardown for signal %d: %s",
                              tgt_crash_sigs[k], strerror(errno));
    return 0;
}

int target_install_signal_teardown(struct ps_err *err)
{
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
    int rc;

    if (tgt_reg.hooks_installed)
        return 0;
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
        rc = tgt_install_one(sigs[i], err);
        if (rc < 0)
            return rc;
    }
    rc = tgt_install_crash(err);
    if (rc < 0)
        return rc;
    if (atexit(tgt_atexit) != 0)
        return ps_err_set(err, -ENOMEM, "cannot register the ptrace teardown with atexit");
    tgt_reg.hooks_installed = true;
    return 0;
}

/* ---- inspection ------------------------------------------------------------------------------ */

/* /proc/TID/status is the status of thread TID (a hidden but valid /proc entry). */
static bool tgt_thread_held(pid_t pid, pid_t tid)
{
    struct procstat_status st;
    char state = '?';

    if (procstat_state(pid, tid, &state, NULL) == 0 && (state == 'T' || state == 't'))
        return true;
    return procstat_read_status(tid, &st, NULL) == 0 && st.tracer_pid != 0;
}

int target_is_stopped_or_traced(pid_t pid, bool *out, struct ps_err *err)
{
    pid_t tids[TARGET_MAX_THREADS];
    size_t n = 0;
    bool held = false;
    int rc;

    rc = procstat_tids(pid, tids, TARGET_MAX_THREADS, &n, err);
    if (rc < 0)
        return rc;
    for (size_t k = 0; k < n && !held; k++)
        held = tgt_thread_held(pid, tids[k]);
    *out = held;
    return 0;
}

int target_run_stopped(pid_t pid, int (*fn)(void *arg, struct ps_err *err), void *arg,
                       struct ps_err *err)
{
    struct ps_err derr = {0};
    size_t n = 0;
    int rc = target_seize_all(pid, &n, err), drc;

    if (rc < 0)
        return rc; /* a failed seize leaves nothing seized (target_seize_all's contract) */
    rc = fn(arg, err);
    drc = target_detach_all(&derr);
    if (rc == 0 && drc < 0)
        rc = ps_err_set(err, drc, "%s", derr.msg);
    return rc;
}
