/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for the snapshot writers (src/out/out_text.c, src/out/out_json.c). Snapshots are built by
 * hand (non-ASCII names, a thread without frames, an inconsistent thread, a NULL name, unknown
 * lines), rendered into memory with open_memstream, and checked: the text for traceback order
 * (outermost first), exact header lines, escaping and source lines read from a temporary tree
 * through out_opts.source_root; the JSON by parsing it back with jansson (key order, frame
 * order innermost first, nulls) and, when /usr/bin/python3 is present, by validating it against
 * docs/schema/dump.schema.json with tests/tools/validate_json.py (required when CI=true).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <math.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "guard.h"
#include "pyscope/out.h"
#include "pyscope/snap.h"

#define PYTHON3    "/usr/bin/python3"
#define VALIDATOR  PYSCOPE_SOURCE_DIR "/tests/tools/validate_json.py"
#define SCHEMA     PYSCOPE_SOURCE_DIR "/docs/schema/dump.schema.json"
#define LRU_FILES  10                      /* more than the text writer's 8-file source cache */
#define LRU_FRAMES ((size_t)3 * LRU_FILES) /* three rounds over the files */

struct fixture {
    struct snap *snap;
    char root[64]; /* temporary source tree, used as out_opts.source_root */
};

/* ---- helpers ----------------------------------------------------------------------------- */

