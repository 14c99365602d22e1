/* SPDX-License-Identifier: MIT */
/*
 * The TUI's session: an evloop (pyscope/evloop.h) with these sources: its signals (SIGINT,
 * SIGTERM, SIGHUP, SIGQUIT end the session cleanly; SIGWINCH resizes; SIGTSTP suspends, see
 * ui_app_suspend), stdin (keys, read without blocking until curses has none left), a 100 ms
 * periodic timer (snapshots every UI_SNAP_TICKS ticks, the top table every UI_TOP_TICKS, the
 * tracer's time-driven re-arming), the sampler's tick timer (armed at sampler_due), and,
 * while exceptions are traced, the tracer's fd and a timer at its tracer_timeout_ms. The
 * loop's turn hook follows the tracer and the pause (ui_sync), then draws: only dirty panes,
 * each with wnoutrefresh, then one doupdate: one screen update per frame, no flicker.
 *
 * Exit paths: `q`, a signal, a lost terminal, --max-frames, an error. A lost terminal (tmux
 * kill-session, a closed ssh/kubectl pty: a hang-up) shows as POLLHUP/POLLERR on stdin, or, on
 * the timer, as a terminal that no longer answers tcgetattr (EIO after a hang-up): both end
 * the session like SIGHUP, which the guard forwards when it is the session leader. All of them
 * leave through the loop's teardown (steps added last first undone): the tracer stopped
 * (breakpoints removed, threads detached), the sampler freed, target_detach_all as a guard,
 * the terminal restored; then evloop_free gives the signal mask back.
 * The target exiting is not an exit path: the panes keep their last data until `q`.
 */
#include "app.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app_data.h"
#include "app_int.h"
#include "app_keys.h"
#include "keymap.h"
#include "pyscope/evloop.h"
#include "pyscope/target.h"

#define UI_TICK_MS    100
#define UI_SNAP_TICKS 5  /* a snapshot every 500 ms */
#define UI_TOP_TICKS  10 /* the top table every second */
#define UI_NOTE_TICKS 50 /* notes stay 5 s */
/* The session's own reason to end (evloop_stop): app->quit was set. */
#define UI_END_QUIT EVLOOP_END_OWN

struct ui_loop {
    struct ui_app *app;
    struct evloop *ev;
    int timer, sampler, tracer_fd, tracer_timer; /* source ids, -1 none */
    const struct tracer *traced;                 /* the tracer tracer_fd belongs to */
    WINDOW *help_win;
    bool full_redraw;
};

void ui_attach_write_keys(FILE *fp, bool markdown)
{
    if (markdown)
        ui_keymap_write_markdown(fp);
    else
        ui_keymap_write_text(fp);
}

void ui_app_note(struct ui_app *app, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    (void)vsnprintf(app->note, sizeof(app->note), fmt, ap); // NOLINT(clang-analyzer-valist.*)
    va_end(ap);
    app->note_until = app->ticks + UI_NOTE_TICKS;
    app->panes[UI_AREA_KEYBAR].dirty = true;
}

/* Allocate the session. *out is set as soon as the app exists, even if a later allocation
 * fails, so that ui_attach_run's one cleanup path frees what was built. */
static int ui_app_new(struct pyproc *pp, const struct ui_attach_opts *o, struct ui_app **out,
                      struct ps_err *err)
{
    char root[64];
    struct ui_app *app = calloc(1, sizeof(*app));
    int rc = -ENOMEM;

