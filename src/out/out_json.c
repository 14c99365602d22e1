/* SPDX-License-Identifier: MIT */
/*
 * JSON writer for `pyscope dump --json` (see out.h; schema: docs/schema/dump.schema.json).
 * Data flow: a finished struct snap in, one JSON document out; the text writer (out_text.c)
 * renders the same model, and the TUI reuses out_json_string for its snapshot file.
 *
 * Why jansson rather than hand-written printf: its object model keeps keys in insertion order
 * (the document reads in the schema's order) and refuses invalid UTF-8 (a snapshot string that
 * is not UTF-8 is a bug: snap_strndup sanitizes). The bytes come from out_json_dumps
 * (out_jsonw.h), whose one escaper also escapes DEL and the C1 controls that jansson's own
 * dumper leaves raw. jansson stays inside out/: callers get bytes, never a json_t.
 *
 * Invariants: the document is built completely before anything is written, so a failure
 * writes nothing. Building uses a sticky first error (struct jbuild): after a failure every
 * further value is released and dropped, and one check at the end reports it. Unknown values
 * are null, never a magic number: negative lines/columns, syscall -2, '?' OS state, empty
 * wchan, unsigned values past INT64_MAX (json_int_t is signed; Linux pthread_t values are
 * user-space addresses below 2^47, so this only happens to garbage) and non-finite doubles.
 */
#include "pyscope/out.h"

#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "out_int.h"
#include "pyscope/out_jsonw.h"

/* Significant digits for reals: keeps microseconds of a Unix timestamp and prints 0.0012 as
 * 0.0012 (jansson's default of 17 prints 0.0011999999999999999). */
#define JSON_DIGITS 16

/* A document under construction with a sticky first error. */
struct jbuild {
    int rc;          /* 0, or the first failure: -ENOMEM or -EINVAL */
    const char *key; /* for -EINVAL: the key whose string was not valid UTF-8 */
};

/* Store val under key in obj (stealing val); on any failure record it in b. */
static void jb_set(struct jbuild *b, json_t *obj, const char *key, json_t *val)
{
    if (b->rc != 0 || !val) {
        json_decref(val);
        b->rc = b->rc != 0 ? b->rc : -ENOMEM;
        return;
    }
    if (json_object_set_new(obj, key, val) != 0)
        b->rc = -ENOMEM;
}

/* A string value, null for NULL. json_string fails for invalid UTF-8 and for ENOMEM; the
 * unchecked constructor tells them apart. */
static void jb_str(struct jbuild *b, json_t *obj, const char *key, const char *str)
{
    json_t *val;

    if (!str) {
        jb_set(b, obj, key, json_null());
        return;
    }
    val = json_string(str);
    if (!val && b->rc == 0) {
        json_t *probe = json_string_nocheck(str);
        if (probe) {
            b->rc = -EINVAL;
            b->key = key;
        }
        json_decref(probe);
    }
    jb_set(b, obj, key, val);
}

/* Non-negative ints; a negative one means unknown. */
static void jb_int(struct jbuild *b, json_t *obj, const char *key, long long v)
{
    jb_set(b, obj, key, v >= 0 ? json_integer(v) : json_null());
}

static json_t *json_u64(uint64_t v)
{
    return v <= INT64_MAX ? json_integer((json_int_t)v) : json_null();
}

static void jb_u64(struct jbuild *b, json_t *obj, const char *key, uint64_t v)
{
    jb_set(b, obj, key, json_u64(v));
}

static void jb_num(struct jbuild *b, json_t *obj, const char *key, double v)
{
    jb_set(b, obj, key, isfinite(v) ? json_real(v) : json_null());
}

static void jb_bool(struct jbuild *b, json_t *obj, const char *key, bool v)
{
    jb_set(b, obj, key, json_boolean(v));
}

/* --locals: [{name, kind, type, repr, unreadable}], in co_localsplusnames order. */
static json_t *json_vars(struct jbuild *b, const struct snap_frame *f)
{
    json_t *arr = json_array();

    for (size_t i = 0; arr && i < f->nvars && b->rc == 0; i++) {
        const struct snap_var *v = &f->vars[i];
        json_t *o = json_object();

        jb_str(b, o, "name", v->name);
        jb_str(b, o, "kind", v->kind);
        jb_str(b, o, "type", v->type);
        jb_str(b, o, "repr", v->repr);
        jb_bool(b, o, "unreadable", v->unreadable);
        if (!o || json_array_append_new(arr, o) != 0)
            b->rc = -ENOMEM;
    }
    return arr;
}