static void write_file(const char *root, const char *rel, const char *text)
{
    char path[256];
    FILE *fp;

    (void)snprintf(path, sizeof(path), "%s%s", root, rel);
    fp = fopen(path, "w");
    assert_non_null(fp);
    assert_int_equal(fputs(text, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
}

static void set_frame(struct snap *s, struct snap_frame *f, const char *qualname, const char *file,
                      int line)
{
    const char *dot = strrchr(qualname, '.');

    f->function = snap_strdup(s, dot ? dot + 1 : qualname);
    f->qualname = snap_strdup(s, qualname);
    f->file = snap_strdup(s, file);
    f->line = line;
    f->end_line = line;
    f->col = line < 0 ? -1 : 4;
    f->end_col = line < 0 ? -1 : 20;
}

static struct snap_thread *add_threads(struct snap *s, size_t n)
{
    s->threads = snap_alloc(s, n * sizeof(*s->threads));
    assert_non_null(s->threads);
    s->nthreads = n;
    for (size_t i = 0; i < n; i++) {
        s->threads[i].thread_id = 140233 + i;
        s->threads[i].native_id = (pid_t)(4243 + i);
        s->threads[i].os.state = '?';
        s->threads[i].os.syscall = -2;
    }
    return s->threads;
}

static void add_frames(struct snap *s, struct snap_thread *t, size_t n)
{
    t->frames = snap_alloc(s, n * sizeof(*t->frames));
    assert_non_null(t->frames);
    t->nframes = n;
}

static void fill_process(struct snap *s)
{
    s->pid = 4242;
    (void)snprintf(s->python_version, sizeof(s->python_version), "3.12.1");
    s->version_hex = 0x030C01F0;
    s->exe = snap_strdup(s, "/usr/bin/python3.12");
    s->image = snap_strdup(s, "/usr/lib/libpython3.12.so.1.0");
    s->cmdline = snap_strdup(s, "python3 app.py --port 80");
    s->timestamp = 1700000000.25; /* 2023-11-14 22:13:20 UTC */
    s->cpu_user_s = 1.5;
    s->cpu_system_s = 0.25;
    s->rss_bytes = (uint64_t)40 << 20;
    s->gil_switches = 1234;
    s->read_seconds = 0.0012;
    s->read_calls = 57;
}

/*
 * Three threads: MainThread (GIL, three frames innermost first: Worker.compute at x.py:3,
 * handler at x.py:7, <module> in a missing file with an unknown line); an unnamed idle thread
 * without frames; an inconsistent thread with a non-ASCII name and file.
 */
static void fill_threads(struct snap *s)
{
    struct snap_thread *t = add_threads(s, 3);

    t[0].name = snap_strdup(s, "MainThread");
    t[0].gil = t[0].active = true;
    t[0].activity = snap_strdup(s, "running");
    t[0].os = (struct snap_os){.state = 'R', .wchan = "0", .syscall = -1};
    add_frames(s, &t[0], 3);
    set_frame(s, &t[0].frames[0], "Worker.compute", "/app/x.py", 3);
    set_frame(s, &t[0].frames[1], "handler", "/app/x.py", 7);
    set_frame(s, &t[0].frames[2], "<module>", "/app/main.py", -1);
    t[0].frames[2].is_entry = true;

    t[1].activity = snap_strdup(s, "idle: sleep");
    t[1].os = (struct snap_os){.state = 'S', .wchan = "hrtimer_nanosleep", .syscall = 230};

    t[2].name = snap_strdup(s, "W\xc3\xb6rker-\xe2\x9c\x93");
    t[2].activity = snap_strdup(s, "waiting for the GIL");
    t[2].status = SNAP_THREAD_INCONSISTENT;
    t[2].attempts = 3;
    t[2].error = snap_strdup(s, "the stack kept changing");
    add_frames(s, &t[2], 1);
    set_frame(s, &t[2].frames[0], "na\xc3\xafve", "/app/\xc3\xbcn\xc3\xaf.py", 1);
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    struct ps_err err = {0};

    if (!fx || snap_new(&fx->snap, &err) != 0)
        return -1;
    (void)snprintf(fx->root, sizeof(fx->root), "/tmp/pyscope-test-out-XXXXXX");
    if (!mkdtemp(fx->root))
        return -1;
    fill_process(fx->snap);
    fill_threads(fx->snap);
    *state = fx;
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    struct fixture *fx = *state;

    (void)nftw(fx->root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    snap_free(fx->snap);
    free(fx);
    return 0;
}

static void make_app_tree(const struct fixture *fx)
{
    char dir[128];

    (void)snprintf(dir, sizeof(dir), "%s/app", fx->root);
    assert_int_equal(mkdir(dir, 0700), 0);
    write_file(fx->root, "/app/x.py",
               "import time\n"
               "class Worker:\n"
               "\t    return compute(x)   \r\n"
               "\n"
               "\n"
               "\n"
               "        handler_line()");
}

/* Render s as text into a malloc'ed string; the writer must succeed. */
static char *render_text(const struct snap *s, const struct out_opts *opts)
{
    char *buf = NULL;
    size_t len = 0;
    struct ps_err err = {0};
    FILE *fp = open_memstream(&buf, &len);

    assert_non_null(fp);
    assert_int_equal(out_text_write(fp, s, opts, &err), 0);
    assert_int_equal(fclose(fp), 0);
    return buf;
}

static char *render_json_text(const struct snap *s, const struct out_opts *opts)
{
    char *buf = NULL;
    size_t len = 0;
    struct ps_err err = {0};
    FILE *fp = open_memstream(&buf, &len);

    assert_non_null(fp);
    assert_int_equal(out_json_write(fp, s, opts, &err), 0);
    assert_int_equal(fclose(fp), 0);
    assert_true(len > 0 && buf[len - 1] == '\n');
    return buf;
}

static json_t *render_json(const struct snap *s)
{
    char *text = render_json_text(s, NULL);
    json_error_t jerr;
    json_t *doc = json_loads(text, 0, &jerr);

    if (!doc)
        fail_msg("the JSON dump does not parse: %s at %d:%d", jerr.text, jerr.line, jerr.column);
    free(text);
    return doc;
}

static const char *find(const char *hay, const char *needle)
{
    const char *p = strstr(hay, needle);

    if (!p)
        fail_msg("expected \"%s\" in:\n%s", needle, hay);
    return p;
}

/* ---- text -------------------------------------------------------------------------------- */

static void test_text_header(void **state)
{
    struct fixture *fx = *state;
    char *out = render_text(fx->snap, NULL);

    assert_true(strncmp(out, "Process 4242: python3 app.py --port 80\n", 39) == 0);
    (void)find(out, "\nPython 3.12.1 (/usr/bin/python3.12, runtime in "
                    "/usr/lib/libpython3.12.so.1.0)\n");
    (void)find(out, "\nCPU user 1.50 s, system 0.25 s; RSS 40.0 MiB; 3 threads\n");
    (void)find(out, "\nSnapshot at 2023-11-14 22:13:20 UTC took 1.20 ms (57 reads), "
                    "threads not stopped\n");
    assert_null(strchr(out, '\033'));
    free(out);
}

static void test_text_threads_and_order(void **state)
{
    struct fixture *fx = *state;
    char *out = render_text(fx->snap, NULL);
    const char *main_hdr = find(out, "\n\nThread 140233 (native 4243) \"MainThread\" "
                                     "[holds the GIL] running (os: R)\n");
    const char *outer = find(out, "  File \"/app/main.py\", line ?, in <module>\n");
    const char *middle = find(out, "  File \"/app/x.py\", line 7, in handler\n");
    const char *inner = find(out, "  File \"/app/x.py\", line 3, in compute\n");
    const char *idle = find(out, "\n\nThread 140234 (native 4244) idle: sleep "
                                 "(os: S in hrtimer_nanosleep)\n  (no Python frames)\n");

    /* traceback order: outermost first, innermost last, all under their thread's header; the
     * name is co_name, as traceback prints it (the qualname is only in the JSON) */
    assert_true(main_hdr < outer && outer < middle && middle < inner && inner < idle);
    assert_null(strstr(out, "    return compute")); /* no source lines unless asked */
    free(out);
}

static void test_text_inconsistent_non_ascii(void **state)
{
    struct fixture *fx = *state;
    char *out = render_text(fx->snap, NULL);
    const char *hdr = find(out, "\n\nThread 140235 (native 4245) \"W\xc3\xb6rker-\xe2\x9c\x93\" "
                                "waiting for the GIL\n");
    /* The error sentence says it once (it used to follow a note saying the same). */
    const char *note = find(out, "\n  note: the stack kept changing\n  File "
                                 "\"/app/\xc3\xbcn\xc3\xaf.py\", line 1, in na\xc3\xafve\n");

    assert_true(hdr < note);
    free(out);
}

static void test_text_error_and_truncated_threads(void **state)
{
    struct fixture *fx = *state;
    char *out;

    fx->snap->threads[1].status = SNAP_THREAD_ERROR;
    fx->snap->threads[1].error = snap_strdup(fx->snap, "reading the frame at 0x10 failed");
    fx->snap->threads[0].status = SNAP_THREAD_TRUNCATED;
    out = render_text(fx->snap, NULL);
    (void)find(out, "idle: sleep (os: S in hrtimer_nanosleep)\n  error: reading the frame at "
                    "0x10 failed\n\nThread");
    (void)find(out, "(os: R)\n  note: the stack is deeper than the frame cap; only the "
                    "innermost 3 frames are shown\n  File");
    assert_null(strstr(out, "(no Python frames)"));
    free(out);
}

static void test_text_escapes_control_characters(void **state)
{
    struct fixture *fx = *state;
    char *out;

    fx->snap->threads[0].name = "evil\x1b[2J\tname\xc2\x9b!\x7f";
    fx->snap->threads[0].frames[0].file = "/app/\x07x.py";
    out = render_text(fx->snap, NULL);
    (void)find(out, "\"evil\\x1b[2J\tname\\u009b!\\x7f\"");
    (void)find(out, "File \"/app/\\x07x.py\"");
    assert_null(strchr(out, '\033'));
    assert_null(strchr(out, '\x07'));
    free(out);
}

static void test_text_color(void **state)
{
    struct fixture *fx = *state;
    struct out_opts opts = {.color = true};
    char *out = render_text(fx->snap, &opts);

    (void)find(out, "\033[1mThread 140233 (native 4243) \"MainThread\"\033[0m \033[32m[holds "
                    "the GIL]\033[0m running");
    (void)find(out, "in \033[1mcompute\033[0m\n");
    free(out);
}

static void test_text_source_lines(void **state)
{
    struct fixture *fx = *state;
    struct out_opts opts = {.source_lines = true, .source_root = fx->root};
    char *out;

    make_app_tree(fx);
    out = render_text(fx->snap, &opts);
    /* stripped (leading tab and spaces, trailing spaces and CR), indented 4 spaces */
    (void)find(out, "line 3, in compute\n    return compute(x)\n\nThread 140234");
    (void)find(out, "line 7, in handler\n    handler_line()\n  File \"/app/x.py\", line 3");
    /* missing file and unknown line: no source line, no error */
    (void)find(out, "line ?, in <module>\n  File \"/app/x.py\", line 7");
    free(out);

    opts.source_root = NULL; /* /app/x.py does not exist on this machine: no source shown */
    out = render_text(fx->snap, &opts);
    assert_null(strstr(out, "return compute(x)"));
    free(out);
}

static void test_text_source_line_past_end_and_long(void **state)
{
    struct fixture *fx = *state;
    struct out_opts opts = {.source_lines = true, .source_root = fx->root};
    char line[512];
    char want[600];
    char *out;

    make_app_tree(fx);
    memset(line, 'a', sizeof(line));
    memcpy(line + 198, "\xe2\x9c\x93", 3); /* a 3-byte character across the 200-byte cut */
    line[sizeof(line) - 1] = '\0';
    write_file(fx->root, "/app/long.py", line);
    fx->snap->threads[0].frames[1].line = 99; /* past the end of x.py */
    fx->snap->threads[0].frames[0].file = "/app/long.py";
    fx->snap->threads[0].frames[0].line = 1;
    out = render_text(fx->snap, &opts);
    (void)find(out, "line 99, in handler\n  File");
    /* cut before the character, never inside it */
    line[198] = '\0';
    (void)snprintf(want, sizeof(want), "in compute\n    %s...\n\nThread", line);
    (void)find(out, want);
    free(out);
}

/* More files than the cache holds, visited round-robin: every lookup evicts, output stays right. */
static void test_text_source_cache_eviction(void **state)
{
    struct fixture *fx = *state;
    struct out_opts opts = {.source_lines = true, .source_root = fx->root};
    struct snap_thread *t = &fx->snap->threads[1];
    char name[64];
    char text[64];
    char *out;

    make_app_tree(fx);
    add_frames(fx->snap, t, LRU_FRAMES);
    for (size_t i = 0; i < LRU_FRAMES; i++) {
        (void)snprintf(name, sizeof(name), "/app/f%zu.py", i % LRU_FILES);
        if (i < LRU_FILES) {
            (void)snprintf(text, sizeof(text), "first = %zu\nsecond = %zu\n", i, i);
            write_file(fx->root, name, text);
        }
        set_frame(fx->snap, &t->frames[i], "f", name, 1 + (int)(i / LRU_FILES) % 2);
    }
    out = render_text(fx->snap, &opts);
    for (size_t i = LRU_FRAMES; i > 0; i--) {
        size_t f = (i - 1) % LRU_FILES;
        int line = 1 + (int)((i - 1) / LRU_FILES) % 2;
        (void)snprintf(text, sizeof(text), "\"/app/f%zu.py\", line %d, in f\n    %s = %zu\n", f,
                       line, line == 1 ? "first" : "second", f);
        (void)find(out, text);
    }
    free(out);
}

/* A path naming a FIFO must not block the dump (open without O_NONBLOCK would wait forever). */
static void test_text_source_fifo_does_not_block(void **state)
{
    struct fixture *fx = *state;
    struct out_opts opts = {.source_lines = true, .source_root = fx->root};
    char path[128];
    char *out;

    make_app_tree(fx);
    (void)snprintf(path, sizeof(path), "%s/app/fifo.py", fx->root);
    assert_int_equal(mkfifo(path, 0600), 0);
    fx->snap->threads[0].frames[0].file = "/app/fifo.py";
    /* a hang guard only: a blocking open fails the test (SIGALRM) instead of waiting for ctest */
    (void)alarm((unsigned)test_guard_s());
    out = render_text(fx->snap, &opts);
    (void)alarm(0);
    (void)find(out, "\"/app/fifo.py\", line 3, in compute\n\nThread");
    free(out);
}

static void test_text_write_error(void **state)
{
    struct fixture *fx = *state;
    struct ps_err err = {0};
    FILE *fp = fopen("/dev/full", "w");

    if (!fp)
        skip();
    assert_int_equal(out_text_write(fp, fx->snap, NULL, &err), -ENOSPC);
    assert_int_equal(err.code, -ENOSPC);
    assert_non_null(strstr(err.msg, "cannot write the text dump"));
    (void)fclose(fp);
}

/* ---- JSON -------------------------------------------------------------------------------- */

static void assert_keys(json_t *obj, const char *const *keys, size_t n)
{
    size_t i = 0;
    const char *key;
    json_t *val;

    assert_true(json_is_object(obj));
    json_object_foreach(obj, key, val)
    {
        (void)val;
        assert_string_equal(key, i < n ? keys[i] : "(more keys than expected)");
        i++;
    }
    assert_int_equal(i, n);
}

static void test_json_document_keys_in_order(void **state)
{
    static const char *const top[] = {"pid",     "python_version", "executable",   "image",
                                      "cmdline", "timestamp",      "blocking",     "blocking_auto",
                                      "cpu",     "rss_bytes",      "gil_switches", "threads",
                                      "stats"};
    static const char *const thread[] = {"thread_id",
                                         "native_id",
                                         "name",
                                         "gil",
                                         "active",
                                         "state",
                                         "os",
                                         "status",
                                         "error",
                                         "interpreter_id",
                                         "python",
                                         "frames",
                                         "exception_raising",
                                         "exception_handled"};
    static const char *const frame[] = {"function", "qualname", "file",       "line",
                                        "end_line", "column",   "end_column", "entry"};
    static const char *const os[] = {"state", "wchan", "syscall", "name"};
    struct fixture *fx = *state;
    json_t *doc = render_json(fx->snap);
    json_t *t0 = json_array_get(json_object_get(doc, "threads"), 0);

    assert_keys(doc, top, sizeof(top) / sizeof(top[0]));
    assert_keys(t0, thread, sizeof(thread) / sizeof(thread[0]));
    assert_keys(json_array_get(json_object_get(t0, "frames"), 0), frame,
                sizeof(frame) / sizeof(frame[0]));
    assert_keys(json_object_get(t0, "os"), os, sizeof(os) / sizeof(os[0]));
    json_decref(doc);
}

static void test_json_process_fields(void **state)
{
    struct fixture *fx = *state;
    json_t *doc = render_json(fx->snap);

    assert_int_equal(json_integer_value(json_object_get(doc, "pid")), 4242);
    assert_string_equal(json_string_value(json_object_get(doc, "python_version")), "3.12.1");
    assert_string_equal(json_string_value(json_object_get(doc, "cmdline")),
                        "python3 app.py --port 80");
    assert_true(json_is_false(json_object_get(doc, "blocking")));
    assert_true(json_real_value(json_object_get(doc, "timestamp")) == 1700000000.25);
    assert_true(json_real_value(json_object_get(json_object_get(doc, "cpu"), "user_s")) == 1.5);
    assert_int_equal(json_integer_value(json_object_get(doc, "rss_bytes")), 40 << 20);
    assert_int_equal(json_integer_value(json_object_get(doc, "gil_switches")), 1234);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(doc, "stats"), "read_calls")), 57);
    assert_int_equal(json_array_size(json_object_get(doc, "threads")), 3);
    json_decref(doc);
}

