/* SPDX-License-Identifier: MIT */
/*
 * TUI models (see view.h): snapshot and friends in, fitted display lines out. No curses and no
 * target access: this is the part of the UI the unit tests drive with hand-made snapshots.
 *
 * Invariant: every byte that reaches a line went through ui_fit/ui_fit_left, which decode with
 * the C library (the locale the terminal set), replace what cannot be shown with '?', and pad
 * or cut to the exact column count, so panes can draw lines without measuring them again. In a
 * single-byte locale (no UTF-8 locale could be loaded: term.c) a valid UTF-8 character is
 * shown escaped as \u00e9 (\U0001f600 above U+FFFF), as Python's ascii() does, not as '?'.
 */
#include "view.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>
#include <wctype.h>

/* One decoded character: its bytes (or "?", or its escape) and its width in columns. */
struct ui_char {
    const char *bytes;
    size_t len;  /* bytes to copy */
    size_t used; /* bytes consumed from the source */
    int width;
    char esc[12]; /* "\u00e9": bytes points here when escaped */
};

/* The UTF-8 sequence at s (n bytes, s[0] >= 0x80): its code point and length; 0 if invalid. */
static size_t ui_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    size_t len = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
    uint32_t v = len == 4 ? s[0] & 0x07u : len == 3 ? s[0] & 0x0fu : s[0] & 0x1fu;

    if (s[0] >= 0xf5 || len == 0 || len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3fu);
    }
    if ((len == 3 && v < 0x800) || (len == 4 && (v < 0x10000 || v > 0x10ffff)) ||
        (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return len;
}

/* A single-byte locale (no UTF-8 one loaded): a UTF-8 character escaped. False if invalid. */
static bool ui_escape_utf8(const char *s, size_t n, struct ui_char *c)
{
    uint32_t cp = 0;
    size_t len = MB_CUR_MAX == 1 && (unsigned char)s[0] >= 0x80
                     ? ui_utf8_decode((const unsigned char *)s, n, &cp)
                     : 0;
    int w;

    if (len == 0)
        return false;
    w = snprintf(c->esc, sizeof(c->esc), cp > 0xffff ? "\\U%08x" : "\\u%04x", (unsigned)cp);
    c->bytes = c->esc;
    c->len = (size_t)w;
    c->used = len;
    c->width = w;
    return true;
}

static void ui_next_char(const char *s, size_t n, mbstate_t *st, struct ui_char *c)
{
    wchar_t wc = 0;
    size_t r;
    int w;

    if (ui_escape_utf8(s, n, c))
        return;
    r = mbrtowc(&wc, s, n, st);

    if (r == (size_t)-1 || r == (size_t)-2 || r == 0) {
        memset(st, 0, sizeof(*st));
        *c = (struct ui_char){.bytes = "?", .len = 1, .used = 1, .width = 1};
        return;
    }
    w = wcwidth(wc);
    if (iswcntrl((wint_t)wc) || w < 0) {
        *c = (struct ui_char){.bytes = "?", .len = 1, .used = r, .width = 1};
        return;
    }
    *c = (struct ui_char){.bytes = s, .len = r, .used = r, .width = w};
}

/* Display width of src after replacements. */
static int ui_width(const char *src)
{
    mbstate_t st;
    size_t n = strlen(src);
    int w = 0;

    memset(&st, 0, sizeof(st));
    while (n > 0) {
        struct ui_char c;
        ui_next_char(src, n, &st, &c);
        w += c.width;
        src += c.used;
        n -= c.used;
    }
    return w;
}

/* Append the characters of src to dst[*used] while they fit in `cols` more columns (and in
 * cap); returns the columns written. */
static int ui_put(char *dst, size_t cap, size_t *used, const char *src, int cols)
{
    mbstate_t st;
    size_t n = strlen(src);
    int w = 0;

    memset(&st, 0, sizeof(st));
    while (n > 0) {
        struct ui_char c;
        ui_next_char(src, n, &st, &c);
        if (w + c.width > cols || *used + c.len + (size_t)(cols - w) >= cap)
            break;
        memcpy(dst + *used, c.bytes, c.len);
        *used += c.len;
        w += c.width;
        src += c.used;
        n -= c.used;
    }
    return w;
}

static void ui_pad(char *dst, size_t cap, size_t *used, int cols)
{
    while (cols-- > 0 && *used + 1 < cap)
        dst[(*used)++] = ' ';
    dst[*used] = '\0';
}

char *ui_fit(char *dst, size_t cap, const char *src, int cols)
{
    size_t used = 0;
    int w;

    if (cap == 0)
        return dst;
    cols = cols < 0 ? 0 : cols;
    if ((size_t)cols >= cap)
        cols = (int)cap - 1;
    if (ui_width(src) <= cols || cols < 2) {
        w = ui_put(dst, cap, &used, src, cols);
    } else {
        w = ui_put(dst, cap, &used, src, cols - 1);
        dst[used++] = '~';
        w++;
    }
    ui_pad(dst, cap, &used, cols - w);
    return dst;
}

char *ui_fit_left(char *dst, size_t cap, const char *src, int cols)
{
    mbstate_t st;
    size_t n = strlen(src), used = 0;
    int excess = ui_width(src) - (cols - 1);

    if (cols < 2 || excess <= 1)
        return ui_fit(dst, cap, src, cols);
    memset(&st, 0, sizeof(st));
    while (n > 0 && excess > 0) {
        struct ui_char c;
        ui_next_char(src, n, &st, &c);
        excess -= c.width;
        src += c.used;
        n -= c.used;
    }
    dst[used++] = '~';
    ui_pad(dst, cap, &used, cols - 1 - ui_put(dst, cap, &used, src, cols - 1));
    return dst;
}

size_t ui_cat(char *dst, size_t cap, size_t used, const char *src)
{
    size_t len = strlen(src);

    if (cap == 0 || used >= cap)
        return used;
    if (len > cap - 1 - used)
        len = cap - 1 - used;
    memcpy(dst + used, src, len);
    dst[used + len] = '\0';
    return used + len;
}

const char *ui_short_path(const char *path)
{
    const char *last = strrchr(path, '/'), *p;

    if (!last || last == path)
        return path;
    for (p = last - 1; p > path && *p != '/'; p--)
        ;
    return *p == '/' ? p + 1 : path;
}

const char *ui_bytes(char *buf, size_t cap, double bytes)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    size_t u = 0;

    while (bytes >= 1024.0 && u + 1 < sizeof(units) / sizeof(units[0])) {
        bytes /= 1024.0;
        u++;
    }
    (void)snprintf(buf, cap, u == 0 ? "%.0f %s" : "%.1f %s", bytes, units[u]);
    return buf;
}

