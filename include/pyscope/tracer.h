/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_TRACER_H
#define PYSCOPE_TRACER_H

/*
 * tracer: every exception a live CPython process raises, as it is raised (swallowed ones
 * included), seen from outside with a hardware breakpoint on PyTraceBack_Here (CPYTHON.md
 * section 5.2). Never writes into the target's code.
 *
 * Mechanism (chosen at tracer_new, reported by tracer_mechanism()):
 *  - "bpf" (tracer_bpf.c, bpf_exc.h): a uprobe at PyTraceBack_Here runs a BPF program that reads
 *    the hit in the raising thread (exception, type, message, chain, frame chain) into a ring
 *    buffer: nothing is seized or stopped; the kernel removes the uprobe when pyscope's fd
 *    closes. Chosen first where the kernel allows it (CAP_BPF+CAP_PERFMON or CAP_SYS_ADMIN).
 *  - "perf": one perf_event_open execute breakpoint per thread with sigtrap=1, remove_on_exec=1
 *    and sig_data = tid; its SIGTRAP is intercepted by ptrace and swallowed. The kernel removes
 *    it when pyscope's fds close (pyscope dying included). A second, non-stopping perf breakpoint
 *    per thread counts hits (see Rate control below: a counted hit never stops the thread but
 *    is still a debug exception, ~10 us in a KVM guest).
 *  - "debugreg": ptrace debug registers (DR0/DR7 via PTRACE_POKEUSER) where perf events are
 *    refused. WARNING: the kernel keeps these armed if pyscope is SIGKILLed; the target then
 *    dies at its next raise (CPYTHON.md 5.3). No count while rate-limited off.
 * Threads are seized (target.h) with PTRACE_O_TRACECLONE|PTRACE_O_TRACEEXEC: threads created
 * later are armed at their first stop; an exec ends the trace. Fork children are not traced
 * and inherit no breakpoint (perf events are opened with inherit=0; the kernel clears ptrace
 * debug registers in a fork child).
 *
 * Driving: the tracer is run by the caller's event loop. tracer_fd() is readable when a traced
 * thread stopped (a signalfd for SIGCHLD, evloop_signal_fd: tracer_new blocks SIGCHLD in the
 * calling thread, tracer_free unblocks it if it was not blocked before);
 * the loop then calls tracer_step(). tracer_run() is the blocking loop for the CLI. Every
 * function must be called from the thread that called tracer_new() (ptrace binds tracees to it).
 *
 * Events go to a bounded ring (TRACER_RING_CAP events, oldest overwritten, overwrites counted)
 * and optionally to a callback. Memory is flat: the ring and per-thread arrays are allocated at
 * tracer_new; event strings are fixed-size fields, truncated (flagged) when longer.
 *
 * Rate control: a token bucket (rate = opts.max_rate per second, burst = opts.burst). A hit
 * with no token left is counted as not reported, and the stopping breakpoint is disarmed (both
 * mechanisms: debug registers by stopping every thread to clear DR7) until the bucket holds
 * TRACER_REARM_TOKENS tokens again; meanwhile the counting breakpoint counts hits (perf mode:
 * exactly while that costs the target under 2%, see tracer_stats.count_exact_rate; debugreg
 * mode has no counter).
 *
 * Budget (opts.budget, default 1%): on top of that, tracing may take the target at most that
 * share of the CPU time it uses (read from /proc as it runs; at least 20% of a core counts). Each
 * stop is charged its measured hold plus the stop's round trip (TR_STOP_FLOOR), each hit counted
 * while disarmed its measured cost. perf: threads whose hits fit in half the budget are pinned
 * (every raise there stops: a rare raiser is seen every time); the others are armed in short
 * episodes of at most TR_EPISODE_STOPS stops, re-armed once the budget refilled for the next
 * one (with jitter), so no request meets a run of stops. Per (type, raise site) the raises are
 * estimated from what the stops saw, weighted by the inverse of the stop probability (see
 * tracer_site); a site not yet reported is reported whatever the token bucket holds.
 */

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pyscope/err.h"
#include "pyscope/pyproc.h"

