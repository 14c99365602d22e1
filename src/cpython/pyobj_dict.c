/* SPDX-License-Identifier: MIT */
/*
 * Dicts, instance attributes and modules out of target memory (see pyobj.h).
 *
 * A dict is read as a "view": its keys object (PyDictKeysObject, pycore_dict.h) gives the entry
 * kind (general: hash, key, value; str and split: key, value; kinds and entry shapes from the
 * layout), dk_nentries and
 * the size of the index table (1 << dk_log2_index_bytes) that sits between the header and the
 * entries; a split dict takes its values from a separate PyDictValues array. We never use the
 * index table: lookups scan the entries linearly (str keys are compared by text, because the
 * target's hash seed is unknown), in chunks of PYOBJ_MATCH_BATCH entries, each chunk one
 * scatter read for entries plus values and, for str lookups, two more for key headers and
 * text. Instance attributes reuse the same view over a type's shared keys (ht_cached_keys) and
 * the instance's values array, found through the layout's object_managed_* / object_dict_tagged /
 * object_inline_values / type_dictoffset fields (CPYTHON.md section 4 item 3), so the code below
 * has no version tests.
 *
 * Invariants: dk_nentries is capped by PYOBJ_DICT_MAX_ENTRIES and checked against the index
 * size (and 3.13's values capacity), so every scan is bounded; split-dict order is shared-key
 * order, not insertion order. No allocation, no globals.
 */
#include "pyscope/pyobj.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "pyobj_int.h"

/* The largest dict entry we read (the layout's dict_entry_general is 24: hash, key, value); a
 * layout with larger entries is refused, never read past a buffer. */
#define DICT_ENTRY_MAX 32u
/* An index table larger than 2^34 bytes would index more entries than the cap allows. */
#define DICT_LOG2_INDEX_MAX 34
/* tp_dictoffset beyond 1 MiB is garbage (it is a small offset inside the instance). */
#define DICT_OFFSET_MAX (1 << 20)

struct dict_view {
    uint64_t addr;     /* the dict, or the object whose values we view (messages only) */
    uint64_t entries;  /* first entry */
    uint64_t values;   /* first value slot of a split dict, else 0 */
    size_t entry_size; /* the kind's entry: PyDictKeyEntry or PyDictUnicodeEntry */
    int32_t hash_off;  /* in an entry; -1: none (unicode keys keep the hash in the str) */
    int32_t key_off;
    int32_t value_off;
    size_t n; /* entries to scan */
    int kind;
};

/* One chunk of entries; hash is meaningful only for general dicts. */
struct dict_chunk {
    size_t n;
    uint64_t hash[PYOBJ_MATCH_BATCH];
    uint64_t key[PYOBJ_MATCH_BATCH];
    uint64_t value[PYOBJ_MATCH_BATCH];
};

/* ---- views --------------------------------------------------------------------------------- */

static int keys_check(const struct layout *lay, uint64_t keys, int kind, unsigned log2_index,
                      int64_t nentries, struct ps_err *err)
{
    if (kind < 0 || kind > lay->dict_kind_split || log2_index > DICT_LOG2_INDEX_MAX ||
        nentries < 0 || (uint64_t)nentries > (UINT64_C(1) << log2_index))
        return ps_err_set(err, -PS_ECORRUPT,
                          "dict keys at 0x%" PRIx64 " are inconsistent (kind %d, log2 index "
                          "bytes %u, %" PRId64 " entries): torn read or wrong layout",
                          keys, kind, log2_index, nentries);
    if (nentries > (int64_t)PYOBJ_DICT_MAX_ENTRIES)
        return ps_err_set(err, -PS_ELIMIT,
                          "dict keys at 0x%" PRIx64 " hold %" PRId64 " entries, over the %u cap",
                          keys, nentries, PYOBJ_DICT_MAX_ENTRIES);
    return 0;
}

/* 3.13: a values array holds at most `capacity` slots; never scan past them. */
static int values_cap(const struct pyctx *c, uint64_t values, size_t *n, struct ps_err *err)
{
    uint8_t cap = 0;
    int rc = 0;

    if (!LAYOUT_HAS(c->lay, dictvalues_capacity))
        return 0;
    rc = memsrc_read(c->src, values + (uint64_t)c->lay->dictvalues_capacity, &cap, 1, err);
    if (rc == 0 && *n > cap)
        *n = cap;
    return rc;
}

