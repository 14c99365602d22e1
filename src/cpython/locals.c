/* SPDX-License-Identifier: MIT */
/*
 * Frame variables for `--locals` (locals.h: locals_frame). Runs after the walker: given a frame
 * and its (validated) code object, it reads the code's co_localsplusnames (tuple of str) and
 * co_localspluskinds (bytes), the frame's localsplus slots in one read, and writes one snap_var
 * per bound variable with a repr from locals_repr.c.
 *
 * Kinds (Include/internal/pycore_code.h; their bits are the layout's co_fast_*): hidden (an
 * inlined comprehension's, 3.12+), local, cell, free. Arguments are the first co_argcount +
 * co_kwonlyargcount slots plus one each for the CO_VARARGS and CO_VARKEYWORDS flags
 * (Objects/codeobject.c). A cell or free slot holds a cell object once MAKE_CELL/COPY_FREE_VARS
 * ran; its content is ob_ref (NULL: unbound).
 *
 * Everything read is bounded: co_nlocalsplus <= LOCALS_MAX_VARS and must equal both the names
 * tuple's and the kinds' lengths; names are capped strings; each value's repr is budgeted.
 */
#include "pyscope/locals.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest variable name kept (identifiers are short; the cap bounds garbage). */
#define LOCALS_NAME_MAX 128
/* Type names kept per var. */
#define LOCALS_TYPE_MAX 128

/* What the code object says about its variables. */
struct code_vars {
    size_t n;
    size_t nargs;
    uint64_t *names;    /* n str addresses */
    uint8_t *kinds;     /* n kind bytes */
    uint64_t *slots;    /* n frame slots */
    uint64_t cell_type; /* PyCell_Type once seen (recognised by tp_name "cell") */
    unsigned cell;      /* the kind bits of a cell, a free and a hidden variable (layout) */
    unsigned free;
    unsigned hidden; /* 0 where the version has none */
};

/* A flag or kind bit of the layout as a mask: 0 when the version has none. */
static unsigned layout_mask(int32_t bits)
{
    return bits > 0 ? (unsigned)bits : 0u;
}

static int read_i32(const struct pyctx *c, uint64_t addr, int32_t *out, struct ps_err *err)
{
    uint32_t v = 0;
    int rc = memsrc_read_u32(c->src, addr, &v, err);

    if (rc == 0)
        *out = (int32_t)v;
    return rc;
}

/* co_nlocalsplus and the argument count (flags-aware). */
static int code_counts(const struct pyctx *c, uint64_t code, struct code_vars *v,
                       struct ps_err *err)
{
    const struct layout *l = c->lay;
    int32_t n = 0, argc = 0, kwonly = 0, flags = 0;
    int rc = read_i32(c, code + (uint64_t)l->code_nlocalsplus, &n, err);

    if (rc == 0)
        rc = read_i32(c, code + (uint64_t)l->code_argcount, &argc, err);
    if (rc == 0)
        rc = read_i32(c, code + (uint64_t)l->code_kwonlyargcount, &kwonly, err);
    if (rc == 0)
        rc = read_i32(c, code + (uint64_t)l->code_flags, &flags, err);
    if (rc < 0)
        return rc;
    if (n < 0 || n > LOCALS_MAX_VARS || argc < 0 || kwonly < 0 || argc + kwonly > n)
        return ps_err_set(err, -PS_ECORRUPT,
                          "code object at 0x%" PRIx64 " has implausible counts (%d variables, "
                          "%d+%d arguments)",
                          code, (int)n, (int)argc, (int)kwonly);
    v->n = (size_t)n;
    v->nargs = (size_t)argc + (size_t)kwonly +
               ((unsigned)flags & layout_mask(l->co_varargs) ? 1 : 0) +
               ((unsigned)flags & layout_mask(l->co_varkeywords) ? 1 : 0);
    v->cell = layout_mask(l->co_fast_cell);
    v->free = layout_mask(l->co_fast_free);
    v->hidden = layout_mask(l->co_fast_hidden);
    return 0;
}

/* A tuple or bytes object of exactly v->n items/bytes, checked by type. */
static int check_sized(const struct pyctx *c, uint64_t obj, uint64_t want_type, size_t n,
                       const char *what, struct ps_err *err)
{
    uint64_t type = 0, size = 0;
    int rc = pyobj_type(c, obj, &type, err);

    if (rc == 0)
        rc = memsrc_read_u64(c->src, obj + (uint64_t)c->lay->varobject_size, &size, err);
    if (rc == 0 && (!want_type || type != want_type || size != n))
        rc = ps_err_set(err, -PS_ECORRUPT,
                        "%s at 0x%" PRIx64 " is not a %zu-item object of the expected type", what,
                        obj, n);
    return rc;
}

static int read_names_kinds(const struct pyctx *c, uint64_t code, struct code_vars *v,
                            struct ps_err *err)
{
    uint64_t names = 0, kinds = 0;
    int rc = memsrc_read_u64(c->src, code + (uint64_t)c->lay->code_localsplusnames, &names, err);

