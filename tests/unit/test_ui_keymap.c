/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for the key table (ui/keymap.c): every key the issue names is bound to the right
 * action, no key code is bound twice, every row has a label and help, and the help lines, the
 * key bar and the Markdown list are printed from the same rows.
 */
#include <setjmp.h>
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
        enum ui_action act;
    } want[] = {
        {KEY_UP, UI_ACT_UP},  {'k', UI_ACT_UP},          {KEY_DOWN, UI_ACT_DOWN},
        {'j', UI_ACT_DOWN},   {'\t', UI_ACT_NEXT_PANE},  {'\n', UI_ACT_ENTER},
        {'\r', UI_ACT_ENTER}, {KEY_ENTER, UI_ACT_ENTER}, {'/', UI_ACT_FILTER},
        {'s', UI_ACT_SORT},   {'l', UI_ACT_LINES},       {'p', UI_ACT_PAUSE},
        {'r', UI_ACT_RESET},  {'e', UI_ACT_EXCEPTIONS},  {'d', UI_ACT_DUMP},
        {'?', UI_ACT_HELP},   {'q', UI_ACT_QUIT},        {27, UI_ACT_BACK},
        {'v', UI_ACT_LOCALS}, {'x', UI_ACT_NONE},        {0, UI_ACT_NONE},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        assert_int_equal(ui_keymap_action(want[i].key), want[i].act);
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
        assert_int_not_equal(e->action, UI_ACT_NONE);
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
        cmocka_unit_test(test_no_duplicates_and_complete),
        cmocka_unit_test(test_outputs_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
