/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_EXC_H
#define PYSCOPE_EXC_H

/*
 * Reading exceptions out of a live or recorded CPython (CPYTHON.md section 5): the one a thread
 * is raising (tstate->current_exception; 3.11 curexc_*), the one it is handling (exc_info
 * chain), an exception's type name, message, chain and traceback. Reads go through the memory
 * source only; every chain and string is bounded. Used by the tracer at each breakpoint stop
 * and by the snapshot collector (dump).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pyscope/err.h"
#include "pyscope/pyctx.h"
#include "pyscope/snap.h"

#define EXC_TYPE_MAX 96
#define EXC_MSG_MAX  200
#define EXC_TB_MAX   64 /* traceback entries kept (the innermost ones) */
/* exc_info items followed (generators nest them; deeper chains are garbage or absurd). */
#define EXC_INFO_DEPTH 64

/* An exception in flight, as the thread state holds it (3.11 may be unnormalised). */
struct exc_raw {
    uint64_t value;     /* the exception object (3.11: curexc_value: instance, str, tuple, 0) */
    uint64_t type;      /* its type (3.11: curexc_type) */
    uint64_t traceback; /* its traceback (3.11: curexc_traceback), 0 if none */
};

struct exc_desc {
    char type[EXC_TYPE_MAX];
    char message[EXC_MSG_MAX]; /* str of args[0] when a str ("" otherwise) */
    bool has_message;
    bool message_truncated;
    char cause_type[EXC_TYPE_MAX];   /* "" when none */
    char context_type[EXC_TYPE_MAX]; /* "" when none */
};

/*
 * Type names by type address, for exc_describe_cached (the tracer describes the same few types
 * thousands of times). EXC_NAME_SLOTS entries (~15 KiB) in sets of EXC_NAME_WAYS, the least
 * recently used of a full set evicted. An entry is used only when the type's tp_name pointer and
 * the tp_flags bits a type keeps for life, re-read each time (one read, usually prefetched), match: a type freed and replaced at the same address by another is
 * re-read. Not caught: `__module__` or `__qualname__` reassigned on a live class. One thread.
 */
#define EXC_NAME_SLOTS   128
#define EXC_NAME_WAYS    4 /* slots per set: the least recently used one of a set is evicted */
#define EXC_NAME_DROPPED 4
struct exc_name_slot {
    uint64_t type; /* 0 = empty */
    uint64_t tp_name;
    uint64_t flags;
    uint64_t used; /* names->clock when last used */
    char name[EXC_TYPE_MAX];
};
struct exc_names {
    struct exc_name_slot slot[EXC_NAME_SLOTS];
    uint64_t hits, misses, clock;
    /* types whose entry another type took since the owner last set ndropped to 0 (for a mirror
     * of the cache: the bpf program's known_types); past EXC_NAME_DROPPED, not recorded */
    uint64_t dropped[EXC_NAME_DROPPED];
    size_t ndropped;
};

/* Whether names holds an entry for type (its name as last read; not re-validated). */
bool exc_names_has(const struct exc_names *names, uint64_t type);

/*
 * The exception thread state tstate is raising right now. *out is zeroed when there is none.
 * Errors: read errors, -PS_ECORRUPT.
 */
int exc_in_flight(const struct pyctx *c, uint64_t tstate, struct exc_raw *out,
                  struct ps_err *err) PS_WARN_UNUSED;

/*
 * The exception being handled by tstate (innermost except block: first exc_info item holding
 * neither NULL nor None, at most EXC_INFO_DEPTH items). *exc = 0 when none.
 */
int exc_handled(const struct pyctx *c, uint64_t tstate, uint64_t *exc,
                struct ps_err *err) PS_WARN_UNUSED;

/*
 * Describe an exception: type name (raw->type when set, else the object's type), message, and
 * the type names of __cause__ / __context__. raw->value may be an unnormalised 3.11 value (a
 * str or an args tuple). Errors: read errors, -PS_ECORRUPT (not an exception type).
 */
int exc_describe(const struct pyctx *c, const struct exc_raw *raw, struct exc_desc *out,
                 struct ps_err *err) PS_WARN_UNUSED;

/* exc_describe taking type names from names (NULL: no cache) and filling it. */
int exc_describe_cached(const struct pyctx *c, const struct exc_raw *raw, struct exc_names *names,
                        struct exc_desc *out, struct ps_err *err) PS_WARN_UNUSED;

/* The exception object's __traceback__ (0 when none or not an instance). */
int exc_traceback_of(const struct pyctx *c, uint64_t exc, uint64_t *tb,
                     struct ps_err *err) PS_WARN_UNUSED;

/*
 * Fill st->exc_current and st->exc_handled of a snapshot thread (NULL when none), with type,
 * message, chain names and traceback lines (outermost first, at most EXC_TB_MAX). Unreadable
 * parts are left out; only -ENOMEM is returned as an error.
 */
int exc_snap_thread(const struct pyctx *c, struct snap *s, struct snap_thread *st,
                    struct ps_err *err) PS_WARN_UNUSED;

#endif
