/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for the TUI's models (ui/view*.c): hand-built snapshots, profiles and tracer
 * events in, display lines out. Checks fitting to exact widths with wide and hostile
 * characters, thread rows (CPU% from tick deltas, the GIL mark, identity keys), stacks with
 * source lines read from a real file, the top table's shares and filter, and the exception
 * feed's grouping, "handled at" and ring bound.
 */
#include <locale.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <wchar.h>

#include <cmocka.h>

#include "pyscope/profile.h"
#include "pyscope/snap.h"
#include "pyscope/srcline.h"
#include "view.h"

/* Display width of a fitted line (the test's own count, through mbstowcs + wcswidth). */
static int width_of(const char *s)
{
    wchar_t w[UI_LINE_MAX];
    size_t n = mbstowcs(w, s, UI_LINE_MAX);

    assert_true(n != (size_t)-1);
    return wcswidth(w, n);
}

static void test_fit(void **state)
{
    char out[UI_LINE_MAX];

    (void)state;
    assert_string_equal(ui_fit(out, sizeof(out), "abc", 6), "abc   ");
    assert_string_equal(ui_fit(out, sizeof(out), "abcdefgh", 5), "abcd~");
    assert_string_equal(ui_fit(out, sizeof(out), "a\033[2Jb\tc", 8), "a?[2Jb?c");
    /* wide characters count two columns and are never cut in half */
    ui_fit(out, sizeof(out), "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", 5);
    assert_int_equal(width_of(out), 5);
    assert_string_equal(out, "\xe6\x97\xa5\xe6\x9c\xac~");
    /* invalid UTF-8 becomes '?' */
    assert_string_equal(ui_fit(out, sizeof(out), "x\xff\xc3", 4), "x?? ");
    assert_string_equal(ui_fit(out, sizeof(out), "anything", 0), "");
    assert_string_equal(ui_fit_left(out, sizeof(out), "/usr/lib/python3.12/x.py:12", 10),
                        "~2/x.py:12");
    assert_string_equal(ui_fit_left(out, sizeof(out), "short.py", 10), "short.py  ");
    assert_string_equal(ui_short_path("/usr/lib/python3.12/email/feedparser.py"),
                        "email/feedparser.py");
    assert_string_equal(ui_short_path("/x.py"), "/x.py");
    assert_string_equal(ui_short_path("/a/x.py"), "a/x.py");
    assert_string_equal(ui_short_path("<string>"), "<string>");
    for (int w = 0; w < 40; w++) {
        ui_fit(out, sizeof(out), "na\xc3\xafve \xe6\x97\xa5\xe6\x9c\xac thread-name", w);
        assert_int_equal(width_of(out), w);
        ui_fit_left(out, sizeof(out), "/srv/\xe6\x97\xa5\xe6\x9c\xac/app/handlers.py", w);
        assert_int_equal(width_of(out), w);
    }
}

static void test_formats(void **state)
{
    char buf[64];
    double trend[4] = {1, -1, 2, 3};

    (void)state;
    assert_string_equal(ui_bytes(buf, sizeof(buf), 512), "512 B");
    assert_string_equal(ui_bytes(buf, sizeof(buf), 1.5 * 1024 * 1024), "1.5 MiB");
    assert_string_equal(ui_duration(buf, sizeof(buf), 42), "42s");
    assert_string_equal(ui_duration(buf, sizeof(buf), 307), "5m07s");
    assert_string_equal(ui_duration(buf, sizeof(buf), 3 * 3600 + 120), "3h02m");
    assert_string_equal(ui_spark(buf, sizeof(buf), trend, 4, false), "  =#");
    assert_string_equal(ui_spark(buf, sizeof(buf), trend, 4, true), "\u2581 \u2585\u2588");
}

/* A snapshot with threads (tid, name, gil, ticks). */
static struct snap *make_snap(double t, const uint64_t *ticks)
{
    static const char *const names[] = {"MainThread", "worker-\xe6\x97\xa5", NULL};
    struct ps_err err = {0};
    struct snap *s = NULL;

