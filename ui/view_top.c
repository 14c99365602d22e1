/* SPDX-License-Identifier: MIT */
/*
 * The top table's model (see view.h, ui_view_top): profile_top rows in, fitted lines out.
 * Shares are of the samples in scope, so own% of all rows adds up to 100 and total% of the
 * outermost function is about 100. The filter is a plain substring of the function or the
 * file, applied after ranking, so "/handler" shows the handlers in their global order.
 */
#include "view.h"

#include <stdio.h>
#include <string.h>

static bool ui_top_match(const struct profile_frame *f, const char *filter)
{
    return !filter || !filter[0] || strstr(f->function, filter) || strstr(f->file, filter);
}

static void ui_top_row(const struct profile_frame *f, const struct profile_top_row *r, double scale,
                       int width, struct ui_line *out)
{
    char pct[32], text[UI_LINE_MAX], name[UI_LINE_MAX], where[UI_LINE_MAX], loc[UI_LINE_MAX];
    int rest = width - 14, fw;
    size_t used;

    (void)snprintf(pct, sizeof(pct), "%5.1f %5.1f", (double)r->own * scale,
                   (double)r->total * scale);
    (void)snprintf(where, sizeof(where), r->line > 0 ? "%s:%d" : "%s", ui_short_path(f->file),
                   r->line);
    fw = rest * 11 / 20;
    ui_fit(name, sizeof(name), f->function, fw);
    ui_fit_left(loc, sizeof(loc), where, rest - fw - 1 > 0 ? rest - fw - 1 : 0);
    used = ui_cat(text, sizeof(text), 0, pct);
    used = ui_cat(text, sizeof(text), used, "  ");
    used = ui_cat(text, sizeof(text), used, name);
    used = ui_cat(text, sizeof(text), used, " ");
    (void)ui_cat(text, sizeof(text), used, loc);
    ui_fit(out->text, sizeof(out->text), text, width);
    /* hot: mostly its own time, and at least 5 % of all samples */
    out->style =
        r->own * 10 >= r->total && (double)r->own * scale >= 5.0 ? UI_STYLE_HOT : UI_STYLE_NORMAL;
    out->key = (uint64_t)r->frame + 1;
    out->selectable = true;
}

int ui_view_top(const struct ui_top_in *in, int width, struct ui_line *out, size_t cap,
                uint64_t *samples, struct ps_err *err)
{
    size_t rows = 0, n = 0;
    uint64_t total = 0;
    double scale;
    int rc;

    if (cap == 0)
        return 0;
    rc = profile_top(in->profile, in->by, in->sort, PROFILE_NONE, in->scratch, in->nscratch, &rows,
                     &total, err);
    if (rc < 0)
        return rc;
    *samples = total;
    scale = total ? 100.0 / (double)total : 0.0;
    ui_fit(out[n].text, sizeof(out[n].text),
           in->sort == PROFILE_SORT_OWN ? " OWN% total  FUNCTION (by own)"
                                        : " own% TOTAL  FUNCTION (by total)",
           width);
    out[n].style = UI_STYLE_HEADING;
    out[n].selectable = false;
    out[n++].key = 0;
    for (size_t i = 0; i < rows && n < cap; i++) {
        const struct profile_frame *f = profile_frame_get(in->profile, in->scratch[i].frame);
        if (!f || !ui_top_match(f, in->filter))
            continue;
        ui_top_row(f, &in->scratch[i], scale, width, &out[n++]);
    }
    return (int)n;
}
