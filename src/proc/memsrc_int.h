/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_MEMSRC_INT_H
#define PYSCOPE_MEMSRC_INT_H

/*
 * Private to the memory-source files (memsrc*.c): helpers shared between backends and
 * wrappers. Nothing outside src/proc/memsrc*.c includes this.
 */

#include <stdint.h>

#include "pyscope/memsrc.h"

/* Buffer size wrappers use for their inner source's describe() string. */
#define MEMSRC_DESC_MAX 512

/* Decode a little-endian integer from 8 / 4 bytes (target and fixture files are little-endian). */
uint64_t memsrc_le64(const unsigned char *p);
uint32_t memsrc_le32(const unsigned char *p);

/*
 * Write the segments of fixture source `src` to `path` in the format documented in
 * memsrc_fixture.c. Atomic: writes "<path>.tmp" and renames it over path, so a failure leaves
 * the previous file (or none) and never a partial one. -EINVAL if src is not a fixture; -errno
 * on I/O failure.
 */
int memsrc_fixture_save(const struct memsrc *src, const char *path,
                        struct ps_err *err) PS_WARN_UNUSED;

#endif
