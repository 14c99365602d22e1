/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_PYCORE_H
#define PYSCOPE_PYCORE_H

/*
 * A core file (core.h) opened as a Python process: the CPython readers' half of `dump --core`.
 */

#include "pyscope/core.h"
#include "pyscope/err.h"
#include "pyscope/pyproc.h"

/*
 * Locate the runtime in the core's maps, check that the files found match the core (build id of
 * the runtime's image when the core holds its first page; Py_Version in the file against the
 * core's copy when it holds one) and open it (pyproc_open_source). The pyproc takes the memory
 * source: c->src becomes NULL and pp->src serves reads from then on; c must outlive pp (the
 * source reads the files c resolved). Errors: -ENOENT (a binary is missing: names it and
 * --lib-search-root/--exe), -PS_EVERSION, -PS_ECORRUPT (mismatched build), as pyproc.
 */
int core_open_python(struct core *c, const struct core_opts *opts, struct pyproc **pp,
                     struct ps_err *err) PS_WARN_UNUSED;

#endif
