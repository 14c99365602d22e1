/* SPDX-License-Identifier: MIT */
/*
 * diag: permission diagnosis (see diag.h). diag_gather() is the only part that does I/O, and
 * only on /proc; diag_explain() walks a table of rules, each a pure function of the facts that
 * either writes its one sentence and returns a negative code or returns 0 to pass. The table
 * order is the diagnosis order. Why each rule holds (kernel/ptrace.c __ptrace_may_access, which
 * process_vm_readv and PTRACE_SEIZE share, with PTRACE_MODE_ATTACH_REALCREDS): the caller's real
 * uid and gid must equal the target's real, effective and saved ids, else CAP_SYS_PTRACE is
 * needed; a non-dumpable target needs CAP_SYS_PTRACE even for the same uid; then Yama
 * (security/yama) applies its scope. A second tracer only blocks attach (ptrace_attach). Never
 * touches the target; never prints.
 */
#include "pyscope/diag.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* The Kubernetes way to get CAP_SYS_PTRACE, quoted by every rule that asks for it. */
#define DIAG_K8S_CAP                                                                               \
    "in Kubernetes add securityContext: {capabilities: {add: [\"SYS_PTRACE\"]}} to the "           \
    "debugging container, or use kubectl debug -it <pod> --profile=general "                       \
    "--target=<container>"

/* Bound on the PPid walk in diag_gather: deeper process trees than this are not real. */
#define DIAG_ANCESTRY_MAX 256

typedef int (*diag_rule_fn)(const struct diag_facts *f, enum diag_op op, const char *what,
                            struct ps_err *err);

static bool diag_lacks_cap(const struct diag_facts *f)
{
    return f->self_cap_ptrace != 1;
}

static bool diag_ids_differ(const struct diag_facts *f)
{
    if (!f->ids_known)
        return false;
    for (int i = 0; i < 3; i++)
        if (f->target_uid[i] != f->self_uid || f->target_gid[i] != f->self_gid)
            return true;
    return false;
}

/* "uid 1000" or "uid 1000 (effective 0, saved 0)" when they differ. */
static void diag_fmt_ids(char *buf, size_t cap, const char *kind, const unsigned ids[3])
{
    if (ids[0] == ids[1] && ids[1] == ids[2])
        (void)snprintf(buf, cap, "%s %u", kind, ids[0]);
    else
        (void)snprintf(buf, cap, "%s %u (effective %u, saved %u)", kind, ids[0], ids[1], ids[2]);
}

/* ---- the rules, in diagnosis order ----------------------------------------------------------- */

static int diag_rule_gone(const struct diag_facts *f, enum diag_op op, const char *what,
                          struct ps_err *err)
{
    (void)op;
    if (!f->exists)
        return ps_err_replace(err, -ESRCH,
                              "%s: no such process (it exited, or it lives in another PID "
                              "namespace: run pyscope in the target's namespace, for example with "
                              "kubectl debug -it <pod> --profile=general --target=<container>, "
                              "and take the pid from ps there)",
                              what);
    return 0;
}

static int diag_rule_traced(const struct diag_facts *f, enum diag_op op, const char *what,
                            struct ps_err *err)
{
    if (op != DIAG_OP_ATTACH || f->tracer_pid <= 0 || f->tracer_pid == f->self_pid)
        return 0;
    return ps_err_replace(err, -PS_EPERM,
                          "%s: it is already traced by pid %d (%s) and a process can have only "
                          "one tracer; detach that debugger (gdb, strace, py-spy, another "
                          "pyscope) or wait for it to finish, then run pyscope again",
                          what, (int)f->tracer_pid,
                          f->tracer_comm[0] ? f->tracer_comm : "unknown program");
}

static int diag_rule_yama3(const struct diag_facts *f, enum diag_op op, const char *what,
                           struct ps_err *err)
{
    (void)op;
    if (f->yama_scope != 3)
        return 0;
    return ps_err_replace(err, -PS_EPERM,
                          "%s: kernel.yama.ptrace_scope is 3, which disables ptrace for every "
                          "process, root included, until the next reboot; set "
                          "kernel.yama.ptrace_scope to 0, 1 or 2 at boot (sysctl.conf or the "
                          "node image) and reboot the node",
                          what);
}

/* The fix for a uid/gid mismatch, which Yama may narrow to "only CAP_SYS_PTRACE works". */
static const char *diag_uid_fix(const struct diag_facts *f)
{
    if (f->yama_scope == 2)
        return "run pyscope as root with CAP_SYS_PTRACE (kernel.yama.ptrace_scope is 2, so the "
               "same uid is not enough)";
    if (f->yama_scope == 1 && f->descendant != 1)
        return "run pyscope as root with CAP_SYS_PTRACE (the target's user would also need "
               "kernel.yama.ptrace_scope=0)";
    return "run pyscope as the target's user, or as root with CAP_SYS_PTRACE";
}

