/* SPDX-License-Identifier: MIT */
/*
 * The key tables (see keymap.h). htop's habit: a key's row holds its action and the reaction
 * (what to redraw), the loop owns the timing, and the help text sits next to the binding so
 * that documentation follows the code. Adding a key is adding one row here; the `?` screen,
 * --help, the key bar and the README list follow. One table per mode: the panes', and the
 * filter line's (a small modal editor: while it is open, printable keys go into the filter).
 */
#include "keymap.h"

#include <curses.h>
#include <string.h>

/* Esc, Tab and the two erase keys (DEL, ^H) as wgetch returns them in cbreak mode. */
#define UI_KEY_ESC 27
#define UI_KEY_TAB '\t'
#define UI_KEY_DEL 127
#define UI_KEY_BS  8

/* The modal help screen takes ?, Esc and q only; quit and help lead the key bar. */
#define UI_HELP_KEY (UI_KEY_ON_HELP | UI_KEY_BAR_FIRST)
#define ALL         UI_REDRAW_ALL
#define SELF        UI_REDRAW_NONE /* only a selection moves: the pane marks itself */
/* The stack pane follows the selected thread (ui_app_selected_tid). */
#define STACK UI_REDRAW(UI_AREA_STACK)
/* A note in the key bar (ui_app_note). */
#define NOTE UI_REDRAW(UI_AREA_KEYBAR)
/* The filter line: the filtered (focused) pane and the key bar that shows the line. */
#define FILTER (UI_REDRAW_FOCUSED | UI_REDRAW(UI_AREA_KEYBAR))

static const struct ui_keymap_entry ui_keys_panes[] = {
    {{KEY_UP, 'k'}, {"Up", "k"}, ui_act_up, STACK, 0, "move the selection up", NULL},
    {{KEY_DOWN, 'j'}, {"Down", "j"}, ui_act_down, STACK, 0, "move the selection down", NULL},
    {{KEY_PPAGE}, {"PgUp"}, ui_act_page_up, STACK, 0, "move the selection up a page", NULL},
    {{KEY_NPAGE}, {"PgDn"}, ui_act_page_down, STACK, 0, "move the selection down a page", NULL},
    {{UI_KEY_TAB}, {"Tab"}, ui_act_next_pane, ALL, 0, "focus the next pane", "pane"},
    {{KEY_BTAB}, {"Shift-Tab"}, ui_act_prev_pane, ALL, 0, "focus the previous pane", NULL},
    {{'\n', '\r', KEY_ENTER},
     {"Enter"},
     ui_act_enter,
     ALL,
     0,
     "drill in: a thread's stack, or the stack of the selected raise",
     "open"},
    {{UI_KEY_ESC},
     {"Esc"},
     ui_act_back,
     ALL | UI_REDRAW_SCREEN,
     UI_KEY_ON_HELP,
     "back: close the help, the filter or a raise's stack",
     NULL},
    {{'/'},
     {"/"},
     ui_act_filter,
     ALL,
     0,
     "filter the focused pane (exceptions, else the top table) by name or file",
     "filter"},
    {{'s'}, {"s"}, ui_act_sort, ALL, 0, "sort the top table by own or by total samples", "sort"},
    {{'l'}, {"l"}, ui_act_lines, ALL, 0, "top table by function or by line", "lines"},
    {{'p'},
     {"p"},
     ui_act_pause,
     ALL,
     0,
     "pause or resume updates (the target keeps running)",
     "pause"},
    {{'r'}, {"r"}, ui_act_reset, ALL, 0, "reset the top table and the exception counts", "reset"},
    {{'e'}, {"e"}, ui_act_exceptions, ALL, 0, "exception tracing on or off", "exceptions"},
    {{'f'},
     {"f"},
     ui_act_exc_feed,
     ALL,
     0,
     "exceptions: one row per raise site, or the raw newest-first feed",
     "feed"},
    {{'m'},
     {"m"},
     ui_act_exc_mine,
     ALL,
     0,
     "exceptions: my code only (hide stdlib/site-packages-only raises), or all",
     "mine"},
    {{'v'},
     {"v"},
     ui_act_locals,
     ALL,
     0,
     "show or hide local variables in the stack pane",
     "locals"},
    {{'g'},
     {"g"},
     ui_act_growth,
     ALL,
     0,
     "growing containers (leaks) in the exceptions pane's place, or back",
     "growth"},
    {{'t'},
     {"t"},
     ui_act_tasks,
     ALL,
     0,
     "asyncio tasks in the exceptions pane's place, or back",
     "tasks"},
    {{'d'},
     {"d"},
     ui_act_dump,
     NOTE,
     0,
     "write a JSON snapshot (as pyscope dump --json) to a file",
     "dump"},
    {{'w'},
     {"w"},
     ui_act_switch,
     NOTE,
     0,
     "switch process: the master, then each of its Python workers, in turn",
     NULL},
    {{'?', 'h'},
     {"?", "h"},
     ui_act_help,
     ALL | UI_REDRAW_SCREEN,
     UI_HELP_KEY,
     "show or hide this help",
     "help"},
    {{'q', 'Q'},
     {"q"},
     ui_act_quit,
     SELF,
     UI_HELP_KEY,
     "quit (the target keeps running, untouched)",
     "quit"},
};

