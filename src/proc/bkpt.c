/* SPDX-License-Identifier: MIT */
/*
 * bkpt: hardware execute breakpoints (see bkpt.h). Beside target.c in the process-control
 * layer: it never reads or writes target memory except to decode the entry instruction, and it
 * never stops or resumes threads (the caller owns ptrace stops).
 *
 * Invariants: the target's code is never written; perf events are opened with inherit=0 (fork
 * children and new threads get nothing; new threads are added on their clone stop) and
 * remove_on_exec=1; every fd or debug register we set is recorded in the thread table so
 * bkpt_clear can undo it. DR7 read back from a new thread can be stale (CPYTHON.md 5.3), so
 * arming is tracked here, never read back.
 */
#include "pyscope/bkpt.h"

#include <capstone/capstone.h>
#include <errno.h>
#include <inttypes.h>
#include <linux/hw_breakpoint.h>
#include <linux/perf_event.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <time.h>
#include <unistd.h>

#include "pyscope/evloop.h"
#include "pyscope/target.h"

#ifndef TRAP_PERF
#define TRAP_PERF 6 /* asm-generic/siginfo.h: perf event with sigtrap=1 */
#endif
#ifndef TRAP_HWBKPT
#define TRAP_HWBKPT 4
#endif
/* siginfo_t::si_perf_data (asm-generic/siginfo.h _sigfault._perf._data): after si_addr. glibc
 * 2.36 does not name it. */
#define BKPT_SI_PERF_DATA_OFF 24
/* DR7: local enable of DR0, execute, length 1 (bits 16-19 zero). */
#define BKPT_DR7_L0 1UL
/* Calls timed by bkpt_count_cost_us (~2 ms where a hit costs 10 us). */
#define BKPT_CALIB_CALLS   200
#define BKPT_CALIB_BATCHES 5

struct bkpt_thread {
    pid_t tid;  /* 0 = free */
    int sig_fd; /* perf stopping event, -1 none */
    int cnt_fd; /* perf counting event, -1 none */
    bool dr_set;
    bool pinned; /* perf: both events stay enabled (bkpt_pin) */
};

struct bkpt {
    pid_t pid;
    uint64_t addr;
    enum bkpt_mech mech;
    bool armed;
    bool counting;       /* counting events enabled */
    bool count_missing;  /* a followed thread has no counting event: counts are low */
    uint64_t gone_count; /* hits counted by threads already dropped */
    size_t used;
    struct bkpt_thread t[TARGET_MAX_THREADS];
};

static long bkpt_perf_open(struct perf_event_attr *a, pid_t tid)
{
    return syscall(SYS_perf_event_open, a, tid, -1, -1, PERF_FLAG_FD_CLOEXEC);
}

static void bkpt_attr(const struct bkpt *b, pid_t tid, bool stopping, struct perf_event_attr *a)
{
    memset(a, 0, sizeof(*a));
    a->type = PERF_TYPE_BREAKPOINT;
    a->size = sizeof(*a);
    a->bp_type = HW_BREAKPOINT_X;
    a->bp_addr = b->addr;
    a->bp_len = sizeof(long); /* x86 execute breakpoints take sizeof(long) */
    a->exclude_kernel = 1;
    a->exclude_hv = 1;
    a->remove_on_exec = 1;
    a->disabled = !b->counting; /* the counting event; the stopping one is set below */
    if (stopping) {
        a->sample_period = 1;
        a->sigtrap = 1;
        a->sig_data = (uint64_t)tid;
        a->disabled = !b->armed;
    }
}

int bkpt_check_entry(struct memsrc *src, uint64_t addr, struct ps_err *err)
{
    uint8_t code[BKPT_ENTRY_BYTES];
    int rc = memsrc_read(src, addr, code, sizeof(code), err);

    return rc < 0 ? rc : bkpt_check_code(code, addr, err);
}

