/* SPDX-License-Identifier: MIT */
/*
 * The exception feed's model (see view.h, struct ui_excfeed): tracer events in, a fixed ring of
 * the newest raises plus one group per (type, raise site) out, each with its count, rate,
 * newest message and where that raise was handled. Fixed size, so a service raising thousands
 * of exceptions a second keeps the UI's memory flat: older raises fall off the ring, new sites
 * past UI_EXC_GROUPS are counted as "other". A framework's own raises (StopIteration in a loop,
 * a parser's lookahead) are one row each, so a rare application error stays on screen; with
 * "my code only", sites whose raise and handler are both library code are left out.
 */
#include "view.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void ui_excfeed_reset(struct ui_excfeed *f)
{
    memset(f, 0, sizeof(*f));
}

static const char *ui_exc_file(const struct tracer_event *ev)
{
    return ev->nframes > 0 ? ev->frames[0].file : "";
}

static int ui_exc_line(const struct tracer_event *ev)
{
    return ev->nframes > 0 ? ev->frames[0].line : -1;
}

static const char *ui_exc_function(const struct tracer_event *ev)
{
    return ev->nframes > 0 ? ev->frames[0].function : "";
}

bool ui_exc_library_path(const char *path)
{
    const char *lib = strstr(path, "/lib/python3.");

    if (path[0] == '<')
        return strncmp(path, "<frozen ", 8) == 0;
    if (strstr(path, "/site-packages/") || strstr(path, "/dist-packages/"))
        return true;
    if (!lib)
        return false;
    lib += strlen("/lib/python3.");
    while (*lib >= '0' && *lib <= '9')
        lib++;
    return *lib == '/';
}

bool ui_exc_snap_own_code(const struct snap *s)
{
    for (size_t i = 0; s && i < s->nthreads; i++)
        for (size_t j = 0; j < s->threads[i].nframes; j++) {
            const char *file = s->threads[i].frames[j].file;
            if (file && file[0] && file[0] != '<' && !ui_exc_library_path(file))
                return true;
        }
    return false;
}

/* Both ends of a raise are library code (a raise still in flight: its raise site alone). */
static bool ui_exc_event_library(const struct tracer_event *ev)
{
    return ui_exc_library_path(ui_exc_file(ev)) &&
           (!ev->handled_at.function[0] || ui_exc_library_path(ev->handled_at.file));
}

/* The group of a raise, or NULL (not present). */
static struct ui_exc_group *ui_exc_group_find(const struct ui_excfeed *f,
                                              const struct tracer_event *ev)
{
    for (size_t i = 0; i < f->ngroups; i++) {
        const struct ui_exc_group *g = &f->groups[i];
        if (g->raised.line == ui_exc_line(ev) && strcmp(g->type, ev->type) == 0 &&
            strcmp(g->raised.file, ui_exc_file(ev)) == 0 &&
            strcmp(g->raised.function, ui_exc_function(ev)) == 0)
            return (struct ui_exc_group *)g;
    }
    return NULL;
}

static void ui_exc_count(struct ui_excfeed *f, const struct tracer_event *ev)
{
    struct ui_exc_group *g = ui_exc_group_find(f, ev);

    if (!g && f->ngroups < UI_EXC_GROUPS) {
        g = &f->groups[f->ngroups++];
        memset(g, 0, sizeof(*g));
        (void)snprintf(g->type, sizeof(g->type), "%s", ev->type);
        if (ev->nframes > 0)
            g->raised = ev->frames[0];
        else
            g->raised.line = -1;
        g->rate = -1;
        g->library = ui_exc_event_library(ev);
    }
    if (!g) {
        f->other++;
        return;
    }
    g->count++;
    g->last = *ev;
}

static struct tracer_event *ui_exc_slot(struct ui_excfeed *f, uint64_t seq)
{
    for (size_t i = 0; i < f->n; i++) {
        struct tracer_event *e = &f->ev[(f->head + UI_EXC_KEEP - 1 - i) % UI_EXC_KEEP];
        if (e->seq == seq)
            return e;
    }
    return NULL;
}

const struct tracer_event *ui_excfeed_find(const struct ui_excfeed *f, uint64_t seq)
{
    return ui_exc_slot((struct ui_excfeed *)f, seq);
}

const struct tracer_event *ui_excfeed_group_event(const struct ui_excfeed *f, uint64_t key)
{
    return key >= 1 && key <= f->ngroups ? &f->groups[key - 1].last : NULL;
}