/* The entry shape of v->kind from the layout: -PS_EVERSION when it does not fit DICT_ENTRY_MAX. */
static int entry_geometry(const struct layout *lay, struct dict_view *v)
{
    bool general = v->kind == lay->dict_kind_general;
    int32_t size = general ? lay->dict_entry_general : lay->dict_entry_unicode;

    v->hash_off = general ? lay->dictentry_hash : LAYOUT_ABSENT;
    v->key_off = general ? lay->dictentry_key : lay->dictunicode_key;
    v->value_off = general ? lay->dictentry_value : lay->dictunicode_value;
    if (size <= 0 || (uint32_t)size > DICT_ENTRY_MAX || v->key_off < 0 || v->value_off < 0 ||
        v->key_off > size - 8 || v->value_off > size - 8 || (general && v->hash_off < 0) ||
        v->hash_off > size - 8)
        return -PS_EVERSION;
    v->entry_size = (size_t)size;
    return 0;
}

/*
 * View over keys object `keys` and, for a split dict or instance values, the PyDictValues
 * at `values` (0 otherwise). `owner` names the dict or object in messages.
 */
static int view_open(const struct pyctx *c, uint64_t owner, uint64_t keys, uint64_t values,
                     struct dict_view *v, struct ps_err *err)
{
    const struct layout *lay = c->lay;
    uint8_t hdr[64];
    int64_t nentries = 0;
    int rc = 0;

    if (keys == 0 || (keys & 7) != 0 || (values & 7) != 0 || lay->dictkeys_nentries + 8 > 64)
        return ps_err_set(err, -PS_ECORRUPT,
                          "dict at 0x%" PRIx64 " has keys 0x%" PRIx64 " and values 0x%" PRIx64
                          ": NULL or misaligned (torn read or wrong layout)",
                          owner, keys, values);
    rc = memsrc_read(c->src, keys, hdr, (size_t)lay->dictkeys_nentries + 8, err);
    if (rc < 0)
        return rc;
    v->kind = hdr[lay->dictkeys_kind];
    nentries = (int64_t)pyobj_le64(hdr + lay->dictkeys_nentries);
    rc = keys_check(lay, keys, v->kind, hdr[lay->dictkeys_log2_index_bytes], nentries, err);
    if (rc == 0 && (v->kind == lay->dict_kind_split) != (values != 0))
        rc = ps_err_set(err, -PS_ECORRUPT,
                        "dict at 0x%" PRIx64 " has keys of kind %d %s a values array: torn "
                        "read or wrong layout",
                        owner, v->kind, values ? "with" : "without");
    if (rc < 0)
        return rc;
    v->addr = owner;
    v->n = (size_t)nentries;
    v->entries = keys + (uint64_t)lay->dictkeys_indices +
                 (UINT64_C(1) << hdr[lay->dictkeys_log2_index_bytes]);
    rc = entry_geometry(lay, v);
    if (rc < 0)
        return ps_err_set(err, rc,
                          "the Python %s layout has dict entries pyscope cannot read "
                          "(over %u bytes or fields outside them)",
                          lay->name, DICT_ENTRY_MAX);
    v->values = values ? values + (uint64_t)lay->dictvalues_values : 0;
    return values ? values_cap(c, values, &v->n, err) : 0;
}

static int dict_open(const struct pyctx *c, uint64_t dict, struct dict_view *v, struct ps_err *err)
{
    uint64_t keys = 0;
    uint64_t values = 0;
    struct memsrc_iov iov[2];
    int rc = pyobj_check_type(c, dict, c->syms ? c->syms->dict_type : 0,
                              LAYOUT_TPFLAG(c->lay, dict_subclass), "dict", NULL, err);

    iov[0] = (struct memsrc_iov){dict + (uint64_t)c->lay->dict_keys, &keys, sizeof(keys)};
    iov[1] = (struct memsrc_iov){dict + (uint64_t)c->lay->dict_values, &values, sizeof(values)};
    if (rc == 0)
        rc = memsrc_readv(c->src, iov, 2, err);
    if (rc == 0)
        rc = view_open(c, dict, keys, values, v, err);
    return rc;
}

/* Read entries [first, first + chunk) of a view (and their split values) in one readv. */
static int chunk_read(const struct pyctx *c, const struct dict_view *v, size_t first,
                      struct dict_chunk *ch, struct ps_err *err)
{
    uint8_t ent[PYOBJ_MATCH_BATCH * DICT_ENTRY_MAX];
    uint8_t val[PYOBJ_MATCH_BATCH * 8];
    size_t n = v->n - first < PYOBJ_MATCH_BATCH ? v->n - first : PYOBJ_MATCH_BATCH;
    struct memsrc_iov iov[2] = {
        {v->entries + first * v->entry_size, ent, n * v->entry_size},
        {v->values + first * 8, val, n * 8},
    };
    int rc = memsrc_readv(c->src, iov, v->values ? 2 : 1, err);

