/* SPDX-License-Identifier: MIT */
/*
 * Text writer for `pyscope dump` (see out.h). Data flow: a finished struct snap in, lines on a
 * caller's FILE * out; the JSON writer (out_json.c) renders the same model. Frames are printed
 * outermost first, like a Python traceback, so the line an SRE reads last is where the thread
 * is now.
 *
 * Invariants: every string that came from the target (names, paths, wait channels, source
 * lines) goes through text_put(), which escapes C0/C1 control characters and bytes that are
 * not UTF-8, so a hostile thread name cannot drive the reader's terminal. Source files are
 * read through a per-call srcline cache (srcline.h: a few files, bounded, opened only as the
 * target could, never blocking). Failing to read source is not an
 * error (nor is running out of memory for the cache); failing to
 * write is, and is reported once after the final flush (stdio errors are sticky).
 */
#include "pyscope/out.h"
#include "pyscope/srcline.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "out_int.h"

/* Bytes of a stripped source line shown; longer lines end in "...". */
#define SRC_LINE_SHOWN 200

/* ANSI SGR parameters. */
#define SGR_RESET  "0"
#define SGR_BOLD   "1"
#define SGR_RED    "31"
#define SGR_GREEN  "32"
#define SGR_YELLOW "33"
#define SGR_DIM    "2"

struct text_ctx {
    FILE *fp;
    const struct out_opts *opts;
    struct srcline_cache *cache; /* NULL: no source lines */
    const struct snap *snap;     /* the snapshot written */
};

const char *out_status_name(enum snap_thread_status status)
{
    switch (status) {
    case SNAP_THREAD_OK: return "ok";
    case SNAP_THREAD_INCONSISTENT: return "inconsistent";
    case SNAP_THREAD_TRUNCATED: return "truncated";
    case SNAP_THREAD_ERROR: return "error";
    case SNAP_THREAD_PARTIAL: return "partial";
    }
    return "error";
}

/* ---- safe printing ---------------------------------------------------------------------- */

/* Length of the UTF-8 sequence that lead byte c starts (1-4), or 0 when c cannot start one. */
static size_t text_lead_len(unsigned char c)
{
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return 2;
    if (c >= 0xE0 && c <= 0xEF)
        return 3;
    return c >= 0xF0 && c <= 0xF4 ? 4 : 0;
}

/* Length of the UTF-8 sequence at p that may reach a terminal as is, or 0 to escape p[0]. */
static size_t text_safe_len(const unsigned char *p, size_t n)
{
    size_t len = text_lead_len(p[0]);

    if (len == 1)
        return (p[0] < 0x20 && p[0] != '\t') || p[0] == 0x7F ? 0 : 1;
    if (len == 0 || len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    }
    /* U+0080..U+009F are the C1 controls (CSI among them). */
    return p[0] == 0xC2 && p[1] <= 0x9F ? 0 : len;
}

/* Write n bytes of str with controls and non-UTF-8 bytes escaped (\xNN, \u00NN for C1). */
static void text_put_n(FILE *fp, const char *str, size_t n)
{
    const unsigned char *p = (const unsigned char *)str;
    size_t i = 0;

    while (i < n) {
        size_t len = text_safe_len(p + i, n - i);
        if (len > 0) {
            (void)fwrite(p + i, 1, len, fp);
            i += len;
        } else if (p[i] == 0xC2 && i + 1 < n && p[i + 1] >= 0x80 && p[i + 1] <= 0x9F) {
            (void)fprintf(fp, "\\u%04x", (unsigned)p[i + 1]);
            i += 2;
        } else {
            (void)fprintf(fp, "\\x%02x", (unsigned)p[i]);
            i++;
        }
    }
}

static void text_put(FILE *fp, const char *str)
{
    text_put_n(fp, str, strlen(str));
}

static void text_sgr(const struct text_ctx *c, const char *code)
{
    if (c->opts->color)
        (void)fprintf(c->fp, "\033[%sm", code);
}

/* ---- source lines ------------------------------------------------------------------------ */

static void text_source(struct text_ctx *c, const struct snap_frame *fr)
{
    const char *p = NULL;
    size_t len = 0;

    if (!c->cache || !srcline_get(c->cache, fr->file, fr->line, &p, &len))
        return;
    (void)fputs("    ", c->fp);
    if (len <= SRC_LINE_SHOWN) {
        text_put_n(c->fp, p, len);
    } else {
        len = SRC_LINE_SHOWN;
        while (len > 0 && ((unsigned char)p[len] & 0xC0) == 0x80)
            len--; /* do not cut a UTF-8 sequence */
        text_put_n(c->fp, p, len);
        (void)fputs("...", c->fp);
    }
    (void)fputc('\n', c->fp);
}

