/* SPDX-License-Identifier: MIT */
/*
 * Keys (see app_keys.h): a key code in, the app's state changed, the row's redraw out.
 * Bindings and what each key redraws live in keymap.c; this file only says what each action
 * does to the state, and rebuilds nothing.
 */
#include "app_keys.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "app_data.h"
#include "keymap.h"
#include "pyscope/out.h"
#include "pyscope/pslist.h"

static void ui_keys_focus(struct ui_app *app, int step)
{
    app->focus = ui_panes_focus_step(app->focus, step);
}

/*
 * Create path for the snapshot: a new file only (O_EXCL, no symlink followed: /tmp is shared),
 * mode 0600 whatever the umask, since with --locals it may hold a root process's secrets.
 */
static FILE *ui_keys_create(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    FILE *fp;

    if (fd < 0)
        return NULL;
    fp = fchmod(fd, 0600) == 0 ? fdopen(fd, "w") : NULL;
    if (!fp) {
        int e = errno;
        (void)close(fd);
        (void)unlink(path);
        errno = e;
    }
    return fp;
}

/* Open the file for `d`: ./pyscope-PID-TIME.json, else the same name in /tmp. */
static FILE *ui_keys_dump_open(const struct ui_app *app, char *path, size_t cap)
{
    char name[96], cwd[PATH_MAX];
    time_t now = time(NULL);
    struct tm tm;
    FILE *fp = NULL;

    if (!localtime_r(&now, &tm))
        memset(&tm, 0, sizeof(tm));
    (void)snprintf(name, sizeof(name), "pyscope-%d-%04d%02d%02d-%02d%02d%02d.json",
                   (int)app->pp->pid, tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                   tm.tm_min, tm.tm_sec);
    if (getcwd(cwd, sizeof(cwd))) {
        (void)snprintf(path, cap, "%s/%s", cwd, name);
        fp = ui_keys_create(path);
    }
    if (!fp) {
        (void)snprintf(path, cap, "/tmp/%s", name);
        fp = ui_keys_create(path);
    }
    return fp;
}

/* Processes `w` cycles through: a master and up to 63 workers (pslist's file-name view). */
#define UI_SWITCH_MAX 64

static int ui_keys_pid_cmp(const void *a, const void *b)
{
    pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;

    return (x > y) - (x < y);
}

/* `w`: end this session for the next process of the target's family (its master first, then
 * the master's Python workers in pid order); a note when there is none. Reads /proc only. */
static void ui_keys_switch(struct ui_app *app)
{
    pid_t cur = app->pp->pid, root = cur, fam[UI_SWITCH_MAX];
    size_t n, at = 0;

    if (!app->opts.switch_to) {
        ui_app_note(app, "no process switching in this session");
        return;
    }
    n = pslist_descendant_workers(cur, fam + 1, UI_SWITCH_MAX - 1);
    if (n == 0 && (root = pslist_master(cur)) != 0)
        n = pslist_descendant_workers(root, fam + 1, UI_SWITCH_MAX - 1);
    if (n == 0) {
        ui_app_note(app, "no other process to switch to: pid %d has no Python master or workers",
                    (int)cur);
        return;
    }
    n = (n < UI_SWITCH_MAX - 1 ? n : UI_SWITCH_MAX - 1) + 1;
    fam[0] = root;
    qsort(fam + 1, n - 1, sizeof(fam[0]), ui_keys_pid_cmp);
    for (size_t k = 0; k < n; k++)
        if (fam[k] == cur)
            at = k;
    app->switch_to = fam[(at + 1) % n];
    app->quit = true;
}

static void ui_keys_dump(struct ui_app *app)
{
    char path[PATH_MAX + 128];
    struct ps_err err = {0};
    FILE *fp;
    int rc;

    if (!app->snap) {
        ui_app_note(app, "no snapshot to write yet");
        return;
    }
    fp = ui_keys_dump_open(app, path, sizeof(path));
    if (!fp) {
        ui_app_note(app, "cannot write a snapshot file (%s): %s", path, strerror(errno));
        return;
    }
    rc = out_json_write(fp, app->snap, NULL, &err);
    if (fclose(fp) != 0 && rc == 0)
        rc = ps_err_set(&err, -errno, "%s", strerror(errno));
    if (rc < 0)
        ui_app_note(app, "writing %s failed: %s", path, err.msg);
    else
        ui_app_note(app, "wrote %s (as pyscope dump --json)", path);
}

