/* SPDX-License-Identifier: MIT */
/*
 * Test library for tests/targets/oddities.py (loaded with ctypes, not a Python extension): starts
 * an OS thread that never runs Python, names it with pthread_setname_np and parks it in read()
 * on a pipe nobody writes. Its frames (cthread_park -> cthread_wait) are the native stack the
 * test expects pyscope to show.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

static int park_fd = -1;
static volatile pid_t parked_tid;

__attribute__((noinline)) static void cthread_wait(void)
{
    char c;

    parked_tid = (pid_t)syscall(SYS_gettid);
    while (read(park_fd, &c, 1) != 0)
        ;
}

__attribute__((noinline)) static void *cthread_park(void *arg)
{
    (void)arg;
    cthread_wait();
    return NULL;
}

/* Start the thread named name, parked reading fd; 0 or an errno. */
int cthread_start(int fd, const char *name)
{
    pthread_t t;
    int rc;

    park_fd = fd;
    rc = pthread_create(&t, NULL, cthread_park, NULL);
    if (rc == 0)
        rc = pthread_setname_np(t, name);
    return rc;
}

/* The parked thread's kernel TID once it is parked, else 0. */
int cthread_tid(void)
{
    return parked_tid;
}