    assert_int_equal(snap_new(&s, &err), 0);
    s->timestamp = t;
    s->nthreads = 3;
    s->threads = snap_alloc(s, 3 * sizeof(*s->threads));
    assert_non_null(s->threads);
    for (size_t i = 0; i < 3; i++) {
        struct snap_thread *th = &s->threads[i];
        th->native_id = (pid_t)(100 + i);
        th->name = names[i] ? snap_strdup(s, names[i]) : NULL;
        th->gil = i == 1;
        th->activity = snap_strdup(s, i == 1 ? "running" : "idle: futex");
        th->os.utime_ticks = ticks[i];
    }
    return s;
}

/* The header says what was lost and why, in words from the sampler, not "54 errors". */
static void test_header_sampling_failures(void **state)
{
    struct ui_header_in in = {.sampling = true,
                              .sample_rate = 99,
                              .sample_lost = "3.0% of samples lost: stacks changed while read",
                              .cpu_pct = -1,
                              .gil_switch_rate = -1,
                              .exc_rate = -1};
    struct ui_line out[3];

    (void)state;
    ui_view_header(&in, 200, out);
    assert_non_null(
        strstr(out[2].text, "sampling 99/s, 3.0% of samples lost: stacks changed while read"));
    in.sample_lost = NULL;
    ui_view_header(&in, 200, out);
    assert_non_null(strstr(out[2].text, "sampling 99/s, no samples lost"));
}

/* Tracing that takes over twice its budget says what it costs; within it, only the rate. */
static void test_header_tracing_cost(void **state)
{
    struct ui_header_in in = {.tracing = true,
                              .trace_mech = "bpf",
                              .exc_rate = 12,
                              .cpu_pct = -1,
                              .gil_switch_rate = -1,
                              .trace_cost_pct = 15.4,
                              .trace_budget_pct = 1};
    struct ui_line out[3];

    (void)state;
    ui_view_header(&in, 200, out);
    assert_non_null(strstr(out[2].text, "(bpf, costs 15% of its CPU)"));
    in.trace_cost_pct = 1.5; /* within twice the budget */
    ui_view_header(&in, 200, out);
    assert_non_null(strstr(out[2].text, "(bpf)"));
    assert_null(strstr(out[2].text, "costs"));
    in.trace_cost_pct = 40;
    in.trace_budget_pct = -1; /* no budget: nothing to weigh it against */
    ui_view_header(&in, 200, out);
    assert_null(strstr(out[2].text, "costs"));
    in.trace_budget_pct = 1;
    in.trace_cost_pct = -1; /* unknown yet */
    ui_view_header(&in, 200, out);
    assert_null(strstr(out[2].text, "costs"));
}

static void test_threads(void **state)
{
    static const uint64_t t0[3] = {10, 20, 30}, t1[3] = {10, 70, 35};
    struct snap *prev = make_snap(100.0, t0), *s = make_snap(101.0, t1);
    struct ui_line *lines = calloc(8, sizeof(*lines));
    size_t n;

    (void)state;
    assert_non_null(lines);
    n = ui_view_threads(s, prev, 100, 60, lines, 8);
    assert_int_equal(n, 4); /* heading + 3 */
    assert_false(lines[0].selectable);
    assert_non_null(strstr(lines[0].text, "NAME"));
    for (size_t i = 0; i < n; i++)
        assert_int_equal(width_of(lines[i].text), 60);
    assert_int_equal(lines[2].key, 101);
    assert_true(lines[2].selectable);
    assert_int_equal(lines[2].style, UI_STYLE_GIL);
    assert_true(lines[2].text[0] == '*');
    assert_non_null(strstr(lines[2].text, "worker-\xe6\x97\xa5"));
    assert_non_null(strstr(lines[2].text, " 50.0")); /* 50 ticks in 1 s at 100 Hz */
    assert_non_null(strstr(lines[3].text, "  5.0"));
    assert_non_null(strstr(lines[3].text, "(unnamed)"));
    /* the README demo at 120 columns: a 48-column pane shows an 18-character name whole,
     * and its last column stays blank beside the stack pane */
    s->threads[0].name = snap_strdup(s, "cache-janitor-1234");
    n = ui_view_threads(s, prev, 100, 48, lines, 8);
    assert_non_null(strstr(lines[1].text, "cache-janitor-1234"));
    assert_non_null(strstr(lines[0].text, "CPU% "));
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(width_of(lines[i].text), 48);
        assert_true(lines[i].text[strlen(lines[i].text) - 1] == ' ');
    }
    /* without a previous snapshot CPU% is unknown */
    n = ui_view_threads(s, NULL, 100, 60, lines, 8);
    assert_non_null(strstr(lines[1].text, "    -"));
    /* the OS thread name beside the Python one, when it says something more */
    s->threads[0].os_name = snap_strdup(s, "cache-janitor-1"); /* the kernel's 15 bytes */
    s->threads[2].os_name = snap_strdup(s, "c-pool");
    n = ui_view_threads(s, prev, 100, 100, lines, 8);
    assert_non_null(strstr(lines[3].text, "(unnamed) (os: c-pool)"));
    assert_null(strstr(lines[1].text, "(os:"));
    /* capacity is respected */
    assert_int_equal(ui_view_threads(s, prev, 100, 60, lines, 2), 2);
    assert_ptr_equal(ui_view_find_thread(s, 102), &s->threads[2]);
    assert_null(ui_view_find_thread(s, 999));
    free(lines);
    snap_free(prev);
    snap_free(s);
}

