/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for the key tables (ui/keymap.c): every key the issue names is bound to the right
 * action in its mode, each row says what it redraws and whether the help screen takes it, no
 * key code is bound twice in a mode, every row has a label and help, and the help lines, the
 * key bars and the Markdown list are printed from the same rows.
 */
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <curses.h>

#include "keymap.h"

/* A key and the action it must run in a mode (NULL: unbound there). */
struct binding {
    int key;
    ui_key_fn fn;
};

static void check_bindings(enum ui_key_mode mode, const struct binding *want, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct ui_keymap_entry *e = ui_keymap_find(mode, want[i].key);

        if (!want[i].fn)
            assert_null(e);
        else
            assert_true(e && e->fn == want[i].fn);
    }
}

static void test_issue_keys(void **state)
{
    static const struct binding want[] = {
        {KEY_UP, ui_act_up},
        {'k', ui_act_up},
        {KEY_DOWN, ui_act_down},
        {'j', ui_act_down},
        {'\t', ui_act_next_pane},
        {'\n', ui_act_enter},
        {'\r', ui_act_enter},
        {KEY_ENTER, ui_act_enter},
        {'/', ui_act_filter},
        {'s', ui_act_sort},
        {'l', ui_act_lines},
        {'p', ui_act_pause},
        {'r', ui_act_reset},
        {'e', ui_act_exceptions},
        {'d', ui_act_dump},
        {'?', ui_act_help},
        {'q', ui_act_quit},
        {27, ui_act_back},
        {'v', ui_act_locals},
        {'x', NULL},
        {0, NULL},
    };
    /* The open filter line: every printable key is typed, Enter keeps, Esc clears, the three
     * erase codes erase; other keys (arrows, function keys) do nothing. */
    static const struct binding filter[] = {
        {'\n', ui_act_filter_keep},
        {'\r', ui_act_filter_keep},
        {KEY_ENTER, ui_act_filter_keep},
        {27, ui_act_filter_clear},
        {KEY_BACKSPACE, ui_act_filter_erase},
        {127, ui_act_filter_erase},
        {8, ui_act_filter_erase},
        {' ', ui_act_filter_type},
        {'q', ui_act_filter_type},
        {'/', ui_act_filter_type},
        {'~', ui_act_filter_type},
        {KEY_UP, NULL},
        {0x1f, NULL},
        {KEY_RESIZE, NULL},
    };

    (void)state;
    check_bindings(UI_MODE_PANES, want, sizeof(want) / sizeof(want[0]));
    check_bindings(UI_MODE_FILTER, filter, sizeof(filter) / sizeof(filter[0]));
    assert_null(ui_keymap_find(UI_MODE_PANES, KEY_RESIZE)); /* the SIGWINCH source resizes */
}

/* What a row says it redraws and where it works: toggles and pane changes rebuild every pane,
 * moves the stack pane that follows the thread, the help key and Esc the whole screen, the
 * filter line's keys the filtered pane and the key bar; the help screen takes ?, Esc and q
 * alone. */
static void test_rows_say_what_they_redraw(void **state)
{
    const unsigned known = UI_REDRAW_ALL | UI_REDRAW_FOCUSED | UI_REDRAW_SCREEN;

    (void)state;
    assert_int_equal(ui_keymap_find(UI_MODE_PANES, 's')->redraw, UI_REDRAW_ALL);
    assert_int_equal(ui_keymap_find(UI_MODE_PANES, '\t')->redraw, UI_REDRAW_ALL);
    assert_int_equal(ui_keymap_find(UI_MODE_PANES, '?')->redraw, UI_REDRAW_ALL | UI_REDRAW_SCREEN);
    assert_int_equal(ui_keymap_find(UI_MODE_PANES, 27)->redraw, UI_REDRAW_ALL | UI_REDRAW_SCREEN);
    assert_int_equal(ui_keymap_find(UI_MODE_PANES, 'j')->redraw, UI_REDRAW(UI_AREA_STACK));
    assert_int_equal(ui_keymap_find(UI_MODE_PANES, 'd')->redraw, UI_REDRAW(UI_AREA_KEYBAR));
    assert_int_equal(ui_keymap_find(UI_MODE_PANES, 'q')->redraw, UI_REDRAW_NONE);
    for (int m = 0; m < UI_MODE_COUNT; m++)
        for (size_t i = 0; i < ui_keymap_count((enum ui_key_mode)m); i++) {
            const struct ui_keymap_entry *e = ui_keymap_get((enum ui_key_mode)m, i);
            bool on_help = e->fn == ui_act_help || e->fn == ui_act_back || e->fn == ui_act_quit;

            assert_int_equal((e->flags & UI_KEY_ON_HELP) != 0, on_help);
            assert_int_equal(e->redraw & ~known, 0);
            if (m == UI_MODE_FILTER)
                assert_int_equal(e->redraw, UI_REDRAW_FOCUSED | UI_REDRAW(UI_AREA_KEYBAR));
        }
}

