/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_OUT_EXC_H
#define PYSCOPE_OUT_EXC_H

/*
 * Exception writers for `pyscope exceptions`: the live feed as text lines or JSON lines
 * (docs/exceptions.md), the summary table (type x raise site x handler x count) with the
 * bounded aggregator behind it, the start and stop records (JSON lines, or sentences for the
 * log), and the raise stacks as a profile (profile.h) for the profile writers (out_profile.h:
 * collapsed, flamegraph, speedscope), weighted by count. Fed from the tracer's events and
 * statistics (tracer.h), written through a caller-owned FILE * (the CLI's outq record, or
 * stdout once the target is released) or into a caller's buffer (the log's sentences).
 *
 * Every string from the target goes through the one escaper of its format: text escapes
 * control characters and invalid UTF-8 as dump does (\xNN, \u00NN), so a hostile message,
 * type, file or function name cannot drive the reader's terminal; JSON escapes them as JSON
 * strings (out_json_str, out_jsonw.h). Writers never fail: stream errors are sticky in the
 * FILE for the caller to check. Single thread.
 */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "pyscope/err.h"
#include "pyscope/profile.h"
#include "pyscope/tracer.h"

/* Summary rows kept (type x raise site x handler); further distinct rows are counted as
 * "other" (a bound on memory and on the per-event search, whatever the target raises). */
#define OUT_EXC_SUMMARY_MAX 1024

#define OUT_EXC_STACK 1u /* out_exc_text: one more line per frame of the raise stack */
#define OUT_EXC_PID   2u /* out_exc_text: the process too, `[pid P tid N]` */

/*
 * One END event (the raise and its fate) as a text line: `HH:MM:SS.mmm [tid N] Type: message
 * raised at file:line in function; handled in function at line L` (`[pid P tid N]` with
 * OUT_EXC_PID in flags), plus one indented line per frame of the raise stack with
 * OUT_EXC_STACK. RAISE events are not printed (their END follows, with the same fields).
 */
void out_exc_text(FILE *fp, const struct tracer_event *ev, unsigned flags);

/*
 * One event as a JSON line (each carries "pid", the traced process): {"event":"raise",...} with frames, reraise, cause and context for
 * a RAISE; {"event":"handled",...,"handled_at":{...}} or {"event":"propagating",...} for an END.
 */
void out_exc_json(FILE *fp, const struct tracer_event *ev);

/*
 * The records around the feed, for `exceptions --json`: the start record
 * {"event":"start","pid","python","mechanism","mechanism_note"} (a line, once tracing began) and
 * the stop record {"event":"stop","pid","reason",...} with every counter of s (docs/exceptions.md
 * lists them), each a JSON line. A record that cannot be built (out of memory) is not written.
 */
void out_exc_json_start(FILE *fp, pid_t pid, const char *python, const char *mechanism,
                        const char *note);
void out_exc_json_stop(FILE *fp, pid_t pid, const char *why, const struct tracer_stats *s);

/*
 * The same two records as one sentence each for the log (no newline, no "pyscope: "), written
 * into buf (cap bytes, always terminated, cut at cap): "tracing exceptions of pid P (Python V)
 * with MECH...; Ctrl-C stops" and "stopped (WHY): N raises reported, ..." (with
 * "pid P: " first when show_pid: one process of a traced tree).
 */
void out_exc_start_words(char *buf, size_t cap, pid_t pid, const char *python,
                         const char *mechanism, const char *note);
void out_exc_stop_words(char *buf, size_t cap, pid_t pid, bool show_pid, const char *why,
                        const struct tracer_stats *s);

/*
 * The end of `exceptions --subprocesses` as one sentence for the log, into buf (as above):
 * "stopped (WHY): F Python processes of pid P's tree traced, N not Python or unsupported",
 * plus a note when over_cap (more than 64 at once were seen).
 */
void out_exc_tree_words(char *buf, size_t cap, pid_t root, const char *why, uint64_t followed,
                        uint64_t not_python, bool over_cap);

/* The summary's aggregator: rows of (type, raise site, handler) with their counts. */
struct out_exc_summary;

/* A new empty summary in *out (written only on success). 0 or -ENOMEM (err says so). */
int out_exc_summary_new(struct out_exc_summary **out, struct ps_err *err) PS_WARN_UNUSED;

/* Count one END event in its row (a new row when the summary has room, else "other"). */
void out_exc_summary_add(struct out_exc_summary *s, const struct tracer_event *ev);

/*
 * Write the table, most frequent row first: count, type, `file:line in function` where raised
 * and where handled (or "(still propagating)"); every column as wide as its widest cell, so
 * the table stays aligned at any path length. Sorts the rows in place.
 */
void out_exc_summary_write(FILE *fp, struct out_exc_summary *s);

/*
 * Make the rows' counts the sites' exact counts (tracer_sites; sites whose count is an estimate
 * are left alone): the rows of a (type, raise site) are scaled so that they sum to the site's
 * count, keeping their split between handlers (then estimated, and the table says so). For
 * bpf over its budget, where the events are a sample but the kernel counted every raise.
 */
void out_exc_summary_exact(struct out_exc_summary *s, const struct tracer_site *sites, size_t n);

/* Free s; NULL-safe. */
void out_exc_summary_free(struct out_exc_summary *s);

/*
 * Count one RAISE event in p as a sample of weight 1 under one root (thread_id 0, "all
 * threads"): its stack outermost first ("[truncated]" first when the tracer cut it), then a
 * leaf frame "raise TYPE", so a flamegraph shows where exceptions come from and which. Other
 * events are ignored. Errors: as profile_thread (-ENOMEM); past the profile's caps raises are
 * counted on its overflow frames (profile.h), never lost.
 */
int out_exc_profile_add(struct profile *p, const struct tracer_event *ev,
                        struct ps_err *err) PS_WARN_UNUSED;

#endif
