/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_UI_KEYMAP_H
#define PYSCOPE_UI_KEYMAP_H

/*
 * ui_keymap: the one table of keys. Every key the TUI reacts to is a row {keys, labels, action,
 * what it redraws, flags, help, bar word} of its mode's table: the event loop looks a key up in
 * the mode the app is in (the panes, or the open filter line), runs the row's action and
 * rebuilds what the row says, nothing else; actions never rebuild a pane themselves. Adding a
 * key is adding a row (and, for a new action, its function in app_keys.c and its prototype
 * here). The `?` screen, `pyscope attach --help` and the README key list
 * (`pyscope attach --keys-markdown`) are printed from the panes' rows, the key bar from either
 * mode's rows, so they cannot disagree. Pure data and formatting; key codes are curses' (wgetch
 * values).
 */

#include <stddef.h>
#include <stdio.h>

#include "layout.h"

struct ui_app;

/* Which table a key is looked up in. */
enum ui_key_mode {
    UI_MODE_PANES,  /* the panes (and the modal help screen: rows flagged UI_KEY_ON_HELP) */
    UI_MODE_FILTER, /* the filter line is open (`/`): keys edit it */
    UI_MODE_COUNT,
};

/* The key an action runs for: its code (wgetch value) and the focused pane's height (rows,
 * for a page move). */
struct ui_key_in {
    int code;
    int rows;
};

/*
 * What a key does: change the app's state (app_keys.c defines every action). A pane whose
 * selection moved marks itself dirty (ui_pane_move); everything else the action changed is
 * rebuilt from its row's redraw.
 */
typedef void (*ui_key_fn)(struct ui_app *app, const struct ui_key_in *in);

/* The actions the table binds (app_keys.c). */
void ui_act_up(struct ui_app *app, const struct ui_key_in *in);
void ui_act_down(struct ui_app *app, const struct ui_key_in *in);
void ui_act_page_up(struct ui_app *app, const struct ui_key_in *in);
void ui_act_page_down(struct ui_app *app, const struct ui_key_in *in);
void ui_act_next_pane(struct ui_app *app, const struct ui_key_in *in);
void ui_act_prev_pane(struct ui_app *app, const struct ui_key_in *in);
void ui_act_enter(struct ui_app *app, const struct ui_key_in *in);
void ui_act_back(struct ui_app *app, const struct ui_key_in *in);
void ui_act_filter(struct ui_app *app, const struct ui_key_in *in);
void ui_act_sort(struct ui_app *app, const struct ui_key_in *in);
void ui_act_lines(struct ui_app *app, const struct ui_key_in *in);
void ui_act_pause(struct ui_app *app, const struct ui_key_in *in);
void ui_act_reset(struct ui_app *app, const struct ui_key_in *in);
void ui_act_exceptions(struct ui_app *app, const struct ui_key_in *in);
void ui_act_exc_feed(struct ui_app *app, const struct ui_key_in *in);
void ui_act_exc_mine(struct ui_app *app, const struct ui_key_in *in);
void ui_act_locals(struct ui_app *app, const struct ui_key_in *in);
void ui_act_growth(struct ui_app *app, const struct ui_key_in *in);
void ui_act_tasks(struct ui_app *app, const struct ui_key_in *in);
void ui_act_dump(struct ui_app *app, const struct ui_key_in *in);
void ui_act_switch(struct ui_app *app, const struct ui_key_in *in);
void ui_act_help(struct ui_app *app, const struct ui_key_in *in);
void ui_act_quit(struct ui_app *app, const struct ui_key_in *in);
/* The filter line's actions (UI_MODE_FILTER). */
void ui_act_filter_keep(struct ui_app *app, const struct ui_key_in *in);
void ui_act_filter_clear(struct ui_app *app, const struct ui_key_in *in);
void ui_act_filter_erase(struct ui_app *app, const struct ui_key_in *in);
void ui_act_filter_type(struct ui_app *app, const struct ui_key_in *in);

/*
 * A row's redraw: the panes rebuilt after its action, bits UI_REDRAW(UI_AREA_*), plus the
 * focused pane (as the action left the focus) and the whole screen (the help screen opened or
 * closed: every pane repainted, nothing diffed).
 */
#define UI_REDRAW(area)   (1u << (area))
#define UI_REDRAW_NONE    0u
#define UI_REDRAW_ALL     ((1u << UI_AREA_COUNT) - 1)
#define UI_REDRAW_FOCUSED (1u << UI_AREA_COUNT)
#define UI_REDRAW_SCREEN  (1u << (UI_AREA_COUNT + 1))

/* A code that stands for every printable ASCII key (0x20..0x7e) in a row's codes. */
#define UI_KEY_PRINTABLE (-1)

/* A row's flags. */
#define UI_KEY_ON_HELP   1u /* taken while the help screen is shown (the screen is modal) */
#define UI_KEY_BAR_FIRST 2u /* first in the key bar: must survive a narrow terminal's cut */

#define UI_KEYMAP_MAX_CODES  4
#define UI_KEYMAP_MAX_LABELS 3

struct ui_keymap_entry {
    int codes[UI_KEYMAP_MAX_CODES];           /* wgetch values, UI_KEY_PRINTABLE; 0 ends */
    const char *labels[UI_KEYMAP_MAX_LABELS]; /* how the keys are written; NULL ends */
    ui_key_fn fn;                             /* what the key does */
    unsigned redraw;                          /* UI_REDRAW_*: the panes rebuilt after fn */
    unsigned flags;                           /* UI_KEY_* */
    const char *help;                         /* one line, starts lower case, no final period */
    const char *bar; /* one word for the key bar, NULL to leave the key off it */
};

/* The row of mode's table bound to key code `key`, NULL when unbound. Pure. */
const struct ui_keymap_entry *ui_keymap_find(enum ui_key_mode mode, int key);

/* Rows in mode's table, and row i (NULL past the end). Pure. */
size_t ui_keymap_count(enum ui_key_mode mode);
const struct ui_keymap_entry *ui_keymap_get(enum ui_key_mode mode, size_t i);

/*
 * Row i of the panes' table as one plain-text line ("  Down, j     move the selection down")
 * into buf (cap bytes, NUL-terminated, truncated); returns buf. The `?` screen and --help print
 * exactly these lines. Pure.
 */
const char *ui_keymap_line(size_t i, char *buf, size_t cap);

/*
 * The key bar of a mode: "label word" for every row with a bar word, rows flagged
 * UI_KEY_BAR_FIRST first ("? help  q quit  Tab pane ..." with sep "  "; the filter line's
 * "Enter keeps, Esc clears" with sep ", "), into buf (cap bytes, NUL-terminated, truncated);
 * returns buf. Pure.
 */
const char *ui_keymap_bar(enum ui_key_mode mode, const char *sep, char *buf, size_t cap);

/* Print every line of ui_keymap_line (the panes' table) to fp. */
void ui_keymap_write_text(FILE *fp);

/* Print the panes' table as a Markdown list ("- `Down`, `j`: move the selection down"), for README. */
void ui_keymap_write_markdown(FILE *fp);

#endif
