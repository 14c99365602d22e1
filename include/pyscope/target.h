/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_TARGET_H
#define PYSCOPE_TARGET_H

/*
 * target: ptrace control of one live process, for `--blocking` snapshots and for later features
 * (breakpoints). The one rule is that the target must never be left stopped or traced, whatever
 * happens to pyscope, so:
 *
 *  - threads are attached with PTRACE_SEIZE and stopped with PTRACE_INTERRUPT, never
 *    PTRACE_ATTACH (whose queued SIGSTOP would keep the target stopped if pyscope died first),
 *    and no ptrace option is set: in particular never PTRACE_O_EXITKILL, so if pyscope dies the
 *    kernel detaches every thread and the target runs on;
 *  - signals that arrive while a thread is seized are passed on to it unchanged;
 *  - every seized tid is recorded in a process-wide registry that the signal handlers installed
 *    by target_install_signal_teardown() and an atexit hook walk to detach;
 *  - every wait is bounded (TARGET_STOP_TIMEOUT_MS) and every re-listing of threads is bounded
 *    (TARGET_SEIZE_ROUNDS); a thread that exits at any point is data, not an error.
 *
 * One target at a time. The kernel binds a tracee to the thread that attached it, so every
 * function here except target_is_stopped_or_traced() and target_teardown_signal_safe() must be
 * called from the thread that called target_seize_all(); others get -EINVAL.
 *
 * Side effect worth knowing: an interrupt stop makes a few blocking calls (epoll_wait, for
 * example) return EINTR in the target, as with every ptrace-based tool; CPython retries them
 * (PEP 475).
 */

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pyscope/err.h"

/* Registry size: more threads than this is refused (-PS_ELIMIT) rather than half-stopped. */
#define TARGET_MAX_THREADS 4096
/* Total time allowed for all threads to report their stop (a thread in D state may not). */
#define TARGET_STOP_TIMEOUT_MS 2000
/* Rounds of "list /proc/PID/task, seize the new ones, wait" before giving up on a target that
 * keeps creating threads faster than they can be stopped. */
#define TARGET_SEIZE_ROUNDS 16

/*
 * Seize every thread of pid and stop it (PTRACE_SEIZE + PTRACE_INTERRUPT, then waitpid until
 * each reports its stop), re-listing /proc/PID/task until no unseized thread is left. On
 * success every live thread of pid is in a ptrace stop (state 't') and *nthreads holds their
 * number. On failure nothing stays seized (all seized threads are detached again).
 * Errors: -ESRCH (no such process, or it exited meanwhile), -PS_EPERM (diagnosed by diag: uid,
 * CAP_SYS_PTRACE, Yama, seccomp, another tracer), -EBUSY (already holding a target), -EINVAL
 * (pid is pyscope itself, or wrong thread), -ETIMEDOUT (a thread did not stop in time: named
 * with its state), -PS_ELIMIT (more than TARGET_MAX_THREADS threads, or threads kept appearing).
 */
int target_seize_all(pid_t pid, size_t *nthreads, struct ps_err *err) PS_WARN_UNUSED;

/*
 * Run fn(arg, err) with every thread of pid stopped: target_seize_all, fn, then
 * target_detach_all on every path (also when fn fails), so nothing stays stopped or traced.
 * Returns fn's result, else the seize's or the detach's error. The blocking snapshot and the
 * blocking sampler tick both go through here. Tracer thread only (as target_seize_all).
 */
int target_run_stopped(pid_t pid, int (*fn)(void *arg, struct ps_err *err), void *arg,
                       struct ps_err *err) PS_WARN_UNUSED;

/*
 * Stop again every seized thread after target_resume_all(), seizing threads created meanwhile.
 * Same bounds and errors as target_seize_all(), but on -ETIMEDOUT the threads that did stop stay
 * stopped: the caller resumes or detaches.
 */
int target_stop_all(struct ps_err *err) PS_WARN_UNUSED;

/*
 * Let every stopped thread run again (PTRACE_CONT; a thread caught in a group stop, SIGSTOP by
 * the user, is kept in it with PTRACE_LISTEN). Threads stay seized: while they run, a signal to
 * the target stops the receiving thread until target_service() passes it on, so callers that
 * keep a target resumed call target_service() from their event loop at least every few ms, or
 * detach. Threads that exited are dropped. Errors: -EINVAL (no target, wrong thread), else the
 * first -errno of PTRACE_CONT (the other threads are still resumed).
 */
