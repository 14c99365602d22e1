/* SPDX-License-Identifier: MIT */
/*
 * Growth table: the containers found by src/growth/growth_scan.c, their lengths sampled over time, a
 * growth rate per container (least squares over a ring of the last `history` samples) and the
 * table sorted by it. Sits beside the snapshot path: pyproc -> growth -> CLI table / TUI pane.
 *
 * A sample costs, per batch of MEMSRC_MAX_IOV containers, one scatter read of every container's
 * header (type, length and the fields the size estimate needs) and, for dicts, one more of
 * their keys objects' headers. Each reading is validated against the container's invariants
 * (type unchanged; dict: used <= nentries, nentries + usable <= USABLE_FRACTION(size), sane
 * log2 sizes; list: size <= allocated; set: used <= fill <= mask; deque: 0 <= leftindex <
 * BLOCKLEN) and a reading that fails them, torn by a concurrent resize, is retried alone up to
 * GROWTH_RETRIES times, then kept as a missing point. A header that cannot be read, or a
 * changed type, marks the container gone.
 *
 * Invariants: every array is sized at scan time (nent <= max_containers, hist nent x history);
 * growth_sample allocates nothing. The shared time ring and every history row advance together,
 * so slot i of every row belongs to times[i].
 */
#include "pyscope/growth.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "growth_int.h"

/* Bounds of a sane dict's log2 size: CPython's PyDict_LOG_MINSIZE (Objects/dictobject.c, in no
 * header, so not in the layout tables: a validation bound only) and a size no dict reaches. The
 * entry sizes, kinds and deque block shape are the layout's (dict_entry_*, deque_block*). */
#define DICT_LOG2_MIN      3
#define DICT_LOG2_MAX      40
#define USABLE_FRACTION(n) (((n) << 1) / 3)
/* Larger lengths are garbage: no container holds 2^40 items. */
#define LEN_MAX (INT64_C(1) << 40)

/* Outcome of decoding one reading. */
enum {
    READ_OK,
    READ_TORN,
    READ_GONE
};

struct reading {
    int64_t length;
    uint64_t size;
};

uint64_t growth_le64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

bool growth_target_gone(int rc)
{
    return rc == -PS_EGONE || rc == -ESRCH;
}

const char *growth_kind_name(enum growth_kind kind)
{
    switch (kind) {
    case GROWTH_DICT: return "dict";
    case GROWTH_LIST: return "list";
    case GROWTH_SET: return "set";
    case GROWTH_DEQUE: return "deque";
    case GROWTH_LRU: return "lru_cache";
    }
    return "?";
}

/* ---- the address map ----------------------------------------------------------------------- */

static size_t map_slot(const struct growth_map *m, uint64_t key)
{
    return (size_t)((key >> 3) * UINT64_C(0x9e3779b97f4a7c15) >> 20) & (m->cap - 1);
}

void growth_map_clear(struct growth_map *m)
{
    memset(m->key, 0, m->cap * sizeof(*m->key));
    m->n = 0;
}

int growth_map_put(struct growth_map *m, uint64_t key, size_t val)
{
    size_t i = map_slot(m, key);

    for (size_t probe = 0; probe < m->cap && m->key[i] != 0; probe++) {
        if (m->key[i] == key)
            return 0;
        i = (i + 1) & (m->cap - 1);
    }
    if (key == 0 || m->n >= m->cap / 2)
        return -1;
    m->key[i] = key;
    m->val[i] = val;
    m->n++;
    return 1;
}

bool growth_map_get(const struct growth_map *m, uint64_t key, size_t *val)
{
    size_t i = map_slot(m, key);

    for (size_t probe = 0; probe < m->cap && m->key[i] != 0; probe++) {
        if (m->key[i] == key) {
            *val = m->val[i];
            return true;
        }
        i = (i + 1) & (m->cap - 1);
    }
    return false;
}

/* ---- rates --------------------------------------------------------------------------------- */

double growth_slope(const double *t, const int64_t *v, size_t n)
{
    double st = 0, sv = 0, stt = 0, stv = 0;
    size_t k = 0;

    for (size_t i = 0; i < n; i++) {
        if (v[i] < 0)
            continue;
        st += t[i];
        sv += (double)v[i];
        k++;
    }
    if (k < 2)
        return 0;
    st /= (double)k;
    sv /= (double)k;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < 0)
            continue;
        stt += (t[i] - st) * (t[i] - st);
        stv += (t[i] - st) * ((double)v[i] - sv);
    }
    return stt > 0 ? stv / stt : 0;
}

