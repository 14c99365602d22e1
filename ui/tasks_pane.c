/* SPDX-License-Identifier: MIT */
/*
 * The tasks view of the lower-right pane (`t`): asyncio tasks of the latest snapshot (taken
 * with tasks on while this view is shown: tasks.h), running first, deadlocks marked.
 */
#include <stdio.h>

#include "app_int.h"

static void ui_tasks_title(const struct ui_pane *p, const struct ui_app *app, char *buf, size_t cap)
{
    (void)p;
    (void)app;
    (void)snprintf(buf, cap, " asyncio tasks (t: back to exceptions)");
}

static void ui_tasks_build(struct ui_pane *p, struct ui_app *app)
{
    p->nlines = ui_view_tasks(app->snap ? app->snap->tasks : NULL, p->rect.w, p->lines, p->cap);
}

const struct ui_pane_ops ui_tasks_ops = {
    .title = ui_tasks_title,
    .build = ui_tasks_build,
    .enter = NULL,
};