static void test_json_frames_innermost_first(void **state)
{
    struct fixture *fx = *state;
    json_t *doc = render_json(fx->snap);
    json_t *t0 = json_array_get(json_object_get(doc, "threads"), 0);
    json_t *frames = json_object_get(t0, "frames");
    json_t *f0 = json_array_get(frames, 0);
    json_t *f2 = json_array_get(frames, 2);

    assert_int_equal(json_integer_value(json_object_get(t0, "thread_id")), 140233);
    assert_true(json_is_true(json_object_get(t0, "gil")));
    assert_string_equal(json_string_value(json_object_get(t0, "status")), "ok");
    assert_true(json_is_null(json_object_get(t0, "error")));
    assert_int_equal(json_array_size(frames), 3);
    assert_string_equal(json_string_value(json_object_get(f0, "function")), "compute");
    assert_string_equal(json_string_value(json_object_get(f0, "qualname")), "Worker.compute");
    assert_int_equal(json_integer_value(json_object_get(f0, "line")), 3);
    assert_int_equal(json_integer_value(json_object_get(f0, "column")), 4);
    assert_true(json_is_false(json_object_get(f0, "entry")));
    assert_string_equal(json_string_value(json_object_get(f2, "function")), "<module>");
    assert_true(json_is_null(json_object_get(f2, "line")));
    assert_true(json_is_null(json_object_get(f2, "column")));
    assert_true(json_is_true(json_object_get(f2, "entry")));
    json_decref(doc);
}

