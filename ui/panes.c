/* SPDX-License-Identifier: MIT */
/*
 * The pane table (see panes.h). Adding a pane is its file, its area in layout.h/layout.c and a
 * row here (its ops declared in panes.h); the app's set-up, drawing, help screen and Tab order
 * follow the rows.
 */
#include "panes.h"

#include "app_int.h"

static const struct ui_pane_kind ui_panes[UI_AREA_COUNT] = {
    [UI_AREA_HEADER] = {&ui_header_ops, 3, false, 0},
    [UI_AREA_THREADS] = {&ui_threads_ops, UI_THREAD_LINES, true, 1},
    [UI_AREA_STACK] = {&ui_stack_ops, UI_STACK_LINES, true, 2},
    [UI_AREA_TOP] = {&ui_top_ops, UI_TOP_LINES, true, 3},
    [UI_AREA_EXC] = {&ui_exc_ops, (size_t)UI_EXC_LINES, true, 4},
    [UI_AREA_KEYBAR] = {&ui_keybar_ops, 1, false, 0},
};

/* The lower-right area's views; the area's row above holds the first. */
static const struct ui_pane_ops *const ui_lower_views[UI_LOWER_COUNT] = {
    [UI_LOWER_EXC] = &ui_exc_ops,
    [UI_LOWER_GROWTH] = &ui_growth_ops,
    [UI_LOWER_TASKS] = &ui_tasks_ops,
};

const struct ui_pane_kind *ui_panes_kind(enum ui_area a)
{
    return &ui_panes[a];
}

enum ui_area ui_panes_focus_step(enum ui_area from, int step)
{
    int n = 0, at = 0, want;

    for (int a = 0; a < UI_AREA_COUNT; a++)
        n = ui_panes[a].focus > n ? ui_panes[a].focus : n;
    if (n == 0)
        return from;
    if (from < UI_AREA_COUNT)
        at = ui_panes[from].focus;
    if (at == 0)
        want = step > 0 ? 1 : n;
    else
        want = (at - 1 + (step > 0 ? 1 : n - 1)) % n + 1;
    for (int a = 0; a < UI_AREA_COUNT; a++)
        if (ui_panes[a].focus == want)
            return (enum ui_area)a;
    return from;
}

const struct ui_pane_ops *ui_panes_lower(enum ui_lower which)
{
    return ui_lower_views[which];
}
