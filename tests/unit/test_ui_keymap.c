/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for the key table (ui/keymap.c): every key the issue names is bound to the right
 * action, each row says what it redraws and whether the help screen takes it, no key code is
 * bound twice, every row has a label and help, and the help lines, the
 * key bar and the Markdown list are printed from the same rows.
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

static void test_issue_keys(void **state)
{
    static const struct {
        int key;
        ui_key_fn fn;
    } want[] = {
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

    (void)state;
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const struct ui_keymap_entry *e = ui_keymap_find(want[i].key);

        if (!want[i].fn)
            assert_null(e);
        else
            assert_true(e && e->fn == want[i].fn);
    }
}

/* What a row says it redraws and where it works: toggles and pane changes rebuild every pane,
 * moves only mark what they moved; the help screen takes ?, Esc and q alone. */
static void test_rows_say_what_they_redraw(void **state)
{
    (void)state;
    assert_int_equal(ui_keymap_find('s')->redraw, UI_REDRAW_ALL);
    assert_int_equal(ui_keymap_find('\t')->redraw, UI_REDRAW_ALL);
    assert_int_equal(ui_keymap_find('?')->redraw, UI_REDRAW_ALL);
    assert_int_equal(ui_keymap_find('j')->redraw, UI_REDRAW_NONE);
    assert_int_equal(ui_keymap_find('q')->redraw, UI_REDRAW_NONE);
    for (size_t i = 0; i < ui_keymap_count(); i++) {
        const struct ui_keymap_entry *e = ui_keymap_get(i);
        bool on_help = e->fn == ui_act_help || e->fn == ui_act_back || e->fn == ui_act_quit;

        assert_int_equal((e->flags & UI_KEY_ON_HELP) != 0, on_help);
        assert_int_equal(e->redraw & ~UI_REDRAW_ALL, 0);
    }
}

static void test_no_duplicates_and_complete(void **state)
{
    (void)state;
    assert_true(ui_keymap_count() > 10);
    assert_null(ui_keymap_get(ui_keymap_count()));
    for (size_t i = 0; i < ui_keymap_count(); i++) {
        const struct ui_keymap_entry *e = ui_keymap_get(i);
        assert_non_null(e->labels[0]);
        assert_non_null(e->help);
        assert_true(e->codes[0] != 0);
        assert_non_null(e->fn);
        for (size_t k = 0; k < UI_KEYMAP_MAX_CODES && e->codes[k]; k++)
            for (size_t j = i + 1; j < ui_keymap_count(); j++)
                for (size_t m = 0; m < UI_KEYMAP_MAX_CODES && ui_keymap_get(j)->codes[m]; m++)
                    assert_int_not_equal(e->codes[k], ui_keymap_get(j)->codes[m]);
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
    ui_keymap_bar(bar, sizeof(bar));
    for (size_t i = 0; i < ui_keymap_count(); i++) {
        const struct ui_keymap_entry *e = ui_keymap_get(i);
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
    assert_string_equal(ui_keymap_line(ui_keymap_count(), line, sizeof(line)), "");
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