static json_t *json_frame(struct jbuild *b, const struct snap_frame *f)
{
    json_t *o = json_object();

    jb_str(b, o, "function", f->function);
    jb_str(b, o, "qualname", f->qualname);
    jb_str(b, o, "file", f->file);
    jb_int(b, o, "line", f->line);
    jb_int(b, o, "end_line", f->end_line);
    jb_int(b, o, "column", f->col);
    jb_int(b, o, "end_column", f->end_col);
    jb_bool(b, o, "entry", f->is_entry);
    if (f->vars)
        jb_set(b, o, "locals", json_vars(b, f));
    return o;
}

json_t *out_json_frame_new(const struct snap_frame *f, int *rc)
{
    struct jbuild b = {0};
    json_t *o = json_frame(&b, f);

    if (b.rc == 0)
        return o;
    json_decref(o);
    *rc = b.rc;
    return NULL;
}

static json_t *json_os(struct jbuild *b, const struct snap_os *os, const char *name)
{
    json_t *o = json_object();
    char state[2] = {os->state, '\0'};
    char wchan[sizeof(os->wchan) + 1] = {0};
    bool known = os->state > ' ' && os->state <= '~' && os->state != '?';

    memcpy(wchan, os->wchan, sizeof(os->wchan)); /* terminated even if the array is full */
    jb_str(b, o, "state", known ? state : NULL);
    jb_str(b, o, "wchan", wchan[0] ? wchan : NULL);
    jb_set(b, o, "syscall", os->syscall >= -1 ? json_integer(os->syscall) : json_null());
    jb_str(b, o, "name", name);
    return o;
}

/* dump --native: "native" (innermost first) and "native_error", only when unwinding ran. */
static void json_native(struct jbuild *b, json_t *thread, const struct snap_thread *t)
{
    json_t *arr = json_array();

    for (size_t i = 0; i < t->nnative && b->rc == 0; i++) {
        const struct snap_native_frame *f = &t->native[i];
        json_t *o = json_object();

        jb_u64(b, o, "pc", f->pc);
        jb_str(b, o, "symbol", f->symbol);
        jb_set(b, o, "offset", f->symbol ? json_integer((json_int_t)f->offset) : json_null());
        jb_str(b, o, "module", f->module);
        jb_str(b, o, "insn", f->insn);
        jb_set(b, o, "python_frame",
               f->python_frame >= 0 ? json_integer(f->python_frame) : json_null());
        jb_int(b, o, "nested_thread", f->nested_thread);
        jb_int(b, o, "nested_frame", f->nested_frame);
        if (json_array_append_new(arr, o) != 0)
            b->rc = b->rc != 0 ? b->rc : -ENOMEM;
    }
    jb_set(b, thread, "native", arr);
    jb_str(b, thread, "native_error", t->native_error);
}

/* A thread's exception being raised or handled: null when none. */
static json_t *json_exc(struct jbuild *b, const struct snap_exc *e)
{
    json_t *o, *tb;

    if (!e)
        return json_null();
    o = json_object();
    tb = json_array();
    jb_str(b, o, "type", e->type);
    jb_str(b, o, "message", e->message);
    jb_str(b, o, "cause", e->cause_type);
    jb_str(b, o, "context", e->context_type);
    for (size_t i = 0; i < e->ntb && b->rc == 0; i++)
        if (json_array_append_new(tb, json_frame(b, &e->tb[i])) != 0)
            b->rc = b->rc != 0 ? b->rc : -ENOMEM;
    jb_set(b, o, "traceback", tb);
    return o;
}

static json_t *json_thread(struct jbuild *b, const struct snap_thread *t)
{
    json_t *o = json_object();
    json_t *frames = json_array();

    jb_set(b, o, "thread_id", t->os_only ? json_null() : json_u64(t->thread_id));
    jb_int(b, o, "native_id", t->native_id);
    jb_str(b, o, "name", t->name);
    jb_bool(b, o, "gil", t->gil);
    jb_bool(b, o, "active", t->active);
    jb_str(b, o, "state", t->activity);
    jb_set(b, o, "os", json_os(b, &t->os, t->os_name));
    jb_str(b, o, "status", out_status_name(t->status));
    jb_str(b, o, "error", t->error);
    jb_set(b, o, "interpreter_id", t->os_only ? json_null() : json_integer(t->interp_id));
    jb_bool(b, o, "python", !t->os_only);
    for (size_t i = 0; i < t->nframes && b->rc == 0; i++) {
        if (json_array_append_new(frames, json_frame(b, &t->frames[i])) != 0)
            b->rc = b->rc != 0 ? b->rc : -ENOMEM;
    }
    jb_set(b, o, "frames", frames);
    jb_set(b, o, "exception_raising", json_exc(b, t->exc_current));
    jb_set(b, o, "exception_handled", json_exc(b, t->exc_handled));
    if (t->nnative > 0 || t->native_error)
        json_native(b, o, t);
    return o;
}

