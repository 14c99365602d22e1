/* SPDX-License-Identifier: MIT */
/*
 * The header pane: three lines about the process (pid, command, Python, uptime; CPU and RSS
 * with trends, threads, GIL holder and switch rate; sampler and exception tracer health, and
 * the session's status). Built by ui_view_header from what app.c measured; no title row.
 */
#include <stdio.h>

#include "app_int.h"

static double ui_header_uptime(const struct ui_app *app)
{
    if (app->start_age < 0)
        return -1;
    return app->start_age + (ui_app_now(app) - app->start_mono);
}

static void ui_header_build(struct ui_pane *p, struct ui_app *app)
{
    char lost[128];
    struct ui_header_in in = {
        .snap = app->snap,
        .uptime_s = ui_header_uptime(app),
        .cpu_pct = app->cpu_pct,
        .cpu_trend = app->cpu_trend,
        .rss_trend = app->rss_trend,
        .gil_switch_rate = app->gil_rate,
        .sampling = app->sampler != NULL,
        .tracing = app->tracer != NULL,
        .trace_mech = app->trace_mech,
        .exc_rate = app->exc_rate,
        .trace_cost_pct = app->trace_cost_pct,
        .trace_budget_pct = app->tracer ? 100.0 * app->tstats->budget : -1,
        .status = app->status[0] ? app->status : NULL,
        .status_error = app->status_error,
        .utf8 = app->term.utf8,
    };

    if (app->sampler) {
        struct sampler_stats st;
        sampler_stats_get(app->sampler, &st);
        in.sample_rate = st.rate;
        sampler_lost_words(&st, lost, sizeof(lost));
        in.sample_lost = lost;
    }
    if (p->cap < 3)
        return;
    ui_view_header(&in, p->rect.w, p->lines);
    p->nlines = 3;
}

const struct ui_pane_ops ui_header_ops = {
    .title = NULL,
    .build = ui_header_build,
    .enter = NULL,
};
