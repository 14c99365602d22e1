/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_GROWTH_INT_H
#define PYSCOPE_GROWTH_INT_H

/*
 * Private to src/growth.c (table, samples, rates) and src/growth/growth_scan.c (discovery): the
 * handle's fields, the scan's output records and the address map both use.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pyscope/growth.h"
#include "pyscope/memsrc.h"

/* A container found by a scan. */
struct growth_found {
    uint64_t addr;      /* the object whose length we read */
    uint64_t type;      /* its ob_type at scan time */
    uint64_t basicsize; /* its type's tp_basicsize */
    enum growth_kind kind;
    char name[GROWTH_NAME_MAX];
    char type_name[GROWTH_TYPE_NAME_MAX];
};

/* A row of the table. */
struct growth_entry {
    struct growth_found f;
    bool gone;
    int64_t length; /* latest consistent length, -1 before the first */
    uint64_t size;
    double rate; /* items per second */
    size_t points;
};

/*
 * Open-addressing map from a target address (never 0) to an index; cap is a power of two and
 * the map is kept at most half full (growth_map_put refuses beyond).
 */
struct growth_map {
    uint64_t *key;
    size_t *val;
    size_t cap;
    size_t n;
};

/* Bytes of a container header / dict keys header read per sample (checked in growth_new). */
#define GROWTH_HDR_MAX  64
#define GROWTH_KHDR_MAX 48

struct growth {
    struct pyctx cx; /* the readers' context (pyproc_ctx of the process: borrowed) */
    const struct layout *lay;
    struct growth_opts o;
    uint64_t interp;
    uint64_t deque_type; /* collections.deque, 0 when not imported */
    uint64_t lru_type;   /* functools._lru_cache_wrapper, 0 when not imported */
    size_t hdr_len[GROWTH_LRU + 1];
    size_t khdr_len;

    /* scan output and scratch */
    struct growth_found *found;
    size_t nfound, capfound;
    struct growth_map map; /* scan: addresses seen; merge: old entries by address */
    uint64_t *mkey, *mval; /* sys.modules entries (max_modules) */
    size_t nmods;
    uint64_t *keys, *vals, *types, *flags; /* one dict's entries (nscratch each) */
    size_t nscratch;                       /* max(GROWTH_MAX_GLOBALS, max_modules) */
    size_t nkv;                            /* entries loaded into keys/vals */

    /* the table */
    struct growth_entry *ent;
    size_t nent;
    int64_t *hist; /* nent rows of o.history lengths (-1: missing) */
    double *times; /* o.history ring of sample times */
    size_t head;   /* next ring slot */
    size_t filled; /* ring slots in use */
    size_t *order; /* entry indices by rank */

    /* sample scratch, MEMSRC_MAX_IOV each */
    struct memsrc_iov *iov;
    uint8_t *hdr;  /* GROWTH_HDR_MAX per container */
    uint8_t *khdr; /* GROWTH_KHDR_MAX per container */
    size_t *bidx;  /* entry index per batch slot */

    struct growth_stats st;
};

/* Fill g->found (g->nfound) with a fresh discovery; updates st.modules and st.skipped. */
int growth_discover(struct growth *g, struct ps_err *err) PS_WARN_UNUSED;

/* Map operations: clear; put (1 inserted, 0 already there, -1 the map is at its load limit:
 * half full); get (false when absent). */
void growth_map_clear(struct growth_map *m);
int growth_map_put(struct growth_map *m, uint64_t key, size_t val);
bool growth_map_get(const struct growth_map *m, uint64_t key, size_t *val);

/* Little-endian words out of a local copy of target bytes. */
uint64_t growth_le64(const uint8_t *p);

/* True for the errors that mean the whole target is gone (not one object). */
bool growth_target_gone(int rc);

#endif
