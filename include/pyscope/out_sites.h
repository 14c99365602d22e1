/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_OUT_SITES_H
#define PYSCOPE_OUT_SITES_H

/*
 * The (exception type, raise site) table of the tracer (tracer_sites) as one JSON line:
 * {"event":"sites","pid":P,"sites":[{"type","function","file","line","seen","reported","estimate",
 * "estimated","rel_err","first_seq","first_time"}]}, sites in order of first appearance.
 * "estimate" is a count when "estimated" is false (every raise of the site was stopped for),
 * else an estimate with relative standard error "rel_err" (docs/exceptions.md "Budget").
 * Writes through the caller's FILE *; never touches the target.
 */

#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#include "pyscope/tracer.h"

/* Write the record (pid: the traced process) and a newline to fp. Returns 0, or -EIO when fp failed. */
int out_sites_json(FILE *fp, pid_t pid, const struct tracer_site *sites, size_t n) PS_WARN_UNUSED;

/* The record when the sites could not be gathered (out of memory): {"event":"sites","error":
 * "out of memory"} and a newline. */
void out_sites_json_oom(FILE *fp);

#endif