    if (!app) {
        (void)ps_err_set(err, -ENOMEM, "out of memory for the terminal UI");
        return -ENOMEM;
    }
    *out = app;
    app->pp = pp;
    app->opts = *o;
    app->locals = o->locals;
    if (o->notice)
        (void)snprintf(app->status, sizeof(app->status), "%s", o->notice);
    app->focus = UI_AREA_THREADS;
    app->hz = sysconf(_SC_CLK_TCK);
    app->term.saved_err = app->term.parked_err = -1;
    app->feed = calloc(1, sizeof(*app->feed));
    app->evbuf = calloc(UI_EV_BATCH, sizeof(*app->evbuf));
    app->tstats = calloc(1, sizeof(*app->tstats));
    app->sites = calloc(TRACER_MAX_SITES, sizeof(*app->sites));
    app->top_scratch = calloc(UI_TOP_LINES, sizeof(*app->top_scratch));
    app->growth_rows = calloc(UI_GROWTH_ROWS, sizeof(*app->growth_rows));
    if (!app->feed || !app->evbuf || !app->tstats || !app->sites || !app->top_scratch ||
        !app->growth_rows)
        return ps_err_set(err, rc, "out of memory for the terminal UI");
    for (int a = 0; a < UI_AREA_COUNT; a++) {
        const struct ui_pane_kind *k = ui_panes_kind((enum ui_area)a);

        rc = ui_pane_init(&app->panes[a], k->ops, k->cap, k->focus > 0, err);
        if (rc < 0)
            return rc;
    }
    (void)snprintf(root, sizeof(root), "/proc/%d/root", (int)pp->pid);
    if (o->native) {
        struct native_opts no = {.file_root = root};

        rc = native_open_live(pp->pid, &pp->maps, pp->src, &no, &app->native, err);
        if (rc < 0)
            return rc;
    }
    return srcline_cache_new(NULL, pp->pid, &app->src, err);
}

static void ui_app_free(struct ui_app *app)
{
    if (!app)
        return;
    for (int a = 0; a < UI_AREA_COUNT; a++)
        ui_pane_free(&app->panes[a]);
    sampler_free(app->sampler);
    profile_free(app->profile);
    snap_free(app->snap);
    snap_free(app->prev);
    srcline_cache_free(app->src);
    native_close(app->native);
    free(app->feed);
    free(app->evbuf);
    free(app->tstats);
    free(app->sites);
    free(app->top_scratch);
    free(app->growth_rows);
    growth_free(app->growth);
    free(app);
}

static void ui_app_rebuild_all(struct ui_app *app)
{
    for (int a = 0; a < UI_AREA_COUNT; a++)
        ui_pane_rebuild(&app->panes[a], app);
}

static void ui_app_place(struct ui_app *app, struct ui_loop *l)
{
    ui_layout_compute(LINES, COLS, &app->layout);
    for (int a = 0; a < UI_AREA_COUNT; a++) {
        struct ui_rect empty = {0, 0, 0, 0};
        ui_pane_place(&app->panes[a], app->layout.too_small ? empty : app->layout.area[a]);
    }
    if (l->help_win)
        (void)delwin(l->help_win);
    l->help_win = NULL;
    l->full_redraw = true;
    ui_app_rebuild_all(app);
}

static void ui_draw_help(struct ui_app *app, struct ui_loop *l)
{
    struct ui_rect b = app->layout.body;
    char line[UI_LINE_MAX], fitted[UI_LINE_MAX];

    if (!l->help_win)
        l->help_win = newwin(b.h, b.w, b.y, b.x);
    if (!l->help_win)
        return;
    (void)werase(l->help_win);
    (void)wattrset(l->help_win, (int)ui_term_title_attr(&app->term, true));
    (void)mvwaddstr(l->help_win, 0, 0,
                    ui_fit(fitted, sizeof(fitted), " pyscope attach: keys (? or Esc closes)", b.w));
    (void)wattrset(l->help_win, A_NORMAL);
    for (size_t i = 0; i < ui_keymap_count(UI_MODE_PANES) && (int)i + 2 < b.h; i++)
        (void)mvwaddstr(l->help_win, (int)i + 2, 0,
                        ui_fit(fitted, sizeof(fitted), ui_keymap_line(i, line, sizeof(line)), b.w));
    (void)wnoutrefresh(l->help_win);
}

static void ui_draw_too_small(const struct ui_app *app)
{
    char text[128];

    (void)snprintf(text, sizeof(text), "terminal too small: need %dx%d, have %dx%d (q quits)",
                   UI_MIN_COLS, UI_MIN_ROWS, app->layout.cols, app->layout.rows);
    (void)werase(stdscr);
    (void)mvwaddnstr(stdscr, 0, 0, text, COLS > 1 ? COLS - 1 : 0);
    (void)wnoutrefresh(stdscr);
}

