/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_MEMSRC_H
#define PYSCOPE_MEMSRC_H

/*
 * Memory sources: the only code in pyscope that reads target memory. Everything above takes a
 * `struct memsrc *`, so the same walker serves a live process, a core file (later) and unit
 * tests replaying recorded bytes.
 *
 * The rio pattern: each backend provides a `static const struct memsrc_ops`; reads are all or
 * nothing (a short read is a failure and the destination content is then unspecified); a
 * failed read returns a negative code and fills err. Target addresses are uint64_t, never host
 * pointers. A source is used by one thread at a time.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pyscope/err.h"

/* One range of a scatter read: copy len bytes at target address addr into buf. */
struct memsrc_iov {
    uint64_t addr;
    void *buf;
    size_t len;
};

/* Largest single range we ever read (a data-stack chunk is 16 KiB; huge frames double it). */
#define MEMSRC_MAX_READ (4u << 20)
/* Most ranges in one memsrc_readv call (IOV_MAX is 1024 on Linux). */
#define MEMSRC_MAX_IOV 1024

struct memsrc;

struct memsrc_ops {
    const char *name; /* "live", "fixture", "faulty", "record" */
    /* Read all n ranges or fail. n <= MEMSRC_MAX_IOV, each len <= MEMSRC_MAX_READ. */
    int (*readv)(struct memsrc *src, const struct memsrc_iov *iov, size_t n, struct ps_err *err);
    /* Write "pid 4242" or similar into buf. */
    void (*describe)(const struct memsrc *src, char *buf, size_t len);
    /* Release backend state and the struct itself. */
    void (*close)(struct memsrc *src);
};

/* Counters shared by every backend (updated by memsrc_readv). */
struct memsrc_stats {
    uint64_t calls;    /* memsrc_readv/memsrc_read calls */
    uint64_t ranges;   /* ranges requested */
    uint64_t bytes;    /* bytes requested */
    uint64_t failures; /* calls that failed */
};

/* Base struct; backends embed it first. */
struct memsrc {
    const struct memsrc_ops *ops;
    pid_t pid; /* target pid, or 0 when not a live process */
    struct memsrc_stats stats;
};

/*
 * Scatter read: all n ranges, one syscall on the live backend when possible. Returns 0, or a
 * negative code with err filled: -EFAULT (unmapped address), -PS_EGONE (target exited), -EPERM,
 * -EINVAL (n or a length over the caps). n == 0 succeeds.
 */
int memsrc_readv(struct memsrc *src, const struct memsrc_iov *iov, size_t n,
                 struct ps_err *err) PS_WARN_UNUSED;

/* Read len bytes at addr into buf, all or nothing. Same errors as memsrc_readv. */
int memsrc_read(struct memsrc *src, uint64_t addr, void *buf, size_t len,
                struct ps_err *err) PS_WARN_UNUSED;

/* Convenience: read one little-endian 64-bit word / 32-bit word. */
int memsrc_read_u64(struct memsrc *src, uint64_t addr, uint64_t *out,
                    struct ps_err *err) PS_WARN_UNUSED;
int memsrc_read_u32(struct memsrc *src, uint64_t addr, uint32_t *out,
                    struct ps_err *err) PS_WARN_UNUSED;

/* Describe the source into buf ("pid 4242"); always NUL-terminates. */
void memsrc_describe(const struct memsrc *src, char *buf, size_t len);

/* Close a source and free it. NULL-safe. A wrapper closes the source it wraps. */
void memsrc_close(struct memsrc *src);

/*
 * Live backend over process_vm_readv(2); falls back to pread on /proc/PID/mem when the syscall
 * is unavailable (ENOSYS) or refused by seccomp. Does not attach or stop the target. Errors:
 * -ESRCH (no such pid). Permission problems surface on the first read as -EPERM.
 */
int memsrc_live_open(pid_t pid, struct memsrc **out, struct ps_err *err) PS_WARN_UNUSED;

/* Force the /proc/PID/mem path (tests and diagnostics). */
int memsrc_live_open_procmem(pid_t pid, struct memsrc **out, struct ps_err *err) PS_WARN_UNUSED;

/*
 * Fixture backend: replays recorded segments from a file written by the record wrapper (format
 * in src/proc/memsrc_fixture.c). A read is served only if it lies entirely inside one segment;
 * otherwise -EFAULT. Errors on open: -ENOENT, -PS_EFORMAT.
 */
int memsrc_fixture_open(const char *path, struct memsrc **out, struct ps_err *err) PS_WARN_UNUSED;

/*
 * Fixture built in memory (unit tests): start empty, add segments (copied), then read.
 * memsrc_fixture_add returns -EINVAL for a source that is not a fixture, -ENOMEM.
 */
int memsrc_fixture_new(struct memsrc **out, struct ps_err *err) PS_WARN_UNUSED;
int memsrc_fixture_add(struct memsrc *src, uint64_t addr, const void *data, size_t len,
                       struct ps_err *err) PS_WARN_UNUSED;

/* Fault-injecting wrapper (tests). Takes ownership of inner on success (on failure the caller
 * keeps it). */
enum memsrc_fault {
    MEMSRC_FAULT_FAIL,   /* the read fails with -EFAULT */
    MEMSRC_FAULT_GARBLE, /* the read succeeds with pseudo-random bytes */
    MEMSRC_FAULT_ZERO,   /* the read succeeds with zero bytes */
};
/* Inject `fault` into the nth range read (1-based, counting ranges) and, if every > 0,
 * every `every` ranges after it; nth == 0 injects nothing (to count a walk's ranges). FAIL fails
 * the whole call. seed drives GARBLE (same seed, same bytes). */
int memsrc_faulty_wrap(struct memsrc *inner, enum memsrc_fault fault, uint64_t nth, uint64_t every,
                       uint64_t seed, struct memsrc **out, struct ps_err *err) PS_WARN_UNUSED;
/* Ranges read so far through a faulty wrapper (to size sweeps); 0 for other sources. */
uint64_t memsrc_faulty_count(const struct memsrc *src);

/*
 * Recording wrapper: passes reads through to inner and keeps every successful range (adjacent
 * and overlapping ranges merged, newer bytes win) for a fixture file at path, written by
 * memsrc_record_flush and on close (atomically: temp file + rename). Creates an empty fixture
 * at path at once, so a bad path fails here (-errno). A read whose bytes cannot be kept fails
 * (-PS_ELIMIT, -ENOMEM). Takes ownership of inner on success (on failure the caller keeps it).
 */
int memsrc_record_wrap(struct memsrc *inner, const char *path, struct memsrc **out,
                       struct ps_err *err) PS_WARN_UNUSED;

/*
 * Write the ranges recorded so far to the wrapper's path now, reporting failure (-errno), which
 * memsrc_close cannot. -EINVAL for a source that is not a recorder.
 */
int memsrc_record_flush(struct memsrc *src, struct ps_err *err) PS_WARN_UNUSED;

#endif
