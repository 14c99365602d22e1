/* SPDX-License-Identifier: MIT */
/*
 * Exception writers (see out_exc.h): tracer events in, text lines, JSON lines or the summary
 * table out, on a caller's FILE *. Called for every reported raise while the tracer runs, so
 * a line is written straight into the caller's stream (the CLI's in-memory outq record): no
 * object model, no allocation. The start and stop records, written once, are jansson
 * documents written through out_json_dump; their log sentences go into the caller's buffer.
 *
 * Invariants: target strings reach the stream only through out_text_escaped (text) or
 * out_json_str (JSON), the one escaper of each format (the profile writers escape the
 * raise stacks they are given); the summary's table is bounded (OUT_EXC_SUMMARY_MAX rows) and
 * allocated once.
 */
#include "pyscope/out_exc.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "out_int.h"
#include "pyscope/out_jsonw.h"

/* A summary cell: an escaped `file:line in function` (each name at most TRACER_NAME_MAX
 * bytes, escaped at most 6 bytes per byte) or an escaped type name. */
#define EXC_CELL_MAX (12 * TRACER_NAME_MAX + 32)

struct exc_row {
    char type[TRACER_TYPE_MAX];
    struct tracer_frame raised;
    struct tracer_frame handled; /* function "" = still propagating */
    uint64_t count;
};

struct out_exc_summary {
    struct exc_row rows[OUT_EXC_SUMMARY_MAX];
    size_t nrows;
    uint64_t other_rows;
    bool scaled; /* some rows' handler split was scaled from a sample (out_exc_summary_exact) */
};

/* ---- text ---------------------------------------------------------------------------------- */

static void exc_clock(double t, char *buf, size_t cap)
{
    time_t s = (time_t)t;
    struct tm tm;

    (void)localtime_r(&s, &tm);
    (void)snprintf(buf, cap, "%02d:%02d:%02d.%03d", tm.tm_hour, tm.tm_min, tm.tm_sec,
                   (int)((t - (double)s) * 1000.0) % 1000);
}

/* `file:line in function`, escaped. */
static void exc_text_site(FILE *fp, const struct tracer_frame *f)
{
    out_text_escaped(fp, f->file);
    (void)fprintf(fp, ":%d in ", f->line);
    out_text_escaped(fp, f->function);
}

static void exc_text_fate(FILE *fp, const struct tracer_event *ev)
{
    if (ev->exit_unknown) {
        (void)fputs("; fate unknown (its thread exited first)", fp);
        return;
    }
    if (ev->propagating) {
        (void)fputs("; still propagating", fp);
        return;
    }
    (void)fputs("; handled in ", fp);
    out_text_escaped(fp, ev->handled_at.function);
    (void)fprintf(fp, " at line %d%s", ev->handled_at.line,
                  ev->fate_unknown ? " or above (rate-limited)" : "");
}

static void exc_text_links(FILE *fp, const struct tracer_event *ev)
{
    if (ev->cause_type[0]) {
        (void)fputs("; caused by ", fp);
        out_text_escaped(fp, ev->cause_type);
    } else if (ev->context_type[0]) {
        (void)fputs("; during handling of ", fp);
        out_text_escaped(fp, ev->context_type);
    }
}

void out_exc_text(FILE *fp, const struct tracer_event *ev, unsigned flags)
{
    bool stack = (flags & OUT_EXC_STACK) != 0;
    char when[32];

    exc_clock(ev->time, when, sizeof(when));
    if (flags & OUT_EXC_PID)
        (void)fprintf(fp, "%s [pid %d tid %d] ", when, (int)ev->pid, (int)ev->native_id);
    else
        (void)fprintf(fp, "%s [tid %d] ", when, (int)ev->native_id);
    out_text_escaped(fp, ev->type);
    if (ev->has_message) {
        (void)fputs(": ", fp);
        out_text_escaped(fp, ev->message);
    }
    if (ev->nframes > 0) {
        (void)fputs("  raised at ", fp);
        exc_text_site(fp, &ev->frames[0]);
    }
    if (ev->reraise)
        (void)fputs(" (re-raised)", fp);
    exc_text_fate(fp, ev);
    exc_text_links(fp, ev);
    (void)fputc('\n', fp);
    for (size_t i = 0; stack && i < ev->nframes && i < TRACER_MAX_FRAMES; i++) {
        (void)fputs("    ", fp);
        exc_text_site(fp, &ev->frames[i]);
        (void)fputc('\n', fp);
    }
}

