/* SPDX-License-Identifier: MIT */
/*
 * The key table (see keymap.h). htop's habit: a key's row holds its action and the reaction
 * (what to redraw), the loop owns the timing, and the help text sits next to the binding so
 * that documentation follows the code. Adding a key is adding one row here; the `?` screen,
 * --help, the key bar and the README list follow.
 */
#include "keymap.h"

#include <curses.h>
#include <string.h>

/* Esc, Tab and the two Enters as wgetch returns them in cbreak mode. */
#define UI_KEY_ESC 27
#define UI_KEY_TAB '\t'

/* The modal help screen takes ?, Esc and q only; quit and help lead the key bar. */
#define UI_HELP_KEY (UI_KEY_ON_HELP | UI_KEY_BAR_FIRST)
#define ALL         UI_REDRAW_ALL
#define SELF        UI_REDRAW_NONE /* the action marks what it changed */

static const struct ui_keymap_entry ui_keys[] = {
    {{KEY_UP, 'k'}, {"Up", "k"}, ui_act_up, SELF, 0, "move the selection up", NULL},
    {{KEY_DOWN, 'j'}, {"Down", "j"}, ui_act_down, SELF, 0, "move the selection down", NULL},
    {{KEY_PPAGE}, {"PgUp"}, ui_act_page_up, SELF, 0, "move the selection up a page", NULL},
    {{KEY_NPAGE}, {"PgDn"}, ui_act_page_down, SELF, 0, "move the selection down a page", NULL},
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
     ALL,
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
     SELF,
     0,
     "write a JSON snapshot (as pyscope dump --json) to a file",
     "dump"},
    {{'w'},
     {"w"},
     ui_act_switch,
     SELF,
     0,
     "switch process: the master, then each of its Python workers, in turn",
     NULL},
    {{'?', 'h'}, {"?", "h"}, ui_act_help, ALL, UI_HELP_KEY, "show or hide this help", "help"},
    {{'q', 'Q'},
     {"q"},
     ui_act_quit,
     SELF,
     UI_HELP_KEY,
     "quit (the target keeps running, untouched)",
     "quit"},
};

#define UI_NKEYS (sizeof(ui_keys) / sizeof(ui_keys[0]))

const struct ui_keymap_entry *ui_keymap_find(int key)
{
    for (size_t i = 0; i < UI_NKEYS; i++)
        for (size_t k = 0; k < UI_KEYMAP_MAX_CODES && ui_keys[i].codes[k]; k++)
            if (ui_keys[i].codes[k] == key)
                return &ui_keys[i];
    return NULL;
}

size_t ui_keymap_count(void)
{
    return UI_NKEYS;
}

const struct ui_keymap_entry *ui_keymap_get(size_t i)
{
    return i < UI_NKEYS ? &ui_keys[i] : NULL;
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
    if (i >= UI_NKEYS)
        return buf;
    ui_keymap_labels(&ui_keys[i], "", keys, sizeof(keys));
    (void)snprintf(buf, cap, "  %-11s %s", keys, ui_keys[i].help);
    return buf;
}

/* The key bar lists quit and help first: they must survive a narrow terminal's cut. */
static bool ui_keymap_bar_first(const struct ui_keymap_entry *e)
{
    return (e->flags & UI_KEY_BAR_FIRST) != 0;
}

const char *ui_keymap_bar(char *buf, size_t cap)
{
    size_t used = 0;

    if (cap == 0)
        return buf;
    buf[0] = '\0';
    for (size_t k = 0; k < 2 * UI_NKEYS && used < cap; k++) {
        size_t i = k % UI_NKEYS;
        int n;
        if (!ui_keys[i].bar || ui_keymap_bar_first(&ui_keys[i]) != (k < UI_NKEYS))
            continue;
        n = snprintf(buf + used, cap - used, "%s%s %s", used ? "  " : "", ui_keys[i].labels[0],
                     ui_keys[i].bar);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    return buf;
}

void ui_keymap_write_text(FILE *fp)
{
    char line[256];

    for (size_t i = 0; i < UI_NKEYS; i++)
        (void)fprintf(fp, "%s\n", ui_keymap_line(i, line, sizeof(line)));
}

void ui_keymap_write_markdown(FILE *fp)
{
    char keys[96];

    for (size_t i = 0; i < UI_NKEYS; i++) {
        ui_keymap_labels(&ui_keys[i], "`", keys, sizeof(keys));
        (void)fprintf(fp, "- %s: %s\n", keys, ui_keys[i].help);
    }
}