static void test_stack_with_source(void **state)
{
    char path[] = "/tmp/pyscope-test-view-XXXXXX";
    static const uint64_t ticks[3] = {0, 0, 0};
    struct snap *s = make_snap(1.0, ticks);
    struct snap_thread *t = &s->threads[0];
    struct srcline_cache *src = NULL;
    struct ui_line *lines = calloc(16, sizeof(*lines));
    struct ps_err err = {0};
    int fd = mkstemp(path);
    size_t n;

    (void)state;
    assert_true(fd >= 0 && lines);
    assert_int_equal(write(fd, "def f():\n    \tx = compute(1)  \n", 32), 32);
    assert_int_equal(close(fd), 0);
    t->nframes = 2;
    t->frames = snap_alloc(s, 2 * sizeof(*t->frames));
    t->frames[0] =
        (struct snap_frame){.function = "f", .qualname = "Cls.f", .file = path, .line = 2};
    t->frames[1] = (struct snap_frame){.function = "<module>", .file = "<string>", .line = 1};
    assert_int_equal(srcline_cache_new(NULL, 0, &src, &err), 0);
    n = ui_view_stack(t, src, 70, lines, 16);
    assert_int_equal(n, 4); /* heading, frame, its source, frame without source */
    assert_non_null(strstr(lines[0].text, "MainThread (tid 100)"));
    assert_non_null(strstr(lines[1].text, "Cls.f"));
    assert_non_null(strstr(lines[1].text, ":2"));
    assert_int_equal(lines[1].key, 1);
    assert_non_null(strstr(lines[2].text, "      x = compute(1)"));
    assert_false(lines[2].selectable);
    assert_non_null(strstr(lines[3].text, "<module>"));
    assert_int_equal(lines[3].key, 2);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(width_of(lines[i].text), 70);
    /* no cache: no source lines */
    assert_int_equal(ui_view_stack(t, NULL, 70, lines, 16), 3);
    assert_int_equal(ui_view_stack(NULL, src, 70, lines, 16), 0);
    assert_int_equal(unlink(path), 0);
    srcline_cache_free(src);
    snap_free(s);
    free(lines);
}

/* --native: C frames innermost first, each eval-loop call replaced by its Python frames. */
/* No UTF-8 locale (an empty root without locale files): UTF-8 characters are escaped as
 * \uXXXX (\UXXXXXXXX above U+FFFF), an invalid byte is '?', and the escapes count their
 * columns, so the fitting stays exact; back in C.UTF-8 they show as they are. */
static void test_fit_without_utf8_locale(void **state)
{
    char out[64];

    (void)state;
    assert_non_null(setlocale(LC_ALL, "C"));
    assert_string_equal(ui_fit(out, sizeof(out), "w\xc3\xb6rker \xf0\x9f\x98\x80 \xff.", 30),
                        "w\\u00f6rker \\U0001f600 ?.     ");
    assert_string_equal(ui_fit(out, sizeof(out), "w\xc3\xb6rker", 8), "w\\u00f6~");
    assert_non_null(setlocale(LC_ALL, "C.UTF-8"));
    assert_string_equal(ui_fit(out, sizeof(out), "w\xc3\xb6rker", 8), "w\xc3\xb6rker  ");
}