/* ---- JSON lines ---------------------------------------------------------------------------- */

static void exc_json_str_or_null(FILE *fp, bool have, const char *s)
{
    if (have)
        out_json_str(fp, s);
    else
        (void)fputs("null", fp);
}

static void exc_json_frame(FILE *fp, const struct tracer_frame *f)
{
    (void)fputs("{\"function\":", fp);
    out_json_str(fp, f->function);
    (void)fputs(",\"file\":", fp);
    out_json_str(fp, f->file);
    (void)fprintf(fp, ",\"line\":%d}", f->line);
}

/* The RAISE-only fields: frames, reraise, cause, context. */
static void exc_json_raise(FILE *fp, const struct tracer_event *ev)
{
    (void)fputs(",\"frames\":[", fp);
    for (size_t i = 0; i < ev->nframes && i < TRACER_MAX_FRAMES; i++) {
        if (i)
            (void)fputc(',', fp);
        exc_json_frame(fp, &ev->frames[i]);
    }
    (void)fprintf(fp, "],\"reraise\":%s,\"cause\":", ev->reraise ? "true" : "false");
    exc_json_str_or_null(fp, ev->cause_type[0] != '\0', ev->cause_type);
    (void)fputs(",\"context\":", fp);
    exc_json_str_or_null(fp, ev->context_type[0] != '\0', ev->context_type);
}

void out_exc_json(FILE *fp, const struct tracer_event *ev)
{
    bool end = ev->kind == TRACER_EV_END;
    const char *kind = !end               ? "raise"
                       : ev->exit_unknown ? "unknown"
                       : ev->propagating  ? "propagating"
                                          : "handled";

    (void)fprintf(fp, "{\"event\":\"%s\",\"pid\":%d,\"seq\":%llu,\"type\":", kind, (int)ev->pid,
                  (unsigned long long)ev->raise_seq);
    out_json_str(fp, ev->type);
    (void)fprintf(fp, ",\"thread_id\":%llu,\"native_id\":%d,\"time\":%.6f,\"message\":",
                  (unsigned long long)ev->thread_id, (int)ev->native_id, ev->time);
    exc_json_str_or_null(fp, ev->has_message, ev->message);
    if (!end) {
        exc_json_raise(fp, ev);
    } else if (!ev->propagating) {
        (void)fputs(",\"handled_at\":", fp);
        exc_json_frame(fp, &ev->handled_at);
        (void)fprintf(fp, ",\"fate_unknown\":%s", ev->fate_unknown ? "true" : "false");
    }
    (void)fputs("}\n", fp);
}

/* ---- start and stop records ------------------------------------------------------------- */

/* o as a JSON line through the one escaper; nothing when it could not be built. */
static void exc_json_put(FILE *fp, json_t *o)
{
    if (o) {
        out_json_dump(fp, o, 0, 0);
        (void)fputc('\n', fp);
    }
    json_decref(o);
}

void out_exc_json_start(FILE *fp, pid_t pid, const char *python, const char *mechanism,
                        const char *note)
{
    exc_json_put(fp, json_pack("{s:s, s:i, s:o, s:s, s:o}", "event", "start", "pid", (int)pid,
                               "python", out_json_text(python), "mechanism", mechanism,
                               "mechanism_note", out_json_text(note)));
}

/* The stop record's budget half: what tracing cost and how it was shared out. */
static json_t *exc_json_budget(const struct tracer_stats *s)
{
    return json_pack(
        "{s:f, s:f, s:f, s:f, s:f, s:I, s:I, s:f, s:I, s:I, s:I, s:I}", "budget", s->budget,
        "budget_spent_s", s->spent_s, "own_cpu_s", s->own_cpu_s, "target_cpu_s", s->target_cpu_s,
        "stop_cost_us", s->stop_cost_us, "pinned_threads", (json_int_t)s->pinned_threads,
        "episodes", (json_int_t)s->episodes, "raises_est", s->raises_est, "ring_lost",
        (json_int_t)s->ring_lost, "in_flight_at_start", (json_int_t)s->in_flight_at_start,
        "sampled_every", (json_int_t)s->sampled_every, "read_errors", (json_int_t)s->read_errors);
}

