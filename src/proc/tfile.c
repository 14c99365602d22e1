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
#include <limits.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define TFILE_FLAGS (O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)
/* Directories deep a name may go (source trees are a dozen deep) and symlinks it may follow
 * (the kernel's own MAXSYMLINKS is 40). */
#define TFILE_WALK_DEPTH 64
#define TFILE_WALK_LINKS 40

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

/* ---- RESOLVE_IN_ROOT by hand, for kernels without openat2 (before 5.6) ------------------- */

/* A walk: the directories entered from the root (fds, dirs[0] is the borrowed root) and the
 * part of the path still to resolve. */
struct tfile_walk {
    int dirs[TFILE_WALK_DEPTH];
    size_t depth; /* entries of dirs in use, >= 1 */
    char rest[PATH_MAX];
    int links;
};

static void tfile_walk_pop(struct tfile_walk *w, size_t keep)
{
    while (w->depth > keep)
        (void)close(w->dirs[--w->depth]);
}

/* Replace the component just read by the symlink behind fd: its text, then what followed. */
static int tfile_walk_link(struct tfile_walk *w, int fd, const char *after)
{
    char target[PATH_MAX], joined[PATH_MAX];
    ssize_t n = readlinkat(fd, "", target, sizeof(target) - 1);

    if (n <= 0 || ++w->links > TFILE_WALK_LINKS)
        return n <= 0 ? -ENOENT : -ELOOP;
    target[n] = '\0';
    if (target[0] == '/')
        tfile_walk_pop(w, 1); /* absolute: from the target's root, never ours */
    if ((size_t)snprintf(joined, sizeof(joined), "%s/%s", target, after) >= sizeof(joined))
        return -ENAMETOOLONG;
    memcpy(w->rest, joined, sizeof(joined));
    return 0;
}

/* Take the next component of w->rest into comp; false when none is left. */
static bool tfile_walk_next(struct tfile_walk *w, char *comp, size_t cap, const char **after)
{
    const char *p = w->rest + strspn(w->rest, "/");
    size_t len = strcspn(p, "/");

    if (len == 0 || len >= cap)
        return false;
    memcpy(comp, p, len);
    comp[len] = '\0';
    *after = p + len;
    return true;
}

/* One step: enter, leave or open comp (last: the file itself). fd of the file, 0 to go on. */
static int tfile_walk_step(struct tfile_walk *w, const char *comp, const char *after, bool last)
{
    struct stat sb;
    char tail[PATH_MAX];
    int fd;

    if (strcmp(comp, "..") == 0) {
        tfile_walk_pop(w, w->depth > 1 ? w->depth - 1 : 1);
    } else if (strcmp(comp, ".") != 0) {
        fd = openat(w->dirs[w->depth - 1], comp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &sb) != 0) {
            int e = fd < 0 ? -errno : -EIO;
            if (fd >= 0)
                (void)close(fd);
            return e;
        }
        if (S_ISLNK(sb.st_mode)) {
            (void)snprintf(tail, sizeof(tail), "%s", after);
            int rc = tfile_walk_link(w, fd, tail);
            (void)close(fd);
            return rc;
        }
        if (last) {
            (void)close(fd); /* the real open, never following a link swapped in meanwhile */
            fd = openat(w->dirs[w->depth - 1], comp, TFILE_FLAGS | O_NOFOLLOW);
            return fd < 0 ? -errno : fd;
        }
        if (!S_ISDIR(sb.st_mode) || w->depth == TFILE_WALK_DEPTH) {
            (void)close(fd);
            return S_ISDIR(sb.st_mode) ? -ENAMETOOLONG : -ENOTDIR;
        }
        w->dirs[w->depth++] = fd;
    }
    (void)snprintf(tail, sizeof(tail), "%s", after);
    memcpy(w->rest, tail, sizeof(tail));
    return 0;
}

int tfile_open_in_root_compat(int rootfd, const char *name)
{
    struct tfile_walk w = {.dirs = {rootfd}, .depth = 1};
    char comp[NAME_MAX + 1];
    const char *after;
    int rc = 0;

    if ((size_t)snprintf(w.rest, sizeof(w.rest), "%s", name) >= sizeof(w.rest))
        return -ENAMETOOLONG;
    while (rc == 0 && tfile_walk_next(&w, comp, sizeof(comp), &after))
        rc = tfile_walk_step(&w, comp, after, after[strspn(after, "/")] == '\0');
    tfile_walk_pop(&w, 1);
    return rc == 0 ? -EISDIR : rc; /* a walk that ends without a file named a directory */
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
        if (rc == -ENOSYS) /* Linux before 5.6, or a seccomp filter that predates it */
            rc = tfile_open_in_root_compat(j->rootfd, j->name);
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
