/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_TRACER_INT_H
#define PYSCOPE_TRACER_INT_H

/*
 * Private to src/trace/tracer*.c: the tracer's state, shared by its files (tracer.c: events, stops,
 * hooks, open exceptions; tracer_rate.c: bucket, arming, counting; tracer_stop.c: the exit
 * paths), the functions they call across files, and the per-stop memo source (tracer_memo.c)
 * that lets the unchanged readers (walk.c, exc.c, pyobj.c, code.c) run a breakpoint stop in a
 * handful of scatter reads. Every function here runs on the tracer thread (the one that called
 * tracer_new: ptrace binds the tracees to it).
 */

#include <signal.h>
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
struct tr_bpf_hdr;

#define TR_MAX_OPEN 256 /* threads whose open exception is followed for its END */
/* Window rates kept for the median (tracer_rate.c), which decides how much of the time to count
 * (a window that opened while the target was catching up after losing its CPU reads high; the
 * median of several ignores it). The estimate itself is tracer_est.c's. */
#define TR_WIN_RATES 9

/*
 * The hits not counted while disarmed (tracer_est.c): every stretch of time the counter was off
 * is estimated on the line through the rates of the counted windows just before and just after
 * it; provisional (at the last window's rate) until the window after it closes.
 */
struct tr_est {
    double settled;    /* estimated hits of the off time a window after it has settled */
    double pend_s;     /* off time since the last window (seconds) */
    double pend_mid_s; /* sum over those stretches of length x middle (for the line) */
    double rate;       /* hits/s of the last window; < 0 none yet */
    double mid;        /* the middle of the last window */
};

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

/* Budget (tracer_rate.c): per-thread accounting for the pinning decision. */
#define TR_MAX_THR 512 /* threads followed for pinning; more stay sampled */
struct tr_thr {
    pid_t tid;         /* 0 = free */
    uint64_t count_at; /* its counter at the last decision */
    uint64_t stops;    /* its stops since the last decision */
    double on_at;      /* the tracer's counter-on seconds at the last decision */
    double rate;       /* hits/s at the last decision */
};

/* A (type, raise site) being estimated (tracer_sites.c). */
struct tr_site {
    struct tracer_site pub;
    uint64_t hash;
    uint64_t pending;   /* raises seen in sampled threads in the current cycle */
    double sampled_est; /* their weighted sum over closed cycles */
    double var;         /* variance of sampled_est */
    uint64_t exact;     /* raises seen in pinned threads (weight 1); bpf: counted in the kernel */
    uint32_t gen;       /* bpf: the sync that last set exact */
};