static void test_json_thread_variants(void **state)
{
    struct fixture *fx = *state;
    json_t *doc = render_json(fx->snap);
    json_t *threads = json_object_get(doc, "threads");
    json_t *t0 = json_array_get(threads, 0);
    json_t *t1 = json_array_get(threads, 1);
    json_t *t2 = json_array_get(threads, 2);
    json_t *os1 = json_object_get(t1, "os");

    assert_string_equal(json_string_value(json_object_get(json_object_get(t0, "os"), "wchan")),
                        "0");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(t0, "os"), "syscall")), -1);
    assert_true(json_is_null(json_object_get(t1, "name")));
    assert_int_equal(json_array_size(json_object_get(t1, "frames")), 0);
    assert_string_equal(json_string_value(json_object_get(t1, "state")), "idle: sleep");
    assert_string_equal(json_string_value(json_object_get(os1, "state")), "S");
    assert_string_equal(json_string_value(json_object_get(os1, "wchan")), "hrtimer_nanosleep");
    assert_int_equal(json_integer_value(json_object_get(os1, "syscall")), 230);
    assert_string_equal(json_string_value(json_object_get(t2, "name")),
                        "W\xc3\xb6rker-\xe2\x9c\x93");
    assert_string_equal(json_string_value(json_object_get(t2, "status")), "inconsistent");
    assert_string_equal(json_string_value(json_object_get(t2, "error")), "the stack kept changing");
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(t2, "frames"), 0), "file")),
                        "/app/\xc3\xbcn\xc3\xaf.py");
    json_decref(doc);
}