static json_t *json_pair(struct jbuild *b, const char *k1, double v1, const char *k2, double v2)
{
    json_t *o = json_object();

    jb_num(b, o, k1, v1);
    jb_num(b, o, k2, v2);
    return o;
}

static json_t *json_stats(struct jbuild *b, const struct snap *s)
{
    json_t *o = json_object();

    jb_num(b, o, "read_seconds", s->read_seconds);
    jb_u64(b, o, "read_calls", s->read_calls);
    return o;
}

static json_t *json_doc(struct jbuild *b, const struct snap *s)
{
    json_t *o = json_object();
    json_t *threads = json_array();

    jb_int(b, o, "pid", s->pid);
    jb_str(b, o, "python_version", s->python_version[0] ? s->python_version : NULL);
    jb_str(b, o, "executable", s->exe);
    jb_str(b, o, "image", s->image);
    jb_str(b, o, "cmdline", s->cmdline);
    jb_num(b, o, "timestamp", s->timestamp);
    jb_bool(b, o, "blocking", s->blocking);
    jb_bool(b, o, "blocking_auto", s->blocking_auto);
    jb_set(b, o, "cpu", json_pair(b, "user_s", s->cpu_user_s, "system_s", s->cpu_system_s));
    jb_u64(b, o, "rss_bytes", s->rss_bytes);
    jb_u64(b, o, "gil_switches", s->gil_switches);
    for (size_t i = 0; i < s->nthreads && b->rc == 0; i++) {
        if (json_array_append_new(threads, json_thread(b, &s->threads[i])) != 0)
            b->rc = b->rc != 0 ? b->rc : -ENOMEM;
    }
    jb_set(b, o, "threads", threads);
    if (s->tasks && b->rc == 0)
        b->rc = out_tasks_json(o, s); /* dump --tasks */
    jb_set(b, o, "stats", json_stats(b, s));
    return o;
}

/* Build the document of s into *out (a new reference). */
static int json_build(const struct snap *s, json_t **out, struct ps_err *err)
{
    struct jbuild b = {0};
    json_t *doc = json_doc(&b, s);

    if (b.rc == 0 && doc) {
        *out = doc;
        return 0;
    }
    json_decref(doc);
    if (b.rc == -EINVAL)
        return ps_err_set(err, -EINVAL,
                          "cannot build the JSON dump: snapshot field \"%s\" is not valid UTF-8; "
                          "snapshot strings must be copied in with snap_strndup",
                          b.key ? b.key : "?");
    return ps_err_set(err, -ENOMEM,
                      "cannot build the JSON dump: out of memory; free memory "
                      "or dump fewer threads");
}

int out_json_string(const struct snap *s, const struct out_opts *opts, char **out,
                    struct ps_err *err)
{
    json_t *doc = NULL;
    char *text;
    int rc;

    assert(s && out);
    rc = json_build(s, &doc, err);
    if (rc < 0)
        return rc;
    text = out_json_dumps(doc, opts ? opts->json_indent : 0, JSON_DIGITS);
    json_decref(doc);
    if (!text)
        return ps_err_set(err, -ENOMEM,
                          "cannot serialise the JSON dump: out of memory; free "
                          "memory or dump fewer threads");
    *out = text;
    return 0;
}

int out_json_write(FILE *fp, const struct snap *s, const struct out_opts *opts, struct ps_err *err)
{
    char *text = NULL;
    int e;
    int rc;

    assert(fp);
    rc = out_json_string(s, opts, &text, err);
    if (rc < 0)
        return rc;
    errno = 0;
    if (fputs(text, fp) >= 0 && fputc('\n', fp) != EOF && fflush(fp) == 0 && !ferror(fp))
        goto free_text;
    e = errno > 0 ? errno : EIO;
    rc = ps_err_set(err, -e, "cannot write the JSON dump: %s; check the output file or pipe",
                    strerror(e));
free_text:
    free(text);
    return rc;
}
