/* SPDX-License-Identifier: MIT */
/*
 * Fixture memory source: replays recorded bytes of a target, so walker and resolver tests run
 * without a live interpreter. Built in memory (memsrc_fixture_new/add) or loaded from a file
 * written by the record wrapper (memsrc_record_wrap).
 *
 * Invariants: segments are sorted by address, disjoint and never adjacent (at least one byte
 * apart), so "a read lies wholly inside one segment" means exactly "every byte was recorded".
 * memsrc_fixture_add merges the new bytes with every segment they overlap or touch; where they
 * overlap, the later add wins (a recording keeps the newest bytes it saw). Caps:
 * FIXTURE_MAX_SEGS segments and FIXTURE_MAX_BYTES bytes in all.
 *
 * File format, version 1 (every integer little-endian):
 *
 *   offset  size  field
 *   0       8     magic "PYSCOPEF"
 *   8       4     version, 1
 *   12      4     flags, 0 (readers reject unknown bits)
 *   16      8     nseg, the number of segments that follow
 *   24      ...   nseg segments, each: u64 addr, u64 len (>= 1), then len bytes of memory
 *
 * Segments are in ascending address order and do not overlap (adjacent ones are allowed and
 * merged on load); addr + len does not wrap; nothing follows the last segment. The loader
 * checks every one of these rules against the file size before allocating.
 */
#include "pyscope/memsrc.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "memsrc_int.h"

/* Cap on segments: a recorded walk touches a few thousand ranges; a million is a runaway. */
#define FIXTURE_MAX_SEGS ((size_t)1 << 20)
/* Cap on bytes held: fixtures are committed test data; 256 MiB means a heap was captured. */
#define FIXTURE_MAX_BYTES ((uint64_t)256 << 20)

#define FIXTURE_VERSION     1u
#define FIXTURE_HEADER_SIZE 24
#define FIXTURE_SEGHDR_SIZE 16

static const unsigned char fixture_magic[8] = {'P', 'Y', 'S', 'C', 'O', 'P', 'E', 'F'};

struct fixture_seg {
    uint64_t addr;
    uint64_t len;
    unsigned char *data; /* owned, len bytes */
};

struct memsrc_fixture {
    struct memsrc base;
    struct fixture_seg *segs; /* sorted, disjoint, non-adjacent */
    size_t nseg;
    size_t cap;
    uint64_t total; /* bytes held, <= FIXTURE_MAX_BYTES */
    char desc[MEMSRC_DESC_MAX];
};

static const struct memsrc_ops fixture_ops;

static struct memsrc_fixture *fixture_of(const struct memsrc *src)
{
    return src && src->ops == &fixture_ops ? (struct memsrc_fixture *)src : NULL;
}

static uint64_t seg_end(const struct fixture_seg *s)
{
    return s->addr + s->len;
}

/* ---- lookup and reads --------------------------------------------------------------------- */

