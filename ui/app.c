/* SPDX-License-Identifier: MIT */
/*
 * The TUI's event loop (see app.h). One poll over: a signalfd (SIGINT, SIGTERM, SIGHUP,
 * SIGQUIT end the session cleanly; SIGWINCH resizes; SIGTSTP suspends, see ui_app_suspend),
 * stdin (keys, read without blocking until
 * curses has none left), a 100 ms timerfd (snapshots every UI_SNAP_TICKS ticks, the top table
 * every UI_TOP_TICKS, the tracer's time-driven re-arming), the sampler's timerfd and the
 * tracer's fd. After each wake-up only dirty panes are drawn, each with wnoutrefresh, then
 * one doupdate: one screen update per frame, no flicker.
 *
 * Exit paths: `q`, a signal, a lost terminal, --max-frames, an error. A lost terminal (tmux
 * kill-session, a closed ssh/kubectl pty: a hang-up) shows as POLLHUP/POLLERR on stdin, or, on
 * the timer, as a terminal that no longer answers tcgetattr (EIO after a hang-up): both end
 * the session like SIGHUP, which the guard forwards when it is the session leader. All of them
 * leave through
 * ui_app_teardown, which stops the tracer (breakpoints removed, threads detached), frees the
 * sampler and restores the terminal, in that order; target_detach_all runs last as a guard.
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
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "app_data.h"
#include "app_int.h"
#include "app_keys.h"
#include "keymap.h"
#include "pyscope/target.h"

#define UI_TICK_MS    100
#define UI_SNAP_TICKS 5  /* a snapshot every 500 ms */
#define UI_TOP_TICKS  10 /* the top table every second */
#define UI_NOTE_TICKS 50 /* notes stay 5 s */
#define UI_PANE_CAP(a)                                                                             \
    ((a) == UI_AREA_THREADS  ? UI_THREAD_LINES                                                     \
     : (a) == UI_AREA_STACK  ? UI_STACK_LINES                                                      \
     : (a) == UI_AREA_TOP    ? UI_TOP_LINES                                                        \
     : (a) == UI_AREA_EXC    ? UI_EXC_LINES                                                        \
     : (a) == UI_AREA_HEADER ? 3                                                                   \
                             : 1)

enum ui_fd {
    UI_FD_SIGNAL,
    UI_FD_STDIN,
    UI_FD_TIMER,
    UI_FD_SAMPLER,
    UI_FD_TRACER,
    UI_FD_COUNT,
};