/* The filter line's keys: the key bar shows the words while it is open. */
static const struct ui_keymap_entry ui_keys_filter[] = {
    {{'\n', '\r', KEY_ENTER}, {"Enter"}, ui_act_filter_keep, FILTER, 0, "keep the filter", "keeps"},
    {{UI_KEY_ESC}, {"Esc"}, ui_act_filter_clear, FILTER, 0, "clear the filter", "clears"},
    {{KEY_BACKSPACE, UI_KEY_DEL, UI_KEY_BS},
     {"Backspace"},
     ui_act_filter_erase,
     FILTER,
     0,
     "erase the last character",
     NULL},
    {{UI_KEY_PRINTABLE}, {"a-z", "0-9", "..."}, ui_act_filter_type, FILTER, 0, "type", NULL},
};

#define UI_NKEYS(t) (sizeof(t) / sizeof((t)[0]))

static const struct {
    const struct ui_keymap_entry *rows;
    size_t n;
} ui_modes[UI_MODE_COUNT] = {
    [UI_MODE_PANES] = {ui_keys_panes, UI_NKEYS(ui_keys_panes)},
    [UI_MODE_FILTER] = {ui_keys_filter, UI_NKEYS(ui_keys_filter)},
};

static bool ui_keymap_matches(int code, int key)
{
    return code == key || (code == UI_KEY_PRINTABLE && key >= 0x20 && key < 0x7f);
}

const struct ui_keymap_entry *ui_keymap_find(enum ui_key_mode mode, int key)
{
    const struct ui_keymap_entry *rows = ui_modes[mode].rows;

    for (size_t i = 0; i < ui_modes[mode].n; i++)
        for (size_t k = 0; k < UI_KEYMAP_MAX_CODES && rows[i].codes[k]; k++)
            if (ui_keymap_matches(rows[i].codes[k], key))
                return &rows[i];
    return NULL;
}

size_t ui_keymap_count(enum ui_key_mode mode)
{
    return ui_modes[mode].n;
}

const struct ui_keymap_entry *ui_keymap_get(enum ui_key_mode mode, size_t i)
{
    return i < ui_modes[mode].n ? &ui_modes[mode].rows[i] : NULL;
}

/* The labels of row e joined by ", " (and wrapped in backticks for Markdown). */
static void ui_keymap_labels(const struct ui_keymap_entry *e, const char *quote, char *buf,
                             size_t cap)
{
    size_t used = 0;

    buf[0] = '\0';
    for (size_t k = 0; k < UI_KEYMAP_MAX_LABELS && e->labels[k] && used < cap; k++) {
        int n =
            snprintf(buf + used, cap - used, "%s%s%s%s", k ? ", " : "", quote, e->labels[k], quote);
        if (n < 0)
            break;
        used += (size_t)n;
    }
}

const char *ui_keymap_line(size_t i, char *buf, size_t cap)
{
    char keys[64];

    if (cap == 0)
        return buf;
    buf[0] = '\0';
    if (i >= UI_NKEYS(ui_keys_panes))
        return buf;
    ui_keymap_labels(&ui_keys_panes[i], "", keys, sizeof(keys));
    (void)snprintf(buf, cap, "  %-11s %s", keys, ui_keys_panes[i].help);
    return buf;
}

/* The key bar lists quit and help first: they must survive a narrow terminal's cut. */
static bool ui_keymap_bar_first(const struct ui_keymap_entry *e)
{
    return (e->flags & UI_KEY_BAR_FIRST) != 0;
}

const char *ui_keymap_bar(enum ui_key_mode mode, const char *sep, char *buf, size_t cap)
{
    const struct ui_keymap_entry *rows = ui_modes[mode].rows;
    size_t n = ui_modes[mode].n, used = 0;

    if (cap == 0)
        return buf;
    buf[0] = '\0';
    for (size_t k = 0; n > 0 && k < 2 * n && used < cap; k++) {
        size_t i = k % n;
        int w;
        if (!rows[i].bar || ui_keymap_bar_first(&rows[i]) != (k < n))
            continue;
        w = snprintf(buf + used, cap - used, "%s%s %s", used ? sep : "", rows[i].labels[0],
                     rows[i].bar);
        if (w < 0)
            break;
        used += (size_t)w;
    }
    return buf;
}

void ui_keymap_write_text(FILE *fp)
{
    char line[256];

    for (size_t i = 0; i < UI_NKEYS(ui_keys_panes); i++)
        (void)fprintf(fp, "%s\n", ui_keymap_line(i, line, sizeof(line)));
}

void ui_keymap_write_markdown(FILE *fp)
{
    char keys[96];

    for (size_t i = 0; i < UI_NKEYS(ui_keys_panes); i++) {
        ui_keymap_labels(&ui_keys_panes[i], "`", keys, sizeof(keys));
        (void)fprintf(fp, "- %s: %s\n", keys, ui_keys_panes[i].help);
    }
}