static void test_stack_native_merge(void **state)
{
    static const uint64_t ticks[3] = {0, 0, 0};
    struct snap *s = make_snap(1.0, ticks);
    struct snap_thread *t = &s->threads[0];
    struct ui_line *lines = calloc(16, sizeof(*lines));
    static const char *const want[] = {"[C] clock_nanosleep+0x65", "inner",    "outer",
                                       "[C] nat_call+0x10",        "<module>", "[C] main+0x2"};
    size_t n;

    (void)state;
    assert_non_null(lines);
    t->nframes = 3;
    t->frames = snap_alloc(s, 3 * sizeof(*t->frames));
    t->frames[0] = (struct snap_frame){.function = "inner", .file = "a.py", .line = 3};
    t->frames[1] = (struct snap_frame){.function = "outer", .file = "a.py", .line = 7};
    t->frames[2] = (struct snap_frame){.function = "<module>", .file = "a.py", .line = 9};
    t->nnative = 5;
    t->native = snap_alloc(s, 5 * sizeof(*t->native));
    t->native[0] = (struct snap_native_frame){.symbol = "clock_nanosleep",
                                              .offset = 0x65,
                                              .module = "/lib/libc.so.6",
                                              .python_frame = -1};
    t->native[1] =
        (struct snap_native_frame){.symbol = "_PyEval_EvalFrameDefault", .python_frame = 0};
    t->native[2] =
        (struct snap_native_frame){.symbol = "nat_call", .offset = 0x10, .python_frame = -1};
    t->native[3] =
        (struct snap_native_frame){.symbol = "_PyEval_EvalFrameDefault", .python_frame = 2};
    t->native[4] = (struct snap_native_frame){.symbol = "main", .offset = 2, .python_frame = -1};
    n = ui_view_stack(t, NULL, 70, lines, 16);
    assert_int_equal(n, 7); /* heading + 6 */
    for (size_t i = 0; i < 6; i++)
        if (!strstr(lines[i + 1].text, want[i]))
            fail_msg("line %zu is \"%s\", wanted %s", i + 1, lines[i + 1].text, want[i]);
    assert_non_null(strstr(lines[1].text, "libc.so.6"));
    /* An unnamed frame (stripped static function) shows its address, not "??+0x0". */
    t->native[2] = (struct snap_native_frame){
        .pc = 0x5d64b4, .module = "/usr/bin/python3.11", .python_frame = -1};
    n = ui_view_stack(t, NULL, 70, lines, 16);
    assert_int_equal(n, 7);
    assert_non_null(strstr(lines[4].text, "[C] 0x5d64b4  python3.11"));
    /* A failed merge: the note, then the Python stack alone. */
    t->native_error = "2 eval calls but 3 runs of Python frames";
    n = ui_view_stack(t, NULL, 70, lines, 16);
    assert_int_equal(n, 5);
    assert_non_null(strstr(lines[1].text, "native stack: 2 eval calls"));
    assert_non_null(strstr(lines[2].text, "inner"));
    assert_non_null(strstr(lines[4].text, "<module>"));
    snap_free(s);
    free(lines);
}

