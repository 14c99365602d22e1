/* SPDX-License-Identifier: MIT */
/*
 * diag tests: diag_explain() driven with hand-built facts for every cause and the combinations
 * where the order matters (Yama 3 before uid advice, seccomp before non-dumpable, a tracer only
 * for attach), asserting the key phrase of each fix and that each message is one sentence; then
 * diag_gather() on ourselves, a child and a pid that does not exist.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "pyscope/diag.h"

#define K8S_CAP   "securityContext: {capabilities: {add: [\"SYS_PTRACE\"]}}"
#define K8S_DEBUG "kubectl debug -it <pod> --profile=general --target=<container>"

/* A target we would be allowed to trace: same ids, no tracer, no Yama, no seccomp, no cap. */
static struct diag_facts base(void)
{
    struct diag_facts f;

    memset(&f, 0, sizeof(f));
    f.pid = 4242;
    f.exists = true;
    f.ids_known = true;
    for (int i = 0; i < 3; i++) {
        f.target_uid[i] = 1000;
        f.target_gid[i] = 1000;
    }
    f.self_pid = 777;
    f.self_uid = 1000;
    f.self_gid = 1000;
    f.self_cap_ptrace = 0;
    f.self_seccomp = 0;
    f.yama_scope = -1;
    f.descendant = 0;
    return f;
}

static struct ps_err last;

/* Explain, check the code and that the text is one sentence naming the pid. */
static const char *explain(const struct diag_facts *f, enum diag_op op, int e, int want_code)
{
    ps_err_clear(&last);
    assert_int_equal(diag_explain(f, op, e, &last), want_code);
    assert_int_equal(last.code, want_code);
    assert_non_null(strstr(last.msg, "pid 4242"));
    assert_null(strstr(last.msg, ". "));                  /* one sentence */
    assert_true(strlen(last.msg) < sizeof(last.msg) - 1); /* not truncated */
    return last.msg;
}

static void has(const char *msg, const char *phrase)
{
    if (!strstr(msg, phrase))
        fail_msg("missing \"%s\" in: %s", phrase, msg);
}

static void lacks(const char *msg, const char *phrase)
{
    if (strstr(msg, phrase))
        fail_msg("unexpected \"%s\" in: %s", phrase, msg);
}

/* ---- explain ------------------------------------------------------------------------------- */

static void test_no_such_process(void **state)
{
    struct diag_facts f = base();
    const char *m;

    (void)state;
    f.exists = false;
    m = explain(&f, DIAG_OP_ATTACH, ESRCH, -ESRCH);
    has(m, "cannot attach to pid 4242: no such process");
    has(m, "PID namespace");
    /* a missing process wins over every errno and every other fact */
    f.tracer_pid = 5;
    f.yama_scope = 3;
    m = explain(&f, DIAG_OP_READ, EPERM, -ESRCH);
    has(m, "cannot read the memory of pid 4242: no such process");
}

static void test_exited_meanwhile(void **state)
{
    struct diag_facts f = base();
    const char *m;

    (void)state;
    m = explain(&f, DIAG_OP_READ, ESRCH, -ESRCH);
    has(m, "exited while pyscope was reading it");
}

static void test_already_traced(void **state)
{
    struct diag_facts f = base();
    const char *m;

    (void)state;
    f.tracer_pid = 31337;
    (void)snprintf(f.tracer_comm, sizeof(f.tracer_comm), "gdb");
    f.self_uid = 0; /* even with a uid mismatch, the tracer is named first */
    m = explain(&f, DIAG_OP_ATTACH, EPERM, -PS_EPERM);
    has(m, "already traced by pid 31337 (gdb)");
    has(m, "detach that debugger");
    f.tracer_comm[0] = '\0';
    m = explain(&f, DIAG_OP_ATTACH, EPERM, -PS_EPERM);
    has(m, "pid 31337 (unknown program)");
    /* another tracer does not block process_vm_readv: not the cause of a read failure */
    m = explain(&f, DIAG_OP_READ, EPERM, -PS_EPERM);
    lacks(m, "already traced");
    /* we are the tracer: not a cause either */
    f.tracer_pid = f.self_pid;
    f.self_uid = 1000;
    m = explain(&f, DIAG_OP_ATTACH, EPERM, -PS_EPERM);
    lacks(m, "already traced");
}