struct evloop_clock; /* evloop.h */

#define TRACER_RING_CAP      1024 /* events kept for the UI (~6 MiB): seconds at the default rate */
#define TRACER_MAX_FRAMES    32   /* frames kept per event (innermost first); deeper: truncated */
#define TRACER_TYPE_MAX      96   /* qualified type name bytes */
#define TRACER_MSG_MAX       200  /* message bytes (str of args[0]) */
#define TRACER_NAME_MAX      96   /* function / file name bytes per frame */
#define TRACER_MAX_OPEN      1024 /* threads whose open exception is followed for its END */
#define TRACER_MAX_TYPES     256  /* distinct types counted; more go to "other" */
#define TRACER_DEFAULT_RATE  200  /* reported raises per second */
#define TRACER_DEFAULT_BURST 500  /* raises reported in full before the rate applies */
#define TRACER_REARM_TOKENS  50   /* tokens needed to re-arm after the bucket ran dry */
#define TRACER_BUDGET_SHARE  0.01 /* share of the target's CPU time tracing may take */
#define TRACER_MAX_SITES     256  /* (type, raise site) rows estimated; more go to the last */

enum tracer_mech {
    TRACER_MECH_PERF = 1,     /* perf_event_open sigtrap breakpoints */
    TRACER_MECH_DEBUGREG = 2, /* ptrace debug registers */
    TRACER_MECH_BPF = 3,      /* uprobe + BPF program reading in the kernel: no stop */
};

/*
 * Where an exception ended ("handled at"), the rule implemented: an exception's hits are the
 * frames it passed through (PyTraceBack_Here runs once per frame, before the handler lookup).
 * It ENDs when, in its thread, a hit shows another exception or a new raise, or a step reads the
 * thread's in-flight exception (without stopping it) and finds it gone. The frame of its last hit
 * is where it was handled, at the line where it arrived there (the call or raise line inside the
 * try block). An exception that left Python for C code that cleared it is shown as handled in the
 * last Python frame it crossed. Still in flight when the trace ends: END with propagating=true.
 */
enum tracer_event_kind {
    TRACER_EV_RAISE = 1, /* a new exception was raised in frames[0] */
    TRACER_EV_END,       /* the exception of RAISE `raise_seq` stopped propagating (or the
                            trace ended first): a copy of the RAISE plus handled_at */
};

struct tracer_frame {
    char function[TRACER_NAME_MAX]; /* co_name, as traceback shows it */
    char file[TRACER_NAME_MAX];     /* co_filename, truncated from the left when too long */
    int line;                       /* -1 unknown */
};

struct tracer_event {
    enum tracer_event_kind kind;
    uint64_t seq;                 /* event number, from 1, in order of observation */
    uint64_t raise_seq;           /* END: seq of its RAISE; RAISE: = seq */
    double time;                  /* CLOCK_REALTIME seconds at the stop */
    uint64_t thread_id;           /* threading.get_ident() */
    pid_t native_id;              /* kernel tid */
    pid_t pid;                    /* the traced process (as we see it) */
    char type[TRACER_TYPE_MAX];   /* qualified type name ("ValueError", "mod.MyError") */
    char message[TRACER_MSG_MAX]; /* str of args[0] when a str; "" otherwise */
    bool has_message;
    bool message_truncated;
    char cause_type[TRACER_TYPE_MAX];   /* __cause__'s type name, "" if none */
    char context_type[TRACER_TYPE_MAX]; /* __context__'s type name, "" if none */
    bool reraise;      /* RAISE: an exception object that was raised before (raise e / bare) */
    bool propagating;  /* END: still in flight when the trace ended, handled_at unknown */
    bool fate_unknown; /* END: the breakpoint was rate-limited off while it was in flight, so
                          it may have been handled above handled_at */
    bool exit_unknown; /* END (with propagating): its thread or the target exited, or the target
                          exec'd, before its fate could be learnt (bpf) */
    struct tracer_frame handled_at; /* END: frame (and line) where it was handled */
    /* The stack at the raise, innermost first (frames[0] is the raising frame). */
    size_t nframes;
    bool frames_truncated;
    struct tracer_frame frames[TRACER_MAX_FRAMES];
};

