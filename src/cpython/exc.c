/* SPDX-License-Identifier: MIT */
/*
 * exc: exceptions read from target memory (see exc.h), for the tracer's breakpoint stops and
 * the dump's per-thread "raising" / "handling" fields. Sits above pyobj (strings, type names)
 * and code (code objects): it only follows pointers that CPYTHON.md section 5 documents, checks
 * each object's type where it matters (exception types by tp_flags bit 30, tuples, str through
 * pyobj_str) and bounds every chain (exc_info items, traceback entries). Never writes.
 */
#include "pyscope/exc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "pyscope/code.h"
#include "pyscope/linetab.h"
#include "pyscope/pyobj.h"

/* Traceback entries followed before giving up (recursion errors make ~1000). */
#define EXC_TB_WALK_MAX 4096

static int exc_u64(const struct pyctx *c, uint64_t addr, int32_t off, uint64_t *out,
                   struct ps_err *err)
{
    if (off < 0)
        return ps_err_set(err, -PS_ECORRUPT, "field absent in the layout for Python %s",
                          c->lay->name);
    return memsrc_read_u64(c->src, addr + (uint64_t)off, out, err);
}

static uint64_t exc_flags_of(const struct pyctx *c, uint64_t type)
{
    struct ps_err ignored = {0};
    uint64_t flags = 0;

    if (type == 0 || (type & 7) != 0 || exc_u64(c, type, c->lay->type_flags, &flags, &ignored) < 0)
        return 0;
    return flags;
}

int exc_in_flight(const struct pyctx *c, uint64_t tstate, struct exc_raw *out, struct ps_err *err)
{
    const struct layout *l = c->lay;
    struct exc_raw r = {0};
    int rc;

    if (LAYOUT_HAS(l, tstate_current_exception)) {
        rc = exc_u64(c, tstate, l->tstate_current_exception, &r.value, err);
        if (rc == 0 && r.value)
            rc = pyobj_type(c, r.value, &r.type, err);
        if (rc == 0 && r.value)
            rc = exc_u64(c, r.value, l->exc_traceback, &r.traceback, err);
    } else {
        rc = exc_u64(c, tstate, l->tstate_curexc_type, &r.type, err);
        if (rc == 0)
            rc = exc_u64(c, tstate, l->tstate_curexc_value, &r.value, err);
        if (rc == 0)
            rc = exc_u64(c, tstate, l->tstate_curexc_traceback, &r.traceback, err);
    }
    if (rc < 0)
        return rc;
    if (r.traceback == c->syms->none)
        r.traceback = 0;
    *out = r;
    return 0;
}

int exc_handled(const struct pyctx *c, uint64_t tstate, uint64_t *exc, struct ps_err *err)
{
    const struct layout *l = c->lay;
    uint64_t item = 0, value = 0;
    int rc = exc_u64(c, tstate, l->tstate_exc_info, &item, err);

    for (int depth = 0; rc == 0 && item != 0 && depth < EXC_INFO_DEPTH; depth++) {
        rc = exc_u64(c, item, l->err_stackitem_exc_value, &value, err);
        if (rc == 0 && value != 0 && value != c->syms->none) {
            *exc = value;
            return 0;
        }
        if (rc == 0)
            rc = exc_u64(c, item, l->err_stackitem_previous_item, &item, err);
    }
    if (rc == 0)
        *exc = 0;
    return rc;
}

int exc_traceback_of(const struct pyctx *c, uint64_t exc, uint64_t *tb, struct ps_err *err)
{
    uint64_t type = 0, t = 0;
    int rc = pyobj_type(c, exc, &type, err);

    if (rc == 0 && !(exc_flags_of(c, type) & LAYOUT_TPFLAG(c->lay, base_exc_subclass)))
        rc = ps_err_set(err, -PS_ECORRUPT, "object at 0x%" PRIx64 " is not an exception", exc);
    if (rc == 0)
        rc = exc_u64(c, exc, c->lay->exc_traceback, &t, err);
    if (rc == 0)
        *tb = t == c->syms->none ? 0 : t;
    return rc;
}

