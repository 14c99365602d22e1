/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_PYOBJ_H
#define PYSCOPE_PYOBJ_H

/*
 * Reading CPython objects out of target memory through a memory source and a layout table:
 * str (ASCII/UCS1/UCS2/UCS4 -> UTF-8), bytes, int, type names, dict lookups, instance
 * attributes (managed dicts / inline values, per version). Every object's type is checked
 * against the exported type address where we know it, every length is capped, every loop is
 * bounded; garbage gives -PS_ECORRUPT, never a crash or an overrun.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pyscope/err.h"
#include "pyscope/pyctx.h"

/* Longest str we decode (characters); longer strings are cut and flagged. */
#define PYOBJ_STR_MAX_CHARS 4096
/* Most dict entries we scan in one lookup (a thread registry or sys.modules is far smaller). */
#define PYOBJ_DICT_MAX_ENTRIES (1u << 20)

/* Read the ob_type of an object. */
int pyobj_type(const struct pyctx *c, uint64_t obj, uint64_t *type,
               struct ps_err *err) PS_WARN_UNUSED;

/*
 * Decode a str object into buf as NUL-terminated UTF-8 (at most cap-1 bytes; cut at a
 * character boundary). *truncated (optional) tells whether it was cut. Checks the type is
 * PyUnicode_Type (or a subclass: non-compact data pointer), kind in {1,2,4}, length capped.
 * Invalid code points (lone surrogates) become U+FFFD. Errors: -PS_ECORRUPT, read errors.
 */
int pyobj_str(const struct pyctx *c, uint64_t obj, char *buf, size_t cap, bool *truncated,
              struct ps_err *err) PS_WARN_UNUSED;

/*
 * Copy a bytes object's content (checks PyBytes_Type). On success *data is malloc'ed (caller
 * frees) and *len its length. Errors: -PS_ECORRUPT, -PS_ELIMIT (len > maxlen), -ENOMEM.
 */
int pyobj_bytes(const struct pyctx *c, uint64_t obj, size_t maxlen, uint8_t **data, size_t *len,
                struct ps_err *err) PS_WARN_UNUSED;

/*
 * An int's sign (-1, 0, 1) and digit count from its size word, as the layout says it is kept:
 * ob_size (signed digit count), or lv_tag where lay->long_tagged (ndigits << long_tag_size_shift
 * | sign bits: 0 positive, 1 zero, 2 negative). -PS_ECORRUPT for sign bits 3; -PS_EVERSION when
 * the layout's digits are not 2 or 4 bytes of at most that many bits (never decoded wrongly).
 */
int pyobj_long_shape(const struct layout *lay, uint64_t word, int *sign,
                     uint64_t *ndigits) PS_WARN_UNUSED;

/* Widen n little-endian digits of lay->long_digit_size bytes (2 or 4) at raw into out[n]. */
void pyobj_long_digits(const struct layout *lay, const uint8_t *raw, size_t n, uint32_t *out);

/* Read an int that fits int64 (checks PyLong_Type or bool). -PS_ELIMIT when it does not fit. */
int pyobj_long(const struct pyctx *c, uint64_t obj, int64_t *out,
               struct ps_err *err) PS_WARN_UNUSED;

/*
 * The type's name for display into buf: tp_name for static types ("ValueError",
 * "ssl.SSLError"); for heap types (Py_TPFLAGS_HEAPTYPE) "module.qualname" from
 * __module__ and ht_qualname ("json.decoder.JSONDecodeError"), "builtins." omitted.
 */
int pyobj_type_name(const struct pyctx *c, uint64_t type, char *buf, size_t cap,
                    struct ps_err *err) PS_WARN_UNUSED;

/* Look up a str key (compared by text) in a dict (checks PyDict_Type or subclass flag).
 * -ENOENT when absent. *value is a borrowed target address. */
int pyobj_dict_get_str(const struct pyctx *c, uint64_t dict, const char *key, uint64_t *value,
                       struct ps_err *err) PS_WARN_UNUSED;

/* Look up an entry by its stored hash (ints below 2^61-1 hash to themselves): the value of the
 * first entry whose hash equals `hash`. -ENOENT when absent. */
int pyobj_dict_get_hash(const struct pyctx *c, uint64_t dict, int64_t hash, uint64_t *value,
                        struct ps_err *err) PS_WARN_UNUSED;

/* Visit up to max entries (key, value) of a dict in order; cb returns non-zero to stop.
 * Returns the number visited or a negative code. */
typedef int (*pyobj_dict_cb)(uint64_t key, uint64_t value, void *arg);
int pyobj_dict_iter(const struct pyctx *c, uint64_t dict, size_t max, pyobj_dict_cb cb, void *arg,
                    struct ps_err *err) PS_WARN_UNUSED;

/*
 * An instance attribute stored in the instance's __dict__ / managed dict / inline values
 * (CPYTHON.md section 4, per version): e.g. Thread._name. -ENOENT when absent.
 */
int pyobj_instance_attr(const struct pyctx *c, uint64_t obj, const char *name, uint64_t *value,
                        struct ps_err *err) PS_WARN_UNUSED;

/* sys.modules[name] of an interpreter: its module object. -ENOENT when not imported. */
int pyobj_module(const struct pyctx *c, uint64_t interp, const char *name, uint64_t *module,
                 struct ps_err *err) PS_WARN_UNUSED;

/* A module's global: module.__dict__[name]. -ENOENT when absent. */
int pyobj_module_global(const struct pyctx *c, uint64_t module, const char *name, uint64_t *value,
                        struct ps_err *err) PS_WARN_UNUSED;

#endif
