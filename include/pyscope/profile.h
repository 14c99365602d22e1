/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_PROFILE_H
#define PYSCOPE_PROFILE_H

/*
 * profile: the aggregate a sampler fills and the writers (out_profile.h) and the TUI read.
 *
 * Model: interned strings; a frame table of unique (function, file, line) triples; and a stack
 * trie per thread: every node is (parent node, frame) with its own sample count ("self"), so
 * one unique stack is one path from a thread's root node and costs one node per frame it does
 * not share with a stack seen before. Memory grows with unique stacks, never with samples.
 *
 * Ids: frames, nodes and threads are dense uint32 ids starting at 0, stable until
 * profile_reset(). A node's parent always has a smaller id than the node, so one pass over ids
 * in increasing order visits parents before children (writers and totals rely on it).
 *
 * Caps (each states what happens when reached; nothing aborts, nothing grows past them):
 *  - PROFILE_MAX_STR_BYTES of interned string text (strings are also cut at
 *    PROFILE_MAX_STR_LEN bytes): a new string past the cap interns as "[strings full]";
 *  - PROFILE_MAX_FRAMES frames: a new frame past the cap becomes the "[frames full]" frame;
 *  - PROFILE_MAX_NODES stack nodes: a sample that would need a new node is counted on a
 *    "[profile full]" node directly below its thread's root (created on first need), and in
 *    profile_stats.dropped_nodes;
 *  - PROFILE_MAX_THREADS thread roots: samples of more threads are refused (-PS_ELIMIT).
 * Worst case around 100 MiB; a real profile stays far below (a few MB for thousands of stacks).
 *
 * Threads: one owner thread; no locking. Not async-signal-safe.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pyscope/err.h"

#define PROFILE_MAX_STR_BYTES (16u << 20)
#define PROFILE_MAX_STR_LEN   1024
#define PROFILE_MAX_FRAMES    (1u << 18)
#define PROFILE_MAX_NODES     (1u << 20)
#define PROFILE_MAX_THREADS   4096
#define PROFILE_NONE          UINT32_MAX

struct profile;

/* One frame of the frame table; strings are owned by the profile. */
struct profile_frame {
    const char *function; /* qualified name ("Class.method"), never NULL */
    const char *file;     /* never NULL ("" when unknown) */
    int line;             /* -1 when unknown */
    uint32_t function_id; /* id of the (function, file) pair, for per-function totals */
};

/* One stack trie node. A thread's root node has frame == PROFILE_NONE, parent == PROFILE_NONE. */
struct profile_node {
    uint32_t parent;
    uint32_t frame;
    uint32_t thread; /* the thread root this node belongs to */
    uint32_t depth;  /* 0 for the root */
    uint64_t self;   /* samples whose innermost frame is this node */
};

/* One thread root. */
struct profile_thread {
    uint64_t thread_id; /* threading.get_ident() of the thread, or a caller-chosen key */
    pid_t native_id;    /* OS tid, 0 when unknown */
    const char *name;   /* "" when unknown; owned by the profile */
    uint32_t root;      /* its root node id */
    uint64_t samples;   /* samples counted under this root */
};

struct profile_stats {
    uint64_t samples;       /* total counted */
    uint64_t dropped_nodes; /* samples counted on "[profile full]" */
    size_t strings, string_bytes, frames, functions, nodes, threads;
    size_t memory_bytes; /* bytes allocated by the profile (tables included) */
};

/* Create an empty profile. On success *out is owned by the caller (profile_free). -ENOMEM. */
int profile_new(struct profile **out, struct ps_err *err) PS_WARN_UNUSED;

/* Free; NULL-safe. Invalidates every pointer the profile returned. */
void profile_free(struct profile *p);

/*
 * Forget everything (strings, frames, nodes, threads, counts) but keep the allocated tables, so
 * memory stays flat across resets. Bumps profile_generation(): callers caching ids (the
 * sampler) must drop them when the generation changed.
 */
void profile_reset(struct profile *p);

/* Changes on every profile_reset(). */
uint64_t profile_generation(const struct profile *p);

/*
 * Intern a frame (function, file, line); strings are copied (cut at PROFILE_MAX_STR_LEN).
 * NULL strings count as "". Always succeeds once the profile exists: past the caps the id of
 * the "[frames full]" / "[strings full]" overflow frame is returned (it counts what a cap
 * turned away). Returns the frame id.
 */
uint32_t profile_frame_intern(struct profile *p, const char *function, const char *file, int line);