static void test_no_duplicates_and_complete(void **state)
{
    (void)state;
    assert_true(ui_keymap_count(UI_MODE_PANES) > 10);
    assert_int_equal(ui_keymap_count(UI_MODE_FILTER), 4);
    for (int m = 0; m < UI_MODE_COUNT; m++) {
        enum ui_key_mode mode = (enum ui_key_mode)m;

        assert_null(ui_keymap_get(mode, ui_keymap_count(mode)));
        for (size_t i = 0; i < ui_keymap_count(mode); i++) {
            const struct ui_keymap_entry *e = ui_keymap_get(mode, i);
            assert_non_null(e->labels[0]);
            assert_non_null(e->help);
            assert_true(e->codes[0] != 0);
            assert_non_null(e->fn);
            for (size_t k = 0; k < UI_KEYMAP_MAX_CODES && e->codes[k]; k++)
                for (size_t j = i + 1; j < ui_keymap_count(mode); j++)
                    for (size_t n = 0; n < UI_KEYMAP_MAX_CODES && ui_keymap_get(mode, j)->codes[n];
                         n++)
                        assert_int_not_equal(e->codes[k], ui_keymap_get(mode, j)->codes[n]);
        }
    }
}

/* Read a whole memstream-written text. */
static char *capture(void (*fn)(FILE *))
{
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);

    assert_non_null(fp);
    fn(fp);
    assert_int_equal(fclose(fp), 0);
    return buf;
}

static void test_outputs_agree(void **state)
{
    char *text = capture(ui_keymap_write_text);
    char *md = capture(ui_keymap_write_markdown);
    char line[256], bar[1024];

    (void)state;
    ui_keymap_bar(UI_MODE_PANES, "  ", bar, sizeof(bar));
    for (size_t i = 0; i < ui_keymap_count(UI_MODE_PANES); i++) {
        const struct ui_keymap_entry *e = ui_keymap_get(UI_MODE_PANES, i);
        char md_line[256];
        ui_keymap_line(i, line, sizeof(line));
        assert_non_null(strstr(line, e->help));
        assert_non_null(strstr(text, line));
        (void)snprintf(md_line, sizeof(md_line), "`%s`", e->labels[0]);
        assert_non_null(strstr(md, md_line));
        assert_non_null(strstr(md, e->help));
        if (e->bar)
            assert_non_null(strstr(bar, e->bar));
    }
    assert_string_equal(ui_keymap_line(ui_keymap_count(UI_MODE_PANES), line, sizeof(line)), "");
    assert_true(strncmp(bar, "? help  q quit  Tab pane", 24) == 0);
    assert_string_equal(ui_keymap_bar(UI_MODE_FILTER, ", ", bar, sizeof(bar)),
                        "Enter keeps, Esc clears");
    assert_non_null(strstr(md, "- `Down`, `j`: move the selection down\n"));
    free(text);
    free(md);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_issue_keys),
        cmocka_unit_test(test_rows_say_what_they_redraw),
        cmocka_unit_test(test_no_duplicates_and_complete),
        cmocka_unit_test(test_outputs_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