const char *ui_duration(char *buf, size_t cap, double seconds)
{
    long s = seconds > 0 && seconds < 1e12 ? (long)seconds : 0;

    if (s < 60)
        (void)snprintf(buf, cap, "%lds", s);
    else if (s < 3600)
        (void)snprintf(buf, cap, "%ldm%02lds", s / 60, s % 60);
    else if (s < 86400)
        (void)snprintf(buf, cap, "%ldh%02ldm", s / 3600, s % 3600 / 60);
    else
        (void)snprintf(buf, cap, "%ldd%02ldh", s / 86400, s % 86400 / 3600);
    return buf;
}

const char *ui_spark(char *buf, size_t cap, const double *v, size_t n, bool utf8)
{
    static const char *const blocks[] = {"\u2581", "\u2582", "\u2583", "\u2584",
                                         "\u2585", "\u2586", "\u2587", "\u2588"};
    static const char ascii[] = " .:-=+*#";
    double lo = HUGE_VAL, hi = -HUGE_VAL;
    size_t used = 0;

    for (size_t i = 0; i < n; i++)
        if (v[i] >= 0) {
            lo = fmin(lo, v[i]);
            hi = fmax(hi, v[i]);
        }
    for (size_t i = 0; i < n && used + 4 < cap; i++) {
        int level = v[i] < 0 ? -1 : hi > lo ? (int)((v[i] - lo) / (hi - lo) * 7.0 + 0.5) : 0;
        char one[2] = " ";
        if (level >= 0)
            one[0] = ascii[level];
        const char *s = level >= 0 && utf8 ? blocks[level] : one;
        size_t len = strlen(s);
        memcpy(buf + used, s, len);
        used += len;
    }
    if (cap > 0)
        buf[used < cap ? used : cap - 1] = '\0';
    return buf;
}

/* ---- header ----------------------------------------------------------------------------- */

void ui_line_set(struct ui_line *l, const char *text, int width, enum ui_style style, uint64_t key)
{
    ui_fit(l->text, sizeof(l->text), text, width);
    l->style = style;
    l->key = key;
    l->selectable = key != 0;
}