static void make_unknowns(struct snap *s)
{
    struct snap_thread *t = &s->threads[0];

    t->thread_id = UINT64_MAX; /* garbage: does not fit json_int_t */
    t->native_id = -1;
    t->activity = NULL;
    t->os = (struct snap_os){.state = '?', .wchan = "", .syscall = -2};
    t->status = SNAP_THREAD_ERROR;
    t->error = snap_strdup(s, "the thread exited while it was read");
    s->python_version[0] = '\0';
    s->exe = s->image = s->cmdline = NULL;
    s->timestamp = NAN;
    s->gil_switches = (uint64_t)INT64_MAX + 1;
}

static void test_json_unknowns_are_null(void **state)
{
    struct fixture *fx = *state;
    json_t *doc;
    json_t *t0;
    json_t *os;

    make_unknowns(fx->snap);
    doc = render_json(fx->snap);
    t0 = json_array_get(json_object_get(doc, "threads"), 0);
    os = json_object_get(t0, "os");
    assert_true(json_is_null(json_object_get(t0, "thread_id")));
    assert_true(json_is_null(json_object_get(t0, "native_id")));
    assert_true(json_is_null(json_object_get(t0, "state")));
    assert_true(json_is_null(json_object_get(os, "state")));
    assert_true(json_is_null(json_object_get(os, "wchan")));
    assert_true(json_is_null(json_object_get(os, "syscall")));
    assert_string_equal(json_string_value(json_object_get(t0, "status")), "error");
    assert_true(json_is_null(json_object_get(doc, "python_version")));
    assert_true(json_is_null(json_object_get(doc, "executable")));
    assert_true(json_is_null(json_object_get(doc, "timestamp")));
    assert_true(json_is_null(json_object_get(doc, "gil_switches")));
    json_decref(doc);
}

