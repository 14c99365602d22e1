/* SPDX-License-Identifier: MIT */
/*
 * Code-object resolver and its bounded cache (see code.h).
 *
 * Data flow: the walker reads every code header of a stack in one scatter read and parses it
 * into a struct code_fp; code_cache_resolve then either finds an entry with the same address
 * and an equal fingerprint (a hit: no target read at all) or reads the names and the location
 * table (a miss). An entry whose fingerprint differs is a different code object at a reused
 * address: it is dropped and resolved again.
 *
 * Structure: chained hash buckets over entries, plus an intrusive doubly linked LRU list. At
 * CODE_CACHE_CAP entries the least recently used one is freed before a new one is added, so
 * memory is bounded by CAP * (3 strings of at most PYOBJ_STR_MAX_CHARS*4 bytes + a decoded
 * table of at most LINETAB_MAX_ENTRIES ranges).
 *
 * Never: trusts a length from the target without a cap, or returns an entry it has not
 * validated against the caller's fingerprint.
 */
#include "pyscope/code.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define CODE_BUCKETS  8192 /* power of two, 2x the cap: short chains */
#define CODE_NAME_MAX (PYOBJ_STR_MAX_CHARS * 4 + 1)

struct code_entry {
    struct code_info info;
    struct code_entry *hnext;               /* bucket chain */
    struct code_entry *lru_prev, *lru_next; /* most recent at head */
};

struct code_cache {
    struct code_entry *buckets[CODE_BUCKETS];
    struct code_entry *lru_head, *lru_tail;
    size_t entries;
    struct code_cache_stats stats;
    void (*on_drop)(void *ctx, uint64_t addr); /* code_cache_on_drop */
    void *drop_ctx;
};

int code_cache_new(struct code_cache **out, struct ps_err *err)
{
    struct code_cache *cc = calloc(1, sizeof(*cc));

    if (!cc)
        return ps_err_set(err, -ENOMEM, "cannot allocate the code cache: out of memory");
    *out = cc;
    return 0;
}

static void entry_free(struct code_entry *e)
{
    if (!e)
        return;
    free((char *)e->info.filename);
    free((char *)e->info.name);
    free((char *)e->info.qualname);
    linetab_free(&e->info.lines);
    free(e);
}

void code_cache_free(struct code_cache *cc)
{
    struct code_entry *e, *next;

    if (!cc)
        return;
    for (e = cc->lru_head; e; e = next) {
        next = e->lru_next;
        entry_free(e);
    }
    free(cc);
}

static size_t bucket_of(uint64_t addr)
{
    /* Code objects are 16-byte aligned; mix the high bits in (Fibonacci hashing). */
    return (size_t)(((addr >> 4) * 0x9E3779B97F4A7C15ull) >> 51) & (CODE_BUCKETS - 1);
}

