/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_SAMPLER_H
#define PYSCOPE_SAMPLER_H

/*
 * sampler: timer-driven stack samples of a live Python process, aggregated into a profile
 * (profile.h). Two ways to drive it:
 *  - inside the caller's evloop (the TUI): a timer armed at sampler_due() that calls
 *    sampler_tick() and re-arms at the new sampler_due() (or call sampler_sample_once()
 *    whenever you like);
 *  - sampler_run(): a blocking loop for the CLI, an evloop of its own (the stop signals, the
 *    target's pidfd, the tick timer: one ppoll per tick with the next tick's due time as its
 *    timeout), ending at the duration, on SIGINT/SIGTERM/SIGHUP/SIGQUIT, or when the target
 *    exits, always with a complete profile.
 *
 * One tick: one scatter read of the "where is the top frame" words and the GIL of every
 * followed thread that is not busy (the probe); threads whose top frame and instruction are
 * unchanged since their last sample reuse that sample's stack node (no walk, no resolve: the
 * parked-thread fast path); the others are walked (walk_stack), checked for tearing, and
 * resolved through a location cache (code address + header fingerprint + code unit -> frame
 * id) and a per-thread prefix cache (outer frames unchanged since the thread's previous walk
 * keep their ids and trie path, so a stack that changed near the top costs a few lookups).
 * A thread whose stack keeps changing is "busy": it skips the probe and is walked at once,
 * its GIL words riding on the walk's own scatter read (walk_stack co-reads); after
 * SAMPLER_STILL_MAX unchanged walks, or when found idle, it goes back to the probe. The
 * tearing check is free when the walk's single read confirmed its top (walk.h,
 * top_confirmed), else one more read. A warm busy tick is then one process_vm_readv.
 * Threads are re-listed (walk_tstates) every SAMPLER_RELIST_MS, at once when a probe or walk
 * fails, and within the tick when an interpreter's thread-list words (next_unique_id, head,
 * count; read with the GIL words) changed, so that a new thread is counted from its first
 * tick and an ended one never after; thread names are read at the re-list only. A thread is
 * known by (thread state, ident, native id): a thread state or ident reused by a new thread
 * starts a new profile root. A thread state not yet bound to a thread (ident 0) is skipped.
 *
 * Idle: a thread is "active" when it holds its interpreter's GIL (read every tick, every version),
 * or on 3.12+ when its thread state's _status "active" bit is set at the last re-list. A thread
 * running native code with the GIL released counts as idle (no /proc read on the hot path);
 * sample those with idle = true. With gil_only, only the GIL holder is sampled.
 *
 * Unchanged reuse: a thread whose (cframe, top frame, top frame's instruction pointer) match
 * its previous sample is assumed to have the same stack. A thread that returned and re-entered
 * the same frame address at the same instruction between two ticks is misattributed to its
 * previous callers until its next full walk: every thread gets a full walk at least at every
 * re-list, which bounds that error to SAMPLER_RELIST_MS.
 *
 * Blocking mode: every tick seizes and interrupts the target's threads (target.h), samples,
 * and detaches before returning, on every path. Never leaves the target stopped or traced.
 *
 * Memory: fixed after sampler_new (thread table of WALK_MAX_THREADS entries, one walk buffer,
 * a location cache of SAMPLER_LOC_CACHE entries that is cleared when full, a prefix cache of
 * 8 threads x 512 frames) plus the profile's own caps. One owner thread; not async-signal-safe.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pyscope/err.h"
#include "pyscope/profile.h"
#include "pyscope/pyproc.h"

struct evloop_clock; /* evloop.h */

#define SAMPLER_DEFAULT_RATE 100
#define SAMPLER_MAX_RATE     20000
/* Re-list threads (and refresh names, status bits) this often. */
#define SAMPLER_RELIST_MS 100
/* Location cache entries (code addr, fingerprint, unit) -> frame id; cleared when full. */
#define SAMPLER_LOC_CACHE (1u << 16)
/* Timer jitter: each interval is drawn uniformly in [1 - J, 1 + J] x the period. */
#define SAMPLER_JITTER 0.1

