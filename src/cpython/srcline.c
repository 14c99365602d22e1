/* SPDX-License-Identifier: MIT */
/*
 * Source lines for frames (see srcline.h): file system in, stripped lines out, through a fixed
 * array of SRCLINE_CACHE_FILES slots with LRU eviction. Shared by the text writer (a cache per
 * report) and the TUI (a cache per session), so both show the same line the same way.
 *
 * Invariants: every file is opened through tfile_open_as (inside the target's root, as the
 * target, regular files only, never blocking): a co_filename is the target's choice and pyscope
 * often runs as root, so this is what stops a target from showing us /etc/shadow; at most
 * SRCLINE_FILE_MAX bytes per file; a miss is cached like a hit (data NULL). The bytes are the
 * file's: callers escape them before they reach a terminal.
 */
#include "pyscope/srcline.h"
#include "pyscope/procstat.h"
#include "pyscope/tfile.h"

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
    int rootfd;  /* the directory names resolve in (O_PATH), or -1: every lookup misses */
    pid_t pid;   /* > 0: open with this live process's credentials */
    bool has_as; /* pid == 0: open with as (srcline_cache_set_cred), not our own credentials */
    struct procstat_status as;
    uint64_t tick;
    struct srcline_file files[SRCLINE_CACHE_FILES];
};

int srcline_cache_new(const char *root, pid_t pid, struct srcline_cache **out, struct ps_err *err)
{
    struct srcline_cache *c = calloc(1, sizeof(*c));
    char proc_root[64];

    if (!c)
        return ps_err_set(err, -ENOMEM, "out of memory for the source-line cache");
    if (pid > 0) {
        (void)snprintf(proc_root, sizeof(proc_root), "/proc/%d/root", (int)pid);
        root = proc_root;
    }
    c->pid = pid;
    c->rootfd = open(root && root[0] ? root : "/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    *out = c;
    return 0;
}

void srcline_cache_set_cred(struct srcline_cache *c, const struct procstat_status *as)
{
    if (!c || c->pid > 0)
        return;
    c->as = *as;
    c->has_as = true;
}

void srcline_cache_free(struct srcline_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < SRCLINE_CACHE_FILES; i++) {
        free(c->files[i].name);
        free(c->files[i].data);
    }
    if (c->rootfd >= 0)
        (void)close(c->rootfd);
    free(c);
}

/* Read the first SRCLINE_FILE_MAX bytes of the regular file fd into *data (malloc'ed). */
static int srcline_read(int fd, char **data, size_t *len)
{
    struct stat st;
    size_t cap;
    size_t got = 0;
    char *buf;

    if (fstat(fd, &st) != 0)
        return -1;
    cap = (uint64_t)st.st_size < SRCLINE_FILE_MAX ? (size_t)st.st_size : SRCLINE_FILE_MAX;
    buf = malloc(cap + 1);
    if (!buf)
        return -1;
    while (got < cap) {
        ssize_t r = read(fd, buf + got, cap - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    *data = buf;
    *len = got;
    return 0;
}

static void srcline_load(struct srcline_file *f, const struct srcline_cache *c)
{
    struct procstat_status as;
    int fd;

    f->data = NULL;
    f->len = 0;
    /* Relative names ("<frozen ...>", "<string>", paths relative to the target's cwd) are not
     * looked up. The credentials are read per load: the target may have changed them. */
    if (f->name[0] != '/' || c->rootfd < 0)
        return;
    if (c->pid > 0 && procstat_read_status(c->pid, &as, NULL) < 0)
        return;
    if (c->pid <= 0 && c->has_as)
        as = c->as;
    fd = tfile_open_as(c->rootfd, f->name, c->pid > 0 || c->has_as ? &as : NULL, NULL);
    if (fd < 0)
        return;
    (void)srcline_read(fd, &f->data, &f->len);
    (void)close(fd);
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
    srcline_load(victim, c);
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
