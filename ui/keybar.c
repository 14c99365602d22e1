/* SPDX-License-Identifier: MIT */
/*
 * The key bar: the bottom line. The keys from the keymap's bar words, or the filter being
 * typed (with the filter line's keys, from its rows), or a transient note ("wrote
 * /tmp/x.json"). One column short of the screen's width: curses cannot write the bottom-right
 * cell without scrolling.
 */
#include <stdio.h>

#include "app_int.h"
#include "keymap.h"

static void ui_keybar_build(struct ui_pane *p, struct ui_app *app)
{
    char text[UI_LINE_MAX];
    const char *shown = text;
    enum ui_style style = UI_STYLE_NORMAL;

    if (app->filter_edit) {
        char keys[96];

        (void)snprintf(text, sizeof(text), "filter %s: %s_   (%s)",
                       app->filter_area == UI_AREA_EXC ? "exceptions" : "top table",
                       ui_app_filter(app, app->filter_area),
                       ui_keymap_bar(UI_MODE_FILTER, ", ", keys, sizeof(keys)));
        style = UI_STYLE_HOT;
    } else if (app->note[0] && app->ticks < app->note_until) {
        shown = app->note;
        style = UI_STYLE_HOT;
    } else {
        ui_keymap_bar(UI_MODE_PANES, "  ", text, sizeof(text));
    }
    if (p->cap < 1)
        return;
    ui_fit(p->lines[0].text, sizeof(p->lines[0].text), shown, p->rect.w - 1);
    p->lines[0].style = style;
    p->lines[0].selectable = false;
    p->lines[0].key = 0;
    p->nlines = 1;
}

const struct ui_pane_ops ui_keybar_ops = {
    .title = NULL,
    .build = ui_keybar_build,
    .enter = NULL,
};
