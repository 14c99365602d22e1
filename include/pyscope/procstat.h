/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_PROCSTAT_H
#define PYSCOPE_PROCSTAT_H

/*
 * procstat: what the kernel says about a process and its threads, read from /proc. Never touches
 * target memory and never stops anything, so it is safe to call at any time, from any thread,
 * on any pid. Every read is bounded (fixed buffers, capped counts); all results go to
 * caller-owned memory, nothing is allocated. Parsers of /proc text are exported separately so
 * that tests can drive them with hostile input (a comm holding ") S (", truncated files).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pyscope/err.h"
#include "pyscope/snap.h"

/* Kernel TASK_COMM_LEN is 16 (15 characters and a NUL); a little room for safety. */
#define PROCSTAT_COMM_MAX 32
/* Command lines are shown, not parsed: 4 KiB is several screen lines and bounds the read. */
#define PROCSTAT_CMDLINE_MAX 4096
#define PROCSTAT_PATH_MAX    4096
/* Longest /proc text we parse (stat, status): status is about 1.5 KiB on 6.x kernels. */
#define PROCSTAT_TEXT_MAX 8192
/* Supplementary groups kept from status: a service has a handful; more reads as unknown. */
#define PROCSTAT_GROUPS_MAX 64
/* Capability number of CAP_SYS_PTRACE (linux/capability.h). */
#define PROCSTAT_CAP_SYS_PTRACE 19

/* The fields pyscope uses from /proc/PID[/task/TID]/stat. */
struct procstat_stat {
    char state;           /* field 3: R, S, D, T, t, Z, X, I, ... */
    pid_t ppid;           /* field 4 */
    uint64_t utime_ticks; /* field 14, clock ticks */
    uint64_t stime_ticks; /* field 15 */
    long num_threads;     /* field 20 */
    uint64_t start_ticks; /* field 22: start time since boot (detects pid reuse) */
    /* Changes when the process exec()s (same pid, new image): a mix of where its code, stack,
     * data, heap, arguments and environment start (fields 26-28, 45-51: placed anew by every
     * exec, randomised under ASLR; a new command line moves them without it). 0 when the kernel
     * hides them (no ptrace rights on the process) or the stat line is too short. */
    uint64_t image;
};

/* The fields pyscope uses from /proc/PID/status. Unknown values are marked as stated. */
struct procstat_status {
    char state;       /* "State:" letter, '?' unknown */
    pid_t ppid;       /* -1 unknown */
    pid_t tracer_pid; /* 0 not traced, -1 unknown */
    bool ids_known;   /* Uid: and Gid: lines were parsed */
    uid_t uid[4];     /* real, effective, saved, filesystem */
    gid_t gid[4];
    int ngroups;       /* "Groups:" count; -1 unknown (no line, cut, or past PROCSTAT_GROUPS_MAX) */
    int nspid_levels;  /* values on the "NSpid:" line (pid namespaces from ours down); 0 unknown */
    pid_t nspid_inner; /* its last value: the id in the task's own pid namespace; 0 unknown */
    gid_t groups[PROCSTAT_GROUPS_MAX];
    bool cap_eff_known;
    uint64_t cap_eff; /* CapEff bit mask */
    bool cap_prm_known;
    uint64_t cap_prm; /* CapPrm bit mask (the kernel's ptrace check compares these) */
    int seccomp;      /* 0 none, 1 strict, 2 filter, -1 unknown (no Seccomp: line) */
};

/* Process-wide information for the snapshot header and for diagnosis. */
struct procstat_proc {
    char comm[PROCSTAT_COMM_MAX];
    char cmdline[PROCSTAT_CMDLINE_MAX]; /* arguments joined by spaces, truncated; "" if none */
    char exe[PROCSTAT_PATH_MAX];        /* readlink of /proc/PID/exe; "" when not readable */
    double cpu_user_s;
    double cpu_system_s;
    uint64_t rss_bytes; /* statm resident pages * page size */
    struct procstat_status status;
};

/*
 * List the thread ids of pid (the entries of /proc/PID/task) into the caller's array tids of cap
 * entries, sorted ascending, and store their number in *n. A thread may exit right after it is
 * listed: callers treat a later -ESRCH for one tid as data. Errors: -ESRCH (no such process),
 * -EACCES, -PS_ELIMIT (more than cap threads; nothing is written to *n). Any thread.
 */
int procstat_tids(pid_t pid, pid_t *tids, size_t cap, size_t *n, struct ps_err *err) PS_WARN_UNUSED;