char *ui_app_filter(struct ui_app *app, enum ui_area area)
{
    return area == UI_AREA_EXC ? app->exc_filter : app->filter;
}

void ui_act_filter_keep(struct ui_app *app, const struct ui_key_in *in)
{
    (void)in;
    app->filter_edit = false;
}

void ui_act_filter_clear(struct ui_app *app, const struct ui_key_in *in)
{
    (void)in;
    ui_app_filter(app, app->filter_area)[0] = '\0';
    app->filter_edit = false;
}

void ui_act_filter_erase(struct ui_app *app, const struct ui_key_in *in)
{
    char *filter = ui_app_filter(app, app->filter_area);
    size_t len = strlen(filter);

    (void)in;
    if (len > 0)
        filter[len - 1] = '\0';
}

void ui_act_filter_type(struct ui_app *app, const struct ui_key_in *in)
{
    char *filter = ui_app_filter(app, app->filter_area);
    size_t len = strlen(filter);

    if (len + 1 < UI_FILTER_MAX) {
        filter[len] = (char)in->code;
        filter[len + 1] = '\0';
    }
}

/* `/`: edit the filter of the focused pane; panes without one filter the top table. */
static void ui_keys_filter_open(struct ui_app *app)
{
    app->filter_edit = true;
    if (app->focus == UI_AREA_EXC && app->lower == UI_LOWER_EXC)
        app->filter_area = UI_AREA_EXC;
    else
        app->filter_area = app->focus = UI_AREA_TOP;
}

/* The exceptions pane's view changed: its lines mean something else, the selection restarts. */
static void ui_keys_exc_view(struct ui_app *app)
{
    struct ui_pane *p = &app->panes[UI_AREA_EXC];

    p->sel = p->scroll = 0;
    p->sel_key = 0;
}

void ui_act_exc_feed(struct ui_app *app, const struct ui_key_in *in)
{
    (void)in;
    app->exc_feed = !app->exc_feed;
    ui_app_note(app, "exceptions: %s",
                app->exc_feed ? "newest raises first" : "one row per raise site");
    ui_keys_exc_view(app);
}

void ui_act_exc_mine(struct ui_app *app, const struct ui_key_in *in)
{
    (void)in;
    app->exc_mine = !app->exc_mine;
    app->exc_mine_set = true;
    ui_app_note(app, "exceptions: %s",
                app->exc_mine ? "my code only (library-only raises hidden)" : "all raises");
    ui_keys_exc_view(app);
}

/* Show view `which` in the lower-right pane, or the exceptions again when it is shown. */
static void ui_keys_lower(struct ui_app *app, enum ui_lower which)
{
    struct ui_pane *p = &app->panes[UI_AREA_EXC];

    if (app->lower == which)
        which = UI_LOWER_EXC;
    if (which == UI_LOWER_GROWTH && !ui_data_growth_start(app))
        which = UI_LOWER_EXC;
    app->lower = which;
    p->ops = ui_panes_lower(which);
    p->sel = p->scroll = 0;
    p->sel_key = 0;
    if (which == UI_LOWER_TASKS && !app->paused && !app->gone && ui_data_snapshot(app) < 0)
        app->quit = true; /* out of memory */
}

void ui_act_back(struct ui_app *app, const struct ui_key_in *in)
{
    (void)in;
    if (app->help) {
        app->help = false;
    } else if (app->raise_view) {
        app->raise_view = 0;
    } else if (app->focus == UI_AREA_EXC && app->exc_filter[0]) {
        app->exc_filter[0] = '\0';
    } else if (app->filter[0]) {
        app->filter[0] = '\0';
    }
}

/* A move marks the moved pane; the stack pane that follows the thread is the row's redraw. */
static void ui_keys_move(struct ui_app *app, long delta)
{
    ui_pane_move(&app->panes[app->focus], delta);
}

void ui_act_up(struct ui_app *app, const struct ui_key_in *in)
{
    (void)in;
    ui_keys_move(app, -1);
}

