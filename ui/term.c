/* SPDX-License-Identifier: MIT */
/*
 * Terminal setup and teardown (see term.h). The one place that starts and ends curses, so the
 * terminal is restored on every path out of the TUI: ui_term_close is idempotent and the app
 * calls it on quit, on signals (read through its signalfd) and on errors.
 *
 * stderr is parked (fd 2 pointed at an unlinked temporary file) while curses owns the screen:
 * a library warning or a sanitizer report must not land in the middle of the panes; it is
 * replayed on the real stderr after the terminal is restored.
 */
#include "term.h"

#include <errno.h>
#include <fcntl.h>
#include <langinfo.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

enum ui_pair {
    UI_PAIR_TITLE = 1,
    UI_PAIR_TITLE_FOCUS,
    UI_PAIR_GIL,
    UI_PAIR_HOT,
    UI_PAIR_ERROR,
    UI_PAIR_HEADING,
};

/* A file with no name for the parked stderr: memory (memfd), so that attach also works where no
 * writable /tmp exists (a container holding only pyscope); /tmp where memfds are refused. */
static int ui_term_park_fd(struct ps_err *err)
{
    char path[] = "/tmp/pyscope-stderr.XXXXXX";
    int fd = memfd_create("pyscope-stderr", MFD_CLOEXEC);

    if (fd >= 0)
        return fd;
    fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0)
        return ps_err_set(err, -errno, "cannot park stderr in %s: %s", path, strerror(errno));
    (void)unlink(path);
    return fd;
}

static int ui_term_park_stderr(struct ui_term *t, struct ps_err *err)
{
    int fd = ui_term_park_fd(err);

    if (fd < 0)
        return fd;
    t->saved_err = fcntl(2, F_DUPFD_CLOEXEC, 3);
    if (t->saved_err < 0 || dup2(fd, 2) < 0) {
        int e = errno;
        (void)close(fd);
        if (t->saved_err >= 0)
            (void)close(t->saved_err);
        t->saved_err = -1;
        return ps_err_set(err, -e, "cannot park stderr: %s", strerror(e));
    }
    t->parked_err = fd;
    return 0;
}

/* Put stderr back and copy to it what was written meanwhile (bounded: 64 KiB). */
static void ui_term_unpark_stderr(struct ui_term *t)
{
    char buf[4096];
    ssize_t r;
    size_t copied = 0;

    if (t->saved_err < 0)
        return;
    (void)dup2(t->saved_err, 2);
    (void)close(t->saved_err);
    t->saved_err = -1;
    (void)lseek(t->parked_err, 0, SEEK_SET);
    while (copied < ((size_t)64 << 10) && (r = read(t->parked_err, buf, sizeof(buf))) > 0) {
        if (write(2, buf, (size_t)r) != r)
            break;
        copied += (size_t)r;
    }
    (void)close(t->parked_err);
    t->parked_err = -1;
}

static void ui_term_colors(struct ui_term *t)
{
    const char *no_color = getenv("NO_COLOR");

    t->color = has_colors() && !(no_color && no_color[0]);
    if (!t->color || start_color() == ERR) {
        t->color = false;
        return;
    }
    (void)use_default_colors();
    (void)init_pair(UI_PAIR_TITLE, COLOR_BLACK, COLOR_WHITE);
    (void)init_pair(UI_PAIR_TITLE_FOCUS, COLOR_BLACK, COLOR_CYAN);
    (void)init_pair(UI_PAIR_GIL, COLOR_GREEN, -1);
    (void)init_pair(UI_PAIR_HOT, COLOR_YELLOW, -1);
    (void)init_pair(UI_PAIR_ERROR, COLOR_RED, -1);
    (void)init_pair(UI_PAIR_HEADING, COLOR_CYAN, -1);
}

/* True when LC_CTYPE is now a UTF-8 locale. */
static bool ui_term_is_utf8(void)
{
    return strcmp(nl_langinfo(CODESET), "UTF-8") == 0;
}

/*
 * The user's locale; when it leaves the terminal in plain ASCII (LANG unset or C, or a UTF-8
 * locale whose files are missing, as in most containers and in a debug container's empty
 * root), a UTF-8 terminal is assumed: C.UTF-8 from our own locale files, else from the
 * target's (/proc/PID/root/usr/lib/locale through LOCPATH: a pod's debug container shares the
 * kernel, not the files). A locale the user chose and that loaded (say ISO-8859-1) is kept.
 */
