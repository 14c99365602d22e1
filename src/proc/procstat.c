/* SPDX-License-Identifier: MIT */
/*
 * procstat: /proc readers for the OS side of a snapshot and for permission diagnosis (see
 * procstat.h). Sits beside the memory source, not above it: it reads only kernel-generated text
 * files, never target memory, and never signals or stops anything. Invariants: every file is
 * read into a fixed buffer (PROCSTAT_TEXT_MAX or a field's own size), counts are capped by the
 * caller's array, parsers treat the text as hostile (a comm may hold ')', spaces, newlines).
 * A missing /proc entry means the process or thread is gone: -ESRCH, which callers treat as data.
 */
#include "pyscope/procstat.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---- file helpers ------------------------------------------------------------------------ */

/* "/proc/PID/NAME", or "/proc/self/NAME" for pid 0; "/proc/PID/task/TID/NAME" when tid > 0. */
static void ps_proc_path(char *buf, size_t cap, pid_t pid, pid_t tid, const char *name)
{
    if (pid == 0)
        (void)snprintf(buf, cap, "/proc/self/%s", name);
    else if (tid > 0)
        (void)snprintf(buf, cap, "/proc/%d/task/%d/%s", (int)pid, (int)tid, name);
    else
        (void)snprintf(buf, cap, "/proc/%d/%s", (int)pid, name);
}

