/* SPDX-License-Identifier: MIT */
/*
 * _Py_DebugOffsets (3.13+): the target's own offsets, merged over pyscope's generated table
 * (see debugoffsets.h). Sits between locate (which found _PyRuntime and Py_Version) and every
 * reader of struct layout: pyproc calls it once at open and hands the merged table to the walker.
 *
 * The struct is parsed with a per-minor list of its uint64 slots (dbg_spec_13, from
 * internal/pycore_runtime.h of 3.13.0, the same list as scripts/gen-layouts' DEBUG_OFFSETS) and a
 * map from slots to table fields (dbg_map, as gen-layouts' DEBUG_TO_KEYS). Everything read is
 * target data: every slot is bounded by its group's size before it becomes an offset, so a
 * misparsed struct (an unknown minor whose layout moved) fails here or in pyproc's structure
 * checks, never turns into a wild read. One read, no allocation, no state.
 */
#include "pyscope/debugoffsets.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* A group or struct bigger than this is not a CPython struct (the runtime is ~460 KB). */
#define DBG_MAX_STRUCT ((uint64_t)1 << 24)
/* Header: cookie, version, free_threaded. */
#define DBG_HEADER 24

static const char dbg_cookie[8] = {'x', 'd', 'e', 'b', 'u', 'g', 'p', 'y'};

/*
 * 3.13 slots in order, after the header (CPython 3.13.0 internal/pycore_runtime.h). A name
 * ending in ".size" starts a group: the struct's sizeof, which bounds the group's offsets.
 */
static const char *const dbg_spec_13[] = {
    "runtime_state.size",
    "runtime_state.finalizing",
    "runtime_state.interpreters_head",
    "interpreter_state.size",
    "interpreter_state.id",
    "interpreter_state.next",
    "interpreter_state.threads_head",
    "interpreter_state.gc",
    "interpreter_state.imports_modules",
    "interpreter_state.sysdict",
    "interpreter_state.builtins",
    "interpreter_state.ceval_gil",
    "interpreter_state.gil_runtime_state",
    "interpreter_state.gil_runtime_state_enabled",
    "interpreter_state.gil_runtime_state_locked",
    "interpreter_state.gil_runtime_state_holder",
    "thread_state.size",
    "thread_state.prev",
    "thread_state.next",
    "thread_state.interp",
    "thread_state.current_frame",
    "thread_state.thread_id",
    "thread_state.native_thread_id",
    "thread_state.datastack_chunk",
    "thread_state.status",
    "interpreter_frame.size",
    "interpreter_frame.previous",
    "interpreter_frame.executable",
    "interpreter_frame.instr_ptr",
    "interpreter_frame.localsplus",
    "interpreter_frame.owner",
    "code_object.size",
    "code_object.filename",
    "code_object.name",
    "code_object.qualname",
    "code_object.linetable",
    "code_object.firstlineno",
    "code_object.argcount",
    "code_object.localsplusnames",
    "code_object.localspluskinds",
    "code_object.co_code_adaptive",
    "pyobject.size",
    "pyobject.ob_type",
    "type_object.size",
    "type_object.tp_name",
    "type_object.tp_repr",
    "type_object.tp_flags",
    "tuple_object.size",
    "tuple_object.ob_item",
    "tuple_object.ob_size",
    "list_object.size",
    "list_object.ob_item",
    "list_object.ob_size",
    "dict_object.size",
    "dict_object.ma_keys",
    "dict_object.ma_values",
    "float_object.size",
    "float_object.ob_fval",
    "long_object.size",
    "long_object.lv_tag",
    "long_object.ob_digit",
    "bytes_object.size",
    "bytes_object.ob_size",
    "bytes_object.ob_sval",
    "unicode_object.size",
    "unicode_object.state",
    "unicode_object.length",
    "unicode_object.asciiobject_size",
    "gc.size",
    "gc.collecting",
};