struct tracer {
    struct pyproc *pp;
    struct tracer_opts opts;
    struct bkpt *bp;
    uint64_t addr;
    int chld_fd;        /* ptrace: the SIGCHLD signalfd (evloop_signal_fd); bpf: the ring's */
    sigset_t chld_held; /* ptrace: what evloop_signal_fd blocked, unblocked by tracer_free */
    bool stopped;       /* tracer_stop ran */
    bool stopping;      /* inside tracer_stop: hits are consumed, not processed */
    bool exec_seen;
    bool exited;
    bool want_disarm; /* the bucket ran dry at a stop: tracer_step disarms */
    bool win_armed;   /* armed during the window: its rate is not the free-running one */
    bool cnt_on;
    bool estimated;  /* the counter was off at some time while disarmed */
    bool hit_pinned; /* the thread of the stop being handled is pinned */
    bool stack_ok;   /* this stop's walk succeeded and starts at the hit frame */
    struct tracer_bucket bucket;
    double disarmed_at; /* monotonic time of the last disarm, 0 when armed */
    bool used_bpf;      /* the bpf mechanism runs (tracer_bpf.c): nothing is seized */
    double last_end_check, last_sync;
    /* Counting (tracer_rate.c, TR_COUNT_*): while disarmed, the counter runs in windows of
     * TR_COUNT_WINDOW_S (all the time when cheap enough); between them the sampled threads'
     * hits are estimated from the windows around that time (est). */
    double count_cost_us;  /* one counted hit, measured; < 0 unknown */
    double count_max_rate; /* hits/s counted exactly while disarmed (INFINITY: any) */
    double cnt_on_at;      /* when the counter was last turned on */
    double win_at;         /* the window's start, 0 = none open */
    uint64_t win_count;    /* sampled hits counted at its start */
    double off_at;         /* the counter is off (disarmed) since then; 0 = counting */
    double next_win;       /* when the next window opens */
    double rate_w;         /* sampled hits/s: the median of the last windows (how much to count; the
                    * estimate before any window); < 0 unknown */
    double win_rates[TR_WIN_RATES]; /* the last windows' rates (a ring) */
    size_t nwin;                    /* windows closed so far */
    double armed_at;                /* monotonic time of the last arming */
    double last_hit_at, gap_mean;   /* the last stop, and the running mean gap between stops */
    uint64_t count_at_arm;
    struct tr_est est; /* the hits while the counter was off, estimated (tracer_est.c) */
    /* Budget (tracer_rate.c, TR_BUDGET_*): credit in seconds of target time. */
    double budget;            /* share; < 0 none */
    double credit, credit_at; /* what may still be spent, and when it was last refilled */
    double cpu_rate;          /* target CPU in cores, smoothed */
    double cpu_last, cpu_at;  /* last reading of the target's CPU seconds, when */
    double cpu_first;         /* the first reading */
    double stop_cost;         /* smoothed charge per stop (s) */
    double rearm_need;        /* credit the next episode waits for (jittered) */
    unsigned ep_stops;        /* stops of sampled threads in this episode */
    uint64_t pinned_hits;     /* stops in pinned threads (their counters are always on) */
    uint64_t charged_count;   /* counter value up to which counted hits were charged */
    double cnt_on_total;      /* seconds the sampled threads' counters were on */
    double alloc_at;
    uint32_t rng;
    struct tr_thr *thr; /* TR_MAX_THR */
    /* Cycle (arming to arming) accounting for the site estimates (tracer_sites.c). */
    uint64_t cyc_total_at, cyc_pinned_at, cyc_stops_at;
    double cyc_extra_at;
    double unattributed;   /* sampled hits of cycles with no stop: in no site */
    struct tr_site *sites; /* TRACER_MAX_SITES */
    size_t nsites;
    struct tracer_stats st;
    uint64_t seq;
    struct tracer_event *ring; /* TRACER_RING_CAP */
    size_t ring_n;             /* events ever written */
    size_t delivered;          /* events handed to opts.on_event */
    struct tr_open *open;      /* TR_MAX_OPEN */
    struct walk_tstate *ts;    /* WALK_MAX_THREADS: tid -> tstate map, refreshed on a miss */
    size_t nts;
    struct walk_stack stack;
    struct memsrc *inner;      /* pp->src as opened */
    struct memsrc *memo;       /* the source of a stop's reader context (tracer_memo.c) */
    struct exc_names names;    /* type names by address */
    struct tracer_event evtmp; /* a RAISE built for a thread whose exception is not followed */
    pid_t *tids;               /* TARGET_MAX_THREADS scratch */
    /* bpf mechanism (tracer_bpf.c): the loaded program (NULL otherwise or once stopped) */
    struct bpf_exc *bx;
    double hit_time;                  /* bpf: CLOCK_REALTIME of the hit being handled; 0: now */
    double bpf_clock_shift;           /* bpf: CLOCK_REALTIME - CLOCK_MONOTONIC */
    uint8_t *bpf_hdrs;                /* EXC_BPF_MAX_FRAMES code headers, scratch */
    struct tr_bpf_hdr *bpf_hdr_cache; /* TR_BPF_HDR_SLOTS code headers read in this batch */
    uint32_t bpf_batch;               /* the batch's number (a cached header's validity) */
    uint64_t bpf_cnt_hits, bpf_cnt_lost, bpf_cnt_filtered; /* the program's counters, last read */
    uint64_t bpf_cnt_in_flight, bpf_cnt_sampled, bpf_cnt_ns;
    uint64_t bpf_cnt_unread; /* hits the program could not read (no thread state, bad reads) */
    uint32_t bpf_every, bpf_sync_gen; /* the sampling in force (1: a record per raise) */
    double bpf_own_s;   /* pyscope's CPU in tr_bpf_step so far (records into events, output) */
    double bpf_credit;  /* the budget's credit, seconds (tracer_bpf.c, TR_BPF_BUDGET_S) */
    double bpf_trap_s;  /* a hit's trap, which the program cannot time (bpf_exc_trap_cost_s) */
    double bpf_bud_at;  /* the budget's last look (evloop_now; 0 never) */
    double bpf_bud_own; /* bpf_own_s at that look */
    uint64_t bpf_bud_ns, bpf_bud_hits; /* the program's counters at that look */
    char mech_note[512];               /* tracer_mechanism_note */
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
 * hit, innermost first) and describes raw through stop, the stop's reader context: its source is
 * t->memo (prefetched into).
 */
void tr_new_raise(struct tracer *t, const struct pyctx *stop, pid_t tid,
                  const struct walk_tstate *w, const struct exc_raw *raw);

/* A propagation hit of o: it reached t->stack.frames[0] (when t->stack_ok), resolved through c. */
void tr_propagate(struct tracer *t, const struct pyctx *c, struct tr_open *o);

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

/* Whether si is a hit of t's breakpoint (ctx is the tracer), by looking only: async-signal-safe.
 * The trap test of target_drain_traps and of the signal-time teardown (target_hooks.is_trap). */
bool tr_is_trap(void *ctx, pid_t tid, const siginfo_t *si);

/* The tracer's clock, in seconds: every time read of its schedules (bucket, budget, counting
 * windows, waits) goes through here: evloop_clock_read(t->opts.clock). */
double tr_now(const struct tracer *t);

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
 * Counting (perf): close the window when it is over (its rate, its cost charged, the next one
 * scheduled), open the next when due. Call from tracer_step, at least as often as
 * tracer_timeout_ms asks.
 */
void tr_count_tick(struct tracer *t, double now);

/* Account the hits of the time the counter is off until now (tracer_stop's last step). */
void tr_count_end(struct tracer *t, double now);