static void lru_unlink(struct code_cache *cc, struct code_entry *e)
{
    if (e->lru_prev)
        e->lru_prev->lru_next = e->lru_next;
    else
        cc->lru_head = e->lru_next;
    if (e->lru_next)
        e->lru_next->lru_prev = e->lru_prev;
    else
        cc->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

static void lru_push_front(struct code_cache *cc, struct code_entry *e)
{
    e->lru_prev = NULL;
    e->lru_next = cc->lru_head;
    if (cc->lru_head)
        cc->lru_head->lru_prev = e;
    cc->lru_head = e;
    if (!cc->lru_tail)
        cc->lru_tail = e;
}

/* Unlink e from its bucket and the LRU list and free it. */
static void cache_remove(struct code_cache *cc, struct code_entry *e)
{
    struct code_entry **pp = &cc->buckets[bucket_of(e->info.addr)];

    while (*pp && *pp != e)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = e->hnext;
    lru_unlink(cc, e);
    cc->entries--;
    if (cc->on_drop)
        cc->on_drop(cc->drop_ctx, e->info.addr);
    entry_free(e);
}

static struct code_entry *cache_find(struct code_cache *cc, uint64_t addr)
{
    struct code_entry *e = cc->buckets[bucket_of(addr)];

    while (e && e->info.addr != addr)
        e = e->hnext;
    return e;
}

size_t code_header_len(const struct layout *lay)
{
    const int32_t offs[] = {lay->code_firstlineno,    lay->code_version,   lay->code_filename,
                            lay->code_name,           lay->code_qualname,  lay->code_linetable,
                            lay->code_firsttraceable, lay->varobject_size, lay->object_type};

    return layout_span(offs, sizeof(offs) / sizeof(offs[0]));
}

static uint64_t rd64(const uint8_t *hdr, int32_t off)
{
    return layout_get_u64(hdr, off);
}

static int64_t rd_i32(const uint8_t *hdr, int32_t off)
{
    return (int32_t)layout_get_u32(hdr, off);
}

void code_fp_parse(const struct layout *lay, const uint8_t *hdr, struct code_fp *fp)
{
    fp->type = rd64(hdr, lay->object_type);
    fp->size = rd64(hdr, lay->varobject_size);
    fp->filename = rd64(hdr, lay->code_filename);
    fp->name = rd64(hdr, lay->code_name);
    fp->qualname = rd64(hdr, lay->code_qualname);
    fp->linetable = rd64(hdr, lay->code_linetable);
    fp->firstlineno = rd_i32(hdr, lay->code_firstlineno);
    /* co_version is a uint32 (3.12+); absent on 3.11, where the pointers fingerprint. */
    fp->version = lay->code_version >= 0 ? (int64_t)(uint32_t)rd_i32(hdr, lay->code_version) : -1;
    /* _co_firsttraceable is an int. */
    fp->firsttraceable = rd_i32(hdr, lay->code_firsttraceable);
}

static bool fp_equal(const struct code_fp *a, const struct code_fp *b)
{
    return a->type == b->type && a->size == b->size && a->filename == b->filename &&
           a->name == b->name && a->qualname == b->qualname && a->linetable == b->linetable &&
           a->firstlineno == b->firstlineno && a->version == b->version &&
           a->firsttraceable == b->firsttraceable;
}

/* Read a str into a freshly allocated, exactly sized copy. */
static int read_name(const struct pyctx *c, uint64_t obj, const char **out, struct ps_err *err)
{
    char *buf = malloc(CODE_NAME_MAX);
    char *copy;
    int rc;

    if (!buf)
        return ps_err_set(err, -ENOMEM, "cannot allocate a name buffer: out of memory");
    rc = pyobj_str(c, obj, buf, CODE_NAME_MAX, NULL, err);
    if (rc < 0)
        goto out;
    copy = strdup(buf);
    if (!copy) {
        rc = ps_err_set(err, -ENOMEM, "cannot copy a name: out of memory");
        goto out;
    }
    *out = copy;
out:
    free(buf);
    return rc;
}

static int read_lines(const struct pyctx *c, struct code_info *ci, struct ps_err *err)
{
    uint8_t *bytes = NULL;
    size_t len = 0;
    int rc;

    rc = pyobj_bytes(c, ci->fp.linetable, CODE_LINETAB_MAX, &bytes, &len, err);
    if (rc < 0)
        return rc;
    rc = linetab_decode(bytes, len, ci->firstlineno, &ci->lines, err);
    free(bytes);
    return rc;
}

static int validate_fp(const struct pyctx *c, uint64_t addr, const struct code_fp *fp,
                       struct ps_err *err)
{
    if (fp->type != c->syms->code_type)
        return ps_err_set(err, -PS_ECORRUPT,
                          "object at 0x%llx is not a code object (type 0x%llx, PyCode_Type is "
                          "0x%llx): the frame changed while it was read, or the layout is wrong",
                          (unsigned long long)addr, (unsigned long long)fp->type,
                          (unsigned long long)c->syms->code_type);
    if (fp->size > (1u << 24) || fp->firstlineno < 0 || fp->firsttraceable < 0 ||
        (uint64_t)fp->firsttraceable > fp->size)
        return ps_err_set(err, -PS_ECORRUPT,
                          "code object at 0x%llx has implausible fields (size %llu, first line "
                          "%lld)",
                          (unsigned long long)addr, (unsigned long long)fp->size,
                          (long long)fp->firstlineno);
    return 0;
}

static int entry_fill(struct code_entry *e, const struct pyctx *c, struct ps_err *err)
{
    struct code_info *ci = &e->info;
    int rc;

    ci->firstlineno = (int)ci->fp.firstlineno;
    ci->nunits = (int64_t)ci->fp.size;
    ci->firsttraceable = ci->fp.firsttraceable;
    rc = read_name(c, ci->fp.filename, &ci->filename, err);
    if (rc == 0)
        rc = read_name(c, ci->fp.name, &ci->name, err);
    if (rc == 0)
        rc = read_name(c, ci->fp.qualname, &ci->qualname, err);
    if (rc == 0)
        rc = read_lines(c, ci, err);
    if (rc < 0)
        ps_err_prefix(err, "code object at 0x%llx: ", (unsigned long long)ci->addr);
    return rc;
}

static int cache_insert(struct code_cache *cc, const struct pyctx *c, uint64_t addr,
                        const struct code_fp *fp, struct code_entry **out, struct ps_err *err)
{
    struct code_entry *e = calloc(1, sizeof(*e));
    size_t b;
    int rc;

    if (!e)
        return ps_err_set(err, -ENOMEM, "cannot allocate a code cache entry: out of memory");
    e->info.addr = addr;
    e->info.fp = *fp;
    rc = entry_fill(e, c, err);
    if (rc < 0) {
        entry_free(e);
        return rc;
    }
    if (cc->entries >= CODE_CACHE_CAP && cc->lru_tail) {
        cache_remove(cc, cc->lru_tail);
        cc->stats.evictions++;
    }
    b = bucket_of(addr);
    e->hnext = cc->buckets[b];
    cc->buckets[b] = e;
    lru_push_front(cc, e);
    cc->entries++;
    *out = e;
    return 0;
}

int code_cache_resolve(struct code_cache *cc, const struct pyctx *c, uint64_t addr,
                       const struct code_fp *fp, const struct code_info **out, struct ps_err *err)
{
    struct code_entry *e;
    int rc;

    rc = validate_fp(c, addr, fp, err);
    if (rc < 0)
        return rc;
    e = cache_find(cc, addr);
    if (e && !fp_equal(&e->info.fp, fp)) {
        cache_remove(cc, e);
        cc->stats.invalidations++;
        e = NULL;
    }
    if (e) {
        cc->stats.hits++;
        lru_unlink(cc, e);
        lru_push_front(cc, e);
        *out = &e->info;
        return 0;
    }
    cc->stats.misses++;
    rc = cache_insert(cc, c, addr, fp, &e, err);
    if (rc < 0)
        return rc;
    *out = &e->info;
    return 0;
}

bool code_cache_peek(struct code_cache *cc, uint64_t addr, struct code_fp *fp)
{
    const struct code_entry *e = cache_find(cc, addr);

    if (e)
        *fp = e->info.fp;
    return e != NULL;
}

void code_cache_on_drop(struct code_cache *cc, void (*fn)(void *ctx, uint64_t addr), void *ctx)
{
    cc->on_drop = fn;
    cc->drop_ctx = fn ? ctx : NULL;
}

void code_cache_stats(const struct code_cache *cc, struct code_cache_stats *out)
{
    *out = cc->stats;
    out->entries = cc->entries;
}
