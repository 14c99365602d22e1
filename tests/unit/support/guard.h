/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_TEST_GUARD_H
#define PYSCOPE_TEST_GUARD_H

/*
 * Waits for unit tests: on an observable state or event (a byte on a pipe, a /proc state, a
 * child's exit), never for an amount of time. Each wait has a hang guard only: a bound that turns
 * a hang into a failure with a message (ctest's own timeout kills the binary without one). The
 * guard is no measurement and must never decide a pass on a busy machine: TEST_GUARD_BASE_S
 * seconds times PYSCOPE_TEST_TIMEOUT_SCALE (CMakeLists.txt: 5 under the sanitizers, 1 else), four
 * orders of magnitude beyond any wait the tests make. Shared by the unit tests (linked into every
 * cmocka binary by CMakeLists.txt).
 */

#include <stdbool.h>
#include <sys/types.h>

#ifndef PYSCOPE_TEST_TIMEOUT_SCALE
#define PYSCOPE_TEST_TIMEOUT_SCALE 1
#endif

#define TEST_GUARD_BASE_S 30

/* The hang guard of one wait, in seconds: TEST_GUARD_BASE_S * PYSCOPE_TEST_TIMEOUT_SCALE. */
int test_guard_s(void);

/* Wait until fd is readable (data, EOF or an error to read). Returns true, or false once the
 * hang guard expired. */
bool test_wait_readable(int fd);

/* Call done(arg) until it returns true, pausing about a millisecond between calls (the state it
 * reads, such as /proc, gives no event). Returns true, or false once the hang guard expired. */
bool test_wait_until(bool (*done)(void *arg), void *arg);

/* Wait for child pid to exit (a pidfd, polled) and reap it into *status. Returns true, or false
 * once the hang guard expired (the child is left running). */
bool test_wait_exit(pid_t pid, int *status);

#endif
