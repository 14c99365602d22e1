/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_GUARD_H
#define PYSCOPE_GUARD_H

/*
 * guard: run a command that arms breakpoints in the target in a forked worker process, so that
 * a SIGKILL of the pyscope process the user started still ends in a clean detach.
 *
 * Why: a breakpoint hit is a SIGTRAP to the target's thread that only its tracer absorbs. If
 * the tracer is SIGKILLed with such a SIGTRAP in flight, the kernel delivers it to the target,
 * whose default action kills it (CPYTHON.md 5.3, docs/exceptions.md). The worker holds ptrace;
 * the process the user sees (the guard) only waits. A SIGKILL of the guard makes the kernel
 * send the worker SIGTERM (PR_SET_PDEATHSIG), on which it disarms, absorbs pending traps and
 * detaches like on any SIGTERM. A SIGKILL of the worker itself leaves debug registers armed in
 * the target (the kernel detaches it but keeps them): the guard then seizes the target again and
 * clears them (bkpt_rescue). A trap already in flight at the worker's death, and a SIGKILL of
 * both processes (`pkill -9 pyscope`), are not covered: that case is documented.
 */

#include <sys/types.h>

/*
 * Fork; in the child (the worker) arrange SIGTERM on the guard's death, keep its stop signals
 * pending once taken (evloop_keep_stop_signals) and return 0: the caller runs the command there
 * and exits with its code. In the guard: forward the first of SIGINT, SIGTERM, SIGHUP and
 * SIGQUIT sent to it by a process (kill; a terminal's signals reach the worker directly, being
 * in the same process group), or the hang-up of a terminal whose session leader it is (sent to
 * it alone), unless the worker has a stop signal pending already (a process-group kill reached
 * it): the worker gets each stop signal once. Forward SIGTSTP sent by a process and every
 * SIGCONT to the worker, stop itself on SIGTSTP (so a shell sees the job stop), wait for the
 * worker, and exit with its status (dying of the same signal when it died of one); never
 * returns. When the worker died of SIGKILL, the guard first runs bkpt_rescue(target) (target >
 * 0). Returns a negative errno when fork fails (the caller then runs the command unguarded).
 * Call before any thread or ptrace attachment exists, from main's thread.
 */
int guard_fork(pid_t target);

/*
 * In the worker, before it attaches to another process (attach's process switcher): make that
 * process the one the guard rescues. Call only while nothing is attached. No-op without a guard.
 */
void guard_retarget(pid_t target);

#endif
