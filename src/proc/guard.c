/* SPDX-License-Identifier: MIT */
/*
 * guard: the waiting parent of a worker that holds ptrace (see guard.h).
 *
 * Signals: the guard blocks everything it forwards and takes them with sigwaitinfo, so no
 * handler runs and nothing races with waitpid. The worker gets each stop signal (INT, TERM,
 * HUP, QUIT) once, by every route, from these two rules:
 *  - the worker leaves a stop signal pending until it exits (evloop_keep_stop_signals): its
 *    loop ends on it without reading it, so the kernel, which queues a standard signal at most
 *    once, merges every later copy of it with the pending one;
 *  - the guard forwards a stop signal only when the worker has none pending (/proc/PID/status,
 *    SigPnd and ShdPnd), and only the first.
 * By route: to the guard's pid alone, the worker has none: forwarded. To the process group
 * (what supervisors send; systemd's cgroup kill, which signals every process, likewise; siginfo
 * does not tell a group kill from one of our pid), the copy the kernel queued in the worker is
 * pending when the guard looks (Linux signals a group newest member first, within one kill()):
 * not forwarded; had the guard looked first, its copy and the kernel's would merge.
 * `timeout` signals the guard's pid, then the group: either the group's copy is pending in the
 * worker when the guard looks (not forwarded), or the guard forwards and the group's copy merges
 * with the forwarded one. A terminal's signals (si_code SI_KERNEL: Ctrl-C, Ctrl-\) go to the
 * whole foreground process group, the worker too: not forwarded. The exception is a hang-up of
 * a terminal whose session leader is the guard (`tmux new-session "exec pyscope attach"`,
 * `ssh -t`, `kubectl exec -it`): the kernel sends that SIGHUP to the session leader alone, so
 * the guard passes it on. No order of these is left to timing: whichever copy reaches the
 * worker first is the only one queued (tests/unit/test_guard.c counts them by every route).
 * Not covered: a copy sent to one thread of the worker (tgkill) does not merge with one sent
 * to the process; nobody but the worker itself (raise, below) sends one. Two different stop
 * signals (a group's SIGINT, then SIGTERM to the guard) are two signals: the guard forwards
 * none once the worker has one, but the group's second reaches it (pending, never read).
 * SIGCHLD ends the wait. Suspension: on SIGTSTP the guard stops itself with SIGSTOP (a default-action
 * SIGTSTP is dropped in an orphaned process group, and the shell must see its job stop), after
 * handing a SIGTSTP sent to its pid alone on to the worker (which releases the target before it
 * stops: see ui_app_suspend); a SIGCONT (`fg`, or sent to the guard alone) is passed on too.
 */
#include "pyscope/guard.h"

#include <errno.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pyscope/bkpt.h"
#include "pyscope/evloop.h"

#define GUARD_SUSPEND_WAIT_MS 2000

/* The target the guard rescues, in memory shared with the worker (guard_retarget: attach's
 * process switcher); NULL when the page could not be mapped (the pid passed to guard_fork
 * then stays the one rescued). One worker writes it, only between sessions. */
static volatile pid_t *guard_target;

/* The worker: stop signals kept pending (see the design note), SIGTERM when the guard dies (and
 * now, if it already has). */
static void guard_worker_init(pid_t guard, const sigset_t *old)
{
    (void)sigprocmask(SIG_SETMASK, old, NULL);
    evloop_keep_stop_signals();
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != guard)
        (void)raise(SIGTERM);
}

/* Exit like the worker did: its code, or its death by a signal. */
static void guard_exit_as(int status)
{
    sigset_t one;
    int sig;

    if (WIFEXITED(status))
        _exit(WEXITSTATUS(status));
    sig = WIFSIGNALED(status) ? WTERMSIG(status) : SIGABRT;
    (void)signal(sig, SIG_DFL);
    (void)sigemptyset(&one);
    (void)sigaddset(&one, sig);
    (void)sigprocmask(SIG_UNBLOCK, &one, NULL);
    (void)prctl(PR_SET_DUMPABLE, 0); /* the worker's death, not a crash of ours: no core */
    (void)raise(sig);
    _exit(128 + sig);
}

/* SIGTSTP: let the worker release the target and stop (it was sent one too, unless the signal
 * came to our pid alone), then stop: the shell gets the terminal back only after the worker
 * let go of the target. Bounded by GUARD_SUSPEND_WAIT_MS (a worker whose default-action SIGTSTP
 * was dropped in an orphaned process group never stops). */