/* v with `decimals` decimals, or "-" when unknown (negative or not finite). */
static const char *ui_num(char *buf, size_t cap, int decimals, double v)
{
    if (v < 0 || !isfinite(v))
        (void)snprintf(buf, cap, "-");
    else
        (void)snprintf(buf, cap, "%.*f", decimals, v);
    return buf;
}

static const char *ui_gil_holder(const struct snap *s, char *buf, size_t cap)
{
    for (size_t i = 0; s && i < s->nthreads; i++)
        if (s->threads[i].gil) {
            (void)snprintf(buf, cap, "%s (%d)", s->threads[i].name ? s->threads[i].name : "unnamed",
                           (int)s->threads[i].native_id);
            return buf;
        }
    return "nobody";
}

static void ui_header_line1(const struct ui_header_in *in, int width, struct ui_line *out)
{
    const struct snap *s = in->snap;
    char up[32], text[UI_LINE_MAX];

    (void)snprintf(text, sizeof(text), "pid %d  Python %s  up %s  %s", s ? (int)s->pid : 0,
                   s && s->python_version[0] ? s->python_version : "?",
                   ui_duration(up, sizeof(up), in->uptime_s), s && s->cmdline ? s->cmdline : "");
    ui_line_set(out, text, width, UI_STYLE_HEADING, 0);
}

static void ui_header_line2(const struct ui_header_in *in, int width, struct ui_line *out)
{
    char cpu[16], rss[32], cpu_t[64], rss_t[64], gil[160], sw[32], text[UI_LINE_MAX];
    const struct snap *s = in->snap;

    (void)snprintf(
        text, sizeof(text), "CPU %s%% %s  RSS %s %s  threads %zu  GIL %s  %s/s switches",
        ui_num(cpu, sizeof(cpu), 0, in->cpu_pct),
        ui_spark(cpu_t, sizeof(cpu_t), in->cpu_trend, in->cpu_trend ? UI_TREND_N : 0, in->utf8),
        s ? ui_bytes(rss, sizeof(rss), (double)s->rss_bytes) : "-",
        ui_spark(rss_t, sizeof(rss_t), in->rss_trend, in->rss_trend ? UI_TREND_N : 0, in->utf8),
        s ? s->nthreads : 0, ui_gil_holder(s, gil, sizeof(gil)),
        ui_num(sw, sizeof(sw), 0, in->gil_switch_rate));
    ui_line_set(out, text, width, UI_STYLE_NORMAL, 0);
}

/* Whether tracing took over twice its budget in the last second (with bpf: counting every raise
 * in the kernel, which the budget does not limit, on a machine where a uprobe trap is dear): the
 * header then says what it costs, so the user can weigh it (e turns tracing off). */
static bool ui_trace_over_budget(const struct ui_header_in *in)
{
    return in->trace_cost_pct >= 1.0 && in->trace_budget_pct > 0 &&
           in->trace_cost_pct > 2 * in->trace_budget_pct;
}

static void ui_header_line3(const struct ui_header_in *in, int width, struct ui_line *out)
{
    char smp[192], exc[96], rate[32], text[UI_LINE_MAX];

    if (in->sampling)
        (void)snprintf(smp, sizeof(smp), "sampling %s/s, %s",
                       ui_num(rate, sizeof(rate), 0, in->sample_rate),
                       in->sample_lost ? in->sample_lost : "no samples lost");
    else
        (void)snprintf(smp, sizeof(smp), "sampling off");
    if (in->tracing && ui_trace_over_budget(in))
        (void)snprintf(exc, sizeof(exc), "exceptions %s/s (%s, costs %.0f%% of its CPU)",
                       ui_num(rate, sizeof(rate), 1, in->exc_rate),
                       in->trace_mech ? in->trace_mech : "?", in->trace_cost_pct);
    else if (in->tracing)
        (void)snprintf(exc, sizeof(exc), "exceptions %s/s (%s)",
                       ui_num(rate, sizeof(rate), 1, in->exc_rate),
                       in->trace_mech ? in->trace_mech : "?");
    else
        (void)snprintf(exc, sizeof(exc), "exception tracing off (e)");
    (void)snprintf(text, sizeof(text), "%s  %s%s%s", smp, exc, in->status ? "  | " : "",
                   in->status ? in->status : "");
    ui_line_set(out, text, width, in->status_error ? UI_STYLE_ERROR : UI_STYLE_NORMAL, 0);
}

