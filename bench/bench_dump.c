/* SPDX-License-Identifier: MIT */
/*
 * Dump benchmark (scripts/bench runs it): open a live Python process once, then take N
 * snapshots back to back, the first cold (empty code cache) and the rest warm. Reports the
 * median wall time per snapshot, per thread and per frame, and the memory-source calls
 * (process_vm_readv syscalls) per snapshot and per thread. A second loop times the raw walk of
 * one thread (walk_stack + consistency check, no names, no /proc), the sampler's hot path.
 *
 * Usage: pyscope-bench-dump PID [N]
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "pyscope/collect.h"
#include "pyscope/pyproc.h"
#include "pyscope/walk.h"

static double now(void)
{
    struct timespec t;

    (void)clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_double);
    return n ? v[n / 2] : 0.0;
}

static int bench_snapshots(struct pyproc *pp, size_t n, double *t, double *calls)
{
    struct collect_opts co = {.retries = 8};
    struct ps_err err = {0};
    size_t threads = 0, frames = 0;

    for (size_t i = 0; i < n; i++) {
        struct snap *s = NULL;
        uint64_t c0 = pp->src->stats.calls;
        double t0 = now();

        if (collect_snapshot(pp, &co, &s, &err) < 0) {
            (void)fprintf(stderr, "bench: %s\n", err.msg);
            return -1;
        }
        t[i] = now() - t0;
        calls[i] = (double)(pp->src->stats.calls - c0);
        threads = s->nthreads;
        frames = 0;
        for (size_t k = 0; k < s->nthreads; k++)
            frames += s->threads[k].nframes;
        snap_free(s);
    }
    (void)printf("snapshot: cold %.1f us (%.0f reads); warm median %.1f us, %.0f reads, "
                 "%zu threads, %zu frames\n",
                 t[0] * 1e6, calls[0], median(t + 1, n - 1) * 1e6, median(calls + 1, n - 1),
                 threads, frames);
    (void)printf("snapshot per thread: %.2f us, %.1f reads; per frame: %.3f us\n",
                 median(t + 1, n - 1) * 1e6 / (double)threads,
                 median(calls + 1, n - 1) / (double)threads,
                 median(t + 1, n - 1) * 1e6 / (double)frames);
    return 0;
}

static int bench_walk(struct pyproc *pp, size_t n, double *t, double *calls)
{
    struct walk_tstate ts[64];
    struct walk_stack st;
    struct ps_err err = {0};
    const struct pyctx c = pyproc_ctx(pp);
    size_t nts = 0;
    bool changed;

    if (walk_tstates(&c, ts, 64, &nts, NULL, NULL, &err) < 0 || nts == 0 ||
        walk_stack_init(&st, &err) < 0) {
        (void)fprintf(stderr, "bench: %s\n", err.msg);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t c0 = pp->src->stats.calls;
        double t0 = now();

        if (walk_stack(&c, ts[0].addr, &st, &err) < 0 ||
            walk_stack_changed(&c, ts[0].addr, &st, &changed, &err) < 0)
            break;
        t[i] = now() - t0;
        calls[i] = (double)(pp->src->stats.calls - c0);
    }
    (void)printf("raw walk of one %zu-frame stack: median %.2f us, %.0f reads\n", st.n,
                 median(t, n) * 1e6, median(calls, n));
    walk_stack_free(&st);
    return 0;
}

int main(int argc, char **argv)
{
    struct ps_err err = {0};
    struct pyproc *pp = NULL;
    size_t n = argc > 2 ? (size_t)strtoul(argv[2], NULL, 10) : 200;
    double *t, *calls;
    int rc;

    if (argc < 2 || n < 2) {
        (void)fprintf(stderr, "usage: pyscope-bench-dump PID [N>=2]\n");
        return 64;
    }
    if (pyproc_open((pid_t)atoi(argv[1]), &pp, &err) < 0) {
        (void)fprintf(stderr, "bench: %s\n", err.msg);
        return 2;
    }
    t = calloc(n, sizeof(*t));
    calls = calloc(n, sizeof(*calls));
    rc = t && calls ? bench_snapshots(pp, n, t, calls) : -1;
    if (rc == 0)
        rc = bench_walk(pp, n, t, calls);
    free(t);
    free(calls);
    pyproc_close(pp);
    return rc < 0 ? 2 : 0;
}