/* Copy row e's ring (and the times) oldest first into t/v; returns the count. */
static size_t ring_linear(const struct growth *g, size_t e, double *t, int64_t *v, size_t cap)
{
    size_t h = g->o.history;
    size_t n = g->filled < cap ? g->filled : cap;
    size_t start = (g->head + h - g->filled) % h + (g->filled - n);

    for (size_t i = 0; i < n; i++) {
        size_t s = (start + i) % h;
        t[i] = g->times[s];
        v[i] = g->hist[e * h + s];
    }
    return n;
}

static void update_rates(struct growth *g)
{
    double t[GROWTH_HISTORY_MAX];
    int64_t v[GROWTH_HISTORY_MAX];

    for (size_t e = 0; e < g->nent; e++) {
        size_t n = ring_linear(g, e, t, v, GROWTH_HISTORY_MAX);
        struct growth_entry *x = &g->ent[e];
        x->points = 0;
        for (size_t i = 0; i < n; i++)
            x->points += v[i] >= 0;
        x->rate = growth_slope(t, v, n);
    }
}

/* Live rows first, then by rate (fastest first), length, name. */
static int rank_cmp(const void *a, const void *b, void *arg)
{
    const struct growth *g = arg;
    const struct growth_entry *x = &g->ent[*(const size_t *)a];
    const struct growth_entry *y = &g->ent[*(const size_t *)b];

    if (x->gone != y->gone)
        return x->gone ? 1 : -1;
    if (x->rate != y->rate)
        return x->rate > y->rate ? -1 : 1;
    if (x->length != y->length)
        return x->length > y->length ? -1 : 1;
    return strcmp(x->f.name, y->f.name);
}

static void sort_rows(struct growth *g)
{
    for (size_t i = 0; i < g->nent; i++)
        g->order[i] = i;
    qsort_r(g->order, g->nent, sizeof(*g->order), rank_cmp, g);
}

/* ---- decoding one reading ------------------------------------------------------------------ */

static int64_t word(const uint8_t *buf, int32_t off)
{
    return (int64_t)growth_le64(buf + off);
}

static int decode_dict(const struct growth *g, const struct growth_entry *e, const uint8_t *h,
                       const uint8_t *kh, struct reading *r)
{
    const struct layout *l = g->lay;
    int64_t used = word(h, l->dict_used), usable = word(kh, l->dictkeys_usable);
    int64_t nent = word(kh, l->dictkeys_nentries), refcnt = word(kh, l->dictkeys_refcnt);
    unsigned log2 = kh[l->dictkeys_log2_size], log2i = kh[l->dictkeys_log2_index_bytes];
    unsigned kind = kh[l->dictkeys_kind];
    bool split = word(h, l->dict_values) != 0;
    int64_t frac;

    /* Py_EMPTY_KEYS, the shared keys of every empty dict, has log2 sizes 0 */
    bool empty = log2 == 0 && log2i == 0 && nent == 0 && usable == 0;

    if ((!empty &&
         (log2 < DICT_LOG2_MIN || log2 > DICT_LOG2_MAX || log2i < log2 || log2i > log2 + 3)) ||
        kind > (unsigned)l->dict_kind_split)
        return READ_TORN;
    frac = USABLE_FRACTION(INT64_C(1) << log2);
    if (used < 0 || nent < 0 || usable < 0 || used > nent || nent > frac || usable > frac - nent)
        return READ_TORN;
    r->length = used;
    r->size = e->f.basicsize + (uint64_t)l->gc_head_size;
    if (split)
        r->size += (uint64_t)(nent + usable) * 8;
    if (refcnt == 1)
        r->size += (uint64_t)l->dictkeys_size + (UINT64_C(1) << log2i) +
                   (uint64_t)frac * (uint64_t)(kind == (unsigned)l->dict_kind_general
                                                   ? l->dict_entry_general
                                                   : l->dict_entry_unicode);
    return READ_OK;
}

static int decode_list(const struct growth *g, const struct growth_entry *e, const uint8_t *h,
                       struct reading *r)
{
    const struct layout *l = g->lay;
    int64_t size = word(h, l->varobject_size), alloc = word(h, l->list_allocated);