void ui_act_down(struct ui_app *app, const struct ui_key_in *in)
{
    (void)in;
    ui_keys_move(app, 1);
}

void ui_act_page_up(struct ui_app *app, const struct ui_key_in *in)
{
    ui_keys_move(app, -(long)in->rows);
}

void ui_act_page_down(struct ui_app *app, const struct ui_key_in *in)
{
    ui_keys_move(app, in->rows);
}

void ui_act_next_pane(struct ui_app *app, const struct ui_key_in *in)
{
    (void)in;
    ui_keys_focus(app, 1);
}

void ui_act_prev_pane(struct ui_app *app, const struct ui_key_in *in)
{
    (void)in;
    ui_keys_focus(app, -1);
}

void ui_act_enter(struct ui_app *app, const struct ui_key_in *in)
{
    (void)in;
    if (app->panes[app->focus].ops->enter)
        app->panes[app->focus].ops->enter(&app->panes[app->focus], app);
}

void ui_act_sort(struct ui_app *app, const struct ui_key_in *in)
{
    (void)in;
    app->top_sort = app->top_sort == PROFILE_SORT_OWN ? PROFILE_SORT_TOTAL : PROFILE_SORT_OWN;
}

void ui_act_lines(struct ui_app *app, const struct ui_key_in *in)
{
    (void)in;
    app->top_by = app->top_by == PROFILE_TOP_LINE ? PROFILE_TOP_FUNCTION : PROFILE_TOP_LINE;
}

void ui_act_pause(struct ui_app *app, const struct ui_key_in *in)
{
    (void)in;
    app->paused = !app->paused;
    if (!app->gone)
        (void)snprintf(app->status, sizeof(app->status), "%s", app->paused ? "PAUSED" : "");
    app->status_error = false;
}

void ui_act_reset(struct ui_app *app, const struct ui_key_in *in)
{
    (void)in;
    if (app->profile)
        profile_reset(app->profile);
    ui_excfeed_reset(app->feed);
    ui_app_note(app, "top table and exception counts reset");
}

void ui_act_locals(struct ui_app *app, const struct ui_key_in *in)
{
    (void)in;
    app->locals = !app->locals;
    ui_app_note(app, "locals %s from the next refresh", app->locals ? "shown" : "hidden");
}

void ui_act_exceptions(struct ui_app *app, const struct ui_key_in *in)
{
    (void)in;
    if (app->tracer)
        ui_data_tracer_stop(app);
    else
        ui_data_tracer_start(app);
}

void ui_act_filter(struct ui_app *app, const struct ui_key_in *in)
{
    (void)in;
    ui_keys_filter_open(app);
}

void ui_act_dump(struct ui_app *app, const struct ui_key_in *in)
{
    (void)in;
    ui_keys_dump(app);
}

void ui_act_switch(struct ui_app *app, const struct ui_key_in *in)
{
    (void)in;
    ui_keys_switch(app);
}

void ui_act_growth(struct ui_app *app, const struct ui_key_in *in)
{
    (void)in;
    ui_keys_lower(app, UI_LOWER_GROWTH);
}

void ui_act_tasks(struct ui_app *app, const struct ui_key_in *in)
{
    (void)in;
    ui_keys_lower(app, UI_LOWER_TASKS);
}

void ui_act_help(struct ui_app *app, const struct ui_key_in *in)
{
    (void)in;
    app->help = !app->help;
}

void ui_act_quit(struct ui_app *app, const struct ui_key_in *in)
{
    (void)in;
    app->quit = true;
}

unsigned ui_keys_handle(struct ui_app *app, int ch)
{
    const struct ui_keymap_entry *k =
        ui_keymap_find(app->filter_edit ? UI_MODE_FILTER : UI_MODE_PANES, ch);
    struct ui_key_in in = {.code = ch, .rows = ui_pane_rows(&app->panes[app->focus])};
    unsigned redraw;

    if (!k || (app->help && !(k->flags & UI_KEY_ON_HELP)))
        return UI_REDRAW_NONE; /* unbound, or the help screen (modal) does not take it */
    k->fn(app, &in);
    redraw = k->redraw & ~UI_REDRAW_FOCUSED;
    if (k->redraw & UI_REDRAW_FOCUSED)
        redraw |= UI_REDRAW(app->focus);
    return redraw;
}
