/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_OUT_PS_H
#define PYSCOPE_OUT_PS_H

/*
 * Writers of `pyscope ps` (pslist.h): a table, each master followed by its workers indented
 * under it ("\_ "), or one JSON document {"processes": [...], "unreadable": N, "over_cap": N}
 * whose entries carry pid, ppid, python_version, version_read, threads, rss_bytes,
 * cpu_seconds, cmdline, master (a pid or null) and workers (pids). Returns 0, or -EIO when the
 * stream failed. Single thread.
 */

#include <stdio.h>

#include "pyscope/err.h"
#include "pyscope/pslist.h"

int out_ps_text(FILE *fp, const struct pslist *l, struct ps_err *err) PS_WARN_UNUSED;
int out_ps_json(FILE *fp, const struct pslist *l, struct ps_err *err) PS_WARN_UNUSED;

#endif
