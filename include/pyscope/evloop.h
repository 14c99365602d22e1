/* SPDX-License-Identifier: MIT */
/*
 * evloop: the one session loop (ARCHITECTURE.md, "One session loop"). A session (sampler_run,
 * tracer_run, `pyscope growth`, the TUI) is an evloop with sources plugged in:
 *  - signals, through one signalfd, with one meaning each: INT, TERM, HUP and QUIT are an orderly
 *    stop (the loop ends, the teardown runs, the final output is written); TSTP releases the
 *    target first (the owner's handler, or, without one, the same orderly stop); WINCH is the
 *    TUI's resize;
 *  - pidfds (a target's exit ends the loop, or calls the owner's handler);
 *  - timers on the loop's one clock (CLOCK_MONOTONIC, or a clock injected by a unit test);
 *  - any other readable fd (a tracer's SIGCHLD signalfd or ring buffer, the terminal).
 * One wait per turn: ppoll over the fds with the earliest timer as its timeout (nanosecond
 * precision: a 10 kHz sampler's period is 100 us). Then, in this order: the signals, the fds in
 * the order they were added, the timers that were due at the wake-up in the order of their due
 * times (ties in the order they were added; each at most once a turn), then the turn hook. A
 * stop ends the turn at once.
 *
 * Teardown: evloop_teardown runs the steps added with evloop_add_teardown in the reverse order of
 * their adding (the last set up is the first undone), once; evloop_free runs it if nobody did,
 * then closes the loop's fds and puts the signal mask back as it found it.
 *
 * Single-threaded: every call, and every callback, on the thread that created the loop (ptrace
 * requests must come from the thread that attached). Never sleeps without a bound other than the
 * wait for an event, and never changes the signal mask of another thread.
 */
#ifndef PYSCOPE_EVLOOP_H
#define PYSCOPE_EVLOOP_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "pyscope/err.h"

/* Sources per loop: the TUI uses 7 (stdin, tracer fd and timer, sampler, UI timer, ...), the
 * CLI's fanout one pipe per child (64) and 2 timers. A turn looks only at the slots up to the
 * highest one taken, so a loop of few sources costs what it did with a smaller table. */
#define EVLOOP_MAX_SOURCES 72
/* Teardown steps per loop. */
#define EVLOOP_MAX_TEARDOWN 8

/* Signal classes a loop takes (evloop_opts.signals), each with its one meaning. */
#define EVLOOP_SIG_STOP  1u /* SIGINT, SIGTERM, SIGHUP, SIGQUIT: orderly stop */
#define EVLOOP_SIG_TSTP  2u /* SIGTSTP: release the target first (evloop_on_tstp) */
#define EVLOOP_SIG_WINCH 4u /* SIGWINCH: the terminal was resized (evloop_on_winch) */
#define EVLOOP_SIG_CHLD  8u /* SIGCHLD: a traced thread stopped (evloop_signal_fd only) */

/* Why evloop_run returned (evloop_end). Owners may use EVLOOP_END_OWN + n for their own. */
enum evloop_end {
    EVLOOP_END_NONE = 0,
    EVLOOP_END_SIGNAL,   /* a stop signal (or TSTP without a handler): evloop_signo says which */
    EVLOOP_END_EXITED,   /* a pid source's process exited (no handler of its own) */
    EVLOOP_END_OWN = 16, /* and up: evloop_stop's reason from an owner's callback */
};

struct evloop;

/*
 * A source's callback: events is poll's revents for an fd source (POLLIN, POLLHUP, POLLERR),
 * POLLIN for a pid source, 0 for a timer. Return 0 to go on, or a negative code (err filled) to
 * end the loop with that error; call evloop_stop to end it without one.
 */
typedef int (*evloop_fn)(void *arg, struct evloop *l, unsigned events, struct ps_err *err);

/* A teardown step (evloop_add_teardown): 0, or a negative code with err filled. */
typedef int (*evloop_undo_fn)(void *arg, struct ps_err *err);

/*
 * The one clock type, and the one injection point for time: an evloop, the sampler
 * (sampler_opts.clock) and the tracer (tracer_opts.clock) take a `const struct evloop_clock *`
 * (NULL: the real clock, evloop_now), and a session's owner (growth, the TUI) reads time with
 * evloop_clock_now on its loop and passes the loop's clock on to the sampler and tracer it
 * creates, so that a virtual clock injected into a session drives every schedule in it.
 * now() in seconds; sleep(d) instead of a real wait of d seconds when no fd is ready (a virtual
 * clock advances itself by d). With a clock injected the loop never waits in real time for a
 * timer: it polls its fds without blocking, then calls sleep (if set) with the time to the
 * earliest timer. Without timers it blocks on its fds.
 * Not injected: wall-clock timestamps of events (evloop_wall) are labels, not waits, and stay
 * real; so do cost measurements (evloop_thread_cpu, and evloop_now for how long a read took).
 */
