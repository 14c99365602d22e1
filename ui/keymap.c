/* SPDX-License-Identifier: MIT */
/*
 * The key table (see keymap.h). htop's habit: keys map to actions, actions are handled by the
 * loop, and the help text sits next to the binding so that documentation follows the code.
 * Adding a key is adding one row here; the `?` screen, --help and the README list follow.
 */
#include "keymap.h"

#include <curses.h>
#include <string.h>

/* Esc, Tab and the two Enters as wgetch returns them in cbreak mode. */
#define UI_KEY_ESC 27
#define UI_KEY_TAB '\t'

static const struct ui_keymap_entry ui_keys[] = {
    {{KEY_UP, 'k'}, {"Up", "k"}, UI_ACT_UP, "move the selection up", NULL},
    {{KEY_DOWN, 'j'}, {"Down", "j"}, UI_ACT_DOWN, "move the selection down", NULL},
    {{KEY_PPAGE}, {"PgUp"}, UI_ACT_PAGE_UP, "move the selection up a page", NULL},
    {{KEY_NPAGE}, {"PgDn"}, UI_ACT_PAGE_DOWN, "move the selection down a page", NULL},
    {{UI_KEY_TAB}, {"Tab"}, UI_ACT_NEXT_PANE, "focus the next pane", "pane"},
    {{KEY_BTAB}, {"Shift-Tab"}, UI_ACT_PREV_PANE, "focus the previous pane", NULL},
    {{'\n', '\r', KEY_ENTER},
     {"Enter"},
     UI_ACT_ENTER,
     "drill in: a thread's stack, or the stack of the selected raise",
     "open"},
    {{UI_KEY_ESC},
     {"Esc"},
     UI_ACT_BACK,
     "back: close the help, the filter or a raise's stack",
     NULL},
    {{'/'},
     {"/"},
     UI_ACT_FILTER,
     "filter the focused pane (exceptions, else the top table) by name or file",
     "filter"},
    {{'s'}, {"s"}, UI_ACT_SORT, "sort the top table by own or by total samples", "sort"},
    {{'l'}, {"l"}, UI_ACT_LINES, "top table by function or by line", "lines"},
    {{'p'}, {"p"}, UI_ACT_PAUSE, "pause or resume updates (the target keeps running)", "pause"},
    {{'r'}, {"r"}, UI_ACT_RESET, "reset the top table and the exception counts", "reset"},
    {{'e'}, {"e"}, UI_ACT_EXCEPTIONS, "exception tracing on or off", "exceptions"},
    {{'f'},
     {"f"},
     UI_ACT_EXC_FEED,
     "exceptions: one row per raise site, or the raw newest-first feed",
     "feed"},
    {{'m'},
     {"m"},
     UI_ACT_EXC_MINE,
     "exceptions: my code only (hide stdlib/site-packages-only raises), or all",
     "mine"},
    {{'v'}, {"v"}, UI_ACT_LOCALS, "show or hide local variables in the stack pane", "locals"},
    {{'g'},
     {"g"},
     UI_ACT_GROWTH,
     "growing containers (leaks) in the exceptions pane's place, or back",
     "growth"},
    {{'t'}, {"t"}, UI_ACT_TASKS, "asyncio tasks in the exceptions pane's place, or back", "tasks"},
    {{'d'}, {"d"}, UI_ACT_DUMP, "write a JSON snapshot (as pyscope dump --json) to a file", "dump"},
    {{'w'},
     {"w"},
     UI_ACT_SWITCH,
     "switch process: the master, then each of its Python workers, in turn",
     NULL},
    {{'?', 'h'}, {"?", "h"}, UI_ACT_HELP, "show or hide this help", "help"},
    {{'q', 'Q'}, {"q"}, UI_ACT_QUIT, "quit (the target keeps running, untouched)", "quit"},
};

#define UI_NKEYS (sizeof(ui_keys) / sizeof(ui_keys[0]))

enum ui_action ui_keymap_action(int key)
{
    for (size_t i = 0; i < UI_NKEYS; i++)
        for (size_t k = 0; k < UI_KEYMAP_MAX_CODES && ui_keys[i].codes[k]; k++)
            if (ui_keys[i].codes[k] == key)
                return ui_keys[i].action;
    return UI_ACT_NONE;
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
    return e->action == UI_ACT_QUIT || e->action == UI_ACT_HELP;
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