/* Draw a frame if anything is dirty: returns true when doupdate ran. */
static bool ui_draw(struct ui_app *app, struct ui_loop *l)
{
    bool any = l->full_redraw;

    for (int a = 0; a < UI_AREA_COUNT; a++)
        any = any || app->panes[a].dirty;
    if (!any)
        return false;
    if (l->full_redraw) {
        (void)werase(stdscr);
        (void)wnoutrefresh(stdscr);
    }
    if (app->layout.too_small) {
        ui_draw_too_small(app);
    } else {
        for (int a = 0; a < UI_AREA_COUNT; a++) {
            bool body = ui_panes_kind((enum ui_area)a)->body;
            if ((app->panes[a].dirty || l->full_redraw) && !(app->help && body))
                ui_pane_draw(&app->panes[a], &app->term, app, (int)app->focus == a);
        }
        if (app->help)
            ui_draw_help(app, l);
    }
    for (int a = 0; a < UI_AREA_COUNT; a++)
        app->panes[a].dirty = false;
    l->full_redraw = false;
    (void)doupdate();
    app->frames++;
    return true;
}

/*
 * Ctrl-Z. A suspended pyscope must not hold the target: with exception tracing on, a thread
 * that raises would stop at the breakpoint and wait for us. So tracing is stopped (breakpoints
 * removed, threads detached) before the terminal is given back and we stop ourselves; `e`
 * turns it on again after `fg`.
 */
static void ui_app_suspend(struct ui_app *app, struct ui_loop *l)
{
    bool tracing = app->tracer != NULL;

    ui_data_tracer_stop(app);
    (void)endwin();
    (void)kill(getpid(), SIGSTOP); /* returns once continued (fg) */
    ui_term_resize(&app->term);
    ui_app_place(app, l);
    if (tracing)
        ui_app_note(app, "exception tracing was stopped for the suspension: e turns it on");
}

/* After a source's handler: a quit ends the loop before any other source runs. */
static int ui_after(const struct ui_app *app, struct evloop *ev)
{
    if (app->quit)
        evloop_stop(ev, UI_END_QUIT);
    return 0;
}

static int ui_on_tstp(void *arg, struct evloop *ev, unsigned events, struct ps_err *err)
{
    struct ui_loop *l = arg;

    (void)events;
    (void)err;
    ui_app_suspend(l->app, l);
    return ui_after(l->app, ev);
}

static int ui_on_winch(void *arg, struct evloop *ev, unsigned events, struct ps_err *err)
{
    struct ui_loop *l = arg;

    (void)events;
    (void)err;
    ui_term_resize(&l->app->term);
    ui_app_place(l->app, l);
    return ui_after(l->app, ev);
}

/* A key row's redraw (keymap.h): rebuild its panes; the whole screen when the help screen
 * opened or closed (its window goes, the panes under it are repainted). */
static void ui_redraw(struct ui_app *app, struct ui_loop *l, unsigned redraw)
{
    for (int a = 0; a < UI_AREA_COUNT; a++)
        if (redraw & UI_REDRAW(a))
            ui_pane_rebuild(&app->panes[a], app);
    if (redraw & UI_REDRAW_SCREEN) {
        if (l->help_win)
            (void)delwin(l->help_win);
        l->help_win = NULL;
        l->full_redraw = true;
    }
}

/*
 * Keys, each through its keymap row. A resize is the SIGWINCH source's alone (ui_on_winch):
 * the loop holds SIGWINCH for its signalfd, so curses' own handler never runs and wgetch never
 * makes a KEY_RESIZE (resize_term does not queue one either); one path, on the one loop, that
 * works whether or not a key is read.
 */
static int ui_on_keys(void *arg, struct evloop *ev, unsigned events, struct ps_err *err)
{
    struct ui_loop *l = arg;
    struct ui_app *app = l->app;
    int ch;

    (void)err;
    if (events & (POLLHUP | POLLERR | POLLNVAL))
        app->quit = true; /* the terminal went away (a hang-up also sets POLLIN) */
    for (int n = 0; n < 256 && !app->quit && (ch = wgetch(stdscr)) != ERR; n++)
        ui_redraw(app, l, ui_keys_handle(app, ch));
    return ui_after(app, ev);
}

