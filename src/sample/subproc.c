/* SPDX-License-Identifier: MIT */
/*
 * Following a sampled process's Python descendants (see subproc.h). Place in the data flow:
 * beside the root's sampler, called from its loop after every tick; each child is one more
 * pyproc + sampler filling the shared profile.
 *
 * Discovery reads /proc/PID/task/TID/children (Linux 3.5+, CONFIG_PROC_CHILDREN): the children
 * each thread forked. The walk goes breadth first from the root through every descendant, so a
 * Python grandchild behind a shell is found too. The `seen` table remembers every descendant
 * of the last scan (followed, given up, or still being tried) and is rebuilt from each scan, so
 * it stays bounded by the live descendants, never by how many were ever spawned.
 *
 * A descendant that exec()s keeps its pid but gets a new image: a new runtime at new addresses
 * (or, a forked Python child, the image it was copied from until its exec). Each scan reads
 * every descendant's procstat_stat.image; when it changed, the pid is treated as new: its
 * sampler (if followed) is closed, its samples staying in the profile, and it is opened again
 * with a fresh count of tries (a shell that execs Python after SUBPROC_TRIES scans too).
 *
 * Never: stops, traces or signals a child (each child sampler follows the user's options, as
 * the root's does); lets one child's failure end the recording.
 */
#include "pyscope/evloop.h"
#include "pyscope/subproc.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pyscope/procstat.h"
#include "pyscope/pyproc.h"

/* A child whose ticks fail this many times in a row (it exec'd something else, say) is closed. */
#define SUBPROC_MAX_FAILS 100
/* Threads per process whose children files are read. */
#define SUBPROC_TASKS_MAX 1024
#define SUBPROC_FRAME_MAX 96

struct child {
    pid_t pid;
    struct pyproc *pp;
    struct sampler *s;
    uint32_t fails;
    uint64_t last_errors;
    char frame[SUBPROC_FRAME_MAX];
};

struct seen {
    struct subproc_try t;
    uint64_t image; /* procstat_stat.image when last scanned (0: unknown) */
};

struct subproc {
    pid_t root;
    struct profile *prof;
    struct sampler_opts opts;
    double next_scan;
    struct child kids[SUBPROC_MAX];
    size_t nkids;
    struct seen seen[SUBPROC_SCAN_MAX], next[SUBPROC_SCAN_MAX];
    size_t nseen, nnext;
    pid_t queue[SUBPROC_SCAN_MAX];
    size_t nqueue;
    struct subproc_stats st;
};

int subproc_new(pid_t root, struct profile *p, const struct sampler_opts *opts,
                struct subproc **out, struct ps_err *err)
{
    struct subproc *g = calloc(1, sizeof(*g));

    if (!g)
        return ps_err_set(err, -ENOMEM, "out of memory following subprocesses");
    g->root = root;
    g->prof = p;
    g->opts = *opts;
    g->opts.on_status = NULL;
    g->opts.on_tick = NULL;
    g->opts.forward_signals = 0;
    g->opts.duration_s = 0;
    *out = g;
    return 0;
}

/* Fold a child's statistics into the group's and close it. */
static void child_close(struct subproc *g, struct child *c)
{
    struct sampler_stats st;

    if (c->s) {
        sampler_stats_get(c->s, &st);
        g->st.samples += st.samples;
        g->st.torn += st.torn;
        g->st.errors += st.errors;
    }
    sampler_free(c->s);
    pyproc_close(c->pp);
    *c = (struct child){0};
}

void subproc_free(struct subproc *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->nkids; i++)
        child_close(g, &g->kids[i]);
    free(g);
}

/* ---- discovery --------------------------------------------------------------------------- */

/* Whether pid is among the first n of q. */
static bool queued(const pid_t *q, size_t n, pid_t pid)
{
    for (size_t i = 0; i < n; i++)
        if (q[i] == pid)
            return true;
    return false;
}

