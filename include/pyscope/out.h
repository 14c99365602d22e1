/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_OUT_H
#define PYSCOPE_OUT_H

/*
 * Snapshot writers: `pyscope dump` as a traceback-like text report and as one JSON document
 * (schema: docs/schema/dump.schema.json). Both are fed from the same data model, struct snap,
 * and write through a caller-owned FILE *. They never touch the target's memory; the text
 * writer may read source files (see out_opts.source_root). jansson stays out of this header:
 * callers get JSON as bytes on a FILE * or as a malloc'ed string.
 *
 * Order of frames: the text report prints each thread's frames outermost first, like a Python
 * traceback ("most recent call last"); JSON lists them innermost first, as struct snap does.
 * With snap->tasks (dump --tasks), both add the asyncio tasks and the await graph after the
 * threads, their coroutine chains in the same orders (src/out/out_tasks.c).
 */

#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>

#include "pyscope/err.h"
#include "pyscope/procstat.h"
#include "pyscope/snap.h"

/* Writer options. A NULL `const struct out_opts *` means all fields zero/false/NULL. */
struct out_opts {
    bool source_lines;       /* text: print each frame's source line under it, stripped */
    const char *source_root; /* text: the directory absolute co_filename paths resolve in when
                                reading source (core files, tests); NULL or "" is "/" */
    pid_t source_pid;        /* text: > 0, a live target: read source inside its root and
                                with its credentials (srcline.h); source_root is ignored */
    const struct procstat_status *source_as; /* text, source_pid 0 (a core): read source with
                                these credentials (srcline_cache_set_cred); NULL: our own */
    bool color;      /* text: ANSI SGR colours (the caller decides: isatty, NO_COLOR) */
    int json_indent; /* JSON: 0 writes one line; 1..31 pretty-prints with that indent */
};

/*
 * Write the text report of s to fp: a header (pid, command line, Python version, executable,
 * CPU, RSS, thread count, when and how fast the snapshot was taken), then per thread a header
 * line (`Thread 140233 (native 4243) "MainThread" [holds the GIL] running`), a note when the
 * thread's status is not ok, and its frames outermost first as `  File "f", line N, in name`.
 * Target strings are printed with control characters escaped (\xNN, \uNNNN), so a hostile
 * thread name or path cannot drive the terminal.
 *
 * With opts->source_lines, source lines are read only as the target could read them (inside
 * its root, with its credentials, regular files only, never blocking: srcline.h) through a per-call LRU cache of at most 8 files of at most
 * 2 MiB each (least recently used file evicted; unreadable files are cached as misses), so
 * each file is read at most once per call unless evicted; the cache is freed before returning.
 * A file that cannot be read just shows no source line.
 *
 * Returns 0, or -errno when writing to fp failed (ENOSPC, EPIPE, ...: err says so); running
 * out of memory only costs source lines. fp is flushed; output may be partial on failure.
 * Any thread; s and opts are only read.
 */
int out_text_write(FILE *fp, const struct snap *s, const struct out_opts *opts,
                   struct ps_err *err) PS_WARN_UNUSED;

/*
 * Write s to fp as one JSON document (UTF-8, keys in schema order, ending with a newline).
 * Unknown values are null: line numbers and columns below 0, a '?' OS state, an empty wchan,
 * syscall -2, a thread without a name; unsigned 64-bit values above 2^63-1 (never a Linux
 * pthread_t or counter in practice) and non-finite numbers are null as well.
 * Returns 0, -ENOMEM, -EINVAL (a snapshot string is not valid UTF-8: only possible when it did
 * not come through snap_strndup), or -errno when writing failed. Any thread.
 */
int out_json_write(FILE *fp, const struct snap *s, const struct out_opts *opts,
                   struct ps_err *err) PS_WARN_UNUSED;

/*
 * The same document as out_json_write, without the trailing newline, in *out as a
 * NUL-terminated string that the caller releases with free(). *out is written only on success.
 * Errors as out_json_write, minus the write errors. Any thread.
 */
int out_json_string(const struct snap *s, const struct out_opts *opts, char **out,
                    struct ps_err *err) PS_WARN_UNUSED;

/* "ok", "inconsistent", "truncated" or "error" (the JSON "status" values); never NULL. */
const char *out_status_name(enum snap_thread_status status);

#endif