void ui_view_header(const struct ui_header_in *in, int width, struct ui_line out[3])
{
    ui_header_line1(in, width, &out[0]);
    ui_header_line2(in, width, &out[1]);
    ui_header_line3(in, width, &out[2]);
}

/* ---- threads ---------------------------------------------------------------------------- */

const struct snap_thread *ui_view_find_thread(const struct snap *s, pid_t tid)
{
    for (size_t i = 0; s && i < s->nthreads; i++)
        if (s->threads[i].native_id == tid)
            return &s->threads[i];
    return NULL;
}

/* CPU% of thread t since prev, or -1 when unknown. */
static double ui_thread_cpu(const struct snap_thread *t, const struct snap *s,
                            const struct snap *prev, long hz)
{
    const struct snap_thread *p = ui_view_find_thread(prev, t->native_id);
    double dt = prev ? s->timestamp - prev->timestamp : 0;
    uint64_t now, before;

    if (!p || dt <= 0 || hz <= 0)
        return -1;
    now = t->os.utime_ticks + t->os.stime_ticks;
    before = p->os.utime_ticks + p->os.stime_ticks;
    return now >= before ? (double)(now - before) / (double)hz / dt * 100.0 : -1;
}

/* Join columns: each src[i] fitted to w[i] columns, one space between. */
static void ui_columns(char *dst, size_t cap, const char *const *src, const int *w, size_t n)
{
    size_t used = 0;

    dst[0] = '\0';
    for (size_t i = 0; i < n && used + 1 < cap; i++) {
        char cell[UI_LINE_MAX];
        ui_fit(cell, sizeof(cell), src[i], w[i]);
        used = ui_cat(dst, cap, used, i ? " " : "");
        used = ui_cat(dst, cap, used, cell);
    }
}

/* "python-name (os: os-name)": the OS name (pthread_setname_np) when it says something more
 * (snap_thread_os_name). */
static void ui_thread_name(const struct snap *s, const struct snap_thread *t, char *buf, size_t cap)
{
    const char *py = t->name ? t->name : "(unnamed)";
    const char *os = snap_thread_os_name(s, t);

    if (os)
        (void)snprintf(buf, cap, "%s (os: %s)", py, os);
    else
        (void)snprintf(buf, cap, "%s", py);
}

/* Widths of the name and state columns sharing `rest` columns: names first (they identify
 * the thread), the state keeping up to two fifths when its longest needs them. */
static void ui_thread_widths(const struct snap *s, int rest, int *name_w, int *state_w)
{
    int name = 4, state = 5;

    for (size_t i = 0; s && i < s->nthreads; i++) {
        const struct snap_thread *t = &s->threads[i];
        char shown[UI_LINE_MAX];
        int nw, sw;

        ui_thread_name(s, t, shown, sizeof(shown));
        nw = ui_width(shown);
        sw = ui_width(t->activity ? t->activity : "?");
        name = nw > name ? nw : name;
        state = sw > state ? sw : state;
    }
    state = state < rest * 2 / 5 ? state : rest * 2 / 5;
    *name_w = name < rest - state ? name : rest - state;
    *state_w = rest - *name_w;
}

size_t ui_view_threads(const struct snap *s, const struct snap *prev, long hz, int width,
                       struct ui_line *out, size_t cap)
{
    /* gil, tid, name, state, cpu and a space between each, and one blank column at the right
     * so that the CPU% column never touches the stack pane beside it */
    int rest = width - 18 > 10 ? width - 18 : 10;
    int w[5] = {1, 7, 0, 0, 5};
    const char *head[5] = {"", "TID", "NAME", "STATE", " CPU%"};
    char text[UI_LINE_MAX];
    size_t n = 0;

    if (cap == 0)
        return 0;
    ui_thread_widths(s, rest, &w[2], &w[3]);
    ui_columns(text, sizeof(text), head, w, 5);
    ui_line_set(&out[n++], text, width, UI_STYLE_HEADING, 0);
    for (size_t i = 0; s && i < s->nthreads && n < cap; i++) {
        const struct snap_thread *t = &s->threads[i];
        char tid[16], cpu[16], name[UI_LINE_MAX];
        const char *col[5] = {t->gil ? "*" : " ", tid, name, t->activity ? t->activity : "?", cpu};
        double pct = ui_thread_cpu(t, s, prev, hz);

        ui_thread_name(s, t, name, sizeof(name));
        (void)snprintf(tid, sizeof(tid), "%7d", (int)t->native_id);
        (void)snprintf(cpu, sizeof(cpu), pct < 0 ? "    -" : "%5.1f", pct);
        ui_columns(text, sizeof(text), col, w, 5);
        ui_line_set(&out[n++], text, width,
                    t->status == SNAP_THREAD_ERROR ? UI_STYLE_ERROR
                    : t->gil                       ? UI_STYLE_GIL
                                                   : UI_STYLE_NORMAL,
                    (uint64_t)t->native_id);
    }
    return n;
}