struct ui_loop {
    int sigfd, timerfd;
    sigset_t old_mask;
    bool mask_set;
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

static const struct ui_pane_ops *const ui_pane_kinds[UI_AREA_COUNT] = {
    [UI_AREA_HEADER] = &ui_header_ops, [UI_AREA_THREADS] = &ui_threads_ops,
    [UI_AREA_STACK] = &ui_stack_ops,   [UI_AREA_TOP] = &ui_top_ops,
    [UI_AREA_EXC] = &ui_exc_ops,       [UI_AREA_KEYBAR] = &ui_keybar_ops,
};

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
    app->top_scratch = calloc(UI_TOP_LINES, sizeof(*app->top_scratch));
    app->growth_rows = calloc(UI_GROWTH_ROWS, sizeof(*app->growth_rows));
    if (!app->feed || !app->evbuf || !app->tstats || !app->top_scratch || !app->growth_rows)
        return ps_err_set(err, rc, "out of memory for the terminal UI");
    for (int a = 0; a < UI_AREA_COUNT; a++) {
        rc = ui_pane_init(&app->panes[a], ui_pane_kinds[a], UI_PANE_CAP(a),
                          a != UI_AREA_HEADER && a != UI_AREA_KEYBAR, err);
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
    free(app->top_scratch);
    free(app->growth_rows);
    growth_free(app->growth);
    free(app);
}

/* Block the session's signals and read them from a signalfd; a 100 ms periodic timer. */
static int ui_loop_fds(struct ui_loop *l, struct ps_err *err)
{
    struct itimerspec its = {.it_interval = {0, UI_TICK_MS * 1000000L},
                             .it_value = {0, UI_TICK_MS * 1000000L}};
    sigset_t set;

    (void)sigemptyset(&set);
    (void)sigaddset(&set, SIGINT);
    (void)sigaddset(&set, SIGTERM);
    (void)sigaddset(&set, SIGHUP);
    (void)sigaddset(&set, SIGQUIT);
    (void)sigaddset(&set, SIGWINCH);
    (void)sigaddset(&set, SIGTSTP);
    if (sigprocmask(SIG_BLOCK, &set, &l->old_mask) != 0)
        return ps_err_set(err, -errno, "cannot block signals: %s", strerror(errno));
    l->mask_set = true;
    l->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (l->sigfd < 0)
        return ps_err_set(err, -errno, "cannot create a signalfd: %s", strerror(errno));
    l->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (l->timerfd < 0 || timerfd_settime(l->timerfd, 0, &its, NULL) != 0)
        return ps_err_set(err, -errno, "cannot create a timer: %s", strerror(errno));
    return 0;
}

static void ui_loop_close(struct ui_loop *l)
{
    if (l->help_win)
        (void)delwin(l->help_win);
    l->help_win = NULL;
    if (l->sigfd >= 0)
        (void)close(l->sigfd);
    if (l->timerfd >= 0)
        (void)close(l->timerfd);
    l->sigfd = l->timerfd = -1;
    if (l->mask_set)
        (void)sigprocmask(SIG_SETMASK, &l->old_mask, NULL);
    l->mask_set = false;
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
    for (size_t i = 0; i < ui_keymap_count() && (int)i + 2 < b.h; i++)
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
            bool body = a != UI_AREA_HEADER && a != UI_AREA_KEYBAR;
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

static void ui_on_signal(struct ui_app *app, struct ui_loop *l)
{
    struct signalfd_siginfo si;

    while (read(l->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo == SIGTSTP) {
            ui_app_suspend(app, l);
        } else if (si.ssi_signo == SIGWINCH) {
            ui_term_resize(&app->term);
            ui_app_place(app, l);
        } else {
            app->quit = true;
        }
    }
}

static void ui_on_keys(struct ui_app *app, struct ui_loop *l)
{
    bool help = app->help;
    int ch;

    for (int n = 0; n < 256 && !app->quit && (ch = wgetch(stdscr)) != ERR; n++) {
        if (ch == KEY_RESIZE) {
            ui_term_resize(&app->term);
            ui_app_place(app, l);
            continue;
        }
        if (ui_keys_handle(app, ch))
            ui_app_rebuild_all(app);
    }
    if (help != app->help) {
        if (l->help_win)
            (void)delwin(l->help_win);
        l->help_win = NULL;
        l->full_redraw = true;
    }
}

static void ui_on_timer(struct ui_app *app, struct ui_loop *l)
{
    uint64_t expirations = 0;

    if (read(l->timerfd, &expirations, sizeof(expirations)) != (ssize_t)sizeof(expirations))
        return;
    if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
        app->quit = true; /* hung up: reads give 0, writes EIO, and nobody sees us any more */
        return;
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
}

static size_t ui_poll_fds(const struct ui_app *app, const struct ui_loop *l, struct pollfd *p,
                          int *which)
{
    size_t n = 0;

    p[n] = (struct pollfd){.fd = l->sigfd, .events = POLLIN};
    which[n++] = UI_FD_SIGNAL;
    p[n] = (struct pollfd){.fd = 0, .events = POLLIN};
    which[n++] = UI_FD_STDIN;
    if (app->tracer) { /* before the timer and the sampler: a stopped thread waits for it */
        p[n] = (struct pollfd){.fd = tracer_fd(app->tracer), .events = POLLIN};
        which[n++] = UI_FD_TRACER;
    }
    p[n] = (struct pollfd){.fd = l->timerfd, .events = POLLIN};
    which[n++] = UI_FD_TIMER;
    if (app->sampler && !app->paused && !app->gone) {
        p[n] = (struct pollfd){.fd = sampler_fd(app->sampler), .events = POLLIN};
        which[n++] = UI_FD_SAMPLER;
    }
    return n;
}

static void ui_dispatch(struct ui_app *app, struct ui_loop *l, int which)
{
    switch (which) {
    case UI_FD_SIGNAL: ui_on_signal(app, l); break;
    case UI_FD_STDIN: ui_on_keys(app, l); break;
    case UI_FD_TIMER: ui_on_timer(app, l); break;
    case UI_FD_SAMPLER: ui_data_sampler_tick(app); break;
    case UI_FD_TRACER:
        if (ui_data_tracer_step(app))
            ui_pane_rebuild(&app->panes[UI_AREA_EXC], app);
        break;
    default: break;
    }
}

static int ui_loop_run(struct ui_app *app, struct ui_loop *l, struct ps_err *err)
{
    struct pollfd pfd[UI_FD_COUNT];
    int which[UI_FD_COUNT];

    while (!app->quit) {
        size_t n = ui_poll_fds(app, l, pfd, which);
        /* The tracer's wait: it busy-polls between close stops and closes counting windows
         * on time (tracer_timeout_ms); a quiet timeout is a tracer step. */
        int rc = poll(pfd, n, app->tracer ? tracer_timeout_ms(app->tracer) : -1);
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            return ps_err_set(err, -errno, "poll failed: %s", strerror(errno));
        }
        if (pfd[1].revents & (POLLHUP | POLLERR | POLLNVAL))
            app->quit = true; /* the terminal went away (a hang-up also sets POLLIN) */
        if (rc == 0 && app->tracer && ui_data_tracer_step(app))
            ui_pane_rebuild(&app->panes[UI_AREA_EXC], app);
        for (size_t i = 0; i < n && !app->quit; i++)
            if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR))
                ui_dispatch(app, l, which[i]);
        if (ui_draw(app, l) && app->opts.max_frames > 0 && app->frames >= app->opts.max_frames)
            app->quit = true;
    }
    return 0;
}