/* ---- tracer_est.c -------------------------------------------------------------------------- */

/* An estimator with nothing counted and no rate known. */
void tr_est_init(struct tr_est *e);

/*
 * The counter was off from `from` to `to` (seconds, the caller's monotonic clock; to <= from is
 * ignored): those hits are to be estimated. Stretches are given in time order, none
 * overlapping a window.
 */
void tr_est_off(struct tr_est *e, double from, double to);

/*
 * A counting window from `from` to `to` counted `hits`, disarmed throughout (a window the
 * stopping breakpoint was armed in is not the free-running rate: leave it out). Settles the off
 * time since the previous window on the line through the two windows' rates (on this window's
 * rate when it is the first); its rate is the provisional one from now on. to <= from is ignored.
 */
void tr_est_window(struct tr_est *e, uint64_t hits, double from, double to);

/*
 * The estimated hits of all the off time given so far: settled, plus the off time since the
 * last window at that window's rate (at fallback_rate before any window; none when <= 0).
 * Never negative.
 */
double tr_est_hits(const struct tr_est *e, double fallback_rate);

/* ---- tracer_budget.c ----------------------------------------------------------------------- */

/* Set the budget up from t->opts (share, a first credit of two episodes). From tr_rate_init. */
void tr_budget_init(struct tracer *t);

/* Seconds of target time the credit gains per second: budget x the target's CPU (cores). */
double tr_budget_refill(const struct tracer *t);

/* A number in [0, 1), to jitter arming and counting windows (no phase locking with the
 * target's own periods). */
double tr_budget_jitter(struct tracer *t);

/* Charge seconds of target time (counted hits) to the budget. */
void tr_budget_charge(struct tracer *t, double seconds);

/* Whether the credit holds the next episode (always without a budget). */
bool tr_budget_episode_due(const struct tracer *t);

/* An episode starts (the sampled threads were just armed). */
void tr_budget_episode(struct tracer *t);

/* Seconds until the next episode is due (1 without a budget). */
double tr_budget_wait(const struct tracer *t);

/*
 * Budget: refill the credit for the time since the last call and re-read the target's CPU
 * (every TR_CPU_S). Call from tracer_step, between stops.
 */
void tr_budget_tick(struct tracer *t, double now);

/* Bring the target's CPU rate (t->cpu_rate, cores) and CPU time up to date (every TR_CPU_S). */
void tr_budget_cpu(struct tracer *t, double now);

/*
 * Charge one stop of tid that held it `hold` seconds (plus TR_STOP_FLOOR), and decide: a
 * sampled thread's episode ends (want_disarm) after TR_EPISODE_STOPS stops or when the credit
 * is spent; a pinned thread that overspends is unpinned. Returns whether tid was pinned.
 * Call at each hit, after its reads.
 */
bool tr_budget_stop(struct tracer *t, pid_t tid, double hold);

/* A thread the tracer starts following: pinned until its rate says otherwise (perf). */
void tr_budget_thread(struct tracer *t, pid_t tid);

/* ---- tracer_sites.c ------------------------------------------------------------------------ */

/*
 * A new raise seen at a stop, of type `type` at frame `at` (NULL: unread), in a pinned thread
 * or a sampled one. Returns whether its site had never been reported (it then bypasses the
 * token bucket). Call at the stop.
 */
bool tr_site_seen(struct tracer *t, const char *type, const struct tracer_frame *at, bool pinned,
                  struct tr_site **out);

/* The site's raise was reported. */
void tr_site_reported(struct tr_site *s);

/*
 * Close the arming cycle at now: the sampled threads' hits since the last close (counted, with
 * the counting windows' extrapolation) are apportioned to the sites seen in sampled threads
 * during the cycle. Call at each re-arm (after the counting is brought up to date: the estimate
 * of the time off is in est, provisional until the next window: a later settling falls in a
 * later cycle) and before reading the sites.
 */
void tr_sites_cycle(struct tracer *t);

/*
 * Add n exactly counted raises to the (type, at) site (bpf: the kernel counted every raise of
 * it). The first call of a sync (a new gen) drops the site's count and estimate first, so a sync
 * replaces them by the kernel's. Creates the site when new.
 */
void tr_site_add_exact(struct tracer *t, const char *type, const struct tracer_frame *at,
                       uint64_t n, uint32_t gen);

/* The frame (function, file, line) of a walked frame, through the code cache. */
void tr_frame_of(const struct pyctx *c, const struct walk_frame *wf, struct tracer_frame *out);

/* bpf: the kernel's exact per-site counts into the site table (tr_site_set_exact). */
void tr_bpf_sites(struct tracer *t);

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
void tr_prefetch_exc(struct memsrc *memo, const struct pyctx *c, uint64_t tstate,
                     uint64_t frameobj);

/*
 * Levels 3 and 4, before describing exception `value` of type `type`: the type's header, the
 * args tuple and the chained exceptions' headers; then args[0] (up to ~256 bytes of a str) and
 * the chained exceptions' types. Best effort.
 */
void tr_prefetch_desc(struct memsrc *memo, const struct pyctx *c, uint64_t value, uint64_t type);

#endif
