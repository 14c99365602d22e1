/* SPDX-License-Identifier: MIT */
/*
 * The exceptions pane: raises as the tracer reports them, newest first, each with the count of
 * its (type, location) group and where it was handled (ui_view_exc over the feed). Enter shows
 * the selected raise's stack in the stack pane.
 */
#include <stdio.h>

#include "app_int.h"

static void ui_exc_title(const struct ui_pane *p, const struct ui_app *app, char *buf, size_t cap)
{
    (void)p;
    if (!app->tracer && app->feed->total == 0)
        (void)snprintf(buf, cap, " Exceptions: tracing off (e turns it on)");
    else
        (void)snprintf(buf, cap, " Exceptions: %llu raised, %zu kinds%s",
                       (unsigned long long)app->feed->total, app->feed->ngroups,
                       app->tracer ? "" : " (tracing off)");
}

static void ui_exc_build(struct ui_pane *p, struct ui_app *app)
{
    p->nlines = ui_view_exc(app->feed, p->rect.w, p->lines, p->cap);
}

static void ui_exc_enter(struct ui_pane *p, struct ui_app *app)
{
    const struct tracer_event *ev;

    if (p->nlines == 0 || !p->lines[p->sel].selectable)
        return;
    ev = ui_excfeed_find(app->feed, p->sel_key);
    if (!ev)
        return;
    app->raise_ev = *ev;
    app->raise_view = ev->seq;
    app->focus = UI_AREA_STACK;
}

const struct ui_pane_ops ui_exc_ops = {
    .title = ui_exc_title,
    .build = ui_exc_build,
    .enter = ui_exc_enter,
    .stick_top = true,
};