static int ui_on_timer(void *arg, struct evloop *ev, unsigned events, struct ps_err *err)
{
    struct ui_loop *l = arg;
    struct ui_app *app = l->app;
    uint64_t expirations = evloop_timer_every(ev, l->timer, UI_TICK_MS / 1000.0);

    (void)events;
    (void)err;
    if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
        app->quit = true; /* hung up: reads give 0, writes EIO, and nobody sees us any more */
        return ui_after(app, ev);
    }
    app->ticks += expirations;
    if (app->tracer && ui_data_tracer_step(app))
        ui_pane_rebuild(&app->panes[UI_AREA_EXC], app);
    if (app->ticks % UI_TOP_TICKS < expirations && !app->paused) {
        ui_data_growth_tick(app);
        ui_pane_rebuild(&app->panes[UI_AREA_TOP], app);
    }
    if (app->ticks % UI_SNAP_TICKS < expirations) {
        if (!app->paused && !app->gone && ui_data_snapshot(app) < 0)
            app->quit = true;
        ui_app_rebuild_all(app);
    }
    if (app->note[0] && app->ticks >= app->note_until) {
        app->note[0] = '\0';
        ui_pane_rebuild(&app->panes[UI_AREA_KEYBAR], app);
    }
    return ui_after(app, ev);
}

static int ui_on_sampler(void *arg, struct evloop *ev, unsigned events, struct ps_err *err)
{
    struct ui_loop *l = arg;

    (void)events;
    (void)err;
    if (l->app->sampler)
        ui_data_sampler_tick(l->app);
    if (l->app->sampler) /* not freed by a target that is gone */
        evloop_timer_at(ev, l->sampler, sampler_due(l->app->sampler));
    return ui_after(l->app, ev);
}

/* The tracer's fd was readable, or its wait ran out: a tracer step. */
static int ui_on_tracer(void *arg, struct evloop *ev, unsigned events, struct ps_err *err)
{
    struct ui_loop *l = arg;

    (void)events;
    (void)err;
    if (l->app->tracer && ui_data_tracer_step(l->app))
        ui_pane_rebuild(&l->app->panes[UI_AREA_EXC], l->app);
    return ui_after(l->app, ev);
}

/* Follow the tracer (started and stopped by keys, stopped when the target goes) and the
 * pause in the loop's sources; re-arm the tracer's wait (it busy-polls between close stops
 * and closes counting windows on time: tracer_timeout_ms). */
static int ui_sync(struct ui_loop *l, struct ps_err *err)
{
    struct ui_app *app = l->app;
    int rc = 0;

    if (l->traced != app->tracer) {
        evloop_remove(l->ev, l->tracer_fd);
        evloop_remove(l->ev, l->tracer_timer);
        l->tracer_fd = l->tracer_timer = -1;
        l->traced = app->tracer;
        /* Before the timers: a stopped thread waits for it (fds are served first). */
        if (app->tracer)
            rc = l->tracer_fd = evloop_add_fd(l->ev, tracer_fd(app->tracer), ui_on_tracer, l, err);
        if (rc >= 0 && app->tracer)
            rc = l->tracer_timer = evloop_add_timer(l->ev, -1, ui_on_tracer, l, err);
    }
    if (rc >= 0 && app->tracer)
        evloop_timer_at(l->ev, l->tracer_timer,
                        evloop_clock_now(l->ev) + tracer_timeout_ms(app->tracer) / 1000.0);
    evloop_enable(l->ev, l->sampler, app->sampler && !app->paused && !app->gone);
    return rc < 0 ? rc : 0;
}

/* The turn hook: follow the tracer, draw the frame, count it against --max-frames. */
static int ui_on_turn(void *arg, struct evloop *ev, unsigned events, struct ps_err *err)
{
    struct ui_loop *l = arg;
    struct ui_app *app = l->app;

    (void)events;
    if (ui_draw(app, l) && app->opts.max_frames > 0 && app->frames >= app->opts.max_frames)
        app->quit = true;
    (void)ui_after(app, ev);
    return ui_sync(l, err);
}

/* The sources that live as long as the session: keys, the 100 ms timer, the sampler's ticks. */
static int ui_loop_sources(struct ui_loop *l, struct ps_err *err)
{
    struct ui_app *app = l->app;
    double now = evloop_clock_now(l->ev);
    int rc = evloop_add_fd(l->ev, STDIN_FILENO, ui_on_keys, l, err);

    if (rc >= 0)
        rc = l->timer = evloop_add_timer(l->ev, now + UI_TICK_MS / 1000.0, ui_on_timer, l, err);
    if (rc >= 0)
        rc = l->sampler = evloop_add_timer(l->ev, app->sampler ? sampler_due(app->sampler) : -1,
                                           ui_on_sampler, l, err);
    evloop_on_tstp(l->ev, ui_on_tstp, l);
    evloop_on_winch(l->ev, ui_on_winch, l);
    evloop_on_turn(l->ev, ui_on_turn, l);
    return rc < 0 ? rc : ui_sync(l, err);
}

