/* SPDX-License-Identifier: MIT */
/*
 * The asyncio sections of `pyscope dump --tasks` (snap->tasks, tasks.h), in text and JSON.
 *
 * Text: a summary line, then one block per listed task in the collector's order (running,
 * pending, done, cancelled; by name): a header with its state and what it awaits, then its
 * coroutine chain outermost first, like the thread report (traceback order; the JSON keeps the
 * snapshot's innermost-first order). Then the await graph, one edge per line, and each
 * deadlock (a cycle of tasks waiting on each other) spelled out. Target strings go through
 * out_text_escaped, frames through out_text_frame, so both look like the thread report.
 *
 * JSON: "tasks" (array), "await_graph" (edges by index into "tasks") and "tasks_summary",
 * validated by docs/schema/dump.schema.json. Pure formatting: never touches the target.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>

#include "out_int.h"
#include "pyscope/tasks.h"

/* ---- text ----------------------------------------------------------------------------------- */

static void text_task_ref(FILE *fp, const struct snap_tasks *ts, long idx, uint64_t addr)
{
    if (idx >= 0 && (size_t)idx < ts->ntasks) {
        (void)fputc('"', fp);
        out_text_escaped(fp, ts->tasks[idx].name);
        (void)fputc('"', fp);
    } else {
        (void)fprintf(fp, "a task at 0x%" PRIx64 " (not listed)", addr);
    }
}

static void text_awaits(FILE *fp, const struct snap_tasks *ts, const struct snap_task *t)
{
    switch (t->awaits) {
    case SNAP_AWAIT_TASK:
        (void)fputs(" awaiting task ", fp);
        text_task_ref(fp, ts, t->awaits_task, t->awaits_addr);
        break;
    case SNAP_AWAIT_SLEEP: (void)fputs(" sleeping (asyncio.sleep)", fp); break;
    case SNAP_AWAIT_FUTURE:
    case SNAP_AWAIT_OTHER:
        (void)fputs(t->awaits == SNAP_AWAIT_FUTURE ? " awaiting a future (" : " awaiting (", fp);
        out_text_escaped(fp, t->awaits_type ? t->awaits_type : "?");
        (void)fprintf(fp, " at 0x%" PRIx64 ")", t->awaits_addr);
        break;
    case SNAP_AWAIT_NONE:
        if (t->state == SNAP_TASK_PENDING && !t->error)
            (void)fputs(" ready to run", fp);
        break;
    }
}

static void text_running(FILE *fp, const struct snap *s, const struct snap_task *t)
{
    const struct snap_thread *th;

    if (t->thread < 0 || (size_t)t->thread >= s->nthreads)
        return;
    th = &s->threads[t->thread];
    (void)fprintf(fp, " in thread %d", (int)th->native_id);
    if (th->name) {
        (void)fputs(" \"", fp);
        out_text_escaped(fp, th->name);
        (void)fputc('"', fp);
    }
    if (t->thread_frame >= 0)
        (void)fprintf(fp, " (its coroutine is frame %ld from the top of that stack)",
                      t->thread_frame + 1);
}

static void text_task(struct text_ctx *c, FILE *fp, const struct snap *s, const struct snap_task *t)
{
    (void)fputs("Task \"", fp);
    out_text_escaped(fp, t->name);
    (void)fprintf(fp, "\" [%s]", tasks_state_name(t->state));
    if (t->state == SNAP_TASK_RUNNING)
        text_running(fp, s, t);
    text_awaits(fp, s->tasks, t);
    if (t->in_cycle)
        (void)fputs("  DEADLOCK: waits on itself through the await graph", fp);
    (void)fputc('\n', fp);
    if (t->error) {
        (void)fputs("  (chain incomplete: ", fp);
        out_text_escaped(fp, t->error);
        (void)fputs(")\n", fp);
    }
    if (t->chain_truncated)
        (void)fprintf(fp, "  ... (outer coroutines cut at %d)\n", TASKS_MAX_CHAIN);
    for (size_t j = t->nframes; j > 0; j--)
        out_text_frame(c, &t->frames[j - 1]);
}

