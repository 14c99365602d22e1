/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for the exception writers (src/out/out_exc.c): the summary table stays aligned
 * whatever the paths' lengths and names the handler's file; text and JSON lines escape the
 * control characters a hostile type, message, file or function name carries. Events are built
 * by hand and rendered into memory with open_memstream.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "pyscope/out_exc.h"
#include "pyscope/outq.h"

static struct tracer_event end_ev(const char *type, const char *file, int line, const char *hfile)
{
    struct tracer_event ev = {.kind = TRACER_EV_END, .seq = 2, .raise_seq = 1, .nframes = 1};

    (void)snprintf(ev.type, sizeof(ev.type), "%s", type);
    (void)snprintf(ev.frames[0].function, sizeof(ev.frames[0].function), "fn");
    (void)snprintf(ev.frames[0].file, sizeof(ev.frames[0].file), "%s", file);
    ev.frames[0].line = line;
    (void)snprintf(ev.handled_at.function, sizeof(ev.handled_at.function), "handler");
    (void)snprintf(ev.handled_at.file, sizeof(ev.handled_at.file), "%s", hfile);
    ev.handled_at.line = 7;
    return ev;
}

/* The summary of s into *buf (the caller frees it). */
static void render_summary(struct out_exc_summary *s, char **buf)
{
    size_t len = 0;
    FILE *fp = open_memstream(buf, &len);

    assert_non_null(fp);
    out_exc_summary_write(fp, s);
    assert_int_equal(fclose(fp), 0);
}

/* The column where needle starts in the line of text that starts with line_start. */
static long col_of(const char *text, const char *line_start, const char *needle)
{
    const char *line = strstr(text, line_start), *hit;

    assert_non_null(line);
    hit = strstr(line, needle);
    assert_non_null(hit);
    return hit - line;
}

static void test_summary_aligned_with_handler_file(void **state)
{
    static const char long_path[] =
        "/srv/a/very/long/path/that/goes/on/and/on/past/forty/columns/module.py";
    struct out_exc_summary *s = NULL;
    struct ps_err err = {0};
    struct tracer_event ev;
    char *out = NULL;

    (void)state;
    assert_int_equal(out_exc_summary_new(&s, &err), 0);
    ev = end_ev("ValueError", "/s.py", 3, "/srv/app/handlers.py");
    for (int i = 0; i < 3; i++)
        out_exc_summary_add(s, &ev);
    ev = end_ev("mod.AVeryLongExceptionTypeNameIndeed", long_path, 12345, "/h.py");
    out_exc_summary_add(s, &ev);
    ev.propagating = true;
    ev.handled_at.function[0] = '\0';
    out_exc_summary_add(s, &ev);
    render_summary(s, &out);
    /* most frequent first; every column starts where its heading does */
    assert_true(strstr(out, "       3  ValueError") < strstr(out, "       1  mod.AVery"));
    assert_int_equal(col_of(out, "   count", "raised at"), col_of(out, "       3  Value", "/s.py"));
    assert_int_equal(col_of(out, "   count", "raised at"),
                     col_of(out, "       1  mod.", long_path));
    assert_int_equal(col_of(out, "   count", "handled in"),
                     col_of(out, "       3  Value", "/srv/app/handlers.py:7 in handler"));
    assert_int_equal(col_of(out, "   count", "handled in"),
                     col_of(out, "       1  mod.", "/h.py:7 in handler"));
    assert_non_null(strstr(out, "(still propagating)"));
    free(out);
    out_exc_summary_free(s);
}

/* Sampled events, exact site counts: each site's rows sum to its count, split kept. */
static void test_summary_takes_exact_site_counts(void **state)
{
    struct out_exc_summary *s = NULL;
    struct ps_err err = {0};
    struct tracer_event ev = end_ev("ValueError", "/s.py", 3, "/a.py");
    struct tracer_site site = {.estimate = 1000};
    char *out = NULL;

    (void)state;
    assert_int_equal(out_exc_summary_new(&s, &err), 0);
    for (int i = 0; i < 3; i++)
        out_exc_summary_add(s, &ev);
    ev.handled_at.line = 9;
    out_exc_summary_add(s, &ev);
    (void)snprintf(site.type, sizeof(site.type), "ValueError");
    site.at = ev.frames[0];
    out_exc_summary_exact(s, &site, 1);
    render_summary(s, &out);
    assert_non_null(strstr(out, "     750  ValueError"));
    assert_non_null(strstr(out, "     250  ValueError"));
    assert_non_null(strstr(out, "split is estimated"));
    free(out);
    out_exc_summary_free(s);
}

