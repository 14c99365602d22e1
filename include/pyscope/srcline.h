/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_SRCLINE_H
#define PYSCOPE_SRCLINE_H

/*
 * srcline: the source line of a frame (co_filename, line), read from the file system through a
 * small LRU cache. Used by the text writer (one cache per report) and by the TUI's stack pane
 * (one cache per session). Never touches target memory.
 *
 * Bounds: at most SRCLINE_CACHE_FILES files of at most SRCLINE_FILE_MAX bytes each are held
 * (least recently used file evicted; a file that cannot be read is cached as a miss, so it is
 * tried once per stay in the cache). Files are never re-read while cached: a long-lived cache
 * shows the text as first read.
 *
 * The names are the target's choice, so they are opened only as the target itself could
 * (tfile_open_as): absolute paths only, resolved inside the target's root (".." and absolute
 * symlinks cannot leave it), with the target's file-system credentials, regular files only,
 * never blocking. A name that fails any of this shows no source line and nothing else of the
 * file (not its size, not its first bytes).
 */

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "pyscope/err.h"
#include "pyscope/procstat.h"

/* Files cached at once: the hot files of one stack (app, framework, stdlib) fit; 8 x 2 MiB. */
#define SRCLINE_CACHE_FILES 8
/* Bytes read per file: lines past it show no source (generated giants); bounds the cache. */
#define SRCLINE_FILE_MAX ((size_t)2 << 20)

struct srcline_cache;

/*
 * A new, empty cache. pid > 0 (a live target): names resolve inside /proc/PID/root and are
 * opened with that process's credentials, read from /proc/PID/status at each file load; root
 * is ignored. pid == 0 (a core file, tests): names resolve inside the directory root (NULL or ""
 * for "/") and are opened with pyscope's own credentials. The root directory is opened now and
 * held until srcline_cache_free; when it cannot be opened (the target exited) every lookup
 * misses. On success *out is owned by the caller. Errors: -ENOMEM. Any thread; a cache has one
 * owner thread.
 */
int srcline_cache_new(const char *root, pid_t pid, struct srcline_cache **out,
                      struct ps_err *err) PS_WARN_UNUSED;

/*
 * A cache made with pid == 0 (a core file) opens names with the credentials *as instead of
 * pyscope's own (copied; as->ids_known and as->ngroups >= 0 required, else every later lookup
 * misses): a core's files are read as the crashed process could (its NT_PRPSINFO ids). Call
 * before the first srcline_get. No-op for a live target's cache (pid > 0).
 */
void srcline_cache_set_cred(struct srcline_cache *c, const struct procstat_status *as);

/* Free the cache and every file it holds; NULL-safe. */
void srcline_cache_free(struct srcline_cache *c);

/*
 * Find line `line` (1-based) of file `file`, stripped of surrounding whitespace (Python's
 * str.strip(), ASCII part), loading the file on a miss. On success *start points into the
 * cache (valid until the next srcline_get or srcline_cache_free on c) and *len is its length in
 * bytes (not NUL-terminated; the bytes are the file's, not validated as UTF-8). Returns false
 * when the file is unreadable, the line is absent or blank, or memory ran out.
 */
bool srcline_get(struct srcline_cache *c, const char *file, int line, const char **start,
                 size_t *len);

#endif
