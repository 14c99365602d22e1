/* SPDX-License-Identifier: MIT */
/*
 * Profile writers for collapsed stacks and speedscope JSON, the format dispatcher, and the
 * escaping helpers the other profile writers share (see out_profile.h, out_profile_int.h).
 *
 * Both formats are streamed straight from the profile's node table (parents before children):
 * no copy of the profile is made except the merged one that out_profile_write builds when
 * threads are not kept apart. A stream error is reported once at the end (ferror), so a full
 * disk is an error, never a silently short file.
 */
#include "pyscope/out_profile.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "out_int.h"
#include "out_profile_int.h"
#include "pyscope/out_jsonw.h"

#define DEFAULT_TITLE "pyscope profile"
/* Frames fetched per stack; deeper stacks are cut at the root side (never happens: the walker
 * caps depth at WALK_MAX_DEPTH + 1). */
#define STACK_MAX 8200

void out_profile_label(const struct profile_frame *f, char *buf, size_t cap)
{
    if (!f->file[0])
        (void)snprintf(buf, cap, "%s", f->function);
    else if (f->line < 0)
        (void)snprintf(buf, cap, "%s (%s)", f->function, f->file);
    else
        (void)snprintf(buf, cap, "%s (%s:%d)", f->function, f->file, f->line);
}

void out_profile_thread_label(const struct profile_thread *t, char *buf, size_t cap)
{
    const char *name = t->name[0] ? t->name : "?";

    if (t->native_id)
        (void)snprintf(buf, cap, "thread %s (%d)", name, (int)t->native_id);
    else
        (void)snprintf(buf, cap, "thread %s (%llu)", name, (unsigned long long)t->thread_id);
}

void out_profile_xml_str(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    while (*p) {
        size_t n = out_json_utf8_len(p);

        switch (*p) {
        case '&': (void)fputs("&amp;", f); break;
        case '<': (void)fputs("&lt;", f); break;
        case '>': (void)fputs("&gt;", f); break;
        case '"': (void)fputs("&quot;", f); break;
        case '\'': (void)fputs("&apos;", f); break;
        default:
            if (n == 0 || (*p < 0x20 && *p != '\t'))
                (void)fputc('?', f);
            else
                (void)fwrite(p, 1, n, f);
        }
        p += n ? n : 1;
    }
}

static int stream_result(FILE *f, struct ps_err *err)
{
    if (fflush(f) != 0 || ferror(f))
        return ps_err_set(err, -EIO, "writing the profile failed (disk full or a closed pipe?)");
    return 0;
}

/* The one table of format names: a format's first row is its name, later rows are aliases.
 * The order is the order --format's error messages list them in. */
static const struct {
    const char *name;
    enum out_profile_format fmt;
} out_profile_formats[] = {
    {"flamegraph", OUT_PROFILE_FLAMEGRAPH}, {"svg", OUT_PROFILE_FLAMEGRAPH},
    {"speedscope", OUT_PROFILE_SPEEDSCOPE}, {"collapsed", OUT_PROFILE_COLLAPSED},
    {"folded", OUT_PROFILE_COLLAPSED},      {"pprof", OUT_PROFILE_PPROF},
    {"json", OUT_PROFILE_SAMPLES}};

#define OUT_NFORMATS (sizeof(out_profile_formats) / sizeof(out_profile_formats[0]))

bool out_profile_parse_format(const char *name, enum out_profile_format *out)
{
    for (size_t i = 0; i < OUT_NFORMATS; i++)
        if (strcmp(name, out_profile_formats[i].name) == 0) {
            *out = out_profile_formats[i].fmt;
            return true;
        }
    return false;
}

/* Row i names its format (no earlier row has the same format) and is listed. */
static bool out_profile_listed(size_t i, bool with_samples)
{
    for (size_t j = 0; j < i; j++)
        if (out_profile_formats[j].fmt == out_profile_formats[i].fmt)
            return false;
    return with_samples || out_profile_formats[i].fmt != OUT_PROFILE_SAMPLES;
}

const char *out_profile_names(bool with_samples, char *buf, size_t cap)
{
    size_t n = 0, left = 0, used = 0;

    if (cap == 0)
        return buf;
    buf[0] = '\0';
    for (size_t i = 0; i < OUT_NFORMATS; i++)
        left += out_profile_listed(i, with_samples);
    for (size_t i = 0; i < OUT_NFORMATS && used < cap; i++) {
        int w;
        if (!out_profile_listed(i, with_samples))
            continue;
        n++;
        w = snprintf(buf + used, cap - used, "%s%s",
                     n == 1      ? ""
                     : n == left ? " or "
                                 : ", ",
                     out_profile_formats[i].name);
        if (w < 0)
            break;
        used += (size_t)w;
    }
    return buf;
}

/* ---- collapsed --------------------------------------------------------------------------- */

/* A label with the folded format's separators (';', newlines) replaced by '_', other control
 * characters escaped by the text escaper (a folded file is often read in a terminal). */
static void put_folded(FILE *f, char *label)
{
    for (char *c = label; *c; c++)
        if (*c == ';' || *c == '\n' || *c == '\r')
            *c = '_';
    out_text_escaped(f, label);
}

int out_collapsed_write(FILE *f, const struct profile *p, const struct out_profile_opts *o,
                        struct ps_err *err)
{
    uint32_t *stack = malloc(sizeof(*stack) * STACK_MAX);
    char label[OUT_LABEL_MAX];

