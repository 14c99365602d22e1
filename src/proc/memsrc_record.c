/* SPDX-License-Identifier: MIT */
/*
 * Recording memory source: passes reads through to another source and keeps every range that
 * was read successfully, so a walk of a real interpreter becomes a fixture file that unit tests
 * replay with memsrc_fixture_open.
 *
 * The ranges are kept in an in-memory fixture source, which merges adjacent and overlapping
 * ranges as they arrive (a range read twice keeps the newer bytes), and written out by
 * memsrc_record_flush or on close. Writing is atomic (temp file + rename): a reader never sees
 * a partial file. The wrap writes an empty fixture at once, so a bad path fails early. A read
 * whose bytes cannot be kept (fixture caps, ENOMEM) fails: a recording is complete or refused.
 */
#include "pyscope/memsrc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memsrc_int.h"

struct memsrc_record {
    struct memsrc base;
    struct memsrc *inner; /* owned */
    struct memsrc *fix;   /* owned: the ranges read so far */
    char *path;           /* owned */
};

static const struct memsrc_ops record_ops;

static int record_readv(struct memsrc *src, const struct memsrc_iov *iov, size_t n,
                        struct ps_err *err)
{
    struct memsrc_record *r = (struct memsrc_record *)src;
    int rc = memsrc_readv(r->inner, iov, n, err);

    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = memsrc_fixture_add(r->fix, iov[i].addr, iov[i].buf, iov[i].len, err);
        if (rc < 0)
            ps_err_prefix(err, "recording to %s: ", r->path);
    }
    return rc;
}

static void record_describe(const struct memsrc *src, char *buf, size_t len)
{
    const struct memsrc_record *r = (const struct memsrc_record *)src;
    char inner[MEMSRC_DESC_MAX];

    memsrc_describe(r->inner, inner, sizeof(inner));
    (void)snprintf(buf, len, "%s (recording to %s)", inner, r->path);
}

int memsrc_record_flush(struct memsrc *src, struct ps_err *err)
{
    const struct memsrc_record *r =
        src && src->ops == &record_ops ? (const struct memsrc_record *)src : NULL;

    if (!r)
        return ps_err_set(err, -EINVAL, "memsrc_record_flush needs a recording source");
    return memsrc_fixture_save(r->fix, r->path, err);
}

static void record_free(struct memsrc_record *r)
{
    memsrc_close(r->fix);
    free(r->path);
    free(r);
}

/*
 * Close cannot report errors: callers that must know call memsrc_record_flush first. On failure
 * the file keeps the previous flush (at worst the empty fixture written by the wrap).
 */
static void record_close(struct memsrc *src)
{
    struct memsrc_record *r = (struct memsrc_record *)src;
    int unreported = memsrc_record_flush(src, NULL);

    (void)unreported;
    memsrc_close(r->inner);
    record_free(r);
}

static const struct memsrc_ops record_ops = {
    .name = "record",
    .readv = record_readv,
    .describe = record_describe,
    .close = record_close,
};

int memsrc_record_wrap(struct memsrc *inner, const char *path, struct memsrc **out,
                       struct ps_err *err)
{
    struct memsrc_record *r;
    int rc;

    if (!inner || !path)
        return ps_err_set(err, -EINVAL, "the record source needs a source and a path");
    r = calloc(1, sizeof(*r));
    if (!r)
        return ps_err_set(err, -ENOMEM, "out of memory wrapping a source in a recorder");
    r->base.ops = &record_ops;
    r->base.pid = inner->pid;
    r->inner = inner;
    r->path = strdup(path);
    rc = r->path ? memsrc_fixture_new(&r->fix, err)
                 : ps_err_set(err, -ENOMEM, "out of memory copying path %s", path);
    if (rc == 0)
        rc = memsrc_fixture_save(r->fix, r->path, err);
    if (rc < 0)
        goto fail_free;
    *out = &r->base;
    return 0;

fail_free:
    record_free(r);
    return rc;
}
