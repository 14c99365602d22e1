/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_WALK_H
#define PYSCOPE_WALK_H

/*
 * Walking the interpreter: interpreters -> thread states -> frame chains, producing raw frames
 * (code address + code unit) that code.h resolves. Reads go through the memory source only.
 *
 * Speculation: the walker remembers per thread (bounded) where the previous walk found things and
 * fetches them with the thread state in one scatter read, using each part only when the fresh
 * thread state confirms it. A warm walk of an unchanged stack costs two syscalls (one with the
 * consistency check).
 *
 * Bulk reads: a thread's data-stack chunks (where 3.11+ keeps thread-owned frames) are copied
 * whole, one read per chunk, and the frame chain is followed in the copy; frames outside the
 * chunks (generator frames, 3.12 C-stack shims, frame objects) are read one by one; the code
 * objects' headers of a whole stack are fetched in one scatter read.
 *
 * Bounds: WALK_MAX_INTERPS interpreters, WALK_MAX_THREADS thread states, WALK_MAX_CHUNKS
 * chunks and WALK_MAX_CHUNK_BYTES bytes per thread, WALK_MAX_DEPTH frames (deeper stacks keep
 * the innermost frames and are flagged truncated). Cycles end at the depth cap.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pyscope/code.h"
#include "pyscope/err.h"
#include "pyscope/memsrc.h"
#include "pyscope/pyctx.h"

#define WALK_MAX_INTERPS     256
#define WALK_MAX_THREADS     4096
#define WALK_MAX_CHUNKS      256
#define WALK_MAX_CHUNK_BYTES (8u << 20)
#define WALK_MAX_DEPTH       8192
#define WALK_MAX_CO_READS    16

/* One thread state, as listed. */
struct walk_tstate {
    uint64_t addr;
    uint64_t interp;
    int64_t interp_id;
    uint64_t thread_id;
    pid_t native_id; /* tid as pyscope's /proc and ptrace know it (tidmap_host_tid); 0 unknown */
    uint32_t status_bits; /* 3.12+ _status word, 0 otherwise */
    bool has_status;
};

/* One Python frame of a walked stack, innermost first. */
struct walk_frame {
    uint64_t frame_addr;
    uint64_t code_addr;
    int64_t unit; /* code unit to look up (see CPYTHON.md section 3.1); -1 = prologue */
    uint8_t owner;
    bool is_entry;     /* first Python frame above a C->Python entry */
    struct code_fp fp; /* the code object's header fingerprint, read with the stack */
};

struct walk_stack {
    struct walk_frame *frames; /* owned, capacity WALK_MAX_DEPTH, allocated by walk_stack_init */
    size_t n;
    bool truncated;
    uint64_t top_frame;   /* the thread's current frame pointer when read */
    uint64_t cframe;      /* 3.11/3.12: the _PyCFrame it was read through (0 otherwise) */
    uint64_t entry_shim;  /* 3.12+: the innermost C-stack shim frame met (on the C stack of
                             the innermost eval call), 0 when none */
    uint64_t top_instr;   /* the innermost frame's instruction pointer when read */
    uint32_t status_bits; /* 3.12+: the thread state's _status word as read, else 0 */
    /*
     * Optional, set by the caller before walk_stack (zeroed by walk_stack_init): up to
     * WALK_MAX_CO_READS ranges to read in the walk's first scatter read, together with the
     * thread state (a sampler's per-tick probe words: the GIL, the status word). Borrowed.
     * When walk_stack returns 0 they are filled (in one more scatter read if the speculative
     * one failed); on error their contents are unspecified.
     */
    const struct memsrc_iov *co_reads;
    size_t nco_reads;
    /*
     * Set by walk_stack: the whole walk took ONE scatter read, which ended (after the frames and
     * code headers) by reading again where the thread keeps its current frame (3.13: the thread
     * state's current_frame; 3.11/3.12: its cframe and that _PyCFrame's current_frame), and
     * found them equal to what the same read found first. Every frame byte was then copied
     * while the top of the stack stayed put: the check walk_stack_changed makes minus the
     * top frame's instruction pointer. False whenever that cannot be said.
     */
    bool top_confirmed;
    struct walk_scratch *scratch; /* private buffers reused across walks (flat memory) */
};

/* Interpreter-wide facts for a snapshot. */
struct walk_interp {
    uint64_t addr;
    int64_t id;
    uint64_t gil;        /* address of the GIL struct this interpreter uses (0 if unknown) */
    uint64_t gil_holder; /* tstate holding it, 0 when unlocked */
    uint64_t gil_switches;
};

/*
 * List every thread state of every interpreter (newest first within an interpreter) into the
 * caller's array of cap entries; *n gets the count. interps (optional, cap WALK_MAX_INTERPS)
 * receives interpreter facts and *ninterps their count. Errors: read errors, -PS_ECORRUPT
 * (a thread state not pointing back at its interpreter, a loop), -PS_ELIMIT.
 */
int walk_tstates(const struct pyctx *c, struct walk_tstate *ts, size_t cap, size_t *n,
                 struct walk_interp *interps, size_t *ninterps, struct ps_err *err) PS_WARN_UNUSED;

/* Allocate / free a stack buffer. */
int walk_stack_init(struct walk_stack *st, struct ps_err *err) PS_WARN_UNUSED;
void walk_stack_free(struct walk_stack *st);

/*
 * Walk the frames of thread state tstate into st (innermost first), hiding C-stack shims and
 * incomplete frames. Each frame's code header is read (one scatter read for the stack) and
 * checked: type is PyCode_Type, unit within the bytecode; pass fp to code_cache_resolve. Also
 * reads st->co_reads (see struct walk_stack) and sets st->top_confirmed. Errors: read errors,
 * -PS_ECORRUPT (a torn or invalid frame: the caller may retry), -PS_EGONE, -EINVAL (more than
 * WALK_MAX_CO_READS co-reads).
 */
int walk_stack(const struct pyctx *c, uint64_t tstate, struct walk_stack *st,
               struct ps_err *err) PS_WARN_UNUSED;

/* Read the thread's current (innermost) frame pointer. */
int walk_current_frame(const struct pyctx *c, uint64_t tstate, uint64_t *frame,
                       struct ps_err *err) PS_WARN_UNUSED;

/*
 * Consistency check after walk_stack: re-read where the thread keeps its current frame, the
 * current frame and that frame's instruction pointer; *changed is true when any differs from
 * what st recorded (the stack moved while it was read, so st may mix two states). One scatter
 * read.
 */
int walk_stack_changed(const struct pyctx *c, uint64_t tstate, const struct walk_stack *st,
                       bool *changed, struct ps_err *err) PS_WARN_UNUSED;

#endif