int bkpt_check_code(const uint8_t *code, uint64_t addr, struct ps_err *err)
{
    static const char *const ok[] = {"endbr64", "push", "sub", "mov"};
    csh cs;
    cs_insn *insn = NULL;
    int rc;

    if (cs_open(CS_ARCH_X86, CS_MODE_64, &cs) != CS_ERR_OK)
        return ps_err_set(err, -ENOMEM, "capstone could not be initialised");
    rc = -PS_ECORRUPT;
    if (cs_disasm(cs, code, BKPT_ENTRY_BYTES, addr, 1, &insn) == 1) {
        for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
            if (strcmp(insn->mnemonic, ok[i]) == 0 &&
                (strcmp(ok[i], "sub") != 0 || strncmp(insn->op_str, "rsp", 3) == 0))
                rc = 0;
        if (rc < 0)
            (void)ps_err_set(err, rc,
                             "the breakpoint address 0x%" PRIx64 " starts with `%s %s`, not a "
                             "function entry: the symbol table does not match the code, so "
                             "pyscope will not place a breakpoint there",
                             addr, insn->mnemonic, insn->op_str);
        cs_free(insn, 1);
    } else {
        (void)ps_err_set(err, rc,
                         "the breakpoint address 0x%" PRIx64 " does not decode as an x86-64 "
                         "instruction; pyscope will not place a breakpoint there",
                         addr);
    }
    cs_close(&cs);
    return rc;
}

int bkpt_new(pid_t pid, pid_t probe_tid, uint64_t addr, enum bkpt_mech want, struct bkpt **out,
             struct ps_err *err)
{
    struct bkpt *b = calloc(1, sizeof(*b));
    struct perf_event_attr a;
    long fd;

    if (!b)
        return ps_err_set(err, -ENOMEM, "out of memory for the breakpoint table");
    b->pid = pid;
    b->addr = addr;
    b->mech = BKPT_DEBUGREG;
    if (want != BKPT_DEBUGREG) {
        bkpt_attr(b, probe_tid, true, &a);
        a.disabled = 1;
        fd = bkpt_perf_open(&a, probe_tid);
        if (fd >= 0) {
            (void)close((int)fd);
            b->mech = BKPT_PERF;
        } else if (want == BKPT_PERF) {
            int e = errno;
            free(b);
            return ps_err_set(err, -ENODEV,
                              "perf_event_open of a sigtrap breakpoint was refused (%s); check "
                              "kernel.perf_event_paranoid (<= 2), CAP_PERFMON and seccomp",
                              strerror(e));
        }
    }
    *out = b;
    return 0;
}

enum bkpt_mech bkpt_mechanism(const struct bkpt *b)
{
    return b->mech;
}

bool bkpt_armed(const struct bkpt *b)
{
    return b->armed;
}

size_t bkpt_nthreads(const struct bkpt *b)
{
    size_t n = 0;

    for (size_t i = 0; i < b->used; i++)
        n += b->t[i].tid != 0;
    return n;
}

static struct bkpt_thread *bkpt_find(struct bkpt *b, pid_t tid)
{
    for (size_t i = 0; i < b->used; i++)
        if (b->t[i].tid == tid)
            return &b->t[i];
    return NULL;
}

static long bkpt_poke_dr(pid_t tid, int reg, unsigned long value)
{
    long off = (long)offsetof(struct user, u_debugreg) + reg * (long)sizeof(long);

    if (syscall(SYS_ptrace, (long)PTRACE_POKEUSER, (long)tid, off, (long)value) == 0)
        return 0;
    return -errno;
}

/* Set (on) or clear DR0/DR7 in one stopped thread. Order: DR0 before enabling, DR7 first off. */
static long bkpt_dr_apply(struct bkpt *b, struct bkpt_thread *t, bool on)
{
    long r;

    if (on) {
        r = bkpt_poke_dr(t->tid, 0, (unsigned long)b->addr);
        if (r == 0)
            r = bkpt_poke_dr(t->tid, 7, BKPT_DR7_L0);
        t->dr_set = t->dr_set || r == 0;
        return r;
    }
    if (!t->dr_set)
        return 0;
    r = bkpt_poke_dr(t->tid, 7, 0);
    if (r == 0)
        (void)bkpt_poke_dr(t->tid, 0, 0);
    if (r == 0 || r == -ESRCH)
        t->dr_set = false;
    return r;
}