int target_resume_all(struct ps_err *err) PS_WARN_UNUSED;

/*
 * Without blocking, collect the stops of resumed threads: pass signals on, keep group stops,
 * drop exited threads. Returns 0, or -EINVAL (wrong thread).
 */
int target_service(struct ps_err *err) PS_WARN_UNUSED;

/*
 * Detach every seized thread (stopping running ones first, within TARGET_STOP_TIMEOUT_MS, so
 * that PTRACE_DETACH can act; in event mode each is passed to the hooks' disarm_signal_safe
 * while stopped, just before its detach), and forget the target. A thread that is gone is fine. No target
 * held is a no-op returning 0. Error: -ETIMEDOUT when a thread could not be stopped to detach
 * it; it stays traced but running until pyscope exits, when the kernel detaches it. -EINVAL from
 * the wrong thread.
 */
int target_detach_all(struct ps_err *err) PS_WARN_UNUSED;

/*
 * Event mode, for breakpoint tracing (tracer.c). Set before target_seize_all(); the hooks stay
 * until the target is forgotten (target_detach_all). With hooks, threads are seized with
 * PTRACE_O_TRACECLONE | PTRACE_O_TRACEEXEC (never EXITKILL, never TRACEFORK: fork children stay
 * untraced). Every function that waits may call the hooks, on the tracer thread, while the
 * thread concerned is in a ptrace stop:
 *  - claim_sigtrap: a SIGTRAP signal-delivery stop with its siginfo; return true when it is the
 *    caller's breakpoint: the signal is then suppressed (the thread continues with signal 0),
 *    else it is passed on as any other signal. Called while stopping and detaching too; the
 *    traps still on their way at the end are target_drain_traps' business (not in a signal
 *    handler: there, only the pure is_trap below is called).
 *  - new_thread: a thread created by clone was auto-attached; it is in its first stop, before it
 *    ran any code: arm it now. It is in the registry (detached with the others).
 *  - exec: the target called execve (the thread reporting it is stopped); the caller should
 *    detach, its view of the process is obsolete.
 * Any hook may be NULL. Errors: -EBUSY when a target is already seized.
 */
struct target_hooks {
    void *ctx;
    bool (*claim_sigtrap)(void *ctx, pid_t tid, const siginfo_t *si);
    void (*new_thread)(void *ctx, pid_t tid);
    void (*exec)(void *ctx, pid_t tid);
    /* For target_teardown_signal_safe, so async-signal-safe calls only: tid 0 once, first (make
     * sure no new breakpoint trap can be generated), then each thread about to be detached (in
     * a stop, or running when the call fails: clear what can only be cleared in a stop). */
    void (*disarm_signal_safe)(void *ctx, pid_t tid);
    /* Also for that teardown: whether a SIGTRAP is a hit of the breakpoint at trap_addr, by
     * looking only (async-signal-safe); it drains traps as target_drain_traps does. */
    bool (*is_trap)(void *ctx, pid_t tid, const siginfo_t *si);
    uint64_t trap_addr;
};
int target_set_hooks(const struct target_hooks *hooks, struct ps_err *err) PS_WARN_UNUSED;

/*
 * Forget the hooks' functions and ctx while a target is still held (clone events are still
 * followed; a SIGTRAP is then passed on like any signal): for a caller about to free ctx after a
 * target_detach_all that failed, so a later release (atexit, a signal) never calls into freed
 * memory. No-op without a target.
 */
void target_forget_hooks(void);

/*
 * Which SIGTRAPs are the caller's breakpoint traps (for target_drain_traps): is_trap(ctx, tid, si)
 * must only look at si, never act on it.
 */
struct target_trap_test {
    void *ctx;
    bool (*is_trap)(void *ctx, pid_t tid, const siginfo_t *si);
};