struct evloop_clock {
    double (*now)(void *arg);
    void (*sleep)(void *arg, double seconds);
    void *arg;
};

struct evloop_opts {
    unsigned signals; /* EVLOOP_SIG_* classes taken through the signalfd; 0 for none */
    const struct evloop_clock *clock; /* NULL: evloop_now, real waits; borrowed */
    /* > 0: the first stop signal is forwarded once to this pid (our child under `run`) and the
     * loop goes on, so that the child ends first and its exit (a pid source) ends the loop; a
     * terminal's Ctrl-C (sent by the kernel) already reached the child's process group and is
     * not sent again. A second stop signal stops the loop. */
    pid_t forward_to;
};

/* The one monotonic clock (CLOCK_MONOTONIC), in seconds. Any thread, and async-signal-safe (one
 * clock_gettime: target.c's teardown handler uses it); never fails. */
double evloop_now(void);

/* Wall time (CLOCK_REALTIME), in seconds since the epoch: for timestamps, never for waits. */
double evloop_wall(void);

/* The calling thread's CPU time (user + system) in seconds (CLOCK_THREAD_CPUTIME_ID): what a
 * source costs the machine, as opposed to the time it took. */
double evloop_thread_cpu(void);

/* The signals of the classes in `classes` (EVLOOP_SIG_*), into *set: the one list. */
void evloop_signals(unsigned classes, sigset_t *set);

/*
 * Block the signals of `classes` in the calling thread for the rest of its life (and in the
 * threads and children it creates afterwards): the CLI calls it right after parsing, so that a
 * stop signal arriving before a loop exists waits for that loop's signalfd, and one arriving
 * after the loop ended (a process-group kill's second copy) cannot kill pyscope while it writes
 * its final output.
 */
void evloop_hold_signals(unsigned classes);

/*
 * A signalfd of its own for the signals of `classes` (EVLOOP_SIG_CHLD: the tracer's, which
 * outlives the loops it is a source of), so that the mask is set in one file: blocks them in the
 * calling thread first, recording in *held those that were not blocked before, then opens the fd
 * non-blocking and close-on-exec. Returns the fd (the caller's, for evloop_signal_fd_close), or a
 * negative errno with err filled and the mask as it was.
 */
int evloop_signal_fd(unsigned classes, sigset_t *held, struct ps_err *err) PS_WARN_UNUSED;

/*
 * Close fd (when >= 0) and unblock the signals in *held (those evloop_signal_fd blocked), on the
 * thread that opened it. Nested fds are safe when closed in the reverse order of their opening.
 */
void evloop_signal_fd_close(int fd, const sigset_t *held);

/*
 * For a process that must take each stop signal exactly once however many senders send it (the
 * guard's worker, guard.h: a process-group kill reaches it from the kernel, and the guard may
 * forward what it got): hold the stop signals (evloop_hold_signals) and make every loop of the
 * process leave the stop signal that ends it pending instead of reading it, for the rest of the
 * process's life. The kernel queues a standard signal at most once: every later copy of it (the
 * group's after the guard's, the guard's after the group's, `timeout`'s second) merges with the
 * pending one instead of reaching the process again, and the pending one is what tells another
 * process (/proc/PID/status) that this one has it. A later loop ends at its first turn, as with
 * any stop signal pending before its run. Such loops read only TSTP and WINCH; forward_to has no
 * effect (the stop ends the loop) and evloop_signal_from_kernel is false (nothing was read).
 * Call on main's thread before any loop or thread exists; cannot be undone.
 */
void evloop_keep_stop_signals(void);

/*
 * Create a loop: blocks opts->signals' signals in the calling thread (the previous mask kept for
 * evloop_free) and opens a signalfd for them. *out is owned by the caller (evloop_free). Errors:
 * -ENOMEM, or the errno of sigprocmask/signalfd with err filled.
 */
int evloop_new(const struct evloop_opts *opts, struct evloop **out,
               struct ps_err *err) PS_WARN_UNUSED;

/*
 * Run the teardown steps (if not run yet), close the signalfd and the pid sources' pidfds (fd
 * sources' fds belong to their owners), restore the signal mask evloop_new found. NULL-safe.
 */
void evloop_free(struct evloop *l);

/* The loop's clock, in seconds: the injected one, or evloop_now. */
double evloop_clock_now(const struct evloop *l);

/* Clock c's now in seconds: c->now(c->arg), or evloop_now when c is NULL. Async-signal-safe
 * when c is NULL. */
double evloop_clock_read(const struct evloop_clock *c);

/*
 * Add a readable-fd source: fn(arg, l, revents, err) after a wait in which fd was readable, hung
 * up or failed. The fd stays the caller's. Returns the source id (>= 0), or -ENOSPC (more than
 * EVLOOP_MAX_SOURCES) with err filled.
 */
