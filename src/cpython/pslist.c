/* SPDX-License-Identifier: MIT */
/*
 * The Python processes in view (see pslist.h). Place in the data flow: beside the snapshot, for
 * `pyscope ps` and for the note the other commands print about a master's workers; it reads
 * /proc and Py_Version only.
 *
 * One pass over /proc records every process's parent (the `all` table, sorted by pid, for the
 * ancestor walks) and keeps the Python candidates: a libpython3.* mapped, or an executable
 * named python*. A candidate is confirmed by locate_python (the runtime and Py_Version found in
 * its images); one that locate calls "not Python" (a binary merely named python-something) is
 * dropped; one that cannot be read keeps the version its file names say.
 *
 * Never: stops, traces or signals anything; trusts a /proc line's length (every read is
 * bounded); follows a parent chain without a bound (pid reuse can make a cycle).
 */
#include "pyscope/pslist.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pyscope/locate.h"
#include "pyscope/maps.h"
#include "pyscope/procstat.h"

struct pslist_proc {
    pid_t pid, ppid;
    int python; /* index in the list + 1, 0 when not Python */
};

/* The scan's working memory (heap: a few hundred KiB). */
struct pslist_scan {
    struct pslist_proc *all;
    size_t nall;
    struct procstat_proc proc;
    struct locate_info loc;
};

/* "3.12" from a name holding "python3.12" (libpython3.12.so.1.0, python3.12); "" if none. */
static void version_from_name(const char *name, char *out, size_t cap)
{
    const char *p = strstr(name, "python");
    size_t n = 0;

    out[0] = '\0';
    if (!p)
        return;
    p += strlen("python");
    while (p[n] && (isdigit((unsigned char)p[n]) || p[n] == '.') && n + 1 < cap)
        n++;
    while (n > 0 && p[n - 1] == '.') /* libpython3.12.so: the dot before "so" */
        n--;
    if (n >= 3 && strchr(p, '.') && p[0] != '.') {
        memcpy(out, p, n);
        out[n] = '\0';
    }
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');

    return slash ? slash + 1 : path;
}

/*
 * Is pid a Python candidate? Reads /proc/PID/maps line by line (bounded) for a libpython3.*
 * mapping and looks at the executable's name; writes the version the names say into version.
 * *readable is false when the kernel refused both (EACCES/EPERM on maps, no executable).
 */
static bool candidate(pid_t pid, const char *exe, char *version, size_t cap, bool *readable)
{
    char path[64], line[1024];
    bool found = false;
    size_t lines = 0;
    FILE *f;

    version[0] = '\0';
    *readable = exe[0] != '\0';
    if (exe[0] && strncmp(base_name(exe), "python", 6) == 0) {
        version_from_name(base_name(exe), version, cap);
        found = true;
    }
    (void)snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
    f = fopen(path, "re");
    if (!f) {
        /* A kernel thread has no executable and empty maps: not a refusal. */
        *readable = *readable || (errno != EACCES && errno != EPERM);
        return found;
    }
    *readable = true;
    while (!found && lines++ < MAPS_MAX_ENTRIES && fgets(line, sizeof(line), f)) {
        const char *lib = strstr(line, "/libpython3.");

        if (lib) {
            version_from_name(lib, version, cap);
            found = true;
        }
    }
    (void)fclose(f);
    return found;
}

/* Confirm a candidate and read its exact version. Returns false when it is not Python. */
static bool confirm(struct pslist_scan *s, pid_t pid, struct pslist_entry *e)
{
    struct ps_err err = {0};
    struct maps maps = {0};
    int rc = maps_read(pid, &maps, &err);

    if (rc == 0)
        rc = locate_python(pid, &maps, &s->loc, &err);
    maps_free(&maps);
    if (rc == 0) {
        (void)snprintf(e->version, sizeof(e->version), "%s", s->loc.version);
        e->version_read = true;
    }
    return rc != -PS_ENOTPYTHON && rc != -ESRCH;
}