static long bkpt_perf_add(struct bkpt *b, struct bkpt_thread *t)
{
    struct perf_event_attr a;
    long fd;

    bkpt_attr(b, t->tid, true, &a);
    fd = bkpt_perf_open(&a, t->tid);
    if (fd < 0)
        return -errno;
    t->sig_fd = (int)fd;
    bkpt_attr(b, t->tid, false, &a);
    fd = bkpt_perf_open(&a, t->tid);
    t->cnt_fd = fd < 0 ? -1 : (int)fd; /* counting is best effort */
    b->count_missing = b->count_missing || fd < 0;
    return 0;
}

int bkpt_add_thread(struct bkpt *b, pid_t tid, struct ps_err *err)
{
    struct bkpt_thread *t = bkpt_find(b, tid);
    long r;

    if (t)
        return 0;
    t = bkpt_find(b, 0);
    if (!t && b->used == TARGET_MAX_THREADS)
        return ps_err_set(err, -PS_ELIMIT, "more than %d threads to arm", TARGET_MAX_THREADS);
    if (!t)
        t = &b->t[b->used++];
    *t = (struct bkpt_thread){.tid = tid, .sig_fd = -1, .cnt_fd = -1};
    if (b->mech == BKPT_PERF)
        r = bkpt_perf_add(b, t);
    else
        r = b->armed ? bkpt_dr_apply(b, t, true) : 0;
    if (r == 0)
        return 0;
    t->tid = 0;
    return ps_err_set(err, (int)r, "arming the breakpoint in thread %d failed: %s", (int)tid,
                      strerror((int)-r));
}

static uint64_t bkpt_read_count(int fd)
{
    uint64_t v = 0;

    if (fd < 0 || read(fd, &v, sizeof(v)) != (ssize_t)sizeof(v))
        return 0;
    return v;
}

static void bkpt_close_thread(struct bkpt *b, struct bkpt_thread *t)
{
    if (t->sig_fd >= 0)
        (void)close(t->sig_fd);
    if (t->cnt_fd >= 0) {
        b->gone_count += bkpt_read_count(t->cnt_fd);
        (void)close(t->cnt_fd);
    }
    t->sig_fd = -1;
    t->cnt_fd = -1;
}

void bkpt_drop_thread(struct bkpt *b, pid_t tid)
{
    struct bkpt_thread *t = tid ? bkpt_find(b, tid) : NULL;

    if (!t)
        return;
    bkpt_close_thread(b, t);
    t->tid = 0;
}

static int bkpt_tid_cmp(const void *a, const void *b)
{
    pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;

    return (x > y) - (x < y);
}

void bkpt_sync(struct bkpt *b, const pid_t *live, size_t n)
{
    for (size_t i = 0; i < b->used; i++)
        if (b->t[i].tid != 0 && !bsearch(&b->t[i].tid, live, n, sizeof(*live), bkpt_tid_cmp))
            bkpt_drop_thread(b, b->t[i].tid);
}

int bkpt_arm(struct bkpt *b, bool on, struct ps_err *err)
{
    int rc = 0;

    for (size_t i = 0; i < b->used; i++) {
        struct bkpt_thread *t = &b->t[i];
        long r = 0;
        if (t->tid == 0 || t->pinned)
            continue;
        if (b->mech == BKPT_PERF && t->sig_fd >= 0)
            r = ioctl(t->sig_fd, on ? PERF_EVENT_IOC_ENABLE : PERF_EVENT_IOC_DISABLE, 0) == 0
                    ? 0
                    : -errno;
        else if (b->mech == BKPT_DEBUGREG)
            r = bkpt_dr_apply(b, t, on);
        if (r < 0 && r != -ESRCH && rc == 0)
            rc = ps_err_set(err, (int)r, "%s the breakpoint in thread %d failed: %s",
                            on ? "arming" : "disarming", (int)t->tid, strerror((int)-r));
    }
    b->armed = on;
    return rc;
}

