/* SPDX-License-Identifier: MIT */
/*
 * Screen geometry (see layout.h): sizes in, rectangles out, no curses and no state, so that
 * resizing is "compute again, move the windows". Invariant checked by the unit tests: the
 * areas are disjoint and tile the screen exactly at every size from the minimum up.
 */
#include "layout.h"

#include <string.h>

static struct ui_rect ui_rect_make(int y, int x, int h, int w)
{
    struct ui_rect r = {.y = y, .x = x, .h = h, .w = w};
    return r;
}

/* Width of the left column (threads, top): 40 % of the screen, bounded. */
static int ui_layout_left_w(int cols)
{
    int w = cols * 2 / 5;

    if (w < UI_LEFT_MIN_W)
        w = UI_LEFT_MIN_W;
    if (w > UI_LEFT_MAX_W)
        w = UI_LEFT_MAX_W;
    return w;
}

void ui_layout_compute(int rows, int cols, struct ui_layout *out)
{
    int body_h, upper_h, left_w, top_w;

    memset(out, 0, sizeof(*out));
    out->rows = rows > 0 ? rows : 0;
    out->cols = cols > 0 ? cols : 0;
    out->body = ui_rect_make(0, 0, out->rows, out->cols);
    if (rows < UI_MIN_ROWS || cols < UI_MIN_COLS) {
        out->too_small = true;
        return;
    }
    body_h = rows - UI_HEADER_H - UI_KEYBAR_H;
    upper_h = (body_h + 1) / 2;
    left_w = ui_layout_left_w(cols);
    top_w = cols / 2;
    out->body = ui_rect_make(UI_HEADER_H, 0, body_h, cols);
    out->area[UI_AREA_HEADER] = ui_rect_make(0, 0, UI_HEADER_H, cols);
    out->area[UI_AREA_THREADS] = ui_rect_make(UI_HEADER_H, 0, upper_h, left_w);
    out->area[UI_AREA_STACK] = ui_rect_make(UI_HEADER_H, left_w, upper_h, cols - left_w);
    out->area[UI_AREA_TOP] = ui_rect_make(UI_HEADER_H + upper_h, 0, body_h - upper_h, top_w);
    out->area[UI_AREA_EXC] =
        ui_rect_make(UI_HEADER_H + upper_h, top_w, body_h - upper_h, cols - top_w);
    out->area[UI_AREA_KEYBAR] = ui_rect_make(rows - UI_KEYBAR_H, 0, UI_KEYBAR_H, cols);
}
