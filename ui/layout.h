/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_UI_LAYOUT_H
#define PYSCOPE_UI_LAYOUT_H

/*
 * ui_layout: terminal size in, one rectangle per screen area out. Pure (no curses), so tests
 * check every size. The screen, from the top: a 3-line header; the body, split into an upper
 * band (threads | stack, the stack wider: paths and source lines are long) and a lower band
 * (top | exceptions, halves); a 1-line key bar.
 * Below UI_MIN_COLS x UI_MIN_ROWS the layout reports too_small and the app shows only a note.
 */

#include <stdbool.h>

#define UI_MIN_COLS 60
#define UI_MIN_ROWS 16
#define UI_HEADER_H 3
#define UI_KEYBAR_H 1
/* Columns given to the threads pane: 40 % of the width within these bounds. */
#define UI_LEFT_MIN_W 34
#define UI_LEFT_MAX_W 72

enum ui_area {
    UI_AREA_HEADER,
    UI_AREA_THREADS,
    UI_AREA_STACK,
    UI_AREA_TOP,
    UI_AREA_EXC,
    UI_AREA_KEYBAR,
    UI_AREA_COUNT,
};

struct ui_rect {
    int y, x, h, w;
};

struct ui_layout {
    int rows, cols;
    bool too_small;                     /* below the minimum: only `body` is meaningful */
    struct ui_rect area[UI_AREA_COUNT]; /* disjoint, inside the screen, cover it exactly */
    struct ui_rect body;                /* everything between header and key bar (help screen) */
};

/*
 * Compute the layout for a rows x cols terminal into *out (always written). Negative or tiny
 * sizes give too_small with every rectangle empty but the body clipped to the screen.
 */
void ui_layout_compute(int rows, int cols, struct ui_layout *out);

#endif