static void test_top(void **state)
{
    struct profile *p = NULL;
    struct ps_err err = {0};
    struct profile_top_row rows[16];
    struct ui_line *lines = calloc(16, sizeof(*lines));
    uint32_t th, stack[2];
    uint64_t samples = 0;
    struct ui_top_in in = {
        .by = PROFILE_TOP_FUNCTION, .sort = PROFILE_SORT_OWN, .scratch = rows, .nscratch = 16};
    int n;

    (void)state;
    assert_non_null(lines);
    assert_int_equal(profile_new(&p, &err), 0);
    assert_int_equal(profile_thread(p, 1, 100, "main", &th, &err), 0);
    stack[0] = profile_frame_intern(p, "main", "/app/main.py", 10);
    stack[1] = profile_frame_intern(p, "hot_loop", "/app/hot.py", 5);
    (void)profile_add(p, th, stack, 2, 3);
    (void)profile_add(p, th, stack, 1, 1);
    in.profile = p;
    n = ui_view_top(&in, 60, lines, 16, &samples, &err);
    assert_int_equal(n, 3);
    assert_int_equal(samples, 4);
    assert_non_null(strstr(lines[1].text, " 75.0  75.0  hot_loop"));
    assert_non_null(strstr(lines[1].text, " app/hot.py "));
    assert_int_equal(lines[1].style, UI_STYLE_HOT);
    assert_non_null(strstr(lines[2].text, " 25.0 100.0"));
    in.filter = "main.py";
    n = ui_view_top(&in, 60, lines, 16, &samples, &err);
    assert_int_equal(n, 2);
    assert_non_null(strstr(lines[1].text, "main"));
    in.filter = NULL;
    in.sort = PROFILE_SORT_TOTAL;
    n = ui_view_top(&in, 60, lines, 16, &samples, &err);
    assert_int_equal(n, 3);
    assert_non_null(strstr(lines[0].text, "TOTAL"));
    profile_free(p);
    free(lines);
}

static struct tracer_event raise_ev(uint64_t seq, const char *type, int line)
{
    struct tracer_event ev = {.kind = TRACER_EV_RAISE,
                              .seq = seq,
                              .raise_seq = seq,
                              .nframes = 1,
                              .has_message = true,
                              .time = 0};
    (void)snprintf(ev.type, sizeof(ev.type), "%s", type);
    (void)snprintf(ev.message, sizeof(ev.message), "'dict' object has no attribute 'value'");
    (void)snprintf(ev.frames[0].function, sizeof(ev.frames[0].function), "compute");
    (void)snprintf(ev.frames[0].file, sizeof(ev.frames[0].file), "/srv/service.py");
    ev.frames[0].line = line;
    return ev;
}

static void test_excfeed(void **state)
{
    struct ui_excfeed *f = calloc(1, sizeof(*f));
    struct ui_line *lines = calloc(UI_EXC_KEEP * 2, sizeof(*lines));
    struct ui_exc_view feed = {.feed = true};
    struct tracer_event ev;
    size_t n;

    (void)state;
    assert_true(f && lines);
    ui_excfeed_reset(f);
    for (uint64_t i = 1; i <= 5; i++) {
        ev = raise_ev(i * 2, i == 5 ? "KeyError" : "AttributeError", 62);
        ui_excfeed_add(f, &ev);
    }
    ev = raise_ev(0, "AttributeError", 62);
    ev.kind = TRACER_EV_END;
    ev.seq = 11;
    ev.raise_seq = 8;
    (void)snprintf(ev.handled_at.function, sizeof(ev.handled_at.function), "handle_average");
    (void)snprintf(ev.handled_at.file, sizeof(ev.handled_at.file), "/srv/service.py");
    ev.handled_at.line = 110;
    ui_excfeed_add(f, &ev);
    assert_int_equal(f->total, 5);
    assert_int_equal(f->ngroups, 2);
    n = ui_view_exc(f, &feed, 100, lines, UI_EXC_KEEP * 2);
    assert_int_equal(n, 10);
    /* newest first: the KeyError (seq 10), then seq 8, handled */
    assert_int_equal(lines[0].key, 10);
    assert_non_null(strstr(lines[0].text, "x1    KeyError: 'dict'"));
    assert_int_equal(lines[2].key, 8);
    assert_non_null(strstr(lines[2].text, "x4    AttributeError"));
    assert_non_null(strstr(lines[3].text, "compute (srv/service.py:62) -> handled in "
                                          "handle_average (srv/service.py:110)"));
    assert_non_null(strstr(lines[5].text, "in flight"));
    assert_non_null(ui_excfeed_find(f, 8));
    assert_null(ui_excfeed_find(f, 9));
    /* the ring keeps the newest UI_EXC_KEEP; counting goes on */
    for (uint64_t i = 100; i < 100 + 2 * UI_EXC_KEEP; i++) {
        ev = raise_ev(i, "ValueError", (int)(i % 3));
        ui_excfeed_add(f, &ev);
    }
    assert_int_equal(f->n, UI_EXC_KEEP);
    assert_int_equal(f->total, 5 + 2 * UI_EXC_KEEP);
    assert_int_equal(f->ngroups, 5);
    assert_null(ui_excfeed_find(f, 8));
    assert_int_equal(ui_view_exc(f, &feed, 100, lines, 7), 6);
    free(f);
    free(lines);
}