    if (size < 0 || size > alloc || alloc > LEN_MAX || (alloc > 0 && word(h, l->list_items) == 0))
        return READ_TORN;
    r->length = size;
    r->size = e->f.basicsize + (uint64_t)l->gc_head_size + (uint64_t)alloc * 8;
    return READ_OK;
}

static int decode_set(const struct growth *g, const struct growth_entry *e, const uint8_t *h,
                      struct reading *r)
{
    const struct layout *l = g->lay;
    int64_t fill = word(h, l->set_fill), used = word(h, l->set_used), mask = word(h, l->set_mask);
    uint64_t table = (uint64_t)word(h, l->set_table);

    if (used < 0 || used > fill || fill > mask || mask < 7 || mask > LEN_MAX ||
        ((uint64_t)mask & ((uint64_t)mask + 1)) != 0 || table == 0)
        return READ_TORN;
    r->length = used;
    r->size = e->f.basicsize + (uint64_t)l->gc_head_size;
    if (table != e->f.addr + (uint64_t)l->set_smalltable)
        r->size += ((uint64_t)mask + 1) * (uint64_t)l->set_entry_size;
    return READ_OK;
}

static int decode_deque(const struct growth *g, const struct growth_entry *e, const uint8_t *h,
                        struct reading *r)
{
    const struct layout *l = g->lay;
    int64_t len = word(h, l->varobject_size), left = word(h, l->deque_leftindex);

    int64_t blocklen = l->deque_blocklen; /* > 0: check_fields */

    if (len < 0 || len > LEN_MAX || left < 0 || left >= blocklen)
        return READ_TORN;
    r->length = len;
    r->size = e->f.basicsize + (uint64_t)l->gc_head_size +
              (uint64_t)((left + len + blocklen - 1) / blocklen) * (uint64_t)l->deque_block_size;
    return READ_OK;
}

static bool is_dict(const struct growth_entry *e)
{
    return e->f.kind == GROWTH_DICT || e->f.kind == GROWTH_LRU;
}

/* The keys object a dict header points at, or 0 when it cannot be one. */
static uint64_t dict_keys(const struct growth *g, const uint8_t *h)
{
    uint64_t keys = growth_le64(h + g->lay->dict_keys);

    return (keys & 7) == 0 ? keys : 0;
}

static int decode(const struct growth *g, const struct growth_entry *e, const uint8_t *h,
                  const uint8_t *kh, struct reading *r)
{
    if (growth_le64(h + g->lay->object_type) != e->f.type)
        return READ_GONE;
    switch (e->f.kind) {
    case GROWTH_DICT:
    case GROWTH_LRU: return kh ? decode_dict(g, e, h, kh, r) : READ_TORN;
    case GROWTH_LIST: return decode_list(g, e, h, r);
    case GROWTH_SET: return decode_set(g, e, h, r);
    case GROWTH_DEQUE: return decode_deque(g, e, h, r);
    }
    return READ_TORN;
}

/* ---- sampling ------------------------------------------------------------------------------ */

/* Read iov[0..n); on a failed batch, slot by slot: ok[i] false for an unreadable slot. */
static int read_slots(struct growth *g, struct memsrc_iov *iov, size_t n, bool *ok,
                      struct ps_err *err)
{
    struct ps_err tmp = {0};
    int rc = n ? memsrc_readv(g->cx.src, iov, n, &tmp) : 0;

    g->st.read_calls += n > 0;
    for (size_t i = 0; i < n; i++)
        ok[i] = rc == 0;
    for (size_t i = 0; rc < 0 && i < n; i++) {
        if (growth_target_gone(rc))
            return ps_err_set(err, rc, "%s", tmp.msg);
        ps_err_clear(&tmp);
        int one = memsrc_readv(g->cx.src, &iov[i], 1, &tmp);
        g->st.read_calls++;
        ok[i] = one == 0;
        if (one < 0 && growth_target_gone(one))
            rc = one;
    }
    return rc < 0 && growth_target_gone(rc) ? ps_err_set(err, rc, "%s", tmp.msg) : 0;
}

