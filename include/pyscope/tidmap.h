/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_TIDMAP_H
#define PYSCOPE_TIDMAP_H

/*
 * Thread ids across pid namespaces. CPython's native_thread_id is gettid() in the target's own
 * pid namespace: inside a container it is not the tid our /proc, ptrace and the tracer's stops
 * know. The map pairs the two from each task's NSpid line. Reads /proc only. Bounded: at most
 * TIDMAP_MAX_THREADS entries. One owner thread.
 */

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Threads mapped; as many as a thread-state listing holds (walk.h's WALK_MAX_THREADS). */
#define TIDMAP_MAX_THREADS 4096

/* One thread's id in the target's pid namespace and in ours. */
struct tidmap_entry {
    pid_t ns;
    pid_t host;
};

struct tidmap {
    pid_t pid;                /* the live target (0: a fixture or a core: ids are used as is) */
    bool other_pidns;         /* the target's pid namespace is below ours (NSpid says so) */
    struct tidmap_entry *map; /* owned, other_pidns only: the map as last read from /proc */
    size_t n;
};

/*
 * Initialise *tm for live process pid (0: none): set other_pidns (the target's NSpid line is
 * longer than ours; false when unknown: no NSpid before Linux 4.1) and, when set, read the map
 * now, before any caller stops the target's threads. Never fails: an unreadable map leaves ids
 * untranslatable (tidmap_host_tid returns 0 for them).
 */
void tidmap_open(struct tidmap *tm, pid_t pid);

/*
 * The tid our /proc and ptrace know for a thread id the target holds. Identity when tm is NULL
 * or the target shares our pid namespace (and for fixtures and cores). Otherwise a lookup in
 * the map, re-read from /proc/PID/task/TID/status (NSpid) on a miss when *refreshed is false
 * (then set: one re-read per caller's pass, however many threads miss). Returns 0 when no live
 * thread has that id (the thread exited, or the map cannot be read): callers then treat the OS
 * side of the thread as unknown, never use the raw id (it names an unrelated task of ours).
 */
pid_t tidmap_host_tid(struct tidmap *tm, pid_t ns_tid, bool *refreshed);

/* Free the map (not tm itself); NULL-safe. */
void tidmap_free(struct tidmap *tm);

#endif
