/* SPDX-License-Identifier: MIT */
/*
 * /proc/PID/maps parser. Data flow: locate reads the target's maps once per attach to find the
 * images holding the runtime; the walker asks maps_readable() as a cheap first check of pointers
 * read from the target.
 *
 * A line is "start-end perms offset major:minor inode [padding path]" (fs/proc/task_mmu.c
 * show_vma_header_prefix). The text is untrusted (it may come from a core file or a test):
 * every number is parsed by hand with a digit bound, the fixed fields strictly, and the path is
 * the rest of the line after the padding, so it may hold spaces. A trailing " (deleted)" is
 * removed and flagged; paths are cut to MAPS_PATH_MAX - 1 bytes. Entries must be ascending and
 * disjoint (the kernel writes them so; binary search relies on it); at most MAPS_MAX_ENTRIES
 * lines and MAPS_TEXT_MAX bytes are read. Pure code apart from maps_read(); no globals.
 */
#include "pyscope/maps.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Bytes of /proc/PID/maps we read: MAPS_MAX_ENTRIES lines of 1 KiB, far above real processes. */
#define MAPS_TEXT_MAX ((size_t)64 << 20)
/* Characters of a bad line quoted in an error message. */
#define MAPS_QUOTE_MAX 60
/* EINTR retries while reading /proc/PID/maps. */
#define MAPS_EINTR_MAX 8

static const char maps_deleted[] = " (deleted)";

/* A cursor over one line. */
struct maps_cur {
    const char *p;
    const char *e;
};

/* ---- field parsers ------------------------------------------------------------------------ */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* 1 to maxdigits hex digits (maxdigits <= 16, so no overflow). */
static bool cur_hex(struct maps_cur *c, int maxdigits, uint64_t *out)
{
    uint64_t v = 0;
    int n = 0;

    while (c->p < c->e && hexval(*c->p) >= 0) {
        if (++n > maxdigits)
            return false;
        v = v << 4 | (uint64_t)hexval(*c->p++);
    }
    *out = v;
    return n > 0;
}

