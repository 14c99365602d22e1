/* SPDX-License-Identifier: MIT */
/*
 * The exception feed's model (see view.h, struct ui_excfeed): tracer events in, a fixed ring of
 * the newest raises plus counts per (type, raising location) out. Fixed size, so a service
 * raising thousands of exceptions a second keeps the UI's memory flat: older raises fall off
 * the ring, new groups past UI_EXC_GROUPS are counted as "other".
 */
#include "view.h"

#include <stdio.h>
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

/* The group of a raise, or NULL (not present). */
static struct ui_exc_group *ui_exc_group_find(const struct ui_excfeed *f,
                                              const struct tracer_event *ev)
{
    for (size_t i = 0; i < f->ngroups; i++) {
        const struct ui_exc_group *g = &f->groups[i];
        if (g->line == ui_exc_line(ev) && strcmp(g->type, ev->type) == 0 &&
            strcmp(g->file, ui_exc_file(ev)) == 0)
            return (struct ui_exc_group *)g;
    }
    return NULL;
}

static void ui_exc_count(struct ui_excfeed *f, const struct tracer_event *ev)
{
    struct ui_exc_group *g = ui_exc_group_find(f, ev);

    if (!g && f->ngroups < UI_EXC_GROUPS) {
        g = &f->groups[f->ngroups++];
        (void)snprintf(g->type, sizeof(g->type), "%s", ev->type);
        (void)snprintf(g->file, sizeof(g->file), "%s", ui_exc_file(ev));
        g->line = ui_exc_line(ev);
        g->count = 0;
    }
    if (g)
        g->count++;
    else
        f->other++;
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

void ui_excfeed_add(struct ui_excfeed *f, const struct tracer_event *ev)
{
    struct tracer_event *slot;

    if (ev->kind == TRACER_EV_END) {
        slot = ui_exc_slot(f, ev->raise_seq);
        if (slot) {
            slot->handled_at = ev->handled_at;
            slot->propagating = ev->propagating;
        }
        return;
    }
    f->ev[f->head] = *ev;
    f->head = (f->head + 1) % UI_EXC_KEEP;
    if (f->n < UI_EXC_KEEP)
        f->n++;
    f->total++;
    ui_exc_count(f, ev);
}

static void ui_exc_lines(const struct ui_excfeed *f, const struct tracer_event *ev, int width,
                         struct ui_line *out)
{
    const struct ui_exc_group *g = ui_exc_group_find(f, ev);
    char when[16], text[UI_LINE_MAX], handled[TRACER_NAME_MAX * 2 + 32];
    time_t t = (time_t)ev->time;
    struct tm tm;

    if (!localtime_r(&t, &tm) || strftime(when, sizeof(when), "%H:%M:%S", &tm) == 0)
        (void)snprintf(when, sizeof(when), "--:--:--");
    (void)snprintf(text, sizeof(text), "%s x%-4llu %s%s%s", when,
                   (unsigned long long)(g ? g->count : 0), ev->type, ev->has_message ? ": " : "",
                   ev->has_message ? ev->message : "");
    out[0] = (struct ui_line){.style = UI_STYLE_HOT, .selectable = true, .key = ev->seq};
    ui_fit(out[0].text, sizeof(out[0].text), text, width);
    if (ev->handled_at.function[0])
        (void)snprintf(handled, sizeof(handled), "handled in %s (%s:%d)", ev->handled_at.function,
                       ui_short_path(ev->handled_at.file), ev->handled_at.line);
    else
        (void)snprintf(handled, sizeof(handled), "%s",
                       ev->propagating ? "still propagating" : "in flight");
    (void)snprintf(text, sizeof(text), "    %s (%s:%d) -> %s",
                   ev->nframes ? ev->frames[0].function : "?", ui_short_path(ui_exc_file(ev)),
                   ui_exc_line(ev), handled);
    out[1] = (struct ui_line){.style = UI_STYLE_DIM, .selectable = false, .key = 0};
    ui_fit(out[1].text, sizeof(out[1].text), text, width);
}

size_t ui_view_exc(const struct ui_excfeed *f, int width, struct ui_line *out, size_t cap)
{
    size_t n = 0;

    for (size_t i = 0; i < f->n && n + 2 <= cap; i++) {
        const struct tracer_event *ev = &f->ev[(f->head + UI_EXC_KEEP - 1 - i) % UI_EXC_KEEP];
        ui_exc_lines(f, ev, width, &out[n]);
        n += 2;
    }
    return n;
}
