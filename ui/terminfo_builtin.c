/* SPDX-License-Identifier: MIT */
/*
 * Built-in terminfo entries for the static binary (cmake/static.cmake compiles this file into it
 * alone; the dynamic build uses the system's database only).
 *
 * A pod image may have no terminfo database (distroless, scratch, an ephemeral debug container
 * holding just pyscope), and `attach` would then fail on "unknown terminal type". ncurses asks
 * _nc_fallback2(name) for an entry when its database has none: libtinfo's own fallback.o
 * answers NULL (Debian builds ncurses without --with-fallbacks); defining the function here
 * keeps that member out of the static link, so this one answers instead. The entries are the
 * build machine's compiled terminfo files (cmake/static.cmake embeds them), parsed on first use
 * by ncurses's own reader, _nc_read_termtype, and kept for the life of the process (ncurses
 * copies what it is given). A database found at run time is always tried first.
 *
 * Bounds: at most one parsed entry per embedded name (about ten), each read from a
 * buffer of known length. Called only from curses setup on the UI thread.
 */
#include <stdlib.h>
#include <string.h>
/* TERMTYPE2 and _nc_read_termtype are declared for ncurses's own use only. */
#define NCURSES_INTERNALS 1
#include <term.h>

struct ui_terminfo_entry {
    const char *name;
    const unsigned char *data;
    size_t len;
};

#include "terminfo_builtin_data.h"

#define UI_TERMINFO_N (sizeof(ui_terminfo_entries) / sizeof(ui_terminfo_entries[0]))

/* ncurses's hook (libtinfo's fallback.o), not in its headers; _nc_fallback is in term.h. The
 * names are ncurses's, hence reserved identifiers. */
// NOLINTNEXTLINE(bugprone-reserved-identifier,cert-dcl37-c,cert-dcl51-cpp,readability-identifier-naming)
const TERMTYPE2 *_nc_fallback2(const char *name);

static TERMTYPE2 ui_terminfo_parsed[UI_TERMINFO_N];
static signed char ui_terminfo_state[UI_TERMINFO_N]; /* 0 not tried, 1 parsed, -1 failed */

/* Parse entry i once; NULL when it does not parse. */
static const TERMTYPE2 *ui_terminfo_load(size_t i)
{
    const struct ui_terminfo_entry *e = &ui_terminfo_entries[i];
    char *copy;

    if (ui_terminfo_state[i] == 0) {
        /* _nc_read_termtype takes a mutable buffer; it reads at most len bytes of it. */
        copy = malloc(e->len);
        ui_terminfo_state[i] = -1;
        if (copy) {
            memcpy(copy, e->data, e->len);
            if (_nc_read_termtype(&ui_terminfo_parsed[i], copy, (int)e->len) == 1)
                ui_terminfo_state[i] = 1;
            free(copy);
        }
    }
    return ui_terminfo_state[i] == 1 ? &ui_terminfo_parsed[i] : NULL;
}

// NOLINTNEXTLINE(bugprone-reserved-identifier,cert-dcl37-c,cert-dcl51-cpp,readability-identifier-naming)
const TERMTYPE2 *_nc_fallback2(const char *name)
{
    for (size_t i = 0; name && i < UI_TERMINFO_N; i++)
        if (strcmp(name, ui_terminfo_entries[i].name) == 0)
            return ui_terminfo_load(i);
    return NULL;
}

/* The pre-6.1 interface, kept so that nothing pulls libtinfo's fallback.o back in. */
// NOLINTNEXTLINE(bugprone-reserved-identifier,cert-dcl37-c,cert-dcl51-cpp,readability-identifier-naming)
const TERMTYPE *_nc_fallback(const char *name)
{
    (void)name;
    return NULL;
}