/* A raise of type at file:line in function, handled in hfile:hline (hfile NULL: in flight). */
static void add_raise(struct ui_excfeed *f, uint64_t seq, const char *type, const char *file,
                      int line, const char *hfile, int hline)
{
    struct tracer_event ev = raise_ev(seq, type, line);

    (void)snprintf(ev.frames[0].file, sizeof(ev.frames[0].file), "%s", file);
    (void)snprintf(ev.message, sizeof(ev.message), "message %llu", (unsigned long long)seq);
    ui_excfeed_add(f, &ev);
    if (!hfile)
        return;
    ev.kind = TRACER_EV_END;
    ev.seq = seq + 1000000;
    (void)snprintf(ev.handled_at.function, sizeof(ev.handled_at.function), "handler");
    (void)snprintf(ev.handled_at.file, sizeof(ev.handled_at.file), "%s", hfile);
    ev.handled_at.line = hline;
    ui_excfeed_add(f, &ev);
}

#define LIB_FILE "/usr/lib/python3.11/asyncio/queues.py"

/* The README demo's shape: one library site raising hundreds of times beside the
 * application's swallowed error: one row each, the busy one first, the app's with its count
 * and handler; the rate comes from the ticks; `m` hides the library-only site; `/` filters. */
static void test_exc_grouped(void **state)
{
    const size_t cap = (size_t)UI_EXC_GROUPS * 2;
    struct ui_excfeed *f = calloc(1, sizeof(*f));
    struct ui_line *lines = calloc(cap, sizeof(*lines));
    struct ui_exc_view v = {0};
    uint64_t seq = 1;
    size_t n;

    (void)state;
    assert_true(f && lines);
    ui_excfeed_tick(f, 10.0);
    for (int i = 0; i < 262; i++)
        add_raise(f, seq++, "StopIteration", LIB_FILE, 40, LIB_FILE, 44);
    for (int i = 0; i < 3; i++)
        add_raise(f, seq++, "AttributeError", "/srv/service.py", 62, "/srv/service.py", 110);
    ui_excfeed_tick(f, 12.0);
    n = ui_view_exc(f, &v, 100, lines, cap);
    assert_int_equal(n, 4);
    assert_int_equal(v.hidden, 0);
    assert_non_null(strstr(lines[0].text, "    262   131.0/s StopIteration: message 262"));
    assert_non_null(strstr(lines[2].text, "      3     1.5/s AttributeError: message 265"));
    assert_non_null(
        strstr(lines[3].text, "at srv/service.py:62 -> handled at srv/service.py:110 in handler"));
    assert_true(f->own_code);
    /* Enter on a row: its newest raise, with where it was handled */
    assert_int_equal(ui_excfeed_group_event(f, lines[2].key)->seq, 265);
    assert_int_equal(ui_excfeed_group_event(f, lines[2].key)->handled_at.line, 110);
    assert_null(ui_excfeed_group_event(f, 0));
    /* my code only: the library's own StopIteration site goes, counted as hidden */
    v.mine_only = true;
    n = ui_view_exc(f, &v, 100, lines, cap);
    assert_int_equal(n, 2);
    assert_int_equal(v.hidden, 1);
    assert_non_null(strstr(lines[0].text, "AttributeError"));
    /* the filter, in either view */
    v.mine_only = false;
    v.filter = "StopIter";
    assert_int_equal(ui_view_exc(f, &v, 100, lines, cap), 2);
    assert_non_null(strstr(lines[0].text, "StopIteration"));
    v.feed = true;
    v.filter = "service.py";
    n = ui_view_exc(f, &v, 100, lines, cap);
    assert_int_equal(n, 6);
    assert_int_equal(lines[0].key, 265);
    free(f);
    free(lines);
}

