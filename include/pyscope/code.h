/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_CODE_H
#define PYSCOPE_CODE_H

/*
 * Code objects: resolve a target code-object address to file, function, qualname and a decoded
 * location table, through a bounded cache keyed by address and validated against address reuse.
 *
 * Validation: every lookup compares a fingerprint of the code object's header (type, size,
 * co_firstlineno, co_version on 3.12+, and the filename/name/qualname/linetable pointers) read
 * from the target in the same scatter read that the walker batches for a whole stack; a
 * mismatch evicts the entry and resolves again. So a code object freed and another allocated at
 * the same address is never shown with the old names.
 *
 * Cache: at most CODE_CACHE_CAP entries (open addressing); when full, the least recently used
 * entry is evicted. Memory per entry is bounded by the string cap (PYOBJ_STR_MAX_CHARS) and the
 * location-table cap, so the cache's footprint has a fixed upper bound.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pyscope/err.h"
#include "pyscope/linetab.h"
#include "pyscope/pyobj.h"

#define CODE_CACHE_CAP 4096
/* Largest location table we copy (bytes); CPython's biggest stdlib tables are ~40 KiB. */
#define CODE_LINETAB_MAX (1u << 20)
/* Largest code object header we read (3.13's co_code_adaptive is at 200). */
#define CODE_HEADER_MAX 256

/* Header fields that identify a code object (read in bulk by the caller). */
struct code_fp {
    uint64_t type, size, filename, name, qualname, linetable;
    int64_t firstlineno, version, firsttraceable;
};

struct code_info {
    uint64_t addr;
    struct code_fp fp;
    const char *filename; /* UTF-8, owned by the cache entry */
    const char *name;
    const char *qualname;
    int firstlineno;
    int64_t nunits; /* code units of bytecode (ob_size) */
    int64_t firsttraceable;
    struct linetab lines;
};

struct code_cache;

/* Create an empty cache. -ENOMEM. */
int code_cache_new(struct code_cache **out, struct ps_err *err) PS_WARN_UNUSED;

/* Free the cache and every entry; NULL-safe. Invalidates every code_info it returned. */
void code_cache_free(struct code_cache *cc);

/* Bytes of a code header to read so that code_fp_parse can parse it (layout dependent). */
size_t code_header_len(const struct layout *lay);

/* Parse a header copy of length code_header_len() into a fingerprint. */
void code_fp_parse(const struct layout *lay, const uint8_t *hdr, struct code_fp *fp);

/*
 * Resolve the code object at addr whose header fingerprint is fp (the caller read it). Checks
 * the type is PyCode_Type, reads the names and the location table on a miss. The returned info
 * is borrowed: valid until the next code_cache_resolve or code_cache_free call on this cache.
 * Errors: -PS_ECORRUPT (not a code object: the frame was torn or the layout is wrong), read
 * errors, -ENOMEM.
 */
int code_cache_resolve(struct code_cache *cc, const struct pyctx *c, uint64_t addr,
                       const struct code_fp *fp, const struct code_info **out,
                       struct ps_err *err) PS_WARN_UNUSED;

/*
 * The fingerprint cached for the code object at addr, into *fp; false when none is cached. For a
 * reader whose target is gone (its memory can no longer be read): the entry was checked against
 * the object when it was read, and is trusted unchecked from then on. Changes nothing.
 */
bool code_cache_peek(struct code_cache *cc, uint64_t addr, struct code_fp *fp);

/*
 * Call fn(ctx, addr) whenever an entry leaves the cache: evicted (LRU), or invalidated by another
 * code object found at its address. For a mirror of what the cache holds (the bpf program's
 * known_codes map). fn NULL: none. fn must not use the cache. Not called by code_cache_free.
 */
void code_cache_on_drop(struct code_cache *cc, void (*fn)(void *ctx, uint64_t addr), void *ctx);

/* Statistics: hits, misses, evictions, current entries. */
struct code_cache_stats {
    uint64_t hits, misses, evictions, invalidations;
    size_t entries;
};
void code_cache_stats(const struct code_cache *cc, struct code_cache_stats *out);

#endif
