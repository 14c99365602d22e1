/* SPDX-License-Identifier: MIT */
/*
 * Memory sources: the common entry points and the live backend.
 *
 * Data flow: every read of target memory in pyscope enters memsrc_readv(), which checks the
 * caps, counts the call in src->stats and dispatches to the backend's ops. The live backend
 * copies from a running process with process_vm_readv(2), all ranges in one syscall (chunks of
 * IOV_MAX), and falls back to pread(2) on /proc/PID/mem when the syscall is missing (ENOSYS) or
 * refused by a seccomp filter (EPERM although /proc/PID/mem opens: both paths pass the same
 * ptrace access check, so an EPERM that the file does not repeat came from a filter). The
 * switch is sticky and the file is opened once.
 *
 * Invariants: reads are all or nothing; a partial transfer is -EFAULT naming the first byte
 * that was not copied. The read path does not allocate (the iovec arrays live in the source).
 * Must never stop, attach to or write to the target. Caveat: process_vm_readv names the target
 * by pid, so a pid reused after the target exits reads the newcomer; an opened /proc/PID/mem
 * stays bound to the original process and reads 0 bytes once it is gone.
 */
#include "pyscope/memsrc.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "memsrc_int.h"

#ifndef IOV_MAX
#define IOV_MAX 1024
#endif
/* Ranges per process_vm_readv call: the kernel refuses more than IOV_MAX with EINVAL. */
#define LIVE_CHUNK ((size_t)IOV_MAX)
/* EINTR retries per pread before giving up (reads of /proc/PID/mem are rarely interrupted). */
#define LIVE_EINTR_MAX 8
/* live_pvr() result meaning "process_vm_readv is unusable here: fall back to /proc/PID/mem". */
#define LIVE_UNUSABLE 1

struct memsrc_live {
    struct memsrc base;
    int memfd;                          /* /proc/PID/mem, -1 until the fallback needs it */
    bool procmem;                       /* sticky: read through memfd instead of process_vm_readv */
    struct iovec local[MEMSRC_MAX_IOV]; /* a chunk uses min(n, LIVE_CHUNK) of them */
    struct iovec remote[MEMSRC_MAX_IOV];
};

/* ---- common entry points ------------------------------------------------------------------ */

