/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_ERR_H
#define PYSCOPE_ERR_H

/*
 * Errors: every fallible engine function returns 0 or a negative code and takes a
 * caller-owned `struct ps_err *` as its last parameter. The innermost function that knows the
 * cause fills it once with one actionable sentence (what failed, why, what to do); callers may
 * prefix context with ps_err_prefix(). No allocation, so it is usable under ENOMEM and during
 * teardown. The engine never prints: src/cli/main.c prints the message once.
 */

#include <stddef.h>

#define PS_WARN_UNUSED  __attribute__((warn_unused_result))
#define PS_PRINTF(a, b) __attribute__((format(printf, a, b)))

/* Codes beyond errno's range; functions return -errno or -PS_E*. */
enum ps_errcode {
    PS_EBASE = 10000,
    PS_ENOTPYTHON, /* the process holds no CPython runtime we can find */
    PS_EVERSION,   /* a CPython version we have no layout for */
    PS_ECORRUPT,   /* target data failed validation (torn, garbage, wrong layout) */
    PS_ELIMIT,     /* a bound was hit (length, count, depth) */
    PS_EGONE,      /* the target (or thread) exited */
    PS_EPERM,      /* permission denied, diagnosed */
    PS_EUSAGE,     /* bad command line */
    PS_EFORMAT,    /* malformed file (fixture, ELF, core) */
};

#define PS_ERR_MSG_MAX 1024

struct ps_err {
    int code;                 /* 0 when unset, else the negative code that was returned */
    char msg[PS_ERR_MSG_MAX]; /* NUL-terminated, one sentence (may be long for fixes) */
};

/* Reset an error context to "no error". NULL-safe. */
void ps_err_clear(struct ps_err *err);

/*
 * Fill err (if not NULL and not already set: the first, innermost cause wins) and return code,
 * which must be negative. Usage: return ps_err_set(err, -ENOMEM, "...%s", x);
 */
int ps_err_set(struct ps_err *err, int code, const char *fmt, ...) PS_PRINTF(3, 4);

/* Overwrite err even if already set (for a more precise diagnosis by a caller). Returns code. */
int ps_err_replace(struct ps_err *err, int code, const char *fmt, ...) PS_PRINTF(3, 4);

/* Prefix the message of a set error with context ("reading thread 12: "). NULL-safe. */
void ps_err_prefix(struct ps_err *err, const char *fmt, ...) PS_PRINTF(2, 3);

/* Short symbolic name of a code ("ENOTPYTHON", "EPERM", ...), never NULL. */
const char *ps_err_name(int code);

#endif
