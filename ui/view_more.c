/* SPDX-License-Identifier: MIT */
/*
 * Models of the lower-right pane's other two views (see view.h): growing containers (growth.h
 * rows, fastest first) and asyncio tasks (snap_tasks from a snapshot taken with tasks on).
 * Pure formatting, like view.c: engine data in, fitted lines out.
 */
#include <stdio.h>
#include <string.h>

#include "pyscope/tasks.h"
#include "view.h"

/* Terminal cells of a sparkline: one per character (UTF-8 lead byte); blocks are 1 cell. */
static int spark_cells(const char *s)
{
    int n = 0;

    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

size_t ui_view_growth(const struct growth_row *rows, const char *const *sparks, const char *rss,
                      size_t n, int width, struct ui_line *out, size_t cap)
{
    char text[UI_LINE_MAX], size[32];
    size_t k = 0;

    if (cap == 0)
        return 0;
    (void)snprintf(text, sizeof(text), "  ITEMS/MIN     LENGTH  %-*s  CONTAINER (type, size)%s%s",
                   UI_GROWTH_SPARK_N, "TREND", rss ? "   " : "", rss ? rss : "");
    ui_line_set(&out[k++], text, width, UI_STYLE_HEADING, 0);
    for (size_t i = 0; i < n && k < cap; i++) {
        const struct growth_row *r = &rows[i];
        const char *spark = sparks && sparks[i] ? sparks[i] : "";
        /* pad by cells, not bytes: a sparkline's blocks are 3 bytes each */
        int pad = UI_GROWTH_SPARK_N - spark_cells(spark);

        (void)snprintf(text, sizeof(text), "%+11.1f %10lld  %s%*s  %s (%s, %s)%s", r->rate_per_min,
                       (long long)r->length, spark, pad > 0 ? pad : 0, "", r->name ? r->name : "?",
                       r->type_name ? r->type_name : "?",
                       ui_bytes(size, sizeof(size), (double)r->size), r->gone ? " gone" : "");
        ui_line_set(&out[k++], text, width,
                    r->gone                  ? UI_STYLE_DIM
                    : r->rate_per_min >= 1.0 ? UI_STYLE_HOT
                                             : UI_STYLE_NORMAL,
                    r->addr ? r->addr : i + 1);
    }
    return k;
}

static const char *ui_task_awaits(const struct snap_tasks *t, const struct snap_task *task,
                                  char *buf, size_t cap)
{
    if (task->awaits == SNAP_AWAIT_TASK && task->awaits_task >= 0 &&
        (size_t)task->awaits_task < t->ntasks)
        (void)snprintf(buf, cap, "awaits %s",
                       t->tasks[task->awaits_task].name ? t->tasks[task->awaits_task].name
                                                        : "a task");
    else if (task->awaits != SNAP_AWAIT_NONE)
        (void)snprintf(buf, cap, "awaits %s",
                       task->awaits_type ? task->awaits_type : tasks_await_name(task->awaits));
    else
        buf[0] = '\0';
    return buf;
}

static void ui_task_line(const struct snap_tasks *t, const struct snap_task *task, int width,
                         struct ui_line *out)
{
    char text[UI_LINE_MAX], awaits[160], where[512];
    const struct snap_frame *f = task->nframes > 0 ? &task->frames[0] : NULL;

    if (f)
        (void)snprintf(where, sizeof(where), "%s (%s:%d)", f->qualname ? f->qualname : f->function,
                       f->file ? ui_short_path(f->file) : "?", f->line);
    else
        (void)snprintf(where, sizeof(where), "%s", task->error ? task->error : "");
    (void)snprintf(text, sizeof(text), "%-9s %-24s %s%s  %s", tasks_state_name(task->state),
                   task->name ? task->name : "?", task->in_cycle ? "DEADLOCK " : "",
                   ui_task_awaits(t, task, awaits, sizeof(awaits)), where);
    ui_line_set(out, text, width,
                task->in_cycle                     ? UI_STYLE_ERROR
                : task->state == SNAP_TASK_RUNNING ? UI_STYLE_GIL
                                                   : UI_STYLE_NORMAL,
                task->addr ? task->addr : 1);
}

size_t ui_view_tasks(const struct snap_tasks *t, int width, struct ui_line *out, size_t cap)
{
    char text[UI_LINE_MAX];
    size_t k = 0;

    if (cap == 0)
        return 0;
    if (!t || t->error) {
        (void)snprintf(text, sizeof(text), "no asyncio tasks: %s",
                       t ? t->error : "reading them at the next refresh");
        ui_line_set(&out[k++], text, width, UI_STYLE_DIM, 0);
        return k;
    }
    (void)snprintf(text, sizeof(text),
                   "%zu tasks in %zu loops: %zu running, %zu pending, %zu done, %zu cancelled%s",
                   t->found, t->loops, t->by_state[SNAP_TASK_RUNNING],
                   t->by_state[SNAP_TASK_PENDING], t->by_state[SNAP_TASK_DONE],
                   t->by_state[SNAP_TASK_CANCELLED], t->capped ? " (list capped)" : "");
    ui_line_set(&out[k++], text, width, UI_STYLE_HEADING, 0);
    for (size_t i = 0; i < t->ntasks && k < cap; i++)
        ui_task_line(t, &t->tasks[i], width, &out[k++]);
    return k;
}