/* Re-read one container alone (header, then keys header) and decode. */
static int reread(struct growth *g, size_t e, struct reading *r, struct ps_err *err)
{
    const struct growth_entry *x = &g->ent[e];
    uint8_t h[GROWTH_HDR_MAX], kh[GROWTH_KHDR_MAX];
    struct memsrc_iov iov = {x->f.addr, h, g->hdr_len[x->f.kind]};
    bool ok = false;
    int rc = read_slots(g, &iov, 1, &ok, err);

    if (rc < 0 || !ok)
        return rc < 0 ? rc : READ_GONE;
    if (!is_dict(x))
        return decode(g, x, h, NULL, r);
    iov = (struct memsrc_iov){dict_keys(g, h), kh, g->khdr_len};
    if (iov.addr == 0)
        return READ_TORN;
    rc = read_slots(g, &iov, 1, &ok, err);
    if (rc < 0)
        return rc;
    return ok ? decode(g, x, h, kh, r) : READ_TORN;
}

/* Record the outcome for entry e in ring slot `slot`. */
static int settle(struct growth *g, size_t e, int res, const struct reading *r, size_t slot,
                  struct ps_err *err)
{
    struct growth_entry *x = &g->ent[e];
    struct reading rr = *r;

    for (int k = 0; res == READ_TORN && k < GROWTH_RETRIES; k++) {
        g->st.retries++;
        res = reread(g, e, &rr, err);
        if (res < 0)
            return res;
    }
    g->hist[e * g->o.history + slot] = -1;
    if (res == READ_GONE) {
        x->gone = true;
        g->st.gone++;
    } else if (res == READ_TORN) {
        g->st.torn++;
    } else {
        x->length = rr.length;
        x->size = rr.size;
        g->hist[e * g->o.history + slot] = rr.length;
    }
    return 0;
}

/* Phase 2 of a batch: the keys headers of its dicts (kh[i] NULL when not available). */
static int batch_keys(struct growth *g, size_t n, const bool *ok, const uint8_t **kh,
                      struct ps_err *err)
{
    bool kok[MEMSRC_MAX_IOV];
    size_t slot[MEMSRC_MAX_IOV];
    size_t m = 0;
    int rc;

    for (size_t i = 0; i < n; i++) {
        const uint8_t *h = g->hdr + i * GROWTH_HDR_MAX;
        uint64_t keys = ok[i] && is_dict(&g->ent[g->bidx[i]]) ? dict_keys(g, h) : 0;
        kh[i] = NULL;
        if (keys == 0)
            continue;
        slot[m] = i;
        g->iov[m++] = (struct memsrc_iov){keys, g->khdr + i * GROWTH_KHDR_MAX, g->khdr_len};
    }
    rc = read_slots(g, g->iov, m, kok, err);
    for (size_t j = 0; rc == 0 && j < m; j++)
        kh[slot[j]] = kok[j] ? g->khdr + slot[j] * GROWTH_KHDR_MAX : NULL;
    return rc;
}

static int sample_batch(struct growth *g, size_t n, size_t slot, struct ps_err *err)
{
    bool ok[MEMSRC_MAX_IOV];
    const uint8_t *kh[MEMSRC_MAX_IOV];
    int rc;

    for (size_t i = 0; i < n; i++) {
        const struct growth_entry *x = &g->ent[g->bidx[i]];
        g->iov[i] =
            (struct memsrc_iov){x->f.addr, g->hdr + i * GROWTH_HDR_MAX, g->hdr_len[x->f.kind]};
    }
    rc = read_slots(g, g->iov, n, ok, err);
    if (rc == 0)
        rc = batch_keys(g, n, ok, kh, err);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        struct reading r = {0};
        int res = ok[i] ? decode(g, &g->ent[g->bidx[i]], g->hdr + i * GROWTH_HDR_MAX, kh[i], &r)
                        : READ_GONE;
        rc = settle(g, g->bidx[i], res, &r, slot, err);
    }
    return rc;
}

int growth_sample(struct growth *g, double now_s, struct ps_err *err)
{
    size_t slot = g->head;
    size_t n = 0;
    int rc = 0;

    g->times[slot] = now_s;
    for (size_t e = 0; rc == 0 && e < g->nent; e++) {
        g->hist[e * g->o.history + slot] = -1;
        if (g->ent[e].gone)
            continue;
        g->bidx[n++] = e;
        if (n == MEMSRC_MAX_IOV) {
            rc = sample_batch(g, n, slot, err);
            n = 0;
        }
    }
    if (rc == 0 && n > 0)
        rc = sample_batch(g, n, slot, err);
    if (rc < 0)
        return rc;
    g->head = (g->head + 1) % g->o.history;
    if (g->filled < g->o.history)
        g->filled++;
    g->st.samples++;
    update_rates(g);
    sort_rows(g);
    return 0;
}

