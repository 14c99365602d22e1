/* SPDX-License-Identifier: MIT */
/*
 * The TUI's data side (see app_int.h): snapshots every UI_SNAP_TICKS timer ticks, the sampler
 * that fills the top table's profile, the exception tracer whose events feed the exceptions
 * pane, and the derived rates (process CPU%, GIL switches/s, raises/s). Everything here goes
 * through engine APIs (collect, sampler, tracer); no curses, no target access of its own.
 *
 * The target exiting is data: the first -PS_EGONE/-ESRCH stops the sampler and the tracer,
 * keeps every pane's last content and says so in the header.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app_data.h"
#include "pyscope/collect.h"
#include "pyscope/evloop.h"
#include "pyscope/procstat.h"

/* Tasks listed in the tasks view (running first): a screenful and then some. */
#define UI_TASKS_MAX 200
/* Growth: a sample every second (the rates' resolution), a rescan every 10 s (new modules,
 * replaced containers, and a container whose scan-time read was torn while it resized: busy
 * ones are the interesting ones). A scan costs a few hundred reads. */
#define UI_GROWTH_RESCAN_S 10.0

/* Calls per drain: 80 x UI_EV_BATCH events is more than the tracer's ring holds. */
#define UI_EV_ROUNDS 80
/* New events redraw the exceptions pane at most this often. Redrawing at every stop (hundreds
 * a second) cost more CPU than the tracing itself (wide-character layout of the feed) and, on
 * a 2-core machine, kept the next stopped thread waiting for the draw (docs/performance.md,
 * bench-service). */
#define UI_EXC_REDRAW_S 0.2

double ui_app_now(const struct ui_app *app)
{
    return evloop_clock_read(app->opts.clock);
}

bool ui_data_growth_start(struct ui_app *app)
{
    struct ps_err err = {0};
    int rc;

    if (app->growth)
        return true;
    rc = growth_new(app->pp, NULL, &app->growth, &err);
    if (rc == 0)
        rc = growth_scan(app->growth, &err);
    if (rc == 0)
        rc = growth_sample(app->growth, ui_app_now(app), &err);
    if (rc < 0) {
        growth_free(app->growth);
        app->growth = NULL;
        ui_app_note(app, "no growth view: %s", err.msg);
        return false;
    }
    app->growth_scanned = ui_app_now(app);
    return true;
}

void ui_data_growth_tick(struct ui_app *app)
{
    struct ps_err err = {0};
    double now = ui_app_now(app);
    int rc = 0;

    if (!app->growth || app->gone)
        return;
    if (now - app->growth_scanned >= UI_GROWTH_RESCAN_S) {
        rc = growth_scan(app->growth, &err);
        app->growth_scanned = now;
    }
    if (rc == 0)
        rc = growth_sample(app->growth, now, &err);
    if (rc == -PS_EGONE || rc == -ESRCH)
        ui_data_gone(app);
    else if (rc < 0)
        ui_app_note(app, "growth: %s", err.msg);
}

void ui_data_gone(struct ui_app *app)
{
    struct ps_err err = {0};

    if (app->gone)
        return;
    app->gone = true;
    (void)snprintf(app->status, sizeof(app->status),
                   "target pid %d exited: showing the last data; q quits", (int)app->pp->pid);
    app->status_error = true;
    sampler_free(app->sampler);
    app->sampler = NULL;
    if (app->tracer) {
        ui_data_drain_events(app);
        if (tracer_stop(app->tracer, &err) < 0)
            ui_app_note(app, "stopping the tracer: %s", err.msg);
        tracer_free(app->tracer);
        app->tracer = NULL;
    }
}

/* The target's age now, from its start time and the boot clock; -1 when unknown. */
static double ui_data_age(pid_t pid, long hz)
{
    char path[64], text[PROCSTAT_TEXT_MAX];
    struct procstat_stat st;
    struct ps_err err = {0};
    char line[128];
    double boot;
    size_t len;
    FILE *fp;

    (void)snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    fp = fopen(path, "re");
    if (!fp)
        return -1;
    len = fread(text, 1, sizeof(text), fp);
    (void)fclose(fp);
    if (procstat_parse_stat(text, len, &st, &err) != 0 || hz <= 0)
        return -1;
    fp = fopen("/proc/uptime", "re");
    if (!fp)
        return -1;
    if (!fgets(line, sizeof(line), fp))
        line[0] = '\0';
    (void)fclose(fp);
    boot = strtod(line, NULL); /* "12345.67 ..."; 0 when unreadable */
    return boot <= 0 ? -1 : boot - (double)st.start_ticks / (double)hz;
}

