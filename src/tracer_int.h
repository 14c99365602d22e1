/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_TRACER_INT_H
#define PYSCOPE_TRACER_INT_H

/*
 * Private to src/tracer*.c: the tracer's state, shared by its files (tracer.c: events, stops,
 * hooks, open exceptions; tracer_rate.c: bucket, arming, counting; tracer_stop.c: the exit
 * paths), the functions they call across files, and the per-stop memo source (tracer_memo.c)
 * that lets the unchanged readers (walk.c, exc.c, pyobj.c, code.c) run a breakpoint stop in a
 * handful of scatter reads. Every function here runs on the tracer thread (the one that called
 * tracer_new: ptrace binds the tracees to it).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pyscope/err.h"
#include "pyscope/exc.h"
#include "pyscope/memsrc.h"
#include "pyscope/pyproc.h"
#include "pyscope/tracer.h"
#include "pyscope/walk.h"

struct bkpt;
struct bpf_exc;

#define TR_MAX_OPEN 256 /* threads whose open exception is followed for its END */

/* The exception a thread is propagating, followed until it ends. */
struct tr_open {
    pid_t tid; /* 0 = free */
    uint64_t tstate;
    uint64_t key;         /* exception object (3.11 unnormalised: value, else type) */
    uint64_t expect_next; /* the caller frame of the last hit: where propagation hits next */
    struct tracer_frame last;
    bool gone_once; /* a read found it no longer in flight (confirmed by a second read) */
    bool blind;     /* the breakpoint was off while it was open */
    bool reported;  /* its RAISE was emitted (an END follows) */
    struct tracer_event raise;
};

struct tracer {
    struct pyproc *pp;
    struct tracer_opts opts;
    struct bkpt *bp;
    uint64_t addr;
    int chld_fd;
    bool stopped;  /* tracer_stop ran */
    bool stopping; /* inside tracer_stop: hits are consumed, not processed */
    bool exec_seen;
    bool exited;
    struct tracer_bucket bucket;
    double disarmed_at; /* monotonic time of the last disarm, 0 when armed */
    bool want_disarm;   /* the bucket ran dry at a stop: tracer_step disarms */
    bool used_bpf;      /* the bpf mechanism runs (tracer_bpf.c): nothing is seized */
    double last_end_check, last_sync;
    /* Counting (tracer_rate.c, TR_COUNT_*): while disarmed, periods of TR_COUNT_PERIOD_S; the
     * counter is on for the whole period while the last rate was at most count_max_rate, else
     * for a window. */
    double count_cost_us;  /* one counted hit, measured; < 0 unknown */
    double count_max_rate; /* hits/s counted exactly while disarmed (INFINITY: any) */
    double period_start, cnt_on_at, period_on_s, last_rate;
    double armed_at;              /* monotonic time of the last arming */
    double last_hit_at, gap_mean; /* the last stop, and the running mean gap between stops */
    bool cnt_on, sampling;
    uint64_t count_at_period, count_at_arm;
    double est_extra; /* estimated hits while the counter was off */
    bool estimated;   /* the counter was off at some time while disarmed */
    struct tracer_stats st;
    uint64_t seq;
    struct tracer_event *ring; /* TRACER_RING_CAP */
    size_t ring_n;             /* events ever written */
    size_t delivered;          /* events handed to opts.on_event */
    struct tr_open *open;      /* TR_MAX_OPEN */
    struct walk_tstate *ts;    /* WALK_MAX_THREADS: tid -> tstate map, refreshed on a miss */
    size_t nts;
    struct walk_stack stack;
    bool stack_ok;             /* this stop's walk succeeded and starts at the hit frame */
    struct memsrc *inner;      /* pp->src as opened */
    struct memsrc *memo;       /* pp->src during a stop (tracer_memo.c) */
    struct exc_names names;    /* type names by address */
    struct tracer_event evtmp; /* a RAISE built for a thread whose exception is not followed */
    pid_t *tids;               /* TARGET_MAX_THREADS scratch */
    /* bpf mechanism (tracer_bpf.c): the loaded program (NULL otherwise or once stopped) */
    struct bpf_exc *bx;
    double hit_time;        /* bpf: CLOCK_REALTIME of the hit being handled; 0: now */
    double bpf_clock_shift; /* bpf: CLOCK_REALTIME - CLOCK_MONOTONIC */
    uint8_t *bpf_hdrs;      /* EXC_BPF_MAX_FRAMES code headers, scratch */
    uint64_t bpf_cnt_hits, bpf_cnt_lost, bpf_cnt_filtered; /* the program's counters, last read */
    char mech_note[256];                                   /* tracer_mechanism_note */
};