/* ---- scanning: merge the discovery into the table ----------------------------------------- */

struct table {
    struct growth_entry *ent;
    int64_t *hist;
    size_t *order;
    size_t n;
};

static int table_alloc(struct table *t, size_t n, size_t history, struct ps_err *err)
{
    size_t rows = n ? n : 1;

    t->ent = calloc(rows, sizeof(*t->ent));
    t->hist = malloc(rows * history * sizeof(*t->hist));
    t->order = calloc(rows, sizeof(*t->order));
    t->n = 0;
    if (t->ent && t->hist && t->order)
        return 0;
    free(t->ent);
    free(t->hist);
    free(t->order);
    (void)ps_err_set(err, -ENOMEM, "out of memory for a growth table of %zu containers", n);
    return -ENOMEM;
}

/* Append old row e (or a new one for f when e is SIZE_MAX) to t. */
static void table_add(struct growth *g, struct table *t, const struct growth_found *f, size_t e)
{
    size_t h = g->o.history;
    struct growth_entry *x = &t->ent[t->n];

    if (e != SIZE_MAX) {
        *x = g->ent[e];
        memcpy(&t->hist[t->n * h], &g->hist[e * h], h * sizeof(*t->hist));
    } else {
        memset(x, 0, sizeof(*x));
        x->f = *f;
        x->length = -1;
        for (size_t i = 0; i < h; i++)
            t->hist[t->n * h + i] = -1;
    }
    t->n++;
}

/* Old row matching found f (same address, type and name, not gone), or SIZE_MAX. */
static size_t old_row(const struct growth *g, const struct growth_found *f)
{
    size_t e = 0;

    if (!growth_map_get(&g->map, f->addr, &e))
        return SIZE_MAX;
    const struct growth_entry *x = &g->ent[e];
    if (x->gone || x->f.type != f->type || strcmp(x->f.name, f->name) != 0)
        return SIZE_MAX;
    return e;
}

static int merge(struct growth *g, struct ps_err *err)
{
    struct table t;
    bool *kept = calloc(g->nent ? g->nent : 1, sizeof(*kept));

    if (!kept) {
        (void)ps_err_set(err, -ENOMEM, "out of memory for the growth merge");
        return -ENOMEM;
    }
    if (table_alloc(&t, g->nfound + g->nent, g->o.history, err) < 0) {
        free(kept);
        return -ENOMEM;
    }
    growth_map_clear(&g->map);
    for (size_t e = 0; e < g->nent; e++)
        if (!g->ent[e].gone)
            (void)growth_map_put(&g->map, g->ent[e].f.addr, e);
    for (size_t i = 0; i < g->nfound; i++) {
        size_t e = old_row(g, &g->found[i]);
        if (e != SIZE_MAX)
            kept[e] = true;
        table_add(g, &t, &g->found[i], e);
    }
    /* Rows no longer reachable under their name (replaced, deleted, freed) stay, marked gone,
     * while their history window still holds a point; then they are dropped. */
    for (size_t e = 0; e < g->nent; e++) {
        struct growth_entry *x = &g->ent[e];
        if (kept[e] || (x->gone && x->points == 0) || t.n >= g->o.max_containers)
            continue;
        g->st.gone += !x->gone;
        table_add(g, &t, NULL, e);
        t.ent[t.n - 1].gone = true;
    }
    free(kept);
    free(g->ent);
    free(g->hist);
    free(g->order);
    g->ent = t.ent;
    g->hist = t.hist;
    g->order = t.order;
    g->nent = t.n;
    return 0;
}

int growth_scan(struct growth *g, struct ps_err *err)
{
    int rc = growth_discover(g, err);

    if (rc == 0)
        rc = merge(g, err);
    if (rc < 0)
        return rc;
    g->st.scans++;
    g->st.containers = g->nent;
    update_rates(g);
    sort_rows(g);
    return 0;
}

/* ---- lifecycle ----------------------------------------------------------------------------- */

/* Bytes from an object's start that cover every field at offs[0..n) (8-byte words). */
static size_t span(const int32_t *offs, size_t n)
{
    int32_t m = 0;

    for (size_t i = 0; i < n; i++)
        m = offs[i] > m ? offs[i] : m;
    return (size_t)m + 8;
}

