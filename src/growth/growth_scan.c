/* SPDX-License-Identifier: MIT */
/*
 * Growth discovery: sys.modules -> each module's globals -> the containers among them, and one
 * level into module-level classes (heap types) -> their attributes. Output: g->found, one
 * record per distinct container (the first name met wins: sys.modules order, then globals
 * order), with its type, tp_basicsize and a display type name.
 *
 * Cost: per module one dict walk (pyobj_dict_iter, 32 entries per scatter read), then two
 * batched reads for the values' types and the types' tp_flags, then one str read per container
 * or class name. Bounded by max_modules, GROWTH_MAX_GLOBALS per dict, max_containers (and as
 * many classes); everything left out is counted in st.skipped. Types are recognised by address:
 * the exported PyDict/PyList/PySet types, collections.deque and functools._lru_cache_wrapper
 * read from those modules' globals; dict and list subclasses by their tp_flags bits.
 *
 * A module, class or value that cannot be read is skipped (a scan of a running process meets
 * half-built modules); only a failure to read sys.modules, or the target exiting, is an error.
 * Never writes to the target, never allocates beyond the caps.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "growth_int.h"
#include "pyscope/pyobj.h"

/* Classification of one value; GROWTH_* kinds, or these. */
enum {
    SCAN_NONE = -1,
    SCAN_CLASS = -2
};

/* Where a dict walk is: the name prefix ("module" or "module.Class") and whether classes found
 * in it are followed. */
struct scan_where {
    const char *prefix;
    bool follow_classes;
};

static int local_fail(struct growth *g, int rc, const struct ps_err *tmp, struct ps_err *err)
{
    (void)g;
    if (growth_target_gone(rc))
        return ps_err_set(err, rc, "%s", tmp->msg);
    return 0; /* one object: skip it */
}

/*
 * Read the word at addr[i] + off for i < n into out[i], MEMSRC_MAX_IOV per scatter read; a
 * batch that fails is re-read one by one and unreadable words become 0. Errors only when the
 * target is gone.
 */
static int read_words(struct growth *g, const uint64_t *addr, int64_t off, size_t n, uint64_t *out,
                      struct ps_err *err)
{
    struct memsrc *src = g->cx.src;
    struct ps_err tmp = {0};
    int rc = 0;

    for (size_t first = 0; first < n; first += MEMSRC_MAX_IOV) {
        size_t m = n - first < MEMSRC_MAX_IOV ? n - first : MEMSRC_MAX_IOV;
        for (size_t i = 0; i < m; i++)
            g->iov[i] = (struct memsrc_iov){addr[first + i] + (uint64_t)off, &out[first + i], 8};
        rc = memsrc_readv(src, g->iov, m, &tmp);
        for (size_t i = 0; rc < 0 && !growth_target_gone(rc) && i < m; i++) {
            ps_err_clear(&tmp);
            int one = memsrc_readv(src, &g->iov[i], 1, &tmp);
            if (one < 0 && growth_target_gone(one))
                rc = one;
            else if (one < 0)
                out[first + i] = 0;
        }
        if (rc < 0 && growth_target_gone(rc))
            return ps_err_set(err, rc, "%s", tmp.msg);
        ps_err_clear(&tmp);
    }
    return 0;
}

static int collect_pair(uint64_t key, uint64_t value, void *arg)
{
    struct growth *g = arg;

    g->keys[g->nkv] = key;
    g->vals[g->nkv++] = value;
    return 0;
}

/* Load up to max of one dict's entries into g->keys/g->vals (count in *n); unreadable: 0. */
static int load_dict(struct growth *g, uint64_t dict, size_t max, size_t *n, struct ps_err *err)
{
    struct ps_err tmp = {0};
    int rc;

    g->nkv = 0;
    rc = pyobj_dict_iter(&g->cx, dict, max, collect_pair, g, &tmp);
    *n = rc < 0 ? 0 : g->nkv;
    if (rc >= 0 && (size_t)rc == max)
        g->st.skipped++; /* a dict at the cap: its tail may be missing */
    return rc < 0 ? local_fail(g, rc, &tmp, err) : 0;
}

static int classify(const struct growth *g, uint64_t type, uint64_t flags)
{
    const struct locate_syms *s = g->cx.syms;

    if (type == 0)
        return SCAN_NONE;
    if (type == s->dict_type || (flags & LAYOUT_TPFLAG(g->lay, dict_subclass)))
        return GROWTH_DICT;
    if (type == s->list_type || (flags & LAYOUT_TPFLAG(g->lay, list_subclass)))
        return GROWTH_LIST;
    if (type == s->set_type)
        return GROWTH_SET;
    if (g->deque_type && type == g->deque_type)
        return GROWTH_DEQUE;
    if (g->lru_type && type == g->lru_type)
        return GROWTH_LRU;
    if (flags & LAYOUT_TPFLAG(g->lay, type_subclass))
        return SCAN_CLASS;
    return SCAN_NONE;
}

