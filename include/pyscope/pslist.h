/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_PSLIST_H
#define PYSCOPE_PSLIST_H

/*
 * pslist: the Python processes in view (`pyscope ps`), and which of them are the workers of
 * another (a gunicorn or uvicorn master and its children).
 *
 * A process is listed when its /proc/PID/maps maps a libpython3.* or its executable's name
 * starts with "python"; its version is then read from its memory (Py_Version, locate.h), or,
 * where that is refused, taken from those file names ("3.12", version_read false). Processes
 * whose maps and executable are unreadable (another user's, without CAP_SYS_PTRACE) are
 * counted, not listed. The master of a Python process is its nearest Python ancestor (through
 * non-Python ones such as a shell); its workers are the processes whose master it is.
 *
 * Only /proc and a few words of memory are read: nothing is stopped or traced. Bounds:
 * PSLIST_SCAN_MAX /proc entries, PSLIST_MAX Python processes (more are counted), ancestor
 * chains of PSLIST_DEPTH_MAX. One thread; allocates the table (pslist_free).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pyscope/err.h"

#define PSLIST_SCAN_MAX    65536 /* pids looked at; /proc of a busy node holds a few thousand */
#define PSLIST_MAX         1024  /* Python processes listed */
#define PSLIST_DEPTH_MAX   64    /* ancestors walked to find a master */
#define PSLIST_CMDLINE_MAX 512
#define PSLIST_WALK_MAX    1024 /* descendants walked by pslist_descendant_workers */

struct pslist_entry {
    pid_t pid, ppid;
    pid_t master;      /* nearest Python ancestor, 0 if none */
    size_t nworkers;   /* processes whose master this one is */
    char version[32];  /* "3.12.1" (read) or "3.12" (from file names), "" if unknown */
    bool version_read; /* version came from the process's memory */
    long threads;
    uint64_t rss_bytes;
    double cpu_s; /* user + system since start */
    char cmdline[PSLIST_CMDLINE_MAX];
};

struct pslist {
    struct pslist_entry *v; /* sorted by pid */
    size_t n;
    size_t over_cap;   /* Python processes not listed: PSLIST_MAX reached */
    size_t unreadable; /* processes whose maps and executable could not be read */
};

/*
 * List every Python process in this pid namespace into *out (pslist_free it). A process that
 * exits meanwhile is skipped. Errors: -errno opening /proc, -ENOMEM.
 */
int pslist_scan(struct pslist *out, struct ps_err *err) PS_WARN_UNUSED;

/* The entry of pid in l, or NULL. */
const struct pslist_entry *pslist_find(const struct pslist *l, pid_t pid);

/*
 * Write at most cap pids of the workers of pid (entries whose master is pid) into pids, in pid
 * order; return how many there are in all (may exceed cap).
 */
size_t pslist_workers(const struct pslist *l, pid_t pid, pid_t *pids, size_t cap);

/*
 * The Python workers of pid without a full scan: its descendants are walked breadth first
 * (through non-Python ones such as a shell, not into Python ones, whose children are their own
 * workers), at most PSLIST_WALK_MAX of them, and judged by their file names only (maps and
 * executable, no memory read), so that it costs a few /proc reads per child. The first cap
 * pids go to out, in the order found; returns how many there are in all. Any thread.
 */
size_t pslist_descendant_workers(pid_t pid, pid_t *out, size_t cap);

/*
 * The nearest Python ancestor of pid (pslist_scan's master, judged by file names only as
 * pslist_descendant_workers does), 0 when none within PSLIST_DEPTH_MAX ancestors. Any thread.
 */
pid_t pslist_master(pid_t pid);

/*
 * The one sentence `dump`, `exceptions`, `growth` and `attach` print when pid has Python
 * workers: "pid 100 has 4 Python worker processes (101, 102, 103, 104) that may do the work:
 * `pyscope ps` lists them, `pyscope <command> 101` looks at one" into buf (cap bytes); returns
 * false (buf "") when it has none (pslist_descendant_workers). Any thread.
 */
bool pslist_workers_note(pid_t pid, const char *command, char *buf, size_t cap);

void pslist_free(struct pslist *l);

#endif
