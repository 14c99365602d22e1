/* SPDX-License-Identifier: MIT */
/*
 * Thread ids across pid namespaces (see pyproc_host_tid in pyproc.h). pyscope on a node reads
 * a container's process: the ids CPython stores (native_thread_id, the threading registry) are
 * the container's, while /proc/PID/task, ptrace and the tracer's stops use the node's. The
 * kernel lists both on each task's "NSpid:" line (ours first, the task's own last), so the map
 * is read from there. Invariants: at most WALK_MAX_THREADS entries; a miss re-reads the map at
 * most once per pass; an id that cannot be translated becomes 0, never the raw id (which names
 * an unrelated task on the node: pid 1, 2, ...). Reads /proc only.
 */
#include "pyscope/procstat.h"
#include "pyscope/pyproc.h"
#include "pyscope/walk.h"

#include <stdlib.h>

static void tids_reload(struct pyproc *pp);

void pyproc_tids_open(struct pyproc *pp)
{
    struct procstat_status mine, theirs;

    pp->other_pidns = pp->pid > 0 && procstat_read_status(0, &mine, NULL) == 0 &&
                      procstat_read_status(pp->pid, &theirs, NULL) == 0 && mine.nspid_levels > 0 &&
                      theirs.nspid_levels > mine.nspid_levels;
    if (pp->other_pidns)
        tids_reload(pp); /* now, before any caller stops the target's threads */
}

/* Re-read the map from /proc/PID/task/ * /status; on failure the old map is kept. */
static void tids_reload(struct pyproc *pp)
{
    pid_t *tids = malloc(WALK_MAX_THREADS * sizeof(*tids));
    struct pyproc_tid *map = NULL;
    size_t n = 0, m = 0;

    if (!tids || procstat_tids(pp->pid, tids, WALK_MAX_THREADS, &n, NULL) < 0 || n == 0)
        goto out;
    map = malloc(n * sizeof(*map));
    if (!map)
        goto out;
    for (size_t i = 0; i < n; i++) {
        struct procstat_status st;
        if (procstat_read_task_status(pp->pid, tids[i], &st, NULL) == 0 && st.nspid_levels > 1)
            map[m++] = (struct pyproc_tid){.ns = st.nspid_inner, .host = tids[i]};
    }
    free(pp->tids);
    pp->tids = map;
    pp->ntids = m;
out:
    free(tids);
}

static pid_t tids_find(const struct pyproc *pp, pid_t ns_tid)
{
    for (size_t i = 0; i < pp->ntids; i++)
        if (pp->tids[i].ns == ns_tid)
            return pp->tids[i].host;
    return 0;
}

pid_t pyproc_host_tid(struct pyproc *pp, pid_t ns_tid, bool *refreshed)
{
    pid_t host;

    if (!pp->other_pidns || ns_tid <= 0)
        return ns_tid;
    host = tids_find(pp, ns_tid);
    if (host == 0 && !*refreshed) {
        *refreshed = true;
        tids_reload(pp);
        host = tids_find(pp, ns_tid);
    }
    return host;
}
