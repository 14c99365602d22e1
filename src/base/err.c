/* SPDX-License-Identifier: MIT */
/*
 * Error contexts (see err.h). Pure string formatting into caller-owned fixed buffers: no
 * allocation, no I/O, safe in teardown paths.
 */
#include "pyscope/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void ps_err_clear(struct ps_err *err)
{
    if (!err)
        return;
    err->code = 0;
    err->msg[0] = '\0';
}

PS_PRINTF(3, 0)
static int err_vset(struct ps_err *err, int code, const char *fmt, va_list ap)
{
    if (!err)
        return code;
    err->code = code;
    /* clang 14's analyzer loses va_start across the call (x86-64 va_list is an array). */
    (void)vsnprintf(err->msg, sizeof(err->msg), fmt, ap); // NOLINT(clang-analyzer-valist.*)
    return code;
}

int ps_err_set(struct ps_err *err, int code, const char *fmt, ...)
{
    va_list ap;

    if (!err || err->code != 0)
        return code;
    va_start(ap, fmt);
    (void)err_vset(err, code, fmt, ap);
    va_end(ap);
    return code;
}

int ps_err_replace(struct ps_err *err, int code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    (void)err_vset(err, code, fmt, ap);
    va_end(ap);
    return code;
}

void ps_err_prefix(struct ps_err *err, const char *fmt, ...)
{
    char pre[256];
    char old[PS_ERR_MSG_MAX];
    size_t plen;
    va_list ap;

    if (!err || err->code == 0)
        return;
    va_start(ap, fmt);
    (void)vsnprintf(pre, sizeof(pre), fmt, ap); // NOLINT(clang-analyzer-valist.*): as above
    va_end(ap);
    plen = strlen(pre);

    memcpy(old, err->msg, sizeof(old));
    if (plen >= sizeof(err->msg))
        plen = sizeof(err->msg) - 1;
    memcpy(err->msg, pre, plen);
    /* Keep as much of the original sentence as fits after the prefix. */
    (void)strncpy(err->msg + plen, old, sizeof(err->msg) - plen - 1);
    err->msg[sizeof(err->msg) - 1] = '\0';
}

const char *ps_err_name(int code)
{
    switch (-code) {
    case PS_ENOTPYTHON: return "ENOTPYTHON";
    case PS_EVERSION: return "EVERSION";
    case PS_ECORRUPT: return "ECORRUPT";
    case PS_ELIMIT: return "ELIMIT";
    case PS_EGONE: return "EGONE";
    case PS_EPERM: return "EPERM";
    case PS_EUSAGE: return "EUSAGE";
    case PS_EFORMAT: return "EFORMAT";
    case ESRCH: return "ESRCH";
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ENOMEM: return "ENOMEM";
    case EFAULT: return "EFAULT";
    case EIO: return "EIO";
    case ENOENT: return "ENOENT";
    case 0: return "OK";
    default: return "ERROR";
    }
}
