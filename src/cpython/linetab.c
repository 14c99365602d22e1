/* SPDX-License-Identifier: MIT */
/*
 * Location tables (co_linetable, the format CPython 3.11 introduced; CPython Objects/locations.md and
 * Objects/codeobject.c advance_with_locations()). Data flow: resolve copies a code object's
 * table out of the target, decodes it here once into a sorted array of ranges, caches it, and
 * looks instruction units up by binary search.
 *
 * Invariants: decoding never reads past `len` bytes, never accepts a varint longer than 5 bytes
 * (30 bits: CPython never writes more), rejects an entry whose first byte lacks bit 7 or a
 * payload byte that has it (CPython's writer keeps payload bytes below 128, so a set bit means
 * we lost sync), keeps the running line inside int, and stops at LINETAB_MAX_ENTRIES. The table
 * is walked twice: once to validate and count, once to fill an exactly-sized array, so there is
 * no reallocation and no partial result. Consecutive entries with equal positions are merged.
 * Pure code: no target reads, no globals, callable from any thread.
 */
#include "pyscope/linetab.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Entry forms (Include/cpython/code.h, _PyCodeLocationInfoKind, 3.11+). */
enum {
    LT_FORM_SHORT_MAX = 9,  /* 0-9: same line, column bucket form*8 */
    LT_FORM_ONE_LINE0 = 10, /* 10-12: line += form-10, column bytes follow */
    LT_FORM_ONE_LINE2 = 12,
    LT_FORM_NO_COLUMNS = 13,
    LT_FORM_LONG = 14,
    LT_FORM_NONE = 15,
};

/* Longest varint CPython writes: 5 groups of 6 bits hold any value it encodes (< 2^30). */
#define LT_VARINT_MAX_BYTES 5

/* A cursor over the table bytes and the running line number. */
struct lt_cursor {
    const uint8_t *p;
    size_t len;
    size_t off;
    int64_t line;
    uint32_t unit;
};

static int lt_byte(struct lt_cursor *cur, uint8_t *out, struct ps_err *err)
{
    if (cur->off >= cur->len)
        return ps_err_set(err, -PS_ECORRUPT,
                          "location table truncated at byte %zu of %zu: the code object is "
                          "corrupt or was read while being freed; retry the read",
                          cur->off, cur->len);
    if (cur->p[cur->off] & 0x80)
        return ps_err_set(err, -PS_ECORRUPT,
                          "location table byte %zu has the entry-start bit inside an entry: "
                          "the table is corrupt or not a 3.11+ co_linetable",
                          cur->off);
    *out = cur->p[cur->off++];
    return 0;
}

static int lt_varint(struct lt_cursor *cur, uint32_t *out, struct ps_err *err)
{
    uint32_t val = 0;
    uint8_t b = 0;

    for (int i = 0; i < LT_VARINT_MAX_BYTES; i++) {
        int rc = lt_byte(cur, &b, err);
        if (rc < 0)
            return rc;
        val |= (uint32_t)(b & 63) << (6 * i);
        if (!(b & 64)) {
            *out = val;
            return 0;
        }
    }
    return ps_err_set(err, -PS_ECORRUPT,
                      "location table varint ending at byte %zu is longer than %d bytes: the "
                      "table is corrupt",
                      cur->off, LT_VARINT_MAX_BYTES);
}

static int lt_svarint(struct lt_cursor *cur, int64_t *out, struct ps_err *err)
{
    uint32_t u = 0;
    int rc = lt_varint(cur, &u, err);

    if (rc < 0)
        return rc;
    *out = (u & 1) ? -(int64_t)(u >> 1) : (int64_t)(u >> 1);
    return 0;
}

static int lt_add_line(struct lt_cursor *cur, int64_t delta, struct ps_err *err)
{
    cur->line += delta;
    if (cur->line <= -(INT64_C(1) << 30) || cur->line >= (INT64_C(1) << 30))
        return ps_err_set(err, -PS_ECORRUPT,
                          "location table line number overflows near byte %zu: the table is "
                          "corrupt",
                          cur->off);
    return 0;
}

/* Form 14: line delta, end-line delta, col+1, end-col+1 (0 = unknown). */
static int lt_long_form(struct lt_cursor *cur, struct linetab_pos *pos, struct ps_err *err)
{
    int64_t delta = 0;
    uint32_t v[3] = {0, 0, 0};
    int rc = lt_svarint(cur, &delta, err);

    for (int i = 0; rc == 0 && i < 3; i++)
        rc = lt_varint(cur, &v[i], err);
    if (rc == 0)
        rc = lt_add_line(cur, delta, err);
    if (rc < 0)
        return rc;
    /* |line| < 2^30 (lt_add_line) and v[0] < 2^30, so the end line fits int. */
    pos->line = (int)cur->line;
    pos->end_line = (int)(cur->line + v[0]);
    pos->col = (int)v[1] - 1;
    pos->end_col = (int)v[2] - 1;
    return 0;
}

/* Forms 10-12: line += form-10, then start and end column bytes. */
static int lt_one_line_form(struct lt_cursor *cur, int form, struct linetab_pos *pos,
                            struct ps_err *err)
{
    uint8_t col = 0;
    uint8_t end = 0;
    int rc = lt_byte(cur, &col, err);

    if (rc == 0)
        rc = lt_byte(cur, &end, err);
    if (rc == 0)
        rc = lt_add_line(cur, form - LT_FORM_ONE_LINE0, err);
    if (rc < 0)
        return rc;
    pos->line = pos->end_line = (int)cur->line;
    pos->col = col;
    pos->end_col = end;
    return 0;
}

