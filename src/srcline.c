/* SPDX-License-Identifier: MIT */
/*
 * Source lines for frames (see srcline.h): file system in, stripped lines out, through a fixed
 * array of SRCLINE_CACHE_FILES slots with LRU eviction. Shared by the text writer (a cache per
 * report) and the TUI (a cache per session), so both show the same line the same way.
 *
 * Invariants: only regular files are read, opened O_NONBLOCK so that a FIFO cannot block us;
 * at most SRCLINE_FILE_MAX bytes per file; a miss is cached like a hit (data NULL). The bytes
 * are the file's: callers escape them before they reach a terminal.
 */
#include "pyscope/srcline.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct srcline_file {
    char *name; /* co_filename as given (the cache key); NULL: a free slot */
    char *data; /* the file's first SRCLINE_FILE_MAX bytes; NULL when it could not be read */
    size_t len;
    uint64_t used; /* tick of the last lookup: the smallest is evicted first */
};

struct srcline_cache {
    char *root; /* prefix for absolute paths, or NULL */
    uint64_t tick;
    struct srcline_file files[SRCLINE_CACHE_FILES];
};

int srcline_cache_new(const char *root, struct srcline_cache **out, struct ps_err *err)
{
    struct srcline_cache *c = calloc(1, sizeof(*c));

    if (!c)
        return ps_err_set(err, -ENOMEM, "out of memory for the source-line cache");
    if (root && root[0]) {
        c->root = strdup(root);
        if (!c->root) {
            free(c);
            return ps_err_set(err, -ENOMEM, "out of memory for the source-line cache");
        }
    }
    *out = c;
    return 0;
}

void srcline_cache_free(struct srcline_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < SRCLINE_CACHE_FILES; i++) {
        free(c->files[i].name);
        free(c->files[i].data);
    }
    free(c->root);
    free(c);
}

/* Read the first SRCLINE_FILE_MAX bytes of a regular file into *data (malloc'ed). 0 or -1. */
static int srcline_read(const char *path, char **data, size_t *len)
{
    struct stat st;
    size_t cap;
    size_t got = 0;
    char *buf = NULL;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);

    if (fd < 0)
        return -1;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        goto close_fd;
    cap = (uint64_t)st.st_size < SRCLINE_FILE_MAX ? (size_t)st.st_size : SRCLINE_FILE_MAX;
    buf = malloc(cap + 1);
    if (!buf)
        goto close_fd;
    while (got < cap) {
        ssize_t r = read(fd, buf + got, cap - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    (void)close(fd);
    *data = buf;
    *len = got;
    return 0;

close_fd:
    (void)close(fd);
    return -1;
}

static void srcline_load(struct srcline_file *f, const char *root)
{
    char path[4096];
    int n = snprintf(path, sizeof(path), "%s%s", root ? root : "", f->name);

    f->data = NULL;
    f->len = 0;
    /* Relative names ("<frozen ...>", "<string>", paths relative to the target's cwd) and
     * paths too long to join are not looked up. */
    if (f->name[0] != '/' || n < 0 || (size_t)n >= sizeof(path))
        return;
    (void)srcline_read(path, &f->data, &f->len);
}

/* The cache entry for file name, loading (and evicting the LRU entry) on a miss. */
static const struct srcline_file *srcline_file_get(struct srcline_cache *c, const char *name)
{
    struct srcline_file *victim = &c->files[0];

    c->tick++;
    for (size_t i = 0; i < SRCLINE_CACHE_FILES; i++) {
        struct srcline_file *f = &c->files[i];
        if (f->name && strcmp(f->name, name) == 0) {
            f->used = c->tick;
            return f;
        }
        if (victim->name && (!f->name || f->used < victim->used))
            victim = f;
    }
    free(victim->name);
    free(victim->data);
    victim->data = NULL;
    victim->name = strdup(name);
    if (!victim->name)
        return NULL;
    srcline_load(victim, c->root);
    victim->used = c->tick;
    return victim;
}

/* Python's str.strip() whitespace, ASCII part. */
static bool srcline_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\f' || ch == '\v' || ch == '\r';
}

bool srcline_get(struct srcline_cache *c, const char *file, int line, const char **start,
                 size_t *len)
{
    const struct srcline_file *f;
    const char *p, *end, *eol;

    if (!file || line < 1)
        return false;
    f = srcline_file_get(c, file);
    if (!f || !f->data)
        return false;
    p = f->data;
    end = f->data + f->len;
    for (int i = 1; i < line && p; i++) {
        p = memchr(p, '\n', (size_t)(end - p));
        p = p ? p + 1 : NULL;
    }
    if (!p || p >= end)
        return false;
    eol = memchr(p, '\n', (size_t)(end - p));
    eol = eol ? eol : end;
    while (p < eol && srcline_space(*p))
        p++;
    while (eol > p && srcline_space(eol[-1]))
        eol--;
    if (eol == p)
        return false; /* blank: nothing worth a line */
    *start = p;
    *len = (size_t)(eol - p);
    return true;
}