static void guard_suspend(pid_t worker, const siginfo_t *si)
{
    const struct timespec step = {0, 10 * 1000000L};

    if (si->si_code == SI_USER || si->si_code == SI_QUEUE)
        (void)kill(worker, SIGTSTP);
    for (int waited = 0; waited < GUARD_SUSPEND_WAIT_MS; waited += 10) {
        int status = 0;
        pid_t r = waitpid(worker, &status, WUNTRACED | WNOHANG);

        if (r == worker && !WIFSTOPPED(status))
            guard_exit_as(status);
        if (r != 0)
            break;
        (void)nanosleep(&step, NULL);
    }
    (void)kill(getpid(), SIGSTOP); /* returns once continued */
}

/* The worker is gone: rescue the target from a SIGKILLed worker's debug registers, then exit as
 * the worker did. */
static void guard_end(pid_t target, int status)
{
    struct ps_err err = {0};

    if (guard_target)
        target = *guard_target;

    if (target > 0 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL &&
        bkpt_rescue(target, &err) < 0 && err.code != -ESRCH)
        (void)fprintf(stderr,
                      "pyscope: the worker was killed and its debug registers could not be "
                      "cleared in pid %d (%s); if it traced with --mechanism debugreg, the "
                      "target's next exception may kill it: attach again and quit with Ctrl-C\n",
                      (int)target, err.msg);
    guard_exit_as(status);
}

/* Whether the worker has a stop signal pending (SigPnd: its main thread's, ShdPnd: the
 * process's, in /proc/PID/status); false when that cannot be read. */
static bool guard_worker_stopping(pid_t worker)
{
    char path[48], line[160];
    sigset_t stop;
    bool yes = false;
    FILE *f;

    (void)snprintf(path, sizeof(path), "/proc/%d/status", (int)worker);
    f = fopen(path, "re");
    if (!f)
        return false;
    evloop_signals(EVLOOP_SIG_STOP, &stop);
    while (!yes && fgets(line, sizeof(line), f)) {
        unsigned long long pnd;
        char *end = NULL;

        if (strncmp(line, "SigPnd:", 7) != 0 && strncmp(line, "ShdPnd:", 7) != 0)
            continue;
        errno = 0;
        pnd = strtoull(line + 7, &end, 16);
        if (errno || end == line + 7)
            continue;
        for (int sig = 1; sig <= 64 && !yes; sig++)
            yes = (pnd >> (sig - 1) & 1) && sigismember(&stop, sig) == 1;
    }
    (void)fclose(f);
    return yes;
}

/* Whether si is for the worker: see the design note. A stop signal only once (*stopping), and
 * only when the worker has none yet. */
static bool guard_forwards(pid_t worker, const siginfo_t *si, bool *stopping)
{
    bool stop = si->si_signo != SIGCONT;
    bool sent = si->si_code == SI_USER || si->si_code == SI_QUEUE;
    bool hangup = si->si_signo == SIGHUP && si->si_code == SI_KERNEL && getsid(0) == getpid();

    if (!stop)
        return true;
    if ((!sent && !hangup) || *stopping)
        return false;
    *stopping = true;
    return !guard_worker_stopping(worker);
}

/* The guard: forward signals (guard_forwards), reap the worker, exit as it did. */
static void guard_wait(pid_t worker, pid_t target, sigset_t *set)
{
    bool stopping = false;

    for (;;) {
        siginfo_t si;
        int status = 0;
        pid_t r = waitpid(worker, &status, WNOHANG);

        if (r == worker)
            guard_end(target, status);
        if (r < 0 && errno != EINTR)
            _exit(2);
        memset(&si, 0, sizeof(si));
        if (sigwaitinfo(set, &si) < 0 || si.si_signo == SIGCHLD)
            continue;
        if (si.si_signo == SIGTSTP) {
            guard_suspend(worker, &si);
            continue;
        }
        if (guard_forwards(worker, &si, &stopping))
            (void)kill(worker, si.si_signo);
    }
}

int guard_fork(pid_t target)
{
    sigset_t set, old;
    pid_t guard = getpid(), worker;

    /* What it forwards: the session's stop signals and TSTP (evloop.h's one list), and CONT. */
    evloop_signals(EVLOOP_SIG_STOP | EVLOOP_SIG_TSTP, &set);
    (void)sigaddset(&set, SIGCONT);
    (void)sigaddset(&set, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &set, &old) != 0)
        return -errno;
    if (!guard_target) {
        void *page = mmap(NULL, sizeof(*guard_target), PROT_READ | PROT_WRITE,
                          MAP_SHARED | MAP_ANONYMOUS, -1, 0);

        guard_target = page == MAP_FAILED ? NULL : page;
    }
    if (guard_target)
        *guard_target = target;
    worker = fork();
    if (worker < 0) {
        int e = errno;
        (void)sigprocmask(SIG_SETMASK, &old, NULL);
        return -e;
    }
    if (worker == 0) {
        guard_worker_init(guard, &old);
        return 0;
    }
    guard_wait(worker, target, &set);
    return 0; /* not reached: guard_wait exits */
}

void guard_retarget(pid_t target)
{
    if (guard_target)
        *guard_target = target;
}