/* Read up to cap-1 bytes of path into buf, NUL-terminate, store the length. 0 or -errno. */
static int ps_read_text(const char *path, char *buf, size_t cap, size_t *len)
{
    size_t got = 0;
    int rc = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return -errno;
    while (got + 1 < cap) {
        ssize_t r = read(fd, buf + got, cap - 1 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = -errno;
            goto out_close;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    buf[got] = '\0';
    *len = got;
out_close:
    (void)close(fd);
    return rc;
}

/* A missing /proc file means the task is gone. */
static int ps_gone_code(int rc)
{
    return rc == -ENOENT ? -ESRCH : rc;
}

static int ps_read_required(pid_t pid, pid_t tid, const char *name, char *buf, size_t cap,
                            size_t *len, struct ps_err *err)
{
    char path[96];
    int rc;

    ps_proc_path(path, sizeof(path), pid, tid, name);
    rc = ps_gone_code(ps_read_text(path, buf, cap, len));
    if (rc == -ESRCH)
        return ps_err_set(err, rc, "%s does not exist: the process or thread has exited", path);
    if (rc < 0)
        return ps_err_set(err, rc, "cannot read %s: %s", path, strerror(-rc));
    return 0;
}

/* ---- thread list --------------------------------------------------------------------------- */

static int ps_cmp_pid(const void *a, const void *b)
{
    pid_t x = *(const pid_t *)a;
    pid_t y = *(const pid_t *)b;

    return (x > y) - (x < y);
}

/* Decimal directory name to a positive pid, or 0. */
static pid_t ps_name_to_pid(const char *name)
{
    char *end = NULL;
    long v;

    if (name[0] < '0' || name[0] > '9')
        return 0;
    errno = 0;
    v = strtol(name, &end, 10);
    if (errno != 0 || *end != '\0' || v <= 0 || v > INT_MAX)
        return 0;
    return (pid_t)v;
}

int procstat_tids(pid_t pid, pid_t *tids, size_t cap, size_t *n, struct ps_err *err)
{
    char path[64];
    struct dirent *de;
    size_t count = 0;
    int rc = 0;
    DIR *dir;

    ps_proc_path(path, sizeof(path), pid, 0, "task");
    dir = opendir(path);
    if (!dir) {
        rc = ps_gone_code(-errno);
        return ps_err_set(err, rc, "cannot list the threads of pid %d (%s): %s", (int)pid, path,
                          rc == -ESRCH ? "no such process" : strerror(-rc));
    }
    while ((de = readdir(dir)) != NULL) {
        pid_t tid = ps_name_to_pid(de->d_name);
        if (tid == 0)
            continue;
        if (count == cap) {
            rc = ps_err_set(err, -PS_ELIMIT, "pid %d has more than %zu threads, pyscope's limit",
                            (int)pid, cap);
            goto out_close;
        }
        tids[count++] = tid;
    }
    qsort(tids, count, sizeof(*tids), ps_cmp_pid);
    *n = count;
out_close:
    (void)closedir(dir);
    return rc;
}

/* ---- stat ------------------------------------------------------------------------------------ */

/* Split the text after the last ')' into up to max space-separated fields (pointers into buf). */
static size_t ps_split_fields(char *buf, char **fields, size_t max)
{
    size_t n = 0;
    char *save = NULL;

    for (char *tok = strtok_r(buf, " \n", &save); tok && n < max;
         tok = strtok_r(NULL, " \n", &save))
        fields[n++] = tok;
    return n;
}

static int ps_u64(const char *s, uint64_t *out)
{
    char *end = NULL;
    unsigned long long v;

    if (s[0] < '0' || s[0] > '9')
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    *out = (uint64_t)v;
    return 0;
}

/* stat fields counted from field 3 (state) = index 0. */
enum {
    STAT_STATE = 0,
    STAT_PPID = 1,
    STAT_UTIME = 11,
    STAT_STIME = 12,
    STAT_NTHREADS = 17,
    STAT_START = 19,
    STAT_NEEDED = 20,
    STAT_STARTCODE = 23,  /* field 26; 27 endcode, 28 startstack follow */
    STAT_START_DATA = 42, /* field 45; 46-51 end_data, start_brk, arg_start .. env_end follow */
    STAT_MAX = 49,
};

/* procstat_stat.image: fields[STARTCODE..+2] and [START_DATA..+6] mixed (FNV-1a over the
 * values); 0 when they are missing or all 0 (hidden without ptrace rights). */
static uint64_t stat_image(char *const *fields, size_t n)
{
    static const size_t at[] = {STAT_STARTCODE,      STAT_STARTCODE + 1,  STAT_STARTCODE + 2,
                                STAT_START_DATA,     STAT_START_DATA + 1, STAT_START_DATA + 2,
                                STAT_START_DATA + 3, STAT_START_DATA + 4, STAT_START_DATA + 5,
                                STAT_START_DATA + 6};
    uint64_t h = 0xcbf29ce484222325ull, any = 0;

    if (n < STAT_MAX)
        return 0;
    for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
        uint64_t v = 0;

        if (ps_u64(fields[at[i]], &v))
            return 0;
        any |= v;
        for (int b = 0; b < 64; b += 8)
            h = (h ^ ((v >> b) & 0xffu)) * 0x100000001b3ull;
    }
    return any ? (h ? h : 1) : 0;
}

int procstat_parse_stat(const char *text, size_t len, struct procstat_stat *out, struct ps_err *err)
{
    char buf[PROCSTAT_TEXT_MAX];
    char *fields[STAT_MAX];
    const char *paren = NULL;
    uint64_t ppid, nthreads;
    struct procstat_stat st = {0};
    size_t rest, n;

    for (size_t i = 0; i < len && text[i] != '\0'; i++)
        if (text[i] == ')')
            paren = text + i;
    if (!paren)
        return ps_err_set(err, -PS_EFORMAT, "malformed /proc stat: no ')' after the comm field");
    rest = len - (size_t)(paren + 1 - text);
    if (rest >= sizeof(buf))
        rest = sizeof(buf) - 1;
    memcpy(buf, paren + 1, rest);
    buf[rest] = '\0';
    n = ps_split_fields(buf, fields, STAT_MAX);
    if (n < STAT_NEEDED || fields[STAT_STATE][1] != '\0')
        return ps_err_set(err, -PS_EFORMAT, "malformed /proc stat: too few fields after comm");
    if (ps_u64(fields[STAT_PPID], &ppid) || ps_u64(fields[STAT_UTIME], &st.utime_ticks) ||
        ps_u64(fields[STAT_STIME], &st.stime_ticks) || ps_u64(fields[STAT_NTHREADS], &nthreads) ||
        ps_u64(fields[STAT_START], &st.start_ticks))
        return ps_err_set(err, -PS_EFORMAT, "malformed /proc stat: a number field is not numeric");
    st.state = fields[STAT_STATE][0];
    st.ppid = (pid_t)ppid;
    st.num_threads = (long)nthreads;
    st.image = stat_image(fields, n);
    *out = st;
    return 0;
}

static int ps_read_stat(pid_t pid, pid_t tid, struct procstat_stat *out, struct ps_err *err)
{
    char text[PROCSTAT_TEXT_MAX];
    size_t len = 0;
    int rc;

    rc = ps_read_required(pid, tid, "stat", text, sizeof(text), &len, err);
    if (rc < 0)
        return rc;
    return procstat_parse_stat(text, len, out, err);
}

int procstat_stat(pid_t pid, pid_t tid, struct procstat_stat *out, struct ps_err *err)
{
    return ps_read_stat(pid, tid, out, err);
}

int procstat_state(pid_t pid, pid_t tid, char *state, struct ps_err *err)
{
    struct procstat_stat st;
    int rc = ps_read_stat(pid, tid, &st, err);

    if (rc == 0)
        *state = st.state;
    return rc;
}

/* ---- per-thread OS view ---------------------------------------------------------------------- */

long procstat_parse_syscall(const char *text, size_t len)
{
    char buf[32];
    char *end = NULL;
    size_t n = len < sizeof(buf) - 1 ? len : sizeof(buf) - 1;
    long v;

    memcpy(buf, text, n);
    buf[n] = '\0';
    if (strncmp(buf, "running", 7) == 0)
        return -1;
    errno = 0;
    v = strtol(buf, &end, 10);
    if (errno != 0 || end == buf || (*end != '\0' && *end != ' ' && *end != '\n'))
        return -2;
    return v < -1 ? -2 : v;
}

bool procstat_parse_syscall_arg0(const char *text, size_t len, uint64_t *arg0)
{
    char buf[64];
    char *end = NULL, *p;
    size_t n = len < sizeof(buf) - 1 ? len : sizeof(buf) - 1;
    unsigned long long v;

    memcpy(buf, text, n);
    buf[n] = '\0';
    p = strchr(buf, ' ');
    if (!p || strncmp(p + 1, "0x", 2) != 0)
        return false;
    errno = 0;
    v = strtoull(p + 1, &end, 16);
    if (errno != 0 || end == p + 1 || (*end != '\0' && *end != ' ' && *end != '\n'))
        return false;
    *arg0 = v;
    return true;
}

/* Copy wchan into out ("" when unreadable: it is a hint, not required). */
/* One line of an optional /proc file (wchan, comm) without its newline; "" when unreadable. */
static void ps_read_line(pid_t pid, pid_t tid, const char *name, char *out, size_t cap)
{
    char path[96];
    size_t len = 0;

    ps_proc_path(path, sizeof(path), pid, tid, name);
    if (ps_read_text(path, out, cap, &len) < 0)
        out[0] = '\0';
    out[strcspn(out, "\n")] = '\0';
}

static long ps_read_syscall(pid_t pid, pid_t tid, uint64_t *arg0)
{
    char path[96];
    char text[256];
    size_t len = 0;

    *arg0 = 0;
    ps_proc_path(path, sizeof(path), pid, tid, "syscall");
    if (ps_read_text(path, text, sizeof(text), &len) < 0)
        return -2;
    if (!procstat_parse_syscall_arg0(text, len, arg0))
        *arg0 = 0;
    return procstat_parse_syscall(text, len);
}

int procstat_thread_os(pid_t pid, pid_t tid, struct snap_os *out, struct ps_err *err)
{
    struct procstat_stat st;
    struct snap_os os;
    int rc;

    rc = ps_read_stat(pid, tid, &st, err);
    if (rc < 0)
        return rc;
    memset(&os, 0, sizeof(os));
    os.state = st.state;
    os.utime_ticks = st.utime_ticks;
    os.stime_ticks = st.stime_ticks;
    ps_read_line(pid, tid, "wchan", os.wchan, sizeof(os.wchan));
    ps_read_line(pid, tid, "comm", os.comm, sizeof(os.comm));
    os.syscall = ps_read_syscall(pid, tid, &os.syscall_arg0);
    *out = os;
    return 0;
}

/* ---- status ---------------------------------------------------------------------------------- */

/* Parse "a b c d" (decimal) into up to 4 unsigned values; returns how many were read. */
static int ps_parse_ids(const char *s, unsigned long ids[4])
{
    int n = 0;
    char *end = NULL;

    while (n < 4) {
        errno = 0;
        ids[n] = strtoul(s, &end, 10);
        if (end == s || errno != 0)
            break;
        n++;
        s = end;
    }
    return n;
}

static void ps_status_ids(const char *val, bool is_uid, struct procstat_status *out, int *have)
{
    unsigned long ids[4];

    if (ps_parse_ids(val, ids) != 4)
        return;
    for (int i = 0; i < 4; i++) {
        if (is_uid)
            out->uid[i] = (uid_t)ids[i];
        else
            out->gid[i] = (gid_t)ids[i];
    }
    (*have)++;
}

/* "Groups:" values; a line cut short by the parser's buffer is unknown, never a guess. */
static void ps_status_groups(const char *val, bool cut, struct procstat_status *out)
{
    char *end = NULL;
    int n = 0;

    out->ngroups = -1;
    if (cut)
        return;
    for (;;) {
        unsigned long g;
        val += strspn(val, " \t");
        if (*val == '\0')
            break;
        errno = 0;
        g = strtoul(val, &end, 10);
        if (end == val || errno != 0 || g > UINT32_MAX || n == PROCSTAT_GROUPS_MAX)
            return;
        out->groups[n++] = (gid_t)g;
        val = end;
    }
    out->ngroups = n;
}

/* "NSpid:" values, outermost (our namespace) first: the count and the last one. */
static void ps_status_nspid(const char *val, struct procstat_status *out)
{
    char *end = NULL;

    for (;;) {
        long v;
        errno = 0;
        v = strtol(val, &end, 10);
        if (end == val || errno != 0 || v <= 0 || v > INT_MAX)
            break;
        out->nspid_levels++;
        out->nspid_inner = (pid_t)v;
        val = end;
    }
}

static void ps_status_line(const char *key, const char *val, bool cut, struct procstat_status *out,
                           int *ids_have)
{
    char *end = NULL;

    if (strcmp(key, "State") == 0 && val[0] != '\0')
        out->state = val[0];
    else if (strcmp(key, "PPid") == 0)
        out->ppid = (pid_t)strtol(val, NULL, 10);
    else if (strcmp(key, "TracerPid") == 0)
        out->tracer_pid = (pid_t)strtol(val, NULL, 10);
    else if (strcmp(key, "Uid") == 0 || strcmp(key, "Gid") == 0)
        ps_status_ids(val, key[0] == 'U', out, ids_have);
    else if (strcmp(key, "Groups") == 0)
        ps_status_groups(val, cut, out);
    else if (strcmp(key, "NSpid") == 0 && !cut)
        ps_status_nspid(val, out);
    else if (strcmp(key, "Seccomp") == 0)
        out->seccomp = (int)strtol(val, NULL, 10);
    else if (strcmp(key, "CapEff") == 0) {
        out->cap_eff = strtoull(val, &end, 16);
        out->cap_eff_known = end != val;
    } else if (strcmp(key, "CapPrm") == 0) {
        out->cap_prm = strtoull(val, &end, 16);
        out->cap_prm_known = end != val;
    }
}

void procstat_parse_status(const char *text, size_t len, struct procstat_status *out)
{
    char line[1024];
    size_t i = 0;
    int ids_have = 0;

    memset(out, 0, sizeof(*out));
    out->ngroups = -1;
    out->state = '?';
    out->ppid = -1;
    out->tracer_pid = -1;
    out->seccomp = -1;
    while (i < len && text[i] != '\0') {
        size_t j = 0;
        bool cut = false;
        char *colon;
        for (; i < len && text[i] != '\0' && text[i] != '\n'; i++) {
            if (j + 1 < sizeof(line))
                line[j++] = text[i];
            else
                cut = true;
        }
        line[j] = '\0';
        i++;
        colon = strchr(line, ':');
        if (!colon)
            continue;
        *colon = '\0';
        ps_status_line(line, colon + 1 + strspn(colon + 1, " \t"), cut, out, &ids_have);
    }
    out->ids_known = ids_have == 2;
}

int procstat_read_status(pid_t pid, struct procstat_status *out, struct ps_err *err)
{
    return procstat_read_task_status(pid, 0, out, err);
}

int procstat_read_task_status(pid_t pid, pid_t tid, struct procstat_status *out, struct ps_err *err)
{
    char text[PROCSTAT_TEXT_MAX];
    size_t len = 0;
    int rc;

    rc = ps_read_required(pid, tid, "status", text, sizeof(text), &len, err);
    if (rc < 0)
        return rc;
    procstat_parse_status(text, len, out);
    return 0;
}

/* ---- process info ---------------------------------------------------------------------------- */

int procstat_comm(pid_t pid, char *out, size_t cap, struct ps_err *err)
{
    char text[PROCSTAT_COMM_MAX];
    size_t len = 0;
    int rc;

    if (cap == 0)
        return ps_err_set(err, -EINVAL, "procstat_comm: empty output buffer");
    rc = ps_read_required(pid, 0, "comm", text, sizeof(text), &len, err);
    if (rc < 0)
        return rc;
    text[strcspn(text, "\n")] = '\0';
    (void)snprintf(out, cap, "%s", text);
    return 0;
}

/* cmdline: NUL-separated arguments; NULs become spaces, trailing separators are dropped. */
static void ps_read_cmdline(pid_t pid, char *out, size_t cap)
{
    char path[64];
    size_t len = 0;

    ps_proc_path(path, sizeof(path), pid, 0, "cmdline");
    if (ps_read_text(path, out, cap, &len) < 0)
        len = 0;
    while (len > 0 && (out[len - 1] == '\0' || out[len - 1] == ' '))
        len--;
    for (size_t i = 0; i < len; i++)
        if (out[i] == '\0' || out[i] == '\n')
            out[i] = ' ';
    out[len] = '\0';
}

static void ps_read_exe(pid_t pid, char *out, size_t cap)
{
    char path[64];
    ssize_t n;

    ps_proc_path(path, sizeof(path), pid, 0, "exe");
    n = readlink(path, out, cap - 1);
    out[n < 0 ? 0 : n] = '\0';
}

static uint64_t ps_read_rss(pid_t pid)
{
    char path[64];
    char text[256];
    char *end = NULL;
    size_t len = 0;
    unsigned long long resident;
    long page = sysconf(_SC_PAGESIZE);

    ps_proc_path(path, sizeof(path), pid, 0, "statm");
    if (ps_read_text(path, text, sizeof(text), &len) < 0 || page <= 0)
        return 0;
    (void)strtoull(text, &end, 10); /* size; the second field is the resident set */
    if (end == text || *end != ' ')
        return 0;
    resident = strtoull(end + 1, NULL, 10);
    return (uint64_t)resident * (uint64_t)page;
}

int procstat_proc(pid_t pid, struct procstat_proc *out, struct ps_err *err)
{
    struct procstat_stat st = {0};
    long hz = sysconf(_SC_CLK_TCK);
    int rc;

    rc = ps_read_stat(pid, 0, &st, err);
    if (rc < 0)
        return rc;
    rc = procstat_read_status(pid, &out->status, err);
    if (rc < 0)
        return rc;
    if (hz <= 0)
        hz = 100;
    out->cpu_user_s = (double)st.utime_ticks / (double)hz;
    out->cpu_system_s = (double)st.stime_ticks / (double)hz;
    out->rss_bytes = ps_read_rss(pid);
    if (procstat_comm(pid, out->comm, sizeof(out->comm), NULL) < 0)
        out->comm[0] = '\0';
    ps_read_cmdline(pid, out->cmdline, sizeof(out->cmdline));
    ps_read_exe(pid, out->exe, sizeof(out->exe));
    return 0;
}

/* ---- activity -------------------------------------------------------------------------------- */

enum ps_sys_kind {
    SYS_KIND_BLOCK = 0, /* "blocked in NAME" */
    SYS_KIND_SLEEP,     /* "sleeping (WCHAN)" */
    SYS_KIND_FUTEX,     /* "waiting on a futex" */
};

struct ps_sysname {
    long nr;
    const char *name;
    enum ps_sys_kind kind;
};

/*
 * The calls a waiting thread is usually in. Numbers come from the build host's <sys/syscall.h>,
 * which matches the target's as both run on the same kernel (32-bit targets are not supported).
 * Calls absent on some architectures (poll, select, epoll_wait on arm64) are guarded.
 */
static const struct ps_sysname ps_sysnames[] = {
    {SYS_read, "read", SYS_KIND_BLOCK},
    {SYS_write, "write", SYS_KIND_BLOCK},
    {SYS_readv, "readv", SYS_KIND_BLOCK},
    {SYS_pread64, "pread64", SYS_KIND_BLOCK},
    {SYS_recvfrom, "recvfrom", SYS_KIND_BLOCK},
    {SYS_recvmsg, "recvmsg", SYS_KIND_BLOCK},
    {SYS_recvmmsg, "recvmmsg", SYS_KIND_BLOCK},
    {SYS_sendto, "sendto", SYS_KIND_BLOCK},
    {SYS_sendmsg, "sendmsg", SYS_KIND_BLOCK},
    {SYS_accept, "accept", SYS_KIND_BLOCK},
    {SYS_accept4, "accept4", SYS_KIND_BLOCK},
    {SYS_connect, "connect", SYS_KIND_BLOCK},
    {SYS_ppoll, "ppoll", SYS_KIND_BLOCK},
    {SYS_pselect6, "pselect6", SYS_KIND_BLOCK},
    {SYS_epoll_pwait, "epoll_pwait", SYS_KIND_BLOCK},
    {SYS_wait4, "wait4", SYS_KIND_BLOCK},
    {SYS_waitid, "waitid", SYS_KIND_BLOCK},
    {SYS_flock, "flock", SYS_KIND_BLOCK},
    {SYS_fsync, "fsync", SYS_KIND_BLOCK},
    {SYS_rt_sigtimedwait, "rt_sigtimedwait", SYS_KIND_BLOCK},
    {SYS_rt_sigsuspend, "rt_sigsuspend", SYS_KIND_BLOCK},
    {SYS_nanosleep, "nanosleep", SYS_KIND_SLEEP},
    {SYS_clock_nanosleep, "clock_nanosleep", SYS_KIND_SLEEP},
    {SYS_futex, "futex", SYS_KIND_FUTEX},
#ifdef SYS_poll
    {SYS_poll, "poll", SYS_KIND_BLOCK},
#endif
#ifdef SYS_select
    {SYS_select, "select", SYS_KIND_BLOCK},
#endif
#ifdef SYS_epoll_wait
    {SYS_epoll_wait, "epoll_wait", SYS_KIND_BLOCK},
#endif
#ifdef SYS_epoll_pwait2
    {SYS_epoll_pwait2, "epoll_pwait2", SYS_KIND_BLOCK},
#endif
#ifdef SYS_pause
    {SYS_pause, "pause", SYS_KIND_SLEEP},
#endif
#ifdef SYS_futex_waitv
    {SYS_futex_waitv, "futex_waitv", SYS_KIND_FUTEX},
#endif
};

static const struct ps_sysname *ps_sys_find(long nr)
{
    for (size_t i = 0; i < sizeof(ps_sysnames) / sizeof(ps_sysnames[0]); i++)
        if (ps_sysnames[i].nr == nr)
            return &ps_sysnames[i];
    return NULL;
}

const char *procstat_syscall_name(long nr)
{
    const struct ps_sysname *s = ps_sys_find(nr);

    return s ? s->name : NULL;
}

static bool ps_wchan_known(const struct snap_os *os)
{
    return os->wchan[0] != '\0' && strcmp(os->wchan, "0") != 0;
}

/* A thread blocked in the kernel (S or D): name the wait from the syscall, else from wchan. */
static void ps_blocked_activity(const struct snap_os *os, char *buf, size_t cap)
{
    const struct ps_sysname *s = ps_sys_find(os->syscall);
    bool wchan = ps_wchan_known(os);
    bool futex = s ? s->kind == SYS_KIND_FUTEX : wchan && strstr(os->wchan, "futex") != NULL;
    bool sleep = s ? s->kind == SYS_KIND_SLEEP : os->syscall < 0; /* no syscall known */

    if (futex)
        (void)snprintf(buf, cap, "waiting on a futex");
    else if (sleep && wchan)
        (void)snprintf(buf, cap, "sleeping (%s)", os->wchan);
    else if (sleep)
        (void)snprintf(buf, cap, "sleeping");
    else if (s)
        (void)snprintf(buf, cap, "blocked in %s", s->name);
    else
        (void)snprintf(buf, cap, "blocked in syscall %ld", os->syscall);
}

const char *procstat_activity(const struct snap_os *os, char *buf, size_t cap)
{
    if (cap == 0)
        return buf;
    switch (os->state) {
    case 'R': (void)snprintf(buf, cap, "running"); break;
    case 'T': (void)snprintf(buf, cap, "stopped"); break;
    case 't': (void)snprintf(buf, cap, "stopped by a tracer"); break;
    case 'Z': (void)snprintf(buf, cap, "exited (zombie)"); break;
    case 'X': (void)snprintf(buf, cap, "exited"); break;
    case 'S':
    case 'D':
    case 'I': ps_blocked_activity(os, buf, cap); break;
    default: (void)snprintf(buf, cap, "unknown"); break;
    }
    if (os->state == 'D') {
        size_t used = strlen(buf);
        (void)snprintf(buf + used, cap - used, " (uninterruptible)");
    }
    return buf;
}