#define DBG_NSLOTS_13 (sizeof(dbg_spec_13) / sizeof(dbg_spec_13[0]))
_Static_assert(DBG_HEADER + 8 * DBG_NSLOTS_13 == DEBUGOFFSETS_READ_SIZE,
               "3.13 _Py_DebugOffsets is 584 bytes");

/* Slot -> table field (value = slot, minus another slot when `minus` is set). */
struct dbg_map {
    const char *slot;
    const char *field;
    const char *minus;
};

static const struct dbg_map dbg_map[] = {
    {"runtime_state.size", "runtime_size", NULL},
    {"runtime_state.interpreters_head", "runtime_interpreters_head", NULL},
    {"interpreter_state.id", "interp_id", NULL},
    {"interpreter_state.next", "interp_next", NULL},
    {"interpreter_state.threads_head", "interp_threads_head", NULL},
    {"interpreter_state.imports_modules", "interp_modules", NULL},
    {"interpreter_state.ceval_gil", "interp_gil_ptr", NULL},
    /* locked/holder count from the interpreter's start: relative to the embedded _gil */
    {"interpreter_state.gil_runtime_state_locked", "gil_locked",
     "interpreter_state.gil_runtime_state"},
    {"interpreter_state.gil_runtime_state_holder", "gil_last_holder",
     "interpreter_state.gil_runtime_state"},
    {"thread_state.prev", "tstate_prev", NULL},
    {"thread_state.next", "tstate_next", NULL},
    {"thread_state.interp", "tstate_interp", NULL},
    {"thread_state.current_frame", "tstate_current_frame", NULL},
    {"thread_state.thread_id", "tstate_thread_id", NULL},
    {"thread_state.native_thread_id", "tstate_native_thread_id", NULL},
    {"thread_state.datastack_chunk", "tstate_datastack_chunk", NULL},
    {"thread_state.status", "tstate_status", NULL},
    {"interpreter_frame.previous", "frame_previous", NULL},
    {"interpreter_frame.executable", "frame_code", NULL},
    {"interpreter_frame.instr_ptr", "frame_instr", NULL},
    {"interpreter_frame.localsplus", "frame_localsplus", NULL},
    {"interpreter_frame.owner", "frame_owner", NULL},
    {"code_object.filename", "code_filename", NULL},
    {"code_object.name", "code_name", NULL},
    {"code_object.qualname", "code_qualname", NULL},
    {"code_object.linetable", "code_linetable", NULL},
    {"code_object.firstlineno", "code_firstlineno", NULL},
    {"code_object.argcount", "code_argcount", NULL},
    {"code_object.localsplusnames", "code_localsplusnames", NULL},
    {"code_object.localspluskinds", "code_localspluskinds", NULL},
    {"code_object.co_code_adaptive", "code_code_adaptive", NULL},
    {"pyobject.ob_type", "object_type", NULL},
    {"type_object.tp_name", "type_name", NULL},
    {"type_object.tp_flags", "type_flags", NULL},
    {"tuple_object.ob_item", "tuple_items", NULL},
    {"tuple_object.ob_size", "varobject_size", NULL},
    {"list_object.ob_item", "list_items", NULL},
    {"list_object.ob_size", "varobject_size", NULL},
    {"dict_object.ma_keys", "dict_keys", NULL},
    {"dict_object.ma_values", "dict_values", NULL},
    {"float_object.ob_fval", "float_value", NULL},
    {"long_object.lv_tag", "long_size", NULL},
    {"long_object.ob_digit", "long_digits", NULL},
    {"bytes_object.ob_size", "varobject_size", NULL},
    {"bytes_object.ob_sval", "bytes_sval", NULL},
    {"unicode_object.state", "str_state", NULL},
    {"unicode_object.length", "str_length", NULL},
    {"unicode_object.asciiobject_size", "str_ascii_data", NULL},
};

#define DBG_NMAP (sizeof(dbg_map) / sizeof(dbg_map[0]))

