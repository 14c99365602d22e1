/* SPDX-License-Identifier: MIT */
/*
 * The one JSON string escaper and the serializer of jansson documents through it (see
 * out_jsonw.h). Why a serializer of our own rather than json_dumpf: jansson has no hook for
 * its string escaping, and it leaves DEL and the C1 controls raw; building documents with
 * jansson keeps its object model (insertion order, sticky errors in out_json.c), and numbers
 * still come out of jansson (json_dumpb), so only the strings' bytes are ours.
 *
 * Invariant: every JSON string pyscope writes, key or value, goes through out_json_str.
 */
#include "pyscope/out_jsonw.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Largest indent JSON_INDENT accepts (a 5-bit field). */
#define JSON_INDENT_MAX 31
/* Deepest container written (a bound on the recursion, whatever a document holds). */
#define JSON_DEPTH_MAX 64

size_t out_json_utf8_len(const unsigned char *s)
{
    size_t n;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        n = 2;
    else if ((s[0] & 0xf0) == 0xe0)
        n = 3;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        n = 4;
    else
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] > 0x9f) || /* overlong, surrogate */
        (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] > 0x8f))   /* overlong, > U+10FFFF */
        return 0;
    return n;
}

/* True for what is written other than as is: JSON's own escapes, C0, DEL, C1, invalid UTF-8. */
static bool json_escaped(const unsigned char *p, size_t n)
{
    return n == 0 || *p < 0x20 || *p == '"' || *p == '\\' || *p == 0x7F ||
           (n == 2 && p[0] == 0xC2 && p[1] <= 0x9F);
}

/* JSON's short escape for c, or 0 when it has none. */
static char json_short(unsigned char c)
{
    switch (c) {
    case '"': return '"';
    case '\\': return '\\';
    case '\b': return 'b';
    case '\f': return 'f';
    case '\n': return 'n';
    case '\r': return 'r';
    case '\t': return 't';
    default: return 0;
    }
}

static void json_escape_one(FILE *fp, const unsigned char *p, size_t n)
{
    char letter = 0;

    if (n == 1)
        letter = json_short(*p);

    if (letter)
        (void)fprintf(fp, "\\%c", letter);
    else if (n == 0)
        (void)fputc('?', fp);
    else
        (void)fprintf(fp, "\\u%04x", n == 2 ? p[1] : p[0]);
}

void out_json_str(FILE *fp, const char *s)
{
    const unsigned char *p = (const unsigned char *)s, *run = p;

    /* Safe bytes are written in runs: the exception feed writes every raise through here. */
    (void)fputc('"', fp);
    while (*p) {
        size_t n = out_json_utf8_len(p);

        if (!json_escaped(p, n)) {
            p += n;
            continue;
        }
        (void)fwrite(run, 1, (size_t)(p - run), fp);
        json_escape_one(fp, p, n);
        p += n ? n : 1;
        run = p;
    }
    (void)fwrite(run, 1, (size_t)(p - run), fp);
    (void)fputc('"', fp);
}

json_t *out_json_text(const char *s)
{
    return s ? json_string_nocheck(s) : NULL;
}

/* A line break and depth levels of indent, or nothing (compact). */
static void json_indent(FILE *fp, int indent, int depth)
{
    if (indent <= 0)
        return;
    (void)fputc('\n', fp);
    for (int i = 0; i < indent * depth; i++)
        (void)fputc(' ', fp);
}

/* A number, true, false or null, as jansson writes it. */
static void json_scalar(FILE *fp, const json_t *v, int precision)
{
    char buf[64];
    size_t n =
        json_dumpb(v, buf, sizeof(buf), JSON_ENCODE_ANY | JSON_REAL_PRECISION(precision & 0x1F));

    if (n == 0 || n > sizeof(buf))
        (void)fputs("null", fp); /* a non-finite real: jansson refuses it */
    else
        (void)fwrite(buf, 1, n, fp);
}

/* Containers recurse into their values, at most JSON_DEPTH_MAX levels deep (json_value writes
 * null below that), so the recursion below is bounded; pyscope's documents are < 10 deep. */
/* NOLINTBEGIN(misc-no-recursion) */

static void json_value(FILE *fp, const json_t *v, int indent, int depth, int precision);

static void json_object_out(FILE *fp, const json_t *v, int indent, int depth, int precision)
{
    const char *key;
    json_t *val;
    size_t i = 0, n = json_object_size(v);

    (void)fputc('{', fp);
    if (n == 0) {
        (void)fputc('}', fp);
        return;
    }
    json_indent(fp, indent, depth + 1);
    json_object_foreach((json_t *)v, key, val)
    {
        out_json_str(fp, key);
        (void)fputs(indent > 0 ? ": " : ":", fp);
        json_value(fp, val, indent, depth + 1, precision);
        if (++i < n)
            (void)fputc(',', fp);
        json_indent(fp, indent, i < n ? depth + 1 : depth);
    }
    (void)fputc('}', fp);
}

static void json_array_out(FILE *fp, const json_t *v, int indent, int depth, int precision)
{
    size_t n = json_array_size(v);

    (void)fputc('[', fp);
    if (n == 0) {
        (void)fputc(']', fp);
        return;
    }
    json_indent(fp, indent, depth + 1);
    for (size_t i = 0; i < n; i++) {
        json_value(fp, json_array_get(v, i), indent, depth + 1, precision);
        if (i + 1 < n)
            (void)fputc(',', fp);
        json_indent(fp, indent, i + 1 < n ? depth + 1 : depth);
    }
    (void)fputc(']', fp);
}

static void json_value(FILE *fp, const json_t *v, int indent, int depth, int precision)
{
    if (depth > JSON_DEPTH_MAX)
        (void)fputs("null", fp);
    else if (json_is_object(v))
        json_object_out(fp, v, indent, depth, precision);
    else if (json_is_array(v))
        json_array_out(fp, v, indent, depth, precision);
    else if (json_is_string(v))
        out_json_str(fp, json_string_value(v));
    else
        json_scalar(fp, v, precision);
}

/* NOLINTEND(misc-no-recursion) */

void out_json_dump(FILE *fp, const json_t *v, int indent, int precision)
{
    json_value(fp, v, indent < JSON_INDENT_MAX ? indent : JSON_INDENT_MAX, 0, precision);
}

char *out_json_dumps(const json_t *v, int indent, int precision)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);

    if (!m)
        return NULL;
    out_json_dump(m, v, indent, precision);
    if (ferror(m)) {
        (void)fclose(m);
        free(buf);
        return NULL;
    }
    if (fclose(m) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}
