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

/* A sparkline of one container's recent lengths (missing points blank). */
static void ui_growth_spark(const struct ui_app *app, size_t rank, char *buf, size_t cap)
{
    double t[UI_GROWTH_SPARK_N], v[UI_GROWTH_SPARK_N];
    int64_t len[UI_GROWTH_SPARK_N];
    size_t n = growth_history(app->growth, rank, t, len, UI_GROWTH_SPARK_N);

    for (size_t i = 0; i < n; i++)
        v[i] = len[i] < 0 ? -1.0 : (double)len[i];
    (void)ui_spark(buf, cap, v, n, app->term.utf8);
}

/* "RSS 24.1 MiB ▁▂▃▅" from the snapshots' trend: memory growth beside the containers'. */
static const char *ui_growth_rss(const struct ui_app *app, char *buf, size_t cap)
{
    char size[32], spark[UI_TREND_N * 4 + 1];

    if (!app->snap)
        return NULL;
    (void)snprintf(buf, cap, "RSS %s %s",
                   ui_bytes(size, sizeof(size), (double)app->snap->rss_bytes),
                   ui_spark(spark, sizeof(spark), app->rss_trend, UI_TREND_N, app->term.utf8));
    return buf;
}

static void ui_growth_build(struct ui_pane *p, struct ui_app *app)
{
    static const size_t spark_rows = 64; /* only the rows that can be on screen get one */
    char sparks[64][UI_GROWTH_SPARK_MAX];
    const char *spark_ptr[UI_GROWTH_ROWS] = {0};
    char rss[96];
    size_t n = 0;

    for (size_t rank = 0; app->growth && n < UI_GROWTH_ROWS; rank++) {
        if (!growth_row(app->growth, rank, &app->growth_rows[n]))
            break;
        if (n < spark_rows) {
            ui_growth_spark(app, rank, sparks[n], sizeof(sparks[n]));
            spark_ptr[n] = sparks[n];
        }
        n++;
    }
    p->nlines = ui_view_growth(app->growth_rows, spark_ptr, ui_growth_rss(app, rss, sizeof(rss)), n,
                               p->rect.w, p->lines, p->cap);
}

const struct ui_pane_ops ui_growth_ops = {
    .title = ui_growth_title,
    .build = ui_growth_build,
    .enter = NULL,
    .stick_top = true, /* a ranking that re-sorts every second: keep its head in view */
};