void ui_data_init_clock(struct ui_app *app)
{
    app->start_mono = ui_app_now(app);
    app->start_age = ui_data_age(app->pp->pid, app->hz);
    for (size_t i = 0; i < UI_TREND_N; i++)
        app->cpu_trend[i] = app->rss_trend[i] = -1;
    app->cpu_pct = app->gil_rate = app->exc_rate = app->trace_cost_pct = -1;
}

static void ui_trend_push(double *trend, double v)
{
    memmove(trend, trend + 1, (UI_TREND_N - 1) * sizeof(*trend));
    trend[UI_TREND_N - 1] = v;
}

/* CPU%, GIL switches/s and the trends from the last two snapshots. */
static void ui_data_rates(struct ui_app *app)
{
    const struct snap *s = app->snap, *p = app->prev;
    double dt = p ? s->timestamp - p->timestamp : 0;

    ui_trend_push(app->rss_trend, (double)s->rss_bytes);
    if (!p || dt <= 0)
        return;
    app->cpu_pct =
        ((s->cpu_user_s + s->cpu_system_s) - (p->cpu_user_s + p->cpu_system_s)) / dt * 100.0;
    if (app->cpu_pct < 0)
        app->cpu_pct = -1;
    app->gil_rate =
        s->gil_switches >= p->gil_switches ? (double)(s->gil_switches - p->gil_switches) / dt : -1;
    ui_trend_push(app->cpu_trend, app->cpu_pct);
}

int ui_data_snapshot(struct ui_app *app)
{
    /* --native stops the threads to unwind them: not while the tracer holds them. */
    bool native = app->native && !app->tracer;
    struct collect_opts co = {.retries = COLLECT_DEFAULT_RETRIES,
                              .blocking = native,
                              .native = native ? app->native : NULL,
                              .locals = app->locals,
                              .tasks = app->lower == UI_LOWER_TASKS,
                              .max_tasks = UI_TASKS_MAX};
    struct ps_err err = {0};
    struct snap *s = NULL;
    int rc = collect_snapshot(app->pp, &co, &s, &err);

    if (rc == -PS_EGONE || rc == -ESRCH) {
        ui_data_gone(app);
        return 0;
    }
    if (rc < 0) {
        ui_app_note(app, "snapshot failed: %s", err.msg);
        return rc == -ENOMEM ? rc : 0;
    }
    snap_free(app->prev);
    app->prev = app->snap;
    app->snap = s;
    ui_data_rates(app);
    return 0;
}

int ui_data_sampler_start(struct ui_app *app, struct ps_err *err)
{
    struct sampler_opts so = {.rate_hz = app->opts.rate_hz, .clock = app->opts.clock};
    int rc = profile_new(&app->profile, err);

    if (rc < 0)
        return rc;
    rc = sampler_new(app->pp, app->profile, &so, &app->sampler, err);
    if (rc == -ENOMEM)
        return rc;
    if (rc < 0) {
        (void)snprintf(app->status, sizeof(app->status), "no sampling: %s", err->msg);
        app->status_error = true;
        ps_err_clear(err);
    }
    return 0;
}

void ui_data_sampler_tick(struct ui_app *app)
{
    struct ps_err err = {0};
    int rc = sampler_tick(app->sampler, &err);

    if (rc == -PS_EGONE || rc == -ESRCH)
        ui_data_gone(app);
    else if (rc < 0)
        ui_app_note(app, "sampling: %s", err.msg);
}

void ui_data_tracer_start(struct ui_app *app)
{
    struct tracer_opts to = {.budget = app->opts.budget,
                             .force_mech = (enum tracer_mech)app->opts.mech,
                             .clock = app->opts.clock};
    struct ps_err err = {0};
    int rc;

    if (app->tracer || app->gone)
        return;
    rc = tracer_new(app->pp, &to, &app->tracer, &err);
    if (rc < 0) {
        app->tracer = NULL;
        (void)snprintf(app->status, sizeof(app->status), "no exception tracing: %s", err.msg);
        app->status_error = true;
        return;
    }
    app->trace_mech = tracer_mechanism(app->tracer);
    app->exc_last_t = ui_app_now(app);
    app->exc_last_raises = 0;
    app->exc_last_spent = app->exc_last_cpu = 0; /* a new tracer's stats start at 0 */
    if (app->status_error && strncmp(app->status, "no exception", 12) == 0)
        app->status[0] = '\0';
    if (!app->status[0]) /* why a better mechanism was refused ("bpf: pyscope lacks ...") */
        (void)snprintf(app->status, sizeof(app->status), "%s", tracer_mechanism_note(app->tracer));
}