/* Index of the first segment whose end is >= addr (it may touch or contain addr). */
static size_t fixture_lower(const struct memsrc_fixture *f, uint64_t addr)
{
    size_t lo = 0;
    size_t hi = f->nseg;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (seg_end(&f->segs[mid]) < addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Index of the first segment that starts after addr. */
static size_t fixture_upper(const struct memsrc_fixture *f, uint64_t addr)
{
    size_t lo = 0;
    size_t hi = f->nseg;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (f->segs[mid].addr <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int fixture_readv(struct memsrc *src, const struct memsrc_iov *iov, size_t n,
                         struct ps_err *err)
{
    const struct memsrc_fixture *f = (const struct memsrc_fixture *)src;

    for (size_t i = 0; i < n; i++) {
        size_t k = fixture_upper(f, iov[i].addr);
        const struct fixture_seg *s = k > 0 ? &f->segs[k - 1] : NULL;

        if (iov[i].len == 0)
            continue;
        if (!s || iov[i].addr >= seg_end(s) || iov[i].len > seg_end(s) - iov[i].addr)
            return ps_err_set(err, -EFAULT,
                              "reading %zu bytes at 0x%" PRIx64
                              " from %s failed: the fixture holds no recording of all of them "
                              "(re-record the fixture)",
                              iov[i].len, iov[i].addr, f->desc);
        memcpy(iov[i].buf, s->data + (iov[i].addr - s->addr), iov[i].len);
    }
    return 0;
}

/* ---- adding segments ---------------------------------------------------------------------- */

static int fixture_grow(struct memsrc_fixture *f, struct ps_err *err)
{
    size_t cap = f->cap ? f->cap * 2 : 16;
    struct fixture_seg *v;

    if (f->nseg < f->cap)
        return 0;
    if (f->nseg >= FIXTURE_MAX_SEGS)
        return ps_err_set(err, -PS_ELIMIT, "%s holds %zu segments, the cap: record a smaller walk",
                          f->desc, f->nseg);
    v = realloc(f->segs, cap * sizeof(*v));
    if (!v)
        return ps_err_set(err, -ENOMEM, "out of memory growing %s", f->desc);
    f->segs = v;
    f->cap = cap;
    return 0;
}

/* Insert seg at index k, after fixture_grow made room. Takes ownership of seg.data. */
static void fixture_insert_at(struct memsrc_fixture *f, size_t k, struct fixture_seg seg)
{
    memmove(&f->segs[k + 1], &f->segs[k], (f->nseg - k) * sizeof(f->segs[0]));
    f->segs[k] = seg;
    f->nseg++;
    f->total += seg.len;
}

static int fixture_full(const struct memsrc_fixture *f, struct ps_err *err)
{
    return ps_err_set(err, -PS_ELIMIT,
                      "%s would exceed its cap of %" PRIu64 " bytes: record a smaller walk",
                      f->desc, FIXTURE_MAX_BYTES);
}

/*
 * Replace segments [lo, hi) (hi > lo) by one spanning [start, end) that holds their bytes and,
 * over them, the new bytes at addr.
 */
static int fixture_merge(struct memsrc_fixture *f, size_t lo, size_t hi, uint64_t start,
                         uint64_t end, uint64_t addr, const void *data, size_t len,
                         struct ps_err *err)
{
    uint64_t old = 0;
    unsigned char *buf;

    for (size_t i = lo; i < hi; i++)
        old += f->segs[i].len;
    if (f->total - old + (end - start) > FIXTURE_MAX_BYTES)
        return fixture_full(f, err);
    buf = malloc(end - start);
    if (!buf)
        return ps_err_set(err, -ENOMEM, "out of memory adding to %s", f->desc);
    for (size_t i = lo; i < hi; i++) {
        memcpy(buf + (f->segs[i].addr - start), f->segs[i].data, f->segs[i].len);
        free(f->segs[i].data);
    }
    memcpy(buf + (addr - start), data, len);
    f->segs[lo] = (struct fixture_seg){.addr = start, .len = end - start, .data = buf};
    memmove(&f->segs[lo + 1], &f->segs[hi], (f->nseg - hi) * sizeof(f->segs[0]));
    f->nseg -= hi - lo - 1;
    f->total = f->total - old + (end - start);
    return 0;
}

/* A new segment that touches nothing. */
static int fixture_add_new(struct memsrc_fixture *f, size_t k, uint64_t addr, const void *data,
                           size_t len, struct ps_err *err)
{
    struct fixture_seg seg = {.addr = addr, .len = len, .data = NULL};
    int rc;

    if (f->total + len > FIXTURE_MAX_BYTES)
        return fixture_full(f, err);
    rc = fixture_grow(f, err);
    if (rc < 0)
        return rc;
    seg.data = malloc(len);
    if (!seg.data)
        return ps_err_set(err, -ENOMEM, "out of memory adding to %s", f->desc);
    memcpy(seg.data, data, len);
    fixture_insert_at(f, k, seg);
    return 0;
}

static int fixture_put(struct memsrc_fixture *f, uint64_t addr, const void *data, size_t len,
                       struct ps_err *err)
{
    uint64_t end = addr + len;
    size_t lo = fixture_lower(f, addr);
    size_t hi = fixture_upper(f, end);
    struct fixture_seg *s;

    if (lo == hi)
        return fixture_add_new(f, lo, addr, data, len, err);
    s = &f->segs[lo];
    if (hi == lo + 1 && s->addr <= addr && end <= seg_end(s)) {
        memcpy(s->data + (addr - s->addr), data, len); /* inside one segment: overwrite */
        return 0;
    }
    return fixture_merge(f, lo, hi, s->addr < addr ? s->addr : addr,
                         seg_end(&f->segs[hi - 1]) > end ? seg_end(&f->segs[hi - 1]) : end, addr,
                         data, len, err);
}

int memsrc_fixture_add(struct memsrc *src, uint64_t addr, const void *data, size_t len,
                       struct ps_err *err)
{
    struct memsrc_fixture *f = fixture_of(src);

    if (!f)
        return ps_err_set(err, -EINVAL, "memsrc_fixture_add needs a fixture source, not %s",
                          src ? src->ops->name : "null");
    if (len == 0)
        return 0;
    if (!data)
        return ps_err_set(err, -EINVAL, "adding %zu bytes at 0x%" PRIx64 " to %s: no data", len,
                          addr, f->desc);
    if (len > FIXTURE_MAX_BYTES || addr > UINT64_MAX - len)
        return ps_err_set(err, -EINVAL,
                          "a segment of %zu bytes at 0x%" PRIx64
                          " is too long or wraps the address space",
                          len, addr);
    return fixture_put(f, addr, data, len, err);
}

/* ---- lifetime ----------------------------------------------------------------------------- */

static void fixture_describe(const struct memsrc *src, char *buf, size_t len)
{
    (void)snprintf(buf, len, "%s", ((const struct memsrc_fixture *)src)->desc);
}

static void fixture_close(struct memsrc *src)
{
    struct memsrc_fixture *f = (struct memsrc_fixture *)src;

    for (size_t i = 0; i < f->nseg; i++)
        free(f->segs[i].data);
    free(f->segs);
    free(f);
}

static const struct memsrc_ops fixture_ops = {
    .name = "fixture",
    .readv = fixture_readv,
    .describe = fixture_describe,
    .close = fixture_close,
};

static struct memsrc_fixture *fixture_alloc(const char *path)
{
    struct memsrc_fixture *f = calloc(1, sizeof(*f));

    if (!f)
        return NULL;
    f->base.ops = &fixture_ops;
    if (path)
        (void)snprintf(f->desc, sizeof(f->desc), "fixture %s", path);
    else
        (void)snprintf(f->desc, sizeof(f->desc), "fixture (in memory)");
    return f;
}

int memsrc_fixture_new(struct memsrc **out, struct ps_err *err)
{
    struct memsrc_fixture *f = fixture_alloc(NULL);

    if (!f)
        return ps_err_set(err, -ENOMEM, "out of memory creating a fixture source");
    *out = &f->base;
    return 0;
}

/* ---- loading ------------------------------------------------------------------------------ */

/* A file being loaded: stream, name, bytes left to read. */
struct fixture_file {
    FILE *fp;
    const char *path;
    uint64_t left;
};

static int ffile_read(struct fixture_file *ff, void *buf, size_t len, const char *what,
                      struct ps_err *err)
{
    if (len > ff->left || fread(buf, 1, len, ff->fp) != len)
        return ps_err_set(err, -PS_EFORMAT, "fixture %s is truncated in its %s: re-record it",
                          ff->path, what);
    ff->left -= len;
    return 0;
}

static int ffile_header(struct fixture_file *ff, uint64_t *nseg, struct ps_err *err)
{
    unsigned char h[FIXTURE_HEADER_SIZE];
    int rc = ffile_read(ff, h, sizeof(h), "header", err);

    if (rc < 0)
        return rc;
    if (memcmp(h, fixture_magic, sizeof(fixture_magic)) != 0)
        return ps_err_set(err, -PS_EFORMAT, "%s is not a pyscope fixture (bad magic)", ff->path);
    if (memsrc_le32(h + 8) != FIXTURE_VERSION || memsrc_le32(h + 12) != 0)
        return ps_err_set(err, -PS_EFORMAT,
                          "fixture %s has version %" PRIu32 " flags 0x%" PRIx32
                          "; this pyscope reads version %u with no flags",
                          ff->path, memsrc_le32(h + 8), memsrc_le32(h + 12), FIXTURE_VERSION);
    *nseg = memsrc_le64(h + 16);
    if (*nseg > FIXTURE_MAX_SEGS || *nseg > ff->left / FIXTURE_SEGHDR_SIZE)
        return ps_err_set(err, -PS_EFORMAT,
                          "fixture %s claims %" PRIu64
                          " segments, more than the file or the cap holds",
                          ff->path, *nseg);
    return 0;
}

/* Read one segment; *prev_end is the end of the previous one (ascending, no overlap). */
static int ffile_segment(struct fixture_file *ff, struct memsrc_fixture *f, uint64_t *prev_end,
                         struct ps_err *err)
{
    unsigned char h[FIXTURE_SEGHDR_SIZE];
    unsigned char *data = NULL;
    uint64_t addr;
    uint64_t len;
    int rc = ffile_read(ff, h, sizeof(h), "segment header", err);

    if (rc < 0)
        return rc;
    addr = memsrc_le64(h);
    len = memsrc_le64(h + 8);
    if (len > ff->left)
        return ps_err_set(err, -PS_EFORMAT,
                          "fixture %s is truncated in segment 0x%" PRIx64 " (%" PRIu64
                          " bytes): re-record it",
                          ff->path, addr, len);
    if (len == 0 || addr > UINT64_MAX - len || addr < *prev_end)
        return ps_err_set(err, -PS_EFORMAT,
                          "fixture %s has a bad segment (0x%" PRIx64 ", %" PRIu64
                          " bytes): empty, wrapping, out of order or overlapping",
                          ff->path, addr, len);
    data = malloc(len);
    if (!data)
        return ps_err_set(err, -ENOMEM, "out of memory loading fixture %s", ff->path);
    rc = ffile_read(ff, data, len, "segment data", err);
    if (rc == 0)
        rc = fixture_put(f, addr, data, len, err);
    free(data);
    *prev_end = addr + len;
    return rc;
}

static int ffile_load(struct fixture_file *ff, struct memsrc_fixture *f, struct ps_err *err)
{
    uint64_t nseg = 0;
    uint64_t prev_end = 0;
    int rc = ffile_header(ff, &nseg, err);

    for (uint64_t i = 0; i < nseg && rc == 0; i++)
        rc = ffile_segment(ff, f, &prev_end, err);
    if (rc == 0 && ff->left != 0)
        rc = ps_err_set(err, -PS_EFORMAT,
                        "fixture %s has %" PRIu64
                        " bytes after its last segment: it is corrupt or not a version 1 file",
                        ff->path, ff->left);
    return rc;
}

int memsrc_fixture_open(const char *path, struct memsrc **out, struct ps_err *err)
{
    struct fixture_file ff = {.fp = fopen(path, "rb"), .path = path};
    struct memsrc_fixture *f = NULL;
    struct stat st;
    int rc = -errno;

    if (!ff.fp)
        return ps_err_set(err, rc, "cannot open fixture %s: %s", path, strerror(-rc));
    if (fstat(fileno(ff.fp), &st) < 0 || !S_ISREG(st.st_mode)) {
        rc = ps_err_set(err, -PS_EFORMAT, "fixture %s is not a regular file", path);
        goto out_close;
    }
    ff.left = (uint64_t)st.st_size;
    f = fixture_alloc(path);
    if (!f) {
        rc = ps_err_set(err, -ENOMEM, "out of memory opening fixture %s", path);
        goto out_close;
    }
    rc = ffile_load(&ff, f, err);
    if (rc < 0)
        goto out_free;
    *out = &f->base;
    goto out_close;

out_free:
    fixture_close(&f->base);
out_close:
    (void)fclose(ff.fp);
    return rc;
}

/* ---- saving ------------------------------------------------------------------------------- */

static void put_le(unsigned char *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static bool fixture_write(const struct memsrc_fixture *f, FILE *fp)
{
    unsigned char h[FIXTURE_HEADER_SIZE];
    bool ok;

    memcpy(h, fixture_magic, sizeof(fixture_magic));
    put_le(h + 8, FIXTURE_VERSION, 4);
    put_le(h + 12, 0, 4);
    put_le(h + 16, f->nseg, 8);
    ok = fwrite(h, 1, sizeof(h), fp) == sizeof(h);
    for (size_t i = 0; i < f->nseg && ok; i++) {
        put_le(h, f->segs[i].addr, 8);
        put_le(h + 8, f->segs[i].len, 8);
        ok = fwrite(h, 1, FIXTURE_SEGHDR_SIZE, fp) == FIXTURE_SEGHDR_SIZE &&
             fwrite(f->segs[i].data, 1, f->segs[i].len, fp) == f->segs[i].len;
    }
    return ok;
}

int memsrc_fixture_save(const struct memsrc *src, const char *path, struct ps_err *err)
{
    const struct memsrc_fixture *f = fixture_of(src);
    char tmp[PATH_MAX];
    FILE *fp;
    bool ok;

    if (!f)
        return ps_err_set(err, -EINVAL, "only a fixture source can be saved as a fixture");
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
        return ps_err_set(err, -ENAMETOOLONG, "fixture path %s is too long", path);
    fp = fopen(tmp, "wb");
    if (!fp)
        return ps_err_set(err, -errno, "cannot create fixture %s: %s", tmp, strerror(errno));
    errno = 0;
    ok = fixture_write(f, fp);
    ok = fclose(fp) == 0 && ok;
    if (!ok || rename(tmp, path) < 0) {
        int e = errno ? errno : EIO;

        (void)remove(tmp);
        return ps_err_set(err, -e, "writing fixture %s failed: %s", path, strerror(e));
    }
    return 0;
}