void bkpt_count_enable(struct bkpt *b, bool on)
{
    for (size_t i = 0; i < b->used; i++)
        if (b->t[i].tid != 0 && !b->t[i].pinned && b->t[i].cnt_fd >= 0)
            (void)ioctl(b->t[i].cnt_fd, on ? PERF_EVENT_IOC_ENABLE : PERF_EVENT_IOC_DISABLE, 0);
    b->counting = on;
}

static void bkpt_fd_enable(int fd, bool on)
{
    if (fd >= 0)
        (void)ioctl(fd, on ? PERF_EVENT_IOC_ENABLE : PERF_EVENT_IOC_DISABLE, 0);
}

int bkpt_pin(struct bkpt *b, pid_t tid, bool on)
{
    struct bkpt_thread *t = tid ? bkpt_find(b, tid) : NULL;

    if (b->mech != BKPT_PERF)
        return -ENOTSUP;
    if (!t)
        return -ENOENT;
    if (t->pinned == on)
        return 0;
    t->pinned = on;
    bkpt_fd_enable(t->sig_fd, on || b->armed);
    bkpt_fd_enable(t->cnt_fd, on || b->counting);
    return 0;
}

bool bkpt_pinned(const struct bkpt *b, pid_t tid)
{
    for (size_t i = 0; tid && i < b->used; i++)
        if (b->t[i].tid == tid)
            return b->t[i].pinned;
    return false;
}

bool bkpt_known(const struct bkpt *b, pid_t tid)
{
    for (size_t i = 0; tid && i < b->used; i++)
        if (b->t[i].tid == tid)
            return true;
    return false;
}

uint64_t bkpt_thread_count(struct bkpt *b, pid_t tid)
{
    struct bkpt_thread *t = tid ? bkpt_find(b, tid) : NULL;

    return t ? bkpt_read_count(t->cnt_fd) : 0;
}

bool bkpt_is_hit(const struct bkpt *b, pid_t tid, const siginfo_t *si)
{
    uint64_t data = 0;

    if (si->si_signo != SIGTRAP)
        return false;
    if (b->mech == BKPT_PERF) {
        memcpy(&data, (const char *)si + BKPT_SI_PERF_DATA_OFF, sizeof(data));
        return si->si_code == TRAP_PERF && data == (uint64_t)tid;
    }
    return si->si_code == TRAP_HWBKPT && (uint64_t)(uintptr_t)si->si_addr == b->addr;
}

uint64_t bkpt_count(struct bkpt *b, bool *exact)
{
    uint64_t n = b->gone_count;

    *exact = b->mech == BKPT_PERF && !b->count_missing;
    for (size_t i = 0; i < b->used; i++)
        if (b->t[i].tid != 0)
            n += bkpt_read_count(b->t[i].cnt_fd);
    return n;
}

/* The function the calibration breaks on: not inlined, not folded. */
__attribute__((noinline)) static int bkpt_calib_fn(int x)
{
    __asm__ volatile("" : "+r"(x));
    return x + 1;
}

/* Microseconds per call of fn over `calls` calls. */
static double bkpt_time_calls(int (*volatile fn)(int), int calls)
{
    volatile int sink = 0;
    double t0 = evloop_now();

    for (int i = 0; i < calls; i++)
        sink = sink + fn(i);
    return (evloop_now() - t0) * 1e6 / (double)calls;
}

/* Calls of the probe that bkpt_fires counts. */
#define BKPT_PROBE_CALLS 16

