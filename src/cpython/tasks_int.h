/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_TASKS_INT_H
#define PYSCOPE_TASKS_INT_H

/*
 * Private to the tasks module (tasks.c: registries, task headers, selection, await graph;
 * tasks_chain.c: coroutine chains). One struct tasks_ctx per tasks_collect call.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pyscope/pyctx.h"
#include "pyscope/snap.h"
#include "pyscope/tasks.h"

/* What an object is, as far as the chain walker cares (classified by its type, cached). */
enum tasks_kind {
    TK_OTHER = 0,
    TK_TASK,       /* _asyncio.Task */
    TK_FUTURE,     /* _asyncio.Future or a Python Future subclass */
    TK_GATHER,     /* asyncio.tasks._GatheringFuture (children in _children) */
    TK_FUTUREITER, /* _asyncio.FutureIter: `await future` */
    TK_CORO,       /* coroutine */
    TK_GEN,        /* generator (yield from, @types.coroutine) */
    TK_ASYNCGEN,   /* async generator */
    TK_ASEND,      /* async_generator_asend: `async for` / `await agen.asend()` */
    TK_WEAKREF,    /* weakref.ReferenceType */
};

/* Distinct types remembered per call (a process has a handful of relevant ones). */
#define TASKS_TYPE_CACHE 64

struct tasks_type {
    uint64_t addr;
    enum tasks_kind kind;
    char name[64]; /* for awaits_type */
};

/* A future's state (enum fut_state of _asynciomodule.c, whose values are the layout's). */
enum tasks_fut {
    TASKS_FUT_UNKNOWN = -1, /* none of the layout's values: garbage or a dead task */
    TASKS_FUT_PENDING,
    TASKS_FUT_CANCELLED,
    TASKS_FUT_FINISHED,
};

/* The fields of a task read in bulk. */
struct tasks_hdr {
    uint64_t addr, type, loop, coro, name, fut_waiter;
    enum tasks_fut state; /* the task's fut_state, mapped through the layout */
    bool running;
};

/* Where a walked chain ended. */
struct tasks_chain_end {
    uint64_t obj;  /* the awaited object past the last coroutine, 0 if none */
    uint64_t type; /* its type */
    enum tasks_kind kind;
    bool executing;     /* the outermost coroutine is running (its frames are on a thread) */
    uint64_t taskgroup; /* a TaskGroup the chain waits in (its __aexit__ self), 0 if none */
};

struct tasks_ctx {
    const struct pyctx *c;
    const struct layout *lay;
    struct snap *s;
    struct snap_tasks *out;
    struct tasks_type types[TASKS_TYPE_CACHE];
    size_t ntypes;
    struct tasks_type scratch; /* a type classified while the cache is full */
    struct tasks_hdr *hdrs;    /* found tasks (malloc'ed, up to TASKS_MAX_FOUND) */
    size_t nhdrs, caphdrs;
    size_t *sel; /* indexes into hdrs of the listed tasks, in listing order */
    size_t nedges, capedges;
    struct snap_await_edge *edges; /* malloc'ed while building, copied to the arena */
};

/* Classify the type at addr (cached); *t points into the cache or a ctx scratch entry. */
int tasks_type_of(struct tasks_ctx *x, uint64_t type, const struct tasks_type **t,
                  struct ps_err *err) PS_WARN_UNUSED;

/* Classify an object by its type. */
int tasks_kind_of(struct tasks_ctx *x, uint64_t obj, const struct tasks_type **t,
                  struct ps_err *err) PS_WARN_UNUSED;

/*
 * Walk a suspended task's coroutine chain from coro: frames (innermost first) into task->frames
 * (arena), what the chain ends at into *end. A chain deeper than TASKS_MAX_CHAIN is cut and
 * flagged. Errors: read errors, -PS_ECORRUPT (torn), -ENOMEM.
 */
int tasks_chain(struct tasks_ctx *x, uint64_t coro, struct snap_task *task,
                struct tasks_chain_end *end, struct ps_err *err) PS_WARN_UNUSED;

#endif