/* ---- stack ------------------------------------------------------------------------------ */

/* "function  file:line", the file cut from the left to what is left of the width. */
static void ui_frame_text(char *dst, size_t cap, const char *fn, const char *file, int line,
                          int width)
{
    char where[UI_LINE_MAX], name[UI_LINE_MAX], loc[UI_LINE_MAX];
    int fw = ui_width(fn ? fn : "?"), rest;
    size_t used;

    if (fw > width / 2)
        fw = width / 2;
    rest = width - 2 - fw - 2;
    (void)snprintf(where, sizeof(where), line > 0 ? "%s:%d" : "%s", file ? file : "?", line);
    ui_fit(name, sizeof(name), fn ? fn : "?", fw);
    ui_fit_left(loc, sizeof(loc), where, rest > 0 ? rest : 0);
    used = ui_cat(dst, cap, 0, "  ");
    used = ui_cat(dst, cap, used, name);
    used = ui_cat(dst, cap, used, "  ");
    (void)ui_cat(dst, cap, used, loc);
}

/* The source line of (file, line) as "      text", or false. */
static bool ui_source_text(struct srcline_cache *src, const char *file, int line, char *dst,
                           size_t cap)
{
    const char *p = NULL;
    size_t len = 0;

    if (!src || !srcline_get(src, file, line, &p, &len))
        return false;
    if (len > cap - 8)
        len = cap - 8;
    (void)snprintf(dst, cap, "      %.*s", (int)len, p);
    return true;
}

static size_t ui_stack_exc(const struct snap_exc *e, const char *what, int width,
                           struct ui_line *out, size_t n, size_t cap)
{
    char text[UI_LINE_MAX];

    if (!e || n >= cap)
        return n;
    (void)snprintf(text, sizeof(text), "%s %s%s%s", what, e->type ? e->type : "?",
                   e->message ? ": " : "", e->message ? e->message : "");
    ui_line_set(&out[n++], text, width, UI_STYLE_HOT, 0);
    return n;
}

static size_t ui_stack_vars(const struct snap_frame *f, int width, struct ui_line *out, size_t n,
                            size_t cap)
{
    char text[UI_LINE_MAX];

    for (size_t v = 0; v < f->nvars && n < cap; v++) {
        const struct snap_var *var = &f->vars[v];
        (void)snprintf(text, sizeof(text), "        %s = %s", var->name ? var->name : "?",
                       var->unreadable ? "<unreadable>"
                       : var->repr     ? var->repr
                                       : "<unbound>");
        ui_line_set(&out[n++], text, width, UI_STYLE_DIM, 0);
    }
    return n;
}

static size_t ui_stack_head(const struct snap_thread *t, int width, struct ui_line *out)
{
    char text[UI_LINE_MAX];

    (void)snprintf(text, sizeof(text), "%s (tid %d)%s, %s, %zu frames%s%s",
                   t->name ? t->name : "(unnamed)", (int)t->native_id,
                   t->gil ? " holds the GIL" : "", t->activity ? t->activity : "?", t->nframes,
                   t->error ? ": " : "", t->error ? t->error : "");
    ui_line_set(out, text, width, t->error ? UI_STYLE_ERROR : UI_STYLE_HEADING, 0);
    return 1;
}

/* Python frames [from, to) of t: the frame, its source line, its locals. */
static size_t ui_stack_py(const struct snap_thread *t, size_t from, size_t to,
                          struct srcline_cache *src, int width, struct ui_line *out, size_t n,
                          size_t cap)
{
    char text[UI_LINE_MAX];

    for (size_t i = from; i < to && i < t->nframes && n < cap; i++) {
        const struct snap_frame *f = &t->frames[i];
        ui_frame_text(text, sizeof(text), f->qualname ? f->qualname : f->function, f->file, f->line,
                      width);
        ui_line_set(&out[n++], text, width, i == 0 ? UI_STYLE_HOT : UI_STYLE_NORMAL, i + 1);
        if (n < cap && ui_source_text(src, f->file, f->line, text, sizeof(text)))
            ui_line_set(&out[n++], text, width, UI_STYLE_DIM, 0);
        n = ui_stack_vars(f, width, out, n, cap);
    }
    return n;
}