/* A perf counting breakpoint on bkpt_calib_fn in this thread: the fd, or -errno. */
static long bkpt_calib_open(void)
{
    struct perf_event_attr a;
    long fd;

    memset(&a, 0, sizeof(a));
    a.type = PERF_TYPE_BREAKPOINT;
    a.size = sizeof(a);
    a.bp_type = HW_BREAKPOINT_X;
    a.bp_addr = (uint64_t)(uintptr_t)bkpt_calib_fn;
    a.bp_len = sizeof(long);
    a.exclude_kernel = 1;
    a.exclude_hv = 1;
    fd = syscall(SYS_perf_event_open, &a, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int bkpt_fires(void)
{
    long fd = bkpt_calib_open();
    uint64_t n;

    if (fd < 0)
        return (int)fd;
    (void)bkpt_time_calls(bkpt_calib_fn, BKPT_PROBE_CALLS);
    n = bkpt_read_count((int)fd);
    (void)close((int)fd);
    return n > 0;
}

double bkpt_count_cost_us(void)
{
    double best = -1.0;
    long fd = bkpt_calib_open();

    if (fd < 0)
        return -1.0;
    /* the fastest batch: a batch during which pyscope was preempted measures the machine's
     * load, not the exception */
    for (int b = 0; b < BKPT_CALIB_BATCHES; b++) {
        double us = bkpt_time_calls(bkpt_calib_fn, BKPT_CALIB_CALLS / BKPT_CALIB_BATCHES);
        if (best < 0 || us < best)
            best = us;
    }
    if (bkpt_read_count((int)fd) <
        (uint64_t)(BKPT_CALIB_CALLS / BKPT_CALIB_BATCHES) * BKPT_CALIB_BATCHES)
        best = -1.0; /* the breakpoint did not count: no estimate */
    (void)close((int)fd);
    return best;
}

/* bkpt_clear without the warn_unused_result contract, for bkpt_free. */
static int bkpt_do_clear(struct bkpt *b, struct ps_err *err)
{
    int rc = 0;

    for (size_t i = 0; i < b->used; i++) {
        struct bkpt_thread *t = &b->t[i];
        long r;
        if (t->tid == 0)
            continue;
        if (b->mech == BKPT_PERF) {
            bkpt_close_thread(b, t);
            continue;
        }
        r = bkpt_dr_apply(b, t, false);
        if (r < 0 && r != -ESRCH && rc == 0)
            rc = ps_err_set(err, (int)r, "clearing the debug registers of thread %d failed: %s",
                            (int)t->tid, strerror((int)-r));
    }
    b->armed = false;
    return rc;
}

int bkpt_clear(struct bkpt *b, struct ps_err *err)
{
    return bkpt_do_clear(b, err);
}

int bkpt_clear_thread(struct bkpt *b, pid_t tid, struct ps_err *err)
{
    struct bkpt_thread *t = tid ? bkpt_find(b, tid) : NULL;
    long r;

    if (!t)
        return 0;
    if (b->mech == BKPT_PERF) {
        bkpt_close_thread(b, t);
        return 0;
    }
    r = bkpt_dr_apply(b, t, false);
    if (r < 0 && r != -ESRCH)
        return ps_err_set(err, (int)r, "clearing the debug registers of thread %d failed: %s",
                          (int)tid, strerror((int)-r));
    return 0;
}

void bkpt_disarm_signal_safe(struct bkpt *b, pid_t tid)
{
    if (!b)
        return;
    if (b->mech == BKPT_DEBUGREG) {
        if (tid != 0)
            (void)bkpt_poke_dr(tid, 7, 0);
        return;
    }
    if (tid != 0)
        return;
    for (size_t i = 0; i < b->used && i < TARGET_MAX_THREADS; i++) {
        int sfd = b->t[i].sig_fd, cfd = b->t[i].cnt_fd;
        b->t[i].sig_fd = -1;
        b->t[i].cnt_fd = -1;
        if (sfd >= 0)
            (void)close(sfd);
        if (cfd >= 0)
            (void)close(cfd);
    }
}

int bkpt_rescue(pid_t pid, struct ps_err *err)
{
    static pid_t tids[TARGET_MAX_THREADS];
    size_t n = 0;
    int rc = target_seize_all(pid, &n, err);

    if (rc < 0)
        return rc;
    n = target_tids(tids, TARGET_MAX_THREADS);
    for (size_t i = 0; i < n; i++)
        (void)bkpt_poke_dr(tids[i], 7, 0);
    return target_detach_all(err);
}

void bkpt_free(struct bkpt *b)
{
    struct ps_err ignored = {0};

    if (!b)
        return;
    (void)bkpt_do_clear(b, &ignored);
    free(b);
}
