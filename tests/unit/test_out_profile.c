/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for the profile writers (src/out/out_profile.c, src/out/out_flamegraph.c,
 * src/out/out_samples.c). A small two-thread profile is built by hand (a ';' and a non-ASCII name,
 * markup characters, an unknown line) and rendered into memory: collapsed output is compared
 * line by line; speedscope JSON is parsed back with jansson, checked (frame table, one sampled
 * profile per thread, stacks outermost first, weights) and validated against
 * docs/schema/speedscope.schema.json by tests/tools/validate_json.py; the SVG is parsed as XML
 * by /usr/bin/python3 and checked for its frames, titles and script; raw samples are parsed
 * line by line. Validators missing are a skip outside CI and a failure with CI=true.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include <jansson.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pyscope/out_profile.h"

#define PYTHON3   "/usr/bin/python3"
#define VALIDATOR PYSCOPE_SOURCE_DIR "/tests/tools/validate_json.py"
#define SCHEMA    PYSCOPE_SOURCE_DIR "/docs/schema/speedscope.schema.json"

extern char **environ;

struct fixture {
    struct profile *p;
    uint32_t leaf_main; /* main: <module>;run;a;b (x3) */
};

/* main thread: <module> -> run -> "ta;ble" x3 and <module> -> run -> "café<&>" x1;
 * worker thread: work (no line) x2. */
static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    struct ps_err err = {0};
    uint32_t tm = 0, tw = 0;
    uint32_t mod, run, semi, cafe, work;

    if (!fx || profile_new(&fx->p, &err) < 0)
        return -1;
    if (profile_thread(fx->p, 11, 1011, "MainThread", &tm, &err) < 0 ||
        profile_thread(fx->p, 22, 1022, "worker", &tw, &err) < 0)
        return -1;
    mod = profile_frame_intern(fx->p, "<module>", "app.py", 30);
    run = profile_frame_intern(fx->p, "run", "app.py", 10);
    semi = profile_frame_intern(fx->p, "ta;ble", "lib.py", 5);
    cafe = profile_frame_intern(fx->p, "caf\xc3\xa9<&>", "lib.py", 7);
    work = profile_frame_intern(fx->p, "work", "w.py", -1);
    {
        uint32_t s1[3] = {mod, run, semi}, s2[3] = {mod, run, cafe};

        fx->leaf_main = profile_add(fx->p, tm, s1, 3, 3);
        (void)profile_add(fx->p, tm, s2, 3, 1);
    }
    (void)profile_add(fx->p, tw, &work, 1, 2);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;

    profile_free(fx->p);
    free(fx);
    return 0;
}

/* Render with fn into a malloc'ed string. */
typedef int (*writer_fn)(FILE *, const struct profile *, const struct out_profile_opts *,
                         struct ps_err *);

static char *render(writer_fn fn, const struct profile *p, const struct out_profile_opts *o)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    struct ps_err err = {0};

    assert_non_null(f);
    assert_int_equal(fn(f, p, o, &err), 0);
    assert_int_equal(fclose(f), 0);
    return buf;
}

static char *render_fmt(enum out_profile_format fmt, const struct profile *p,
                        const struct out_profile_opts *o)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    struct ps_err err = {0};

    assert_non_null(f);
    assert_int_equal(out_profile_write(f, fmt, p, o, &err), 0);
    assert_int_equal(fclose(f), 0);
    return buf;
}

static void test_collapsed_per_thread(void **state)
{
    struct fixture *fx = *state;
    struct out_profile_opts o = {.per_thread = true};
    char *text = render(out_collapsed_write, fx->p, &o);

    assert_string_equal(text, "thread MainThread (1011);<module> (app.py:30);run (app.py:10);"
                              "ta_ble (lib.py:5) 3\n"
                              "thread MainThread (1011);<module> (app.py:30);run (app.py:10);"
                              "caf\xc3\xa9<&> (lib.py:7) 1\n"
                              "thread worker (1022);work (w.py) 2\n");
    free(text);
}

static void test_collapsed_merged(void **state)
{
    struct fixture *fx = *state;
    struct out_profile_opts o = {0};
    char *text = render_fmt(OUT_PROFILE_COLLAPSED, fx->p, &o);

    assert_non_null(strstr(text, "<module> (app.py:30);run (app.py:10);ta_ble (lib.py:5) 3\n"));
    assert_non_null(strstr(text, "\nwork (w.py) 2\n"));
    assert_null(strstr(text, "thread "));
    free(text);
}

