/* SPDX-License-Identifier: MIT */
/*
 * Sampler hot-path benchmark (scripts/bench-sampler runs it): the CPU one sampler tick costs,
 * without the cost of being woken up for it, which a timer-driven sampler pays whatever it
 * does (measured separately by the same binary: a loop that only sleeps one period).
 *
 * Opens a live Python process, then:
 *  - "hot":  N ticks back to back (sampler_sample_once), caches warm;
 *  - "paced": N ticks one period apart (ppoll between them), as in a recording: the target
 *    runs in between and evicts pyscope's data from the caches;
 *  - "wake": N sleeps of one period doing nothing (the floor of any timer-driven sampler).
 * Each reports thread CPU (CLOCK_THREAD_CPUTIME_ID) per tick and memory-source calls per tick.
 * Ratios between the lines of one run are the figures to compare; absolute values drift with
 * the machine's load.
 *
 * Usage: pyscope-bench-sampler PID [N] [RATE_HZ] [--idle]
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pyscope/profile.h"
#include "pyscope/pyproc.h"
#include "pyscope/sampler.h"

static double cpu_now(void)
{
    struct timespec t;

    (void)clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void pause_for(double seconds)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)(seconds * 1e9)};

    (void)ppoll(NULL, 0, &ts, NULL);
}

/* Run n ticks (paced: one period apart); print CPU and reads per tick. */
static int run(const char *label, struct pyproc *pp, struct sampler *s, size_t n, double period)
{
    struct ps_err err = {0};
    uint64_t calls0 = pp->src->stats.calls;
    double cpu0 = cpu_now();

    for (size_t i = 0; i < n; i++) {
        if (period > 0)
            pause_for(period);
        if (sampler_sample_once(s, &err) < 0) {
            (void)fprintf(stderr, "bench-sampler: %s\n", err.msg);
            return 1;
        }
    }
    (void)printf("%-7s %8.2f us CPU/tick, %5.2f reads/tick\n", label,
                 (cpu_now() - cpu0) * 1e6 / (double)n,
                 (double)(pp->src->stats.calls - calls0) / (double)n);
    return 0;
}

static void run_wake(size_t n, double period)
{
    double cpu0 = cpu_now();

    for (size_t i = 0; i < n; i++)
        pause_for(period);
    (void)printf("%-7s %8.2f us CPU/tick (sleeping one period, nothing else)\n", "wake",
                 (cpu_now() - cpu0) * 1e6 / (double)n);
}

int main(int argc, char **argv)
{
    struct sampler_opts so = {0};
    struct ps_err err = {0};
    struct pyproc *pp = NULL;
    struct profile *p = NULL;
    struct sampler *s = NULL;
    size_t n = argc > 2 ? strtoul(argv[2], NULL, 10) : 5000;
    double rate = argc > 3 ? strtod(argv[3], NULL) : 1000;
    int rc = 1;

    if (argc < 2 || n == 0 || !(rate > 0)) {
        (void)fprintf(stderr, "usage: pyscope-bench-sampler PID [N] [RATE_HZ] [--idle]\n");
        return 64;
    }
    so.rate_hz = rate;
    so.idle = argc > 4 && strcmp(argv[4], "--idle") == 0;
    if (pyproc_open((pid_t)strtol(argv[1], NULL, 10), &pp, &err) < 0 || profile_new(&p, &err) < 0 ||
        sampler_new(pp, p, &so, &s, &err) < 0) {
        (void)fprintf(stderr, "bench-sampler: %s\n", err.msg);
        goto out;
    }
    rc = run("warmup", pp, s, n / 10 + 1, 0) || run("hot", pp, s, n, 0) ||
         run("paced", pp, s, n, 1.0 / rate);
    if (rc == 0)
        run_wake(n, 1.0 / rate);
out:
    sampler_free(s);
    profile_free(p);
    pyproc_close(pp);
    return rc;
}