static void test_uid_mismatch(void **state)
{
    struct diag_facts f = base();
    const char *m;

    (void)state;
    f.self_uid = 1001;
    f.self_gid = 1001;
    m = explain(&f, DIAG_OP_READ, EPERM, -PS_EPERM);
    has(m, "it runs as uid 1000, gid 1000 but pyscope runs as uid 1001, gid 1001");
    has(m, "without CAP_SYS_PTRACE");
    has(m, "run pyscope as the target's user, or as root with CAP_SYS_PTRACE");
    has(m, K8S_CAP);
    has(m, K8S_DEBUG);
    /* EACCES is treated like EPERM */
    m = explain(&f, DIAG_OP_ATTACH, EACCES, -PS_EPERM);
    has(m, "cannot attach to pid 4242: it runs as uid 1000");
}

static void test_uid_setuid_target(void **state)
{
    struct diag_facts f = base();
    const char *m;

    (void)state;
    f.target_uid[1] = 0; /* a setuid-root program started by uid 1000 */
    f.target_uid[2] = 0;
    m = explain(&f, DIAG_OP_ATTACH, EPERM, -PS_EPERM);
    has(m, "uid 1000 (effective 0, saved 0)");
    has(m, "CAP_SYS_PTRACE");
}

static void test_gid_mismatch(void **state)
{
    struct diag_facts f = base();
    const char *m;

    (void)state;
    f.target_gid[0] = 50;
    m = explain(&f, DIAG_OP_ATTACH, EPERM, -PS_EPERM);
    has(m, "gid 50 (effective 1000, saved 1000) but pyscope runs as uid 1000, gid 1000");
}

static void test_uid_fix_follows_yama(void **state)
{
    struct diag_facts f = base();
    const char *m;

    (void)state;
    f.self_uid = 1001;
    f.yama_scope = 2;
    m = explain(&f, DIAG_OP_ATTACH, EPERM, -PS_EPERM);
    has(m, "same uid is not enough");
    lacks(m, "target's user, or");
    f.yama_scope = 1;
    m = explain(&f, DIAG_OP_ATTACH, EPERM, -PS_EPERM);
    has(m, "would also need kernel.yama.ptrace_scope=0");
    f.descendant = 1; /* scope 1 allows our own descendants: the user fix works again */
    m = explain(&f, DIAG_OP_ATTACH, EPERM, -PS_EPERM);
    has(m, "run pyscope as the target's user");
}

static void test_cap_makes_uid_irrelevant(void **state)
{
    struct diag_facts f = base();
    const char *m;

    (void)state;
    f.self_uid = 0;
    f.self_gid = 0;
    f.self_cap_ptrace = 1;
    m = explain(&f, DIAG_OP_ATTACH, EPERM, -PS_EPERM);
    lacks(m, "without CAP_SYS_PTRACE");
    has(m, "although pyscope has CAP_SYS_PTRACE");
    has(m, "AppArmor");
    has(m, "appArmorProfile: {type: Unconfined}");
}

static void test_yama_1(void **state)
{
    struct diag_facts f = base();
    const char *m;

    (void)state;
    f.yama_scope = 1;
    m = explain(&f, DIAG_OP_ATTACH, EPERM, -PS_EPERM);
    has(m, "kernel.yama.ptrace_scope is 1");
    has(m, "only its own descendants");
    has(m, "sysctl kernel.yama.ptrace_scope=0");
    has(m, K8S_CAP);
    /* unknown ancestry counts as "not a descendant" */
    f.descendant = -1;
    m = explain(&f, DIAG_OP_READ, EPERM, -PS_EPERM);
    has(m, "sysctl kernel.yama.ptrace_scope=0");
    /* a descendant passes Yama 1: the next cause (non-dumpable) is named */
    f.descendant = 1;
    m = explain(&f, DIAG_OP_ATTACH, EPERM, -PS_EPERM);
    lacks(m, "yama");
    has(m, "not dumpable");
    /* CAP_SYS_PTRACE passes Yama 1 */
    f.descendant = 0;
    f.self_cap_ptrace = 1;
    m = explain(&f, DIAG_OP_ATTACH, EPERM, -PS_EPERM);
    lacks(m, "yama");
}