/* The first item of a tuple (0 when empty or not a tuple): type, size and item 0 in one read. */
static uint64_t exc_tuple_first(const struct pyctx *c, uint64_t tup)
{
    const struct layout *l = c->lay;
    struct ps_err ignored = {0};
    uint64_t type = 0, size = 0, first = 0;
    uint8_t buf[64];
    int32_t hi = l->tuple_items + 8;

    if (l->object_type < 0 || l->varobject_size < 0 || l->tuple_items < 0 ||
        hi > (int32_t)sizeof(buf) || memsrc_read(c->src, tup, buf, (size_t)hi, &ignored) < 0)
        return 0;
    memcpy(&type, buf + l->object_type, 8);
    memcpy(&size, buf + l->varobject_size, 8);
    memcpy(&first, buf + l->tuple_items, 8);
    if (size == 0 || size > (1u << 20) ||
        !(type == c->syms->tuple_type ||
          (exc_flags_of(c, type) & LAYOUT_TPFLAG(c->lay, tuple_subclass))))
        return 0;
    return first;
}

/* Message: str of args[0] of an instance (args already read), or the unnormalised 3.11 value
 * (str / args tuple) of type `type` with tp_flags `flags`. */
static void exc_message(const struct pyctx *c, uint64_t value, uint64_t type, uint64_t flags,
                        uint64_t args, struct exc_desc *out)
{
    struct ps_err ignored = {0};
    uint64_t cand = 0;

    if (value == 0 || value == c->syms->none)
        return;
    if (flags & LAYOUT_TPFLAG(c->lay, base_exc_subclass)) {
        if (args)
            cand = exc_tuple_first(c, args);
    } else if (type == c->syms->unicode_type || (flags & LAYOUT_TPFLAG(c->lay, unicode_subclass))) {
        cand = value;
    } else {
        cand = exc_tuple_first(c, value);
    }
    if (cand && pyobj_str(c, cand, out->message, sizeof(out->message), &out->message_truncated,
                          &ignored) == 0)
        out->has_message = true;
    else
        out->message[0] = '\0';
}

/* Read a type's tp_name pointer and tp_flags in one read (the cache key; flags masked). */
static int exc_type_key(const struct pyctx *c, uint64_t type, uint64_t *tp_name, uint64_t *flags,
                        struct ps_err *err)
{
    const struct layout *l = c->lay;
    int32_t lo = l->type_name < l->type_flags ? l->type_name : l->type_flags;
    int32_t hi = (l->type_name > l->type_flags ? l->type_name : l->type_flags) + 8;
    uint8_t buf[256];
    int rc;

    if (lo < 0 || hi - lo > (int32_t)sizeof(buf))
        return ps_err_set(err, -PS_ECORRUPT, "type fields absent from the layout");
    rc = memsrc_read(c->src, type + (uint64_t)lo, buf, (size_t)(hi - lo), err);
    if (rc == 0) {
        memcpy(tp_name, buf + (l->type_name - lo), 8);
        memcpy(flags, buf + (l->type_flags - lo), 8);
        /* only the bits a type keeps for life: the interpreter sets others as it runs (3.11's
         * Py_TPFLAGS_VALID_VERSION_TAG at the type's first method-cache use) */
        *flags &= LAYOUT_TPFLAG(c->lay, heaptype) | LAYOUT_TPFLAG(c->lay, base_exc_subclass) |
                  LAYOUT_TPFLAG(c->lay, type_subclass) | LAYOUT_TPFLAG(c->lay, long_subclass) |
                  LAYOUT_TPFLAG(c->lay, list_subclass) | LAYOUT_TPFLAG(c->lay, tuple_subclass) |
                  LAYOUT_TPFLAG(c->lay, bytes_subclass) | LAYOUT_TPFLAG(c->lay, unicode_subclass) |
                  LAYOUT_TPFLAG(c->lay, dict_subclass);
    }
    return rc;
}