void out_exc_json_stop(FILE *fp, pid_t pid, const char *why, const struct tracer_stats *s)
{
    json_t *o = json_pack(
        "{s:s, s:i, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:I, s:I, s:f, s:I, s:f, s:f}", "event",
        "stop", "pid", (int)pid, "reason", why, "hits", (json_int_t)s->hits, "raises",
        (json_int_t)s->raises, "reported", (json_int_t)s->reported, "not_reported",
        (json_int_t)s->not_reported, "filtered", (json_int_t)s->filtered, "counted_hits",
        (json_int_t)s->counted_total, "counting", s->counting, "unseen_hits",
        (json_int_t)s->unseen_hits, "unseen_raises_est", (json_int_t)s->unseen_raises_est,
        "disarmed_seconds", s->disarmed_seconds, "disarms", (json_int_t)s->disarms, "count_cost_us",
        s->count_cost_us, "count_exact_rate", s->count_exact_rate);

    if (o && json_object_update_new(o, exc_json_budget(s)) < 0) {
        json_decref(o);
        o = NULL;
    }
    exc_json_put(fp, o);
}

/* Append to buf (cap bytes, terminated) what fmt says, cut at cap. */
PS_PRINTF(3, 4) static void exc_words(char *buf, size_t cap, const char *fmt, ...)
{
    size_t used = strnlen(buf, cap);
    va_list ap;

    if (used + 1 >= cap)
        return;
    va_start(ap, fmt);
    // NOLINTNEXTLINE(clang-analyzer-valist.*): clang 14 false positive (as in cli.c)
    (void)vsnprintf(buf + used, cap - used, fmt, ap);
    va_end(ap);
}

void out_exc_start_words(char *buf, size_t cap, pid_t pid, const char *python,
                         const char *mechanism, const char *note)
{
    if (cap == 0)
        return;
    buf[0] = '\0';
    exc_words(buf, cap, "tracing exceptions of pid %d (Python %s) with %s%s; Ctrl-C stops%s%s",
              (int)pid, python, mechanism,
              strcmp(mechanism, "bpf") == 0 ? " (uprobe, no stops)" : " breakpoints",
              note[0] ? ". " : "", note);
}

/* What was not seen while the stopping breakpoint was rate-limited off. */
static void exc_unseen_words(char *buf, size_t cap, const struct tracer_stats *s)
{
    if (s->counted_total == 0 && s->disarms > 0)
        (void)snprintf(buf, cap,
                       "raises while rate-limited off not counted "
                       "(debug registers have no counter)");
    else
        (void)snprintf(buf, cap,
                       "%llu breakpoint hits while rate-limited off (%s; about %llu raises)",
                       (unsigned long long)s->unseen_hits, s->counting ? "exact" : "estimated",
                       (unsigned long long)s->unseen_raises_est);
}

void out_exc_stop_words(char *buf, size_t cap, pid_t pid, bool show_pid, const char *why,
                        const struct tracer_stats *s)
{
    char unseen[160];

    if (cap == 0)
        return;
    buf[0] = '\0';
    exc_unseen_words(unseen, sizeof(unseen), s);
    if (show_pid)
        exc_words(buf, cap, "pid %d: ", (int)pid);
    exc_words(buf, cap,
              "stopped (%s): %llu raises reported, %llu seen but not reported (rate limit), "
              "%llu filtered out; %s, off for %.1f s",
              why, (unsigned long long)s->reported, (unsigned long long)s->not_reported,
              (unsigned long long)s->filtered, unseen, s->disarmed_seconds);
    if (s->in_flight_at_start)
        exc_words(buf, cap,
                  "; %llu already propagating when tracing began (raise site unseen) not reported",
                  (unsigned long long)s->in_flight_at_start);
    if (s->budget >= 0 && s->target_cpu_s > 0)
        exc_words(buf, cap, "; tracing took about %.0f%% of the target's CPU time (budget %g%%%s)",
                  100.0 * s->spent_s / s->target_cpu_s, 100.0 * s->budget,
                  s->spent_s > 2 * s->budget * s->target_cpu_s && s->counted_total > 0 &&
                          s->sampled_every > 1
                      ? "; counting every raise is not limited by it"
                      : "");
    if (s->read_errors)
        exc_words(buf, cap,
                  "; %llu hits unreadable (thread state, exception or stack), not counted",
                  (unsigned long long)s->read_errors);
}

