/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for the one JSON escaper and serializer (src/out/out_jsonw.c): C0, DEL and C1
 * controls come out escaped, bytes that are not UTF-8 as '?', the rest as is; a jansson
 * document written by out_json_dump parses back to itself and, without controls in its
 * strings, is byte for byte what jansson's own dumper writes (compact and indented), so moving
 * a writer onto it changes no output but the escapes.
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

#include "pyscope/out_jsonw.h"

/* out_json_str(s) into a new string (the caller frees it). */
static char *escaped(const char *s)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);

    assert_non_null(fp);
    out_json_str(fp, s);
    assert_int_equal(fclose(fp), 0);
    return buf;
}

static void check_escaped(const char *in, const char *want)
{
    char *got = escaped(in);

    assert_string_equal(got, want);
    free(got);
}

static void test_controls_are_escaped(void **state)
{
    (void)state;
    check_escaped("plain caf\xc3\xa9 \xe2\x9c\x93", "\"plain caf\xc3\xa9 \xe2\x9c\x93\"");
    check_escaped("q\"b\\ n\nt\tr\rb\bf\f", "\"q\\\"b\\\\ n\\nt\\tr\\rb\\bf\\f\"");
    check_escaped("esc\x1b[31m bel\x07 del\x7f", "\"esc\\u001b[31m bel\\u0007 del\\u007f\"");
    /* C1: CSI (U+009B) and NEL (U+0085) are valid UTF-8 that a terminal obeys; U+00A0 is not C1 */
    check_escaped("csi\xc2\x9b"
                  "2J nel\xc2\x85 nbsp\xc2\xa0",
                  "\"csi\\u009b2J nel\\u0085 nbsp\xc2\xa0\"");
}

static void test_invalid_utf8_is_replaced(void **state)
{
    (void)state;
    /* a lone continuation, a cut sequence, an overlong '/', a surrogate, a byte past U+10FFFF */
    check_escaped("a\x80"
                  "b\xc3"
                  "c\xc0\xaf"
                  "d\xed\xa0\x80"
                  "e\xf5\x80\x80\x80",
                  "\"a?b?c??d???e????\"");
    check_escaped("\xe2\x9c", "\"??\"");
}

/* out_json_dumps and json_dumps agree on doc, compact and indented. */
static void check_same_as_jansson(json_t *doc)
{
    static const int indents[] = {0, 2, 4};

    for (size_t i = 0; i < sizeof(indents) / sizeof(indents[0]); i++) {
        size_t flags = JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(16) |
                       (indents[i] ? JSON_INDENT(indents[i]) : JSON_COMPACT);
        char *ours = out_json_dumps(doc, indents[i], 16), *theirs = json_dumps(doc, flags);

        assert_non_null(ours);
        assert_non_null(theirs);
        assert_string_equal(ours, theirs);
        free(ours);
        free(theirs);
    }
}

static void test_documents_match_jansson(void **state)
{
    json_t *doc = json_pack(
        "{s:s, s:i, s:I, s:f, s:f, s:f, s:b, s:b, s:n, s:[], s:{}, s:[i, s, {s:[f, n]}], s:{s:s}}",
        "zeta", "caf\xc3\xa9 \"q\" \n", "a", -3, "big", (json_int_t)9007199254740993LL, "t",
        1765152000.123456, "small", 0.0012, "whole", 2.0, "yes", 1, "no", 0, "nothing", "empty",
        "obj", "list", 7, "s", "nested", 1e-7, "deep", "k", "v");

    (void)state;
    assert_non_null(doc);
    check_same_as_jansson(doc);
    json_decref(doc);
}

static void test_document_strings_escape_c1_and_parse_back(void **state)
{
    json_t *doc = json_pack("{s:o, s:o}", "name", out_json_text("fn\x1b[31m\xc2\x9b!"), "bad",
                            out_json_text("x\xff"));
    char *text;
    json_t *back;

    (void)state;
    assert_non_null(doc);
    text = out_json_dumps(doc, 0, 0);
    assert_non_null(text);
    assert_string_equal(text, "{\"name\":\"fn\\u001b[31m\\u009b!\",\"bad\":\"x?\"}");
    back = json_loads(text, 0, NULL);
    assert_non_null(back);
    assert_string_equal(json_string_value(json_object_get(back, "name")), "fn\x1b[31m\xc2\x9b!");
    json_decref(back);
    free(text);
    json_decref(doc);
    assert_null(out_json_text(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_controls_are_escaped),
        cmocka_unit_test(test_invalid_utf8_is_replaced),
        cmocka_unit_test(test_documents_match_jansson),
        cmocka_unit_test(test_document_strings_escape_c1_and_parse_back),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
