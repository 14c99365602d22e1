/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for the pane base's selection (ui/pane.c), without a terminal: a fake pane whose
 * build copies the test's keys into lines. The selection follows a line's key across reorders,
 * falls back to the nearest selectable line when its key is gone, moves by selectable lines
 * only, stays at the top of a stick_top pane, and does not jump when the list grows (a pane
 * switched from a short list to a long one once selected line N of the long one).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "app_int.h"
#include "pane.h"

/* The keys the fake build emits; 0 = a heading (not selectable). */
static uint64_t fake_keys[64];
static size_t fake_n;

static void fake_build(struct ui_pane *p, struct ui_app *app)
{
    (void)app;
    for (size_t i = 0; i < fake_n && i < p->cap; i++) {
        (void)snprintf(p->lines[i].text, sizeof(p->lines[i].text), "%llu",
                       (unsigned long long)fake_keys[i]);
        p->lines[i].key = fake_keys[i];
        p->lines[i].selectable = fake_keys[i] != 0;
    }
    p->nlines = fake_n < p->cap ? fake_n : p->cap;
}

static const struct ui_pane_ops fake_ops = {.build = fake_build};
static const struct ui_pane_ops fake_top_ops = {.build = fake_build, .stick_top = true};

static void set_keys(const uint64_t *keys, size_t n)
{
    memcpy(fake_keys, keys, n * sizeof(*keys));
    fake_n = n;
}

static void new_pane(struct ui_pane *p, const struct ui_pane_ops *ops)
{
    struct ps_err err = {0};

    assert_int_equal(ui_pane_init(p, ops, 64, true, &err), 0);
    p->rect = (struct ui_rect){0, 0, 6, 20}; /* a title and 5 rows */
}

static void test_follows_key(void **state)
{
    static const uint64_t a[] = {0, 10, 20, 30, 40}, b[] = {0, 40, 30, 10, 20}, c[] = {0, 40, 20};
    struct ui_pane p;

    (void)state;
    new_pane(&p, &fake_ops);
    set_keys(a, 5);
    ui_pane_rebuild(&p, NULL);
    assert_int_equal(p.sel, 1); /* the heading is skipped */
    ui_pane_move(&p, 2);
    assert_int_equal(p.sel_key, 30);
    set_keys(b, 5); /* reordered: still on 30 */
    ui_pane_rebuild(&p, NULL);
    assert_int_equal(p.sel_key, 30);
    assert_int_equal(p.sel, 2);
    set_keys(c, 3); /* 30 gone: the nearest line at that index */
    ui_pane_rebuild(&p, NULL);
    assert_int_equal(p.sel, 2);
    assert_int_equal(p.sel_key, 20);
    ui_pane_move(&p, -5); /* clamped, never onto the heading */
    assert_int_equal(p.sel, 1);
    ui_pane_free(&p);
}

static void test_growth_does_not_jump(void **state)
{
    uint64_t many[40];
    static const uint64_t few[] = {0, 7};
    struct ui_pane p;

    (void)state;
    for (size_t i = 0; i < 40; i++)
        many[i] = i ? 100 + i : 0;
    new_pane(&p, &fake_ops);
    set_keys(few, 2);
    ui_pane_rebuild(&p, NULL);
    p.sel = 0; /* what switching a pane's view does */
    p.sel_key = 0;
    p.scroll = 0;
    set_keys(many, 40);
    ui_pane_rebuild(&p, NULL);
    assert_int_equal(p.sel, 1);
    assert_int_equal(p.scroll, 0);
    ui_pane_free(&p);
}

static void test_stick_top(void **state)
{
    static const uint64_t a[] = {0, 5, 4, 3}, b[] = {0, 6, 5, 4, 3};
    struct ui_pane p;

    (void)state;
    new_pane(&p, &fake_top_ops);
    set_keys(a, 4);
    ui_pane_rebuild(&p, NULL);
    assert_int_equal(p.sel_key, 5);
    set_keys(b, 5); /* a newer line arrives on top: the selection stays on top */
    ui_pane_rebuild(&p, NULL);
    assert_int_equal(p.sel, 1);
    assert_int_equal(p.sel_key, 6);
    ui_pane_move(&p, 1); /* moved away from the top: it follows its line again */
    set_keys(a, 4);
    ui_pane_rebuild(&p, NULL);
    assert_int_equal(p.sel_key, 5);
    assert_int_equal(p.sel, 1);
    ui_pane_free(&p);
}

static void test_scroll_follows_selection(void **state)
{
    uint64_t many[30];
    struct ui_pane p;

    (void)state;
    for (size_t i = 0; i < 30; i++)
        many[i] = i + 1;
    new_pane(&p, &fake_ops);
    set_keys(many, 30);
    ui_pane_rebuild(&p, NULL);
    ui_pane_move(&p, 12);
    assert_int_equal(p.sel, 12);
    assert_true(p.scroll <= 12 && 12 < p.scroll + (size_t)ui_pane_rows(&p));
    ui_pane_move(&p, -12);
    assert_int_equal(p.scroll, 0);
    ui_pane_free(&p);
    ui_pane_free(&p); /* idempotent */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_follows_key),
        cmocka_unit_test(test_growth_does_not_jump),
        cmocka_unit_test(test_stick_top),
        cmocka_unit_test(test_scroll_follows_selection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
