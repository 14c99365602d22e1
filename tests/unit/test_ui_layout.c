/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for the TUI's screen geometry (ui/layout.c): at every size from the minimum to a
 * large terminal, the areas lie inside the screen, do not overlap, and cover every cell
 * exactly once; the classic 80x24 gives the panes room; below the minimum the layout says so.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "layout.h"

/* Paint every area into a grid and check each cell is painted exactly once. */
static void check_tiling(int rows, int cols)
{
    struct ui_layout l;
    unsigned char *grid = calloc((size_t)rows * (size_t)cols, 1);

    assert_non_null(grid);
    ui_layout_compute(rows, cols, &l);
    assert_false(l.too_small);
    for (int a = 0; a < UI_AREA_COUNT; a++) {
        struct ui_rect r = l.area[a];
        assert_true(r.h > 0 && r.w > 0);
        assert_true(r.y >= 0 && r.x >= 0 && r.y + r.h <= rows && r.x + r.w <= cols);
        for (int y = r.y; y < r.y + r.h; y++)
            for (int x = r.x; x < r.x + r.w; x++)
                grid[(size_t)y * (size_t)cols + (size_t)x]++;
    }
    for (size_t i = 0; i < (size_t)rows * (size_t)cols; i++)
        assert_int_equal(grid[i], 1);
    free(grid);
}

static void test_tiles_every_size(void **state)
{
    (void)state;
    for (int rows = UI_MIN_ROWS; rows <= 80; rows += 3)
        for (int cols = UI_MIN_COLS; cols <= 300; cols += 7)
            check_tiling(rows, cols);
    check_tiling(UI_MIN_ROWS, UI_MIN_COLS);
}

static void test_80x24(void **state)
{
    struct ui_layout l;

    (void)state;
    ui_layout_compute(24, 80, &l);
    assert_false(l.too_small);
    assert_int_equal(l.area[UI_AREA_HEADER].h, UI_HEADER_H);
    assert_int_equal(l.area[UI_AREA_KEYBAR].y, 23);
    /* a title and at least 8 lines of content in each band */
    assert_true(l.area[UI_AREA_THREADS].h >= 9);
    assert_true(l.area[UI_AREA_TOP].h >= 9);
    /* the threads pane fits "* TID NAME STATE CPU%" and the stack gets the wider share */
    assert_true(l.area[UI_AREA_THREADS].w >= UI_LEFT_MIN_W);
    assert_true(l.area[UI_AREA_STACK].w > l.area[UI_AREA_THREADS].w);
    assert_int_equal(l.body.y, UI_HEADER_H);
    assert_int_equal(l.body.h, 24 - UI_HEADER_H - UI_KEYBAR_H);
}

static void test_left_column_bounded(void **state)
{
    struct ui_layout l;

    (void)state;
    ui_layout_compute(50, 400, &l);
    assert_int_equal(l.area[UI_AREA_THREADS].w, UI_LEFT_MAX_W);
    ui_layout_compute(24, UI_MIN_COLS, &l);
    assert_int_equal(l.area[UI_AREA_THREADS].w, UI_LEFT_MIN_W);
}

static void test_too_small(void **state)
{
    static const int sizes[][2] = {
        {0, 0}, {-5, 80}, {24, -1}, {UI_MIN_ROWS - 1, 200}, {100, UI_MIN_COLS - 1}, {1, 1}};
    struct ui_layout l;

    (void)state;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        ui_layout_compute(sizes[i][0], sizes[i][1], &l);
        assert_true(l.too_small);
        assert_true(l.body.h >= 0 && l.body.w >= 0);
        for (int a = 0; a < UI_AREA_COUNT; a++)
            assert_true(l.area[a].h == 0 && l.area[a].w == 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiles_every_size),
        cmocka_unit_test(test_80x24),
        cmocka_unit_test(test_left_column_bounded),
        cmocka_unit_test(test_too_small),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
