/* SPDX-License-Identifier: MIT */
/*
 * The pprof writer (`--format pprof`, see out_profile.h and docs/profile-formats.md): the
 * profile as a gzipped perftools.profiles.Profile message (github.com/google/pprof,
 * proto/profile.proto), what `go tool pprof`, Pyroscope, Parca and Grafana read.
 *
 * Encoded by hand (varints, tags, length-delimited fields; no protobuf library): the message is
 * built in memory (it grows with unique stacks, not samples), then gzipped with zlib into the
 * stream. Ids: function id = the profile's function_id + 1 (a (function, file) pair), location
 * id = frame id + 1 (one line each); strings are interned in the message's own table (the
 * profile's strings are unique per text, so their pointers key it). One Sample per stack-trie
 * node with samples, leaf first, labelled with its thread (`thread`, `thread_id`) and, for a
 * stack that starts with a `process PID NAME` frame (--subprocesses), with `process` and `pid`
 * instead of that frame.
 *
 * Never: writes a partial gzip member silently (a stream or zlib error is returned).
 */
#include "pyscope/out_profile.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* Frames fetched per stack (the walker caps depth at WALK_MAX_DEPTH + a marker). */
#define PPROF_STACK_MAX 8200

/* A growable byte buffer; a failed allocation is sticky (oom). */
struct pbuf {
    uint8_t *b;
    size_t n, cap;
    bool oom;
};

static void pb_put(struct pbuf *p, const void *data, size_t len)
{
    if (p->oom)
        return;
    if (p->n + len > p->cap) {
        size_t cap = p->cap ? p->cap : 4096;
        uint8_t *nb;

        while (cap < p->n + len)
            cap *= 2;
        nb = realloc(p->b, cap);
        if (!nb) {
            p->oom = true;
            return;
        }
        p->b = nb;
        p->cap = cap;
    }
    memcpy(p->b + p->n, data, len);
    p->n += len;
}