static void test_yama_2(void **state)
{
    struct diag_facts f = base();
    const char *m;

    (void)state;
    f.yama_scope = 2;
    f.descendant = 1; /* scope 2 ignores ancestry */
    m = explain(&f, DIAG_OP_ATTACH, EPERM, -PS_EPERM);
    has(m, "kernel.yama.ptrace_scope is 2 (admin only)");
    has(m, "run pyscope as root with CAP_SYS_PTRACE");
    has(m, K8S_DEBUG);
    f.self_cap_ptrace = 1;
    m = explain(&f, DIAG_OP_ATTACH, EPERM, -PS_EPERM);
    lacks(m, "yama");
}

static void test_yama_3(void **state)
{
    struct diag_facts f = base();
    const char *m;

    (void)state;
    f.yama_scope = 3;
    f.self_cap_ptrace = 1; /* root cannot either */
    m = explain(&f, DIAG_OP_ATTACH, EPERM, -PS_EPERM);
    has(m, "kernel.yama.ptrace_scope is 3");
    has(m, "until the next reboot");
    has(m, "reboot the node");
    /* before uid advice that could not help */
    f.self_cap_ptrace = 0;
    f.self_uid = 1001;
    m = explain(&f, DIAG_OP_READ, EPERM, -PS_EPERM);
    has(m, "ptrace_scope is 3");
    lacks(m, "uid 1001");
}

static void test_seccomp(void **state)
{
    struct diag_facts f = base();
    const char *m;

    (void)state;
    f.self_seccomp = 2;
    f.self_cap_ptrace = 1;
    m = explain(&f, DIAG_OP_READ, EPERM, -PS_EPERM);
    has(m, "seccomp filter");
    has(m, "securityContext.seccompProfile: {type: Unconfined}");
    has(m, "allows process_vm_readv and ptrace");
    /* seccomp goes before the non-dumpable guess */
    f.self_cap_ptrace = 0;
    m = explain(&f, DIAG_OP_READ, EPERM, -PS_EPERM);
    has(m, "seccomp filter");
    lacks(m, "dumpable");
    /* but after uid: the uid mismatch is certain, the seccomp block only probable */
    f.self_uid = 1001;
    m = explain(&f, DIAG_OP_READ, EPERM, -PS_EPERM);
    has(m, "uid 1001");
    /* strict mode (1) would have killed us already; no filter claim */
    f.self_uid = 1000;
    f.self_seccomp = 1;
    m = explain(&f, DIAG_OP_READ, EPERM, -PS_EPERM);
    lacks(m, "seccomp");
}

static void test_not_dumpable(void **state)
{
    struct diag_facts f = base();
    const char *m;

    (void)state;
    m = explain(&f, DIAG_OP_ATTACH, EPERM, -PS_EPERM);
    has(m, "runs as pyscope's own uid 1000 but is not dumpable");
    has(m, "setuid");
    has(m, "PR_SET_DUMPABLE");
    has(m, "root with CAP_SYS_PTRACE");
    has(m, K8S_CAP);
    /* unknown cap counts as lacking it */
    f.self_cap_ptrace = -1;
    m = explain(&f, DIAG_OP_ATTACH, EPERM, -PS_EPERM);
    has(m, "not dumpable");
}

static void test_caps_exceed(void **state)
{
    struct diag_facts f = base();
    const char *m;

    (void)state;
    f.caps_exceed = 1; /* a root target, pyscope's capabilities dropped */
    m = explain(&f, DIAG_OP_READ, EPERM, -PS_EPERM);
    has(m, "runs as pyscope's own uid 1000 but holds capabilities pyscope lacks");
    has(m, "the kernel then requires CAP_SYS_PTRACE");
    has(m, K8S_DEBUG);
    lacks(m, "dumpable");
    f.self_cap_ptrace = 1; /* with the capability it is not the cause */
    m = explain(&f, DIAG_OP_READ, EPERM, -PS_EPERM);
    lacks(m, "holds capabilities");
}