static void test_json_string_matches_write_and_indent(void **state)
{
    struct fixture *fx = *state;
    struct out_opts pretty = {.json_indent = 2};
    struct ps_err err = {0};
    char *str = NULL;
    char *written = render_json_text(fx->snap, NULL);
    char *indented = render_json_text(fx->snap, &pretty);

    assert_int_equal(out_json_string(fx->snap, NULL, &str, &err), 0);
    assert_int_equal(strlen(written), strlen(str) + 1);
    assert_memory_equal(written, str, strlen(str));
    assert_null(strchr(str, '\n')); /* compact: one line */
    assert_true(strncmp(indented, "{\n  \"pid\": 4242,\n", 17) == 0);
    assert_non_null(strstr(str, "\"read_seconds\":0.0012,")); /* no 17-digit noise */
    free(str);
    free(written);
    free(indented);
}

static void test_json_rejects_invalid_utf8(void **state)
{
    struct fixture *fx = *state;
    struct ps_err err = {0};
    char *str = NULL;

    fx->snap->threads[1].name = "bad\xff"; /* bypasses snap_strndup: a caller bug */
    assert_int_equal(out_json_string(fx->snap, NULL, &str, &err), -EINVAL);
    assert_null(str);
    assert_int_equal(err.code, -EINVAL);
    assert_non_null(strstr(err.msg, "\"name\" is not valid UTF-8"));
}

