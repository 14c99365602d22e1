/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_UI_KEYMAP_H
#define PYSCOPE_UI_KEYMAP_H

/*
 * ui_keymap: the one table of keys. Every key the TUI reacts to is a row {keys, labels, action,
 * what it redraws, flags, help, bar word}: the event loop runs a row's action and rebuilds what
 * the row says; adding a key is adding a row (and, for a new action, its function in
 * app_keys.c). The `?` screen, `pyscope attach --help` and the
 * README key list (`pyscope attach --keys-markdown`) are all printed from the same rows, so
 * they cannot disagree. Pure data and formatting; key codes are curses' (wgetch values).
 */

#include <stddef.h>
#include <stdio.h>

#include "layout.h"

struct ui_app;

/*
 * What a key does: change the app's state (app_keys.c defines every action; rows is the focused
 * pane's height, for a page move). Panes whose selection moved mark themselves dirty; the row's
 * redraw says which panes are rebuilt after it.
 */
typedef void (*ui_key_fn)(struct ui_app *app, int rows);

/* The actions the table binds (app_keys.c). */
void ui_act_up(struct ui_app *app, int rows);
void ui_act_down(struct ui_app *app, int rows);
void ui_act_page_up(struct ui_app *app, int rows);
void ui_act_page_down(struct ui_app *app, int rows);
void ui_act_next_pane(struct ui_app *app, int rows);
void ui_act_prev_pane(struct ui_app *app, int rows);
void ui_act_enter(struct ui_app *app, int rows);
void ui_act_back(struct ui_app *app, int rows);
void ui_act_filter(struct ui_app *app, int rows);
void ui_act_sort(struct ui_app *app, int rows);
void ui_act_lines(struct ui_app *app, int rows);
void ui_act_pause(struct ui_app *app, int rows);
void ui_act_reset(struct ui_app *app, int rows);
void ui_act_exceptions(struct ui_app *app, int rows);
void ui_act_exc_feed(struct ui_app *app, int rows);
void ui_act_exc_mine(struct ui_app *app, int rows);
void ui_act_locals(struct ui_app *app, int rows);
void ui_act_growth(struct ui_app *app, int rows);
void ui_act_tasks(struct ui_app *app, int rows);
void ui_act_dump(struct ui_app *app, int rows);
void ui_act_switch(struct ui_app *app, int rows);
void ui_act_help(struct ui_app *app, int rows);
void ui_act_quit(struct ui_app *app, int rows);

/* A row's redraw: the panes rebuilt after its action, bits (1u << UI_AREA_*). */
#define UI_REDRAW_NONE 0u
#define UI_REDRAW_ALL  ((1u << UI_AREA_COUNT) - 1)

/* A row's flags. */
#define UI_KEY_ON_HELP   1u /* taken while the help screen is shown (the screen is modal) */
#define UI_KEY_BAR_FIRST 2u /* first in the key bar: must survive a narrow terminal's cut */

#define UI_KEYMAP_MAX_CODES  4
#define UI_KEYMAP_MAX_LABELS 3

struct ui_keymap_entry {
    int codes[UI_KEYMAP_MAX_CODES];           /* wgetch values; 0 ends the list */
    const char *labels[UI_KEYMAP_MAX_LABELS]; /* how the keys are written; NULL ends */
    ui_key_fn fn;                             /* what the key does */
    unsigned redraw;                          /* UI_REDRAW_*: the panes rebuilt after fn */
    unsigned flags;                           /* UI_KEY_* */
    const char *help;                         /* one line, starts lower case, no final period */
    const char *bar; /* one word for the key bar, NULL to leave the key off it */
};

/* The row bound to key code `key`, NULL when unbound. Pure. */
const struct ui_keymap_entry *ui_keymap_find(int key);

/* Rows in the table, and row i (NULL past the end). Pure. */
size_t ui_keymap_count(void);
const struct ui_keymap_entry *ui_keymap_get(size_t i);

/*
 * Row i as one plain-text line ("  Down, j     move the selection down") into buf (cap bytes,
 * NUL-terminated, truncated); returns buf. The `?` screen and --help print exactly these
 * lines. Pure.
 */
const char *ui_keymap_line(size_t i, char *buf, size_t cap);

/*
 * The key bar: "label word" for every row with a bar word, quit and help first ("? help  q quit
 * Tab pane ..."),
 * into buf (cap bytes, NUL-terminated, truncated); returns buf. Pure.
 */
const char *ui_keymap_bar(char *buf, size_t cap);

/* Print every line of ui_keymap_line to fp. */
void ui_keymap_write_text(FILE *fp);

/* Print the table as a Markdown list ("- `Down`, `j`: move the selection down"), for README. */
void ui_keymap_write_markdown(FILE *fp);

#endif
