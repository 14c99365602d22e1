/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_DIAG_H
#define PYSCOPE_DIAG_H

/*
 * diag: turn a bare EPERM/EACCES/ESRCH from process_vm_readv or ptrace into one sentence that
 * says why and what to do (the SRE at 3 AM should not have to know Yama or seccomp). Split in
 * two so every branch is testable: diag_gather() reads the facts from /proc (ours and the
 * target's), diag_explain() is a pure function of those facts and the errno. Neither touches
 * the target's memory or stops it.
 *
 * Diagnosis order (first match wins): the process does not exist; (attach only) another
 * process already traces it; Yama scope 3 (nothing but a reboot helps, so it goes before advice
 * that would not); different uid/gid and no CAP_SYS_PTRACE; Yama scope 1 or 2 without
 * CAP_SYS_PTRACE; our own seccomp filter; same uid without CAP_SYS_PTRACE while the target holds
 * capabilities we lack; same uid without CAP_SYS_PTRACE (the target is not dumpable); otherwise
 * a security module or user namespace.
 */

#include <stdbool.h>
#include <sys/types.h>

#include "pyscope/err.h"
#include "pyscope/procstat.h"

/* What failed, which changes which causes are possible (another tracer blocks only attach). */
enum diag_op {
    DIAG_OP_READ = 0, /* process_vm_readv or /proc/PID/mem */
    DIAG_OP_ATTACH,   /* PTRACE_SEIZE */
};

/* Everything diag_explain() needs; -1 (or false for *_known) means "could not tell". */
struct diag_facts {
    pid_t pid;           /* the target */
    bool exists;         /* /proc/PID exists */
    bool ids_known;      /* target_uid/target_gid are valid */
    uid_t target_uid[3]; /* real, effective, saved */
    gid_t target_gid[3];
    pid_t tracer_pid;                    /* the target's TracerPid: 0 none, -1 unknown */
    char tracer_comm[PROCSTAT_COMM_MAX]; /* the tracer's comm, "" unknown */
    pid_t self_pid;
    uid_t self_uid; /* our real ids: ptrace and process_vm_readv check them */
    gid_t self_gid;
    int self_cap_ptrace; /* CAP_SYS_PTRACE in our CapEff: 1 yes, 0 no, -1 unknown */
    int self_seccomp;    /* our Seccomp: 0 none, 1 strict, 2 filter, -1 unknown */
    int yama_scope;      /* kernel.yama.ptrace_scope 0..3, -1 no Yama */
    int descendant;      /* the target descends from us: 1, 0, -1 unknown */
    /* The target's permitted capabilities include some ours lack (CapPrm): 1, 0, -1 unknown.
     * Without CAP_SYS_PTRACE the kernel then refuses even a process of our own uid
     * (cap_ptrace_access_check): the usual case of a debug container whose capabilities were
     * dropped, next to a root target. */
    int caps_exceed;
};

/*
 * Fill *out with the facts about pid and about pyscope itself from /proc (target and own
 * status, the tracer's comm, /proc/sys/kernel/yama/ptrace_scope, the target's PPid chain, at
 * most 256 steps). Never fails: whatever cannot be read is marked unknown. Any thread.
 */
void diag_gather(pid_t pid, struct diag_facts *out);

/*
 * Explain why op on f->pid failed with errno_value (positive: EPERM, EACCES, ESRCH; others get
 * a plain "failed: <strerror>" sentence). Overwrites err (ps_err_replace: this is the most
 * precise diagnosis there is) with one sentence and returns its code: -ESRCH when the process
 * does not exist or exited, -PS_EPERM for permission causes, -errno_value otherwise. Pure: reads
 * only *f. Any thread.
 */
int diag_explain(const struct diag_facts *f, enum diag_op op, int errno_value, struct ps_err *err);

/* diag_gather() then diag_explain(): the one call for code that just saw the failure. */
int diag_permission(pid_t pid, enum diag_op op, int errno_value, struct ps_err *err);

#endif
