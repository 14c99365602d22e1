/* SPDX-License-Identifier: MIT */
/*
 * The stack pane: the selected thread's Python stack from the latest snapshot, innermost
 * first, with source lines read through the session's srcline cache (resolved inside the
 * target's root and opened with its credentials: srcline.h) and locals when `v` is on; or,
 * after Enter in the exceptions pane, the stack of that raise until Esc.
 */
#include <stdio.h>

#include "app_int.h"

static void ui_stack_title(const struct ui_pane *p, const struct ui_app *app, char *buf, size_t cap)
{
    (void)p;
    if (app->raise_view)
        (void)snprintf(buf, cap, " Stack of raise #%llu (Esc: back to the thread)",
                       (unsigned long long)app->raise_view);
    else
        (void)snprintf(buf, cap, " Stack, innermost first%s",
                       app->locals ? " (locals: v hides)" : "");
}

static void ui_stack_build(struct ui_pane *p, struct ui_app *app)
{
    if (app->raise_view) {
        p->nlines = ui_view_raise(&app->raise_ev, app->src, p->rect.w, p->lines, p->cap);
        return;
    }
    p->nlines = ui_view_stack(ui_view_find_thread(app->snap, ui_app_selected_tid(app)), app->src,
                              p->rect.w, p->lines, p->cap);
}

const struct ui_pane_ops ui_stack_ops = {
    .title = ui_stack_title,
    .build = ui_stack_build,
    .enter = NULL,
};
