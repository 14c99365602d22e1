/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_OUT_PROFILE_H
#define PYSCOPE_OUT_PROFILE_H

/*
 * Profile writers: a profile (profile.h) to collapsed stacks, speedscope JSON or an
 * interactive flamegraph SVG; and a streaming writer of raw samples as JSON lines
 * (docs/profile-formats.md describes every format).
 *
 * Frames are labelled `function (file:line)` (`function (file)` when the line is unknown).
 * Writers never fail half-way silently: they return -EIO (or -errno) when the stream reports
 * an error, and the caller decides what to do with the partial file. Single thread.
 */

#include <stdbool.h>
#include <stdio.h>

#include "pyscope/err.h"
#include "pyscope/profile.h"
#include "pyscope/sampler.h"

enum out_profile_format {
    OUT_PROFILE_COLLAPSED,
    OUT_PROFILE_SPEEDSCOPE,
    OUT_PROFILE_FLAMEGRAPH,
    OUT_PROFILE_SAMPLES, /* raw JSON lines (streamed by out_samples_*, not out_profile_write) */
    OUT_PROFILE_PPROF,   /* gzipped profile.proto (pprof, Pyroscope, Parca, Grafana) */
};

struct out_profile_opts {
    bool per_thread;      /* one root per thread (collapsed/flamegraph); else threads merged */
    const char *title;    /* flamegraph title / speedscope name; NULL = "pyscope profile" */
    double rate_hz;       /* sampling rate, shown in the SVG subtitle (0 = not shown) */
    const char *exporter; /* speedscope "exporter", e.g. "pyscope@0.1.0"; NULL = "pyscope" */
    const char *unit;     /* flamegraph: what a count is ("raises"); NULL = "samples" */
};

/* Parse a format's name: "flamegraph" (or "svg"), "speedscope", "collapsed" (or "folded"),
 * "pprof", "json" (out_profile.c's one name table); false when unknown. */
bool out_profile_parse_format(const char *name, enum out_profile_format *out);

/*
 * The formats' names as a list for a message, from the same table: "flamegraph, speedscope,
 * collapsed, pprof or json" (aliases left out; "json", the raw samples stream, only with
 * with_samples), into buf (cap bytes, NUL-terminated, truncated); returns buf. Pure.
 */
const char *out_profile_names(bool with_samples, char *buf, size_t cap);

/*
 * Collapsed stacks (Brendan Gregg's folded format): one line per unique stack with samples,
 * `frame;frame;...;frame N`, outermost first; with per_thread the first frame is
 * `thread NAME (TID)`. Characters `;` and newlines in labels are replaced by `_` so that the
 * format stays parseable. Errors: -errno from the stream, -ENOMEM.
 */
int out_collapsed_write(FILE *f, const struct profile *p, const struct out_profile_opts *o,
                        struct ps_err *err) PS_WARN_UNUSED;

/*
 * speedscope file format (docs/schema/speedscope.schema.json): shared frame table, one
 * "sampled" profile per thread with one sample per unique stack weighted by its count (unit
 * "none": weights are sample counts). Errors: -errno from the stream, -ENOMEM.
 */
int out_speedscope_write(FILE *f, const struct profile *p, const struct out_profile_opts *o,
                         struct ps_err *err) PS_WARN_UNUSED;

/*
 * A self-contained interactive SVG flamegraph (inline script: hover details, click to zoom,
 * Ctrl-F/search button to highlight matches, reset zoom), in the spirit of flamegraph.pl.
 * Frames narrower than 0.1% of the width are merged away. Errors: -errno from the stream,
 * -ENOMEM.
 */
int out_flamegraph_write(FILE *f, const struct profile *p, const struct out_profile_opts *o,
                         struct ps_err *err) PS_WARN_UNUSED;

/*
 * pprof: a gzipped perftools.profiles.Profile (profile.proto): sample type samples/count,
 * period cpu/nanoseconds (1e9 / rate_hz), one sample per unique stack (locations leaf first),
 * labelled `thread` (name) and `thread_id` (native id), and under --subprocesses `process`
 * ("process PID NAME", which then is not a location) and `pid`. Threads are never merged:
 * readers group by label. Errors: -errno from the stream, -ENOMEM, -EIO (zlib).
 */
int out_pprof_write(FILE *f, const struct profile *p, const struct out_profile_opts *o,
                    struct ps_err *err) PS_WARN_UNUSED;

/* Dispatch on format (not OUT_PROFILE_SAMPLES: -EINVAL). Merges threads when !per_thread. */
int out_profile_write(FILE *f, enum out_profile_format fmt, const struct profile *p,
                      const struct out_profile_opts *o, struct ps_err *err) PS_WARN_UNUSED;

/*
 * Raw samples, streamed as JSON lines: one header object
 * {"pyscope":"samples","version":1,"pid":N,"python":"3.12","rate_hz":R}, then one object per
 * sample {"t":seconds,"wall":epoch,"pid":N,"thread":ident,"tid":N,"name":"...","state":"active"|"idle",
 * "gil":bool,"frames":[{"function","file","line"},...] (innermost first)}, then a trailer
 * {"end":"duration"|"signal"|"exited","samples":N,...}. Every line is flushed at least at
 * the end; a crash leaves whole lines except possibly the last.
 */
struct out_samples;

/* Start a stream on f (borrowed, must outlive the writer); writes the header. -errno, -ENOMEM. */
int out_samples_open(FILE *f, pid_t pid, const char *python, double rate_hz,
                     struct out_samples **out, struct ps_err *err) PS_WARN_UNUSED;

/* A sampler_sample_fn: pass the writer as arg. Write errors are sticky (out_samples_close). */
void out_samples_on_sample(void *arg, const struct profile *p, const struct sampler_sample *s);

/* Write the trailer, flush and free (the FILE is not closed). Returns the first write error, or
 * 0. NULL-safe (returns 0). */
int out_samples_close(struct out_samples *w, const struct sampler_stats *st,
                      struct ps_err *err) PS_WARN_UNUSED;

#endif