static int ui_loop_run(struct ui_loop *l, struct ps_err *err)
{
    int rc = ui_loop_sources(l, err);

    if (rc == 0)
        rc = evloop_run(l->ev, err);
    return rc;
}

/* ---- start and teardown ------------------------------------------------------------------ */

static int ui_undo_term(void *arg, struct ps_err *err)
{
    struct ui_loop *l = arg;

    (void)err;
    if (l->help_win)
        (void)delwin(l->help_win);
    l->help_win = NULL;
    for (int a = 0; a < UI_AREA_COUNT; a++)
        ui_pane_place(&l->app->panes[a], (struct ui_rect){0, 0, 0, 0});
    ui_term_close(&l->app->term);
    return 0;
}

static int ui_undo_detach(void *arg, struct ps_err *err)
{
    struct ui_app *app = arg;

    if (target_detach_all(err) < 0) /* a guard: the tracer detached already */
        ui_app_note(app, "%s", err->msg);
    return 0;
}

static int ui_undo_sampler(void *arg, struct ps_err *err)
{
    struct ui_app *app = arg;

    (void)err;
    sampler_free(app->sampler);
    app->sampler = NULL;
    return 0;
}

static int ui_undo_tracer(void *arg, struct ps_err *err)
{
    (void)err;
    ui_data_tracer_stop(arg);
    return 0;
}

/* The loop, its signals (one meaning each, evloop.h) and the teardown, in the order of set-up:
 * the terminal, the detach guard, the sampler, the tracer; undone the other way round. */
static int ui_loop_open(struct ui_loop *l, struct ps_err *err)
{
    const struct evloop_opts o = {.signals = EVLOOP_SIG_STOP | EVLOOP_SIG_TSTP | EVLOOP_SIG_WINCH,
                                  .clock = l->app->opts.clock};
    int rc = evloop_new(&o, &l->ev, err);

    if (rc == 0)
        rc = evloop_add_teardown(l->ev, ui_undo_term, l, err);
    if (rc == 0)
        rc = evloop_add_teardown(l->ev, ui_undo_detach, l->app, err);
    if (rc == 0)
        rc = evloop_add_teardown(l->ev, ui_undo_sampler, l->app, err);
    if (rc == 0)
        rc = evloop_add_teardown(l->ev, ui_undo_tracer, l->app, err);
    return rc;
}

static int ui_app_start(struct ui_app *app, struct ui_loop *l, struct ps_err *err)
{
    int rc = ui_loop_open(l, err);

    /* The terminal first: without one, nothing of the target is touched. */
    if (rc == 0)
        rc = ui_term_open(&app->term, app->pp ? app->pp->pid : 0, err);
    if (rc == 0)
        rc = target_install_signal_teardown(err);
    if (rc == 0)
        rc = ui_data_sampler_start(app, err);
    if (rc < 0)
        return rc;
    ui_data_init_clock(app);
    rc = ui_data_snapshot(app);
    if (rc < 0)
        return ps_err_set(err, rc, "out of memory taking a snapshot");
    if (!app->opts.no_exceptions)
        ui_data_tracer_start(app);
    ui_app_place(app, l);
    return 0;
}

int ui_attach_run(struct pyproc *pp, const struct ui_attach_opts *opts, struct ps_err *err)
{
    struct ui_loop l = {.timer = -1, .sampler = -1, .tracer_fd = -1, .tracer_timer = -1};
    struct ui_app *app = NULL;
    int rc;

    rc = ui_app_new(pp, opts, &app, err);
    l.app = app;
    if (rc == 0)
        rc = ui_app_start(app, &l, err);
    if (rc == 0)
        rc = ui_loop_run(&l, err);
    if (l.ev) {
        struct ps_err terr = {0};

        if (evloop_teardown(l.ev, &terr) < 0 && rc == 0)
            rc = ps_err_set(err, terr.code, "%s", terr.msg);
    }
    evloop_free(l.ev);
    if (app && opts->switch_to)
        *opts->switch_to = rc == 0 ? app->switch_to : 0;
    ui_app_free(app);
    return rc;
}