void ui_data_tracer_stop(struct ui_app *app)
{
    struct ps_err err = {0};

    if (!app->tracer)
        return;
    ui_data_drain_events(app);
    if (tracer_stop(app->tracer, &err) < 0)
        ui_app_note(app, "stopping the tracer: %s", err.msg);
    tracer_free(app->tracer);
    app->tracer = NULL;
    app->exc_rate = app->trace_cost_pct = -1;
}

bool ui_data_drain_events(struct ui_app *app)
{
    struct tracer_event *buf = app->evbuf;
    bool any = false;

    for (int round = 0; app->tracer && round < UI_EV_ROUNDS; round++) {
        size_t n = tracer_events(app->tracer, app->last_seq, buf, UI_EV_BATCH);
        for (size_t i = 0; i < n; i++) {
            ui_excfeed_add(app->feed, &buf[i]);
            app->last_seq = buf[i].seq;
        }
        any = any || n > 0;
        if (n < UI_EV_BATCH)
            break;
    }
    return any;
}

/* Raises per second since the last call (about once a second). */
static void ui_data_exc_rate(struct ui_app *app)
{
    double now = ui_app_now(app);
    uint64_t raises;

    if (now - app->exc_last_t < 1.0)
        return;
    tracer_stats(app->tracer, app->tstats);
    /* Seen at stops, or estimated from the counter where the budget did not stop for them. */
    raises = app->tstats->raises;
    if (app->tstats->raises_est > (double)raises)
        raises = (uint64_t)app->tstats->raises_est;
    if (raises >= app->exc_last_raises)
        app->exc_rate = (double)(raises - app->exc_last_raises) / (now - app->exc_last_t);
    /* what tracing took from the target (stops, or with bpf the traps, the program and our
     * CPU), against the target's CPU in the same second: the budget's own measure */
    if (app->tstats->target_cpu_s - app->exc_last_cpu > 0.01 &&
        app->tstats->spent_s >= app->exc_last_spent)
        app->trace_cost_pct = 100.0 * (app->tstats->spent_s - app->exc_last_spent) /
                              (app->tstats->target_cpu_s - app->exc_last_cpu);
    else
        app->trace_cost_pct = -1; /* an idle target: no share to speak of, none kept from before */
    app->exc_last_spent = app->tstats->spent_s;
    app->exc_last_cpu = app->tstats->target_cpu_s;
    /* the sites' counts (exact with bpf, which reports a sample over its budget) */
    ui_excfeed_sites(app->feed, app->sites,
                     tracer_sites(app->tracer, app->sites, TRACER_MAX_SITES));
    ui_excfeed_tick(app->feed, now);
    app->exc_last_raises = raises;
    app->exc_last_t = now;
}

/* Whether drained events are due on screen (UI_EXC_REDRAW_S since the last time). */
static bool ui_data_exc_due(struct ui_app *app)
{
    double now = ui_app_now(app);

    if (!app->exc_pending || now - app->exc_shown_t < UI_EXC_REDRAW_S)
        return false;
    app->exc_pending = false;
    app->exc_shown_t = now;
    return true;
}

bool ui_data_tracer_step(struct ui_app *app)
{
    struct ps_err err = {0};
    int rc;

    if (!app->tracer)
        return false;
    rc = tracer_step(app->tracer, &err);
    if (rc == 1) {
        ui_data_drain_events(app);
        ui_data_tracer_stop(app);
        return true;
    }
    if (rc < 0) {
        ui_app_note(app, "exception tracing stopped: %s", err.msg);
        ui_data_tracer_stop(app);
        return true;
    }
    ui_data_exc_rate(app);
    /* Paused: the feed stays as shown; the tracer's ring keeps the newest meanwhile. */
    if (app->paused)
        return false;
    app->exc_pending = ui_data_drain_events(app) || app->exc_pending;
    return ui_data_exc_due(app);
}