#define SPAN(...) span((const int32_t[]){__VA_ARGS__}, sizeof((int32_t[]){__VA_ARGS__}) / 4)

static int check_fields(const struct layout *l, struct ps_err *err)
{
    const int32_t need[] = {
        l->object_type,     l->varobject_size,     l->type_basicsize,     l->type_flags,
        l->type_dict,       l->module_dict,        l->interp_modules,     l->dict_used,
        l->dict_keys,       l->dict_values,        l->dictkeys_refcnt,    l->dictkeys_log2_size,
        l->dictkeys_usable, l->dictkeys_nentries,  l->list_items,         l->list_allocated,
        l->set_fill,        l->set_used,           l->set_mask,           l->set_table,
        l->set_smalltable,  l->deque_leftindex,    l->lru_cache_cache,    l->gc_head_size,
        l->set_entry_size,  l->dict_entry_general, l->dict_entry_unicode, l->dict_kind_general,
        l->dict_kind_split, l->deque_blocklen,     l->deque_block_size};

    for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++)
        if (need[i] < 0)
            return ps_err_set(err, -PS_EVERSION,
                              "the Python %s layout lacks a field growth needs (#%zu); "
                              "regenerate the layouts with scripts/gen-layouts",
                              l->name, i);
    if (l->deque_blocklen == 0)
        return ps_err_set(err, -PS_EVERSION,
                          "the Python %s layout says a deque block holds no items; regenerate "
                          "the layouts with scripts/gen-layouts",
                          l->name);
    return 0;
}

/* Header lengths per kind from the layout; -PS_EVERSION when a field is missing or too far. */
static int header_lengths(struct growth *g, struct ps_err *err)
{
    const struct layout *l = g->lay;
    int rc = check_fields(l, err);

    if (rc < 0)
        return rc;
    g->hdr_len[GROWTH_DICT] = SPAN(l->object_type, l->dict_used, l->dict_keys, l->dict_values);
    g->hdr_len[GROWTH_LRU] = g->hdr_len[GROWTH_DICT];
    g->hdr_len[GROWTH_LIST] =
        SPAN(l->object_type, l->varobject_size, l->list_items, l->list_allocated);
    g->hdr_len[GROWTH_SET] =
        SPAN(l->object_type, l->set_fill, l->set_used, l->set_mask, l->set_table);
    g->hdr_len[GROWTH_DEQUE] = SPAN(l->object_type, l->varobject_size, l->deque_leftindex);
    g->khdr_len = SPAN(l->dictkeys_refcnt, l->dictkeys_usable, l->dictkeys_nentries,
                       l->dictkeys_kind, l->dictkeys_log2_size, l->dictkeys_log2_index_bytes);
    for (size_t k = 0; k <= GROWTH_LRU; k++)
        if (g->hdr_len[k] > GROWTH_HDR_MAX)
            return ps_err_set(err, -PS_EVERSION, "a %s header of Python %s is over %d bytes",
                              growth_kind_name((enum growth_kind)k), l->name, GROWTH_HDR_MAX);
    if (g->khdr_len > GROWTH_KHDR_MAX)
        return ps_err_set(err, -PS_EVERSION, "dict keys headers of Python %s are over %d bytes",
                          l->name, GROWTH_KHDR_MAX);
    return 0;
}

static int opts_apply(struct growth *g, const struct growth_opts *o, struct ps_err *err)
{
    g->o = o ? *o : (struct growth_opts){0};
    if (g->o.max_modules == 0)
        g->o.max_modules = GROWTH_DEFAULT_MAX_MODULES;
    if (g->o.max_containers == 0)
        g->o.max_containers = GROWTH_DEFAULT_MAX_CONTAINERS;
    if (g->o.history == 0)
        g->o.history = GROWTH_DEFAULT_HISTORY;
    if (g->o.max_modules > GROWTH_MAX_MODULES || g->o.max_containers > GROWTH_MAX_CONTAINERS ||
        g->o.history < 2 || g->o.history > GROWTH_HISTORY_MAX)
        return ps_err_set(err, -EINVAL,
                          "growth options out of range: at most %d modules, %d containers, "
                          "2 to %d samples of history",
                          GROWTH_MAX_MODULES, GROWTH_MAX_CONTAINERS, GROWTH_HISTORY_MAX);
    return 0;
}