/* Fill the OS columns of e; false when the process is gone. */
static bool os_columns(struct pslist_scan *s, pid_t pid, struct pslist_entry *e)
{
    struct procstat_stat st = {0};

    if (procstat_stat(pid, 0, &st, NULL) < 0 || procstat_proc(pid, &s->proc, NULL) < 0)
        return false;
    e->pid = pid;
    e->ppid = st.ppid;
    e->threads = st.num_threads;
    e->rss_bytes = s->proc.rss_bytes;
    e->cpu_s = s->proc.cpu_user_s + s->proc.cpu_system_s;
    /* Truncated to the column: a command line is shown, not parsed. */
    (void)snprintf(e->cmdline, sizeof(e->cmdline), "%.*s", (int)sizeof(e->cmdline) - 1,
                   s->proc.cmdline[0] ? s->proc.cmdline : s->proc.comm);
    return true;
}

static void consider(struct pslist_scan *s, struct pslist *out, pid_t pid)
{
    char version[32];
    bool readable;
    struct pslist_entry *e;

    if (!os_columns(s, pid, &out->v[out->n]))
        return;
    e = &out->v[out->n];
    s->all[s->nall].pid = pid;
    s->all[s->nall].ppid = e->ppid;
    s->all[s->nall++].python = 0;
    if (!candidate(pid, s->proc.exe, version, sizeof(version), &readable)) {
        out->unreadable += !readable;
        return;
    }
    memcpy(e->version, version, sizeof(version));
    e->version_read = false;
    if (!confirm(s, pid, e))
        return;
    if (out->n >= PSLIST_MAX) {
        out->over_cap++;
        return;
    }
    s->all[s->nall - 1].python = (int)++out->n;
}

static int cmp_proc(const void *a, const void *b)
{
    pid_t x = ((const struct pslist_proc *)a)->pid, y = ((const struct pslist_proc *)b)->pid;

    return (x > y) - (x < y);
}

static int cmp_entry(const void *a, const void *b)
{
    pid_t x = ((const struct pslist_entry *)a)->pid, y = ((const struct pslist_entry *)b)->pid;

    return (x > y) - (x < y);
}

static const struct pslist_proc *find_proc(const struct pslist_scan *s, pid_t pid)
{
    struct pslist_proc key = {.pid = pid};

    return bsearch(&key, s->all, s->nall, sizeof(key), cmp_proc);
}

/* The nearest Python ancestor of every entry, and the worker counts. */
static void link_masters(struct pslist_scan *s, struct pslist *out)
{
    qsort(s->all, s->nall, sizeof(s->all[0]), cmp_proc);
    for (size_t i = 0; i < out->n; i++) {
        struct pslist_entry *e = &out->v[i];
        const struct pslist_proc *p = find_proc(s, e->ppid);

        for (int depth = 0; p && depth < PSLIST_DEPTH_MAX; depth++) {
            if (p->python && p->pid != e->pid) {
                e->master = p->pid;
                break;
            }
            p = p->ppid > 0 ? find_proc(s, p->ppid) : NULL;
        }
    }
    qsort(out->v, out->n, sizeof(out->v[0]), cmp_entry);
    for (size_t i = 0; i < out->n; i++) {
        struct pslist_entry key = {.pid = out->v[i].master};
        struct pslist_entry *m =
            key.pid ? bsearch(&key, out->v, out->n, sizeof(key), cmp_entry) : NULL;

        if (m)
            m->nworkers++;
    }
}

int pslist_scan(struct pslist *out, struct ps_err *err)
{
    struct pslist l = {0};
    struct pslist_scan *s = calloc(1, sizeof(*s));
    struct dirent *d;
    DIR *dir = NULL;
    int rc = 0;

    l.v = calloc(PSLIST_MAX + 1, sizeof(*l.v)); /* + 1: the slot consider() fills first */
    if (s)
        s->all = calloc(PSLIST_SCAN_MAX, sizeof(*s->all));
    if (!s || !s->all || !l.v) {
        rc = ps_err_set(err, -ENOMEM, "out of memory listing processes");
        goto out;
    }
    dir = opendir("/proc");
    if (!dir) {
        rc = ps_err_set(err, -errno, "cannot list /proc: %s; is /proc mounted?", strerror(errno));
        goto out;
    }
    while ((d = readdir(dir)) && s->nall < PSLIST_SCAN_MAX) {
        char *end;
        long pid = strtol(d->d_name, &end, 10);

        if (*end == '\0' && pid > 0)
            consider(s, &l, (pid_t)pid);
    }
    link_masters(s, &l);
    *out = l;
    l.v = NULL;
out:
    if (dir)
        (void)closedir(dir);
    if (s)
        free(s->all);
    free(s);
    free(l.v);
    return rc;
}