static void test_json_write_error(void **state)
{
    struct fixture *fx = *state;
    struct ps_err err = {0};
    FILE *fp = fopen("/dev/full", "w");

    if (!fp)
        skip();
    assert_int_equal(out_json_write(fp, fx->snap, NULL, &err), -ENOSPC);
    assert_non_null(strstr(err.msg, "cannot write the JSON dump"));
    (void)fclose(fp);
}

/* ---- schema ------------------------------------------------------------------------------ */

/* Exit status of `python3 validate_json.py SCHEMA path`, or -1 when it could not run. */
static int run_validator(const char *path)
{
    char *argv[] = {(char *)PYTHON3, (char *)VALIDATOR, (char *)SCHEMA, (char *)path, NULL};
    pid_t pid;
    int status = 0;

    if (posix_spawn(&pid, PYTHON3, NULL, NULL, argv, environ) != 0)
        return -1;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
        return -1;
    return WEXITSTATUS(status);
}

/* CI=true makes a missing validator a failure instead of a skip. */
static bool validator_required(void)
{
    const char *ci = getenv("CI");

    return ci && strcmp(ci, "true") == 0;
}

static void skip_unless_validator(void)
{
    if (access(PYTHON3, X_OK) == 0 && access(VALIDATOR, R_OK) == 0)
        return;
    if (validator_required())
        fail_msg("CI=true but %s or %s is missing", PYTHON3, VALIDATOR);
    skip();
}