    if (rc < 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *e = ent + i * v->entry_size;
        ch->hash[i] = v->hash_off >= 0 ? pyobj_le64(e + v->hash_off) : 0;
        ch->key[i] = pyobj_le64(e + v->key_off);
        ch->value[i] = v->values ? pyobj_le64(val + i * 8) : pyobj_le64(e + v->value_off);
    }
    ch->n = n;
    return 0;
}

/* Keep only live entries (key and value set: a deleted one has a NULL key or value). */
static void chunk_compact(struct dict_chunk *ch)
{
    size_t m = 0;

    for (size_t i = 0; i < ch->n; i++) {
        if (ch->key[i] == 0 || ch->value[i] == 0)
            continue;
        ch->hash[m] = ch->hash[i];
        ch->key[m] = ch->key[i];
        ch->value[m++] = ch->value[i];
    }
    ch->n = m;
}

/* Visit live entries chunk by chunk; fn returns 1 to stop, 0 to go on, < 0 on error. */
typedef int (*chunk_fn)(const struct pyctx *c, const struct dict_view *v,
                        const struct dict_chunk *ch, void *arg, struct ps_err *err);

static int view_scan(const struct pyctx *c, const struct dict_view *v, chunk_fn fn, void *arg,
                     struct ps_err *err)
{
    struct dict_chunk ch;
    int rc = 0;

    for (size_t first = 0; first < v->n && rc == 0; first += PYOBJ_MATCH_BATCH) {
        rc = chunk_read(c, v, first, &ch, err);
        if (rc < 0)
            break;
        chunk_compact(&ch);
        rc = ch.n ? fn(c, v, &ch, arg, err) : 0;
    }
    return rc < 0 ? rc : 0;
}

/* ---- lookups ------------------------------------------------------------------------------- */

struct find_arg {
    const char *key;
    size_t len;
    int64_t hash;
    uint64_t value;
    bool found;
};

static int find_str_chunk(const struct pyctx *c, const struct dict_view *v,
                          const struct dict_chunk *ch, void *arg, struct ps_err *err)
{
    struct find_arg *a = arg;
    size_t idx = 0;
    int rc = pyobj_str_match(c, ch->key, ch->n, a->key, a->len, &idx, err);

    (void)v;
    if (rc < 0 || idx == ch->n)
        return rc;
    a->value = ch->value[idx];
    a->found = true;
    return 1;
}

static int view_get_str(const struct pyctx *c, const struct dict_view *v, const char *key,
                        uint64_t *value, struct ps_err *err)
{
    struct find_arg a = {.key = key, .len = key ? strlen(key) : 0};
    int rc = 0;

    if (!key || a.len > PYOBJ_KEY_MAX)
        return ps_err_set(err, -EINVAL, "dict lookup needs a key of at most %d bytes",
                          PYOBJ_KEY_MAX);
    rc = view_scan(c, v, find_str_chunk, &a, err);
    if (rc == 0 && !a.found)
        rc = ps_err_set(err, -ENOENT, "key '%s' is not in the dict at 0x%" PRIx64, key, v->addr);
    if (rc == 0)
        *value = a.value;
    return rc;
}

int pyobj_dict_get_str(const struct pyctx *c, uint64_t dict, const char *key, uint64_t *value,
                       struct ps_err *err)
{
    struct dict_view v = {0};
    int rc = dict_open(c, dict, &v, err);

    if (rc == 0)
        rc = view_get_str(c, &v, key, value, err);
    return rc;
}

/* Hashes of a chunk's keys: stored in general entries, else the str keys' cached ob hash. */
static int chunk_hashes(const struct pyctx *c, const struct dict_view *v,
                        const struct dict_chunk *ch, uint64_t *hash, struct ps_err *err)
{
    struct memsrc_iov iov[PYOBJ_MATCH_BATCH];

    for (size_t i = 0; i < ch->n; i++) {
        hash[i] = ch->hash[i];
        iov[i] = (struct memsrc_iov){ch->key[i] + (uint64_t)c->lay->str_hash, &hash[i], 8};
    }
    return v->hash_off >= 0 ? 0 : memsrc_readv(c->src, iov, ch->n, err);
}