/* Forms 0-9: same line; one byte gives the column's low 3 bits and the width. */
static int lt_short_form(struct lt_cursor *cur, int form, struct linetab_pos *pos,
                         struct ps_err *err)
{
    uint8_t b = 0;
    int rc = lt_byte(cur, &b, err);

    if (rc < 0)
        return rc;
    pos->line = pos->end_line = (int)cur->line;
    pos->col = form * 8 + ((b >> 4) & 7);
    pos->end_col = pos->col + (b & 15);
    return 0;
}

static int lt_no_columns_form(struct lt_cursor *cur, struct linetab_pos *pos, struct ps_err *err)
{
    int64_t delta = 0;
    int rc = lt_svarint(cur, &delta, err);

    if (rc == 0)
        rc = lt_add_line(cur, delta, err);
    if (rc < 0)
        return rc;
    pos->line = pos->end_line = (int)cur->line;
    pos->col = pos->end_col = -1;
    return 0;
}

/* Decode the entry at the cursor into *r (start, end, positions) and advance. */
static int lt_next(struct lt_cursor *cur, struct linetab_range *r, struct ps_err *err)
{
    uint8_t first = cur->p[cur->off];
    int form = (first >> 3) & 15;
    int rc = 0;

    if (!(first & 0x80))
        return ps_err_set(err, -PS_ECORRUPT,
                          "location table entry at byte %zu lacks its start bit (0x%02x): the "
                          "table is corrupt or not a 3.11+ co_linetable",
                          cur->off, first);
    cur->off++;
    r->start = cur->unit;
    r->end = cur->unit + (uint32_t)(first & 7) + 1;
    cur->unit = r->end;
    if (form == LT_FORM_NONE)
        r->pos = (struct linetab_pos){-1, -1, -1, -1};
    else if (form == LT_FORM_LONG)
        rc = lt_long_form(cur, &r->pos, err);
    else if (form == LT_FORM_NO_COLUMNS)
        rc = lt_no_columns_form(cur, &r->pos, err);
    else if (form >= LT_FORM_ONE_LINE0 && form <= LT_FORM_ONE_LINE2)
        rc = lt_one_line_form(cur, form, &r->pos, err);
    else /* form <= LT_FORM_SHORT_MAX */
        rc = lt_short_form(cur, form, &r->pos, err);
    return rc;
}

static bool lt_same_pos(const struct linetab_pos *a, const struct linetab_pos *b)
{
    return a->line == b->line && a->end_line == b->end_line && a->col == b->col &&
           a->end_col == b->end_col;
}

/*
 * Walk the whole table. With out == NULL only validate and count merged ranges into *n;
 * otherwise fill out[0..*n) (sized by a previous counting pass).
 */
static int lt_walk(const uint8_t *bytes, size_t len, int firstlineno, struct linetab_range *out,
                   size_t *n, struct ps_err *err)
{
    struct lt_cursor cur = {.p = bytes, .len = len, .line = firstlineno};
    struct linetab_range prev = {0};
    struct linetab_range r = {0};
    size_t count = 0;
    size_t entries = 0;

    while (cur.off < cur.len) {
        if (++entries > LINETAB_MAX_ENTRIES)
            return ps_err_set(err, -PS_ELIMIT,
                              "location table has more than %d entries: the code object is "
                              "corrupt or larger than pyscope supports",
                              LINETAB_MAX_ENTRIES);
        int rc = lt_next(&cur, &r, err);
        if (rc < 0)
            return rc;
        if (count > 0 && lt_same_pos(&prev.pos, &r.pos)) {
            prev.end = r.end;
        } else {
            if (out && count > 0)
                out[count - 1] = prev;
            prev = r;
            count++;
        }
    }
    if (out && count > 0)
        out[count - 1] = prev;
    *n = count;
    return 0;
}

int linetab_decode(const uint8_t *bytes, size_t len, int firstlineno, struct linetab *out,
                   struct ps_err *err)
{
    struct linetab_range *ranges = NULL;
    size_t n = 0;
    size_t filled = 0;
    int rc = 0;

    if (len > (size_t)LINETAB_MAX_ENTRIES * 16)
        return ps_err_set(err, -PS_ELIMIT,
                          "location table of %zu bytes exceeds the %d-byte cap: the code "
                          "object is corrupt",
                          len, LINETAB_MAX_ENTRIES * 16);
    rc = lt_walk(bytes, len, firstlineno, NULL, &n, err);
    if (rc < 0)
        return rc;
    if (n > 0) {
        ranges = calloc(n, sizeof(*ranges));
        if (!ranges)
            return ps_err_set(err, -ENOMEM, "out of memory decoding a location table of %zu ranges",
                              n);
        rc = lt_walk(bytes, len, firstlineno, ranges, &filled, err);
        if (rc < 0)
            goto free_ranges;
    }
    out->ranges = ranges;
    out->n = n;
    return 0;
free_ranges:
    free(ranges);
    return rc;
}

void linetab_free(struct linetab *tab)
{
    if (!tab)
        return;
    free(tab->ranges);
    tab->ranges = NULL;
    tab->n = 0;
}

struct linetab_pos linetab_lookup(const struct linetab *tab, int firstlineno, int64_t unit)
{
    struct linetab_pos none = {-1, -1, -1, -1};
    size_t lo = 0;
    size_t hi = 0;

    if (unit == -1)
        return (struct linetab_pos){firstlineno, firstlineno, -1, -1};
    if (!tab || unit < 0 || tab->n == 0 || unit >= (int64_t)tab->ranges[tab->n - 1].end)
        return none;
    hi = tab->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct linetab_range *r = &tab->ranges[mid];
        if (unit < (int64_t)r->start)
            hi = mid;
        else if (unit >= (int64_t)r->end)
            lo = mid + 1;
        else
            return r->pos;
    }
    return none;
}