static int alloc_scratch(struct growth *g, struct ps_err *err)
{
    size_t mapcap = 1024;

    while (mapcap < 4 * g->o.max_containers)
        mapcap <<= 1;
    g->nscratch = g->o.max_modules > GROWTH_MAX_GLOBALS ? g->o.max_modules : GROWTH_MAX_GLOBALS;
    g->map.cap = mapcap;
    g->map.key = calloc(mapcap, sizeof(*g->map.key));
    g->map.val = calloc(mapcap, sizeof(*g->map.val));
    g->found = calloc(g->o.max_containers, sizeof(*g->found));
    g->mkey = calloc(g->o.max_modules, sizeof(uint64_t));
    g->mval = calloc(g->o.max_modules, sizeof(uint64_t));
    g->keys = calloc(g->nscratch, sizeof(uint64_t));
    g->vals = calloc(g->nscratch, sizeof(uint64_t));
    g->types = calloc(g->nscratch, sizeof(uint64_t));
    g->flags = calloc(g->nscratch, sizeof(uint64_t));
    g->times = calloc(g->o.history, sizeof(double));
    g->iov = calloc(MEMSRC_MAX_IOV, sizeof(*g->iov));
    g->hdr = calloc(MEMSRC_MAX_IOV, GROWTH_HDR_MAX);
    g->khdr = calloc(MEMSRC_MAX_IOV, GROWTH_KHDR_MAX);
    g->bidx = calloc(MEMSRC_MAX_IOV, sizeof(*g->bidx));
    if (g->map.key && g->map.val && g->found && g->mkey && g->mval && g->keys && g->vals &&
        g->types && g->flags && g->times && g->iov && g->hdr && g->khdr && g->bidx)
        return 0;
    return ps_err_set(err, -ENOMEM, "out of memory for growth tables of %zu containers",
                      g->o.max_containers);
}

int growth_new(struct pyproc *pp, const struct growth_opts *opts, struct growth **out,
               struct ps_err *err)
{
    struct growth *g = calloc(1, sizeof(*g));
    int rc;

    if (!g)
        return ps_err_set(err, -ENOMEM, "out of memory for the growth handle");
    g->cx = pyproc_ctx(pp);
    g->lay = g->cx.lay;
    rc = opts_apply(g, opts, err);
    if (rc == 0)
        rc = header_lengths(g, err);
    if (rc == 0)
        rc = alloc_scratch(g, err);
    if (rc == 0)
        rc = memsrc_read_u64(g->cx.src,
                             g->cx.syms->runtime + (uint64_t)g->lay->runtime_interpreters_main,
                             &g->interp, err);
    if (rc == 0 && g->interp == 0)
        rc = ps_err_set(err, -PS_ECORRUPT,
                        "the runtime has no main interpreter (starting up or shutting down)");
    if (rc < 0) {
        growth_free(g);
        return rc;
    }
    *out = g;
    return 0;
}

void growth_free(struct growth *g)
{
    if (!g)
        return;
    free(g->map.key);
    free(g->map.val);
    free(g->found);
    free(g->mkey);
    free(g->mval);
    free(g->keys);
    free(g->vals);
    free(g->types);
    free(g->flags);
    free(g->times);
    free(g->iov);
    free(g->hdr);
    free(g->khdr);
    free(g->bidx);
    free(g->ent);
    free(g->hist);
    free(g->order);
    free(g);
}

/* ---- accessors ----------------------------------------------------------------------------- */

size_t growth_count(const struct growth *g)
{
    return g->nent;
}

bool growth_row(const struct growth *g, size_t rank, struct growth_row *row)
{
    const struct growth_entry *x;

    if (rank >= g->nent)
        return false;
    x = &g->ent[g->order[rank]];
    *row = (struct growth_row){
        .name = x->f.name,
        .type_name = x->f.type_name,
        .kind = x->f.kind,
        .addr = x->f.addr,
        .gone = x->gone,
        .length = x->length,
        .size = x->size,
        .rate_per_min = x->rate * 60.0,
        .points = x->points,
    };
    return true;
}

size_t growth_history(const struct growth *g, size_t rank, double *t, int64_t *len, size_t cap)
{
    if (rank >= g->nent)
        return 0;
    return ring_linear(g, g->order[rank], t, len, cap);
}

const struct growth_stats *growth_stats(const struct growth *g)
{
    return &g->st;
}