/* Append the children listed in one /proc/PID/task/TID/children file to q (at most cap). */
static void read_children(pid_t pid, pid_t tid, pid_t *q, size_t *n, size_t cap)
{
    char path[64], buf[4096];
    size_t len;
    FILE *f;

    (void)snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid, (int)tid);
    f = fopen(path, "re");
    if (!f)
        return;
    len = fread(buf, 1, sizeof(buf) - 1, f);
    (void)fclose(f);
    buf[len] = '\0';
    for (char *p = buf, *end; *p && *n < cap; p = end) {
        long v = strtol(p, &end, 10);

        if (end == p)
            break;
        if (v > 0 && !queued(q, *n, (pid_t)v))
            q[(*n)++] = (pid_t)v;
    }
}

size_t subproc_descendants(pid_t root, pid_t *out, size_t cap)
{
    struct ps_err ignored = {0};
    size_t n = 0;
    pid_t *tids;

    if (cap == 0)
        return 0;
    tids = malloc(SUBPROC_TASKS_MAX * sizeof(*tids));
    out[n++] = root;
    for (size_t i = 0; tids && i < n; i++) {
        size_t ntids = 0;

        if (procstat_tids(out[i], tids, SUBPROC_TASKS_MAX, &ntids, &ignored) < 0)
            continue;
        for (size_t k = 0; k < ntids; k++)
            read_children(out[i], tids[k], out, &n, cap);
    }
    free(tids);
    return n;
}

/* Breadth first from the root: every descendant into queue[1..nqueue). */
static void list_descendants(struct subproc *g)
{
    g->nqueue = subproc_descendants(g->root, g->queue, SUBPROC_SCAN_MAX);
}

static const struct seen *find_seen(const struct subproc *g, pid_t pid)
{
    for (size_t i = 0; i < g->nseen; i++)
        if (g->seen[i].t.pid == pid)
            return &g->seen[i];
    return NULL;
}

/* Start a sampler for an opened child (takes pp). Returns false when it could not. */
static bool child_start(struct subproc *g, pid_t pid, struct pyproc *pp)
{
    struct child *c = &g->kids[g->nkids];
    struct sampler_opts so = g->opts;
    struct ps_err ignored = {0};
    char comm[32] = "";

    if (procstat_comm(pid, comm, sizeof(comm), &ignored) < 0)
        comm[0] = '\0';
    (void)snprintf(c->frame, sizeof(c->frame), "process %d %s", (int)pid, comm);
    so.process_frame = c->frame;
    if (sampler_new(pp, g->prof, &so, &c->s, &ignored) < 0) {
        pyproc_close(pp);
        *c = (struct child){0};
        return false;
    }
    c->pid = pid;
    c->pp = pp;
    g->nkids++;
    g->st.followed++;
    return true;
}

enum subproc_verdict subproc_try_open(struct subproc_try *e, uint32_t max_tries, struct pyproc **pp)
{
    struct ps_err ignored = {0};
    struct pyproc *p = NULL;
    int rc;

    if (pp)
        *pp = NULL;
    if (e->done)
        return SUBPROC_DONE;
    e->tries++;
    rc = pyproc_open(e->pid, &p, &ignored);
    if (rc == 0) {
        e->done = true;
        if (pp)
            *pp = p;
        else
            pyproc_close(p);
        return SUBPROC_PYTHON;
    }
    if (rc == -ESRCH) {
        e->done = true;
        return SUBPROC_GONE;
    }
    if (rc == -PS_EVERSION || rc == -PS_EPERM || e->tries >= max_tries) {
        e->done = true;
        return SUBPROC_NOT_PYTHON;
    }
    return SUBPROC_LATER;
}