/* The parsed struct: slot values in spec order. */
struct dbg_values {
    uint64_t version;
    uint64_t free_threaded;
    uint64_t slot[DBG_NSLOTS_13];
};

bool debugoffsets_expected(uint32_t version_hex)
{
    return (version_hex >> 16) >= (DEBUGOFFSETS_FIRST_VERSION >> 16);
}

static uint64_t dbg_le64(const unsigned char *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static int dbg_slot_index(const char *name)
{
    for (size_t i = 0; i < DBG_NSLOTS_13; i++)
        if (strcmp(dbg_spec_13[i], name) == 0)
            return (int)i;
    return -1;
}

/* Every group size bounded and every offset inside its group (the struct is what we parse). */
static int dbg_plausible(const struct debugoffsets_in *in, const struct dbg_values *v,
                         struct ps_err *err)
{
    uint64_t size = 0;
    size_t bad = DBG_NSLOTS_13;

    for (size_t i = 0; i < DBG_NSLOTS_13 && bad == DBG_NSLOTS_13; i++) {
        const char *dot = strchr(dbg_spec_13[i], '.');

        if (dot && strcmp(dot, ".size") == 0) {
            size = v->slot[i];
            if (size == 0 || size > DBG_MAX_STRUCT)
                bad = i;
        } else if (v->slot[i] >= size) {
            bad = i;
        }
    }
    if (bad != DBG_NSLOTS_13)
        return ps_err_set(err, -PS_ECORRUPT,
                          "the _Py_DebugOffsets of Python %s are implausible at %s: their "
                          "layout is not the 3.13 one pyscope parses; this version is not "
                          "supported",
                          in->version, dbg_spec_13[bad]);
    if (in->runtime_section_size && v->slot[0] != in->runtime_section_size)
        return ps_err_set(err, -PS_ECORRUPT,
                          "the _Py_DebugOffsets of Python %s give a runtime of %llu bytes but "
                          "its .PyRuntime section has %llu: their layout is not the one pyscope "
                          "parses",
                          in->version, (unsigned long long)v->slot[0],
                          (unsigned long long)in->runtime_section_size);
    return 0;
}

static int dbg_read(const struct debugoffsets_in *in, struct dbg_values *v, struct ps_err *err)
{
    unsigned char raw[DEBUGOFFSETS_READ_SIZE] = {0};
    int rc = memsrc_read(in->src, in->runtime_addr, raw, sizeof(raw), err);

    if (rc < 0)
        return rc;
    if (memcmp(raw, dbg_cookie, sizeof(dbg_cookie)) != 0)
        return ps_err_set(err, -PS_ECORRUPT,
                          "Python %s's _PyRuntime does not start with the _Py_DebugOffsets "
                          "cookie \"xdebugpy\": not a CPython 3.13+ runtime pyscope can read",
                          in->version);
    v->version = dbg_le64(raw + 8);
    v->free_threaded = dbg_le64(raw + 16);
    for (size_t i = 0; i < DBG_NSLOTS_13; i++)
        v->slot[i] = dbg_le64(raw + DBG_HEADER + 8 * i);
    if ((v->version >> 16) != (in->version_hex >> 16))
        return ps_err_set(err, -PS_EVERSION,
                          "the _Py_DebugOffsets of the target say version 0x%08llx but "
                          "Py_Version says %s: the runtime is not the one located",
                          (unsigned long long)v->version, in->version);
    if (v->free_threaded != 0)
        return ps_err_set(err, -PS_EVERSION,
                          "process runs a free-threaded Python %s build (3.13t), which pyscope "
                          "does not support; run it against a default (GIL) build",
                          in->version);
    return dbg_plausible(in, v, err);
}

/* Set a table field by name (fields are the LAYOUT_FIELDS X-macro). */
static bool dbg_set_field(struct layout *lay, const char *name, int32_t value)
{
#define DBG_SET(f)                                                                                 \
    if (strcmp(name, #f) == 0) {                                                                   \
        lay->f = value;                                                                            \
        return true;                                                                               \
    }
    LAYOUT_FIELDS(DBG_SET)
#undef DBG_SET
    return false;
}

/* Append "name: target A, table B" to buf (bounded; stops quietly when full). */
static void dbg_note(char *buf, size_t cap, const char *name, int64_t target, int32_t table)
{
    size_t len = strlen(buf);

    if (len + 1 < cap)
        (void)snprintf(buf + len, cap - len, "%s%s: target %lld, table %d", len ? "; " : "", name,
                       (long long)target, (int)table);
}

/* Merge mapped slots over out->lay, counting and noting disagreements. */
static void dbg_apply(const struct dbg_values *v, struct debugoffsets_out *out, char *notes,
                      size_t cap)
{
    for (size_t i = 0; i < DBG_NMAP; i++) {
        int si = dbg_slot_index(dbg_map[i].slot);
        int mi = dbg_map[i].minus ? dbg_slot_index(dbg_map[i].minus) : -1;
        int64_t value;
        int32_t table = LAYOUT_ABSENT;

        if (si < 0 || (dbg_map[i].minus && mi < 0))
            continue;
        value = (int64_t)v->slot[si] - (mi >= 0 ? (int64_t)v->slot[mi] : 0);
        if (value < 0 || !layout_field_by_name(&out->lay, dbg_map[i].field, &table))
            continue;
        out->ncovered++;
        if (table != (int32_t)value) {
            out->ndisagree++;
            dbg_note(notes, cap, dbg_map[i].field, value, table);
        }
        (void)dbg_set_field(&out->lay, dbg_map[i].field, (int32_t)value);
    }
}

/* Names of table fields the debug offsets do not cover (bounded list for the warning). */
static void dbg_assumed(char *buf, size_t cap)
{
    size_t n = layout_field_count();

    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const char *name = layout_field_name(i);
        bool covered = false;
        size_t len = strlen(buf);

        for (size_t j = 0; j < DBG_NMAP && !covered; j++)
            covered = strcmp(dbg_map[j].field, name) == 0;
        if (covered)
            continue;
        if (len + strlen(name) + 8 >= cap) {
            (void)snprintf(buf + len, cap - len, ", ...");
            break;
        }
        (void)snprintf(buf + len, cap - len, "%s%s", len ? ", " : "", name);
    }
}

static void dbg_warn(const struct debugoffsets_in *in, struct debugoffsets_out *out,
                     const char *notes)
{
    char assumed[200];

    if (!in->exact) {
        dbg_assumed(assumed, sizeof(assumed));
        (void)snprintf(out->warning, sizeof(out->warning),
                       "Python %s is newer than pyscope's tables: read with its own "
                       "_Py_DebugOffsets (%zu fields) and the %s table for the rest (assumed: "
                       "%s); results are validated but may be wrong",
                       in->version, out->ncovered, in->table->name, assumed);
    } else if (out->ndisagree) {
        (void)snprintf(out->warning, sizeof(out->warning),
                       "Python %s's own _Py_DebugOffsets disagree with pyscope's %s table (from "
                       "%s) on %zu of %zu fields (%s); using the target's values, the other "
                       "fields come from the table and may be wrong",
                       in->version, in->table->name, in->table->generated_from, out->ndisagree,
                       out->ncovered, notes);
    }
}

int debugoffsets_merge(const struct debugoffsets_in *in, struct debugoffsets_out *out,
                       struct ps_err *err)
{
    struct dbg_values v = {0};
    char notes[256] = "";
    int rc;

    rc = dbg_read(in, &v, err);
    if (rc < 0)
        return rc;
    memset(out, 0, sizeof(*out));
    out->lay = *in->table;
    dbg_apply(&v, out, notes, sizeof(notes));
    dbg_warn(in, out, notes);
    return 0;
}