/*
 * The root of thread thread_id, created on first use with native_id and name (copied; NULL =
 * ""). A later call with a non-NULL name different from the stored one renames the thread.
 * Errors: -PS_ELIMIT past PROFILE_MAX_THREADS threads, -ENOMEM.
 */
int profile_thread(struct profile *p, uint64_t thread_id, pid_t native_id, const char *name,
                   uint32_t *thread, struct ps_err *err) PS_WARN_UNUSED;

/*
 * Count `count` samples of the stack frames[0..n) (OUTERMOST first) under thread root `thread`
 * (an id from profile_thread). *leaf (optional) gets the innermost node id, which the caller
 * may pass to profile_add_node() while it knows the stack unchanged. A stack that needs a node
 * past the cap is counted on the thread's "[profile full]" node (see above). n == 0 counts on
 * the root itself. Never fails for valid ids; invalid ids are ignored (returns PROFILE_NONE).
 */
uint32_t profile_add(struct profile *p, uint32_t thread, const uint32_t *frames, size_t n,
                     uint64_t count);

/*
 * Like profile_add, continuing below an existing node: counts the stack whose outer frames are
 * node's own path, followed by frames[0..n) (outermost first), under node's thread. For a caller
 * that knows the node of a prefix shared with an earlier stack (the sampler). Returns the leaf;
 * PROFILE_NONE (nothing counted) for an invalid node.
 */
uint32_t profile_add_below(struct profile *p, uint32_t node, const uint32_t *frames, size_t n,
                           uint64_t count);

/* Count `count` more samples on an existing node (the "stack unchanged" fast path). */
void profile_add_node(struct profile *p, uint32_t node, uint64_t count);

/* Accessors. Out-of-range ids return NULL. Pointers are valid until the next call that adds or
 * resets. */
size_t profile_nframes(const struct profile *p);
const struct profile_frame *profile_frame_get(const struct profile *p, uint32_t frame);
size_t profile_nnodes(const struct profile *p);
const struct profile_node *profile_node_get(const struct profile *p, uint32_t node);
size_t profile_nthreads(const struct profile *p);
const struct profile_thread *profile_thread_get(const struct profile *p, uint32_t thread);

/*
 * The frames of node's stack, OUTERMOST first: the outermost min(depth, cap) frames are
 * stored in out; returns the full depth (the root itself contributes no frame).
 */
size_t profile_stack(const struct profile *p, uint32_t node, uint32_t *out, size_t cap);

void profile_stats_get(const struct profile *p, struct profile_stats *out);

/*
 * Inclusive sample counts of every node (self plus descendants) into totals[0..nnodes), which
 * the caller allocates with profile_nnodes() entries. O(nodes).
 */
void profile_node_totals(const struct profile *p, uint64_t *totals);

/*
 * A new profile with every thread's stacks merged under one root (thread_id 0, named
 * "all threads"): what collapsed and flamegraph output show without --threads. *out is owned
 * by the caller. Errors: -ENOMEM.
 */
int profile_merge_threads(const struct profile *src, struct profile **out,
                          struct ps_err *err) PS_WARN_UNUSED;

/* The "top" view: one row per function or per line. */
enum profile_top_by {
    PROFILE_TOP_FUNCTION, /* rows keyed by (function, file); line of the row = -1 */
    PROFILE_TOP_LINE,     /* rows keyed by frame (function, file, line) */
};

enum profile_top_sort {
    PROFILE_SORT_OWN,
    PROFILE_SORT_TOTAL,
};

struct profile_top_row {
    uint32_t frame; /* a frame of the row (for PROFILE_TOP_FUNCTION: one of its lines) */
    int line;       /* -1 for PROFILE_TOP_FUNCTION */
    uint64_t own;   /* samples with this function/line innermost */
    uint64_t total; /* samples with it anywhere on the stack (recursion counted once) */
};

/*
 * Compute the top view into rows (cap entries, sorted by `sort` descending, ties by frame id),
 * over one thread root (thread id) or all (PROFILE_NONE). *n gets the number of rows stored
 * (at most cap; the rest are the smaller ones). *samples (optional) gets the samples counted in
 * the scope. O(nodes + rows log rows); allocates scratch (freed before return).
 * Errors: -ENOMEM.
 */
int profile_top(const struct profile *p, enum profile_top_by by, enum profile_top_sort sort,
                uint32_t thread, struct profile_top_row *rows, size_t cap, size_t *n,
                uint64_t *samples, struct ps_err *err) PS_WARN_UNUSED;

#endif