/* One more try at a descendant: follow it when it is Python. */
static void consider(struct subproc *g, struct seen *e)
{
    struct pyproc *pp = NULL;

    switch (subproc_try_open(&e->t, SUBPROC_TRIES, &pp)) {
    case SUBPROC_PYTHON:
        if (g->nkids >= SUBPROC_MAX) {
            g->st.over_cap++;
            pyproc_close(pp);
        } else if (!child_start(g, e->t.pid, pp)) {
            g->st.not_python++;
        }
        break;
    case SUBPROC_NOT_PYTHON: g->st.not_python++; break;
    default: break;
    }
}

/* Close the followed child pid (it exec'd: its sampler reads an image that is gone). */
static void close_pid(struct subproc *g, pid_t pid)
{
    for (size_t i = 0; i < g->nkids; i++) {
        if (g->kids[i].pid != pid)
            continue;
        child_close(g, &g->kids[i]);
        g->kids[i] = g->kids[--g->nkids];
        g->kids[g->nkids] = (struct child){0};
        return;
    }
}

/* The image of pid (procstat_stat.image), 0 when unknown (gone, unreadable). */
static uint64_t image_of(pid_t pid)
{
    struct procstat_stat st;
    struct ps_err ignored = {0};

    return procstat_stat(pid, pid, &st, &ignored) == 0 ? st.image : 0;
}

/* List the descendants, try the new or pending ones (a pid whose image changed since the last
 * scan is new again), and keep only live ones in `seen`. */
static void scan(struct subproc *g)
{
    list_descendants(g);
    g->nnext = 0;
    for (size_t i = 1; i < g->nqueue; i++) {
        const struct seen *old = find_seen(g, g->queue[i]);
        struct seen *e = &g->next[g->nnext++];
        uint64_t image = image_of(g->queue[i]);

        if (old && old->image && image && old->image != image) {
            close_pid(g, old->t.pid);
            g->st.execs++;
            old = NULL;
        }
        *e = old ? *old : (struct seen){.t.pid = g->queue[i]};
        if (image)
            e->image = image;
        consider(g, e);
    }
    memcpy(g->seen, g->next, sizeof(g->seen[0]) * g->nnext);
    g->nseen = g->nnext;
}

/* ---- sampling ---------------------------------------------------------------------------- */

/* One sample of child i; closes it when it is gone or keeps failing. -ENOMEM only. */
static int child_tick(struct subproc *g, size_t i, struct ps_err *err)
{
    struct child *c = &g->kids[i];
    struct sampler_stats st;
    struct ps_err e = {0};
    int rc = sampler_sample_once(c->s, &e);

    if (rc == -ENOMEM)
        return ps_err_set(err, rc, "%s", e.msg);
    sampler_stats_get(c->s, &st);
    c->fails = rc < 0 || st.errors > c->last_errors ? c->fails + 1 : 0;
    c->last_errors = st.errors;
    if (rc < 0 || c->fails >= SUBPROC_MAX_FAILS) {
        child_close(g, c);
        g->kids[i] = g->kids[--g->nkids];
        g->kids[g->nkids] = (struct child){0};
        return 1;
    }
    return 0;
}

int subproc_tick(void *arg, struct ps_err *err)
{
    struct subproc *g = arg;
    double now = evloop_clock_read(g->opts.clock); /* the root sampler's clock */

    if (now >= g->next_scan) {
        g->next_scan = now + SUBPROC_SCAN_MS / 1000.0;
        scan(g);
    }
    for (size_t i = 0; i < g->nkids;) {
        int rc = child_tick(g, i, err);

        if (rc < 0)
            return rc;
        if (rc == 0)
            i++;
    }
    return 0;
}

void subproc_stats_get(const struct subproc *g, struct subproc_stats *out)
{
    *out = g->st;
    out->active = g->nkids;
    for (size_t i = 0; i < g->nkids; i++) {
        struct sampler_stats st;

        sampler_stats_get(g->kids[i].s, &st);
        out->samples += st.samples;
        out->torn += st.torn;
        out->errors += st.errors;
    }
}