/*
 * Fill *out with the OS view of thread tid of process pid: state, CPU ticks (stat), wait channel
 * (wchan: "" when unreadable), OS thread name (comm: "" when unreadable) and current syscall (/proc/.../syscall: -1 when not in a syscall,
 * -2 when unreadable, which needs ptrace rights). The state is read first, since reading the
 * others does not disturb it. Errors: -ESRCH (the thread is gone), -PS_EFORMAT (malformed stat),
 * other -errno from opening stat. *out is written only on success. Any thread.
 */
int procstat_thread_os(pid_t pid, pid_t tid, struct snap_os *out,
                       struct ps_err *err) PS_WARN_UNUSED;

/*
 * Read the state letter of one thread (or of a process, with tid == pid) into *state.
 * Errors: -ESRCH (gone), -PS_EFORMAT. Any thread.
 */
int procstat_state(pid_t pid, pid_t tid, char *state, struct ps_err *err) PS_WARN_UNUSED;

/*
 * Parse /proc/PID/stat of a process (or thread) into *out. Errors: -ESRCH (gone),
 * -PS_EFORMAT. Any thread.
 */
int procstat_stat(pid_t pid, pid_t tid, struct procstat_stat *out,
                  struct ps_err *err) PS_WARN_UNUSED;

/*
 * Copy the comm (kernel thread-group name, at most 15 characters) of pid into out (cap bytes,
 * NUL-terminated, newline removed). Errors: -ESRCH (gone), other -errno. Any thread.
 */
int procstat_comm(pid_t pid, char *out, size_t cap, struct ps_err *err) PS_WARN_UNUSED;

/*
 * Read /proc/PID/status into *out (pid 0 means ourselves, /proc/self). Errors: -ESRCH, -EACCES.
 * Missing lines leave their fields "unknown" rather than failing. Any thread.
 */
int procstat_read_status(pid_t pid, struct procstat_status *out, struct ps_err *err) PS_WARN_UNUSED;

/* The same for thread tid of pid (/proc/PID/task/TID/status). Errors: -ESRCH, -EACCES. */
int procstat_read_task_status(pid_t pid, pid_t tid, struct procstat_status *out,
                              struct ps_err *err) PS_WARN_UNUSED;

/*
 * Fill *out with comm, cmdline, exe, CPU seconds, RSS and status of pid. Only stat and status
 * are required; unreadable comm, cmdline, exe or statm leave "" or 0. Errors: -ESRCH, -EACCES,
 * -PS_EFORMAT. *out is about 8 KiB: callers keep it off small stacks. Any thread.
 */
int procstat_proc(pid_t pid, struct procstat_proc *out, struct ps_err *err) PS_WARN_UNUSED;

/*
 * Parse stat text (len bytes, need not be NUL-terminated): the comm field is skipped up to the
 * LAST ')' because comm may contain ')' and spaces. Errors: -PS_EFORMAT naming what is missing.
 */
int procstat_parse_stat(const char *text, size_t len, struct procstat_stat *out,
                        struct ps_err *err) PS_WARN_UNUSED;

/* Parse status text (len bytes). Never fails: unknown fields keep their "unknown" values. */
void procstat_parse_status(const char *text, size_t len, struct procstat_status *out);

/*
 * Parse /proc/PID/task/TID/syscall text: the first number, or -1 for "running" and for "-1 ..."
 * (blocked outside a syscall). Returns -2 for anything else.
 */
long procstat_parse_syscall(const char *text, size_t len);

/*
 * The first argument of the syscall in the same text ("202 0x7f1c2a3b4c50 0x80 ..."): true and
 * *arg0 set when present and well formed, false otherwise.
 */
bool procstat_parse_syscall_arg0(const char *text, size_t len, uint64_t *arg0);

/*
 * Name of syscall number nr on this architecture for the calls that explain where a thread
 * waits (read, futex, clock_nanosleep, epoll_wait, ...), or NULL for any other number.
 */
const char *procstat_syscall_name(long nr);

/*
 * Write a short human description of what a thread is doing, from the OS view alone, into buf
 * (cap bytes, NUL-terminated, truncated) and return buf: "running", "sleeping
 * (hrtimer_nanosleep)", "waiting on a futex", "blocked in read", "stopped", "stopped by a
 * tracer", "exited". The snapshot refines it with GIL knowledge (a futex wait on the GIL's
 * condition is "waiting for the GIL"). Pure; any thread.
 */
const char *procstat_activity(const struct snap_os *os, char *buf, size_t cap);

#endif