static int spawn_wait(char **argv)
{
    pid_t pid;
    int status = 0;

    if (posix_spawn(&pid, argv[0], NULL, NULL, argv, environ) != 0)
        return -1;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
        return -1;
    return WEXITSTATUS(status);
}

static bool ci(void)
{
    const char *v = getenv("CI");

    return v && strcmp(v, "true") == 0;
}

static void write_tmp(char *path, const char *text)
{
    int fd = mkstemp(path);
    FILE *f;

    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
}

static void test_speedscope_structure_and_schema(void **state)
{
    struct fixture *fx = *state;
    struct out_profile_opts o = {.title = "t\"q", .exporter = "pyscope@test"};
    char *text = render(out_speedscope_write, fx->p, &o);
    json_error_t jerr;
    json_t *doc = json_loads(text, 0, &jerr), *profs, *main_p, *frames, *s0;
    char path[] = "/tmp/pyscope-speedscope-XXXXXX";
    char *argv[] = {(char *)PYTHON3, (char *)VALIDATOR, (char *)SCHEMA, path, NULL};
    int rc;

    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "name")), "t\"q");
    frames = json_object_get(json_object_get(doc, "shared"), "frames");
    assert_int_equal(json_array_size(frames), 5);
    assert_null(json_object_get(json_array_get(frames, 4), "line")); /* unknown line omitted */
    profs = json_object_get(doc, "profiles");
    assert_int_equal(json_array_size(profs), 2);
    main_p = json_array_get(profs, 0);
    assert_string_equal(json_string_value(json_object_get(main_p, "type")), "sampled");
    assert_string_equal(json_string_value(json_object_get(main_p, "name")),
                        "thread MainThread (1011)");
    assert_int_equal(json_integer_value(json_object_get(main_p, "endValue")), 4);
    s0 = json_array_get(json_object_get(main_p, "samples"), 0);
    assert_int_equal(json_array_size(s0), 3);
    assert_string_equal(
        json_string_value(json_object_get(
            json_array_get(frames, (size_t)json_integer_value(json_array_get(s0, 0))), "name")),
        "<module>"); /* outermost first */
    assert_int_equal(json_integer_value(json_array_get(json_object_get(main_p, "weights"), 0)), 3);
    json_decref(doc);
    write_tmp(path, text);
    free(text);
    if (access(PYTHON3, X_OK) != 0 && !ci()) {
        (void)unlink(path);
        skip();
    }
    rc = spawn_wait(argv);
    (void)unlink(path);
    if (rc == 2 && !ci())
        skip();
    assert_int_equal(rc, 0);
}

/* The SVG parses as XML and carries every frame's title, the script and the search. */
static void test_flamegraph_is_xml(void **state)
{
    struct fixture *fx = *state;
    struct out_profile_opts o = {.per_thread = true, .title = "fg <test>", .rate_hz = 100};
    char *text = render(out_flamegraph_write, fx->p, &o);
    char path[] = "/tmp/pyscope-flamegraph-XXXXXX";
    char *argv[] = {
        (char *)PYTHON3, (char *)"-c",
        (char *)"import sys, xml.etree.ElementTree as E\n"
                "r = E.parse(sys.argv[1]).getroot()\n"
                "ns = '{http://www.w3.org/2000/svg}'\n"
                "t = [e.text for e in r.iter(ns + 'title')]\n"
                "assert any(x.startswith('ta;ble (lib.py:5) (3 samples, 50.00%)') for x in t), t\n"
                "assert any(x.startswith('caf\\u00e9<&> (lib.py:7)') for x in t), t\n"
                "assert any(x.startswith('thread worker (1022) (2 samples') for x in t), t\n"
                "assert any(x.startswith('all (6 samples, 100.00%)') for x in t), t\n"
                "assert r.find(ns + 'script') is not None\n",
        path, NULL};
    int rc;

    assert_non_null(strstr(text, "function search()"));
    assert_non_null(strstr(text, "function zoom(g)"));
    assert_non_null(strstr(text, "fg &lt;test&gt;"));
    write_tmp(path, text);
    free(text);
    if (access(PYTHON3, X_OK) != 0 && !ci()) {
        (void)unlink(path);
        skip();
    }
    rc = spawn_wait(argv);
    (void)unlink(path);
    assert_int_equal(rc, 0);
}