/* Over its budget bpf reports a sample of the raises but counts every one per site: the rows
 * show the tracer's site counts and their rates, not the sample's (a 4096:1 sample showed a
 * storm of 3,197 raises/s as "358 raised" and its sites at 0.0/s). */
static void test_exc_rows_take_site_counts(void **state)
{
    const size_t cap = (size_t)UI_EXC_GROUPS * 2;
    struct ui_excfeed *f = calloc(1, sizeof(*f));
    struct ui_line *lines = calloc(cap, sizeof(*lines));
    struct tracer_site *sites = calloc(3, sizeof(*sites));
    struct ui_exc_view v = {0};

    (void)state;
    assert_true(f && lines && sites);
    ui_excfeed_tick(f, 10.0);
    add_raise(f, 1, "StopIteration", LIB_FILE, 40, LIB_FILE, 44);
    add_raise(f, 2, "AttributeError", "/srv/service.py", 62, "/srv/service.py", 110);
    add_raise(f, 3, "AttributeError", "/srv/service.py", 62, "/srv/service.py", 110);
    for (size_t i = 0; i < 3; i++)
        (void)snprintf(sites[i].at.function, sizeof(sites[i].at.function), "compute");
    (void)snprintf(sites[0].type, sizeof(sites[0].type), "StopIteration");
    (void)snprintf(sites[0].at.file, sizeof(sites[0].at.file), LIB_FILE);
    sites[0].at.line = 40;
    sites[0].estimate = 40000;
    (void)snprintf(sites[1].type, sizeof(sites[1].type), "AttributeError");
    (void)snprintf(sites[1].at.file, sizeof(sites[1].at.file), "/srv/service.py");
    sites[1].at.line = 62;
    sites[1].estimate = 20;
    sites[2] = sites[1]; /* a site no raise was reported for: no row */
    sites[2].at.line = 99;
    sites[2].estimate = 5;
    ui_excfeed_sites(f, sites, 3);
    ui_excfeed_tick(f, 12.0);
    assert_int_equal(f->total, 40025);
    assert_int_equal(f->ngroups, 2);
    assert_int_equal(ui_view_exc(f, &v, 100, lines, cap), 4);
    assert_non_null(strstr(lines[0].text, "  40000 20000.0/s StopIteration"));
    assert_non_null(strstr(lines[2].text, "     20    10.0/s AttributeError"));
    /* a sample's own count never goes down to the sites' (the breakpoint estimates lag) */
    sites[1].estimate = 1;
    ui_excfeed_sites(f, sites, 3);
    assert_int_equal(f->groups[1].count, 20);
    free(sites);
    free(f);
    free(lines);
}

/* A raise in library code handled in the application's is the application's business. */
static void test_exc_library(void **state)
{
    struct ui_excfeed *f = calloc(1, sizeof(*f));
    struct ui_line lines[4];
    struct ui_exc_view v = {.mine_only = true};

    (void)state;
    assert_non_null(f);
    assert_true(ui_exc_library_path(LIB_FILE));
    assert_true(ui_exc_library_path("/root/.pyenv/versions/3.12.1/lib/python3.12/json/x.py"));
    assert_true(ui_exc_library_path("/srv/venv/lib/python3.12/site-packages/h11/_state.py"));
    assert_true(ui_exc_library_path("/usr/lib/python3/dist-packages/uvicorn/main.py"));
    assert_true(ui_exc_library_path("<frozen importlib._bootstrap>"));
    assert_false(ui_exc_library_path("/srv/app/lib/python3.x/mine.py"));
    assert_false(ui_exc_library_path("/srv/service.py"));
    assert_false(ui_exc_library_path("<string>"));
    add_raise(f, 1, "KeyError", LIB_FILE, 40, "/srv/service.py", 7);
    assert_int_equal(ui_view_exc(f, &v, 100, lines, 4), 2);
    assert_int_equal(v.hidden, 0);
    assert_true(f->own_code);
    free(f);
}