static int find_hash_chunk(const struct pyctx *c, const struct dict_view *v,
                           const struct dict_chunk *ch, void *arg, struct ps_err *err)
{
    struct find_arg *a = arg;
    uint64_t hash[PYOBJ_MATCH_BATCH];
    int rc = chunk_hashes(c, v, ch, hash, err);

    for (size_t i = 0; rc == 0 && i < ch->n; i++) {
        if ((int64_t)hash[i] == a->hash) {
            a->value = ch->value[i];
            a->found = true;
            return 1;
        }
    }
    return rc;
}

int pyobj_dict_get_hash(const struct pyctx *c, uint64_t dict, int64_t hash, uint64_t *value,
                        struct ps_err *err)
{
    struct dict_view v = {0};
    struct find_arg a = {.hash = hash};
    int rc = dict_open(c, dict, &v, err);

    if (rc == 0)
        rc = view_scan(c, &v, find_hash_chunk, &a, err);
    if (rc == 0 && !a.found)
        rc = ps_err_set(err, -ENOENT, "no entry with hash %" PRId64 " in the dict at 0x%" PRIx64,
                        hash, dict);
    if (rc == 0)
        *value = a.value;
    return rc;
}

struct iter_arg {
    pyobj_dict_cb cb;
    void *cb_arg;
    size_t max;
    size_t visited;
};

static int iter_chunk(const struct pyctx *c, const struct dict_view *v, const struct dict_chunk *ch,
                      void *arg, struct ps_err *err)
{
    struct iter_arg *a = arg;

    (void)c;
    (void)v;
    (void)err;
    for (size_t i = 0; i < ch->n; i++) {
        if (a->visited >= a->max)
            return 1;
        a->visited++;
        if (a->cb(ch->key[i], ch->value[i], a->cb_arg) != 0)
            return 1;
    }
    return 0;
}

int pyobj_dict_iter(const struct pyctx *c, uint64_t dict, size_t max, pyobj_dict_cb cb, void *arg,
                    struct ps_err *err)
{
    struct dict_view v = {0};
    struct iter_arg a = {.cb = cb, .cb_arg = arg, .max = max};
    int rc = 0;

    if (!cb)
        return ps_err_set(err, -EINVAL, "pyobj_dict_iter needs a callback");
    rc = dict_open(c, dict, &v, err);
    if (rc == 0 && max > 0)
        rc = view_scan(c, &v, iter_chunk, &a, err);
    if (rc < 0)
        return rc;
    return a.visited > INT32_MAX ? INT32_MAX : (int)a.visited;
}

/* ---- instance attributes ------------------------------------------------------------------- */

/* Where an instance keeps its attributes: a dict, or values over the type's shared keys. */
struct inst_store {
    uint64_t dict;
    uint64_t values;
};

/* 3.13 inline values: at obj + tp_basicsize, usable only while their `valid` byte is set. */
static int inst_inline_values(const struct pyctx *c, uint64_t obj, uint64_t type,
                              struct inst_store *st, struct ps_err *err)
{
    uint64_t basicsize = 0;
    uint8_t valid = 0;
    int rc = memsrc_read_u64(c->src, type + (uint64_t)c->lay->type_basicsize, &basicsize, err);

    if (rc == 0 && (basicsize < 16 || basicsize > DICT_OFFSET_MAX || (basicsize & 7) != 0))
        rc = ps_err_set(err, -PS_ECORRUPT,
                        "type 0x%" PRIx64 " has tp_basicsize %" PRIu64 ": torn read", type,
                        basicsize);
    if (rc == 0)
        rc = memsrc_read(c->src, obj + basicsize + (uint64_t)c->lay->dictvalues_valid, &valid, 1,
                         err);
    if (rc == 0 && valid)
        st->values = obj + basicsize;
    return rc;
}

/* Managed dict (Py_TPFLAGS_MANAGED_DICT): the pre-header slots, per version. */
static int inst_managed(const struct pyctx *c, uint64_t obj, uint64_t type, uint64_t flags,
                        struct inst_store *st, struct ps_err *err)
{
    const struct layout *lay = c->lay;
    uint64_t w = 0;
    int rc = 0;

