/* SPDX-License-Identifier: MIT */
/*
 * The growth view of the lower-right pane (`g`): module-level containers by growth rate, from
 * the growth engine (growth.h) that app_data.c samples every second and rescans every 10 s
 * once `g` was pressed. The leak the demo service has (RESPONSE_CACHE) climbs to the top here.
 */
#include <stdio.h>

#include "app_int.h"

static void ui_growth_title(const struct ui_pane *p, const struct ui_app *app, char *buf,
                            size_t cap)
{
    (void)p;
    if (!app->growth)
        (void)snprintf(buf, cap, " Growth: not available (g: back to exceptions)");
    else
        (void)snprintf(buf, cap, " Growth: %zu containers, %llu samples (g: back to exceptions)",
                       growth_count(app->growth),
                       (unsigned long long)growth_stats(app->growth)->samples);
}

static void ui_growth_build(struct ui_pane *p, struct ui_app *app)
{
    size_t n = 0;

    for (size_t rank = 0; app->growth && n < UI_GROWTH_ROWS; rank++) {
        if (!growth_row(app->growth, rank, &app->growth_rows[n]))
            break;
        n++;
    }
    p->nlines = ui_view_growth(app->growth_rows, n, p->rect.w, p->lines, p->cap);
}

const struct ui_pane_ops ui_growth_ops = {
    .title = ui_growth_title,
    .build = ui_growth_build,
    .enter = NULL,
    .stick_top = true, /* a ranking that re-sorts every second: keep its head in view */
};