static int ui_app_start(struct ui_app *app, struct ui_loop *l, struct ps_err *err)
{
    int rc = ui_loop_fds(l, err);

    /* The terminal first: without one, nothing of the target is touched. */
    if (rc == 0)
        rc = ui_term_open(&app->term, err);
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

static void ui_app_teardown(struct ui_app *app, struct ui_loop *l)
{
    struct ps_err err = {0};

    ui_data_tracer_stop(app);
    sampler_free(app->sampler);
    app->sampler = NULL;
    if (target_detach_all(&err) < 0) /* a guard: the tracer detached already */
        ui_app_note(app, "%s", err.msg);
    if (l->help_win)
        (void)delwin(l->help_win);
    l->help_win = NULL;
    for (int a = 0; a < UI_AREA_COUNT; a++)
        ui_pane_place(&app->panes[a], (struct ui_rect){0, 0, 0, 0});
    ui_term_close(&app->term);
    ui_loop_close(l);
}

int ui_attach_run(struct pyproc *pp, const struct ui_attach_opts *opts, struct ps_err *err)
{
    struct ui_loop l = {.sigfd = -1, .timerfd = -1};
    struct ui_app *app = NULL;
    int rc;

    rc = ui_app_new(pp, opts, &app, err);
    if (rc == 0)
        rc = ui_app_start(app, &l, err);
    if (rc == 0)
        rc = ui_loop_run(app, &l, err);
    if (app) {
        ui_app_teardown(app, &l);
    } else {
        ui_loop_close(&l);
    }
    if (app && opts->switch_to)
        *opts->switch_to = rc == 0 ? app->switch_to : 0;
    ui_app_free(app);
    return rc;
}