static void test_flamegraph_empty_profile(void **state)
{
    struct profile *p = NULL;
    struct ps_err err = {0};
    struct out_profile_opts o = {0};
    char *text;

    (void)state;
    assert_int_equal(profile_new(&p, &err), 0);
    text = render(out_flamegraph_write, p, &o);
    assert_non_null(strstr(text, "no samples"));
    assert_non_null(strstr(text, "</svg>"));
    free(text);
    profile_free(p);
}

static void test_samples_stream(void **state)
{
    struct fixture *fx = *state;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    struct out_samples *w = NULL;
    struct ps_err err = {0};
    struct sampler_sample smp = {.time = 0.5,
                                 .wall = 1700000000.25,
                                 .pid = 43,
                                 .ident = 11,
                                 .native_id = 1011,
                                 .thread = 0,
                                 .node = fx->leaf_main,
                                 .state = SAMPLER_ACTIVE,
                                 .gil = true};
    struct sampler_stats st = {.ticks = 1, .end = SAMPLER_END_SIGNAL};
    json_t *line;
    json_error_t jerr;
    char *second, *third;

    (void)state;
    assert_int_equal(out_samples_open(f, 42, "3.12.1", 1000, &w, &err), 0);
    out_samples_on_sample(w, fx->p, &smp);
    assert_int_equal(out_samples_close(w, &st, &err), 0);
    assert_int_equal(fclose(f), 0);
    second = strchr(buf, '\n') + 1;
    third = strchr(second, '\n') + 1;
    line = json_loadb(buf, (size_t)(second - buf), 0, &jerr);
    assert_non_null(line);
    assert_int_equal(json_integer_value(json_object_get(line, "pid")), 42);
    json_decref(line);
    line = json_loadb(second, (size_t)(third - second), 0, &jerr);
    assert_non_null(line);
    assert_string_equal(json_string_value(json_object_get(line, "state")), "active");
    assert_string_equal(json_string_value(json_object_get(line, "name")), "MainThread");
    assert_int_equal(json_integer_value(json_object_get(line, "thread")), 11);
    assert_int_equal(json_integer_value(json_object_get(line, "tid")), 1011);
    assert_int_equal(json_integer_value(json_object_get(line, "pid")), 43); /* the sample's own */
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(line, "frames"), 0), "function")),
                        "ta;ble"); /* innermost first */
    json_decref(line);
    line = json_loads(third, 0, &jerr);
    assert_non_null(line);
    assert_string_equal(json_string_value(json_object_get(line, "end")), "signal");
    assert_int_equal(json_integer_value(json_object_get(line, "samples")), 1);
    json_decref(line);
    free(buf);
}

static void test_parse_format(void **state)
{
    enum out_profile_format f;

    (void)state;
    assert_true(out_profile_parse_format("svg", &f));
    assert_int_equal(f, OUT_PROFILE_FLAMEGRAPH);
    assert_true(out_profile_parse_format("json", &f));
    assert_int_equal(f, OUT_PROFILE_SAMPLES);
    assert_true(out_profile_parse_format("pprof", &f));
    assert_int_equal(f, OUT_PROFILE_PPROF);
    assert_false(out_profile_parse_format("perf", &f));
}

/* The names the messages list come from the parser's table: each parses, aliases are left out,
 * the raw samples stream only when asked for. */
static void test_format_names(void **state)
{
    char buf[128], tiny[8];
    enum out_profile_format f;

    (void)state;
    assert_string_equal(out_profile_names(true, buf, sizeof(buf)),
                        "flamegraph, speedscope, collapsed, pprof or json");
    assert_string_equal(out_profile_names(false, buf, sizeof(buf)),
                        "flamegraph, speedscope, collapsed or pprof");
    for (char *name = strtok(buf, ", "); name; name = strtok(NULL, ", "))
        if (strcmp(name, "or") != 0)
            assert_true(out_profile_parse_format(name, &f));
    assert_int_equal(strlen(out_profile_names(true, tiny, sizeof(tiny))), sizeof(tiny) - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_collapsed_per_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_collapsed_merged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_speedscope_structure_and_schema, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flamegraph_is_xml, setup, teardown),
        cmocka_unit_test(test_flamegraph_empty_profile),
        cmocka_unit_test_setup_teardown(test_samples_stream, setup, teardown),
        cmocka_unit_test(test_parse_format),
        cmocka_unit_test(test_format_names),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
