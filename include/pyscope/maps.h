/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_MAPS_H
#define PYSCOPE_MAPS_H

/*
 * /proc/PID/maps: parsed once per attach into an owned, sorted array. Used to find the images
 * that hold the CPython runtime (the executable or libpython), their load bias, and to check that
 * target pointers fall in mapped memory (a cheap first validation of pointers read from the
 * target). Bounded: at most MAPS_MAX_ENTRIES lines, paths truncated to PATH_MAX.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pyscope/err.h"

#define MAPS_MAX_ENTRIES 65536
#define MAPS_PATH_MAX    4096

struct maps_entry {
    uint64_t start;
    uint64_t end;    /* exclusive */
    uint64_t offset; /* file offset */
    uint64_t inode;
    unsigned dev_major, dev_minor;
    bool r, w, x, p; /* permissions; p = private */
    bool deleted;    /* path ended in " (deleted)" (suffix removed from path) */
    char *path;      /* owned; "" for anonymous, "[heap]", "[stack]" ... */
};

struct maps {
    struct maps_entry *v;
    size_t n;
};

/* Parse /proc/PID/maps. A line that overlaps the one before it (a read torn by the process
 * changing its mappings between two of the kernel's pages) is taken as the newer view: the
 * entries it covers are dropped, so the result is ascending and disjoint. Errors: -ESRCH (no
 * such process), -EACCES/-EPERM, -ENOMEM, -PS_ELIMIT, -PS_EFORMAT (a malformed line). */
int maps_read(pid_t pid, struct maps *out, struct ps_err *err) PS_WARN_UNUSED;

/* Parse maps text (unit tests, core files). Malformed lines are -PS_EFORMAT naming the line. */
int maps_parse(const char *text, size_t len, struct maps *out, struct ps_err *err) PS_WARN_UNUSED;

/* Free entries; NULL-safe; leaves *m empty. */
void maps_free(struct maps *m);

/* Entry containing addr, or NULL. O(log n). */
const struct maps_entry *maps_find(const struct maps *m, uint64_t addr);

/* True when [addr, addr+len) lies in readable mappings (may span adjacent entries). */
bool maps_readable(const struct maps *m, uint64_t addr, uint64_t len);

/*
 * First entry whose path's basename matches `libpython3.N*.so*` style prefix `prefix`
 * (e.g. "libpython3.") at file offset 0, or NULL.
 */
const struct maps_entry *maps_find_lib(const struct maps *m, const char *prefix);

/* Lowest-addressed entry mapping file `path` (exact match), or NULL. */
const struct maps_entry *maps_first_of(const struct maps *m, const char *path);

#endif
