/* SPDX-License-Identifier: MIT */
/*
 * Thread ids across pid namespaces (see tidmap.h). pyscope on a node reads a container's
 * process: the ids CPython stores (native_thread_id, the threading registry) are the
 * container's, while /proc/PID/task, ptrace and the tracer's stops use the node's. The kernel
 * lists both on each task's "NSpid:" line (ours first, the task's own last), so the map is read
 * from there. Invariants: at most TIDMAP_MAX_THREADS entries; a miss re-reads the map at most
 * once per pass; an id that cannot be translated becomes 0, never the raw id (which names an
 * unrelated task on the node: pid 1, 2, ...). Reads /proc only.
 */
#include "pyscope/tidmap.h"

#include <stdlib.h>

#include "pyscope/procstat.h"

static void tids_reload(struct tidmap *tm);

void tidmap_open(struct tidmap *tm, pid_t pid)
{
    struct procstat_status mine, theirs;

    *tm = (struct tidmap){.pid = pid};
    tm->other_pidns = pid > 0 && procstat_read_status(0, &mine, NULL) == 0 &&
                      procstat_read_status(pid, &theirs, NULL) == 0 && mine.nspid_levels > 0 &&
                      theirs.nspid_levels > mine.nspid_levels;
    if (tm->other_pidns)
        tids_reload(tm); /* now, before any caller stops the target's threads */
}

/* Re-read the map from /proc/PID/task/ * /status; on failure the old map is kept. */
static void tids_reload(struct tidmap *tm)
{
    pid_t *tids = malloc(TIDMAP_MAX_THREADS * sizeof(*tids));
    struct tidmap_entry *map = NULL;
    size_t n = 0, m = 0;

    if (!tids || procstat_tids(tm->pid, tids, TIDMAP_MAX_THREADS, &n, NULL) < 0 || n == 0)
        goto out;
    map = malloc(n * sizeof(*map));
    if (!map)
        goto out;
    for (size_t i = 0; i < n; i++) {
        struct procstat_status st;
        if (procstat_read_task_status(tm->pid, tids[i], &st, NULL) == 0 && st.nspid_levels > 1)
            map[m++] = (struct tidmap_entry){.ns = st.nspid_inner, .host = tids[i]};
    }
    free(tm->map);
    tm->map = map;
    tm->n = m;
out:
    free(tids);
}

static pid_t tids_find(const struct tidmap *tm, pid_t ns_tid)
{
    for (size_t i = 0; i < tm->n; i++)
        if (tm->map[i].ns == ns_tid)
            return tm->map[i].host;
    return 0;
}

pid_t tidmap_host_tid(struct tidmap *tm, pid_t ns_tid, bool *refreshed)
{
    pid_t host;

    if (!tm || !tm->other_pidns || ns_tid <= 0)
        return ns_tid;
    host = tids_find(tm, ns_tid);
    if (host == 0 && !*refreshed) {
        *refreshed = true;
        tids_reload(tm);
        host = tids_find(tm, ns_tid);
    }
    return host;
}

void tidmap_free(struct tidmap *tm)
{
    if (!tm)
        return;
    free(tm->map);
    tm->map = NULL;
    tm->n = 0;
}
