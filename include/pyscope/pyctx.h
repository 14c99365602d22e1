/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_PYCTX_H
#define PYSCOPE_PYCTX_H

/*
 * The reader context: everything a reader of CPython structures (pyobj, code, walk, exc, tasks,
 * locals) needs, passed to it on every call. A reader keeps no handle of its own and never
 * changes the context it is given; a caller that wants the reads of one step to go elsewhere
 * (the tracer's per-stop memo, a recording wrapper) copies the context on its stack with that
 * source and passes the copy. pyproc_ctx (pyproc.h) makes the context of an opened process.
 *
 * Every pointer is borrowed: the context owns nothing and is valid as long as what it points
 * to (usually the pyproc it came from).
 */

#include "pyscope/layout.h"
#include "pyscope/locate.h"
#include "pyscope/memsrc.h"

struct code_cache; /* code.h */
struct tidmap;     /* tidmap.h */

struct pyctx {
    struct memsrc *src;             /* where every read goes */
    const struct layout *lay;       /* the target's version table (merged with its debug offsets) */
    const struct locate_syms *syms; /* the runtime's and the static types' addresses */
    struct code_cache *codes;       /* code objects by address; NULL: readers that resolve code
                                       (walk's callers, exc's tracebacks, tasks) must not be used */
    struct tidmap *tids;            /* the target's thread ids -> ours; NULL: the same ids */
};

#endif
