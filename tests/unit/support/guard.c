/* SPDX-License-Identifier: MIT */
/* Waits on observable states with a hang guard only (see guard.h). */
#include "guard.h"

#include <errno.h>
#include <poll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int test_guard_s(void)
{
    return TEST_GUARD_BASE_S * PYSCOPE_TEST_TIMEOUT_SCALE;
}

static double now_s(void)
{
    struct timespec ts;

    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Milliseconds left until deadline (a now_s() value), 0 once it passed. */
static int left_ms(double deadline)
{
    double left = deadline - now_s();

    return left > 0 ? (int)(left * 1000) + 1 : 0;
}

/* Poll fd for events until one comes or the guard expires. */
static bool wait_fd(int fd, short events)
{
    double deadline = now_s() + test_guard_s();
    struct pollfd p = {.fd = fd, .events = events};

    for (;;) {
        int ms = left_ms(deadline);
        int r = poll(&p, 1, ms);
        if (r > 0)
            return true;
        if ((r == 0 && ms == 0) || (r < 0 && errno != EINTR))
            return false;
    }
}

bool test_wait_readable(int fd)
{
    return wait_fd(fd, POLLIN);
}

bool test_wait_until(bool (*done)(void *arg), void *arg)
{
    double deadline = now_s() + test_guard_s();
    const struct timespec pace = {.tv_sec = 0, .tv_nsec = 1000000};

    while (!done(arg)) {
        if (left_ms(deadline) == 0)
            return false;
        (void)nanosleep(&pace, NULL);
    }
    return true;
}

bool test_wait_exit(pid_t pid, int *status)
{
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    bool exited;

    if (fd < 0) /* already reaped, or not our child: waitpid says which */
        return waitpid(pid, status, WNOHANG) == pid;
    exited = wait_fd(fd, POLLIN);
    (void)close(fd);
    return exited && waitpid(pid, status, 0) == pid;
}
