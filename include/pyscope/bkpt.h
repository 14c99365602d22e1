/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_BKPT_H
#define PYSCOPE_BKPT_H

/*
 * bkpt: one hardware execute breakpoint at one address in every thread of a seized process
 * (x86-64), never a code patch. Two mechanisms (CPYTHON.md 5.3):
 *  - BKPT_PERF: per thread, a perf_event_open breakpoint with sigtrap=1, remove_on_exec=1,
 *    inherit=0 and sig_data = tid (the "stopping" event, enabled while armed), plus a second one
 *    without sigtrap that only counts hits (enabled by bkpt_count_enable). Closing the fds
 *    removes both; the kernel closes them if pyscope dies.
 *  - BKPT_DEBUGREG: DR0 = address, DR7 = 1 through PTRACE_POKEUSER; the thread must be in a
 *    ptrace stop to change them. The kernel keeps them after pyscope dies (until exec/exit).
 * Threads are tracked by tid in a table of TARGET_MAX_THREADS entries (flat). One owner thread:
 * the ptrace tracer thread (target.h).
 */

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "pyscope/err.h"
#include "pyscope/memsrc.h"

enum bkpt_mech {
    BKPT_PERF = 1,
    BKPT_DEBUGREG = 2,
};

struct bkpt;

/*
 * Check that addr starts a function in the target: capstone decodes the instruction there as
 * one of the usual entries (endbr64, push, sub rsp, mov). -PS_ECORRUPT names what was found;
 * read errors.
 */
int bkpt_check_entry(struct memsrc *src, uint64_t addr, struct ps_err *err) PS_WARN_UNUSED;

#define BKPT_ENTRY_BYTES 16 /* bytes bkpt_check_code decodes */

/* The same check on BKPT_ENTRY_BYTES bytes of code at addr (read by the caller). */
int bkpt_check_code(const uint8_t *code, uint64_t addr, struct ps_err *err) PS_WARN_UNUSED;

/*
 * Create a breakpoint set for addr in pid. want 0 = auto: BKPT_PERF when a probe
 * perf_event_open on probe_tid succeeds, else BKPT_DEBUGREG; or force one. Nothing is armed
 * yet. Errors: -ENODEV (forced perf refused: the errno is named), -ENOMEM.
 */
int bkpt_new(pid_t pid, pid_t probe_tid, uint64_t addr, enum bkpt_mech want, struct bkpt **out,
             struct ps_err *err) PS_WARN_UNUSED;

enum bkpt_mech bkpt_mechanism(const struct bkpt *b);

/*
 * Start following thread tid: perf opens its two events (the stopping one enabled when the set
 * is armed); debugreg sets DR0/DR7 when armed (tid must be stopped). Already known: no-op.
 * Errors: -PS_ELIMIT (table full), -errno of perf_event_open / ptrace (-ESRCH: thread gone).
 */
int bkpt_add_thread(struct bkpt *b, pid_t tid, struct ps_err *err) PS_WARN_UNUSED;

/* Forget a thread that exited (perf: its final count is kept, fds closed). */
void bkpt_drop_thread(struct bkpt *b, pid_t tid);

/*
 * Arm or disarm the stopping breakpoint in every followed thread but the pinned ones (bkpt_pin).
 * perf: ioctl per thread, the
 * threads may run. debugreg: every thread must be stopped (target_stop_all). Errors: the first
 * failure (other threads are still done).
 */
int bkpt_arm(struct bkpt *b, bool on, struct ps_err *err) PS_WARN_UNUSED;
bool bkpt_armed(const struct bkpt *b);

/*
 * Whether a SIGTRAP stop of tid is this breakpoint's: perf TRAP_PERF with sig_data == tid, or
 * debugreg TRAP_HWBKPT at addr.
 */
bool bkpt_is_hit(const struct bkpt *b, pid_t tid, const siginfo_t *si);

/*
 * perf: enable or disable the counting events of the threads not pinned (events opened later
 * follow the last setting).
 * A counted hit never stops the thread, but it is still a debug exception taken by the kernel
 * (bkpt_count_cost_us: ~10 us in a KVM guest, where #DB exits to the host); while the stopping
 * event is enabled too, both share that one exception, so counting adds nothing. No-op for
 * debugreg.
 */
