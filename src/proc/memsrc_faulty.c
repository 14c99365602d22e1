/* SPDX-License-Identifier: MIT */
/*
 * Fault-injecting memory source (tests): wraps another source and spoils chosen ranges, so a
 * test can sweep a fault over every read of a walk and check the walker fails cleanly (an
 * error, never a crash, never past its caps).
 *
 * Ranges are counted 1-based across calls, every range of every call that reaches the
 * wrapper's readv (calls refused by memsrc_readv's caps are not counted). Range k is hit when
 * k == nth, or when every > 0 and k > nth and (k - nth) % every == 0; nth == 0 hits nothing, which
 * sizes a sweep through memsrc_faulty_count(). FAIL fails the whole call with -EFAULT before the
 * inner source is asked (all or nothing); GARBLE and ZERO read through the inner source, then
 * overwrite the hit ranges. GARBLE uses xorshift64* seeded once, so a run is reproducible.
 */
#include "pyscope/memsrc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memsrc_int.h"

/* xorshift64* needs a non-zero state; seed 0 is replaced by this odd constant. */
#define FAULTY_SEED_ZERO 0x9e3779b97f4a7c15ULL

struct memsrc_faulty {
    struct memsrc base;
    struct memsrc *inner; /* owned */
    enum memsrc_fault fault;
    uint64_t nth;
    uint64_t every;
    uint64_t rng;   /* xorshift64* state, never 0 */
    uint64_t count; /* ranges seen so far */
};

static const struct memsrc_ops faulty_ops;

static bool faulty_hit(const struct memsrc_faulty *f, uint64_t k)
{
    if (f->nth == 0 || k < f->nth)
        return false;
    return k == f->nth || (f->every > 0 && (k - f->nth) % f->every == 0);
}

static uint64_t faulty_next(struct memsrc_faulty *f)
{
    f->rng ^= f->rng >> 12;
    f->rng ^= f->rng << 25;
    f->rng ^= f->rng >> 27;
    return f->rng * 0x2545f4914f6cdd1dULL;
}

static void faulty_garble(struct memsrc_faulty *f, unsigned char *p, size_t len)
{
    uint64_t r = 0;

    for (size_t i = 0; i < len; i++) {
        if (i % 8 == 0)
            r = faulty_next(f);
        p[i] = (unsigned char)(r >> (8 * (i % 8)));
    }
}

static int faulty_readv(struct memsrc *src, const struct memsrc_iov *iov, size_t n,
                        struct ps_err *err)
{
    struct memsrc_faulty *f = (struct memsrc_faulty *)src;
    uint64_t first = f->count + 1;
    int rc;

    f->count += n;
    for (size_t i = 0; i < n && f->fault == MEMSRC_FAULT_FAIL; i++)
        if (faulty_hit(f, first + i))
            return ps_err_set(err, -EFAULT,
                              "injected fault: range %" PRIu64 " (%zu bytes at 0x%" PRIx64
                              ") failed on purpose",
                              first + i, iov[i].len, iov[i].addr);
    rc = memsrc_readv(f->inner, iov, n, err);
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (!faulty_hit(f, first + i))
            continue;
        if (f->fault == MEMSRC_FAULT_GARBLE)
            faulty_garble(f, iov[i].buf, iov[i].len);
        else
            memset(iov[i].buf, 0, iov[i].len);
    }
    return rc;
}

static void faulty_describe(const struct memsrc *src, char *buf, size_t len)
{
    const struct memsrc_faulty *f = (const struct memsrc_faulty *)src;
    char inner[MEMSRC_DESC_MAX];

    memsrc_describe(f->inner, inner, sizeof(inner));
    (void)snprintf(buf, len, "%s (faulty)", inner);
}

static void faulty_close(struct memsrc *src)
{
    struct memsrc_faulty *f = (struct memsrc_faulty *)src;

    memsrc_close(f->inner);
    free(f);
}

static const struct memsrc_ops faulty_ops = {
    .name = "faulty",
    .readv = faulty_readv,
    .describe = faulty_describe,
    .close = faulty_close,
};

int memsrc_faulty_wrap(struct memsrc *inner, enum memsrc_fault fault, uint64_t nth, uint64_t every,
                       uint64_t seed, struct memsrc **out, struct ps_err *err)
{
    struct memsrc_faulty *f;

    if (!inner)
        return ps_err_set(err, -EINVAL, "the faulty source needs a source to wrap");
    if (fault != MEMSRC_FAULT_FAIL && fault != MEMSRC_FAULT_GARBLE && fault != MEMSRC_FAULT_ZERO)
        return ps_err_set(err, -EINVAL, "unknown fault kind %d", (int)fault);
    f = calloc(1, sizeof(*f));
    if (!f)
        return ps_err_set(err, -ENOMEM, "out of memory wrapping a source in a faulty one");
    f->base.ops = &faulty_ops;
    f->base.pid = inner->pid;
    f->inner = inner;
    f->fault = fault;
    f->nth = nth;
    f->every = every;
    f->rng = seed ? seed : FAULTY_SEED_ZERO;
    *out = &f->base;
    return 0;
}

uint64_t memsrc_faulty_count(const struct memsrc *src)
{
    if (!src || src->ops != &faulty_ops)
        return 0;
    return ((const struct memsrc_faulty *)src)->count;
}