/* Display name of a container's type: fixed for the exact built-in types, else tp_name. */
static void type_name(struct growth *g, struct growth_found *f)
{
    const struct locate_syms *s = g->cx.syms;
    struct ps_err tmp = {0};

    if (f->kind == GROWTH_LRU || f->type == s->dict_type || f->type == s->list_type ||
        f->type == s->set_type || f->type == g->deque_type) {
        (void)snprintf(f->type_name, sizeof(f->type_name), "%s", growth_kind_name(f->kind));
        return;
    }
    if (pyobj_type_name(&g->cx, f->type, f->type_name, sizeof(f->type_name), &tmp) < 0)
        (void)snprintf(f->type_name, sizeof(f->type_name), "%s subclass",
                       growth_kind_name(f->kind));
}

/* "prefix.key" into buf; false when the key is not a readable str. */
static bool entry_name(struct growth *g, const char *prefix, uint64_t key, char *buf, size_t cap)
{
    char k[GROWTH_NAME_MAX];
    struct ps_err tmp = {0};

    size_t plen, klen;

    if (cap == 0 || pyobj_str(&g->cx, key, k, sizeof(k), NULL, &tmp) < 0)
        return false;
    /* "prefix.key", cut at cap - 1 bytes (a cut inside a UTF-8 sequence is only cosmetic) */
    plen = strnlen(prefix, cap - 1);
    memcpy(buf, prefix, plen);
    klen = plen + 1 < cap ? strnlen(k, cap - plen - 2) : 0;
    if (plen + 1 < cap)
        buf[plen++] = '.';
    memcpy(buf + plen, k, klen);
    buf[plen + klen] = '\0';
    return true;
}

/* An lru_cache wrapper's cache dict (lru_cache_object.cache, _functoolsmodule.c), or 0. */
static uint64_t lru_cache_dict(struct growth *g, uint64_t wrapper)
{
    struct ps_err tmp = {0};
    uint64_t cache = 0;
    uint64_t type = 0;

    if (memsrc_read_u64(g->cx.src, wrapper + (uint64_t)g->lay->lru_cache_cache, &cache, &tmp) < 0 ||
        cache == 0 || (cache & 7) != 0 || pyobj_type(&g->cx, cache, &type, &tmp) < 0 ||
        type != g->cx.syms->dict_type)
        return 0;
    return cache;
}

/* Record container i of the loaded dict; false when the cap is reached. */
static bool add_container(struct growth *g, const struct scan_where *w, size_t i, int kind)
{
    struct growth_found *f;
    uint64_t addr = g->vals[i];
    uint64_t type = g->types[i];
    struct ps_err tmp = {0};
    int put;

    if (kind == GROWTH_LRU) {
        addr = lru_cache_dict(g, addr);
        type = g->cx.syms->dict_type;
    }
    if (g->nfound >= g->o.max_containers) {
        g->st.skipped++;
        return false;
    }
    if (addr == 0)
        return true; /* an lru_cache wrapper without a readable cache dict */
    put = growth_map_put(&g->map, addr, 0);
    g->st.skipped += put < 0;
    if (put <= 0)
        return true; /* already found under another name, or the map is full */
    f = &g->found[g->nfound];
    memset(f, 0, sizeof(*f));
    if (!entry_name(g, w->prefix, g->keys[i], f->name, sizeof(f->name)))
        return true;
    f->addr = addr;
    f->type = type;
    f->kind = (enum growth_kind)kind;
    if (memsrc_read_u64(g->cx.src, type + (uint64_t)g->lay->type_basicsize, &f->basicsize, &tmp) <
            0 ||
        f->basicsize > (1u << 20))
        f->basicsize = 0;
    type_name(g, f);
    g->nfound++;
    return true;
}

/* A class to look into after the module's globals: (address, "module.Class"). */
struct scan_class {
    uint64_t addr;
    char name[GROWTH_NAME_MAX];
};

#define SCAN_CLASSES_PER_MODULE 256

/* Classify the loaded dict's n entries; queue heap-type classes into cls (when w follows). */
static int scan_entries(struct growth *g, const struct scan_where *w, size_t n,
                        struct scan_class *cls, size_t *ncls, struct ps_err *err)
{
    int rc = read_words(g, g->vals, g->lay->object_type, n, g->types, err);

    if (rc == 0)
        rc = read_words(g, g->types, g->lay->type_flags, n, g->flags, err);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        int kind = classify(g, g->types[i], g->flags[i]);
        if (kind >= 0 && !add_container(g, w, i, kind))
            break;
        if (kind != SCAN_CLASS || !w->follow_classes)
            continue;
        if (*ncls >= SCAN_CLASSES_PER_MODULE) {
            g->st.skipped++;
            continue;
        }
        cls[*ncls].addr = g->vals[i];
        if (entry_name(g, w->prefix, g->keys[i], cls[*ncls].name, sizeof(cls[*ncls].name)))
            (*ncls)++;
    }
    return rc;
}