uint64_t memsrc_le64(const unsigned char *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

uint32_t memsrc_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Check the caps of a scatter read; on success *bytes is the total requested. */
static int memsrc_check(const struct memsrc_iov *iov, size_t n, uint64_t *bytes, struct ps_err *err)
{
    uint64_t total = 0;

    if (n > MEMSRC_MAX_IOV)
        return ps_err_set(err, -EINVAL,
                          "a scatter read of %zu ranges exceeds the cap of %d ranges per call; "
                          "split it into several calls",
                          n, MEMSRC_MAX_IOV);
    if (n > 0 && !iov)
        return ps_err_set(err, -EINVAL, "a scatter read of %zu ranges was given no ranges", n);
    for (size_t i = 0; i < n; i++) {
        if (iov[i].len > MEMSRC_MAX_READ)
            return ps_err_set(err, -EINVAL,
                              "reading %zu bytes at 0x%" PRIx64
                              " exceeds the cap of %u bytes per range; the length is corrupt or "
                              "must be read in pieces",
                              iov[i].len, iov[i].addr, MEMSRC_MAX_READ);
        if (iov[i].len > 0 && !iov[i].buf)
            return ps_err_set(err, -EINVAL, "range %zu of a scatter read has no buffer", i);
        if (iov[i].addr > UINT64_MAX - iov[i].len)
            return ps_err_set(err, -EFAULT,
                              "reading %zu bytes at 0x%" PRIx64
                              " wraps the address space: the pointer is corrupt",
                              iov[i].len, iov[i].addr);
        total += iov[i].len;
    }
    *bytes = total;
    return 0;
}

/* Calls rejected by the caps count as calls and failures but add no ranges or bytes. */
int memsrc_readv(struct memsrc *src, const struct memsrc_iov *iov, size_t n, struct ps_err *err)
{
    uint64_t bytes = 0;
    int rc;

    if (!src)
        return ps_err_set(err, -EINVAL, "read from a null memory source");
    src->stats.calls++;
    rc = memsrc_check(iov, n, &bytes, err);
    if (rc == 0) {
        src->stats.ranges += n;
        src->stats.bytes += bytes;
        if (n > 0)
            rc = src->ops->readv(src, iov, n, err);
    }
    if (rc < 0)
        src->stats.failures++;
    return rc;
}

int memsrc_read(struct memsrc *src, uint64_t addr, void *buf, size_t len, struct ps_err *err)
{
    const struct memsrc_iov iov = {.addr = addr, .buf = buf, .len = len};

    return memsrc_readv(src, &iov, 1, err);
}

int memsrc_read_u64(struct memsrc *src, uint64_t addr, uint64_t *out, struct ps_err *err)
{
    unsigned char b[8] = {0};
    int rc = memsrc_read(src, addr, b, sizeof(b), err);

    if (rc == 0)
        *out = memsrc_le64(b);
    return rc;
}

int memsrc_read_u32(struct memsrc *src, uint64_t addr, uint32_t *out, struct ps_err *err)
{
    unsigned char b[4] = {0};
    int rc = memsrc_read(src, addr, b, sizeof(b), err);

    if (rc == 0)
        *out = memsrc_le32(b);
    return rc;
}

void memsrc_describe(const struct memsrc *src, char *buf, size_t len)
{
    if (!buf || len == 0)
        return;
    buf[0] = '\0';
    if (src && src->ops && src->ops->describe)
        src->ops->describe(src, buf, len);
    buf[len - 1] = '\0';
}

void memsrc_close(struct memsrc *src)
{
    if (src && src->ops && src->ops->close)
        src->ops->close(src);
}

/* ---- live backend: errors ----------------------------------------------------------------- */

static int live_gone(const struct memsrc_live *l, struct ps_err *err)
{
    return ps_err_set(err, -PS_EGONE, "cannot read pid %d: the target exited", (int)l->base.pid);
}

static int live_denied(const struct memsrc_live *l, struct ps_err *err)
{
    return ps_err_set(
        err, -EPERM,
        "permission denied reading the memory of pid %d: run pyscope as the target's user or as "
        "root, or grant it CAP_SYS_PTRACE (and check kernel.yama.ptrace_scope)",
        (int)l->base.pid);
}

/* The first byte not copied is `off` bytes into the scatter read: name its address. */
static int live_fault(const struct memsrc_live *l, const struct memsrc_iov *iov, size_t n,
                      uint64_t off, struct ps_err *err)
{
    size_t i = 0;

    while (i + 1 < n && off >= iov[i].len) {
        off -= iov[i].len;
        i++;
    }
    return ps_err_set(err, -EFAULT,
                      "reading %zu bytes at 0x%" PRIx64 " from pid %d failed: address 0x%" PRIx64
                      " is not mapped or not readable (a stale or corrupt pointer)",
                      iov[i].len, iov[i].addr, (int)l->base.pid, iov[i].addr + off);
}

/* Open /proc/PID/mem once; maps errno to our codes. */
static int live_open_memfd(struct memsrc_live *l, struct ps_err *err)
{
    char path[64];
    int e;

    if (l->memfd >= 0)
        return 0;
    (void)snprintf(path, sizeof(path), "/proc/%d/mem", (int)l->base.pid);
    l->memfd = open(path, O_RDONLY | O_CLOEXEC);
    if (l->memfd >= 0)
        return 0;
    e = errno;
    if (e == ENOENT || e == ESRCH)
        return live_gone(l, err);
    if (e == EACCES || e == EPERM)
        return live_denied(l, err);
    return ps_err_set(err, -e, "cannot open %s: %s", path, strerror(e));
}

/* ---- live backend: process_vm_readv ------------------------------------------------------- */

static int live_pvr_errno(const struct memsrc_live *l, const struct memsrc_iov *iov, size_t n,
                          int e, struct ps_err *err)
{
    switch (e) {
    case ENOSYS:
    case EPERM: return LIVE_UNUSABLE;
    case ESRCH: return live_gone(l, err);
    case EFAULT: return live_fault(l, iov, n, 0, err);
    default:
        return ps_err_set(err, -e, "process_vm_readv on pid %d failed: %s", (int)l->base.pid,
                          strerror(e));
    }
}

/* One process_vm_readv call for n <= min(LIVE_CHUNK, MEMSRC_MAX_IOV) ranges. */
static int live_pvr_chunk(struct memsrc_live *l, const struct memsrc_iov *iov, size_t n,
                          struct ps_err *err)
{
    size_t total = 0;
    ssize_t got;

    for (size_t i = 0; i < n; i++) {
        l->local[i] = (struct iovec){.iov_base = iov[i].buf, .iov_len = iov[i].len};
        l->remote[i] =
            (struct iovec){.iov_base = (void *)(uintptr_t)iov[i].addr, .iov_len = iov[i].len};
        total += iov[i].len;
    }
    got = process_vm_readv(l->base.pid, l->local, n, l->remote, n, 0);
    if (got < 0)
        return live_pvr_errno(l, iov, n, errno, err);
    if ((size_t)got != total)
        return live_fault(l, iov, n, (uint64_t)got, err);
    return 0;
}

static int live_pvr(struct memsrc_live *l, const struct memsrc_iov *iov, size_t n,
                    struct ps_err *err)
{
    int rc = 0;

    for (size_t i = 0; i < n && rc == 0; i += LIVE_CHUNK) {
        size_t k = n - i < LIVE_CHUNK ? n - i : LIVE_CHUNK;

        rc = live_pvr_chunk(l, iov + i, k, err);
    }
    return rc;
}

/* ---- live backend: /proc/PID/mem ---------------------------------------------------------- */

static int live_pread_errno(const struct memsrc_live *l, const struct memsrc_iov *v, size_t done,
                            int e, struct ps_err *err)
{
    if (e == EIO || e == EFAULT)
        return live_fault(l, v, 1, done, err);
    if (e == ESRCH)
        return live_gone(l, err);
    if (e == EPERM || e == EACCES)
        return live_denied(l, err);
    return ps_err_set(err, -e, "reading /proc/%d/mem at 0x%" PRIx64 " failed: %s", (int)l->base.pid,
                      v->addr + done, strerror(e));
}

/* Read one range; each pass copies at least one byte or spends one of LIVE_EINTR_MAX retries. */
static int live_pread_range(const struct memsrc_live *l, const struct memsrc_iov *v,
                            struct ps_err *err)
{
    size_t done = 0;
    unsigned eintr = 0;

    if (v->addr > (uint64_t)INT64_MAX - v->len)
        return live_fault(l, v, 1, 0, err);
    while (done < v->len) {
        ssize_t got =
            pread(l->memfd, (char *)v->buf + done, v->len - done, (off_t)(v->addr + done));

        if (got > 0)
            done += (size_t)got;
        else if (got == 0)
            return live_gone(l, err);
        else if (errno != EINTR || ++eintr > LIVE_EINTR_MAX)
            return live_pread_errno(l, v, done, errno, err);
    }
    return 0;
}

static int live_procmem_readv(const struct memsrc_live *l, const struct memsrc_iov *iov, size_t n,
                              struct ps_err *err)
{
    int rc = 0;

    for (size_t i = 0; i < n && rc == 0; i++)
        rc = live_pread_range(l, &iov[i], err);
    return rc;
}

/* ---- live backend: ops -------------------------------------------------------------------- */

static int live_readv(struct memsrc *src, const struct memsrc_iov *iov, size_t n,
                      struct ps_err *err)
{
    struct memsrc_live *l = (struct memsrc_live *)src;
    int rc;

    if (!l->procmem) {
        rc = live_pvr(l, iov, n, err);
        if (rc != LIVE_UNUSABLE)
            return rc;
        rc = live_open_memfd(l, err);
        if (rc < 0)
            return rc;
        l->procmem = true;
    }
    return live_procmem_readv(l, iov, n, err);
}

static void live_describe(const struct memsrc *src, char *buf, size_t len)
{
    const struct memsrc_live *l = (const struct memsrc_live *)src;

    if (l->procmem)
        (void)snprintf(buf, len, "pid %d (via /proc/%d/mem)", (int)src->pid, (int)src->pid);
    else
        (void)snprintf(buf, len, "pid %d", (int)src->pid);
}

static void live_close(struct memsrc *src)
{
    struct memsrc_live *l = (struct memsrc_live *)src;

    if (l->memfd >= 0)
        (void)close(l->memfd);
    free(l);
}

static const struct memsrc_ops live_ops = {
    .name = "live",
    .readv = live_readv,
    .describe = live_describe,
    .close = live_close,
};

static int live_open(pid_t pid, bool procmem, struct memsrc **out, struct ps_err *err)
{
    struct memsrc_live *l;
    int rc;

    /* kill(pid, 0) fails with ESRCH only when no such process exists; EPERM means it does. */
    if (pid <= 0 || (kill(pid, 0) < 0 && errno == ESRCH))
        return ps_err_set(err, -ESRCH, "no process with pid %d: check the pid (it may have exited)",
                          (int)pid);
    l = calloc(1, sizeof(*l));
    if (!l)
        return ps_err_set(err, -ENOMEM, "out of memory opening pid %d", (int)pid);
    l->base.ops = &live_ops;
    l->base.pid = pid;
    l->memfd = -1;
    if (procmem) {
        rc = live_open_memfd(l, err);
        if (rc < 0)
            goto fail_free;
        l->procmem = true;
    }
    *out = &l->base;
    return 0;

fail_free:
    free(l);
    return rc;
}

int memsrc_live_open(pid_t pid, struct memsrc **out, struct ps_err *err)
{
    return live_open(pid, false, out, err);
}

int memsrc_live_open_procmem(pid_t pid, struct memsrc **out, struct ps_err *err)
{
    return live_open(pid, true, out, err);
}