    if (rc == 0)
        rc = memsrc_read_u64(c->src, code + (uint64_t)c->lay->code_localspluskinds, &kinds, err);
    if (rc == 0)
        rc = check_sized(c, names, c->syms->tuple_type, v->n, "co_localsplusnames", err);
    if (rc == 0)
        rc = check_sized(c, kinds, c->syms->bytes_type, v->n, "co_localspluskinds", err);
    if (rc == 0)
        rc = memsrc_read(c->src, names + (uint64_t)c->lay->tuple_items, v->names,
                         v->n * sizeof(*v->names), err);
    if (rc == 0)
        rc = memsrc_read(c->src, kinds + (uint64_t)c->lay->bytes_sval, v->kinds, v->n, err);
    return rc;
}

static int code_vars_read(const struct pyctx *c, uint64_t frame, uint64_t code, struct code_vars *v,
                          struct ps_err *err)
{
    int rc = code_counts(c, code, v, err);

    if (rc < 0 || v->n == 0)
        return rc;
    v->names = calloc(v->n, sizeof(*v->names));
    v->kinds = calloc(v->n, sizeof(*v->kinds));
    v->slots = calloc(v->n, sizeof(*v->slots));
    if (!v->names || !v->kinds || !v->slots)
        return ps_err_set(err, -ENOMEM, "cannot allocate frame variables: out of memory");
    rc = read_names_kinds(c, code, v, err);
    if (rc == 0)
        rc = memsrc_read(c->src, frame + (uint64_t)c->lay->frame_localsplus, v->slots,
                         v->n * sizeof(*v->slots), err);
    return rc;
}

/* Is obj a cell? PyCell_Type is not exported: recognise it by tp_name, once per call. */
static bool is_cell(const struct pyctx *c, struct code_vars *v, uint64_t obj)
{
    struct ps_err ignored = {0};
    char name[16];
    uint64_t type = 0;

    if (pyobj_type(c, obj, &type, &ignored) < 0 || !type)
        return false;
    if (v->cell_type)
        return type == v->cell_type;
    if (pyobj_type_name(c, type, name, sizeof(name), &ignored) < 0 || strcmp(name, "cell") != 0)
        return false;
    v->cell_type = type;
    return true;
}

static const char *var_kind(const struct code_vars *v, size_t i)
{
    if (i < v->nargs)
        return "arg";
    if (v->kinds[i] & v->free)
        return "free";
    return v->kinds[i] & v->cell ? "cell" : "local";
}

/* The value of slot i: cells dereferenced; 0 when unbound. -errno when a cell is unreadable. */
static int slot_value(const struct pyctx *c, struct code_vars *v, size_t i, uint64_t *value)
{
    struct ps_err ignored = {0};
    uint64_t obj = v->slots[i];

    *value = obj;
    if (!obj || !(v->kinds[i] & (v->cell | v->free)) || !is_cell(c, v, obj))
        return 0;
    return memsrc_read_u64(c->src, obj + (uint64_t)c->lay->cell_ref, value, &ignored);
}

/* One variable into out; false when it is unbound or hidden (left out). */
static bool one_var(const struct pyctx *c, struct code_vars *v, size_t i, struct snap *s,
                    struct snap_var *out)
{
    struct ps_err ignored = {0};
    char name[LOCALS_NAME_MAX], type[LOCALS_TYPE_MAX] = "", repr[LOCALS_REPR_MAX] = "";
    uint64_t value = 0;
    int rc;

    if (v->kinds[i] & v->hidden || !v->slots[i])
        return false;
    rc = slot_value(c, v, i, &value);
    if (rc == 0 && !value)
        return false;
    if (pyobj_str(c, v->names[i], name, sizeof(name), NULL, &ignored) < 0)
        (void)snprintf(name, sizeof(name), "<unreadable name %zu>", i);
    out->name = snap_strdup(s, name);
    out->kind = var_kind(v, i);
    if (rc == 0)
        rc = locals_repr(c, value, repr, sizeof(repr), type, sizeof(type), &ignored);
    /* A value whose type name cannot be read is unreadable too: the schema promises a type
     * name for every readable value (docs/schema/dump.schema.json, "variable"). */
    out->unreadable = rc < 0 || !type[0];
    out->type = out->unreadable ? NULL : snap_strdup(s, type);
    out->repr = out->unreadable ? NULL : snap_strdup(s, repr);
    return true;
}

int locals_frame(const struct pyctx *c, uint64_t frame_addr, uint64_t code_addr, struct snap *s,
                 struct snap_frame *sf, struct ps_err *err)
{
    struct code_vars v = {0};
    struct snap_var *vars = NULL;
    size_t n = 0;
    int rc = code_vars_read(c, frame_addr, code_addr, &v, err);

    if (rc == 0) /* never NULL on success: "read, none bound" differs from "not read" */
        vars = snap_alloc(s, (v.n ? v.n : 1) * sizeof(*vars));
    if (rc == 0 && !vars)
        rc = ps_err_set(err, -ENOMEM, "cannot allocate frame variables: out of memory");
    for (size_t i = 0; rc == 0 && vars && i < v.n; i++)
        if (one_var(c, &v, i, s, &vars[n]))
            n++;
    if (rc == 0) {
        sf->vars = vars;
        sf->nvars = n;
    }
    free(v.names);
    free(v.kinds);
    free(v.slots);
    return rc;
}
