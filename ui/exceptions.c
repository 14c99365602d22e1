/* SPDX-License-Identifier: MIT */
/*
 * The exceptions pane: one row per raise site (type, file:line, function), most raised first,
 * with its count, rate, newest message and where that raise was handled; `f` switches to the
 * raw feed, newest first; `m` hides the raises that library code raised and handled itself
 * (on by default once the process shows code of its own); `/` filters either view
 * (ui_view_exc over the feed). Enter shows the selected raise's stack in the stack pane.
 */
#include <stdio.h>

#include "app_int.h"

static void ui_exc_title(const struct ui_pane *p, const struct ui_app *app, char *buf, size_t cap)
{
    char hidden[64] = "";
    bool editing = app->filter_edit && app->filter_area == UI_AREA_EXC;

    (void)p;
    if (!app->tracer && app->feed->total == 0) {
        (void)snprintf(buf, cap, " Exceptions: tracing off (e turns it on)");
        return;
    }
    if (app->exc_mine)
        (void)snprintf(hidden, sizeof(hidden), " (%zu hidden: m)", app->exc_hidden);
    (void)snprintf(buf, cap, " Exceptions: %llu raised, %zu sites%s%s%s%s%s%s",
                   (unsigned long long)app->feed->total, app->feed->ngroups, hidden,
                   app->exc_feed ? ", newest first" : "", app->tracer ? "" : " (tracing off)",
                   app->exc_filter[0] || editing ? "  /" : "", app->exc_filter, editing ? "_" : "");
}

static void ui_exc_build(struct ui_pane *p, struct ui_app *app)
{
    struct ui_exc_view v = {.feed = app->exc_feed, .filter = app->exc_filter};

    if (!app->exc_mine_set)
        app->exc_mine = app->feed->own_code || ui_exc_snap_own_code(app->snap);
    v.mine_only = app->exc_mine;
    p->nlines = ui_view_exc(app->feed, &v, p->rect.w, p->lines, p->cap);
    app->exc_hidden = v.hidden;
}

static void ui_exc_enter(struct ui_pane *p, struct ui_app *app)
{
    const struct tracer_event *ev;

    if (p->nlines == 0 || !p->lines[p->sel].selectable)
        return;
    ev = app->exc_feed ? ui_excfeed_find(app->feed, p->sel_key)
                       : ui_excfeed_group_event(app->feed, p->sel_key);
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