static void test_ids_unknown(void **state)
{
    struct diag_facts f = base();
    const char *m;

    (void)state;
    f.ids_known = false;
    f.self_uid = 1001;
    m = explain(&f, DIAG_OP_ATTACH, EACCES, -PS_EPERM);
    has(m, "pyscope lacks CAP_SYS_PTRACE");
    has(m, "run pyscope as the target's user, or as root with CAP_SYS_PTRACE");
    lacks(m, "dumpable");
}

static void test_other_errno(void **state)
{
    struct diag_facts f = base();
    const char *m;

    (void)state;
    m = explain(&f, DIAG_OP_READ, EIO, -EIO);
    has(m, "cannot read the memory of pid 4242: ");
    has(m, strerror(EIO));
    m = explain(&f, DIAG_OP_READ, 0, -EIO);
    has(m, strerror(EIO));
}

static void test_replaces_earlier_error(void **state)
{
    struct diag_facts f = base();
    struct ps_err err;

    (void)state;
    ps_err_clear(&err);
    (void)ps_err_set(&err, -EPERM, "process_vm_readv: Operation not permitted");
    assert_int_equal(diag_explain(&f, DIAG_OP_READ, EPERM, &err), -PS_EPERM);
    assert_int_equal(err.code, -PS_EPERM);
    assert_non_null(strstr(err.msg, "not dumpable"));
    /* NULL err is allowed: the code still comes back */
    assert_int_equal(diag_explain(&f, DIAG_OP_READ, EPERM, NULL), -PS_EPERM);
}

/* ---- gather -------------------------------------------------------------------------------- */

static void test_gather_self_and_child(void **state)
{
    struct diag_facts f;
    int status;
    pid_t child;

    (void)state;
    diag_gather(getpid(), &f);
    assert_true(f.exists);
    assert_true(f.ids_known);
    assert_int_equal(f.target_uid[0], getuid());
    assert_int_equal(f.target_gid[0], getgid());
    assert_int_equal(f.tracer_pid, 0);
    assert_int_equal(f.self_pid, getpid());
    assert_int_equal(f.self_uid, getuid());
    assert_true(f.self_cap_ptrace == 0 || f.self_cap_ptrace == 1);
    if (getuid() == 0)
        assert_int_equal(f.self_cap_ptrace, 1); /* the test runs as root with full caps */
    assert_true(f.self_seccomp >= 0);
    assert_true(f.yama_scope >= -1 && f.yama_scope <= 3);
    assert_int_equal(f.descendant, 0); /* we are not our own descendant */

    child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        (void)pause();
        _exit(0);
    }
    diag_gather(child, &f);
    assert_true(f.exists);
    assert_int_equal(f.descendant, 1);
    (void)kill(child, SIGKILL);
    assert_int_equal(waitpid(child, &status, 0), child);

    diag_gather(child, &f); /* reaped: gone */
    assert_false(f.exists);
    assert_int_equal(diag_permission(child, DIAG_OP_ATTACH, EPERM, NULL), -ESRCH);
}

static void test_gather_pid1(void **state)
{
    struct diag_facts f;

    (void)state;
    if (getpid() == 1)
        skip();
    diag_gather(1, &f);
    assert_true(f.exists);
    assert_int_equal(f.descendant, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_such_process),
        cmocka_unit_test(test_exited_meanwhile),
        cmocka_unit_test(test_already_traced),
        cmocka_unit_test(test_uid_mismatch),
        cmocka_unit_test(test_uid_setuid_target),
        cmocka_unit_test(test_gid_mismatch),
        cmocka_unit_test(test_uid_fix_follows_yama),
        cmocka_unit_test(test_cap_makes_uid_irrelevant),
        cmocka_unit_test(test_yama_1),
        cmocka_unit_test(test_yama_2),
        cmocka_unit_test(test_yama_3),
        cmocka_unit_test(test_seccomp),
        cmocka_unit_test(test_not_dumpable),
        cmocka_unit_test(test_caps_exceed),
        cmocka_unit_test(test_ids_unknown),
        cmocka_unit_test(test_other_errno),
        cmocka_unit_test(test_replaces_earlier_error),
        cmocka_unit_test(test_gather_self_and_child),
        cmocka_unit_test(test_gather_pid1),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