static void ui_exc_fate(struct tracer_event *e, const struct tracer_event *end)
{
    e->handled_at = end->handled_at;
    e->propagating = end->propagating;
}

/* An END: where its raise was handled, in the ring and in its group's newest raise. */
static void ui_exc_end(struct ui_excfeed *f, const struct tracer_event *ev)
{
    struct tracer_event *slot = ui_exc_slot(f, ev->raise_seq);
    struct ui_exc_group *g = ui_exc_group_find(f, ev);
    bool library = ui_exc_event_library(ev);

    if (slot)
        ui_exc_fate(slot, ev);
    if (g && g->last.seq == ev->raise_seq)
        ui_exc_fate(&g->last, ev);
    if (g)
        g->library = library;
    if (!library)
        f->own_code = true;
}

void ui_excfeed_add(struct ui_excfeed *f, const struct tracer_event *ev)
{
    if (ev->kind == TRACER_EV_END) {
        ui_exc_end(f, ev);
        return;
    }
    f->ev[f->head] = *ev;
    f->head = (f->head + 1) % UI_EXC_KEEP;
    if (f->n < UI_EXC_KEEP)
        f->n++;
    f->total++;
    if (!ui_exc_library_path(ui_exc_file(ev)))
        f->own_code = true;
    ui_exc_count(f, ev);
}

void ui_excfeed_sites(struct ui_excfeed *f, const struct tracer_site *sites, size_t n)
{
    double sum = 0;

    for (size_t i = 0; i < n; i++) {
        const struct tracer_site *s = &sites[i];
        uint64_t est = s->estimate > 0 ? (uint64_t)(s->estimate + 0.5) : 0;
        sum += s->estimate > 0 ? s->estimate : 0;
        for (size_t k = 0; k < f->ngroups; k++) {
            struct ui_exc_group *g = &f->groups[k];
            if (g->raised.line == s->at.line && strcmp(g->type, s->type) == 0 &&
                strcmp(g->raised.file, s->at.file) == 0 &&
                strcmp(g->raised.function, s->at.function) == 0) {
                if (est > g->count)
                    g->count = est;
                break;
            }
        }
    }
    if (sum > (double)f->total)
        f->total = (uint64_t)(sum + 0.5);
}

void ui_excfeed_tick(struct ui_excfeed *f, double now)
{
    double dt = now - f->last_tick;

    for (size_t i = 0; i < f->ngroups; i++) {
        struct ui_exc_group *g = &f->groups[i];
        if (f->last_tick > 0 && dt > 0)
            g->rate = (double)(g->count - g->count_at_tick) / dt;
        g->count_at_tick = g->count;
    }
    f->last_tick = now;
}

/* ---- lines ------------------------------------------------------------------------------- */

static bool ui_exc_has(const char *s, const char *filter)
{
    return strstr(s, filter) != NULL;
}

static bool ui_exc_match(const struct tracer_event *ev, const char *filter)
{
    if (!filter || !filter[0])
        return true;
    return ui_exc_has(ev->type, filter) || (ev->has_message && ui_exc_has(ev->message, filter)) ||
           ui_exc_has(ui_exc_file(ev), filter) || ui_exc_has(ui_exc_function(ev), filter) ||
           ui_exc_has(ev->handled_at.file, filter) || ui_exc_has(ev->handled_at.function, filter);
}

/* The dim second line of a row: where raised -> where handled. A site's (grouped) puts the
 * places first, so that a narrow pane still shows both: "at file:line -> handled at file:line
 * in function"; a raise's (feed) reads "function (file:line) -> handled in function (...)". */
static void ui_exc_where(const struct tracer_event *ev, bool site, int width, struct ui_line *out)
{
    const struct tracer_frame *h = &ev->handled_at;
    char text[UI_LINE_MAX], handled[TRACER_NAME_MAX * 2 + 32];

    if (!h->function[0])
        (void)snprintf(handled, sizeof(handled), "%s",
                       ev->propagating ? "still propagating" : "in flight");
    else if (site)
        (void)snprintf(handled, sizeof(handled), "handled at %s:%d in %s", ui_short_path(h->file),
                       h->line, h->function);
    else
        (void)snprintf(handled, sizeof(handled), "handled in %s (%s:%d)", h->function,
                       ui_short_path(h->file), h->line);
    if (site)
        (void)snprintf(text, sizeof(text), "    at %s:%d -> %s", ui_short_path(ui_exc_file(ev)),
                       ui_exc_line(ev), handled);
    else
        (void)snprintf(text, sizeof(text), "    %s (%s:%d) -> %s",
                       ev->nframes ? ev->frames[0].function : "?", ui_short_path(ui_exc_file(ev)),
                       ui_exc_line(ev), handled);
    ui_line_set(out, text, width, UI_STYLE_DIM, 0);
}