void out_exc_tree_words(char *buf, size_t cap, pid_t root, const char *why, uint64_t followed,
                        uint64_t not_python, bool over_cap)
{
    if (cap == 0)
        return;
    buf[0] = '\0';
    exc_words(buf, cap,
              "stopped (%s): %llu Python processes of pid %d's tree traced, %llu not Python or "
              "unsupported%s",
              why, (unsigned long long)followed, (int)root, (unsigned long long)not_python,
              over_cap ? ", more than 64 at once: the others not traced" : "");
}

/* ---- summary ------------------------------------------------------------------------------- */

int out_exc_summary_new(struct out_exc_summary **out, struct ps_err *err)
{
    struct out_exc_summary *s = calloc(1, sizeof(*s));

    if (!s)
        return ps_err_set(err, -ENOMEM, "out of memory for the exception summary (%zu KiB)",
                          sizeof(*s) >> 10);
    *out = s;
    return 0;
}

void out_exc_summary_free(struct out_exc_summary *s)
{
    free(s);
}

static bool exc_same_frame(const struct tracer_frame *x, const struct tracer_frame *y)
{
    return x->line == y->line && strcmp(x->function, y->function) == 0 &&
           strcmp(x->file, y->file) == 0;
}

void out_exc_summary_add(struct out_exc_summary *s, const struct tracer_event *ev)
{
    static const struct tracer_frame none = {.line = -1};
    const struct tracer_frame *raised = ev->nframes ? &ev->frames[0] : &none;
    const struct tracer_frame *handled = ev->propagating ? &none : &ev->handled_at;
    size_t i;

    for (i = 0; i < s->nrows; i++)
        if (strcmp(s->rows[i].type, ev->type) == 0 && exc_same_frame(&s->rows[i].raised, raised) &&
            exc_same_frame(&s->rows[i].handled, handled))
            break;
    if (i == s->nrows && s->nrows == OUT_EXC_SUMMARY_MAX) {
        s->other_rows++;
        return;
    }
    if (i == s->nrows) {
        (void)snprintf(s->rows[i].type, sizeof(s->rows[i].type), "%s", ev->type);
        s->rows[i].raised = *raised;
        s->rows[i].handled = *handled;
        s->nrows++;
    }
    s->rows[i].count++;
}

static int exc_row_cmp(const void *x, const void *y)
{
    const struct exc_row *a = x, *b = y;

    return (a->count < b->count) - (a->count > b->count);
}

/* The columns of one row, escaped: type, raise site, handler site. */
struct exc_cells {
    char type[EXC_CELL_MAX], raised[EXC_CELL_MAX], handled[EXC_CELL_MAX];
};

/* Fill buf (cap bytes, always terminated) with what put writes for f (or for s: type cells). */
static void exc_cell(char *buf, size_t cap, const struct tracer_frame *f, const char *s)
{
    FILE *m;

    memset(buf, 0, cap);
    m = fmemopen(buf, cap - 1, "w");
    if (!m)
        return;
    if (f)
        exc_text_site(m, f);
    else
        out_text_escaped(m, s);
    (void)fclose(m);
}

static void exc_cells(const struct exc_row *r, struct exc_cells *c)
{
    exc_cell(c->type, sizeof(c->type), NULL, r->type);
    exc_cell(c->raised, sizeof(c->raised), &r->raised, NULL);
    if (r->handled.function[0])
        exc_cell(c->handled, sizeof(c->handled), &r->handled, NULL);
    else
        (void)snprintf(c->handled, sizeof(c->handled), "(still propagating)");
}

/* Terminal columns of an escaped cell: one per character (escapes are ASCII, the rest is
 * valid UTF-8, so every byte that does not continue a sequence starts one). */