const struct pslist_entry *pslist_find(const struct pslist *l, pid_t pid)
{
    struct pslist_entry key = {.pid = pid};

    return l->n ? bsearch(&key, l->v, l->n, sizeof(key), cmp_entry) : NULL;
}

size_t pslist_workers(const struct pslist *l, pid_t pid, pid_t *pids, size_t cap)
{
    size_t n = 0;

    for (size_t i = 0; i < l->n; i++) {
        if (l->v[i].master != pid)
            continue;
        if (n < cap)
            pids[n] = l->v[i].pid;
        n++;
    }
    return n;
}

/* Is pid Python by its file names (candidate() on its maps and executable)? */
static bool python_by_name(pid_t pid)
{
    char exe[PROCSTAT_PATH_MAX], version[32], link[64];
    ssize_t len;
    bool readable;

    (void)snprintf(link, sizeof(link), "/proc/%d/exe", (int)pid);
    len = readlink(link, exe, sizeof(exe) - 1);
    exe[len > 0 ? len : 0] = '\0';
    return candidate(pid, exe, version, sizeof(version), &readable);
}

/* Append the children of every thread of pid to q (bounded by cap, duplicates skipped). */
static void pslist_children(pid_t pid, pid_t *q, size_t *nq, size_t cap)
{
    pid_t tids[256];
    size_t ntids = 0;

    if (procstat_tids(pid, tids, sizeof(tids) / sizeof(tids[0]), &ntids, NULL) < 0)
        return;
    for (size_t k = 0; k < ntids; k++) {
        char path[64], buf[4096];
        size_t len;
        FILE *f;

        (void)snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid, (int)tids[k]);
        f = fopen(path, "re");
        if (!f)
            continue;
        len = fread(buf, 1, sizeof(buf) - 1, f);
        (void)fclose(f);
        buf[len] = '\0';
        for (char *p = buf, *end; *nq < cap; p = end) {
            long v = strtol(p, &end, 10);

            if (end == p)
                break;
            if (v > 0)
                q[(*nq)++] = (pid_t)v;
        }
    }
}

size_t pslist_descendant_workers(pid_t pid, pid_t *out, size_t cap)
{
    pid_t *q = malloc(PSLIST_WALK_MAX * sizeof(*q));
    size_t nq = 0, n = 0;

    if (!q)
        return 0;
    pslist_children(pid, q, &nq, PSLIST_WALK_MAX);
    for (size_t i = 0; i < nq; i++) {
        if (!python_by_name(q[i])) {
            pslist_children(q[i], q, &nq, PSLIST_WALK_MAX);
            continue;
        }
        if (n < cap)
            out[n] = q[i];
        n++;
    }
    free(q);
    return n;
}

pid_t pslist_master(pid_t pid)
{
    struct procstat_stat st;
    pid_t p = pid;

    for (int depth = 0; depth < PSLIST_DEPTH_MAX; depth++) {
        if (procstat_stat(p, 0, &st, NULL) < 0 || st.ppid <= 1)
            return 0;
        p = st.ppid;
        if (python_by_name(p))
            return p;
    }
    return 0;
}

bool pslist_workers_note(pid_t pid, const char *command, char *buf, size_t cap)
{
    pid_t pids[8];
    size_t n = pslist_descendant_workers(pid, pids, sizeof(pids) / sizeof(pids[0]));
    size_t shown = n < sizeof(pids) / sizeof(pids[0]) ? n : sizeof(pids) / sizeof(pids[0]);
    size_t used;

    buf[0] = '\0';
    if (n == 0)
        return false;
    used = (size_t)snprintf(buf, cap, "pid %d has %zu Python worker process%s (", (int)pid, n,
                            n == 1 ? "" : "es");
    for (size_t i = 0; i < shown && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%d", i ? ", " : "", (int)pids[i]);
    if (used < cap)
        (void)snprintf(buf + used, cap - used,
                       "%s) that may do the work: `pyscope ps` lists them, `pyscope %s %d` "
                       "looks at one",
                       n > shown ? ", ..." : "", command, (int)pids[0]);
    return true;
}

void pslist_free(struct pslist *l)
{
    if (!l)
        return;
    free(l->v);
    l->v = NULL;
    l->n = 0;
}
