/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_UI_KEYMAP_H
#define PYSCOPE_UI_KEYMAP_H

/*
 * ui_keymap: the one table of keys. Every key the TUI reacts to is a row {keys, action, help};
 * the event loop looks actions up here, and the `?` screen, `pyscope attach --help` and the
 * README key list (`pyscope attach --keys-markdown`) are all printed from the same rows, so
 * they cannot disagree. Pure data and formatting; key codes are curses' (wgetch values).
 */

#include <stddef.h>
#include <stdio.h>

enum ui_action {
    UI_ACT_NONE,
    UI_ACT_UP,
    UI_ACT_DOWN,
    UI_ACT_PAGE_UP,
    UI_ACT_PAGE_DOWN,
    UI_ACT_NEXT_PANE,
    UI_ACT_PREV_PANE,
    UI_ACT_ENTER,
    UI_ACT_BACK,
    UI_ACT_FILTER,
    UI_ACT_SORT,
    UI_ACT_LINES,
    UI_ACT_PAUSE,
    UI_ACT_RESET,
    UI_ACT_EXCEPTIONS,
    UI_ACT_EXC_FEED,
    UI_ACT_EXC_MINE,
    UI_ACT_LOCALS,
    UI_ACT_GROWTH,
    UI_ACT_TASKS,
    UI_ACT_DUMP,
    UI_ACT_SWITCH,
    UI_ACT_HELP,
    UI_ACT_QUIT,
};

#define UI_KEYMAP_MAX_CODES  4
#define UI_KEYMAP_MAX_LABELS 3

struct ui_keymap_entry {
    int codes[UI_KEYMAP_MAX_CODES];           /* wgetch values; 0 ends the list */
    const char *labels[UI_KEYMAP_MAX_LABELS]; /* how the keys are written; NULL ends */
    enum ui_action action;
    const char *help; /* one line, starts lower case, no final period */
    const char *bar;  /* one word for the key bar, NULL to leave the key off it */
};

/* The action bound to key code `key`, UI_ACT_NONE when unbound. Pure. */
enum ui_action ui_keymap_action(int key);

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
