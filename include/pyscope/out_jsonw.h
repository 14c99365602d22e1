/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_OUT_JSONW_H
#define PYSCOPE_OUT_JSONW_H

/*
 * The one JSON string escaper of every JSON output, and the serializer that writes a jansson
 * document through it. Writers that stream (exception lines, sites, profiles) call
 * out_json_str for each string; writers that build a document (dump, tasks, ps, growth, the
 * exception start and stop records, --log-format json) build it with jansson and write it with
 * out_json_dump/out_json_dumps, never json_dump*: jansson escapes only what JSON requires and
 * leaves DEL and the C1 controls (U+0080..U+009F, CSI U+009B among them) raw, which a terminal
 * showing the file obeys. Numbers, true, false and null are formatted by jansson, so a
 * document's bytes are jansson's apart from the strings' escapes.
 *
 * Escapes: `\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`; `\u00xx` (lower-case hex) for the other C0
 * controls, DEL and the C1 controls; a byte that does not start a valid UTF-8 sequence is
 * written as `?`, so the output parses whatever the target's strings hold; every other
 * character is written as is (UTF-8). Writers never fail: stream errors are sticky in the FILE
 * for the caller to check. Thread-safe (no state).
 */

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

/* Write s (NUL-terminated, any bytes) as a JSON string, quotes included. */
void out_json_str(FILE *fp, const char *s);

/* Length of the valid UTF-8 sequence at s (1-4; overlong forms and surrogates are not valid),
 * or 0 when it is not valid (a NUL byte is a sequence of 1). */
size_t out_json_utf8_len(const unsigned char *s);

/*
 * A jansson string holding target text s as is, for a document written by out_json_dump
 * (which escapes it; jansson's json_string would refuse a byte that is not UTF-8): NULL for a
 * NULL s, or out of memory (json_pack and json_object_set_new report that as their failure).
 */
json_t *out_json_text(const char *s);

/*
 * Write the document v (an object or array, or any value) as JSON: on one line with no spaces
 * when indent <= 0, else one member per line indented by indent spaces (at most 31), ": "
 * between key and value, as json_dumpf with JSON_COMPACT or JSON_INDENT(indent) and
 * JSON_PRESERVE_ORDER (members in insertion order). Reals with precision significant digits
 * (JSON_REAL_PRECISION; 0 = jansson's default). Containers deeper than 64 levels are written
 * as null. No newline after the document.
 */
void out_json_dump(FILE *fp, const json_t *v, int indent, int precision);

/* As out_json_dump, into a new malloc'ed NUL-terminated string (NULL when out of memory). */
char *out_json_dumps(const json_t *v, int indent, int precision);

#endif