static size_t exc_width(const char *s)
{
    size_t w = 0;

    for (; *s; s++)
        w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

static void exc_pad(FILE *fp, const char *cell, size_t width)
{
    (void)fputs(cell, fp);
    for (size_t w = exc_width(cell); w < width; w++)
        (void)fputc(' ', fp);
}

static void exc_summary_widths(const struct out_exc_summary *s, struct exc_cells *c, size_t *wtype,
                               size_t *wraised)
{
    *wtype = strlen("type");
    *wraised = strlen("raised at");
    for (size_t i = 0; i < s->nrows; i++) {
        size_t wt, wr;

        exc_cells(&s->rows[i], c);
        wt = exc_width(c->type);
        wr = exc_width(c->raised);
        *wtype = wt > *wtype ? wt : *wtype;
        *wraised = wr > *wraised ? wr : *wraised;
    }
}

void out_exc_summary_exact(struct out_exc_summary *s, const struct tracer_site *sites, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        const struct tracer_site *site = &sites[k];
        uint64_t sum = 0, want = (uint64_t)llround(site->estimate), given = 0;
        size_t last = SIZE_MAX;
        if (site->estimated || site->estimate < 0.5)
            continue;
        for (size_t i = 0; i < s->nrows; i++)
            if (strcmp(s->rows[i].type, site->type) == 0 &&
                exc_same_frame(&s->rows[i].raised, &site->at))
                sum += s->rows[i].count;
        if (sum == 0 || sum == want)
            continue;
        for (size_t i = 0; i < s->nrows; i++) {
            struct exc_row *r = &s->rows[i];
            if (strcmp(r->type, site->type) != 0 || !exc_same_frame(&r->raised, &site->at))
                continue;
            r->count = (uint64_t)((double)r->count * (double)want / (double)sum);
            given += r->count;
            if (last == SIZE_MAX || r->count > s->rows[last].count)
                last = i;
        }
        s->rows[last].count += want - given; /* rounding: the site's total stays exact */
        s->scaled = true;
    }
}

void out_exc_summary_write(FILE *fp, struct out_exc_summary *s)
{
    struct exc_cells *c = malloc(sizeof(*c));
    size_t wtype, wraised;

    if (!c) {
        (void)fputs("\n(no summary: out of memory)\n", fp);
        return;
    }
    qsort(s->rows, s->nrows, sizeof(*s->rows), exc_row_cmp);
    exc_summary_widths(s, c, &wtype, &wraised);
    (void)fprintf(fp, "\n%8s  ", "count");
    exc_pad(fp, "type", wtype + 2);
    exc_pad(fp, "raised at", wraised + 2);
    (void)fputs("handled in\n", fp);
    for (size_t i = 0; i < s->nrows; i++) {
        exc_cells(&s->rows[i], c);
        (void)fprintf(fp, "%8llu  ", (unsigned long long)s->rows[i].count);
        exc_pad(fp, c->type, wtype + 2);
        exc_pad(fp, c->raised, wraised + 2);
        (void)fprintf(fp, "%s\n", c->handled);
    }
    if (s->other_rows)
        (void)fprintf(fp, "%8llu  (other rows beyond the %d kept)\n",
                      (unsigned long long)s->other_rows, OUT_EXC_SUMMARY_MAX);
    if (s->scaled)
        (void)fputs("(counts per type and raise site are exact; where a site has several "
                    "handlers, its split is estimated from the raises reported)\n",
                    fp);
    free(c);
}

/* ---- raise stacks as a profile ---------------------------------------------------------- */

int out_exc_profile_add(struct profile *p, const struct tracer_event *ev, struct ps_err *err)
{
    uint32_t ids[TRACER_MAX_FRAMES + 2], root;
    size_t n = 0, nframes = ev->nframes < TRACER_MAX_FRAMES ? ev->nframes : TRACER_MAX_FRAMES;
    char leaf[TRACER_TYPE_MAX + 8];
    int rc;

    if (ev->kind != TRACER_EV_RAISE)
        return 0;
    rc = profile_thread(p, 0, 0, "all threads", &root, err);
    if (rc < 0)
        return rc;
    if (ev->frames_truncated)
        ids[n++] = profile_frame_intern(p, "[truncated]", "", -1);
    for (size_t i = nframes; i > 0; i--) {
        const struct tracer_frame *f = &ev->frames[i - 1];
        ids[n++] = profile_frame_intern(p, f->function, f->file, f->line);
    }
    (void)snprintf(leaf, sizeof(leaf), "raise %s", ev->type);
    ids[n++] = profile_frame_intern(p, leaf, "", -1);
    (void)profile_add(p, root, ids, n, 1);
    return 0;
}
