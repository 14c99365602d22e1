/* SPDX-License-Identifier: MIT */
/*
 * The threads pane: one line per thread of the latest snapshot (ui_view_threads); the
 * selection follows the thread's native id and picks the stack pane's thread. Enter moves the
 * focus to that stack.
 */
#include <stdio.h>

#include "app_int.h"

static void ui_threads_title(const struct ui_pane *p, const struct ui_app *app, char *buf,
                             size_t cap)
{
    (void)p;
    (void)snprintf(buf, cap, " Threads (%zu)  * holds the GIL",
                   app->snap ? app->snap->nthreads : 0);
}

static void ui_threads_build(struct ui_pane *p, struct ui_app *app)
{
    p->nlines = ui_view_threads(app->snap, app->prev, app->hz, p->rect.w, p->lines, p->cap);
}

static void ui_threads_enter(struct ui_pane *p, struct ui_app *app)
{
    (void)p;
    app->raise_view = 0;
    app->focus = UI_AREA_STACK;
}

const struct ui_pane_ops ui_threads_ops = {
    .title = ui_threads_title,
    .build = ui_threads_build,
    .enter = ui_threads_enter,
};

pid_t ui_app_selected_tid(const struct ui_app *app)
{
    const struct ui_pane *p = &app->panes[UI_AREA_THREADS];
    return p->nlines > 0 && p->lines[p->sel].selectable ? (pid_t)p->sel_key : 0;
}