/* A type's display name, through the cache when there is one. */
/* A type's set of EXC_NAME_WAYS slots: static types lie at a fixed stride in libpython's data
 * (0x1a0 bytes apart), which a plain modulo maps onto few sets; a multiplicative hash spreads
 * them, and the ways keep the types of one stack (raised, cause, context) from evicting each
 * other. */
static struct exc_name_slot *exc_name_set(const struct exc_names *names, uint64_t type)
{
    size_t set =
        (size_t)(((type >> 4) * 0x9E3779B97F4A7C15ull) >> 57) % (EXC_NAME_SLOTS / EXC_NAME_WAYS);

    return (struct exc_name_slot *)&names->slot[set * EXC_NAME_WAYS];
}

/* type's slot in its set, or NULL. */
static struct exc_name_slot *exc_name_find(const struct exc_names *names, uint64_t type)
{
    struct exc_name_slot *set = exc_name_set(names, type);

    for (size_t i = 0; i < EXC_NAME_WAYS; i++)
        if (set[i].type == type)
            return &set[i];
    return NULL;
}

bool exc_names_has(const struct exc_names *names, uint64_t type)
{
    return type != 0 && exc_name_find(names, type) != NULL;
}

/* The slot a new entry for type takes: type's own, an empty one, else the least recently used. */
static struct exc_name_slot *exc_name_victim(const struct exc_names *names, uint64_t type)
{
    struct exc_name_slot *set = exc_name_set(names, type), *v = exc_name_find(names, type);

    if (v)
        return v;
    v = &set[0];
    for (size_t i = 0; i < EXC_NAME_WAYS; i++) {
        if (set[i].type == 0)
            return &set[i];
        if (set[i].used < v->used)
            v = &set[i];
    }
    return v;
}

static int exc_type_name(const struct pyctx *c, uint64_t type, struct exc_names *names, char *buf,
                         size_t cap, struct ps_err *err)
{
    struct exc_name_slot *s = names ? exc_name_find(names, type) : NULL;
    uint64_t tp_name = 0, flags = 0;
    int rc;

    if (!names)
        return pyobj_type_name(c, type, buf, cap, err);
    rc = exc_type_key(c, type, &tp_name, &flags, err);
    if (rc == 0 && s && s->tp_name == tp_name && s->flags == flags) {
        names->hits++;
        s->used = ++names->clock;
        (void)snprintf(buf, cap, "%s", s->name);
        return 0;
    }
    if (rc == 0)
        rc = pyobj_type_name(c, type, buf, cap, err);
    if (rc < 0)
        return rc;
    names->misses++;
    s = exc_name_victim(names, type);
    if (s->type && s->type != type && names->ndropped < EXC_NAME_DROPPED)
        names->dropped[names->ndropped++] = s->type;
    *s = (struct exc_name_slot){
        .type = type, .tp_name = tp_name, .flags = flags, .used = ++names->clock};
    (void)snprintf(s->name, sizeof(s->name), "%s", buf);
    return 0;
}

/* Type name of a chained exception `other` ("" when NULL/None/unreadable). */
static void exc_chained(const struct pyctx *c, uint64_t other, struct exc_names *names, char *buf,
                        size_t cap)
{
    struct ps_err ignored = {0};
    uint64_t type = 0;

    buf[0] = '\0';
    if (other == 0 || other == c->syms->none || pyobj_type(c, other, &type, &ignored) < 0 ||
        exc_type_name(c, type, names, buf, cap, &ignored) < 0)
        buf[0] = '\0';
}

/* An exception instance's type and fields args, context, cause, read at once. */
struct exc_fields {
    uint64_t type, args, context, cause;
};

