/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_UI_APP_KEYS_H
#define PYSCOPE_UI_APP_KEYS_H

/*
 * Key handling for the event loop: one wgetch code in, the app's state updated by the action
 * of the key's row in the keymap (keymap.h declares the actions; this file defines them).
 * Returns the row's redraw: the panes (bits 1u << UI_AREA_*) to rebuild; panes that only moved
 * a selection mark themselves dirty. While the filter line is open, keys edit it. Main thread
 * only.
 */

#include <stdbool.h>

#include "app_int.h"

unsigned ui_keys_handle(struct ui_app *app, int ch);

#endif