/* 1 to 20 decimal digits that fit in uint64_t. */
static bool cur_dec(struct maps_cur *c, uint64_t *out)
{
    uint64_t v = 0;
    int n = 0;

    while (c->p < c->e && *c->p >= '0' && *c->p <= '9') {
        uint64_t d = (uint64_t)(*c->p++ - '0');

        if (++n > 20 || v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return n > 0;
}

static bool cur_char(struct maps_cur *c, char ch)
{
    if (c->p >= c->e || *c->p != ch)
        return false;
    c->p++;
    return true;
}

/* One permission letter: `yes` or '-'. */
static bool cur_flag(struct maps_cur *c, char yes, bool *out)
{
    if (c->p >= c->e || (*c->p != yes && *c->p != '-'))
        return false;
    *out = *c->p++ == yes;
    return true;
}

static bool cur_perms(struct maps_cur *c, struct maps_entry *en)
{
    if (!cur_flag(c, 'r', &en->r) || !cur_flag(c, 'w', &en->w) || !cur_flag(c, 'x', &en->x))
        return false;
    if (c->p >= c->e || (*c->p != 'p' && *c->p != 's'))
        return false;
    en->p = *c->p++ == 'p';
    return true;
}

/* "major:minor", each up to 8 hex digits (the kernel prints at least 2). */
static bool cur_dev(struct maps_cur *c, struct maps_entry *en)
{
    uint64_t major = 0;
    uint64_t minor = 0;

    if (!cur_hex(c, 8, &major) || !cur_char(c, ':') || !cur_hex(c, 8, &minor))
        return false;
    en->dev_major = (unsigned)major;
    en->dev_minor = (unsigned)minor;
    return true;
}

/* The path is the rest of the line after the padding; copies at most MAPS_PATH_MAX - 1 bytes. */
static bool cur_path(struct maps_cur *c, struct maps_entry *en)
{
    size_t dlen = sizeof(maps_deleted) - 1;
    size_t len;

    while (c->p < c->e && *c->p == ' ')
        c->p++;
    len = (size_t)(c->e - c->p);
    if (len >= dlen && memcmp(c->e - dlen, maps_deleted, dlen) == 0) {
        en->deleted = true;
        len -= dlen;
    }
    if (len > MAPS_PATH_MAX - 1)
        len = MAPS_PATH_MAX - 1;
    en->path = malloc(len + 1);
    if (!en->path)
        return false;
    memcpy(en->path, c->p, len);
    en->path[len] = '\0';
    return true;
}

/* ---- lines -------------------------------------------------------------------------------- */

static int maps_bad_line(const char *p, const char *e, size_t lineno, const char *why,
                         struct ps_err *err)
{
    int n = e - p > MAPS_QUOTE_MAX ? MAPS_QUOTE_MAX : (int)(e - p);

    return ps_err_set(err, -PS_EFORMAT,
                      "maps line %zu is malformed (%s): \"%.*s%s\"; expected \"start-end perms "
                      "offset major:minor inode [path]\"",
                      lineno, why, n, p, e - p > MAPS_QUOTE_MAX ? "..." : "");
}

/* The fixed fields, up to and including the inode. */
static bool maps_fields(struct maps_cur *c, struct maps_entry *en)
{
    return cur_hex(c, 16, &en->start) && cur_char(c, '-') && cur_hex(c, 16, &en->end) &&
           cur_char(c, ' ') && cur_perms(c, en) && cur_char(c, ' ') &&
           cur_hex(c, 16, &en->offset) && cur_char(c, ' ') && cur_dev(c, en) && cur_char(c, ' ') &&
           cur_dec(c, &en->inode) && (c->p == c->e || *c->p == ' ');
}

static int maps_line(const char *p, const char *e, size_t lineno, uint64_t prev_end, bool live,
                     struct maps_entry *en, struct ps_err *err)
{
    struct maps_cur c = {.p = p, .e = e};

    memset(en, 0, sizeof(*en));
    if (!maps_fields(&c, en))
        return maps_bad_line(p, e, lineno, "bad field", err);
    if (en->start >= en->end)
        return maps_bad_line(p, e, lineno, "empty or inverted range", err);
    if (en->start < prev_end && !live)
        return maps_bad_line(p, e, lineno, "out of order or overlapping", err);
    if (!cur_path(&c, en))
        return ps_err_set(err, -ENOMEM, "out of memory parsing maps line %zu", lineno);
    return 0;
}

/* A free slot at the end of m->v (not yet counted in m->n), growing the array by doubling. */
static struct maps_entry *maps_slot(struct maps *m, size_t *cap, struct ps_err *err)
{
    struct maps_entry *v;
    size_t ncap = *cap ? *cap * 2 : 64;

    if (m->n < *cap)
        return &m->v[m->n];
    if (m->n >= MAPS_MAX_ENTRIES) {
        (void)ps_err_set(err, -PS_ELIMIT,
                         "the process has more than %d mappings, the cap pyscope reads",
                         MAPS_MAX_ENTRIES);
        return NULL;
    }
    v = realloc(m->v, ncap * sizeof(*v));
    if (!v) {
        (void)ps_err_set(err, -ENOMEM, "out of memory reading %zu mappings", m->n);
        return NULL;
    }
    m->v = v;
    *cap = ncap;
    return &m->v[m->n];
}

/* A live read's line that starts below the previous line's end (maps_read: the kernel writes
 * the file a page per read() and drops the mmap lock in between, so a process mapping and
 * unmapping meanwhile, threads starting and ending, can make a later page overlap an earlier
 * one): the later line is the newer view of that range. The entries it covers are dropped and
 * one it cuts ends where it starts, so the list stays ascending and disjoint. */
static void maps_supersede(struct maps *m, uint64_t start)
{
    while (m->n > 0 && m->v[m->n - 1].start >= start) {
        free(m->v[m->n - 1].path);
        m->n--;
    }
    if (m->n > 0 && m->v[m->n - 1].end > start)
        m->v[m->n - 1].end = start;
}

/* Parse a line straight into the next slot; it counts only once it parsed. */
static int maps_add_line(struct maps *m, size_t *cap, const char *p, const char *e, size_t lineno,
                         bool live, struct ps_err *err)
{
    uint64_t prev_end = m->n > 0 ? m->v[m->n - 1].end : 0;
    struct maps_entry *en = maps_slot(m, cap, err);
    struct maps_entry got;
    int rc;

    if (!en)
        return err && err->code ? err->code : -ENOMEM;
    rc = maps_line(p, e, lineno, prev_end, live, en, err);
    if (rc < 0)
        return rc;
    if (en->start < prev_end) { /* live only */
        got = *en;
        maps_supersede(m, got.start);
        m->v[m->n] = got;
    }
    m->n++;
    return 0;
}

static int maps_parse_text(const char *text, size_t len, bool live, struct maps *out,
                           struct ps_err *err)
{
    struct maps m = {.v = NULL, .n = 0};
    const char *p = text;
    const char *end = text + len;
    size_t cap = 0;
    size_t lineno = 0;
    int rc = 0;

    if (!text && len > 0)
        return ps_err_set(err, -EINVAL, "maps text is missing");
    while (p < end && rc == 0) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;

        lineno++;
        if (le > p)
            rc = maps_add_line(&m, &cap, p, le, lineno, live, err);
        p = nl ? nl + 1 : end;
    }
    if (rc < 0) {
        maps_free(&m);
        return rc;
    }
    *out = m;
    return 0;
}

int maps_parse(const char *text, size_t len, struct maps *out, struct ps_err *err)
{
    return maps_parse_text(text, len, false, out, err);
}

/* ---- reading /proc/PID/maps --------------------------------------------------------------- */

static int maps_open(pid_t pid, int *fd, struct ps_err *err)
{
    char path[64];
    int e;

    (void)snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
    *fd = pid > 0 ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    if (*fd >= 0)
        return 0;
    e = pid > 0 ? errno : ENOENT;
    if (e == ENOENT || e == ESRCH)
        return ps_err_set(err, -ESRCH, "no process with pid %d: check the pid (it may have exited)",
                          (int)pid);
    if (e == EACCES || e == EPERM)
        return ps_err_set(
            err, -e, "permission denied reading %s: run pyscope as the target's user or as root",
            path);
    return ps_err_set(err, -e, "cannot open %s: %s", path, strerror(e));
}

/* Grow the text buffer by doubling, up to MAPS_TEXT_MAX. */
static int maps_grow(char **buf, size_t *cap, pid_t pid, struct ps_err *err)
{
    size_t ncap = *cap ? *cap * 2 : (size_t)64 << 10;
    char *nb;

    if (*cap >= MAPS_TEXT_MAX)
        return ps_err_set(err, -PS_ELIMIT,
                          "/proc/%d/maps is larger than %zu bytes, the cap pyscope reads", (int)pid,
                          MAPS_TEXT_MAX);
    nb = realloc(*buf, ncap);
    if (!nb)
        return ps_err_set(err, -ENOMEM, "out of memory reading /proc/%d/maps", (int)pid);
    *buf = nb;
    *cap = ncap;
    return 0;
}

static int maps_read_errno(pid_t pid, int e, struct ps_err *err)
{
    if (e == ESRCH)
        return ps_err_set(err, -ESRCH, "pid %d exited while its maps were read", (int)pid);
    return ps_err_set(err, -e, "reading /proc/%d/maps failed: %s", (int)pid, strerror(e));
}

/*
 * Read all of fd into a heap buffer of at most MAPS_TEXT_MAX bytes. Each pass reads at least one
 * byte, spends one of MAPS_EINTR_MAX retries, or ends, so the loop is bounded by the cap.
 */
static int maps_slurp(int fd, pid_t pid, char **text, size_t *len, struct ps_err *err)
{
    char *buf = NULL;
    size_t cap = 0;
    size_t n = 0;
    unsigned eintr = 0;
    int rc = 0;

    for (;;) {
        ssize_t got;

        if (n == cap && (rc = maps_grow(&buf, &cap, pid, err)) < 0)
            break;
        got = read(fd, buf + n, cap - n);
        if (got == 0)
            break;
        if (got > 0)
            n += (size_t)got;
        else if (errno != EINTR || ++eintr > MAPS_EINTR_MAX) {
            rc = maps_read_errno(pid, errno, err);
            break;
        }
    }
    if (rc < 0) {
        free(buf);
        return rc;
    }
    *text = buf;
    *len = n;
    return 0;
}

int maps_read(pid_t pid, struct maps *out, struct ps_err *err)
{
    char *text = NULL;
    size_t len = 0;
    int fd = -1;
    int rc = maps_open(pid, &fd, err);

    if (rc < 0)
        return rc;
    rc = maps_slurp(fd, pid, &text, &len, err);
    if (rc == 0) {
        rc = maps_parse_text(text, len, true, out, err);
        if (rc < 0)
            ps_err_prefix(err, "/proc/%d/maps: ", (int)pid);
    }
    free(text);
    (void)close(fd);
    return rc;
}

void maps_free(struct maps *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++)
        free(m->v[i].path);
    free(m->v);
    m->v = NULL;
    m->n = 0;
}