static void test_text_and_json_escape(void **state)
{
    struct tracer_event ev = end_ev("Evil\x1b[31m", "/x\x07.py", 1, "/h\r.py");
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);
    json_t *doc;

    (void)state;
    ev.has_message = true;
    (void)snprintf(ev.message, sizeof(ev.message),
                   "m\xc2\x9b"
                   "2J");
    out_exc_text(fp, &ev, OUT_EXC_STACK);
    assert_int_equal(fclose(fp), 0);
    assert_null(strpbrk(buf, "\x1b\x07\r"));
    assert_null(strstr(buf, "\xc2\x9b"));
    assert_non_null(strstr(buf, "Evil\\x1b[31m: m\\u009b2J  raised at /x\\x07.py:1 in fn"));
    free(buf);
    fp = open_memstream(&buf, &len);
    ev.kind = TRACER_EV_RAISE;
    out_exc_json(fp, &ev);
    assert_int_equal(fclose(fp), 0);
    assert_null(strpbrk(buf, "\x1b\x07\r"));
    assert_null(strstr(buf, "\xc2\x9b"));
    doc = json_loads(buf, 0, NULL);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "type")), "Evil\x1b[31m");
    assert_string_equal(json_string_value(json_object_get(doc, "message")), "m\xc2\x9b"
                                                                            "2J");
    json_decref(doc);
    free(buf);
}

/* A tracer's statistics with a value in every field the stop record and sentence show. */
static struct tracer_stats stop_stats(void)
{
    struct tracer_stats st = {.hits = 9,
                              .raises = 8,
                              .reported = 5,
                              .not_reported = 2,
                              .filtered = 1,
                              .counted_total = 4,
                              .counting = true,
                              .count_cost_us = 10.5,
                              .count_exact_rate = -1.0,
                              .unseen_hits = 3,
                              .unseen_raises_est = 3,
                              .disarms = 1,
                              .disarmed_seconds = 1.5,
                              .budget = 0.01,
                              .spent_s = 0.02,
                              .own_cpu_s = 0.25,
                              .target_cpu_s = 2.0,
                              .stop_cost_us = 31.25,
                              .pinned_threads = 2,
                              .episodes = 7,
                              .raises_est = 8.5,
                              .sampled_every = 1};
    return st;
}

/* The stop record is the document the CLI built before it moved here (the old code, inlined as
 * the oracle: same keys, same order, same numbers), and the start record escapes C1. */
static void test_start_and_stop_records(void **state)
{
    struct tracer_stats st = stop_stats();
    char *buf = NULL, *want;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);
    json_t *o = json_pack(
        "{s:s, s:i, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:I, s:I, s:f, s:I, s:f, s:f}", "event",
        "stop", "pid", 42, "reason", "signal SIGINT", "hits", (json_int_t)st.hits, "raises",
        (json_int_t)st.raises, "reported", (json_int_t)st.reported, "not_reported",
        (json_int_t)st.not_reported, "filtered", (json_int_t)st.filtered, "counted_hits",
        (json_int_t)st.counted_total, "counting", st.counting, "unseen_hits",
        (json_int_t)st.unseen_hits, "unseen_raises_est", (json_int_t)st.unseen_raises_est,
        "disarmed_seconds", st.disarmed_seconds, "disarms", (json_int_t)st.disarms, "count_cost_us",
        st.count_cost_us, "count_exact_rate", st.count_exact_rate);

    (void)state;
    assert_int_equal(
        json_object_update_new(
            o, json_pack("{s:f, s:f, s:f, s:f, s:f, s:I, s:I, s:f, s:I, s:I, s:I, s:I}", "budget",
                         st.budget, "budget_spent_s", st.spent_s, "own_cpu_s", st.own_cpu_s,
                         "target_cpu_s", st.target_cpu_s, "stop_cost_us", st.stop_cost_us,
                         "pinned_threads", (json_int_t)st.pinned_threads, "episodes",
                         (json_int_t)st.episodes, "raises_est", st.raises_est, "ring_lost",
                         (json_int_t)st.ring_lost, "in_flight_at_start",
                         (json_int_t)st.in_flight_at_start, "sampled_every",
                         (json_int_t)st.sampled_every, "read_errors", (json_int_t)st.read_errors)),
        0);
    want = json_dumps(o, JSON_COMPACT);
    out_exc_json_stop(fp, 42, "signal SIGINT", &st);
    out_exc_json_start(fp, 42, "3.12.1", "perf", "note\xc2\x9b");
    assert_int_equal(fclose(fp), 0);
    assert_memory_equal(buf, want, strlen(want));
    assert_string_equal(buf + strlen(want),
                        "\n{\"event\":\"start\",\"pid\":42,\"python\":\"3.12.1\",\"mechanism\":"
                        "\"perf\",\"mechanism_note\":\"note\\u009b\"}\n");
    free(want);
    free(buf);
    json_decref(o);
}