    if (LAYOUT_HAS(lay, object_managed_values)) {
        rc = memsrc_read_u64(c->src, obj + (uint64_t)(int64_t)lay->object_managed_values, &w, err);
        if (rc < 0 || w != 0) {
            st->values = w;
            return rc;
        }
    }
    rc = memsrc_read_u64(c->src, obj + (uint64_t)(int64_t)lay->object_managed_dict, &w, err);
    if (rc < 0)
        return rc;
    if (lay->object_dict_tagged == 1 && (w & 1)) {
        st->values = w + 1;
        return 0;
    }
    st->dict = w;
    if (w == 0 && lay->object_inline_values == 1 && LAYOUT_HAS(lay, dictvalues_valid) &&
        (flags & LAYOUT_TPFLAG(c->lay, inline_values)))
        rc = inst_inline_values(c, obj, type, st, err);
    return rc;
}

/* A __dict__ at a fixed tp_dictoffset (subclasses of C types, e.g. exceptions). */
static int inst_dictoffset(const struct pyctx *c, uint64_t obj, uint64_t type,
                           struct inst_store *st, struct ps_err *err)
{
    uint64_t off = 0;
    int rc = memsrc_read_u64(c->src, type + (uint64_t)c->lay->type_dictoffset, &off, err);

    if (rc < 0)
        return rc;
    if ((int64_t)off <= 0 || off > DICT_OFFSET_MAX || (off & 7) != 0)
        return 0; /* no dict, or a negative offset (variable-size objects): not supported */
    return memsrc_read_u64(c->src, obj + off, &st->dict, err);
}

static int inst_store_find(const struct pyctx *c, uint64_t obj, uint64_t *type,
                           struct inst_store *st, struct ps_err *err)
{
    uint64_t flags = 0;
    int rc = 0;

    if (!LAYOUT_HAS(c->lay, object_managed_dict) || !LAYOUT_HAS(c->lay, type_dictoffset))
        return ps_err_set(err, -PS_EVERSION, "no instance-attribute layout for Python %s",
                          c->lay->name);
    rc = pyobj_type(c, obj, type, err);
    if (rc == 0)
        rc = pyobj_type_flags(c, *type, &flags, err);
    if (rc < 0)
        return rc;
    if (flags & LAYOUT_TPFLAG(c->lay, managed_dict))
        return inst_managed(c, obj, *type, flags, st, err);
    return inst_dictoffset(c, obj, *type, st, err);
}

int pyobj_instance_attr(const struct pyctx *c, uint64_t obj, const char *name, uint64_t *value,
                        struct ps_err *err)
{
    struct inst_store st = {0};
    struct dict_view v = {0};
    uint64_t type = 0;
    uint64_t keys = 0;
    int rc = inst_store_find(c, obj, &type, &st, err);

    if (rc < 0)
        return rc;
    if (st.dict != 0)
        return pyobj_dict_get_str(c, st.dict, name, value, err);
    if (st.values == 0)
        return ps_err_set(err, -ENOENT, "object at 0x%" PRIx64 " has no instance attributes", obj);
    rc = memsrc_read_u64(c->src, type + (uint64_t)c->lay->heaptype_cached_keys, &keys, err);
    if (rc == 0)
        rc = view_open(c, obj, keys, st.values, &v, err);
    if (rc == 0)
        rc = view_get_str(c, &v, name, value, err);
    return rc;
}

/* ---- modules ------------------------------------------------------------------------------- */

int pyobj_module(const struct pyctx *c, uint64_t interp, const char *name, uint64_t *module,
                 struct ps_err *err)
{
    uint64_t modules = 0;
    int rc = memsrc_read_u64(c->src, interp + (uint64_t)c->lay->interp_modules, &modules, err);

    if (rc == 0 && modules == 0)
        rc = ps_err_set(err, -ENOENT,
                        "interpreter 0x%" PRIx64 " has no sys.modules yet (starting up or "
                        "shutting down)",
                        interp);
    if (rc == 0)
        rc = pyobj_dict_get_str(c, modules, name, module, err);
    return rc;
}

int pyobj_module_global(const struct pyctx *c, uint64_t module, const char *name, uint64_t *value,
                        struct ps_err *err)
{
    uint64_t dict = 0;
    uint64_t type = 0;
    /* Module subclasses share PyModuleObject's layout; md_dict's own type check does the rest. */
    int rc = pyobj_type(c, module, &type, err);

    if (rc == 0)
        rc = memsrc_read_u64(c->src, module + (uint64_t)c->lay->module_dict, &dict, err);
    if (rc == 0)
        rc = pyobj_dict_get_str(c, dict, name, value, err);
    return rc;
}
