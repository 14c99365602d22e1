/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_DEBUGOFFSETS_H
#define PYSCOPE_DEBUGOFFSETS_H

/*
 * The target's own field offsets: CPython 3.13+ publishes `_Py_DebugOffsets` as the first member
 * of `_PyRuntime` (internal/pycore_runtime.h; CPYTHON.md section 1): an 8-byte cookie
 * "xdebugpy", the PY_VERSION_HEX it was built as, a free-threaded flag, then groups of uint64
 * offsets, each group starting with its struct's size. Reading them lets pyscope check its
 * generated table against the running build and read a minor version it has no table for.
 *
 * Layouts of the struct itself are known per minor, generated with the layout tables by
 * scripts/gen-layouts (src/cpython/debugoffsets_tables.h: the first version with the struct, the
 * slots of each layout, the slot -> table field map); a newer minor is parsed with the newest
 * known layout and must then pass plausibility checks (every group size bounded, every offset
 * inside its group, the runtime size equal to the .PyRuntime section); pyproc's structure
 * validation afterwards catches what these cannot.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pyscope/err.h"
#include "pyscope/layout.h"
#include "pyscope/memsrc.h"

/* What to merge: the target's facts and the table to start from. Borrowed pointers. */
struct debugoffsets_in {
    struct memsrc *src;
    uint64_t runtime_addr;         /* _PyRuntime */
    uint32_t version_hex;          /* Py_Version */
    const char *version;           /* "3.13.0", for messages */
    uint64_t runtime_section_size; /* .PyRuntime size, 0 when unknown */
    const struct layout *table;    /* the version's own table, or the nearest older one */
    bool exact;                    /* table is the version's own (false: a stand-in) */
};

/* The outcome of a merge. */
struct debugoffsets_out {
    struct layout lay; /* table with every covered field replaced by the target's value */
    size_t ncovered;   /* table fields the debug offsets gave */
    size_t ndisagree;  /* of those, how many differed from the table */
    char warning[512]; /* "" when the table agreed completely and was exact */
};

/*
 * True when a PY_VERSION_HEX is recent enough to carry _Py_DebugOffsets (its minor is at least
 * the first known layout's, from the generated tables).
 */
bool debugoffsets_expected(uint32_t version_hex);

/*
 * Read the target's _Py_DebugOffsets (the largest known layout's size, one read through in->src),
 * parse them with the newest known layout not newer than in->version_hex, and merge them over
 * in->table into out->lay; out->warning says, in one sentence, where the target disagreed with
 * the table (naming the first fields, target vs table values) or, for a stand-in table, that the
 * version is unknown and which fields were assumed. Never allocates.
 * Errors: read errors (no debug offsets available); -PS_EVERSION for a free-threaded build, a
 * version that does not match Py_Version's minor, or a version before the first layout;
 * -PS_ECORRUPT for a missing cookie or implausible values (a group size or offset out of bounds, a runtime size other than the
 * .PyRuntime section's: the struct is not the one we parse). Any thread.
 */
int debugoffsets_merge(const struct debugoffsets_in *in, struct debugoffsets_out *out,
                       struct ps_err *err) PS_WARN_UNUSED;

#endif