static void test_growth_rows(void **state)
{
    struct growth_row rows[2] = {
        {.name = "__main__.RESPONSE_CACHE",
         .type_name = "dict",
         .length = 4312,
         .size = 295000,
         .rate_per_min = 598.5,
         .addr = 0x7f00},
        {.name = "mod.gone_list", .type_name = "list", .length = 3, .gone = true, .addr = 0x7f10},
    };
    struct ui_line lines[4];
    size_t n;

    (void)state;
    static const char *const sparks[2] = {"\u2581\u2584\u2588", NULL};

    n = ui_view_growth(rows, sparks, "RSS 24.0 MiB .:#", 2, 110, lines, 4);
    assert_int_equal(n, 3);
    assert_false(lines[0].selectable);
    assert_non_null(strstr(lines[0].text, "TREND"));
    assert_non_null(strstr(lines[0].text, "RSS 24.0 MiB .:#"));
    /* the sparkline, padded to its 12 cells, then the container */
    assert_non_null(strstr(lines[1].text, "+598.5       4312  \u2581\u2584\u2588         "
                                          "  __main__.RESPONSE_CACHE (dict, 288.1 KiB)"));
    assert_int_equal(lines[1].style, UI_STYLE_HOT);
    assert_int_equal(lines[1].key, 0x7f00);
    assert_non_null(strstr(lines[2].text, "mod.gone_list (list, 0 B) gone"));
    assert_int_equal(lines[2].style, UI_STYLE_DIM);
    assert_int_equal(ui_view_growth(rows, NULL, NULL, 2, 90, lines, 2), 2);
    assert_null(strstr(lines[0].text, "RSS"));
}

static void test_tasks_rows(void **state)
{
    struct snap_frame fr = {
        .function = "waiter", .qualname = "Svc.waiter", .file = "/srv/app.py", .line = 42};
    struct snap_task tasks[2] = {
        {.addr = 0x10,
         .name = "dl-a",
         .state = SNAP_TASK_PENDING,
         .awaits = SNAP_AWAIT_TASK,
         .awaits_task = 1,
         .in_cycle = true,
         .nframes = 1,
         .frames = &fr},
        {.addr = 0x20,
         .name = "dl-b",
         .state = SNAP_TASK_PENDING,
         .awaits = SNAP_AWAIT_SLEEP,
         .awaits_task = -1},
    };
    struct snap_tasks t = {
        .ntasks = 2, .tasks = tasks, .found = 2, .loops = 1, .by_state = {2, 0, 0, 0}};
    struct snap_tasks none = {.error = "asyncio is not imported"};
    struct ui_line lines[4];

    (void)state;
    assert_int_equal(ui_view_tasks(&t, 100, lines, 4), 3);
    assert_non_null(strstr(lines[0].text, "2 tasks in 1 loops: 0 running, 2 pending"));
    assert_non_null(strstr(lines[1].text, "dl-a"));
    assert_non_null(strstr(lines[1].text, "DEADLOCK awaits dl-b  Svc.waiter (srv/app.py:42)"));
    assert_int_equal(lines[1].style, UI_STYLE_ERROR);
    assert_int_equal(lines[2].key, 0x20);
    assert_non_null(strstr(lines[2].text, "awaits sleep"));
    assert_int_equal(ui_view_tasks(&none, 100, lines, 4), 1);
    assert_non_null(strstr(lines[0].text, "asyncio is not imported"));
    assert_int_equal(ui_view_tasks(NULL, 100, lines, 4), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fit),
        cmocka_unit_test(test_formats),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_stack_with_source),
        cmocka_unit_test(test_top),
        cmocka_unit_test(test_excfeed),
        cmocka_unit_test(test_exc_rows_take_site_counts),
        cmocka_unit_test(test_header_sampling_failures),
        cmocka_unit_test(test_header_tracing_cost),
        cmocka_unit_test(test_exc_grouped),
        cmocka_unit_test(test_exc_library),
        cmocka_unit_test(test_growth_rows),
        cmocka_unit_test(test_tasks_rows),
        cmocka_unit_test(test_stack_native_merge),
        cmocka_unit_test(test_fit_without_utf8_locale),
    };

    if (!setlocale(LC_ALL, "C.UTF-8"))
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
