/* SPDX-License-Identifier: MIT */
/*
 * `pyscope ps` writers (see out_ps.h). The table is printed as a tree: every process without a
 * Python master in pid order, each followed by its workers, indented one step per level (depth
 * first with an explicit stack of at most n entries; depth bounded by PSLIST_DEPTH_MAX). Command lines come from the
 * processes themselves: control characters and invalid UTF-8 are escaped in the text and
 * escaped by out_json_str in JSON (out_jsonw.h: C1 controls too; invalid UTF-8 as `?`).
 */
#include "pyscope/out_ps.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "out_int.h"
#include "pyscope/out_jsonw.h"

static int ps_stream_status(FILE *fp, struct ps_err *err)
{
    if (fflush(fp) != 0 || ferror(fp))
        return ps_err_set(err, -EIO, "cannot write the process list: %s", strerror(errno));
    return 0;
}

static void ps_text_row(FILE *fp, const struct pslist_entry *e, size_t depth)
{
    char rss[32];

    out_text_bytes(rss, sizeof(rss), e->rss_bytes);
    (void)fprintf(fp, "%8d %8d %-9s %7ld %10s %9.2f  %*s%s", (int)e->pid, (int)e->ppid,
                  e->version[0] ? e->version : "?", e->threads, rss, e->cpu_s, (int)depth * 3, "",
                  depth ? "\\_ " : "");
    out_text_escaped(fp, e->cmdline);
    if (e->nworkers)
        (void)fprintf(fp, "  [master of %zu worker%s]", e->nworkers, e->nworkers == 1 ? "" : "s");
    (void)fputc('\n', fp);
}

/* Push the entries whose master is pid (all roots for pid 0), last pid first, so that they pop
 * in pid order. Every entry has one master, so each is pushed at most once: n slots suffice. */
static void ps_push_children(const struct pslist *l, pid_t pid, size_t depth, size_t *stack,
                             size_t *depths, size_t *top)
{
    for (size_t i = l->n; i-- > 0;)
        if (l->v[i].master == pid) {
            stack[*top] = i;
            depths[(*top)++] = depth;
        }
}

int out_ps_text(FILE *fp, const struct pslist *l, struct ps_err *err)
{
    size_t *stack = calloc(l->n + 1, sizeof(*stack));
    size_t *depths = calloc(l->n + 1, sizeof(*depths));
    size_t top = 0;
    int rc = 0;

    if (!stack || !depths) {
        rc = ps_err_set(err, -ENOMEM, "out of memory writing the process list");
        goto out;
    }
    (void)fprintf(fp, "%8s %8s %-9s %7s %10s %9s  %s\n", "PID", "PPID", "PYTHON", "THREADS", "RSS",
                  "CPU s", "COMMAND");
    /* Depth first, iteratively: a master, then its workers indented under it. */
    ps_push_children(l, 0, 0, stack, depths, &top);
    while (top > 0) {
        size_t i = stack[--top], depth = depths[top];

        ps_text_row(fp, &l->v[i], depth);
        if (l->v[i].nworkers && depth < PSLIST_DEPTH_MAX)
            ps_push_children(l, l->v[i].pid, depth + 1, stack, depths, &top);
    }
    if (l->n == 0)
        (void)fputs("(no Python process in view)\n", fp);
    rc = ps_stream_status(fp, err);
out:
    free(stack);
    free(depths);
    return rc;
}

static json_t *ps_json_entry(const struct pslist *l, const struct pslist_entry *e)
{
    json_t *workers = json_array();
    json_t *o;

    for (size_t i = 0; workers && i < l->n; i++)
        if (l->v[i].master == e->pid)
            (void)json_array_append_new(workers, json_integer(l->v[i].pid));
    o = json_pack("{s:I, s:I, s:o, s:b, s:I, s:I, s:f, s:o, s:o, s:o}", "pid", (json_int_t)e->pid,
                  "ppid", (json_int_t)e->ppid, "python_version",
                  e->version[0] ? json_string(e->version) : json_null(), "version_read",
                  e->version_read, "threads", (json_int_t)e->threads, "rss_bytes",
                  (json_int_t)e->rss_bytes, "cpu_seconds", e->cpu_s, "cmdline",
                  out_json_text(e->cmdline), "master",
                  e->master ? json_integer(e->master) : json_null(), "workers", workers);
    return o;
}

int out_ps_json(FILE *fp, const struct pslist *l, struct ps_err *err)
{
    json_t *doc = json_pack("{s:[], s:I, s:I}", "processes", "unreadable",
                            (json_int_t)l->unreadable, "over_cap", (json_int_t)l->over_cap);
    json_t *arr = doc ? json_object_get(doc, "processes") : NULL;
    int rc = 0;

    for (size_t i = 0; arr && i < l->n && rc == 0; i++)
        if (json_array_append_new(arr, ps_json_entry(l, &l->v[i])) != 0)
            rc = ps_err_set(err, -ENOMEM, "out of memory writing the process list");
    if (!arr && rc == 0)
        rc = ps_err_set(err, -ENOMEM, "out of memory writing the process list");
    if (rc == 0) {
        out_json_dump(fp, doc, 0, 0); /* errors are sticky in fp: ps_stream_status */
        (void)fputc('\n', fp);
    }
    json_decref(doc);
    return rc == 0 ? ps_stream_status(fp, err) : rc;
}
