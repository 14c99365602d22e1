/* SPDX-License-Identifier: MIT */
/*
 * Layout lookup: maps a target's PY_VERSION_HEX to its generated table (src/cpython/layout_3_XX.c) and
 * gives by-index and by-name access to the fields for dumps, `pyscope layout` and the 3.13+
 * _Py_DebugOffsets comparison. Names and offsets come from the LAYOUT_FIELDS X-macro, so they
 * cannot drift from struct layout. Everything here is const data and pure functions: callable
 * from any thread, never allocates, never touches the target.
 */
#include "pyscope/layout.h"

#include <string.h>

#include "layout_tables.h"

/* Oldest first (generated: layout_tables.h). */
static const struct layout *const layout_tables[] = {LAYOUT_TABLES};

#define LAYOUT_NAME(f) #f,
static const char *const layout_names[] = {LAYOUT_FIELDS(LAYOUT_NAME)};
#undef LAYOUT_NAME

/* Field indices in X-macro order; LAYOUT_NFIELDS counts them. */
#define LAYOUT_INDEX(f) LAYOUT_IDX_##f,
enum layout_index {
    LAYOUT_FIELDS(LAYOUT_INDEX) LAYOUT_NFIELDS
};
#undef LAYOUT_INDEX

#define LAYOUT_NTABLES (sizeof(layout_tables) / sizeof(layout_tables[0]))

_Static_assert(sizeof(layout_names) / sizeof(layout_names[0]) == LAYOUT_NFIELDS,
               "one name per X-macro field");

/* Major and minor of a PY_VERSION_HEX (0xMMmmppLS): micro, level and serial are ignored. */
static uint32_t layout_major_minor(uint32_t version_hex)
{
    return version_hex >> 16;
}

const struct layout *layout_for_version(uint32_t version_hex)
{
    const struct layout *found = NULL;

    for (size_t i = 0; i < LAYOUT_NTABLES; i++) {
        if (layout_major_minor(layout_tables[i]->version_hex_min) ==
            layout_major_minor(version_hex)) {
            found = layout_tables[i];
            break;
        }
    }
    return found;
}

const char *layout_supported(void)
{
    return LAYOUT_SUPPORTED;
}

size_t layout_table_count(void)
{
    return LAYOUT_NTABLES;
}

const struct layout *layout_table(size_t i)
{
    return i < LAYOUT_NTABLES ? layout_tables[i] : NULL;
}

size_t layout_field_count(void)
{
    return LAYOUT_NFIELDS;
}

/* NULL when i >= layout_field_count(). */
const char *layout_field_name(size_t i)
{
    return i < LAYOUT_NFIELDS ? layout_names[i] : NULL;
}

/* LAYOUT_ABSENT when lay is NULL or i >= layout_field_count(). */
int32_t layout_field_value(const struct layout *lay, size_t i)
{
    int32_t value = LAYOUT_ABSENT;

    if (lay != NULL) {
        switch (i) {
#define LAYOUT_CASE(f)                                                                             \
    case LAYOUT_IDX_##f: value = lay->f; break;
            LAYOUT_FIELDS(LAYOUT_CASE)
#undef LAYOUT_CASE
        default: break;
        }
    }
    return value;
}

bool layout_field_by_name(const struct layout *lay, const char *name, int32_t *out)
{
    bool found = false;

    for (size_t i = 0; lay != NULL && name != NULL && !found && i < LAYOUT_NFIELDS; i++) {
        if (strcmp(layout_names[i], name) == 0) {
            found = true;
            if (out != NULL) {
                *out = layout_field_value(lay, i);
            }
        }
    }
    return found;
}

size_t layout_span(const int32_t *offs, size_t n)
{
    int32_t max = 0;

    for (size_t i = 0; i < n; i++)
        if (offs[i] > max)
            max = offs[i];
    return (size_t)max + 8;
}
