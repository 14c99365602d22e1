/* SPDX-License-Identifier: MIT */
/*
 * The growth table (see out_growth.h): text for people, one JSON object per report for machines.
 * Names and type names are the target's (a dict key, a class name): the text escapes their control
 * characters with out_text.c's escaper; JSON with out_json_str (out_jsonw.h), the one JSON escaper.
 */
#include "pyscope/out_growth.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "out_int.h"
#include "pyscope/out_jsonw.h"

static void human_size(uint64_t b, char *buf, size_t cap)
{
    if (b < UINT64_C(10) * 1024)
        (void)snprintf(buf, cap, "%" PRIu64 " B", b);
    else if (b < UINT64_C(10) * 1024 * 1024)
        (void)snprintf(buf, cap, "%.0f KiB", (double)b / 1024.0);
    else
        (void)snprintf(buf, cap, "%.1f MiB", (double)b / (1024.0 * 1024.0));
}

void out_growth_text(FILE *f, const struct growth *g, pid_t pid, const char *title, size_t rows,
                     double elapsed)
{
    const struct growth_stats *st = growth_stats(g);
    struct growth_row r;
    char size[32];

    (void)fprintf(f, "%s: pid %d, %" PRIu64 " samples over %.1f s, %zu containers in %zu modules\n",
                  title, (int)pid, st->samples, elapsed, st->containers, st->modules);
    (void)fprintf(f, "%12s %10s %10s  %-24s %s\n", "GROWTH/MIN", "LENGTH", "SIZE", "TYPE", "NAME");
    for (size_t i = 0; i < rows && growth_row(g, i, &r); i++) {
        human_size(r.size, size, sizeof(size));
        (void)fprintf(f, "%+12.1f %10" PRId64 " %10s  ", r.rate_per_min, r.length, size);
        out_text_escaped(f, r.type_name);
        for (size_t w = strlen(r.type_name); w < 24; w++)
            (void)fputc(' ', f);
        (void)fputc(' ', f);
        out_text_escaped(f, r.name);
        (void)fprintf(f, "%s\n", r.gone ? " (gone)" : "");
    }
}

static json_t *json_row(const struct growth_row *r)
{
    char addr[24];

    (void)snprintf(addr, sizeof(addr), "0x%" PRIx64, r->addr);
    return json_pack("{s:o, s:o, s:s, s:s, s:I, s:f, s:I, s:I, s:b}", "name",
                     out_json_text(r->name), "type", out_json_text(r->type_name), "kind",
                     growth_kind_name(r->kind), "address", addr, "length", (json_int_t)r->length,
                     "growth_per_min", r->rate_per_min, "size_bytes", (json_int_t)r->size, "points",
                     (json_int_t)r->points, "gone", r->gone);
}

static json_t *json_stats(const struct growth *g)
{
    const struct growth_stats *st = growth_stats(g);

    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "scans",
                     (json_int_t)st->scans, "samples", (json_int_t)st->samples, "modules",
                     (json_int_t)st->modules, "containers", (json_int_t)st->containers, "skipped",
                     (json_int_t)st->skipped, "retries", (json_int_t)st->retries, "torn",
                     (json_int_t)st->torn, "gone", (json_int_t)st->gone, "read_calls",
                     (json_int_t)st->read_calls);
}

void out_growth_json(FILE *f, const struct growth *g, pid_t pid, const char *event, size_t rows,
                     double elapsed)
{
    json_t *arr = json_array();
    json_t *o = json_pack("{s:s, s:i, s:f, s:o}", "event", event, "pid", (int)pid, "elapsed_s",
                          elapsed, "stats", json_stats(g));
    struct growth_row r;
    char *s = NULL;

    for (size_t i = 0; arr && i < rows && growth_row(g, i, &r); i++)
        (void)json_array_append_new(arr, json_row(&r));
    if (o && arr && json_object_set_new(o, "containers", arr) == 0) {
        arr = NULL;
        s = out_json_dumps(o, 0, 0);
    }
    (void)fprintf(f, "%s\n", s ? s : "{\"event\":\"error\",\"message\":\"out of memory\"}");
    free(s);
    json_decref(arr);
    json_decref(o);
}
