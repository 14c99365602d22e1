/* SPDX-License-Identifier: MIT */
/*
 * The top pane: functions (or lines, `l`) by own or total share of the samples taken since
 * attach or the last `r`, sorted with `s`, filtered with `/` (ui_view_top over the sampler's
 * profile). Without a sampler it says why.
 */
#include <stdio.h>

#include "app_int.h"

static void ui_top_title(const struct ui_pane *p, const struct ui_app *app, char *buf, size_t cap)
{
    (void)p;
    (void)snprintf(buf, cap, " Top %s, %llu samples%s%s%s",
                   app->top_by == PROFILE_TOP_LINE ? "lines" : "functions",
                   (unsigned long long)app->top_samples,
                   app->filter[0] || (app->filter_edit && app->filter_area == UI_AREA_TOP) ? "  /"
                                                                                           : "",
                   app->filter, app->filter_edit && app->filter_area == UI_AREA_TOP ? "_" : "");
}

static void ui_top_build(struct ui_pane *p, struct ui_app *app)
{
    struct ui_top_in in = {
        .profile = app->profile,
        .by = app->top_by,
        .sort = app->top_sort,
        .filter = app->filter,
        .scratch = app->top_scratch,
        .nscratch = UI_TOP_LINES,
    };
    struct ps_err err = {0};
    int n;

    p->nlines = 0;
    if (!app->profile || !app->top_scratch)
        return;
    n = ui_view_top(&in, p->rect.w, p->lines, p->cap, &app->top_samples, &err);
    if (n >= 0)
        p->nlines = (size_t)n;
    else
        ui_app_note(app, "%s", err.msg);
}

const struct ui_pane_ops ui_top_ops = {
    .title = ui_top_title,
    .build = ui_top_build,
    .enter = NULL,
};
