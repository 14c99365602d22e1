/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_PYOBJ_INT_H
#define PYSCOPE_PYOBJ_INT_H

/*
 * Private to src/cpython/pyobj*.c: type checks shared by the scalar readers (pyobj.c) and the dict /
 * attribute readers (pyobj_dict.c), and the tp_flags bits they test. Per-version
 * instance-attribute offsets are struct layout fields (object_managed_*, type_dictoffset, ...).
 */

#include <stdint.h>

#include "pyscope/pyobj.h"

/* Decode a little-endian word from a local copy of target bytes (any alignment). */
uint64_t pyobj_le64(const uint8_t *p);

/*
 * Check that obj is a non-NULL, 8-byte aligned object whose type is `exact` (skipped when 0)
 * or whose type's tp_flags has `flag` (subclasses). `what` names the expected type for the
 * message ("str"). On success *type (optional) receives the type address. -PS_ECORRUPT on a
 * mismatch, read errors otherwise.
 */
int pyobj_check_type(const struct pyctx *c, uint64_t obj, uint64_t exact, uint64_t flag,
                     const char *what, uint64_t *type, struct ps_err *err) PS_WARN_UNUSED;

/* Read a type's tp_flags. */
int pyobj_type_flags(const struct pyctx *c, uint64_t type, uint64_t *flags,
                     struct ps_err *err) PS_WARN_UNUSED;

/* Longest key text we look up (identifiers and dotted module names are far shorter). */
#define PYOBJ_KEY_MAX 255
/* Keys compared per pyobj_str_match call (bounds its stack: about 10 KiB). */
#define PYOBJ_MATCH_BATCH 32

/*
 * Compare str object `obj` with the UTF-8 text `key` (len <= PYOBJ_KEY_MAX bytes). *equal is
 * false for objects of other types; unreadable or garbage objects are errors. Reads the
 * header, then the data only if the length can match.
 */
int pyobj_str_equals(const struct pyctx *c, uint64_t obj, const char *key, size_t len, bool *equal,
                     struct ps_err *err) PS_WARN_UNUSED;

/*
 * First of keys[0..n) (n <= PYOBJ_MATCH_BATCH, all non-NULL) that is a str equal to key
 * (len <= PYOBJ_KEY_MAX bytes): *index receives its position, or n when none matches. For an
 * ASCII key and exact PyUnicode_Type keys it costs two scatter reads for the whole batch;
 * other keys take the per-key path of pyobj_str_equals.
 */
int pyobj_str_match(const struct pyctx *c, const uint64_t *keys, size_t n, const char *key,
                    size_t len, size_t *index, struct ps_err *err) PS_WARN_UNUSED;

#endif