/* ---- tracer.c ------------------------------------------------------------------------------ */

/*
 * Hand the events not yet delivered to opts.on_event, oldest first (events overwritten before
 * delivery are skipped: counted in ring_overwritten). Call with no thread stopped at a hit, so
 * a slow consumer (a blocked stdout) never holds a target thread.
 */
void tr_deliver(struct tracer *t);

/*
 * Emit the END of open exception o (when its RAISE was reported), handled at o->last unless
 * propagating, and free the slot. Call between hits or at a stop.
 */
void tr_end(struct tracer *t, struct tr_open *o, bool propagating);

/*
 * Read every open exception's thread; END those no longer in flight: seen gone by two reads
 * in a row while the threads run (to skip PyTraceBack_Here's own brief clearing), by one when
 * they are all stopped (exact). Call between hits (stopped false) or, from tracer_stop, with
 * every thread stopped (stopped true).
 */
void tr_check_ends(struct tracer *t, bool stopped);

/* The open exception of thread tid, or NULL. */
struct tr_open *tr_open_of(struct tracer *t, pid_t tid);

/*
 * A new raise in thread tid (thread state w) of exception raw, read at a hit: starts following
 * it and emits its RAISE when wanted and allowed. Uses t->stack / t->stack_ok (the stack at the
 * hit, innermost first) and describes raw through t->pp->src.
 */
void tr_new_raise(struct tracer *t, pid_t tid, const struct walk_tstate *w,
                  const struct exc_raw *raw);

/* A propagation hit of o: it reached t->stack.frames[0] (when t->stack_ok). */
void tr_propagate(struct tracer *t, struct tr_open *o);

/* ---- tracer_bpf.c -------------------------------------------------------------------------- */

/*
 * Try the bpf mechanism (unless another was forced): 1 when it runs (t->bx loaded and attached,
 * t->chld_fd its ring buffer's fd, the program told every thread state), 0 when refused (the
 * reason in t->mech_note; an error only when bpf was forced: then its code, err filled).
 */
int tr_bpf_start(struct tracer *t, struct ps_err *err);

/* tracer_step for the bpf mechanism: records into events, thread exits, handled-at checks. */
int tr_bpf_step(struct tracer *t, struct ps_err *err);

/* tracer_stop for the bpf mechanism: drain, detach the program, end the open exceptions. */
int tr_bpf_stop(struct tracer *t);

/* Complete tracer_stats for the bpf mechanism (the program's counters). */
void tr_bpf_stats(struct tracer *t, struct tracer_stats *out);

/* ---- tracer_rate.c ------------------------------------------------------------------------- */

/* Seconds on the monotonic clock: the time base of the bucket, the counting and the spinning. */
double tr_mono(void);

/* Whether si is a hit of t's breakpoint (ctx is the tracer), by looking only: async-signal-safe.
 * The trap test of target_drain_traps and of the signal-time teardown (target_hooks.is_trap). */
bool tr_is_trap(void *ctx, pid_t tid, const siginfo_t *si);

/*
 * Set up rate limiting from t->opts: fill the bucket (max_rate, burst, or their defaults),
 * measure one counted hit's cost (bkpt_count_cost_us; unknown when debug registers are forced)
 * and derive the rate counted exactly while disarmed. Call once, from tracer_new, before
 * attaching (it may take a few milliseconds).
 */
void tr_rate_init(struct tracer *t);

/*
 * Record a breakpoint stop at now in the running mean gap between stops, which
 * tracer_timeout_ms uses to busy-wait between close hits. Call at each hit, first thing.
 */
void tr_spin_note_hit(struct tracer *t, double now);

/*
 * Rate limit: turn the stopping breakpoint off until the bucket refills (clears want_disarm;
 * marks the open exceptions blind; perf: starts the first counting period). Does nothing when
 * already off or when disarming fails (errors ignored: the next stop asks again). Call from
 * tracer_step after a stop set want_disarm, never during a stop (debug registers stop every
 * thread).
 */