struct tracer_opts {
    double max_rate; /* reported raises per second; 0 = TRACER_DEFAULT_RATE; < 0 unlimited */
    unsigned burst;  /* 0 = TRACER_DEFAULT_BURST */
    const char *type_filter; /* report only this type (exact, qualified or bare name); NULL all */
    enum tracer_mech force_mech; /* 0 = auto (bpf, else perf, else debugreg) */
    /* perf: count exactly while rate-limited off at any hit rate, although each counted hit
     * costs the target a debug exception (count_cost_us); default: exactly while that stays
     * under 2% of the target's time, by 2% sampling above. */
    bool exact_count;
    /* The target time tracing may take (stops, counting, re-arming), as a share of the target's
     * CPU time measured as it runs: 0 = TRACER_BUDGET_SHARE; < 0 no budget (every raise
     * stops the target, as with max_rate < 0). See "Budget" above. */
    double budget;
    /* Optional: called from tracer_step / tracer_stop for each event, in order, after it
     * entered the ring and after the stopped threads were resumed (a slow consumer never holds
     * a target thread; events overwritten before delivery are lost and counted); then once
     * with ev == NULL after each batch and at every step, new events or not (flush there, not
     * per event: output a full pipe refused is retried there). Frames past ev->nframes are
     * stale. */
    void (*on_event)(void *ctx, const struct tracer_event *ev);
    void *ctx;
    /* Optional: the clock (evloop.h; NULL = the real one), borrowed for the tracer's life: a
     * test's virtual clock, or the clock of the loop the tracer is plugged into. The rate
     * bucket, the budget, the counting windows, tracer_timeout_ms and tracer_run's loop read it;
     * event timestamps stay wall-clock labels (evloop_wall). */
    const struct evloop_clock *clock;
};

struct tracer_type_count {
    char type[TRACER_TYPE_MAX];
    uint64_t count; /* raises of this type that were reported (after the type filter) */
};

struct tracer_stats {
    uint64_t hits;               /* breakpoint stops handled (one per frame an exception crossed) */
    uint64_t raises;             /* new raises seen at a stop */
    uint64_t reported;           /* RAISE events emitted */
    uint64_t filtered;           /* raises skipped by the type filter */
    uint64_t not_reported;       /* raises not reported because of the rate limit (counted) */
    uint64_t counted_total;      /* perf mode: every breakpoint hit, stopped (hits) or counted while
                               rate-limited off (unseen_hits); 0 in debugreg mode (no counter) */
    bool counting;               /* counted_total is exact: perf mode, and the counter never had
                               to sample (while off above count_exact_rate hits/s it runs 2% of
                               the time and the rest is estimated from its rate) */
    double count_cost_us;        /* measured cost of one counted hit to the target (< 0 unknown);
                                    bpf: the program's mean time per hit + the trap's 1.7 us */
    double count_exact_rate;     /* hits/s up to which counting while off stays exact (the rate at
                                   which it costs the target 2%); < 0: any rate (exact_count) */
    uint64_t unseen_hits;        /* perf: hits not stopped for (rate-limited off, or at the end) */
    uint64_t unseen_raises_est;  /* estimate of the raises among them: unseen_hits times the
                                   raises/hits ratio observed while armed */
    uint64_t read_errors;        /* stops (bpf: hits) where the exception, its thread state or
                                    the stack could not be read: not counted as raises */
    uint64_t ring_overwritten;   /* events dropped from the ring because the reader was slow */
    uint64_t ring_lost;          /* bpf: raises the kernel's ring buffer had no room for (counted
                                   in not_reported too) */
    uint64_t in_flight_at_start; /* bpf: exceptions already propagating when tracing began, first
                                    seen at a caller of their raise site: not reported */
    uint32_t sampled_every;      /* bpf: one raise in this many gets its record now (the budget);
                                    the others are counted per site exactly, not reported */
    uint64_t threads_armed;
    uint64_t disarms;        /* times the stopping breakpoint was rate-limited off */
    double disarmed_seconds; /* total time the stopping breakpoint was off */
    bool armed;              /* the stopping breakpoint is armed right now */
    double budget;           /* the share in force (< 0: none) */
    double spent_s;          /* target time charged to the budget: stops and counted hits;
                                bpf: the program, the traps and own_cpu_s */
    double own_cpu_s;        /* bpf: pyscope's CPU turning records into events and output */
    double target_cpu_s;     /* the target's CPU time while traced (the budget's base) */
    double stop_cost_us;     /* charged per stop: measured hold + TR_STOP_FLOOR (model) */
    uint64_t pinned_threads; /* threads where every raise stops (rare raisers), now */
    uint64_t episodes;       /* armed episodes of the sampled threads */
    double raises_est;       /* every raise, estimated: the sum of the sites' estimates */
    size_t ntypes;
    struct tracer_type_count types[TRACER_MAX_TYPES]; /* by first appearance */
};

