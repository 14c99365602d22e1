/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_OUT_RECORD_H
#define PYSCOPE_OUT_RECORD_H

/*
 * `pyscope record`'s own lines on stderr: the live status line while sampling, and the
 * statistics at the end (what the sampler achieved and lost, what it cost, what the profile
 * holds; the followed subprocesses). Only numbers and pyscope's words: nothing from the target,
 * so nothing to escape. Writes through the caller's FILE *; stream errors are sticky in it.
 */

#include <stdio.h>

#include "pyscope/profile.h"
#include "pyscope/sampler.h"
#include "pyscope/subproc.h"

/* The status line: "\rpyscope: N samples, R Hz, <lost>, T s   " (no newline: the next one
 * overwrites it). */
void out_record_status(FILE *fp, const struct sampler_stats *st);

/*
 * The end's statistics, three lines: what was lost (sampler_lost_words), why sampling ended
 * with ticks, rate and samples, and torn/failed shares, pyscope's own CPU (own_cpu_s, this
 * process's user + system seconds) against the elapsed time, tick times and the profile's size.
 */
void out_record_stats(FILE *fp, const struct sampler_stats *st, const struct profile *p,
                      double own_cpu_s);

/* The followed subprocesses' counts, one line (record --subprocesses). */
void out_record_subproc_stats(FILE *fp, const struct subproc_stats *ss);

#endif
