/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_TRACER_INT_H
#define PYSCOPE_TRACER_INT_H

/*
 * Private to src/tracer*.c: the per-stop memo source that lets the unchanged readers (walk.c,
 * exc.c, pyobj.c, code.c) run a breakpoint stop in a handful of scatter reads.
 */

#include <stddef.h>
#include <stdint.h>

#include "pyscope/err.h"
#include "pyscope/memsrc.h"
#include "pyscope/pyproc.h"

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