/* Heap types only (static types' dicts cannot grow from Python code), each class once. */
static int scan_class(struct growth *g, const struct scan_class *c, struct ps_err *err)
{
    struct scan_where w = {.prefix = c->name, .follow_classes = false};
    struct ps_err tmp = {0};
    uint64_t flags = 0;
    uint64_t dict = 0;
    size_t n = 0;
    int put = growth_map_put(&g->map, c->addr, 0);
    int rc;

    g->st.skipped += put < 0;
    if (put <= 0)
        return 0;
    rc = memsrc_read_u64(g->cx.src, c->addr + (uint64_t)g->lay->type_flags, &flags, &tmp);
    if (rc == 0 && (flags & LAYOUT_TPFLAG(g->lay, heaptype)))
        rc = memsrc_read_u64(g->cx.src, c->addr + (uint64_t)g->lay->type_dict, &dict, &tmp);
    if (rc < 0)
        return local_fail(g, rc, &tmp, err);
    if (dict == 0)
        return 0;
    rc = load_dict(g, dict, GROWTH_MAX_GLOBALS, &n, err);
    return rc == 0 ? scan_entries(g, &w, n, NULL, NULL, err) : rc;
}

static int scan_module(struct growth *g, uint64_t key, uint64_t module, struct scan_class *cls,
                       struct ps_err *err)
{
    char name[GROWTH_NAME_MAX];
    struct scan_where w = {.prefix = name, .follow_classes = !g->o.no_classes};
    struct ps_err tmp = {0};
    uint64_t dict = 0;
    size_t n = 0, ncls = 0;
    int rc;

    if (pyobj_str(&g->cx, key, name, sizeof(name), NULL, &tmp) < 0)
        return local_fail(g, tmp.code, &tmp, err);
    rc = memsrc_read_u64(g->cx.src, module + (uint64_t)g->lay->module_dict, &dict, &tmp);
    if (rc < 0)
        return local_fail(g, rc, &tmp, err);
    rc = load_dict(g, dict, GROWTH_MAX_GLOBALS, &n, err);
    if (rc == 0)
        rc = scan_entries(g, &w, n, cls, &ncls, err);
    for (size_t i = 0; rc == 0 && i < ncls; i++)
        rc = scan_class(g, &cls[i], err);
    return rc;
}

/* A type object named in a module's globals (collections.deque), or 0. */
static uint64_t module_type(struct growth *g, const char *module, const char *name)
{
    struct ps_err tmp = {0};
    uint64_t mod = 0;
    uint64_t value = 0;

    if (pyobj_module(&g->cx, g->interp, module, &mod, &tmp) < 0 ||
        pyobj_module_global(&g->cx, mod, name, &value, &tmp) < 0)
        return 0;
    return value;
}

static int load_modules(struct growth *g, struct ps_err *err)
{
    uint64_t modules = 0;
    size_t n = 0;
    int rc =
        memsrc_read_u64(g->cx.src, g->interp + (uint64_t)g->lay->interp_modules, &modules, err);

    if (rc == 0 && modules == 0)
        rc = ps_err_set(err, -PS_ECORRUPT,
                        "the interpreter has no sys.modules (starting up or shutting down); "
                        "try again");
    if (rc == 0)
        rc = load_dict(g, modules, g->o.max_modules, &n, err);
    if (rc == 0 && n == 0)
        rc = ps_err_set(err, -PS_ECORRUPT,
                        "sys.modules at 0x%" PRIx64 " could not be read consistently; try again",
                        modules);
    if (rc < 0)
        return rc;
    memcpy(g->mkey, g->keys, n * sizeof(uint64_t));
    memcpy(g->mval, g->vals, n * sizeof(uint64_t));
    g->nmods = n;
    return 0;
}

int growth_discover(struct growth *g, struct ps_err *err)
{
    struct scan_class *cls = calloc(SCAN_CLASSES_PER_MODULE, sizeof(*cls));
    int rc = 0;

    if (!cls)
        return ps_err_set(err, -ENOMEM, "out of memory for the growth scan");
    g->nfound = 0;
    growth_map_clear(&g->map);
    g->deque_type = module_type(g, "collections", "deque");
    if (g->deque_type == 0)
        g->deque_type = module_type(g, "_collections", "deque");
    g->lru_type = module_type(g, "functools", "_lru_cache_wrapper");
    rc = load_modules(g, err);
    for (size_t i = 0; rc == 0 && i < g->nmods && g->nfound < g->o.max_containers; i++)
        rc = scan_module(g, g->mkey[i], g->mval[i], cls, err);
    g->st.modules = g->nmods;
    free(cls);
    return rc;
}
