/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_SAMPLER_INT_H
#define PYSCOPE_SAMPLER_INT_H

/*
 * Private to the sampler: its state, shared by src/sample/sampler.c (one tick: probe, walk, resolve,
 * count) and src/sample/sampler_loop.c (timer, sampler_run's event loop, statistics).
 */

#include "pyscope/sampler.h"
#include "pyscope/walk.h"

#define SAMPLER_THREAD_FILTER_MAX 256
#define SAMPLER_NAME_MAX          256
/* Thread names are read again every this many re-lists (a new thread is named at once). */
#define SAMPLER_NAME_EVERY 10
/* A busy thread whose walks found its stack unchanged this many ticks in a row goes back to the
 * shared probe (cheaper for a thread that stopped moving). */
#define SAMPLER_STILL_MAX 8

/* Most bytes of a thread state the probe reads as one range (status word + frame holder). */
#define SAMPLER_TSPAN 64

/* One followed thread. */
struct sthread {
    struct walk_tstate ts;
    uint32_t pthread;   /* profile thread id, PROFILE_NONE until first counted */
    uint32_t base_node; /* where its stacks start: its root, or the process frame below it */
    bool wanted;        /* passes the --thread filter */
    bool named;         /* its name was read at least once */
    bool unbound;       /* a copy of an older thread state's ids: not started yet (3.11) */
    bool has_prev;      /* prev_* describe its last counted sample */
    bool full_walk_due; /* next sample must walk (set at every re-list) */
    bool busy;          /* its stack kept changing: walked at once, its probe words riding on
                           the walk's read (no separate probe) */
    uint32_t still;     /* consecutive unchanged walks while busy (SAMPLER_STILL_MAX: not busy) */
    uint64_t prev_cframe, prev_frame, prev_instr;
    uint32_t prev_node;
    /* probe results of the current tick */
    bool probe_ok;
    bool tspan; /* status and frame holder were read as one range into tblk */
    uint8_t tblk[SAMPLER_TSPAN];
    uint32_t status;
    uint64_t cframe, frame, instr;
    char name[SAMPLER_NAME_MAX];
};

struct loc_slot {
    uint64_t code, fp, unit; /* unit + 1; 0 = empty */
    uint32_t frame;
};

/*
 * Prefix cache: the last counted walk of up to SAMPLER_PREFIX_SLOTS threads (direct-mapped by
 * thread-state address; a collision just costs a full resolution), SAMPLER_PREFIX_DEPTH frames
 * at most (deeper stacks are resolved in full). The outer frames a new walk shares with it
 * (same frame address, code object, header fingerprint and code unit) reuse its frame ids and
 * its trie path: a busy thread whose stack changed only near the top resolves only those
 * frames. Cleared with the location cache.
 */
#define SAMPLER_PREFIX_SLOTS 8
#define SAMPLER_PREFIX_DEPTH 512

struct pfx_frame {
    uint64_t frame, code, fp, unit;
    uint32_t id;
};

struct sprefix {
    uint64_t tstate;
    uint32_t pthread, leaf;
    size_t n; /* 0 = empty */
    struct pfx_frame f[SAMPLER_PREFIX_DEPTH];
};

/* The GIL's last_holder and locked words are read as one range of at most this many bytes. */
#define SAMPLER_GIL_SPAN 32

/* An interpreter's thread-list words (next_unique_id, head, count) are read as one range of at
 * most this many bytes. */
#define SAMPLER_TLIST_SPAN 48

struct sinterp {
    uint64_t addr, gil;
    int32_t locked;
    uint64_t holder;
    uint8_t words[SAMPLER_GIL_SPAN]; /* the range read, parsed into locked/holder */
    /* Thread list: a thread was created (next_unique_id, head) or ended (count, head) since
     * the last tick when these words change, and the threads are re-listed at once. */
    uint8_t tlist[SAMPLER_TLIST_SPAN];
    bool tlist_read;  /* tlist was read this tick */
    bool tlist_known; /* tlist_prev holds the words of an earlier tick */
    uint8_t tlist_prev[SAMPLER_TLIST_SPAN];
};