static int diag_rule_uid(const struct diag_facts *f, enum diag_op op, const char *what,
                         struct ps_err *err)
{
    char tu[64], tg[64];
    unsigned uids[3], gids[3];

    (void)op;
    if (!diag_lacks_cap(f) || !diag_ids_differ(f))
        return 0;
    for (int i = 0; i < 3; i++) {
        uids[i] = (unsigned)f->target_uid[i];
        gids[i] = (unsigned)f->target_gid[i];
    }
    diag_fmt_ids(tu, sizeof(tu), "uid", uids);
    diag_fmt_ids(tg, sizeof(tg), "gid", gids);
    return ps_err_replace(err, -PS_EPERM,
                          "%s: it runs as %s, %s but pyscope runs as uid %u, gid %u without "
                          "CAP_SYS_PTRACE; %s (%s)",
                          what, tu, tg, (unsigned)f->self_uid, (unsigned)f->self_gid,
                          diag_uid_fix(f), DIAG_K8S_CAP);
}

static int diag_rule_yama(const struct diag_facts *f, enum diag_op op, const char *what,
                          struct ps_err *err)
{
    (void)op;
    if (!diag_lacks_cap(f))
        return 0;
    if (f->yama_scope == 1 && f->descendant != 1)
        return ps_err_replace(err, -PS_EPERM,
                              "%s: kernel.yama.ptrace_scope is 1, which lets a process trace "
                              "only its own descendants; run `sysctl kernel.yama.ptrace_scope=0` "
                              "on the node, or give pyscope CAP_SYS_PTRACE (run it as root; %s)",
                              what, DIAG_K8S_CAP);
    if (f->yama_scope == 2)
        return ps_err_replace(err, -PS_EPERM,
                              "%s: kernel.yama.ptrace_scope is 2 (admin only), so only a process "
                              "with CAP_SYS_PTRACE may trace; run pyscope as root with "
                              "CAP_SYS_PTRACE (%s), or lower it with "
                              "`sysctl kernel.yama.ptrace_scope=1`",
                              what, DIAG_K8S_CAP);
    return 0;
}

static int diag_rule_seccomp(const struct diag_facts *f, enum diag_op op, const char *what,
                             struct ps_err *err)
{
    (void)op;
    if (f->self_seccomp != 2)
        return 0;
    return ps_err_replace(err, -PS_EPERM,
                          "%s: pyscope runs under a seccomp filter (Seccomp: 2 in "
                          "/proc/self/status), probably the container's seccomp profile, which "
                          "blocks process_vm_readv and ptrace; set securityContext.seccompProfile: "
                          "{type: Unconfined} on the debugging container, or use a profile that "
                          "allows process_vm_readv and ptrace",
                          what);
}

static int diag_rule_caps(const struct diag_facts *f, enum diag_op op, const char *what,
                          struct ps_err *err)
{
    (void)op;
    if (!diag_lacks_cap(f) || f->caps_exceed != 1)
        return 0;
    return ps_err_replace(err, -PS_EPERM,
                          "%s: it runs as pyscope's own uid %u but holds capabilities pyscope "
                          "lacks (CapPrm in /proc/PID/status), and the kernel then requires "
                          "CAP_SYS_PTRACE; give pyscope CAP_SYS_PTRACE (%s)",
                          what, (unsigned)f->self_uid, DIAG_K8S_CAP);
}

static int diag_rule_dumpable(const struct diag_facts *f, enum diag_op op, const char *what,
                              struct ps_err *err)
{
    (void)op;
    if (!diag_lacks_cap(f))
        return 0;
    if (!f->ids_known)
        return ps_err_replace(err, -PS_EPERM,
                              "%s: permission denied and pyscope lacks CAP_SYS_PTRACE; run "
                              "pyscope as the target's user, or as root with CAP_SYS_PTRACE (%s)",
                              what, DIAG_K8S_CAP);
    return ps_err_replace(err, -PS_EPERM,
                          "%s: it runs as pyscope's own uid %u but is not dumpable (a setuid or "
                          "setgid program, one that changed credentials, or one that called "
                          "prctl(PR_SET_DUMPABLE, 0)), and only CAP_SYS_PTRACE overrides that; "
                          "run pyscope as root with CAP_SYS_PTRACE (%s)",
                          what, (unsigned)f->self_uid, DIAG_K8S_CAP);
}

static int diag_rule_lsm(const struct diag_facts *f, enum diag_op op, const char *what,
                         struct ps_err *err)
{
    (void)f;
    (void)op;
    return ps_err_replace(err, -PS_EPERM,
                          "%s: permission denied although pyscope has CAP_SYS_PTRACE, so a "
                          "security module (AppArmor, SELinux) or a user namespace the capability "
                          "does not cover is blocking it; check `dmesg` or the audit log, and in "
                          "Kubernetes try securityContext.appArmorProfile: {type: Unconfined} on "
                          "the debugging container",
                          what);
}

static const diag_rule_fn diag_perm_rules[] = {
    diag_rule_gone,    diag_rule_traced, diag_rule_yama3,    diag_rule_uid, diag_rule_yama,
    diag_rule_seccomp, diag_rule_caps,   diag_rule_dumpable, diag_rule_lsm,
};