/* ---- report ------------------------------------------------------------------------------ */

void out_text_bytes(char *buf, size_t size, uint64_t n)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    size_t u = 0;

    if (n < 1024) {
        (void)snprintf(buf, size, "%" PRIu64 " B", n);
        return;
    }
    v /= 1024.0;
    while (v >= 1024.0 && u + 1 < sizeof(units) / sizeof(units[0])) {
        v /= 1024.0;
        u++;
    }
    (void)snprintf(buf, size, "%.1f %s", v, units[u]);
}

static void text_when(FILE *fp, double timestamp)
{
    char buf[64];
    struct tm tm;
    time_t t;

    if (!isfinite(timestamp) || timestamp <= 0 || timestamp > 253402300799.0)
        return; /* unknown, or past 9999-12-31 */
    t = (time_t)timestamp;
    if (!gmtime_r(&t, &tm) || strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
        return;
    (void)fprintf(fp, " at %s", buf);
}

static void text_header(struct text_ctx *c, const struct snap *s)
{
    FILE *fp = c->fp;
    const char *cmd = s->cmdline && s->cmdline[0] ? s->cmdline : s->exe ? s->exe : "?";
    char rss[32];

    (void)fprintf(fp, "Process %ld: ", (long)s->pid);
    text_put(fp, cmd);
    (void)fprintf(fp, "\nPython %s (", s->python_version[0] ? s->python_version : "?");
    text_put(fp, s->exe ? s->exe : "?");
    if (s->image && (!s->exe || strcmp(s->image, s->exe) != 0)) {
        (void)fputs(", runtime in ", fp);
        text_put(fp, s->image);
    }
    out_text_bytes(rss, sizeof(rss), s->rss_bytes);
    (void)fprintf(fp, ")\nCPU user %.2f s, system %.2f s; RSS %s; %zu thread%s\nSnapshot",
                  s->cpu_user_s, s->cpu_system_s, rss, s->nthreads, s->nthreads == 1 ? "" : "s");
    text_when(fp, s->timestamp);
    if (s->read_seconds < 1.0)
        (void)fprintf(fp, " took %.2f ms", s->read_seconds * 1000.0);
    else
        (void)fprintf(fp, " took %.2f s", s->read_seconds);
    (void)fprintf(fp, " (%" PRIu64 " reads), threads %s\n", s->read_calls,
                  s->blocking_auto ? "stopped (--blocking=auto: reads without stopping kept "
                                     "tearing)"
                  : s->blocking    ? "stopped"
                                   : "not stopped");
}

static void text_os(FILE *fp, const struct snap_os *os)
{
    size_t wlen = strnlen(os->wchan, sizeof(os->wchan));

    if (os->state <= ' ' || os->state > '~' || os->state == '?')
        return;
    (void)fprintf(fp, " (os: %c", os->state);
    if (wlen > 0 && strcmp(os->wchan, "0") != 0) {
        (void)fputs(" in ", fp);
        text_put_n(fp, os->wchan, wlen);
    }
    (void)fputc(')', fp);
}

static void text_thread_header(struct text_ctx *c, const struct snap_thread *t)
{
    FILE *fp = c->fp;

    text_sgr(c, SGR_BOLD);
    if (t->os_only)
        (void)fprintf(fp, "OS thread %ld", (long)t->native_id);
    else
        (void)fprintf(fp, "Thread %" PRIu64 " (native %ld)", t->thread_id, (long)t->native_id);
    if (t->name) {
        (void)fputs(" \"", fp);
        text_put(fp, t->name);
        (void)fputc('"', fp);
    }
    text_sgr(c, SGR_RESET);
    if (snap_thread_os_name(c->snap, t)) {
        (void)fputs(" (OS name \"", fp);
        text_put(fp, t->os_name);
        (void)fputs("\")", fp);
    }
    if (t->os_only)
        (void)fputs(" [no Python thread state]", fp);
    if (t->interp_id != 0)
        (void)fprintf(fp, " [interpreter %" PRId64 "]", t->interp_id);
    if (t->gil) {
        (void)fputc(' ', fp);
        text_sgr(c, SGR_GREEN);
        (void)fputs("[holds the GIL]", fp);
        text_sgr(c, SGR_RESET);
    }
    if (t->activity) {
        (void)fputc(' ', fp);
        text_put(fp, t->activity);
    }
    text_os(fp, &t->os);
    (void)fputc('\n', fp);
}

static void text_status_note(FILE *fp, const struct snap_thread *t)
{
    switch (t->status) {
    case SNAP_THREAD_INCONSISTENT:
    case SNAP_THREAD_PARTIAL:
        /* The error sentence already says what changed and how often: say it once. */
        if (t->error) {
            (void)fputs("  note: ", fp);
            text_put(fp, t->error);
        } else {
            (void)fprintf(fp,
                          "  note: the stack kept changing while it was read (%d attempts); "
                          "the frames may be partial",
                          t->attempts);
        }
        return;
    case SNAP_THREAD_TRUNCATED:
        (void)fprintf(fp,
                      "  note: the stack is deeper than the frame cap; only the innermost "
                      "%zu frames are shown",
                      t->nframes);
        return;
    case SNAP_THREAD_OK:
    case SNAP_THREAD_ERROR:
    default: (void)fputs(t->error ? "  error" : "  error: the stack could not be read", fp); break;
    }
    if (t->error) {
        (void)fputs(": ", fp);
        text_put(fp, t->error);
    }
}

static void text_thread_notes(struct text_ctx *c, const struct snap_thread *t)
{
    if (t->status != SNAP_THREAD_OK) {
        text_sgr(c, t->status == SNAP_THREAD_ERROR ? SGR_RED : SGR_YELLOW);
        text_status_note(c->fp, t);
        text_sgr(c, SGR_RESET);
        (void)fputc('\n', c->fp);
    }
    if (t->nframes == 0 && t->status != SNAP_THREAD_ERROR && !t->os_only)
        (void)fputs("  (no Python frames)\n", c->fp);
}

/* --locals: "      arg   n = 5" per variable, under the frame's source line. */
static void text_vars(struct text_ctx *c, const struct snap_frame *f)
{
    for (size_t i = 0; i < f->nvars; i++) {
        const struct snap_var *v = &f->vars[i];

        (void)fprintf(c->fp, "      %-5s ", v->kind ? v->kind : "?");
        text_put(c->fp, v->name ? v->name : "?");
        (void)fputs(" = ", c->fp);
        text_put(c->fp, v->unreadable || !v->repr ? "<unreadable>" : v->repr);
        (void)fputc('\n', c->fp);
    }
}

static void text_frame(struct text_ctx *c, const struct snap_frame *f)
{
    FILE *fp = c->fp;
    /* co_name, as traceback prints it; the qualname is in the JSON. */
    const char *name = f->function ? f->function : f->qualname ? f->qualname : "<unknown>";

    (void)fputs("  File \"", fp);
    text_put(fp, f->file ? f->file : "<unknown>");
    if (f->line >= 0)
        (void)fprintf(fp, "\", line %d, in ", f->line);
    else
        (void)fputs("\", line ?, in ", fp);
    text_sgr(c, SGR_BOLD);
    text_put(fp, name);
    text_sgr(c, SGR_RESET);
    (void)fputc('\n', fp);
    if (c->opts->source_lines)
        text_source(c, f);
    text_vars(c, f);
}

/* A thread's exception, traceback-style: "  Handling KeyError: 'x'" then its traceback lines. */
static void text_exc(struct text_ctx *c, const char *what, const struct snap_exc *e)
{
    if (!e)
        return;
    (void)fprintf(c->fp, "  %s ", what);
    text_put(c->fp, e->type);
    if (e->message) {
        (void)fputs(": ", c->fp);
        text_put(c->fp, e->message);
    }
    if (e->cause_type || e->context_type) {
        (void)fputs(e->cause_type ? " (caused by " : " (during handling of ", c->fp);
        text_put(c->fp, e->cause_type ? e->cause_type : e->context_type);
        (void)fputc(')', c->fp);
    }
    (void)fputc('\n', c->fp);
    for (size_t i = 0; i < e->ntb; i++) {
        (void)fputs("  ", c->fp);
        text_frame(c, &e->tb[i]);
    }
}

/* One native frame: "  native 0x7f..: take_gil+0x4f (libpython3.12.so.1.0)", then -v's insn. */
static void text_native_frame(struct text_ctx *c, const struct snap_native_frame *f)
{
    const char *slash = f->module ? strrchr(f->module, '/') : NULL;

    text_sgr(c, SGR_DIM);
    (void)fprintf(c->fp, "  native 0x%016" PRIx64 ": ", f->pc);
    text_put(c->fp, f->symbol ? f->symbol : "??");
    if (f->symbol)
        (void)fprintf(c->fp, "+0x%" PRIx64, f->offset);
    (void)fputs(" (", c->fp);
    text_put(c->fp, slash ? slash + 1 : f->module ? f->module : "anonymous");
    (void)fputs(")\n", c->fp);
    if (f->insn) {
        (void)fputs("      ", c->fp);
        text_put(c->fp, f->insn);
        (void)fputc('\n', c->fp);
    }
    text_sgr(c, SGR_RESET);
}

/* True when the native stack links Python frames (merged), so they print interleaved. */
static bool text_native_merged(const struct snap_thread *t)
{
    if (t->native_error)
        return false;
    for (size_t i = 0; i < t->nnative; i++)
        if (t->native[i].python_frame >= 0 || t->native[i].nested_thread >= 0)
            return true;
    return false;
}

/* The Python frames of one eval call: python_frame up to its run's is_entry frame. */
static void text_native_run(struct text_ctx *c, const struct snap_thread *t, size_t first)
{
    size_t last = first;

    while (last + 1 < t->nframes && !t->frames[last].is_entry)
        last++;
    for (size_t j = last + 1; j > first && j - 1 < t->nframes; j--)
        text_frame(c, &t->frames[j - 1]);
}

/* An eval call running another interpreter's thread state on this OS thread: its frames,
 * under a line that names the interpreter. */
static void text_nested_run(struct text_ctx *c, const struct snap *s,
                            const struct snap_native_frame *f)
{
    const struct snap_thread *o;

    if (f->nested_thread < 0 || (size_t)f->nested_thread >= s->nthreads)
        return;
    o = &s->threads[f->nested_thread];
    (void)fprintf(c->fp, "  (nested: interpreter %" PRId64 "'s thread state", o->interp_id);
    if (o->name) {
        (void)fputs(" \"", c->fp);
        text_put(c->fp, o->name);
        (void)fputc('"', c->fp);
    }
    (void)fputs(")\n", c->fp);
    if (f->nested_frame >= 0)
        text_native_run(c, o, (size_t)f->nested_frame);
}

/* The C stack, outermost first, with each eval call's Python frames after it when merged. */
static void text_native_stack(struct text_ctx *c, const struct snap *s, const struct snap_thread *t)
{
    bool merged = text_native_merged(t);

    if (!merged && t->nnative > 0)
        (void)fputs("  Native stack (innermost last):\n", c->fp);
    for (size_t i = t->nnative; i > 0; i--) {
        const struct snap_native_frame *f = &t->native[i - 1];

        text_native_frame(c, f);
        if (merged && f->python_frame >= 0)
            text_native_run(c, t, (size_t)f->python_frame);
        if (merged)
            text_nested_run(c, s, f);
    }
    if (t->native_error) {
        text_sgr(c, SGR_YELLOW);
        (void)fputs("  native: ", c->fp);
        text_put(c->fp, t->native_error);
        text_sgr(c, SGR_RESET);
        (void)fputc('\n', c->fp);
    }
}

static int text_flush(FILE *fp, struct ps_err *err)
{
    int e;

    errno = 0;
    if (fflush(fp) == 0 && !ferror(fp))
        return 0;
    e = errno > 0 ? errno : EIO;
    return ps_err_set(err, -e, "cannot write the text dump: %s; check the output file or pipe",
                      strerror(e));
}

void out_text_frame(struct text_ctx *c, const struct snap_frame *f)
{
    text_frame(c, f);
}

void out_text_escaped(FILE *fp, const char *str)
{
    text_put(fp, str);
}

int out_text_write(FILE *fp, const struct snap *s, const struct out_opts *opts, struct ps_err *err)
{
    static const struct out_opts defaults;
    struct text_ctx c = {.fp = fp, .opts = opts ? opts : &defaults, .snap = s};

    assert(fp && s);
    if (c.opts->source_lines &&
        srcline_cache_new(c.opts->source_root, c.opts->source_pid, &c.cache, NULL) != 0)
        c.cache = NULL; /* out of memory: no source lines, still a report */
    if (c.cache && c.opts->source_as)
        srcline_cache_set_cred(c.cache, c.opts->source_as);
    text_header(&c, s);
    for (size_t i = 0; i < s->nthreads; i++) {
        const struct snap_thread *t = &s->threads[i];
        (void)fputc('\n', fp);
        text_thread_header(&c, t);
        text_thread_notes(&c, t);
        if (text_native_merged(t))
            text_native_stack(&c, s, t);
        else
            for (size_t j = t->nframes; j > 0; j--)
                text_frame(&c, &t->frames[j - 1]);
        if (!text_native_merged(t) && (t->nnative > 0 || t->native_error))
            text_native_stack(&c, s, t);
        text_exc(&c, "Handling", t->exc_handled);
        text_exc(&c, "Raising", t->exc_current);
    }
    if (s->tasks)
        out_tasks_text(&c, fp, s); /* dump --tasks */
    srcline_cache_free(c.cache);
    return text_flush(fp, err);
}
