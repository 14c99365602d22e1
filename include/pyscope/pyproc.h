/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_PYPROC_H
#define PYSCOPE_PYPROC_H

/*
 * A Python process opened for reading: memory source, maps, the located runtime, the layout
 * table for its version (validated), and the code cache. Opening never stops or traces the
 * target; it only reads /proc and memory. One owner thread.
 *
 * Validation at open (CPYTHON.md section 8), failing loudly with the check's name: a layout
 * exists for Py_Version; the .PyRuntime section size equals the table's sizeof(_PyRuntimeState)
 * (a mismatch is a warning: another patch release; the object checks below must then pass);
 * interpreters.main is on the interpreter list; every thread state of the main interpreter
 * points back at it; the GIL fields are plausible.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "pyscope/code.h"
#include "pyscope/err.h"
#include "pyscope/layout.h"
#include "pyscope/locate.h"
#include "pyscope/maps.h"
#include "pyscope/memsrc.h"
#include "pyscope/pyobj.h"

struct pyproc {
    pid_t pid;
    struct memsrc *src;          /* owned */
    struct maps maps;            /* owned */
    struct locate_info loc;
    const struct layout *lay;    /* static table */
    struct pyctx ctx;            /* borrows src, lay, loc.syms */
    struct code_cache *codes;    /* owned */
    char warning[512];           /* non-fatal validation note ("" if none) */
};

/*
 * Open live process pid. On success *out is owned by the caller (pyproc_close). Errors, each
 * with one actionable sentence: -ESRCH (no such process), -PS_EPERM (diagnosed: capability,
 * ptrace_scope, uid, seccomp, tracer), -PS_ENOTPYTHON, -PS_EVERSION (names the version found and
 * the supported ones), -PS_ECORRUPT (layout validation failed, naming the check), -PS_EGONE.
 */
int pyproc_open(pid_t pid, struct pyproc **out, struct ps_err *err) PS_WARN_UNUSED;

/* Close and free; NULL-safe. */
void pyproc_close(struct pyproc *pp);

/*
 * Validate the runtime's structures against the layout (called by pyproc_open; exported for
 * tests with fixture sources). Returns 0 or -PS_ECORRUPT naming the failed check.
 */
int pyproc_validate(struct pyproc *pp, struct ps_err *err) PS_WARN_UNUSED;

#endif