enum sampler_state {
    SAMPLER_ACTIVE, /* holds the GIL (or 3.12+ attached) */
    SAMPLER_IDLE,
};

/* One emitted sample, for raw-sample writers (out_samples_*). Borrowed for the callback. */
struct sampler_sample {
    double time;     /* seconds since sampler_new (CLOCK_MONOTONIC) */
    double wall;     /* CLOCK_REALTIME seconds */
    pid_t pid;       /* the sampled process */
    uint64_t ident;  /* the thread's threading.get_ident() */
    pid_t native_id; /* its OS tid (0 when unknown) */
    uint32_t thread; /* profile thread id (profile_thread_get; its thread_id is a key that
                           mixes ident, native id and, with a process frame, pid) */
    uint32_t node;   /* profile leaf node (profile_stack) */
    enum sampler_state state;
    bool gil; /* holds its interpreter's GIL */
};

typedef void (*sampler_sample_fn)(void *arg, const struct profile *p,
                                  const struct sampler_sample *s);

struct sampler_stats;
typedef void (*sampler_status_fn)(void *arg, const struct sampler_stats *st);
/* Called by sampler_run after every tick; a negative return ends the run with that error. */
typedef int (*sampler_tick_fn)(void *arg, struct ps_err *err);

struct sampler_opts {
    double rate_hz;        /* 1..SAMPLER_MAX_RATE; 0 = SAMPLER_DEFAULT_RATE */
    double duration_s;     /* sampler_run: stop after this many seconds; 0 = until a signal */
    bool idle;             /* also sample idle threads */
    bool gil_only;         /* only the GIL holder */
    bool blocking;         /* stop the threads for each sample */
    bool native;           /* merge each stack with its C frames (libunwind, native.h); needs
                              blocking (-EINVAL otherwise) */
    bool tasks;            /* root each stack at the asyncio task running it ("task: NAME",
                              between the thread and its frames); the task map is rebuilt at
                              every re-list (at most SAMPLER_TASKS_MAX 1024 tasks) */
    const char *thread;    /* only threads whose name or id (native or ident) equals this */
    pid_t forward_signals; /* sampler_run: the first SIGINT/SIGTERM/SIGHUP sent to pyscope by a
                              process (not the terminal's) is passed to this pid instead of
                              stopping; the next one stops. 0 = none. Never reaped here. */
    sampler_sample_fn on_sample; /* optional: every emitted sample */
    void *sample_arg;
    sampler_status_fn on_status; /* optional: called by sampler_run about 4 times a second */
    void *status_arg;
    sampler_tick_fn on_tick; /* optional: called by sampler_run after every tick */
    void *tick_arg;
    /* Optional (copied): a frame of this name is the outermost frame of every stack, and thread
     * keys are mixed with the pid, so that several processes can share one profile (one root
     * per process). NULL = none. */
    const char *process_frame;
    /* With pp NULL (sampler_new): the process a clock-only sampler runs for (required). */
    pid_t clock_pid;
    /* Optional: the clock (evloop.h; NULL = the real one), borrowed for the sampler's life: a
     * test's virtual clock, or the clock of the loop the sampler is plugged into. Tick times, the
     * re-list period, sample times and the stats read it, and so does sampler_run's evloop
     * (which then never waits in real time for a tick: it polls, and time moves as the clock
     * says). */
    const struct evloop_clock *clock;
};

enum sampler_end {
    SAMPLER_END_NONE,
    SAMPLER_END_DURATION, /* the duration elapsed */
    SAMPLER_END_SIGNAL,   /* SIGINT/SIGTERM/SIGHUP */
    SAMPLER_END_EXITED,   /* the target exited */
};

