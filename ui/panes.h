/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_UI_PANES_H
#define PYSCOPE_UI_PANES_H

/*
 * ui_panes: the pane table, the one place the app learns its panes. One row per screen area
 * (layout.h's enum ui_area): the pane's ops (defined in the pane's own file, declared here), the
 * lines it can hold, whether it lies in the body (hidden by the help screen) and its place in
 * Tab's focus order; and one row per view the lower-right area can show (enum ui_lower: the
 * exceptions, growth, tasks). The app sets up, draws and cycles the focus through these rows
 * only. Pure data.
 */

#include <stdbool.h>
#include <stddef.h>

#include "layout.h"
#include "pane.h"

/* What the lower-right pane shows. */
enum ui_lower {
    UI_LOWER_EXC,
    UI_LOWER_GROWTH,
    UI_LOWER_TASKS,
    UI_LOWER_COUNT,
};

/* The panes' operations (one file each). */
extern const struct ui_pane_ops ui_header_ops;
extern const struct ui_pane_ops ui_threads_ops;
extern const struct ui_pane_ops ui_stack_ops;
extern const struct ui_pane_ops ui_top_ops;
extern const struct ui_pane_ops ui_exc_ops;
extern const struct ui_pane_ops ui_growth_ops;
extern const struct ui_pane_ops ui_tasks_ops;
extern const struct ui_pane_ops ui_keybar_ops;

struct ui_pane_kind {
    const struct ui_pane_ops *ops;
    size_t cap; /* lines the pane holds */
    bool body;  /* between header and key bar: the help screen covers it */
    int focus;  /* place in Tab's order, 1 first; 0: never focused (no selection) */
};

/* The row of area a (a < UI_AREA_COUNT). Pure. */
const struct ui_pane_kind *ui_panes_kind(enum ui_area a);

/* The area after `from` in the focus order (step > 0) or before it (step < 0), cyclic; from
 * an area outside the order, the first (or last). Pure. */
enum ui_area ui_panes_focus_step(enum ui_area from, int step);

/* The ops of the lower-right area's view `which` (which < UI_LOWER_COUNT). Pure. */
const struct ui_pane_ops *ui_panes_lower(enum ui_lower which);

#endif
