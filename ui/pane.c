/* SPDX-License-Identifier: MIT */
/*
 * The pane base (see pane.h): lines in, a curses window out. Selection follows keys: after a
 * rebuild the selected key is searched again; when it is gone (a thread exited) the index is
 * kept, clamped to the nearest selectable line, and its key becomes the new selection.
 */
#include "pane.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "term.h"

int ui_pane_init(struct ui_pane *p, const struct ui_pane_ops *ops, size_t cap, bool focusable,
                 struct ps_err *err)
{
    memset(p, 0, sizeof(*p));
    p->ops = ops;
    p->cap = cap;
    p->focusable = focusable;
    p->lines = calloc(cap, sizeof(*p->lines));
    if (!p->lines)
        return ps_err_set(err, -ENOMEM, "out of memory for the screen's lines");
    return 0;
}

void ui_pane_free(struct ui_pane *p)
{
    if (!p)
        return;
    if (p->win)
        (void)delwin(p->win);
    p->win = NULL;
    free(p->lines);
    p->lines = NULL;
    p->nlines = p->cap = 0;
}

void ui_pane_place(struct ui_pane *p, struct ui_rect r)
{
    if (p->win)
        (void)delwin(p->win);
    p->win = NULL;
    p->rect = r;
    if (r.h > 0 && r.w > 0)
        p->win = newwin(r.h, r.w, r.y, r.x);
    p->dirty = true;
}

int ui_pane_rows(const struct ui_pane *p)
{
    int rows = p->rect.h - (p->ops->title ? 1 : 0);
    return rows > 0 ? rows : 0;
}

/* The nearest selectable line to i (searching down, then up), or nlines when none. */
static size_t ui_pane_nearest(const struct ui_pane *p, size_t i)
{
    for (size_t k = i; k < p->nlines; k++)
        if (p->lines[k].selectable)
            return k;
    for (size_t k = i < p->nlines ? i : p->nlines; k-- > 0;)
        if (p->lines[k].selectable)
            return k;
    return p->nlines;
}

/* Scroll so that the selection is visible. */
static void ui_pane_follow(struct ui_pane *p)
{
    size_t rows = (size_t)ui_pane_rows(p);

    if (rows == 0)
        return;
    if (p->sel < p->scroll)
        p->scroll = p->sel > 0 && !p->lines[p->sel - 1].selectable ? p->sel - 1 : p->sel;
    if (p->sel >= p->scroll + rows)
        p->scroll = p->sel + 2 - rows < p->nlines ? p->sel + 2 - rows : p->sel + 1 - rows;
    if (p->scroll > p->nlines)
        p->scroll = 0;
}

void ui_pane_rebuild(struct ui_pane *p, struct ui_app *app)
{
    size_t found;

    if (p->ops->stick_top && ui_pane_nearest(p, 0) == p->sel) {
        p->sel = 0;
        p->sel_key = 0; /* at the top: stay there as new lines arrive */
    }
    p->nlines = 0;
    p->ops->build(p, app);
    found = p->nlines; /* "not found" */
    for (size_t i = 0; i < p->nlines && p->sel_key; i++)
        if (p->lines[i].selectable && p->lines[i].key == p->sel_key) {
            found = i;
            break;
        }
    if (found >= p->nlines)
        found = ui_pane_nearest(p, p->sel);
    if (found < p->nlines) {
        p->sel = found;
        p->sel_key = p->lines[found].key;
    } else {
        p->sel = 0;
        p->sel_key = 0;
    }
    ui_pane_follow(p);
    p->dirty = true;
}

void ui_pane_move(struct ui_pane *p, long delta)
{
    size_t i = p->sel, last = p->sel;

    if (p->nlines == 0 || !p->lines[p->sel].selectable)
        return;
    while (delta != 0) {
        size_t k = i;
        do
            k = delta > 0 ? k + 1 : k - 1;
        while (k < p->nlines && !p->lines[k].selectable);
        if (k >= p->nlines)
            break; /* also catches the wrap below 0 */
        i = k;
        last = k;
        delta += delta > 0 ? -1 : 1;
    }
    if (last == p->sel)
        return;
    p->sel = last;
    p->sel_key = p->lines[last].key;
    ui_pane_follow(p);
    p->dirty = true;
}

static void ui_pane_title(struct ui_pane *p, const struct ui_term *term, const struct ui_app *app,
                          bool focused)
{
    char title[UI_LINE_MAX], fitted[UI_LINE_MAX];

    p->ops->title(p, app, title, sizeof(title));
    ui_fit(fitted, sizeof(fitted), title, p->rect.w);
    (void)wattrset(p->win, (int)ui_term_title_attr(term, focused));
    (void)mvwaddstr(p->win, 0, 0, fitted);
}

void ui_pane_draw(struct ui_pane *p, const struct ui_term *term, const struct ui_app *app,
                  bool focused)
{
    int top = p->ops->title ? 1 : 0, rows = ui_pane_rows(p);

    p->dirty = false;
    if (!p->win)
        return;
    (void)werase(p->win);
    if (p->ops->title)
        ui_pane_title(p, term, app, focused);
    for (int r = 0; r < rows && p->scroll + (size_t)r < p->nlines; r++) {
        size_t i = p->scroll + (size_t)r;
        const struct ui_line *l = &p->lines[i];
        bool sel = p->focusable && i == p->sel && l->selectable;
        (void)wattrset(p->win, (int)ui_term_attr(term, l->style, sel, focused));
        (void)mvwaddnstr(p->win, top + r, 0, l->text, -1);
    }
    (void)wattrset(p->win, A_NORMAL);
    (void)wnoutrefresh(p->win);
}