static void text_summary(FILE *fp, const struct snap_tasks *ts)
{
    (void)fprintf(fp,
                  "\nasyncio: %zu task%s in %zu event loop%s (%zu running, %zu pending, %zu done, "
                  "%zu cancelled)",
                  ts->found, ts->found == 1 ? "" : "s", ts->loops, ts->loops == 1 ? "" : "s",
                  ts->by_state[SNAP_TASK_RUNNING], ts->by_state[SNAP_TASK_PENDING],
                  ts->by_state[SNAP_TASK_DONE], ts->by_state[SNAP_TASK_CANCELLED]);
    if (ts->capped)
        (void)fprintf(fp, "; showing %zu (--max-tasks; scans are capped at %u slots)", ts->ntasks,
                      TASKS_MAX_SCAN);
    (void)fputc('\n', fp);
}

/* First out-edge of v to a task on a cycle, or -1. */
static long cycle_next(const struct snap_tasks *ts, size_t v)
{
    for (size_t e = 0; e < ts->nedges; e++)
        if (ts->edges[e].from == v && ts->tasks[ts->edges[e].to].in_cycle)
            return (long)ts->edges[e].to;
    return -1;
}

/* Spell out each cycle: follow on-cycle edges from an unvisited task until one repeats. */
static void text_deadlocks(FILE *fp, const struct snap_tasks *ts)
{
    unsigned char *seen = calloc(ts->ntasks ? ts->ntasks : 1, 1); /* 0 new, 1 path, 2 done */

    for (size_t i = 0; seen && i < ts->ntasks; i++) {
        long v = (long)i, start;

        if (!ts->tasks[i].in_cycle || seen[i])
            continue;
        while (v >= 0 && seen[v] == 0) {
            seen[v] = 1;
            v = cycle_next(ts, (size_t)v);
        }
        start = v;
        if (start >= 0 && seen[start] == 1) {
            (void)fputs("DEADLOCK: ", fp);
            do {
                text_task_ref(fp, ts, v, 0);
                (void)fputs(" -> ", fp);
                v = cycle_next(ts, (size_t)v);
            } while (v >= 0 && v != start);
            text_task_ref(fp, ts, start, 0);
            (void)fputc('\n', fp);
        }
        for (size_t j = 0; j < ts->ntasks; j++)
            seen[j] = seen[j] ? 2 : 0;
    }
    free(seen);
}

static void text_graph(FILE *fp, const struct snap_tasks *ts)
{
    (void)fputs("\nAwait graph (waiter -> awaited):\n", fp);
    if (ts->nedges == 0)
        (void)fputs("  (no task waits on another listed task)\n", fp);
    for (size_t e = 0; e < ts->nedges; e++) {
        const struct snap_await_edge *ed = &ts->edges[e];

        (void)fputs("  ", fp);
        text_task_ref(fp, ts, (long)ed->from, 0);
        (void)fputs(" -> ", fp);
        text_task_ref(fp, ts, (long)ed->to, 0);
        (void)fprintf(fp, " (%s)\n", ed->via);
    }
    text_deadlocks(fp, ts);
}

void out_tasks_text(struct text_ctx *c, FILE *fp, const struct snap *s)
{
    const struct snap_tasks *ts = s->tasks;

    if (ts->error) {
        (void)fputs("\nasyncio: ", fp);
        out_text_escaped(fp, ts->error);
        (void)fputc('\n', fp);
        return;
    }
    text_summary(fp, ts);
    for (size_t i = 0; i < ts->ntasks; i++) {
        (void)fputc('\n', fp);
        text_task(c, fp, s, &ts->tasks[i]);
    }
    if (ts->ntasks > 0)
        text_graph(fp, ts);
}

/* ---- JSON ----------------------------------------------------------------------------------- */

/* A document part under construction with a sticky first error (as out_json.c). */
struct tb {
    int rc;
};

static void tb_set(struct tb *b, json_t *obj, const char *key, json_t *val)
{
    if (b->rc != 0 || !val || !obj) {
        json_decref(val);
        b->rc = b->rc != 0 ? b->rc : -ENOMEM;
        return;
    }
    if (json_object_set_new(obj, key, val) != 0)
        b->rc = -ENOMEM;
}

/* Append val to arr (stealing val, as json_array_append_new does even when it fails). */
static void tb_append(struct tb *b, json_t *arr, json_t *val)
{
    if (b->rc != 0 || !arr) {
        json_decref(val);
        b->rc = b->rc != 0 ? b->rc : -ENOMEM;
        return;
    }
    if (!val || json_array_append_new(arr, val) != 0)
        b->rc = -ENOMEM;
}

