/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_LOCALS_H
#define PYSCOPE_LOCALS_H

/*
 * Local variables of a frame (`dump --locals`, the TUI's `v` toggle): arguments, locals, cells
 * and free variables from the frame's localsplus slots named by the code object's
 * co_localsplusnames/co_localspluskinds (CPYTHON.md section 3), each with a safe, bounded repr
 * read from the target.
 *
 * Reprs follow Python's repr for None, bool, int (any size), float, str, bytes, tuple, list,
 * dict and set, showing the first LOCALS_MAX_ITEMS items of a container and then ", ..." and
 * " (len N)"; text longer than the repr cap ends in "..." too. Containers nest at most
 * LOCALS_MAX_DEPTH deep (deeper ones print as "[...]", "(...)", "{...}"), which also ends
 * self-references. Any other object prints as "<TypeName at 0x...>". A repr never follows an
 * unbounded chain: each top-level value costs at most LOCALS_MAX_READS reads, after which the
 * rest prints as "...". A value whose read fails is "unreadable", never an error of the frame.
 *
 * No caches: every call reads afresh (a dump reads each frame once; the TUI asks for the frames
 * it shows). Reads go through the pyproc's memory source only; one thread at a time per pyproc.
 */

#include <stddef.h>
#include <stdint.h>

#include "pyscope/err.h"
#include "pyscope/pyobj.h"
#include "pyscope/snap.h"

/* Variables per frame: co_nlocalsplus is far smaller in real code; 1024 bounds garbage. */
#define LOCALS_MAX_VARS 1024
/* Bytes of one repr including the NUL: a terminal line's worth, plus room for the suffix. */
#define LOCALS_REPR_MAX 320
/* Container items shown (the length is always shown when more exist). */
#define LOCALS_MAX_ITEMS 8
/* Container nesting shown: [[[x]]] prints, one level more prints as [...]. */
#define LOCALS_MAX_DEPTH 3
/* Target reads per top-level value: bounds the cost of a dict of dicts of lists. */
#define LOCALS_MAX_READS 96
/* Decimal digits computed for a big int: ints with more 30-bit digits print as
 * "<int of N bits>" (the decimal conversion is quadratic). */
#define LOCALS_MAX_INT_DIGITS 1024

/*
 * Write a bounded repr of the object at obj into buf (cap bytes, NUL-terminated, valid UTF-8)
 * and its type's name into type (tcap bytes; "" when the type could not be read). Returns 0,
 * or a negative code (read errors, -PS_ECORRUPT) when not even the object's header could be
 * read: then buf holds "<unreadable>". Parts that fail deeper inside print as "<unreadable>"
 * in place. Bounded by LOCALS_MAX_READS reads.
 */
int locals_repr(const struct pyctx *c, uint64_t obj, char *buf, size_t cap, char *type, size_t tcap,
                struct ps_err *err) PS_WARN_UNUSED;

/*
 * Fill sf->vars/sf->nvars (allocated from s's arena; vars is non-NULL on success even when no
 * variable is bound) with the variables of the frame at frame_addr running code_addr (read
 * through c, e.g. pyproc_ctx(pp)), in co_localsplusnames order: kind "arg" (the first
 * co_argcount + co_kwonlyargcount + *args + **kwargs slots), "local", "cell" or "free"; cells
 * are dereferenced; unbound slots and 3.12+ hidden comprehension slots are left out (as
 * frame.f_locals does). A value that cannot be read is a var with unreadable set. Errors (sf
 * untouched): the code object's names or kinds, or the frame's slots, unreadable (read
 * errors, -PS_ECORRUPT); -ENOMEM.
 */
int locals_frame(const struct pyctx *c, uint64_t frame_addr, uint64_t code_addr, struct snap *s,
                 struct snap_frame *sf, struct ps_err *err) PS_WARN_UNUSED;

#endif
