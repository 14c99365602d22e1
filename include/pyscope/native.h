/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_NATIVE_H
#define PYSCOPE_NATIVE_H

/*
 * Native (C) stacks: unwinding a thread with libunwind (ptrace accessors for a live target,
 * core-file accessors for a core), symbolizing each pc through the mapped ELF images (symtab.h's
 * address index: .symtab, .dynsym, .gnu_debugdata, build-id debug files), decoding the
 * instruction at each pc with capstone (-v), and merging the thread's Python frames into the C
 * stack where the interpreter's evaluation function runs.
 *
 * Merge rule: every C-level entry into the eval loop runs one _PyEval_EvalFrameDefault call,
 * which runs a run of Python frames ending (outermost) at a frame flagged is_entry (3.11:
 * frame->is_entry; 3.12+: the frame above a C-stack shim). The k-th eval frame of the C stack
 * (innermost first) owns the k-th run of the Python stack (innermost first). When the counts
 * disagree (a thread stopped inside the eval prologue, a truncated stack) the thread gets a
 * native_error and no python_frame links; the Python stack is shown unmerged.
 *
 * Safety: a live thread is unwound only while stopped by target.h (seized, in a ptrace stop);
 * reading its registers and stack never changes it. Images are opened read-only.
 *
 * Bounds: NATIVE_MAX_DEPTH frames per thread (deeper stacks keep the innermost, with a
 * native_error), NATIVE_MAX_IMAGES opened images per context (least recently used evicted; a
 * file that cannot be opened is cached as a miss). One thread uses a context at a time; the
 * live unwinder must run on the thread that seized the target (ptrace's rule).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pyscope/err.h"
#include "pyscope/maps.h"
#include "pyscope/memsrc.h"
#include "pyscope/snap.h"

#define NATIVE_MAX_DEPTH  512
#define NATIVE_MAX_IMAGES 64
/* Thread states of nested interpreters merged on one OS thread (deeper nesting: a mismatch). */
#define NATIVE_MAX_NEST 16

struct native_ctx; /* opaque */

struct native_opts {
    bool disasm;           /* decode the instruction at each pc (-v) */
    const char *file_root; /* prefix to open the mapped files: "/proc/PID/root" live, the
                              --lib-search-root for a core, NULL for none */
    const char *debug_dir; /* separate debug files (.build-id/xx/...), NULL: /usr/lib/debug */
    const char *exe_file;  /* core: the file to open for the recorded executable (--exe),
                              NULL: as recorded (under file_root) */
};

/*
 * Context for a live process: maps and src are borrowed and must outlive the context (src is
 * read for instruction bytes of anonymous code). opts is copied, strings included.
 * Errors: -ENOMEM, -PS_ELIMIT (libunwind cannot create an address space).
 */
int native_open_live(pid_t pid, const struct maps *maps, struct memsrc *src,
                     const struct native_opts *opts, struct native_ctx **out,
                     struct ps_err *err) PS_WARN_UNUSED;

/*
 * Context for an ELF core file opened by core.h: core (its maps and thread registers) and src
 * (the core's memory source, now usually pp->src) are borrowed and must outlive the context.
 * Unwind tables are read through src from the mapped files, opened as opts->exe_file for the
 * executable and opts->file_root + the recorded path for the others: every one must exist,
 * else -ENOENT with a sentence naming the first missing file. x86-64 only (-PS_EFORMAT
 * elsewhere). Errors: -ENOMEM, -PS_ELIMIT.
 */
struct core;
int native_open_core(const struct core *core, struct memsrc *src, const struct native_opts *opts,
                     struct native_ctx **out, struct ps_err *err) PS_WARN_UNUSED;

/* Close; NULL-safe. */
void native_close(struct native_ctx *ctx);

/*
 * Unwind thread tid (live: stopped and seized by the calling thread; core: a thread of the core)
 * into pcs[0..cap), innermost first; *n gets the count. A stack deeper than cap is cut with
 * -PS_ELIMIT after filling pcs; an unwinding error after the first frames returns -PS_ECORRUPT
 * with *n frames kept; either way err says why. Other errors: -ESRCH (no such thread in the
 * core, or it exited), -ENOMEM.
 */
int native_unwind_thread(struct native_ctx *ctx, pid_t tid, uint64_t *pcs, size_t cap, size_t *n,
                         struct ps_err *err) PS_WARN_UNUSED;

/*
 * Symbolize pc (a return address unless innermost, so the caller's call site is looked up at
 * pc - 1) into f: symbol, offset, module and, with opts.disasm, the instruction (for outer
 * frames, the call instruction that ends at pc when one decodes). Strings are copied into s.
 * Unknown parts are left NULL. Errors: -ENOMEM.
 */
int native_symbolize(struct native_ctx *ctx, uint64_t pc, bool innermost, struct snap *s,
                     struct snap_native_frame *f, struct ps_err *err) PS_WARN_UNUSED;

/*
 * Link t's native frames to its Python frames (struct snap_native_frame.python_frame) by the
 * merge rule above. On a mismatch sets no link and returns -PS_ECORRUPT with err naming the
 * counts. Pure: no target access (unit-testable).
 */
int native_merge(struct snap_thread *t, struct ps_err *err) PS_WARN_UNUSED;

/*
 * The merge for every thread of s with a native stack and no native_error (call once all are
 * collected): a thread state shares the C stack with the other thread states of its OS thread
 * (nested interpreters, at most NATIVE_MAX_NEST), taken innermost first by c_anchor; eval calls
 * running another thread state's frames get nested_thread/nested_frame. A mismatch becomes the
 * thread's native_error. Errors: -ENOMEM only. Pure.
 */
int native_merge_snapshot(struct snap *s, struct ps_err *err) PS_WARN_UNUSED;

/* True when t's native stack shows it waiting to take the GIL (take_gil on the stack). Pure. */
bool native_waits_for_gil(const struct snap_thread *t);

/*
 * Everything for one thread of a snapshot but the merge (native_merge_snapshot, once every
 * thread is in): unwind, symbolize, and set the activity to
 * "waiting for the GIL" when the stack proves it. Failures are data: t->native_error gets a
 * sentence and what could be read is kept. Errors: -ENOMEM only.
 */
int native_collect_thread(struct native_ctx *ctx, struct snap *s, struct snap_thread *t,
                          struct ps_err *err) PS_WARN_UNUSED;

#endif
