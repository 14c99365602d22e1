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
 *
 * 3.13+: the target's own _Py_DebugOffsets are read and preferred over the table (debugoffsets.h);
 * disagreements become the warning. A newer minor without a table opens with its debug offsets
 * plus the nearest older table, with a warning naming what was assumed; without readable debug
 * offsets it is -PS_EVERSION.
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
#include "pyscope/pyctx.h"
#include "pyscope/tidmap.h"

struct pyproc {
    pid_t pid;
    struct memsrc *src; /* owned */
    struct maps maps;   /* owned */
    struct locate_info loc;
    /* = &lay_own: the table, merged with the target's _Py_DebugOffsets (3.13+) */
    const struct layout *lay;
    const struct layout *table; /* the static generated table lay_own started from */
    bool table_standin;         /* no table for this minor: table is the nearest older one */
    struct layout lay_own;
    struct code_cache *codes; /* owned */
    char warning[512];        /* non-fatal validation note ("" if none) */
    uint64_t start_ticks;     /* the process's start time, 0 if unknown (detects pid reuse) */
    struct tidmap tids;       /* owned: the target's thread ids -> ours */
};

/*
 * The reader context of pp (pyctx.h): its memory source, layout, symbols, code cache and thread
 * id map, borrowed. A caller whose reads of one step go elsewhere (a per-stop memo) overrides
 * .src in its copy; pp is never changed. Valid until pyproc_close or pyproc_record.
 */
struct pyctx pyproc_ctx(struct pyproc *pp);

/*
 * Open live process pid. On success *out is owned by the caller (pyproc_close). Errors, each
 * with one actionable sentence: -ESRCH (no such process), -PS_EPERM (diagnosed: capability,
 * ptrace_scope, uid, seccomp, tracer), -PS_ENOTPYTHON, -PS_EVERSION (names the version found and
 * the supported ones), -PS_ECORRUPT (layout validation failed, naming the check), -PS_EGONE.
 */
int pyproc_open(pid_t pid, struct pyproc **out, struct ps_err *err) PS_WARN_UNUSED;

/*
 * Open a process image served by any memory source (a replayed fixture, later a core file):
 * no /proc access at all; pid is src->pid (0 for fixtures, which makes the collector skip
 * /proc). Takes ownership of src on success (on failure the caller keeps it). loc is copied.
 * Errors: -PS_EVERSION, -PS_ECORRUPT (validation), read errors, -ENOMEM.
 */
int pyproc_open_source(struct memsrc *src, const struct locate_info *loc, struct pyproc **out,
                       struct ps_err *err) PS_WARN_UNUSED;

/*
 * Start recording every later read into a fixture file at path (memsrc record wrapper) and
 * write path + ".meta" (the locate facts, see pyproc_meta_read) now; validation reads are
 * replayed once so that the fixture can be reopened with pyproc_open_source. The fixture is
 * complete when pyproc_close returns. For bug reports and unit tests. Errors: -errno writing.
 * Call it right after opening, before any component (collector, sampler, tracer, growth) takes
 * pp's context: a context made earlier still reads through the unrecorded source.
 */
int pyproc_record(struct pyproc *pp, const char *path, struct ps_err *err) PS_WARN_UNUSED;

/*
 * Read a ".meta" file written by pyproc_record into *loc (version, symbol addresses, paths).
 * Errors: -ENOENT, -PS_EFORMAT naming the line.
 */
int pyproc_meta_read(const char *path, struct locate_info *loc, struct ps_err *err) PS_WARN_UNUSED;

/*
 * Is the live process still the one that was opened? process_vm_readv names its target by pid,
 * so after the target exits a new process with the same pid would be read instead: compare the
 * start time recorded at open. Returns 0 when it is the same process (or not live), -PS_EGONE
 * with a sentence when it exited or the pid was reused. One /proc read.
 */
int pyproc_check_alive(const struct pyproc *pp, struct ps_err *err) PS_WARN_UNUSED;

/* Close and free; NULL-safe. */
void pyproc_close(struct pyproc *pp);

/*
 * Validate the runtime's structures against the layout, one read of them (exported for tests
 * with fixture sources). pyproc_open, whose target runs while read, retries an inconsistency a
 * few times over about 130 ms (a thread ending or preempted mid-update is not a wrong table).
 * Returns 0 or -PS_ECORRUPT naming the failed check.
 */
int pyproc_validate(struct pyproc *pp, struct ps_err *err) PS_WARN_UNUSED;

#endif