/* Read value's header through its cause field in one read (false when unreadable). */
static bool exc_read_fields(const struct pyctx *c, uint64_t value, struct exc_fields *f)
{
    const struct layout *l = c->lay;
    struct ps_err ignored = {0};
    int32_t lo = l->object_type, hi = l->exc_cause + 8;
    uint8_t buf[128];

    memset(f, 0, sizeof(*f));
    if (value == 0 || value == c->syms->none || lo < 0 || l->exc_args < lo || l->exc_context < lo ||
        hi - lo > (int32_t)sizeof(buf) ||
        memsrc_read(c->src, value + (uint64_t)lo, buf, (size_t)(hi - lo), &ignored) < 0)
        return false;
    memcpy(&f->type, buf, 8);
    memcpy(&f->args, buf + (l->exc_args - lo), 8);
    memcpy(&f->context, buf + (l->exc_context - lo), 8);
    memcpy(&f->cause, buf + (l->exc_cause - lo), 8);
    return f->type != 0 && (f->type & 7) == 0;
}

int exc_describe(const struct pyctx *c, const struct exc_raw *raw, struct exc_desc *out,
                 struct ps_err *err)
{
    return exc_describe_cached(c, raw, NULL, out, err);
}

int exc_describe_cached(const struct pyctx *c, const struct exc_raw *raw, struct exc_names *names,
                        struct exc_desc *out, struct ps_err *err)
{
    struct exc_fields f;
    bool have = exc_read_fields(c, raw->value, &f);
    uint64_t type = raw->type ? raw->type : f.type;
    uint64_t vflags = 0;

    memset(out, 0, sizeof(*out));
    if (type == 0 || !(exc_flags_of(c, type) & LAYOUT_TPFLAG(c->lay, base_exc_subclass)))
        return ps_err_set(err, -PS_ECORRUPT,
                          "type at 0x%" PRIx64 " is not an exception type (torn read?)", type);
    if (exc_type_name(c, type, names, out->type, sizeof(out->type), err) < 0)
        return err->code;
    if (!have)
        return 0;
    /* 3.11 may hold an unnormalised value (str, tuple): only an instance has args and a chain */
    vflags = f.type == type ? LAYOUT_TPFLAG(c->lay, base_exc_subclass) : exc_flags_of(c, f.type);
    exc_message(c, raw->value, f.type, vflags, f.args, out);
    if (vflags & LAYOUT_TPFLAG(c->lay, base_exc_subclass)) {
        exc_chained(c, f.cause, names, out->cause_type, sizeof(out->cause_type));
        exc_chained(c, f.context, names, out->context_type, sizeof(out->context_type));
    }
    return 0;
}

/* ---- traceback lines for the snapshot -------------------------------------------------------- */

/* Resolve one traceback entry into sf (strings copied into s). -ENOMEM, or <0 unreadable. */
static int exc_tb_entry(const struct pyctx *c, struct snap *s, uint64_t tb, struct snap_frame *sf,
                        struct ps_err *err)
{
    const struct layout *l = c->lay;
    uint8_t hdr[CODE_HEADER_MAX];
    uint64_t frame = 0, iframe = 0, code = 0;
    uint32_t lasti = 0;
    const struct code_info *ci = NULL;
    struct code_fp fp;
    struct linetab_pos pos;
    int rc = exc_u64(c, tb, l->tb_frame, &frame, err);

    if (rc == 0)
        rc = memsrc_read_u32(c->src, tb + (uint64_t)l->tb_lasti, &lasti, err);
    if (rc == 0)
        rc = exc_u64(c, frame, l->frameobj_f_frame, &iframe, err);
    if (rc == 0)
        rc = exc_u64(c, iframe, l->frame_code, &code, err);
    if (rc == 0 && code_header_len(l) > sizeof(hdr)) /* a target's own debug offsets */
        rc = ps_err_set(err, -PS_ECORRUPT, "the %s layout's code header is over %zu bytes", l->name,
                        sizeof(hdr));
    if (rc == 0)
        rc = memsrc_read(c->src, code, hdr, code_header_len(l), err);
    if (rc < 0)
        return rc;
    code_fp_parse(l, hdr, &fp);
    rc = code_cache_resolve(c->codes, c, code, &fp, &ci, err);
    if (rc < 0)
        return rc;
    pos = linetab_lookup(&ci->lines, ci->firstlineno, (int64_t)((int32_t)lasti / 2));
    sf->function = snap_strdup(s, ci->name);
    sf->qualname = snap_strdup(s, ci->qualname);
    sf->file = snap_strdup(s, ci->filename);
    if (!sf->function || !sf->qualname || !sf->file)
        return ps_err_set(err, -ENOMEM, "out of memory copying a traceback");
    sf->line = pos.line;
    sf->end_line = pos.end_line;
    sf->col = pos.col;
    sf->end_col = pos.end_col;
    sf->code_addr = code;
    sf->owner = SNAP_OWNER_FRAME_OBJECT;
    return 0;
}