/* Where the Python frames of eval-loop call k end: the next merged call's first frame. */
static size_t ui_native_run_end(const struct snap_thread *t, size_t k)
{
    for (size_t j = k + 1; j < t->nnative; j++)
        if (t->native[j].python_frame > t->native[k].python_frame)
            return (size_t)t->native[j].python_frame;
    return t->nframes;
}

/* --native: C frames innermost first, each eval-loop call shown as the Python frames it runs. */
static size_t ui_stack_native(const struct snap_thread *t, struct srcline_cache *src, int width,
                              struct ui_line *out, size_t n, size_t cap)
{
    char text[UI_LINE_MAX];

    for (size_t k = 0; k < t->nnative && n < cap; k++) {
        const struct snap_native_frame *nf = &t->native[k];
        const char *mod = nf->module ? strrchr(nf->module, '/') : NULL;
        const char *where = mod ? mod + 1 : nf->module ? nf->module : "";

        if (nf->python_frame >= 0 && (size_t)nf->python_frame < t->nframes) {
            n = ui_stack_py(t, (size_t)nf->python_frame, ui_native_run_end(t, k), src, width, out,
                            n, cap);
            continue;
        }
        /* An unnamed frame (a stripped static function) shows its address, as dump and record
         * do: "??+0x0" would hide which function it is and make every such frame look alike. */
        if (nf->symbol)
            (void)snprintf(text, sizeof(text), "  [C] %s+0x%llx  %s", nf->symbol,
                           (unsigned long long)nf->offset, where);
        else
            (void)snprintf(text, sizeof(text), "  [C] 0x%llx  %s", (unsigned long long)nf->pc,
                           where);
        ui_line_set(&out[n++], text, width, UI_STYLE_DIM, 0);
    }
    return n;
}

size_t ui_view_stack(const struct snap_thread *t, struct srcline_cache *src, int width,
                     struct ui_line *out, size_t cap)
{
    char text[UI_LINE_MAX];
    size_t n;

    if (!t || cap == 0)
        return 0;
    n = ui_stack_head(t, width, out);
    n = ui_stack_exc(t->exc_current, "raising", width, out, n, cap);
    n = ui_stack_exc(t->exc_handled, "handling", width, out, n, cap);
    if (t->native_error && n < cap) {
        (void)snprintf(text, sizeof(text), "native stack: %s", t->native_error);
        ui_line_set(&out[n++], text, width, UI_STYLE_DIM, 0);
    }
    /* Merged only when the merge worked; otherwise the Python stack alone, as always. */
    if (t->nnative > 0 && !t->native_error)
        return ui_stack_native(t, src, width, out, n, cap);
    return ui_stack_py(t, 0, t->nframes, src, width, out, n, cap);
}

size_t ui_view_raise(const struct tracer_event *ev, struct srcline_cache *src, int width,
                     struct ui_line *out, size_t cap)
{
    char text[UI_LINE_MAX];
    size_t n = 0;

    if (!ev || cap < 2)
        return 0;
    (void)snprintf(text, sizeof(text), "raise #%llu in tid %d: %s%s%s", (unsigned long long)ev->seq,
                   (int)ev->native_id, ev->type, ev->has_message ? ": " : "",
                   ev->has_message ? ev->message : "");
    ui_line_set(&out[n++], text, width, UI_STYLE_HOT, 0);
    if (ev->handled_at.function[0])
        (void)snprintf(text, sizeof(text), "handled in %s at %s:%d (Esc: back)",
                       ev->handled_at.function, ev->handled_at.file, ev->handled_at.line);
    else
        (void)snprintf(text, sizeof(text), "%s (Esc: back)",
                       ev->propagating ? "still propagating" : "not handled yet");
    ui_line_set(&out[n++], text, width, UI_STYLE_HEADING, 0);
    for (size_t i = 0; i < ev->nframes && i < TRACER_MAX_FRAMES && n < cap; i++) {
        const struct tracer_frame *f = &ev->frames[i];
        ui_frame_text(text, sizeof(text), f->function, f->file, f->line, width);
        ui_line_set(&out[n++], text, width, UI_STYLE_NORMAL, i + 1);
        if (n < cap && ui_source_text(src, f->file, f->line, text, sizeof(text)))
            ui_line_set(&out[n++], text, width, UI_STYLE_DIM, 0);
    }
    return n;
}