void tr_disarm(struct tracer *t);

/*
 * Re-arm at now when disarmed and the bucket holds TRACER_REARM_TOKENS: the counter on first,
 * so no hit goes uncounted; adds the time off to disarmed_seconds. Errors ignored (stays off:
 * retried at the next call). Call from tracer_step, between stops.
 */
void tr_maybe_rearm(struct tracer *t, double now);

/*
 * While disarmed (perf): end the sampling window, start a new counting period when one is
 * over. Call from tracer_step at least every TR_COUNT_WINDOW_S for an accurate window
 * (tracer_timeout_ms asks for that).
 */
void tr_count_tick(struct tracer *t, double now);

/*
 * Close the current counting period at now: estimate the hits while the counter was off from
 * the rate while it was on, and choose the next period's mode from that rate. Call while
 * disarmed (perf): before re-arming, and from tracer_stop to account the last period.
 */
void tr_period_end(struct tracer *t, double now);

/* ---- tracer_memo.c ------------------------------------------------------------------------- */

#define TR_MEMO_RANGES  48          /* ranges kept per stop; more are read but not kept */
#define TR_MEMO_BYTES   (64u << 10) /* bytes kept per stop (a walker's chunk copy fits) */
#define TR_MEMO_THREADS 16          /* threads whose last stop's ranges are remembered */

/*
 * A memory source wrapping `inner` for the duration of one breakpoint stop: every range read
 * through it (and every range prefetched) is kept, and a later read that lies inside a kept
 * range is served from the copy. A call's misses go to inner in one scatter read. Valid only
 * while the target cannot change the bytes (the hitting thread is stopped and holds the GIL).
 * Memory: one TR_MEMO_BYTES arena and a replay table, allocated once. Errors (new): -ENOMEM.
 * The memo borrows inner.
 */
int tr_memo_new(struct memsrc *inner, struct memsrc **out, struct ps_err *err) PS_WARN_UNUSED;
void tr_memo_free(struct memsrc *memo);

/*
 * Start a stop of thread tid: forget every kept range, then replay (prefetch in one scatter
 * read) the ranges tid's previous stop used. A raise loop reuses its addresses (thread state,
 * data-stack chunk, pymalloc hands the freed exception's memory to the next one), so a warm
 * stop usually needs no other read; a replayed range that moved is just not used (the readers
 * validate what they read, and every byte kept was read during this stop).
 */
void tr_memo_begin(struct memsrc *memo, pid_t tid);

/* Keep len bytes of target address addr copied elsewhere (the bpf program's copy, taken in the
 * raising thread at the hit) as if read during this stop. */
void tr_memo_put(struct memsrc *memo, uint64_t addr, const void *buf, size_t len);

/* End tid's stop: remember the ranges that were used, for the next tr_memo_begin(tid). */
void tr_memo_end(struct memsrc *memo, pid_t tid);

/*
 * Read ranges [addr, addr+len) of iov (buf ignored: kept in the arena) in one scatter read,
 * skipping those already kept and those with addr 0. Best effort: when the read fails (one
 * range unmapped), nothing is kept and the readers will fetch what they need one by one.
 */
void tr_memo_prefetch(struct memsrc *memo, const struct memsrc_iov *iov, size_t n);

/* Clamp a speculative length so [addr, addr+len) stays within addr's 4 KiB page, but keep at
 * least `need` bytes (which the object itself occupies, so they are mapped). */
size_t tr_memo_page_len(uint64_t addr, size_t want, size_t need);

/*
 * Level 2 of a stop's reads (the walker's one scatter read was level 1 and kept the thread
 * state): the hit frame object's f_frame and the in-flight exception object, whose address is
 * read through memo. Best effort, like every prefetch.
 */
void tr_prefetch_exc(struct memsrc *memo, const struct pyproc *pp, uint64_t tstate,
                     uint64_t frameobj);

/*
 * Levels 3 and 4, before describing exception `value` of type `type`: the type's header, the
 * args tuple and the chained exceptions' headers; then args[0] (up to ~256 bytes of a str) and
 * the chained exceptions' types. Best effort.
 */
void tr_prefetch_desc(struct memsrc *memo, const struct pyproc *pp, uint64_t value, uint64_t type);

#endif