static void pb_varint(struct pbuf *p, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;

    do {
        tmp[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    pb_put(p, tmp, n);
}

/* Field `field` as a varint (wire type 0). */
static void pb_uint(struct pbuf *p, unsigned field, uint64_t v)
{
    pb_varint(p, (uint64_t)field << 3);
    pb_varint(p, v);
}

/* Field `field` as length-delimited bytes (wire type 2). */
static void pb_bytes(struct pbuf *p, unsigned field, const void *data, size_t len)
{
    pb_varint(p, ((uint64_t)field << 3) | 2);
    pb_varint(p, len);
    pb_put(p, data, len);
}

/* A nested message from sub (then emptied for reuse). */
static void pb_msg(struct pbuf *p, unsigned field, struct pbuf *sub)
{
    p->oom |= sub->oom;
    pb_bytes(p, field, sub->b, sub->n);
    sub->n = 0; // NOLINT(clang-analyzer-unix.Malloc): FP, sub->b is kept for reuse and freed
}

/* ---- string table ------------------------------------------------------------------------ */

struct strtab {
    struct pbuf *out; /* the Profile message: strings are written as they are interned */
    const char **keys;
    uint64_t *ids;
    size_t mask, n;
    bool oom;
};

static void strtab_free(struct strtab *t)
{
    free(t->keys);
    free(t->ids);
    t->keys = NULL;
    t->ids = NULL;
    t->oom = true;
}

static int strtab_init(struct strtab *t, struct pbuf *out)
{
    *t = (struct strtab){.out = out, .mask = 1023};
    t->keys = calloc(t->mask + 1, sizeof(*t->keys));
    t->ids = calloc(t->mask + 1, sizeof(*t->ids));
    if (!t->keys || !t->ids) {
        strtab_free(t);
        return -ENOMEM;
    }
    pb_bytes(out, 6, "", 0); /* string_table[0] must be "" */
    t->n = 1;
    return 0;
}

static bool strtab_grow(struct strtab *t)
{
    size_t mask = t->mask * 2 + 1;
    const char **keys = calloc(mask + 1, sizeof(*keys));
    uint64_t *ids = calloc(mask + 1, sizeof(*ids));

    if (!keys || !ids) {
        free(keys);
        free(ids);
        return false;
    }
    for (size_t i = 0; i <= t->mask; i++) {
        size_t k;

        if (!t->keys[i])
            continue;
        for (k = ((uintptr_t)t->keys[i] >> 3) & mask; keys[k]; k = (k + 1) & mask)
            ;
        keys[k] = t->keys[i];
        ids[k] = t->ids[i];
    }
    free(t->keys);
    free(t->ids);
    t->keys = keys;
    t->ids = ids;
    t->mask = mask;
    return true;
}

/* The index of s in the string table (added on first use). "" is 0. */
static uint64_t str_id(struct strtab *t, const char *s)
{
    size_t i;

    if (!s || !s[0] || t->oom || !t->keys)
        return 0;
    if (t->n * 2 > t->mask && !strtab_grow(t)) {
        t->oom = true;
        return 0;
    }
    for (i = ((uintptr_t)s >> 3) & t->mask; t->keys[i]; i = (i + 1) & t->mask)
        if (t->keys[i] == s)
            return t->ids[i];
    t->keys[i] = s;
    t->ids[i] = t->n++;
    pb_bytes(t->out, 6, s, strlen(s));
    return t->ids[i];
}

/* ---- message ----------------------------------------------------------------------------- */

struct pprof {
    const struct profile *p;
    struct pbuf msg, sub, sub2;
    struct strtab st;
    uint32_t *stack;
    uint8_t *fn_done; /* function ids already written */
};

/* A ValueType {type, unit} as field `field`. */
static void put_value_type(struct pprof *w, unsigned field, const char *type, const char *unit)
{
    pb_uint(&w->sub2, 1, str_id(&w->st, type));
    pb_uint(&w->sub2, 2, str_id(&w->st, unit));
    pb_msg(&w->msg, field, &w->sub2);
}

/* Function and Location of every frame (location id = frame + 1). */
static void put_locations(struct pprof *w)
{
    for (uint32_t fr = 0; fr < profile_nframes(w->p); fr++) {
        const struct profile_frame *f = profile_frame_get(w->p, fr);
        uint64_t fid = (uint64_t)f->function_id + 1;

        if (!w->fn_done[f->function_id]) {
            w->fn_done[f->function_id] = 1;
            pb_uint(&w->sub, 1, fid);
            pb_uint(&w->sub, 2, str_id(&w->st, f->function));
            pb_uint(&w->sub, 3, str_id(&w->st, f->function));
            pb_uint(&w->sub, 4, str_id(&w->st, f->file));
            pb_msg(&w->msg, 5, &w->sub);
        }
        pb_uint(&w->sub2, 1, fid);
        if (f->line >= 0)
            pb_uint(&w->sub2, 2, (uint64_t)f->line);
        pb_uint(&w->sub, 1, (uint64_t)fr + 1);
        pb_msg(&w->sub, 4, &w->sub2);
        pb_msg(&w->msg, 4, &w->sub);
    }
}

/* A Label {key, str} or {key, num} into w->sub (the Sample being built). */
static void put_label(struct pprof *w, const char *key, const char *str, int64_t num)
{
    pb_uint(&w->sub2, 1, str_id(&w->st, key));
    if (str)
        pb_uint(&w->sub2, 2, str_id(&w->st, str));
    else
        pb_uint(&w->sub2, 3, (uint64_t)num);
    pb_msg(&w->sub, 3, &w->sub2);
}

/* The `process PID NAME` frame a stack starts with under --subprocesses. */
static bool process_frame(const struct profile_frame *f)
{
    return !f->file[0] && strncmp(f->function, "process ", 8) == 0;
}

/* One Sample per node with samples: locations leaf first, its count, thread/process labels. */
static void put_samples(struct pprof *w)
{
    for (uint32_t i = 0; i < profile_nnodes(w->p); i++) {
        const struct profile_node *n = profile_node_get(w->p, i);
        const struct profile_thread *t;
        size_t depth, first = 0;

        if (!n->self)
            continue;
        depth = profile_stack(w->p, i, w->stack, PPROF_STACK_MAX);
        if (depth > PPROF_STACK_MAX)
            depth = PPROF_STACK_MAX;
        if (depth && process_frame(profile_frame_get(w->p, w->stack[0])))
            first = 1;
        for (size_t k = depth; k-- > first;)
            pb_varint(&w->sub2, (uint64_t)w->stack[k] + 1);
        pb_msg(&w->sub, 1, &w->sub2); /* packed location_id */
        pb_varint(&w->sub2, n->self);
        pb_msg(&w->sub, 2, &w->sub2); /* packed value */
        t = profile_thread_get(w->p, n->thread);
        if (t) {
            put_label(w, "thread", t->name[0] ? t->name : "?", 0);
            if (t->native_id)
                put_label(w, "thread_id", NULL, t->native_id);
        }
        if (first) {
            const char *pf = profile_frame_get(w->p, w->stack[0])->function;

            put_label(w, "process", pf, 0);
            put_label(w, "pid", NULL, strtoll(pf + 8, NULL, 10));
        }
        pb_msg(&w->msg, 2, &w->sub);
    }
}

/* gzip the message into f. */
static int gzip_out(FILE *f, const struct pbuf *msg, struct ps_err *err)
{
    z_stream z = {0};
    uint8_t out[16384];
    int zrc;

    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return ps_err_set(err, -ENOMEM, "out of memory compressing the pprof profile");
    z.next_in = msg->b;
    z.avail_in = (uInt)msg->n;
    do {
        z.next_out = out;
        z.avail_out = sizeof(out);
        zrc = deflate(&z, Z_FINISH);
        if (zrc == Z_STREAM_ERROR)
            break;
        (void)fwrite(out, 1, sizeof(out) - z.avail_out, f);
    } while (zrc != Z_STREAM_END);
    (void)deflateEnd(&z);
    if (zrc != Z_STREAM_END)
        return ps_err_set(err, -EIO, "compressing the pprof profile failed");
    if (fflush(f) != 0 || ferror(f))
        return ps_err_set(err, -EIO, "writing the profile failed (disk full or a closed pipe?)");
    return 0;
}

int out_pprof_write(FILE *f, const struct profile *p, const struct out_profile_opts *o,
                    struct ps_err *err)
{
    struct pprof w = {.p = p};
    double period_ns = o->rate_hz > 0 ? 1e9 / o->rate_hz : 1e9 / SAMPLER_DEFAULT_RATE;
    int rc = 0;

    w.stack = malloc(sizeof(*w.stack) * PPROF_STACK_MAX);
    w.fn_done = calloc(profile_nframes(p) + 1, 1);
    rc = strtab_init(&w.st, &w.msg);
    if (rc < 0 || !w.stack || !w.fn_done)
        rc = ps_err_set(err, -ENOMEM, "out of memory writing the pprof profile");
    if (rc == 0) {
        put_value_type(&w, 1, "samples", "count");
        put_locations(&w);
        put_samples(&w);
        put_value_type(&w, 11, "cpu", "nanoseconds");
        pb_uint(&w.msg, 12, (uint64_t)period_ns);
        if (w.msg.oom || w.sub.oom || w.sub2.oom || w.st.oom)
            rc = ps_err_set(err, -ENOMEM, "out of memory writing the pprof profile");
    }
    if (rc == 0)
        rc = gzip_out(f, &w.msg, err);
    strtab_free(&w.st);
    free(w.msg.b);
    free(w.sub.b);
    free(w.sub2.b);
    free(w.fn_done);
    free(w.stack);
    return rc;
}