/*
 * One (exception type, raise site) and how many times it was raised: seen at stops, and
 * estimated (tracer.h "Budget"): raises in pinned threads are all seen (weight 1); a raise seen
 * in a sampled thread stands for 1/p raises, p being the share of the sampled threads' hits
 * that were stopped for in its arming cycle (hits known from the counting breakpoint).
 */
struct tracer_site {
    char type[TRACER_TYPE_MAX];
    struct tracer_frame at; /* the raising frame (frames[0]); function "?" when unread */
    uint64_t seen;          /* raises of this site stopped for */
    uint64_t reported;      /* of which reported (RAISE events) */
    double estimate;        /* estimated raises in all (>= seen) */
    double rel_err;         /* relative standard error of estimate (0: every raise was seen) */
    bool estimated;         /* some of its raises were sampled: estimate is not a count */
    double first_time;      /* CLOCK_REALTIME of its first stop */
    uint64_t first_seq;     /* raises seen (all sites) before it, + 1: its place in the order */
};

struct tracer;

/*
 * Seize every thread of pp's process (target.h), check the breakpoint address (capstone must
 * decode a function entry at PyTraceBack_Here: push/endbr64/sub rsp...), choose the mechanism
 * (opts->force_mech, else perf if perf_event_open works, else debug registers), arm every
 * thread, resume them. Borrows pp for the tracer's lifetime. Blocks SIGCHLD in the calling
 * thread until tracer_free (see tracer_fd). On success *out is owned by the caller (tracer_free).
 * Errors (nothing left seized or armed): -PS_EPERM (diagnosed), -ESRCH, -EBUSY (a target is
 * already seized by this process), -PS_ENOTPYTHON (no PyTraceBack_Here), -PS_ECORRUPT (the
 * address does not decode as a function entry), -ENODEV (no breakpoint mechanism works),
 * -ENOMEM.
 */
int tracer_new(struct pyproc *pp, const struct tracer_opts *opts, struct tracer **out,
               struct ps_err *err) PS_WARN_UNUSED;

/* "bpf", "perf" or "debugreg". */
const char *tracer_mechanism(const struct tracer *t);

/*
 * Why a better mechanism than the chosen one was refused, one sentence ("bpf: pyscope lacks
 * CAP_BPF+CAP_PERFMON ..."), or "" when the best one runs or the user forced one.
 */
const char *tracer_mechanism_note(const struct tracer *t);

/* A file descriptor that becomes readable when tracer_step has work (poll for POLLIN). */
int tracer_fd(const struct tracer *t);

