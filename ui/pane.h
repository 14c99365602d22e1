/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_UI_PANE_H
#define PYSCOPE_UI_PANE_H

/*
 * ui_pane: the base of every pane (htop's Panel): a rectangle, its curses window, a dirty flag,
 * the display lines its model produced, and a selection that follows a line's identity key
 * (a thread's native id, a raise's seq) rather than its index, so a thread list that reorders
 * keeps the same thread selected. What differs per pane is a `const struct ui_pane_ops` in the
 * pane's own file: a title, how to build the lines from the app's data, what Enter does.
 *
 * Drawing only touches the pane's window and ends with wnoutrefresh; the app calls doupdate
 * once per frame. Main thread only.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curses.h>

#include "layout.h"
#include "pyscope/err.h"
#include "view.h"

struct ui_app;
struct ui_term; /* term.h */
struct ui_pane;

struct ui_pane_ops {
    /* Title into buf (NULL title function: the pane has no title row). */
    void (*title)(const struct ui_pane *p, const struct ui_app *app, char *buf, size_t cap);
    /* Rebuild p->lines (p->nlines) for width p->rect.w from the app's data. */
    void (*build)(struct ui_pane *p, struct ui_app *app);
    /* Enter pressed while focused (NULL: nothing). */
    void (*enter)(struct ui_pane *p, struct ui_app *app);
    /* A feed (newest first) or a ranking: a selection on the first line stays on the first
     * line (tail -f) instead of following its key down the list. */
    bool stick_top;
};

struct ui_pane {
    const struct ui_pane_ops *ops;
    WINDOW *win; /* NULL while the terminal is too small */
    struct ui_rect rect;
    bool dirty;
    bool focusable;
    struct ui_line *lines; /* cap entries, owned */
    size_t nlines, cap;
    size_t sel;       /* index of the selected line (meaningful when nlines > 0) */
    uint64_t sel_key; /* its key: the selection follows it across rebuilds */
    size_t scroll;    /* first line shown */
};

/* Set up p with ops and room for cap lines. Errors: -ENOMEM. */
int ui_pane_init(struct ui_pane *p, const struct ui_pane_ops *ops, size_t cap, bool focusable,
                 struct ps_err *err) PS_WARN_UNUSED;

/* Free the lines and the window; NULL-safe, idempotent. */
void ui_pane_free(struct ui_pane *p);

/* Move p to r (a new window; an empty rectangle removes it) and mark it dirty. */
void ui_pane_place(struct ui_pane *p, struct ui_rect r);

/* ops->build, then find the selected key again (or keep the index, clamped). Marks dirty. */
void ui_pane_rebuild(struct ui_pane *p, struct ui_app *app);

/* Move the selection by delta selectable lines (clamped). Marks dirty when it moved. */
void ui_pane_move(struct ui_pane *p, long delta);

/* Lines shown under the title. */
int ui_pane_rows(const struct ui_pane *p);

/* Draw into the window (if any) with term's attributes and wnoutrefresh; clears dirty. app is
 * passed through to ops->title. */
void ui_pane_draw(struct ui_pane *p, const struct ui_term *term, const struct ui_app *app,
                  bool focused);

#endif