void bkpt_count_enable(struct bkpt *b, bool on);

/* perf: total hits counted so far (threads gone included); *exact false for debugreg or when
 * a thread's counting event could not be opened. */
uint64_t bkpt_count(struct bkpt *b, bool *exact);

/*
 * perf: pin thread tid (on): its stopping and counting events are enabled now and stay enabled
 * whatever bkpt_arm and bkpt_count_enable do to the other threads; unpin (off): they follow the
 * set's current state again. The tracer pins the threads that raise rarely, so every raise there
 * stops while the busy threads are sampled. -ENOENT: unknown tid; -ENOTSUP: debug registers
 * (all threads or none).
 */
int bkpt_pin(struct bkpt *b, pid_t tid, bool on);
bool bkpt_pinned(const struct bkpt *b, pid_t tid);
/* Whether tid is followed (bkpt_add_thread, not dropped since). */
bool bkpt_known(const struct bkpt *b, pid_t tid);

/* perf: hits counted so far in thread tid (0 when unknown or without a counting event). */
uint64_t bkpt_thread_count(struct bkpt *b, pid_t tid);

/*
 * What one counted hit costs the thread that hits, measured here: a perf counting breakpoint on
 * a function of pyscope itself, called BKPT_CALIB_CALLS times in BKPT_CALIB_BATCHES batches
 * (about 2 ms); the fastest batch counts (a preempted batch measures the load). Microseconds per
 * hit, or a negative value when perf breakpoints are refused. Calling thread; no target needed.
 */
double bkpt_count_cost_us(void);

/*
 * Whether hardware breakpoints fire here: a perf counting breakpoint on a function of pyscope
 * itself, called BKPT_PROBE_CALLS times. 1: it counted; 0: it opened but counted
 * none (seen in a Firecracker guest: debug exceptions never reach the guest, so neither perf
 * nor debug registers see a raise); -errno: perf refused the event (nothing learned). Calling
 * thread; no target needed; a few microseconds where it counts.
 */
int bkpt_fires(void);

/*
 * Remove everything: perf closes every fd (threads may run); debugreg writes DR7 = 0 then
 * DR0 = 0 in every thread (they must be stopped; a gone thread is fine). The set stays usable for
 * bkpt_count. Errors: the first failure.
 */
int bkpt_clear(struct bkpt *b, struct ps_err *err) PS_WARN_UNUSED;

/*
 * bkpt_clear for one followed thread tid (unknown: no-op): perf closes its fds; debugreg writes
 * DR7 = 0 then DR0 = 0 (tid must be stopped; ESRCH counts as cleared, so never call it for a
 * thread that may be running). For a teardown whose target_stop_all failed: the threads that did
 * stop. Errors: -errno of ptrace.
 */
int bkpt_clear_thread(struct bkpt *b, pid_t tid, struct ps_err *err) PS_WARN_UNUSED;

/* bkpt_clear (errors ignored) and free. NULL-safe. */
void bkpt_free(struct bkpt *b);

/*
 * bkpt_clear for a signal handler (async-signal-safe calls only, no allocation, errors ignored):
 * tid 0: perf closes every fd (the table keeps them as -1); tid != 0: debugreg writes DR7 = 0 in
 * that thread (which must be in a ptrace stop; a running thread keeps it). NULL-safe.
 */
void bkpt_disarm_signal_safe(struct bkpt *b, pid_t tid);

/*
 * After our tracer died without clearing them (SIGKILL): seize every thread of pid, write DR7 =
 * 0 in each (the kernel keeps ptrace debug registers past the tracer's death, so the next raise
 * would kill the target with SIGTRAP), detach. Harmless where none is set (perf breakpoints die
 * with their fds). The threads are stopped for a few ms. Returns 0, or target_seize_all's error
 * (nothing then stays seized). Needs no bkpt: for guard.c.
 */
int bkpt_rescue(pid_t pid, struct ps_err *err) PS_WARN_UNUSED;

/* Drop every followed thread whose tid is not among live[0..n) (sorted ascending). */
void bkpt_sync(struct bkpt *b, const pid_t *live, size_t n);

/* Followed threads. */
size_t bkpt_nthreads(const struct bkpt *b);

#endif