/*
 * Collect and handle every pending stop without blocking (reads the stack and exception of a
 * hitting thread, emits events, resumes it), re-arm when the bucket refilled, and notice exited
 * threads. Returns 0 while tracing, 1 when the target exited or exec'd (the trace is over:
 * call tracer_stop), or a negative code (-ESRCH...). Call when tracer_fd() is readable and at
 * least every 100 ms (re-arming is time-driven).
 */
int tracer_step(struct tracer *t, struct ps_err *err) PS_WARN_UNUSED;

/*
 * How long the caller's loop may wait (ms) before the next tracer_step when tracer_fd() stays
 * quiet: 100, or a few ms while a rate-limited counting window is open (a longer wait is
 * correct, only costlier for the target).
 */
int tracer_timeout_ms(const struct tracer *t);

/* Arm (true) or disarm (false) the stopping breakpoint in every thread, at once. */
int tracer_enable(struct tracer *t, bool on, struct ps_err *err) PS_WARN_UNUSED;

/*
 * Copy the events with seq > after, oldest first, into out (at most cap); returns the count.
 * The ring is tracer-owned; this is the UI's read side (same thread).
 */
size_t tracer_events(const struct tracer *t, uint64_t after, struct tracer_event *out, size_t cap);

/* Current counters (perf counting events are read now). */
void tracer_stats(struct tracer *t, struct tracer_stats *out);

/*
 * Copy the (type, raise site) table, in order of first appearance, into out (at most cap);
 * returns the count. Estimates are brought up to date first (the cycle in progress included).
 */
size_t tracer_sites(struct tracer *t, struct tracer_site *out, size_t cap);

/*
 * End the trace: remove every breakpoint (close perf fds / clear DR7 in every thread), stop
 * every thread, consume pending breakpoint SIGTRAPs, detach. Idempotent. The tracer can then
 * only be read (events, stats) and freed. Errors: -ETIMEDOUT (a thread could not be stopped to
 * detach it: it stays traced until pyscope exits, when the kernel detaches it).
 */
int tracer_stop(struct tracer *t, struct ps_err *err) PS_WARN_UNUSED;

/* tracer_stop (errors ignored), then free. NULL-safe. */
void tracer_free(struct tracer *t);

/*
 * Blocking loop for the CLI: trace until duration_s elapses (0 = no limit), the target exits or
 * exec's, or SIGINT/SIGTERM/SIGHUP/SIGQUIT/SIGTSTP arrives (an evloop's signalfd, so the handlers
 * of target_install_signal_teardown are bypassed while it runs; Ctrl-Z ends the trace rather
 * than suspend a tracer that raising threads would wait for), then tracer_stop (the loop's
 * teardown). A caller should block EVLOOP_SIG_STOP | EVLOOP_SIG_TSTP (evloop_signals) before
 * tracer_new: one arriving while the breakpoints are being armed then waits for tracer_run,
 * which stops cleanly, instead of killing pyscope with breakpoints armed (debug registers stay
 * armed in the target when their tracer dies). Call on the thread that created the tracer. Returns 0, or a
 * negative code when tracing failed (the target is released in every case); *why gets a short
 * reason ("duration", "signal SIGINT", "target exited", "target exec'd").
 */
int tracer_run(struct tracer *t, double duration_s, const char **why,
               struct ps_err *err) PS_WARN_UNUSED;

/* Token bucket, exported for unit tests: tokens in [0, burst], refilled at rate per second. */
struct tracer_bucket {
    double rate;
    double burst;
    double tokens;
    double last; /* seconds, monotonic */
};
void tracer_bucket_init(struct tracer_bucket *b, double rate, double burst, double now);
/* Refill for time now, then take one token: true when one was available. */
bool tracer_bucket_take(struct tracer_bucket *b, double now);
/* Refill for time now; return the tokens available. */
double tracer_bucket_level(struct tracer_bucket *b, double now);

#endif
