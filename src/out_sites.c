/* SPDX-License-Identifier: MIT */
/*
 * out_sites: the tracer's per-site raise estimates as a JSON line (out_sites.h). Strings from
 * the target go through jansson, which escapes them. Never: print without the "estimated"
 * flag, or touch the target.
 */
#include "pyscope/out_sites.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>

static json_t *out_site(const struct tracer_site *s)
{
    return json_pack("{s:s, s:s, s:s, s:i, s:I, s:I, s:I, s:b, s:f, s:I, s:f}", "type", s->type,
                     "function", s->at.function, "file", s->at.file, "line", s->at.line, "seen",
                     (json_int_t)s->seen, "reported", (json_int_t)s->reported, "estimate",
                     (json_int_t)llround(s->estimate), "estimated", s->estimated, "rel_err",
                     s->rel_err, "first_seq", (json_int_t)s->first_seq, "first_time",
                     s->first_time);
}

int out_sites_json(FILE *fp, const struct tracer_site *sites, size_t n)
{
    json_t *arr = json_array(), *rec;
    char *text;
    int rc = 0;

    for (size_t i = 0; arr && i < n; i++) {
        json_t *o = out_site(&sites[i]);
        if (!o || json_array_append_new(arr, o) < 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    rec = arr ? json_pack("{s:s, s:o}", "event", "sites", "sites", arr) : NULL;
    text = rec ? json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(rec);
    if (!text)
        return -ENOMEM;
    if (fprintf(fp, "%s\n", text) < 0)
        rc = -EIO;
    free(text);
    return rc;
}