/* Fill e->tb with the innermost EXC_TB_MAX entries of traceback tb, outermost first. */
static int exc_snap_tb(const struct pyctx *c, struct snap *s, uint64_t tb, struct snap_exc *e)
{
    uint64_t ring[EXC_TB_MAX];
    size_t n = 0;
    struct ps_err ignored = {0};

    for (size_t k = 0; tb != 0 && tb != c->syms->none && k < EXC_TB_WALK_MAX; k++) {
        ring[n % EXC_TB_MAX] = tb;
        n++;
        if (exc_u64(c, tb, c->lay->tb_next, &tb, &ignored) < 0)
            break;
    }
    e->tb = snap_alloc(s, (n ? (n < EXC_TB_MAX ? n : EXC_TB_MAX) : 1) * sizeof(*e->tb));
    if (!e->tb)
        return -ENOMEM;
    for (size_t k = n > EXC_TB_MAX ? n - EXC_TB_MAX : 0; k < n; k++) {
        struct snap_frame *sf = &e->tb[e->ntb];
        int rc = exc_tb_entry(c, s, ring[k % EXC_TB_MAX], sf, &ignored);
        if (rc == -ENOMEM)
            return rc;
        if (rc < 0)
            break; /* an unreadable entry (freed frame, torn read): keep what we have */
        e->ntb++;
    }
    return 0;
}

/* Build one snap_exc from a raw exception; *out stays NULL when it cannot be described. */
static int exc_snap_one(const struct pyctx *c, struct snap *s, const struct exc_raw *raw,
                        struct snap_exc **out)
{
    struct ps_err ignored = {0};
    struct exc_desc d;
    struct snap_exc *e;

    if (exc_describe(c, raw, &d, &ignored) < 0)
        return 0;
    e = snap_alloc(s, sizeof(*e));
    if (!e)
        return -ENOMEM;
    e->type = snap_strdup(s, d.type);
    e->message = d.has_message ? snap_strdup(s, d.message) : NULL;
    e->cause_type = d.cause_type[0] ? snap_strdup(s, d.cause_type) : NULL;
    e->context_type = d.context_type[0] ? snap_strdup(s, d.context_type) : NULL;
    if (!e->type || exc_snap_tb(c, s, raw->traceback, e) < 0)
        return -ENOMEM;
    *out = e;
    return 0;
}

int exc_snap_thread(const struct pyctx *c, struct snap *s, struct snap_thread *st,
                    struct ps_err *err)
{
    struct ps_err ignored = {0};
    struct exc_raw raw = {0};
    uint64_t handled = 0;
    int rc = 0;

    st->exc_current = NULL;
    st->exc_handled = NULL;
    if (exc_in_flight(c, st->tstate_addr, &raw, &ignored) == 0 && (raw.value || raw.type))
        rc = exc_snap_one(c, s, &raw, &st->exc_current);
    if (rc == 0 && exc_handled(c, st->tstate_addr, &handled, &ignored) == 0 && handled) {
        struct exc_raw h = {.value = handled};
        if (exc_traceback_of(c, handled, &h.traceback, &ignored) == 0)
            rc = exc_snap_one(c, s, &h, &st->exc_handled);
    }
    if (rc < 0)
        return ps_err_set(err, rc, "out of memory reading exceptions");
    return 0;
}
