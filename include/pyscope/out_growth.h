/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_OUT_GROWTH_H
#define PYSCOPE_OUT_GROWTH_H

/*
 * Writers of `pyscope growth`'s table: the first `rows` rows of a struct growth (growth.h), in
 * its ranking order (fastest growing first), for the process pid after `elapsed` seconds.
 */

#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#include "pyscope/growth.h"

/*
 * Text: a header line "TITLE: pid N, S samples over T s, C containers in M modules", a column
 * header, then one row per container (growth per minute, length, size in B/KiB/MiB, type, name,
 * " (gone)" for a container no longer found). Writes to f; does not flush.
 */
void out_growth_text(FILE *f, const struct growth *g, pid_t pid, const char *title, size_t rows,
                     double elapsed);

/*
 * JSON: one compact line {"event": EVENT, "pid", "elapsed_s", "stats": {...}, "containers":
 * [...]} (fields: docs/ and README, `pyscope growth --json`); on allocation failure an error event
 * line instead. Writes to f; does not flush.
 */
void out_growth_json(FILE *f, const struct growth *g, pid_t pid, const char *event, size_t rows,
                     double elapsed);

#endif
