/* SPDX-License-Identifier: MIT */
/*
 * Non-blocking, bounded output queue (see outq.h). A ring of bytes plus one scratch buffer that
 * fmemopen formats into; no allocation after outq_open.
 */
#include "pyscope/outq.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct outq {
    int fd;     /* where records go */
    int own_fd; /* our private non-blocking description, -1 if none */
    char *ring; /* cap bytes */
    size_t cap, head, len;
    char *scratch; /* OUTQ_RECORD_MAX bytes */
    FILE *mem;     /* the stream over scratch, opened once (a stream per record cost more than
                      formatting it) */
    FILE *cur;     /* mem while a record is being formatted, else NULL */
    uint64_t dropped;
};

/* A private O_NONBLOCK description of fd when it is a pipe, terminal or socket. */
static int private_nonblocking(int fd)
{
    char path[64];
    struct stat st;

    if (fstat(fd, &st) != 0 ||
        !(S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode) || S_ISSOCK(st.st_mode)))
        return -1;
    (void)snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    return open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
}

int outq_open(int fd, size_t cap, struct outq **out, struct ps_err *err)
{
    struct outq *q = calloc(1, sizeof(*q));

    if (q) {
        q->ring = malloc(cap);
        q->scratch = malloc(OUTQ_RECORD_MAX);
    }
    if (!q || !q->ring || !q->scratch) {
        outq_close(q);
        return ps_err_set(err, -ENOMEM, "cannot allocate the output queue: out of memory");
    }
    q->cap = cap;
    q->own_fd = private_nonblocking(fd);
    q->fd = q->own_fd >= 0 ? q->own_fd : fd;
    *out = q;
    return 0;
}

FILE *outq_begin(struct outq *q)
{
    if (!q->mem)
        q->mem = fmemopen(q->scratch, OUTQ_RECORD_MAX, "w");
    else
        rewind(q->mem); /* and its error indicator: a record cut before does not stick */
    q->cur = q->mem;
    return q->cur;
}

static void ring_push(struct outq *q, const char *p, size_t n)
{
    size_t tail = (q->head + q->len) % q->cap;
    size_t first = n < q->cap - tail ? n : q->cap - tail;

    memcpy(q->ring + tail, p, first);
    memcpy(q->ring, p + first, n - first);
    q->len += n;
}

void outq_commit(struct outq *q)
{
    long n;

    if (!q->cur)
        return;
    (void)fflush(q->cur);
    n = ftell(q->cur);
    q->cur = NULL;
    /* A record that filled the scratch buffer was cut: drop it rather than emit half. */
    if (n <= 0 || (size_t)n >= OUTQ_RECORD_MAX - 1 || (size_t)n > q->cap - q->len)
        q->dropped += n > 0;
    else
        ring_push(q, q->scratch, (size_t)n);
    /* written per batch by the caller's outq_drain (one write for a batch of records instead
     * of one per record: at thousands of raises/s the writes were a third of pyscope's system
     * time); here only when half the queue is taken, so a long batch cannot fill it */
    if (q->len > q->cap / 2)
        (void)outq_drain(q);
}

/* Write from the ring; blocking or not is the descriptor's mode. */
static int ring_write(struct outq *q)
{
    while (q->len > 0) {
        size_t chunk = q->len < q->cap - q->head ? q->len : q->cap - q->head;
        ssize_t w = write(q->fd, q->ring + q->head, chunk);

        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        q->head = (q->head + (size_t)w) % q->cap;
        q->len -= (size_t)w;
    }
    return 0;
}

int outq_drain(struct outq *q)
{
    int rc = ring_write(q);

    return rc == -EAGAIN ? 0 : rc;
}

int outq_finish(struct outq *q, struct ps_err *err)
{
    int rc;

    if (q->own_fd >= 0) {
        int fl = fcntl(q->own_fd, F_GETFL);

        if (fl >= 0)
            (void)fcntl(q->own_fd, F_SETFL, fl & ~O_NONBLOCK);
    }
    rc = ring_write(q);
    if (rc < 0)
        return ps_err_set(err, rc, "cannot write the output: %s", strerror(-rc));
    return 0;
}

uint64_t outq_dropped(const struct outq *q)
{
    return q->dropped;
}

void outq_close(struct outq *q)
{
    if (!q)
        return;
    if (q->mem)
        (void)fclose(q->mem);
    if (q->own_fd >= 0)
        (void)close(q->own_fd);
    free(q->ring);
    free(q->scratch);
    free(q);
}