static void ui_term_locale(pid_t pid)
{
    const char *ctype;
    char path[64];

    (void)setlocale(LC_ALL, "");
    if (ui_term_is_utf8())
        return;
    ctype = setlocale(LC_CTYPE, NULL);
    if (ctype && strcmp(ctype, "C") != 0 && strcmp(ctype, "POSIX") != 0)
        return;
    if (setlocale(LC_CTYPE, "C.UTF-8") && ui_term_is_utf8())
        return;
    if (pid <= 0 || getenv("LOCPATH"))
        return;
    (void)snprintf(path, sizeof(path), "/proc/%d/root/usr/lib/locale", (int)pid);
    if (setenv("LOCPATH", path, 1) != 0)
        return;
    if (!setlocale(LC_CTYPE, "C.UTF-8") || !ui_term_is_utf8())
        (void)setlocale(LC_CTYPE, "C");
    (void)unsetenv("LOCPATH"); /* the loaded locale stays mapped */
}

int ui_term_open(struct ui_term *t, pid_t locale_pid, struct ps_err *err)
{
    const char *term = getenv("TERM");
    int rc;

    memset(t, 0, sizeof(*t));
    t->saved_err = t->parked_err = -1;
    if (!isatty(0) || !isatty(1))
        return ps_err_set(err, -ENOTTY,
                          "attach needs a terminal on stdin and stdout; use `pyscope dump` in "
                          "scripts");
    ui_term_locale(locale_pid);
    t->utf8 = ui_term_is_utf8();
    rc = ui_term_park_stderr(t, err);
    if (rc < 0)
        return rc;
    t->screen = newterm(term && term[0] ? term : "vt100", stdout, stdin);
    if (!t->screen) {
        ui_term_unpark_stderr(t);
        return ps_err_set(err, -ENOTTY,
                          "cannot start curses for TERM=%s; set TERM to your "
                          "terminal (e.g. xterm-256color)",
                          term ? term : "");
    }
    (void)cbreak();
    (void)noecho();
    (void)keypad(stdscr, TRUE);
    (void)nodelay(stdscr, TRUE);
    (void)curs_set(0);
    (void)set_escdelay(25);
    ui_term_colors(t);
    return 0;
}

void ui_term_close(struct ui_term *t)
{
    if (t->screen) {
        (void)curs_set(1);
        (void)endwin();
        delscreen(t->screen);
        t->screen = NULL;
    }
    ui_term_unpark_stderr(t);
}

void ui_term_resize(struct ui_term *t)
{
    struct winsize ws;

    if (!t->screen || ioctl(1, TIOCGWINSZ, &ws) != 0 || ws.ws_row == 0 || ws.ws_col == 0)
        return;
    (void)resize_term(ws.ws_row, ws.ws_col);
    /* The terminal reflowed or cleared what it showed: repaint everything, diff nothing. */
    (void)clearok(curscr, TRUE);
}

static chtype ui_term_style_attr(const struct ui_term *t, enum ui_style style)
{
    switch (style) {
    case UI_STYLE_HEADING: return t->color ? COLOR_PAIR(UI_PAIR_HEADING) | A_BOLD : A_BOLD;
    case UI_STYLE_DIM: return A_DIM;
    case UI_STYLE_GIL: return t->color ? COLOR_PAIR(UI_PAIR_GIL) | A_BOLD : A_BOLD;
    case UI_STYLE_HOT: return t->color ? COLOR_PAIR(UI_PAIR_HOT) : A_BOLD;
    case UI_STYLE_ERROR: return t->color ? COLOR_PAIR(UI_PAIR_ERROR) | A_BOLD : A_BOLD;
    case UI_STYLE_NORMAL: return A_NORMAL;
    }
    return A_NORMAL;
}

chtype ui_term_attr(const struct ui_term *t, enum ui_style style, bool selected, bool focused)
{
    if (selected)
        return focused ? A_REVERSE | A_BOLD : A_REVERSE;
    return ui_term_style_attr(t, style);
}

chtype ui_term_title_attr(const struct ui_term *t, bool focused)
{
    if (!t->color)
        return focused ? A_REVERSE | A_BOLD : A_REVERSE;
    return COLOR_PAIR(focused ? UI_PAIR_TITLE_FOCUS : UI_PAIR_TITLE) | (focused ? A_BOLD : 0);
}
