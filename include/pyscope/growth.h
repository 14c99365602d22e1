/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_GROWTH_H
#define PYSCOPE_GROWTH_H

/*
 * Leak hunt: which module-level containers grow. A scan walks sys.modules of the main
 * interpreter, each module's globals and, one level down, the attributes of module-level classes
 * (heap types), and keeps the containers it finds: dict (and dict subclasses), list (and list
 * subclasses), set, collections.deque and the cache dict of functools.lru_cache wrappers. A
 * sample then re-reads every kept container's length in scatter reads (MEMSRC_MAX_IOV
 * containers per read, two reads per batch when it holds dicts) and keeps a bounded history per
 * container; the table is sorted by growth rate, a least-squares slope over the history window.
 *
 * The target is never stopped: a length read while the target resizes the container can be
 * torn; every read is validated (type unchanged, counts consistent with the table sizes) and
 * retried up to GROWTH_RETRIES times; a sample that stays inconsistent is a missing point. A
 * container whose type changed or whose memory became unreadable is marked gone; a rescan
 * (growth_scan again) marks containers gone that are no longer reachable under their name (a
 * replaced dict, a deleted module) and picks up new ones.
 *
 * Memory: the tables are sized at scan time (at most max_containers entries, each with
 * `history` samples), samples allocate nothing. One owner thread; the pyproc is borrowed and
 * must outlive the growth handle.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pyscope/err.h"
#include "pyscope/pyproc.h"

/* Default caps (a big service imports ~3,000 modules; 20,000 containers is ~8 MB of tables). */
#define GROWTH_DEFAULT_MAX_MODULES    5000
#define GROWTH_DEFAULT_MAX_CONTAINERS 20000
#define GROWTH_DEFAULT_HISTORY        120
/* Hard limits for the options above. */
#define GROWTH_MAX_MODULES    100000
#define GROWTH_MAX_CONTAINERS 1000000
#define GROWTH_HISTORY_MAX    3600
/* Globals (or class attributes) read per module or class; the rest are skipped and counted. */
#define GROWTH_MAX_GLOBALS 65536
/* Re-reads of one container whose sample looked torn. */
#define GROWTH_RETRIES 3
/* Longest "module.Class.attr" name and type name kept (longer ones are cut). */
#define GROWTH_NAME_MAX      160
#define GROWTH_TYPE_NAME_MAX 64

struct growth_opts {
    size_t max_modules;    /* 0: GROWTH_DEFAULT_MAX_MODULES */
    size_t max_containers; /* 0: GROWTH_DEFAULT_MAX_CONTAINERS */
    size_t history;        /* samples kept per container (>= 2); 0: GROWTH_DEFAULT_HISTORY */
    bool no_classes;       /* do not look into module-level classes */
};

enum growth_kind {
    GROWTH_DICT,  /* dict or dict subclass: ma_used */
    GROWTH_LIST,  /* list or list subclass: ob_size */
    GROWTH_SET,   /* set: used */
    GROWTH_DEQUE, /* collections.deque: ob_size */
    GROWTH_LRU,   /* functools.lru_cache wrapper: its cache dict's ma_used */
};

/* One row of the table, a view valid until the next growth_scan/growth_sample/growth_free. */
struct growth_row {
    const char *name;      /* "module.attr" or "module.Class.attr" */
    const char *type_name; /* "dict", "collections.defaultdict", "lru_cache", ... */
    enum growth_kind kind;
    uint64_t addr;       /* the container (for GROWTH_LRU: its cache dict) */
    bool gone;           /* freed, replaced or unreachable since; length/size are the last seen */
    int64_t length;      /* latest consistent length, -1 before the first one */
    uint64_t size;       /* shallow size estimate in bytes (sys.getsizeof's arithmetic) */
    double rate_per_min; /* least-squares growth over the history window, items per minute */
    size_t points;       /* consistent samples in the window */
};

struct growth_stats {
    uint64_t scans;
    uint64_t samples;
    size_t modules;      /* modules seen by the last scan */
    size_t containers;   /* rows in the table (gone ones included) */
    uint64_t skipped;    /* modules, globals or containers left out by the caps */
    uint64_t retries;    /* torn-looking reads retried */
    uint64_t torn;       /* samples still inconsistent after GROWTH_RETRIES (missing points) */
    uint64_t gone;       /* containers marked gone so far */
    uint64_t read_calls; /* memsrc_readv calls made by samples */
};

struct growth;

/*
 * A growth handle over pp (borrowed; must outlive it) with opts (NULL: defaults). Resolves the
 * interpreter and checks that the layout has every field growth reads. Does not scan: call
 * growth_scan. On success *out is owned by the caller (growth_free). Errors: -EINVAL (bad
 * opts), -PS_EVERSION (layout lacks a field), -ENOMEM, read errors.
 */
int growth_new(struct pyproc *pp, const struct growth_opts *opts, struct growth **out,
               struct ps_err *err) PS_WARN_UNUSED;

/*
 * (Re)discover the containers. Containers still reachable under the same name, at the same
 * address and with the same type keep their history; the others are marked gone (a gone row
 * stays, sorted after the live ones, until its history window holds no point, at most
 * `history` samples, and is dropped by the next scan after that); new ones start with an empty
 * history. Bounded by the
 * caps; what they leave out is counted in stats.skipped. A module or class that cannot be read
 * is skipped, not an error. Errors: -PS_EGONE / -ESRCH (target exited), -ENOMEM, -PS_ECORRUPT
 * when sys.modules itself cannot be read.
 */
int growth_scan(struct growth *g, struct ps_err *err) PS_WARN_UNUSED;

/*
 * Read every live container's length once, at time now_s (seconds on any monotonic clock,
 * increasing), append it to the history, recompute rates and re-sort. No allocation. Errors:
 * -PS_EGONE / -ESRCH (target exited); a single container's failure is not an error.
 */
int growth_sample(struct growth *g, double now_s, struct ps_err *err) PS_WARN_UNUSED;

/* Rows in the table. */
size_t growth_count(const struct growth *g);

/*
 * Row by rank (0 = fastest growing; then by length); false when rank is out of range. Sorted
 * by growth_sample (and growth_scan).
 */
bool growth_row(const struct growth *g, size_t rank, struct growth_row *row);

/*
 * History of the row at rank, oldest first: up to cap points into t[] (seconds) and len[]
 * (-1 where the sample was missing). Returns the number written (0 for a bad rank).
 */
size_t growth_history(const struct growth *g, size_t rank, double *t, int64_t *len, size_t cap);

/* Counters since growth_new. */
const struct growth_stats *growth_stats(const struct growth *g);

/* Free the handle (not the pyproc). NULL-safe. */
void growth_free(struct growth *g);

/*
 * Least-squares slope of v over t (units of v per unit of t) over the n points whose v is >= 0
 * (negative v are missing points); 0 when fewer than two such points or all at one time. Pure.
 */
double growth_slope(const double *t, const int64_t *v, size_t n);

/* "dict", "list", "set", "deque", "lru_cache". */
const char *growth_kind_name(enum growth_kind kind);

#endif
