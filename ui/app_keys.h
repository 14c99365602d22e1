/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_UI_APP_KEYS_H
#define PYSCOPE_UI_APP_KEYS_H

/*
 * Key handling for the event loop: one wgetch code in, the app's state updated (the keymap
 * says which action a key is; this says what the action does). Returns true when every pane
 * should be rebuilt (focus, modes and toggles change what several panes show); panes that only
 * moved a selection mark themselves dirty. Main thread only.
 */

#include <stdbool.h>

#include "app_int.h"

bool ui_keys_handle(struct ui_app *app, int ch);

#endif