int evloop_add_fd(struct evloop *l, int fd, evloop_fn fn, void *arg,
                  struct ps_err *err) PS_WARN_UNUSED;

/*
 * Add a timer source due at `due` (the loop's clock, absolute; < 0: disarmed). It fires once
 * per arming: the callback re-arms with evloop_timer_at or evloop_timer_every. Returns the id
 * (>= 0) or -ENOSPC with err filled.
 */
int evloop_add_timer(struct evloop *l, double due, evloop_fn fn, void *arg,
                     struct ps_err *err) PS_WARN_UNUSED;

/*
 * Add a deadline: a timer source due at `due` (absolute, the loop's clock) that ends the loop
 * with evloop_stop(l, why) (why: EVLOOP_END_OWN or above), the duration of a session. Returns
 * the id (>= 0) or -ENOSPC with err filled.
 */
int evloop_add_deadline(struct evloop *l, double due, int why, struct ps_err *err) PS_WARN_UNUSED;

/*
 * Add a pid source: a pidfd for pid, readable when the process exits. fn NULL: the exit stops
 * the loop (EVLOOP_END_EXITED). Returns the id, or a negative code with err filled (pidfd_open
 * missing before Linux 5.3, or the process already gone: -ESRCH); callers for whom it is a best
 * effort (a failing read also tells them) ignore it.
 */
int evloop_add_pid(struct evloop *l, pid_t pid, evloop_fn fn, void *arg,
                   struct ps_err *err) PS_WARN_UNUSED;

/* Remove a source (its pidfd closed); an unknown id is ignored. Callable from a callback. */
void evloop_remove(struct evloop *l, int id);

/* Leave a source out of the waits (on false) or take it back; its timer keeps its due time. */
void evloop_enable(struct evloop *l, int id, bool on);

/* Re-arm timer `id` to fire at `due` (absolute, the loop's clock); due < 0 disarms it. */
void evloop_timer_at(struct evloop *l, int id, double due);

/*
 * Re-arm periodic timer `id` to the first multiple of `period` after its last due time that is
 * still ahead of now (ticks missed are skipped, never made up in a burst). Returns how many
 * periods have passed since the last due time (1 when on time): the count a timerfd's read gives.
 */
uint64_t evloop_timer_every(struct evloop *l, int id, double period);

/* The turn hook: fn after every turn's dispatch (the TUI draws there); NULL removes it. */
void evloop_on_turn(struct evloop *l, evloop_fn fn, void *arg);

/* SIGTSTP's handler (with EVLOOP_SIG_TSTP): it must release the target before suspending. */
void evloop_on_tstp(struct evloop *l, evloop_fn fn, void *arg);

/* SIGWINCH's handler (with EVLOOP_SIG_WINCH). */
void evloop_on_winch(struct evloop *l, evloop_fn fn, void *arg);

/*
 * Add a teardown step, run by evloop_teardown in the reverse order of adding. Returns 0, or
 * -ENOSPC (more than EVLOOP_MAX_TEARDOWN) with err filled.
 */
int evloop_add_teardown(struct evloop *l, evloop_undo_fn fn, void *arg,
                        struct ps_err *err) PS_WARN_UNUSED;

/*
 * Run the teardown steps once, last added first; each runs even when an earlier one failed.
 * Returns 0 or the first failure's code (err filled with its message). A second call does nothing.
 */
int evloop_teardown(struct evloop *l, struct ps_err *err) PS_WARN_UNUSED;

/*
 * Turn until a stop: a signal, a pid source's exit, evloop_stop from a callback, or an error.
 * Returns 0 (evloop_end says why it ended) or a callback's or the wait's negative code with err
 * filled. A stop signal that was pending before the call ends the loop at its first turn.
 */
int evloop_run(struct evloop *l, struct ps_err *err) PS_WARN_UNUSED;

/* End the loop after the current callback; why is EVLOOP_END_OWN or above for an owner's own. */
void evloop_stop(struct evloop *l, int why);

/* Why the last evloop_run returned: an enum evloop_end or an owner's EVLOOP_END_OWN + n. */
int evloop_end(const struct evloop *l);

/* The signal that ended the loop (EVLOOP_END_SIGNAL), or 0. */
int evloop_signo(const struct evloop *l);

/* A stop record's reason for a loop ended by signal sig: "signal SIGINT", "signal SIGTERM",
 * "signal SIGHUP", "signal SIGQUIT", "signal SIGTSTP"; "signal" for any other. A static
 * string, never NULL. */
const char *evloop_signal_why(int sig);

/* Whether the signal that ended the loop was sent by the kernel (a terminal's Ctrl-C); false
 * for a stop signal left pending (evloop_keep_stop_signals), whose sender is not known. */
bool evloop_signal_from_kernel(const struct evloop *l);

#endif
