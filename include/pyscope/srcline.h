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
 * tried once per stay in the cache). Only regular files are opened (O_NONBLOCK, so a path naming
 * a FIFO or a device cannot block), and only absolute paths, joined to the cache's root (e.g.
 * "/proc/4242/root", so paths resolve in the target's mount namespace). Files are never
 * re-read while cached: a long-lived cache shows the text as first read.
 */

#include <stdbool.h>
#include <stddef.h>

#include "pyscope/err.h"

/* Files cached at once: the hot files of one stack (app, framework, stdlib) fit; 8 x 2 MiB. */
#define SRCLINE_CACHE_FILES 8
/* Bytes read per file: lines past it show no source (generated giants); bounds the cache. */
#define SRCLINE_FILE_MAX ((size_t)2 << 20)

struct srcline_cache;

/*
 * A new, empty cache; root (copied; NULL or "" for none) is prefixed to absolute paths.
 * On success *out is owned by the caller (srcline_cache_free). Errors: -ENOMEM. Any thread;
 * a cache has one owner thread.
 */
int srcline_cache_new(const char *root, struct srcline_cache **out,
                      struct ps_err *err) PS_WARN_UNUSED;

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