/* Write doc to fx->root/name and return the validator's verdict. */
static int validate(const struct fixture *fx, const char *name, const char *doc)
{
    char rel[64];
    char path[128];
    int rc;

    (void)snprintf(rel, sizeof(rel), "/%s", name);
    (void)snprintf(path, sizeof(path), "%s%s", fx->root, rel);
    write_file(fx->root, rel, doc);
    rc = run_validator(path);
    if (rc == 2 && !validator_required())
        skip(); /* jsonschema missing: tolerated outside CI */
    return rc;
}

static void test_schema_accepts_dumps(void **state)
{
    struct fixture *fx = *state;
    char *text;

    skip_unless_validator();
    text = render_json_text(fx->snap, NULL);
    assert_int_equal(validate(fx, "dump.json", text), 0);
    free(text);
    make_unknowns(fx->snap);
    text = render_json_text(fx->snap, NULL);
    assert_int_equal(validate(fx, "unknowns.json", text), 0);
    free(text);
}

static void mutate_and_expect_reject(const struct fixture *fx, json_t *doc, const char *name)
{
    char *text = json_dumps(doc, JSON_PRESERVE_ORDER);

    assert_non_null(text);
    if (validate(fx, name, text) != 1)
        fail_msg("the schema accepted an invalid document (%s): %s", name, text);
    free(text);
}

/* The schema is strict enough to fail: missing fields, unknown keys and wrong types. */
static void test_schema_rejects_invalid(void **state)
{
    struct fixture *fx = *state;
    json_t *doc;
    json_t *frame;

    skip_unless_validator();
    doc = render_json(fx->snap);
    assert_int_equal(json_object_del(doc, "pid"), 0);
    mutate_and_expect_reject(fx, doc, "no-pid.json");
    json_decref(doc);

    doc = render_json(fx->snap);
    frame = json_array_get(
        json_object_get(json_array_get(json_object_get(doc, "threads"), 0), "frames"), 0);
    assert_int_equal(json_object_set_new(frame, "line", json_string("3")), 0);
    mutate_and_expect_reject(fx, doc, "line-string.json");
    assert_int_equal(json_object_set_new(frame, "line", json_integer(3)), 0);
    assert_int_equal(json_object_set_new(frame, "bogus", json_true()), 0);
    mutate_and_expect_reject(fx, doc, "extra-key.json");
    json_decref(doc);

    doc = render_json(fx->snap);
    assert_int_equal(json_object_set_new(json_array_get(json_object_get(doc, "threads"), 1),
                                         "status", json_string("fine")),
                     0);
    mutate_and_expect_reject(fx, doc, "bad-status.json");
    json_decref(doc);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_text_header),
        T(test_text_threads_and_order),
        T(test_text_inconsistent_non_ascii),
        T(test_text_error_and_truncated_threads),
        T(test_text_escapes_control_characters),
        T(test_text_color),
        T(test_text_source_lines),
        T(test_text_source_line_past_end_and_long),
        T(test_text_source_cache_eviction),
        T(test_text_source_fifo_does_not_block),
        T(test_text_write_error),
        T(test_json_document_keys_in_order),
        T(test_json_process_fields),
        T(test_json_frames_innermost_first),
        T(test_json_thread_variants),
        T(test_json_unknowns_are_null),
        T(test_json_string_matches_write_and_indent),
        T(test_json_rejects_invalid_utf8),
        T(test_json_write_error),
        T(test_schema_accepts_dumps),
        T(test_schema_rejects_invalid),
    };
#undef T

    return cmocka_run_group_tests(tests, NULL, NULL);
}