/* A string, null for NULL; -EINVAL for text that is not UTF-8 (snapshot strings always are). */
static json_t *tb_str(struct tb *b, const char *str)
{
    json_t *v;

    if (!str)
        return json_null();
    v = json_string(str);
    if (!v && b->rc == 0)
        b->rc = -EINVAL;
    return v;
}

/* An index, or null when negative. */
static json_t *tb_index(long v)
{
    return v >= 0 ? json_integer(v) : json_null();
}

static json_t *tb_u64(uint64_t v)
{
    return v <= INT64_MAX ? json_integer((json_int_t)v) : json_null();
}

static json_t *json_awaits(struct tb *b, const struct snap_task *t)
{
    json_t *o;

    if (t->awaits == SNAP_AWAIT_NONE)
        return json_null();
    o = json_object();
    tb_set(b, o, "kind", json_string(tasks_await_name(t->awaits)));
    tb_set(b, o, "address", tb_u64(t->awaits_addr));
    tb_set(b, o, "type", tb_str(b, t->awaits_type));
    tb_set(b, o, "task", tb_index(t->awaits_task));
    return o;
}

static json_t *json_chain(struct tb *b, const struct snap_task *t)
{
    json_t *arr = json_array();

    for (size_t i = 0; i < t->nframes && b->rc == 0; i++) {
        int rc = 0;
        json_t *f = out_json_frame_new(&t->frames[i], &rc);

        if (!f)
            b->rc = rc != 0 ? rc : -ENOMEM;
        tb_append(b, arr, f);
    }
    return arr;
}

static json_t *json_task(struct tb *b, const struct snap *s, const struct snap_task *t)
{
    json_t *o = json_object();
    const struct snap_thread *th =
        t->thread >= 0 && (size_t)t->thread < s->nthreads ? &s->threads[t->thread] : NULL;

    tb_set(b, o, "address", tb_u64(t->addr));
    tb_set(b, o, "loop", tb_u64(t->loop_addr));
    tb_set(b, o, "name", tb_str(b, t->name));
    tb_set(b, o, "state", json_string(tasks_state_name(t->state)));
    tb_set(b, o, "awaits", json_awaits(b, t));
    tb_set(b, o, "thread_native_id", th ? json_integer(th->native_id) : json_null());
    tb_set(b, o, "thread_frame", tb_index(t->thread_frame));
    tb_set(b, o, "in_cycle", json_boolean(t->in_cycle));
    tb_set(b, o, "chain_truncated", json_boolean(t->chain_truncated));
    tb_set(b, o, "error", tb_str(b, t->error));
    tb_set(b, o, "frames", json_chain(b, t));
    return o;
}

static json_t *json_summary(struct tb *b, const struct snap_tasks *ts)
{
    json_t *o = json_object();
    json_t *st = json_object();

    for (int i = 0; i < 4; i++)
        tb_set(b, st, tasks_state_name((enum snap_task_state)i),
               json_integer((json_int_t)ts->by_state[i]));
    tb_set(b, o, "found", json_integer((json_int_t)ts->found));
    tb_set(b, o, "listed", json_integer((json_int_t)ts->ntasks));
    tb_set(b, o, "capped", json_boolean(ts->capped));
    tb_set(b, o, "loops", json_integer((json_int_t)ts->loops));
    tb_set(b, o, "by_state", st);
    tb_set(b, o, "error", tb_str(b, ts->error));
    return o;
}

static json_t *json_graph(struct tb *b, const struct snap_tasks *ts)
{
    json_t *arr = json_array();

    for (size_t e = 0; e < ts->nedges && b->rc == 0; e++) {
        json_t *o = json_object();

        tb_set(b, o, "from", json_integer((json_int_t)ts->edges[e].from));
        tb_set(b, o, "to", json_integer((json_int_t)ts->edges[e].to));
        tb_set(b, o, "via", json_string(ts->edges[e].via));
        tb_append(b, arr, o);
    }
    return arr;
}

int out_tasks_json(json_t *doc, const struct snap *s)
{
    const struct snap_tasks *ts = s->tasks;
    struct tb b = {0};
    json_t *tasks = json_array();

    for (size_t i = 0; i < ts->ntasks && b.rc == 0; i++)
        tb_append(&b, tasks, json_task(&b, s, &ts->tasks[i]));
    tb_set(&b, doc, "tasks", tasks);
    tb_set(&b, doc, "await_graph", json_graph(&b, ts));
    tb_set(&b, doc, "tasks_summary", json_summary(&b, ts));
    return b.rc;
}