/* ---- queries ------------------------------------------------------------------------------ */

const struct maps_entry *maps_find(const struct maps *m, uint64_t addr)
{
    size_t lo = 0;
    size_t hi = m ? m->n : 0;

    /* Find the first entry starting after addr; the one before it may contain addr. */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (m->v[mid].start <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0 || addr >= m->v[lo - 1].end)
        return NULL;
    return &m->v[lo - 1];
}

bool maps_readable(const struct maps *m, uint64_t addr, uint64_t len)
{
    const struct maps_entry *e;
    uint64_t end;

    if (len == 0)
        return true;
    if (addr > UINT64_MAX - len)
        return false;
    end = addr + len;
    e = maps_find(m, addr);
    if (!e)
        return false;
    for (size_t i = (size_t)(e - m->v); i < m->n; i++) {
        if (!m->v[i].r || (&m->v[i] != e && m->v[i].start != m->v[i - 1].end))
            return false;
        if (m->v[i].end >= end)
            return true;
    }
    return false;
}

static const char *maps_basename(const char *path)
{
    const char *slash = strrchr(path, '/');

    return slash ? slash + 1 : path;
}

const struct maps_entry *maps_find_lib(const struct maps *m, const char *prefix)
{
    size_t plen = prefix ? strlen(prefix) : 0;

    for (size_t i = 0; m && prefix && i < m->n; i++) {
        const char *base = maps_basename(m->v[i].path);

        if (m->v[i].offset == 0 && strncmp(base, prefix, plen) == 0 &&
            strstr(base + plen, ".so") != NULL)
            return &m->v[i];
    }
    return NULL;
}

const struct maps_entry *maps_first_of(const struct maps *m, const char *path)
{
    for (size_t i = 0; m && path && i < m->n; i++)
        if (strcmp(m->v[i].path, path) == 0)
            return &m->v[i];
    return NULL;
}