/* --tasks: asyncio tasks remembered per re-list (coroutine address -> name), sorted by coro. */
#define SAMPLER_TASKS_MAX 1024 /* <= MEMSRC_MAX_IOV: one scatter read */

struct stask {
    uint64_t coro;
    char name[SAMPLER_NAME_MAX]; /* "task: NAME" */
};

struct sampler {
    struct pyproc *pp; /* NULL: a clock-only sampler (sampler.h) */
    struct pyctx cx;   /* the readers' context of the tick in progress (pyproc_ctx of pp) */
    pid_t pid;         /* the process ticked for: pp's, or opts.clock_pid */
    struct profile *prof;
    struct sampler_opts opts;
    char thread_filter[SAMPLER_THREAD_FILTER_MAX];
    char process_frame[SAMPLER_NAME_MAX]; /* "" = none */
    double period;                        /* seconds */
    double next_due;                      /* the sampler's clock (sampler_clock) at the next tick */
    double t0, last_relist;
    uint64_t rng;
    uint64_t generation; /* profile generation the caches belong to */
    uint64_t nrelist;
    struct sthread *threads; /* WALK_MAX_THREADS */
    size_t nthreads;
    struct sthread *old; /* scratch for re-lists */
    struct walk_tstate *ts;
    struct sinterp interps[WALK_MAX_INTERPS];
    size_t ninterps;
    struct walk_interp *winterps;
    bool relist_now;
    bool tlist_moved; /* an interpreter's thread list changed: re-list within this tick */
    uint64_t threading_active;
    struct walk_stack st;
    struct walk_stack st_prev; /* the previous attempt's walk of a thread whose stack moved */
    uint32_t *ids;             /* WALK_MAX_DEPTH + 1 frame ids, outermost first */
    struct loc_slot *loc;
    size_t nloc;
    struct sprefix *pfx; /* SAMPLER_PREFIX_SLOTS */
    uint32_t truncated_frame;
    struct sampler_stats stats;
    struct stask *tasks; /* SAMPLER_TASKS_MAX when opts.tasks, else NULL */
    size_t ntasks;
    struct snative *native; /* opts.native, else NULL (sampler_native.c) */
};

/* --native (sampler_native.c): open the unwinder (-ENOMEM, -PS_ELIMIT); close (NULL-safe). */
struct snative;
int sampler_native_open(struct sampler *s, struct ps_err *err) PS_WARN_UNUSED;
void sampler_native_close(struct sampler *s);

/* --native: the stack of stopped thread t as frame ids, outermost first: its C frames, with each
 * evaluation call replaced by the Python frames it runs (s->ids[0..n), the resolved walk). When
 * the unwind fails or the counts disagree, the Python stack alone (s->ids). *n is updated. */
const uint32_t *sampler_native_stack(struct sampler *s, const struct sthread *t, size_t *n);

/* --tasks (sampler_tasks.c): rebuild the coroutine -> task name map (at a re-list). A target
 * without asyncio, or whose registries cannot be read, just gets an empty map. Errors:
 * -ENOMEM, -PS_EGONE. */
int sampler_tasks_refresh(struct sampler *s, struct ps_err *err) PS_WARN_UNUSED;

/* --tasks: the node the walked stack s->st of t is counted under: a "task: NAME" node below
 * t->base_node when one of its coroutine frames is a known task's, else t->base_node. */
uint32_t sampler_tasks_base(struct sampler *s, const struct sthread *t);

/*
 * Did the thread, between the walk `old` and the walk `cur`, only go on inside old's stack?
 * True when every frame of old is in cur, at the same depth from the outermost: same address,
 * code object and header, and below old's top the same code unit (a caller's unit is its call
 * instruction, so an unchanged one means it was still in that call). Two independent reads then
 * agree that old's frames were all live, in that order: old is a stack the thread really had,
 * even though its top moved while each walk was read (the torn-read rescue of sampler.c).
 */
bool sampler_grew_from(const struct walk_stack *old, const struct walk_stack *cur);

/* CLOCK_MONOTONIC and CLOCK_REALTIME in seconds. */

/* The sampler's clock: evloop_clock_read(opts.clock). */
double sampler_clock(const struct sampler *s);

#endif
