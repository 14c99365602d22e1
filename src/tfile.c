/* SPDX-License-Identifier: MIT */
/*
 * Files a target names (see tfile.h): the one place where such names become file descriptors.
 * Sits beside procstat: it reads the file system, never target memory.
 *
 * Why a helper thread for tfile_open_as(): the kernel checks a path's permissions (every
 * directory searched, ACLs, the file's mode) against the opening thread's fsuid, fsgid and
 * supplementary groups, which is exactly "could the target read it". Comparing a stat() against
 * the target's ids by hand would miss the directories on the way (a 0644 file under a 0700
 * /root). Linux credentials are per thread, but glibc's setgroups() changes every thread of
 * the process (its set-id broadcast), and a thread left with the wrong fsuid would lose root's
 * rights for later ptrace or /proc work. So the switch is made with raw per-thread syscalls in
 * a thread created for one open, with every signal blocked, and that thread exits: no other
 * thread ever runs with the target's credentials or stops having its own. A credential change
 * also clears the process's dumpable flag (kernel commit_creds); it is put back afterwards.
 *
 * Invariants: every open is O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC and the fd is returned
 * only after fstat() says it is a regular file.
 */
#include "pyscope/tfile.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define TFILE_FLAGS (O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)

/* What a non-regular file is, for the error sentence. */
static const char *tfile_kind(mode_t m)
{
    if (S_ISFIFO(m))
        return "a FIFO";
    if (S_ISCHR(m))
        return "a character device";
    if (S_ISBLK(m))
        return "a block device";
    if (S_ISSOCK(m))
        return "a socket";
    if (S_ISDIR(m))
        return "a directory";
    return "not a plain file";
}

/* fd itself when it is a regular file; else fd is closed and -PS_EFORMAT returned. */
static int tfile_keep_regular(int fd, const char *path, const char *what, struct ps_err *err)
{
    struct stat sb = {0};

    if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode))
        return fd;
    (void)close(fd);
    return ps_err_set(err, -PS_EFORMAT, "refusing %s %s: it is %s, not a regular file", what, path,
                      tfile_kind(sb.st_mode));
}

int tfile_open_regular(const char *path, const char *what, struct ps_err *err)
{
    int fd = open(path, TFILE_FLAGS);

    if (fd < 0)
        return ps_err_set(err, -errno, "cannot open %s %s: %s", what, path, strerror(errno));
    return tfile_keep_regular(fd, path, what, err);
}

/* ---- opening as the target ---------------------------------------------------------------- */

struct tfile_job {
    int rootfd;
    const char *name;
    const struct procstat_status *as; /* NULL: our own credentials */
    int fd;                           /* out: the fd or -errno */
};

static bool tfile_gid_in(gid_t g, const gid_t *set, int n)
{
    for (int i = 0; i < n; i++)
        if (set[i] == g)
            return true;
    return false;
}

/* Take as's supplementary groups, or keep ours when they are no more than as's. 0 or -EPERM. */
static int tfile_take_groups(const struct procstat_status *as)
{
    gid_t mine[PROCSTAT_GROUPS_MAX];
    int n = getgroups(PROCSTAT_GROUPS_MAX, mine);
    bool subset = n >= 0;

    for (int i = 0; subset && i < n; i++)
        subset = tfile_gid_in(mine[i], as->groups, as->ngroups);
    if (subset && n == as->ngroups)
        return 0;
    /* The raw syscall: glibc's setgroups() would change every thread of the process. */
    if (syscall(SYS_setgroups, (size_t)as->ngroups, as->groups) == 0)
        return 0;
    return subset ? 0 : -EPERM;
}

/* setfsuid/setfsgid report the previous id, never an error: a second call tells if it took. */
static int tfile_take_id(long nr, unsigned int id)
{
    (void)syscall(nr, id);
    return (unsigned int)syscall(nr, id) == id ? 0 : -EPERM;
}

static void *tfile_job_run(void *arg)
{
    struct tfile_job *j = arg;
    struct open_how how = {.flags = TFILE_FLAGS,
                           .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
    int rc = 0;

    if (j->as) {
        rc = tfile_take_groups(j->as);
        if (rc == 0)
            rc = tfile_take_id(SYS_setfsgid, j->as->gid[3]);
        if (rc == 0)
            rc = tfile_take_id(SYS_setfsuid, j->as->uid[3]);
    }
    if (rc == 0) {
        long fd = syscall(SYS_openat2, j->rootfd, j->name, &how, sizeof(how));
        rc = fd < 0 ? -errno : (int)fd;
    }
    j->fd = rc;
    return NULL;
}

/* Run the job in its own thread with every signal blocked; 0 or -errno (thread not started). */
static int tfile_job_thread(struct tfile_job *j)
{
    sigset_t all, old;
    pthread_t t;
    int dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
    int rc;

    (void)sigfillset(&all);
    (void)pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&t, NULL, tfile_job_run, j);
    (void)pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        return -rc;
    (void)pthread_join(t, NULL);
    if ((dumpable == 0 || dumpable == 1) && prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != dumpable)
        (void)prctl(PR_SET_DUMPABLE, dumpable, 0, 0, 0);
    return 0;
}

int tfile_open_as(int rootfd, const char *name, const struct procstat_status *as,
                  struct ps_err *err)
{
    struct tfile_job j = {.rootfd = rootfd, .name = name, .as = as, .fd = -EBADF};
    int rc = 0;

    if (as && (!as->ids_known || as->ngroups < 0))
        return ps_err_set(err, -EACCES,
                          "not opening %s: the target's credentials are unknown (its "
                          "/proc status lacks Uid, Gid or Groups)",
                          name);
    if (as)
        rc = tfile_job_thread(&j);
    else
        (void)tfile_job_run(&j);
    if (rc < 0)
        return ps_err_set(err, rc, "cannot start a thread to open %s: %s", name, strerror(-rc));
    if (j.fd < 0)
        return ps_err_set(err, j.fd, "cannot open %s as the target: %s", name, strerror(-j.fd));
    return tfile_keep_regular(j.fd, name, "file", err);
}
