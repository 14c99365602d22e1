/* SPDX-License-Identifier: MIT */
/*
 * out_sites: the tracer's per-site raise estimates as a JSON line (out_sites.h). Strings from
 * the target go through out_json_str, the one JSON escaper of the writers (it escapes
 * C0 and C1 controls, which jansson leaves raw). Never: print without the "estimated" flag, or
 * touch the target.
 */
#include "pyscope/out_sites.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>

#include "pyscope/out_jsonw.h"

static void out_site(FILE *fp, const struct tracer_site *s)
{
    (void)fputs("{\"type\":", fp);
    out_json_str(fp, s->type);
    (void)fputs(",\"function\":", fp);
    out_json_str(fp, s->at.function);
    (void)fputs(",\"file\":", fp);
    out_json_str(fp, s->at.file);
    (void)fprintf(fp,
                  ",\"line\":%d,\"seen\":%" PRIu64 ",\"reported\":%" PRIu64
                  ",\"estimate\":%lld,\"estimated\":%s,\"rel_err\":%.6g,\"first_seq\":%" PRIu64
                  ",\"first_time\":%.6f}",
                  s->at.line, s->seen, s->reported, llround(s->estimate),
                  s->estimated ? "true" : "false", isfinite(s->rel_err) ? s->rel_err : 0.0,
                  s->first_seq, s->first_time);
}

int out_sites_json(FILE *fp, pid_t pid, const struct tracer_site *sites, size_t n)
{
    (void)fprintf(fp, "{\"event\":\"sites\",\"pid\":%d,\"sites\":[", (int)pid);
    for (size_t i = 0; i < n; i++) {
        if (i)
            (void)fputc(',', fp);
        out_site(fp, &sites[i]);
    }
    return fputs("]}\n", fp) < 0 || ferror(fp) ? -EIO : 0;
}

void out_sites_json_oom(FILE *fp)
{
    (void)fputs("{\"event\":\"sites\",\"error\":\"out of memory\"}\n", fp);
}