/* ---- explain ------------------------------------------------------------------------------- */

static int diag_other_errno(const struct diag_facts *f, int errno_value, const char *what,
                            struct ps_err *err)
{
    if (errno_value == ESRCH)
        return ps_err_replace(err, -ESRCH,
                              "%s: the process or one of its threads exited while pyscope was "
                              "reading it; run pyscope again if it is still there",
                              what);
    (void)f;
    return ps_err_replace(err, errno_value > 0 ? -errno_value : -EIO, "%s: %s", what,
                          strerror(errno_value > 0 ? errno_value : EIO));
}

int diag_explain(const struct diag_facts *f, enum diag_op op, int errno_value, struct ps_err *err)
{
    char what[64];
    int rc;

    (void)snprintf(what, sizeof(what),
                   op == DIAG_OP_ATTACH ? "cannot attach to pid %d"
                                        : "cannot read the memory of pid %d",
                   (int)f->pid);
    rc = diag_rule_gone(f, op, what, err);
    if (rc < 0)
        return rc;
    if (errno_value != EPERM && errno_value != EACCES)
        return diag_other_errno(f, errno_value, what, err);
    for (size_t i = 0; i < sizeof(diag_perm_rules) / sizeof(diag_perm_rules[0]); i++) {
        rc = diag_perm_rules[i](f, op, what, err);
        if (rc < 0)
            return rc;
    }
    return rc;
}

/* ---- gather -------------------------------------------------------------------------------- */

static int diag_read_yama(void)
{
    char buf[16] = {0};
    FILE *fp = fopen("/proc/sys/kernel/yama/ptrace_scope", "re");
    int scope = -1;

    if (!fp)
        return -1;
    if (fgets(buf, sizeof(buf), fp) && buf[0] >= '0' && buf[0] <= '3')
        scope = buf[0] - '0';
    (void)fclose(fp);
    return scope;
}

/* 1 when self is an ancestor of the process whose parent is ppid, 0 when not, -1 unknown. */
static int diag_is_descendant(pid_t ppid, pid_t self)
{
    struct procstat_status st;

    for (int step = 0; step < DIAG_ANCESTRY_MAX; step++) {
        if (ppid == self)
            return 1;
        if (ppid <= 1)
            return 0;
        if (procstat_read_status(ppid, &st, NULL) < 0 || st.ppid < 0)
            return -1;
        ppid = st.ppid;
    }
    return -1;
}

static void diag_gather_self(struct diag_facts *out)
{
    struct procstat_status self;

    out->self_pid = getpid();
    out->self_uid = getuid();
    out->self_gid = getgid();
    out->self_cap_ptrace = -1;
    out->self_seccomp = -1;
    if (procstat_read_status(0, &self, NULL) < 0)
        return;
    if (self.cap_eff_known)
        out->self_cap_ptrace = (int)((self.cap_eff >> PROCSTAT_CAP_SYS_PTRACE) & 1U);
    out->self_seccomp = self.seccomp;
}

static void diag_gather_target(pid_t pid, struct diag_facts *out)
{
    struct procstat_status st;
    int rc = procstat_read_status(pid, &st, NULL);

    out->exists = rc != -ESRCH;
    out->tracer_pid = -1;
    out->descendant = -1;
    if (rc < 0)
        return;
    out->ids_known = st.ids_known;
    for (int i = 0; i < 3; i++) {
        out->target_uid[i] = st.uid[i];
        out->target_gid[i] = st.gid[i];
    }
    out->tracer_pid = st.tracer_pid;
    if (st.tracer_pid > 0 &&
        procstat_comm(st.tracer_pid, out->tracer_comm, sizeof(out->tracer_comm), NULL) < 0)
        out->tracer_comm[0] = '\0';
    out->descendant = st.ppid >= 0 ? diag_is_descendant(st.ppid, out->self_pid) : -1;
}

/* Does pid hold permitted capabilities we lack? 1, 0, or -1 when either CapPrm is unreadable. */
static int diag_caps_exceed(pid_t pid)
{
    struct procstat_status self, target;

    if (procstat_read_status(0, &self, NULL) < 0 || procstat_read_status(pid, &target, NULL) < 0 ||
        !self.cap_prm_known || !target.cap_prm_known)
        return -1;
    return (target.cap_prm & ~self.cap_prm) != 0;
}

void diag_gather(pid_t pid, struct diag_facts *out)
{
    memset(out, 0, sizeof(*out));
    out->pid = pid;
    diag_gather_self(out);
    diag_gather_target(pid, out);
    out->yama_scope = diag_read_yama();
    out->caps_exceed = diag_caps_exceed(pid);
}

int diag_permission(pid_t pid, enum diag_op op, int errno_value, struct ps_err *err)
{
    struct diag_facts f;

    diag_gather(pid, &f);
    return diag_explain(&f, op, errno_value, err);
}
