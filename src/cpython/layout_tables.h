/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_LAYOUT_TABLES_H
#define PYSCOPE_LAYOUT_TABLES_H

/*
 * Private to the layout module: the per-version tables, defined in the generated
 * src/cpython/layout_3_XX.c files (scripts/gen-layouts) and listed by src/cpython/layout.c. Everything else
 * reaches them through layout_for_version() in pyscope/layout.h. Adding a version means one more
 * extern here, one more entry in layout.c's list and in gen-layouts' MINORS.
 */

#include "pyscope/layout.h"

extern const struct layout layout_3_11;
extern const struct layout layout_3_12;
extern const struct layout layout_3_13;

#endif