/* The log's sentences, byte for byte as the CLI wrote them before they moved here. */
static void test_start_and_stop_sentences(void **state)
{
    struct tracer_stats st = stop_stats();
    char msg[600];

    (void)state;
    out_exc_stop_words(msg, sizeof(msg), 42, true, "signal SIGINT", &st);
    assert_string_equal(msg, "pid 42: stopped (signal SIGINT): 5 raises reported, 2 seen but not "
                             "reported (rate limit), 1 filtered out; 3 breakpoint hits while "
                             "rate-limited off (exact; about 3 raises), off for 1.5 s; tracing "
                             "took about 1% of the target's CPU time (budget 1%)");
    st.counted_total = 0;
    st.in_flight_at_start = 2;
    st.read_errors = 1;
    out_exc_stop_words(msg, sizeof(msg), 42, false, "duration", &st);
    assert_string_equal(msg, "stopped (duration): 5 raises reported, 2 seen but not reported "
                             "(rate limit), 1 filtered out; raises while rate-limited off not "
                             "counted (debug registers have no counter), off for 1.5 s; 2 "
                             "already propagating when tracing began (raise site unseen) not "
                             "reported; tracing took about 1% of the target's CPU time (budget "
                             "1%); 1 hits unreadable (thread state, exception or stack), not "
                             "counted");
    out_exc_stop_words(msg, 24, 42, false, "duration", &st); /* cut, terminated */
    assert_string_equal(msg, "stopped (duration): 5 r");
    out_exc_start_words(msg, sizeof(msg), 42, "3.12.1", "bpf", "");
    assert_string_equal(msg, "tracing exceptions of pid 42 (Python 3.12.1) with bpf (uprobe, no "
                             "stops); Ctrl-C stops");
    out_exc_start_words(msg, sizeof(msg), 42, "3.12.1", "perf", "a note");
    assert_string_equal(msg, "tracing exceptions of pid 42 (Python 3.12.1) with perf "
                             "breakpoints; Ctrl-C stops. a note");
    out_exc_tree_words(msg, sizeof(msg), 7, "signal SIGTERM", 3, 1, true);
    assert_string_equal(msg, "stopped (signal SIGTERM): 3 Python processes of pid 7's tree "
                             "traced, 1 not Python or unsupported, more than 64 at once: the "
                             "others not traced");
}

/* Bytes waiting in the pipe's read end fd (non-blocking), up to cap. */
static size_t pipe_take(int fd, char *buf, size_t cap)
{
    ssize_t n = read(fd, buf, cap);

    return n > 0 ? (size_t)n : 0;
}

/* The output queue writes a batch of records with one write at outq_drain (a write per record
 * was a third of pyscope's system time at thousands of raises/s), early only when half full,
 * and keeps every record whole and in order, the stream reused from one record to the next. */
static void test_outq_writes_per_batch(void **state)
{
    int fds[2];
    struct outq *q = NULL;
    struct ps_err err = {0};
    char buf[4096];

    (void)state;
    assert_int_equal(pipe(fds), 0);
    assert_int_equal(fcntl(fds[0], F_SETFL, O_NONBLOCK), 0);
    assert_int_equal(outq_open(fds[1], 64, &q, &err), 0);
    for (int i = 0; i < 2; i++) {
        FILE *fp = outq_begin(q);
        assert_non_null(fp);
        (void)fprintf(fp, "rec%d\n", i);
        outq_commit(q);
    }
    assert_int_equal(pipe_take(fds[0], buf, sizeof(buf)), 0); /* 10 of 64 bytes: not yet */
    assert_int_equal(outq_drain(q), 0);
    assert_int_equal(pipe_take(fds[0], buf, sizeof(buf)), 10);
    assert_memory_equal(buf, "rec0\nrec1\n", 10);
    for (int i = 0; i < 4; i++) { /* 4 x 9 bytes: the fourth takes it over half */
        FILE *fp = outq_begin(q);
        (void)fprintf(fp, "record_%d\n", i);
        outq_commit(q);
    }
    assert_int_equal(pipe_take(fds[0], buf, sizeof(buf)), 36);
    assert_memory_equal(buf, "record_0\nrecord_1\nrecord_2\nrecord_3\n", 36);
    assert_int_equal(outq_dropped(q), 0);
    assert_int_equal(outq_finish(q, &err), 0);
    outq_close(q);
    (void)close(fds[0]);
    (void)close(fds[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_summary_aligned_with_handler_file),
        cmocka_unit_test(test_summary_takes_exact_site_counts),
        cmocka_unit_test(test_text_and_json_escape),
        cmocka_unit_test(test_start_and_stop_records),
        cmocka_unit_test(test_start_and_stop_sentences),
        cmocka_unit_test(test_outq_writes_per_batch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
