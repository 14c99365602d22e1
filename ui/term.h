/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_UI_TERM_H
#define PYSCOPE_UI_TERM_H

/*
 * ui_term: the terminal while curses owns it. Opening sets the locale (UTF-8 names need
 * ncursesw and a UTF-8 locale; anything else shows '?' for what it cannot draw), starts curses
 * in cbreak mode without echo (Ctrl-C stays a signal, which the app reads from its signalfd),
 * non-blocking input and keypad decoding, and parks stderr in a temporary file so that nothing
 * scribbles over the screen; closing restores the terminal and stderr and replays what was
 * parked. Colours are used when the terminal has them and NO_COLOR is unset or empty; without
 * them styles fall back to bold, dim and reverse, which every terminal shows.
 *
 * One terminal per process; main thread only; not async-signal-safe (the app takes signals
 * through a signalfd and closes the terminal from its loop).
 */

#include <stdbool.h>
#include <sys/types.h>

#include <curses.h>

#include "pyscope/err.h"
#include "view.h"

struct ui_term {
    SCREEN *screen;
    bool color;
    bool utf8;      /* the locale's codeset is UTF-8 */
    int saved_err;  /* dup of the original stderr, -1 when not parked */
    int parked_err; /* the temporary file stderr writes to meanwhile */
};

/*
 * Take the terminal (stdin/stdout must be a terminal). Sets the locale first: the user's, or
 * when that is plain ASCII, C.UTF-8 from our locale files or else from those of locale_pid's
 * root (0: none), so UTF-8 names show in a container without locale files. On failure nothing
 * else is changed. Errors: -ENOTTY (not a terminal, or TERM unknown), -errno parking stderr.
 */
int ui_term_open(struct ui_term *t, pid_t locale_pid, struct ps_err *err) PS_WARN_UNUSED;

/* Give the terminal back and replay parked stderr; safe to call twice and on a failed open. */
void ui_term_close(struct ui_term *t);

/* Follow a SIGWINCH: read the size from the tty, resize curses' screen, repaint it all. */
void ui_term_resize(struct ui_term *t);

/* The attributes for style (selected: the selection bar; focused: in the focused pane). */
chtype ui_term_attr(const struct ui_term *t, enum ui_style style, bool selected, bool focused);

/* Attributes of pane titles (focused or not) and of the key bar. */
chtype ui_term_title_attr(const struct ui_term *t, bool focused);

#endif
