/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_OUTQ_H
#define PYSCOPE_OUTQ_H

/*
 * A bounded, non-blocking output queue for modes that hold the target under ptrace while they
 * print (`pyscope exceptions`): if whoever reads pyscope's output stops reading (a paused pager,
 * a full pipe), a blocking write would stall pyscope's event loop while a raising thread sits
 * stopped at a breakpoint. Records are formatted into a scratch buffer, queued (up to a cap) and
 * written only as far as the descriptor accepts without blocking; a record that does not fit is
 * dropped and counted, never waited for. When tracing has ended, outq_finish writes the rest
 * blocking.
 *
 * For a pipe, terminal or socket the queue writes through its own open file description
 * (/proc/self/fd/N reopened with O_NONBLOCK), so the shell's description of the terminal is
 * never left non-blocking. Regular files never block for long and are written directly.
 * One thread.
 */

#include <stdint.h>
#include <stdio.h>

#include "pyscope/err.h"

#define OUTQ_DEFAULT_CAP (8u << 20)  /* 8 MiB of output backlog before records are dropped */
#define OUTQ_RECORD_MAX  (64u << 10) /* longest record (a JSON line with a deep stack) */

struct outq;

/*
 * Queue for descriptor fd (usually 1) with at most cap bytes pending. Errors: -ENOMEM. Takes
 * no ownership of fd.
 */
int outq_open(int fd, size_t cap, struct outq **out, struct ps_err *err) PS_WARN_UNUSED;

/* A stream to format one record into (valid until outq_commit); NULL if unusable. */
FILE *outq_begin(struct outq *q);

/* Queue the record formatted since outq_begin (dropped and counted when it does not fit or was
 * cut at OUTQ_RECORD_MAX). It is written by the next outq_drain (call it at the end of each
 * batch of records), or here already when more than half the queue is taken. */
void outq_commit(struct outq *q);

/* Write what the descriptor accepts now, without blocking. Returns -EPIPE when the reader is
 * gone (so the caller can end), else 0. */
int outq_drain(struct outq *q);

/* Write everything still queued, blocking (only once nothing is held stopped). -errno. */
int outq_finish(struct outq *q, struct ps_err *err) PS_WARN_UNUSED;

/* Records dropped because the reader was too slow. */
uint64_t outq_dropped(const struct outq *q);

/* Free; NULL-safe; does not close fd. */
void outq_close(struct outq *q);

#endif