/*
 * Make sure no breakpoint trap can reach the target after it is detached (a SIGTRAP kills a
 * process that has no handler). Call with every thread stopped (target_stop_all) and the
 * breakpoint already removed. Two ways a trap can still be on its way to a stopped thread:
 *  - queued: a SIGTRAP that test->is_trap accepts sits in the thread's queue (looked at with
 *    PTRACE_PEEKSIGINFO, nothing dequeued). An interrupt is served before queued signals, so
 *    resuming and re-stopping may never let the thread take it; instead the thread alone is
 *    resumed until it reports that signal, which is then suppressed;
 *  - in flight: the thread stands at bp_addr (0: none), where the trap may not even be queued
 *    yet (perf's sigtrap is sent by task work on the way back to user mode). The thread is
 *    single-stepped one instruction (bp_addr must be a function entry, never a syscall): every
 *    trap met on the way is suppressed, and the step's own trap is suppressed on detach.
 * A thread that blocks SIGTRAP has it unblocked for the drain only (PTRACE_SETSIGMASK), its
 * mask restored while it is still stopped. Other signals met are passed on unchanged. Drained
 * threads stay stopped (in a signal-delivery stop that target_detach_all suppresses). A thread
 * in a user's group stop, or one that enters it when resumed (it was marked to join it), is
 * drained after a SIGCONT to the target (twice more at most), and SIGSTOP is sent at the end so
 * the detached target stops again. Threads still running are skipped. Tracer thread only.
 * Errors: -EINVAL (no target, wrong thread); -ETIMEDOUT or -EAGAIN with the thread named when it
 * could not be drained within TARGET_STOP_TIMEOUT_MS, TGT_DRAIN_STOPS stops or those group stops
 * (it is stopped again, or being stopped); the other threads are drained all the same, and the
 * first error is returned.
 */
int target_drain_traps(uint64_t bp_addr, const struct target_trap_test *test,
                       struct ps_err *err) PS_WARN_UNUSED;

/* Pid of the seized target, or 0. Any thread. */
pid_t target_current_pid(void);

/* Copy up to cap seized tids (ascending registry order, not sorted) to out; returns the count. */
size_t target_tids(pid_t *out, size_t cap);

/* The same for the seized threads in a ptrace stop only (after a target_stop_all that failed:
 * the ones whose debug registers can be written). */
size_t target_stopped_tids(pid_t *out, size_t cap);

/*
 * Install handlers for SIGINT, SIGTERM, SIGHUP and SIGQUIT (not for one whose disposition is
 * SIG_IGN, e.g. under nohup) and an atexit hook. Handler: target_teardown_signal_safe(), then
 * restore the default disposition and re-raise, so pyscope still dies of the signal. The atexit
 * hook runs target_detach_all() when exit() is called on the tracer thread. Crash signals
 * (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGSYS) get a handler too, on an alternate stack:
 * the kernel does detach a dead tracer's tracees, but a thread it finds in a breakpoint's
 * signal-delivery stop is then handed the SIGTRAP, which kills the target; the handler tears
 * down first, then gives the signal to the handler it replaced (ASan's, or the default), so the
 * crash is still reported and still kills pyscope. Idempotent. Call from the main thread
 * before seizing; an event loop that takes the stop signals through signalfd (blocked) must
 * call target_detach_all() itself. SIGKILL cannot be handled (the guard process narrows that
 * case: src/proc/guard.c). Errors: -errno from sigaction.
 */
int target_install_signal_teardown(struct ps_err *err) PS_WARN_UNUSED;

/*
 * Release every thread in the registry using async-signal-safe calls only (raw ptrace, waitpid,
 * nanosleep, clock_gettime; no /proc, no allocation; errno preserved), from the tracer thread,
 * in the order tracer_stop uses: the hooks' disarm_signal_safe(0); every running thread
 * interrupted and its stop collected (signals passed on, breakpoint traps taken by is_trap
 * alone: no other hook runs meanwhile) for at most TGT_SIGNAL_WAIT_MS (300 ms); each stopped
 * thread disarmed; traps still on their way drained (target_drain_traps with the hooks'
 * is_trap and trap_addr); every stopped thread detached, and a thread still marked running
 * tried as it is (it may sit in a stop whose status was taken). What cannot be detached, the
 * kernel detaches at exit. Released threads leave the registry. What the signal handlers run;
 * exported for tests.
 */
void target_teardown_signal_safe(void);

/*
 * Set *out to true when any thread of pid is stopped (state T or t) or traced (TracerPid != 0),
 * reading /proc only. For tests and for post-mortem checks. Errors: -ESRCH, -PS_ELIMIT. Any
 * thread.
 */
int target_is_stopped_or_traced(pid_t pid, bool *out, struct ps_err *err) PS_WARN_UNUSED;

#endif
