/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_LINETAB_H
#define PYSCOPE_LINETAB_H

/*
 * Location tables (co_linetable, the format CPython 3.11 introduced, Objects/locations.md): decode a code
 * object's table once into a compact sorted array of ranges, then look up a code unit by binary
 * search. Pure functions over bytes already copied out of the target; every read is bounded by
 * the table length, varints by 5 bytes (CPython never writes more), entries by the cap below.
 */

#include <stddef.h>
#include <stdint.h>

#include "pyscope/err.h"

/* Position of one code unit, as traceback/co_positions() report it; -1 = unknown. */
struct linetab_pos {
    int line;
    int end_line;
    int col;
    int end_col;
};

struct linetab_range {
    uint32_t start; /* first code unit */
    uint32_t end;   /* one past the last code unit (half-open) */
    struct linetab_pos pos;
};

/* A decoded table: owned array of ranges sorted by start, contiguous from unit 0. */
struct linetab {
    struct linetab_range *ranges;
    size_t n;
};

/* Cap on entries decoded from one table (a 64 KiB table at 1 byte/entry; bigger is garbage). */
#define LINETAB_MAX_ENTRIES 65536

/*
 * Decode table bytes (len <= LINETAB_MAX_ENTRIES * 16) with the code object's co_firstlineno.
 * On success *out owns a malloc'ed array (free with linetab_free). Errors: -PS_ECORRUPT with a
 * message for a malformed table (missing start bit, varint too long, truncated entry),
 * -PS_ELIMIT, -ENOMEM. An empty table decodes to n == 0.
 */
int linetab_decode(const uint8_t *bytes, size_t len, int firstlineno, struct linetab *out,
                   struct ps_err *err) PS_WARN_UNUSED;

/* Free the ranges; NULL-safe; leaves *tab empty. */
void linetab_free(struct linetab *tab);

/*
 * Position of code unit `unit` (not a byte offset). unit == -1 (before the first instruction,
 * 3.11/3.12) gives line = firstlineno with unknown columns; a unit outside every range gives all
 * -1. Form-15 entries ("no location") give all -1. Never fails.
 */
struct linetab_pos linetab_lookup(const struct linetab *tab, int firstlineno, int64_t unit);

#endif
