/* SPDX-License-Identifier: MIT */
/*
 * The raw-sample writer (`--format json`, see out_profile.h and docs/profile-formats.md): JSON
 * lines streamed while recording, so memory stays flat whatever the duration: each sample is
 * written from the profile's tables (its leaf node) and forgotten. A write error is sticky and
 * reported by out_samples_close; recording goes on regardless (the aggregate is not affected).
 */
#include "pyscope/out_profile.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "out_profile_int.h"
#include "pyscope/out_jsonw.h"

/* Frames fetched per sample (the walker caps depth at WALK_MAX_DEPTH + a truncation marker). */
#define SAMPLE_STACK_MAX 8200

struct out_samples {
    FILE *f;
    uint32_t *stack;
    uint64_t written;
    int error; /* first -errno, 0 if none */
};

int out_samples_open(FILE *f, pid_t pid, const char *python, double rate_hz,
                     struct out_samples **out, struct ps_err *err)
{
    struct out_samples *w = calloc(1, sizeof(*w));

    if (w)
        w->stack = malloc(sizeof(*w->stack) * SAMPLE_STACK_MAX);
    if (!w || !w->stack) {
        if (w)
            free(w->stack);
        free(w);
        return ps_err_set(err, -ENOMEM, "out of memory opening the sample stream");
    }
    w->f = f;
    (void)fprintf(f, "{\"pyscope\":\"samples\",\"version\":1,\"pid\":%d,\"python\":", (int)pid);
    out_json_str(f, python ? python : "");
    (void)fprintf(f, ",\"rate_hz\":%.17g}\n", rate_hz);
    if (fflush(f) != 0 || ferror(f)) {
        free(w->stack);
        free(w);
        return ps_err_set(err, -EIO, "writing the sample stream failed");
    }
    *out = w;
    return 0;
}

static void put_frames(struct out_samples *w, const struct profile *p, uint32_t node)
{
    size_t depth = profile_stack(p, node, w->stack, SAMPLE_STACK_MAX);

    if (depth > SAMPLE_STACK_MAX)
        depth = SAMPLE_STACK_MAX;
    (void)fputs("\"frames\":[", w->f);
    for (size_t i = depth; i-- > 0;) {
        const struct profile_frame *fr = profile_frame_get(p, w->stack[i]);

        (void)fputs(i + 1 == depth ? "{\"function\":" : ",{\"function\":", w->f);
        out_json_str(w->f, fr->function);
        (void)fputs(",\"file\":", w->f);
        out_json_str(w->f, fr->file);
        if (fr->line >= 0)
            (void)fprintf(w->f, ",\"line\":%d}", fr->line);
        else
            (void)fputs(",\"line\":null}", w->f);
    }
    (void)fputc(']', w->f);
}

void out_samples_on_sample(void *arg, const struct profile *p, const struct sampler_sample *s)
{
    struct out_samples *w = arg;
    const struct profile_thread *t = profile_thread_get(p, s->thread);

    if (w->error || !t)
        return;
    (void)fprintf(w->f, "{\"t\":%.6f,\"wall\":%.6f,\"pid\":%d,\"thread\":%llu,\"tid\":%d,\"name\":",
                  s->time, s->wall, (int)s->pid, (unsigned long long)s->ident, (int)s->native_id);
    out_json_str(w->f, t->name);
    (void)fprintf(w->f, ",\"state\":\"%s\",\"gil\":%s,",
                  s->state == SAMPLER_ACTIVE ? "active" : "idle", s->gil ? "true" : "false");
    put_frames(w, p, s->node);
    (void)fputs("}\n", w->f);
    w->written++;
    if (ferror(w->f))
        w->error = -EIO;
}

static const char *end_name(enum sampler_end e)
{
    switch (e) {
    case SAMPLER_END_DURATION: return "duration";
    case SAMPLER_END_SIGNAL: return "signal";
    case SAMPLER_END_EXITED: return "exited";
    case SAMPLER_END_NONE: break;
    }
    return "stopped";
}

int out_samples_close(struct out_samples *w, const struct sampler_stats *st, struct ps_err *err)
{
    int rc;

    if (!w)
        return 0;
    if (st)
        (void)fprintf(w->f,
                      "{\"end\":\"%s\",\"samples\":%llu,\"ticks\":%llu,\"torn\":%llu,"
                      "\"errors\":%llu,\"elapsed\":%.6f}\n",
                      end_name(st->end), (unsigned long long)w->written,
                      (unsigned long long)st->ticks, (unsigned long long)st->torn,
                      (unsigned long long)st->errors, st->elapsed);
    rc = w->error;
    if (!rc && (fflush(w->f) != 0 || ferror(w->f)))
        rc = -EIO;
    free(w->stack);
    free(w);
    if (rc)
        return ps_err_set(err, rc, "writing the sample stream failed (disk full?)");
    return 0;
}