static void ui_exc_feed_lines(const struct ui_excfeed *f, const struct tracer_event *ev, int width,
                              struct ui_line *out)
{
    const struct ui_exc_group *g = ui_exc_group_find(f, ev);
    char when[16], text[UI_LINE_MAX];
    time_t t = (time_t)ev->time;
    struct tm tm;

    if (!localtime_r(&t, &tm) || strftime(when, sizeof(when), "%H:%M:%S", &tm) == 0)
        (void)snprintf(when, sizeof(when), "--:--:--");
    (void)snprintf(text, sizeof(text), "%s x%-4llu %s%s%s", when,
                   (unsigned long long)(g ? g->count : 0), ev->type, ev->has_message ? ": " : "",
                   ev->has_message ? ev->message : "");
    ui_line_set(&out[0], text, width, UI_STYLE_HOT, ev->seq);
    ui_exc_where(ev, false, width, &out[1]);
}

static size_t ui_view_exc_feed(const struct ui_excfeed *f, struct ui_exc_view *v, int width,
                               struct ui_line *out, size_t cap)
{
    size_t n = 0;

    for (size_t i = 0; i < f->n && n + 2 <= cap; i++) {
        const struct tracer_event *ev = &f->ev[(f->head + UI_EXC_KEEP - 1 - i) % UI_EXC_KEEP];
        if (v->mine_only && ui_exc_event_library(ev)) {
            v->hidden++;
            continue;
        }
        if (!ui_exc_match(ev, v->filter))
            continue;
        ui_exc_feed_lines(f, ev, width, &out[n]);
        n += 2;
    }
    return n;
}

static void ui_exc_group_lines(const struct ui_excfeed *f, const struct ui_exc_group *g, int width,
                               struct ui_line *out)
{
    const struct tracer_event *ev = &g->last;
    char text[UI_LINE_MAX], rate[32];

    if (g->rate < 0)
        (void)snprintf(rate, sizeof(rate), "-");
    else
        (void)snprintf(rate, sizeof(rate), "%.1f", g->rate);
    (void)snprintf(text, sizeof(text), "%7llu %7s/s %s%s%s", (unsigned long long)g->count, rate,
                   g->type, ev->has_message ? ": " : "", ev->has_message ? ev->message : "");
    ui_line_set(&out[0], text, width, UI_STYLE_HOT, (uint64_t)(g - f->groups) + 1);
    ui_exc_where(ev, true, width, &out[1]);
}

/* Most raised first; ties: the newest raise first. */
static int ui_exc_group_cmp(const void *x, const void *y, void *groups)
{
    const struct ui_exc_group *a = (const struct ui_exc_group *)groups + *(const size_t *)x;
    const struct ui_exc_group *b = (const struct ui_exc_group *)groups + *(const size_t *)y;

    if (a->count != b->count)
        return a->count < b->count ? 1 : -1;
    return (a->last.seq < b->last.seq) - (a->last.seq > b->last.seq);
}

static size_t ui_view_exc_groups(const struct ui_excfeed *f, struct ui_exc_view *v, int width,
                                 struct ui_line *out, size_t cap)
{
    size_t order[UI_EXC_GROUPS] = {0}; /* indexes of the groups shown */
    size_t n = 0, k = 0;

    for (size_t i = 0; i < f->ngroups; i++) {
        if (v->mine_only && f->groups[i].library)
            v->hidden++;
        else if (ui_exc_match(&f->groups[i].last, v->filter))
            order[k++] = i;
    }
    qsort_r(order, k, sizeof(*order), ui_exc_group_cmp, (void *)f->groups);
    for (size_t i = 0; i < k && n + 2 <= cap; i++, n += 2)
        ui_exc_group_lines(f, &f->groups[order[i]], width, &out[n]);
    return n;
}

size_t ui_view_exc(const struct ui_excfeed *f, struct ui_exc_view *v, int width,
                   struct ui_line *out, size_t cap)
{
    v->hidden = 0;
    return v->feed ? ui_view_exc_feed(f, v, width, out, cap)
                   : ui_view_exc_groups(f, v, width, out, cap);
}