struct sampler_stats {
    uint64_t ticks;        /* ticks taken (sampler_tick, sample_once, sampler_run) */
    uint64_t missed_ticks; /* timer expirations that fell behind and were skipped */
    uint64_t samples;      /* thread stacks counted into the profile */
    uint64_t reused;       /* of which reused an unchanged stack */
    uint64_t idle_skipped; /* thread-ticks skipped as idle (or not the GIL holder) */
    uint64_t torn;         /* stacks that moved while read (not counted) */
    uint64_t errors;       /* failed reads/walks (not counted) */
    uint64_t relists;      /* thread re-listings */
    uint64_t threads;      /* threads followed at the last re-list */
    double elapsed;        /* seconds since sampler_new */
    double rate;           /* ticks per second achieved over elapsed */
    double tick_max_us;    /* slowest tick */
    double tick_total_us;  /* time spent inside ticks */
    enum sampler_end end;  /* why sampler_run returned */
};

struct sampler;

/*
 * Create a sampler for pp (borrowed: must outlive the sampler), filling profile p (borrowed,
 * may be shared with the TUI). Sets the first tick's due time but takes no sample. Copies opts
 * (opts->thread is copied too). pp NULL makes a clock-only sampler for process
 * opts->clock_pid, which is not Python (a shell or supervisor recorded with --subprocesses):
 * its ticks read nothing and count nothing but still call opts->on_tick, and sampler_run ends
 * when that process exits. Errors: -EINVAL (rate out of range, no process), -ENOMEM.
 */
int sampler_new(struct pyproc *pp, struct profile *p, const struct sampler_opts *opts,
                struct sampler **out, struct ps_err *err) PS_WARN_UNUSED;

/* Free; NULL-safe. Never leaves the target stopped or traced. */
void sampler_free(struct sampler *s);

/* When the next tick is due, in seconds on the sampler's clock (evloop_now without opts.clock):
 * what a caller's evloop timer is armed at. */
double sampler_due(const struct sampler *s);

/*
 * The tick a caller's timer fires for: take one sample, then move sampler_due a jittered
 * period on (ticks that fell behind count as missed, never made up in a burst). Errors: -PS_EGONE when the target exited (the profile stays complete), -PS_EPERM
 * (blocking mode could not stop the target), -ENOMEM. Torn or failed thread reads are counted
 * in the stats, not errors.
 */
int sampler_tick(struct sampler *s, struct ps_err *err) PS_WARN_UNUSED;

/* Take one sample now, regardless of the timer. Same errors as sampler_tick. */
int sampler_sample_once(struct sampler *s, struct ps_err *err) PS_WARN_UNUSED;

/*
 * Blocking loop: tick at the rate until the duration, a signal (SIGINT/SIGTERM/SIGHUP/SIGQUIT,
 * blocked and read through the evloop's signalfd during the call, the mask restored after), or
 * the target's exit (pidfd, or a walk reporting it gone). Returns 0 with stats->end set, or
 * an error from sampler_tick other than -PS_EGONE. Calls opts.on_status periodically and once
 * at the end.
 */
int sampler_run(struct sampler *s, struct ps_err *err) PS_WARN_UNUSED;

/*
 * The share of stacks lost (torn + failed, of all the sampler tried to count) in words, into
 * buf: "no samples lost", "3.1% of samples lost: stacks changed while read", "... : reads
 * failed", or both causes with their counts. For status lines and headers: never a bare count.
 */
void sampler_lost_words(const struct sampler_stats *st, char *buf, size_t cap);

/* Statistics so far (elapsed and rate computed now). */
void sampler_stats_get(const struct sampler *s, struct sampler_stats *out);

/* Change the rate (1..SAMPLER_MAX_RATE) from the next tick on. -EINVAL when out of range. */
int sampler_set_rate(struct sampler *s, double rate_hz, struct ps_err *err) PS_WARN_UNUSED;

#endif