    if (!stack)
        return ps_err_set(err, -ENOMEM, "out of memory writing collapsed stacks");
    for (uint32_t i = 0; i < profile_nnodes(p); i++) {
        const struct profile_node *n = profile_node_get(p, i);
        size_t depth;
        bool first = true;

        if (!n->self)
            continue;
        depth = profile_stack(p, i, stack, STACK_MAX);
        if (o->per_thread) {
            out_profile_thread_label(profile_thread_get(p, n->thread), label, sizeof(label));
            put_folded(f, label);
            first = false;
        }
        for (size_t k = 0; k < depth && k < STACK_MAX; k++) {
            out_profile_label(profile_frame_get(p, stack[k]), label, sizeof(label));
            if (!first)
                (void)fputc(';', f);
            put_folded(f, label);
            first = false;
        }
        if (first)
            (void)fputs("[no Python frames]", f);
        (void)fprintf(f, " %llu\n", (unsigned long long)n->self);
    }
    free(stack);
    return stream_result(f, err);
}

/* ---- speedscope -------------------------------------------------------------------------- */

static void speedscope_frames(FILE *f, const struct profile *p)
{
    (void)fputs("{\"frames\":[", f);
    for (uint32_t i = 0; i < profile_nframes(p); i++) {
        const struct profile_frame *fr = profile_frame_get(p, i);

        (void)fputs(i ? ",\n{\"name\":" : "\n{\"name\":", f);
        out_json_str(f, fr->function);
        if (fr->file[0]) {
            (void)fputs(",\"file\":", f);
            out_json_str(f, fr->file);
        }
        if (fr->line >= 0)
            (void)fprintf(f, ",\"line\":%d", fr->line);
        (void)fputc('}', f);
    }
    (void)fputs("]}", f);
}

/* One sampled profile: a sample per node with self samples, weighted by the count. */
static void speedscope_thread(FILE *f, const struct profile *p, uint32_t thread, uint32_t *stack)
{
    const struct profile_thread *t = profile_thread_get(p, thread);
    char label[OUT_LABEL_MAX];
    bool first = true;

    out_profile_thread_label(t, label, sizeof(label));
    (void)fputs("{\"type\":\"sampled\",\"name\":", f);
    out_json_str(f, label);
    (void)fprintf(f, ",\"unit\":\"none\",\"startValue\":0,\"endValue\":%llu,\"samples\":[",
                  (unsigned long long)t->samples);
    for (uint32_t i = 0; i < profile_nnodes(p); i++) {
        const struct profile_node *n = profile_node_get(p, i);
        size_t depth;

        if (!n->self || n->thread != thread)
            continue;
        depth = profile_stack(p, i, stack, STACK_MAX);
        (void)fputs(first ? "\n[" : ",\n[", f);
        for (size_t k = 0; k < depth && k < STACK_MAX; k++)
            (void)fprintf(f, k ? ",%u" : "%u", stack[k]);
        (void)fputc(']', f);
        first = false;
    }
    (void)fputs("],\"weights\":[", f);
    first = true;
    for (uint32_t i = 0; i < profile_nnodes(p); i++) {
        const struct profile_node *n = profile_node_get(p, i);

        if (!n->self || n->thread != thread)
            continue;
        (void)fprintf(f, first ? "%llu" : ",%llu", (unsigned long long)n->self);
        first = false;
    }
    (void)fputs("]}", f);
}

int out_speedscope_write(FILE *f, const struct profile *p, const struct out_profile_opts *o,
                         struct ps_err *err)
{
    uint32_t *stack = malloc(sizeof(*stack) * STACK_MAX);

    if (!stack)
        return ps_err_set(err, -ENOMEM, "out of memory writing the speedscope profile");
    (void)fputs("{\"$schema\":\"https://www.speedscope.app/file-format-schema.json\",\n"
                "\"exporter\":",
                f);
    out_json_str(f, o->exporter ? o->exporter : "pyscope");
    (void)fputs(",\"name\":", f);
    out_json_str(f, o->title ? o->title : DEFAULT_TITLE);
    (void)fputs(",\"activeProfileIndex\":0,\n\"shared\":", f);
    speedscope_frames(f, p);
    (void)fputs(",\n\"profiles\":[", f);
    for (uint32_t t = 0; t < profile_nthreads(p); t++) {
        if (t)
            (void)fputs(",\n", f);
        speedscope_thread(f, p, t, stack);
    }
    (void)fputs("]}\n", f);
    free(stack);
    return stream_result(f, err);
}

/* ---- dispatch ---------------------------------------------------------------------------- */

int out_profile_write(FILE *f, enum out_profile_format fmt, const struct profile *p,
                      const struct out_profile_opts *o, struct ps_err *err)
{
    struct profile *merged = NULL;
    const struct profile *src = p;
    int rc = 0;

    if (fmt == OUT_PROFILE_SAMPLES)
        return ps_err_set(err, -EINVAL, "raw samples are streamed while recording");
    /* speedscope keeps one profile per thread, pprof a thread label on every sample */
    if (!o->per_thread && fmt != OUT_PROFILE_SPEEDSCOPE && fmt != OUT_PROFILE_PPROF) {
        rc = profile_merge_threads(p, &merged, err);
        src = merged;
    }
    if (rc == 0 && fmt == OUT_PROFILE_COLLAPSED)
        rc = out_collapsed_write(f, src, o, err);
    else if (rc == 0 && fmt == OUT_PROFILE_SPEEDSCOPE)
        rc = out_speedscope_write(f, src, o, err);
    else if (rc == 0 && fmt == OUT_PROFILE_PPROF)
        rc = out_pprof_write(f, src, o, err);
    else if (rc == 0)
        rc = out_flamegraph_write(f, src, o, err);
    profile_free(merged);
    return rc;
}
