/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_UI_APP_KEYS_H
#define PYSCOPE_UI_APP_KEYS_H

/*
 * Key handling for the event loop: one wgetch code in, looked up in the keymap table of the
 * app's mode (the open filter line's, else the panes'; the help screen takes only its rows),
 * the row's action run (keymap.h declares the actions; this file defines them). Returns the
 * row's redraw with UI_REDRAW_FOCUSED resolved to the pane focused after the action: bits
 * UI_REDRAW(UI_AREA_*) to rebuild, and UI_REDRAW_SCREEN; an unbound key returns
 * UI_REDRAW_NONE. A pane whose selection moved has marked itself dirty. Main thread only.
 */

#include <stdbool.h>

#include "app_int.h"

unsigned ui_keys_handle(struct ui_app *app, int ch);

#endif
