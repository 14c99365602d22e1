/* SPDX-License-Identifier: MIT */
/*
 * tracer_memo: a memory source that remembers, for one breakpoint stop, every range read or
 * prefetched through it (see tracer_int.h). Why: at a stop the tracer runs the ordinary readers
 * (walker, exception describer, str and type-name readers), which read one field at a time; the
 * tracer knows ahead which objects they will look at (the thread state the walker copies, the
 * exception object, its type, its args tuple, args[0]) and prefetches them level by level in
 * scatter reads, so a stop costs ~4 process_vm_readv calls instead of ~15.
 *
 * Invariants: a read is served from the memo only when it lies wholly inside one kept range;
 * anything else goes to the inner source, all ranges of a call in one scatter read (all or
 * nothing, as memsrc requires). The arena (TR_MEMO_BYTES) and range table (TR_MEMO_RANGES) are
 * allocated once; when full, reads still work, they are just not kept.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tracer_int.h"

#define TR_MEMO_PAGE 4096u

struct tr_memo_range {
    uint64_t addr;
    size_t off; /* into the arena */
    size_t len;
    bool used; /* a reader needed it during this stop */
};

/* The ranges a thread's last stop used, replayed at its next stop in one scatter read. */
struct tr_memo_replay {
    pid_t tid; /* 0 = free */
    size_t n;
    struct {
        uint64_t addr;
        size_t len;
    } r[TR_MEMO_RANGES];
};

struct tr_memo {
    struct memsrc base;
    struct memsrc *inner; /* borrowed */
    size_t nranges, used;
    struct tr_memo_range r[TR_MEMO_RANGES];
    struct memsrc_iov *miss;       /* MEMSRC_MAX_IOV scratch */
    uint8_t *arena;                /* TR_MEMO_BYTES */
    struct tr_memo_replay *replay; /* TR_MEMO_THREADS, direct-mapped by tid */
    struct memsrc_iov *replay_iov; /* TR_MEMO_RANGES scratch */
};

static const struct memsrc_ops tr_memo_ops;

/* The kept range holding [addr, addr+len) wholly, or NULL. */
static struct tr_memo_range *tr_memo_find(struct tr_memo *m, uint64_t addr, size_t len)
{
    for (size_t i = 0; i < m->nranges; i++) {
        struct tr_memo_range *r = &m->r[i];
        if (addr >= r->addr && addr - r->addr <= r->len && len <= r->len - (addr - r->addr))
            return r;
    }
    return NULL;
}

/* Copy iov's bytes from a kept range holding it wholly: true when served. */
static bool tr_memo_serve(struct tr_memo *m, const struct memsrc_iov *iov)
{
    struct tr_memo_range *r = tr_memo_find(m, iov->addr, iov->len);

    if (!r)
        return false;
    memcpy(iov->buf, m->arena + r->off + (iov->addr - r->addr), iov->len);
    r->used = true;
    return true;
}

/* Reserve arena room for len bytes at addr: the range slot, or NULL when full. */
static struct tr_memo_range *tr_memo_reserve(struct tr_memo *m, uint64_t addr, size_t len)
{
    struct tr_memo_range *r;

    if (len == 0 || m->nranges == TR_MEMO_RANGES || len > TR_MEMO_BYTES - m->used)
        return NULL;
    r = &m->r[m->nranges];
    *r = (struct tr_memo_range){.addr = addr, .off = m->used, .len = len};
    return r;
}

/* Keep a copy of a range just read (when there is room). */
static void tr_memo_keep(struct tr_memo *m, const struct memsrc_iov *iov)
{
    struct tr_memo_range *r = tr_memo_reserve(m, iov->addr, iov->len);

    if (!r)
        return;
    memcpy(m->arena + r->off, iov->buf, iov->len);
    r->used = true;
    m->used += iov->len;
    m->nranges++;
}

static int tr_memo_readv(struct memsrc *src, const struct memsrc_iov *iov, size_t n,
                         struct ps_err *err)
{
    struct tr_memo *m = (struct tr_memo *)src;
    size_t k = 0;
    int rc;

    for (size_t i = 0; i < n; i++)
        if (!tr_memo_serve(m, &iov[i]))
            m->miss[k++] = iov[i];
    if (k == 0)
        return 0;
    rc = memsrc_readv(m->inner, m->miss, k, err);
    for (size_t i = 0; rc == 0 && i < k; i++)
        tr_memo_keep(m, &m->miss[i]);
    return rc;
}

static void tr_memo_describe(const struct memsrc *src, char *buf, size_t len)
{
    const struct tr_memo *m = (const struct tr_memo *)src;

    memsrc_describe(m->inner, buf, len);
}

static void tr_memo_close(struct memsrc *src)
{
    struct tr_memo *m = (struct tr_memo *)src;

    free(m->miss);
    free(m->arena);
    free(m->replay);
    free(m->replay_iov);
    free(m);
}

static const struct memsrc_ops tr_memo_ops = {
    .name = "memo", .readv = tr_memo_readv, .describe = tr_memo_describe, .close = tr_memo_close};

int tr_memo_new(struct memsrc *inner, struct memsrc **out, struct ps_err *err)
{
    struct tr_memo *m = calloc(1, sizeof(*m));

    if (m) {
        m->miss = calloc(MEMSRC_MAX_IOV, sizeof(*m->miss));
        m->arena = malloc(TR_MEMO_BYTES);
        m->replay = calloc(TR_MEMO_THREADS, sizeof(*m->replay));
        m->replay_iov = calloc(TR_MEMO_RANGES, sizeof(*m->replay_iov));
    }
    if (!m || !m->miss || !m->arena || !m->replay || !m->replay_iov) {
        if (m)
            tr_memo_close(&m->base);
        return ps_err_set(err, -ENOMEM, "out of memory for the tracer's read memo");
    }
    m->base.ops = &tr_memo_ops;
    m->base.pid = inner->pid;
    m->inner = inner;
    *out = &m->base;
    return 0;
}

void tr_memo_free(struct memsrc *memo)
{
    if (memo)
        tr_memo_close(memo);
}

static struct tr_memo_replay *tr_memo_slot(struct tr_memo *m, pid_t tid)
{
    return &m->replay[(size_t)tid % TR_MEMO_THREADS];
}

void tr_memo_begin(struct memsrc *memo, pid_t tid)
{
    struct tr_memo *m = (struct tr_memo *)memo;
    const struct tr_memo_replay *p = tr_memo_slot(m, tid);

    m->nranges = 0;
    m->used = 0;
    if (p->tid != tid)
        return;
    for (size_t i = 0; i < p->n; i++)
        m->replay_iov[i] = (struct memsrc_iov){.addr = p->r[i].addr, .len = p->r[i].len};
    tr_memo_prefetch(memo, m->replay_iov, p->n);
}

void tr_memo_put(struct memsrc *memo, uint64_t addr, const void *buf, size_t len)
{
    const struct memsrc_iov iov = {.addr = addr, .buf = (void *)(uintptr_t)buf, .len = len};

    tr_memo_keep((struct tr_memo *)memo, &iov);
}

void tr_memo_end(struct memsrc *memo, pid_t tid)
{
    struct tr_memo *m = (struct tr_memo *)memo;
    struct tr_memo_replay *p = tr_memo_slot(m, tid);

    p->tid = tid;
    p->n = 0;
    for (size_t i = 0; i < m->nranges; i++)
        if (m->r[i].used) {
            p->r[p->n].addr = m->r[i].addr;
            p->r[p->n].len = m->r[i].len;
            p->n++;
        }
}

void tr_memo_prefetch(struct memsrc *memo, const struct memsrc_iov *iov, size_t n)
{
    struct tr_memo *m = (struct tr_memo *)memo;
    struct ps_err ignored = {0};
    size_t first = m->nranges, used = m->used, k = 0;

    for (size_t i = 0; i < n && k < MEMSRC_MAX_IOV; i++) {
        struct tr_memo_range *r;
        if (iov[i].addr == 0 || iov[i].len == 0 || iov[i].len > MEMSRC_MAX_READ ||
            tr_memo_find(m, iov[i].addr, iov[i].len))
            continue;
        r = tr_memo_reserve(m, iov[i].addr, iov[i].len);
        if (!r)
            break;
        r->used = false;
        m->miss[k++] =
            (struct memsrc_iov){.addr = r->addr, .buf = m->arena + r->off, .len = r->len};
        m->used += r->len;
        m->nranges++;
    }
    if (k > 0 && memsrc_readv(m->inner, m->miss, k, &ignored) < 0) {
        m->nranges = first; /* nothing kept: the readers fetch what they need themselves */
        m->used = used;
    }
}

size_t tr_memo_page_len(uint64_t addr, size_t want, size_t need)
{
    size_t room = TR_MEMO_PAGE - (size_t)(addr % TR_MEMO_PAGE);

    if (want > room)
        want = room;
    return want < need ? need : want;
}

/* ---- what a stop reads, level by level ------------------------------------------------------ */

#define TR_STR_PREFETCH 320 /* str header (40-56 bytes) + the message text (200 bytes) */

static int32_t tr_max_off(const int32_t *offs, size_t n)
{
    int32_t hi = 0;

    for (size_t i = 0; i < n; i++)
        if (offs[i] > hi)
            hi = offs[i];
    return hi;
}

/* Bytes of an exception object the describer reads (ob_type through __cause__). */
static size_t tr_exc_len(const struct layout *l)
{
    const int32_t offs[] = {l->object_type, l->exc_args,  l->exc_traceback,
                            l->exc_context, l->exc_cause, l->exc_suppress_context};

    return (size_t)tr_max_off(offs, sizeof(offs) / sizeof(offs[0])) + 8;
}

/* Bytes of a type object read for its name, flags and metatype (from its start). */
static size_t tr_type_len(const struct layout *l)
{
    const int32_t offs[] = {l->object_type, l->type_name, l->type_flags};

    return (size_t)tr_max_off(offs, sizeof(offs) / sizeof(offs[0])) + 8;
}

static uint64_t tr_word(struct memsrc *memo, uint64_t base, int32_t off)
{
    struct ps_err ignored = {0};
    uint64_t v = 0;

    if (base == 0 || off < 0 || memsrc_read_u64(memo, base + (uint64_t)off, &v, &ignored) < 0)
        return 0;
    return v;
}

void tr_prefetch_exc(struct memsrc *memo, const struct pyctx *c, uint64_t tstate, uint64_t frameobj)
{
    const struct layout *l = c->lay;
    int32_t off = LAYOUT_HAS(l, tstate_current_exception) ? l->tstate_current_exception
                                                          : l->tstate_curexc_value;
    uint64_t exc = tr_word(memo, tstate, off);
    struct memsrc_iov iov[2] = {{0}};
    size_t n = 0;

    if (frameobj && l->frameobj_f_frame >= 0)
        iov[n++] = (struct memsrc_iov){.addr = frameobj + (uint64_t)l->frameobj_f_frame, .len = 8};
    if (exc && exc != c->syms->none && (exc & 7) == 0)
        iov[n++] =
            (struct memsrc_iov){.addr = exc, .len = tr_memo_page_len(exc, tr_exc_len(l), 16)};
    tr_memo_prefetch(memo, iov, n);
}

/* Level 4: args[0] as a str, and the types of the chained exceptions. */
static void tr_prefetch_leaves(struct memsrc *memo, const struct pyctx *c, uint64_t text,
                               uint64_t context, uint64_t cause)
{
    const struct layout *l = c->lay;
    size_t need = (size_t)l->str_state + 4;
    struct memsrc_iov iov[3] = {{0}};
    size_t n = 0;
    uint64_t t;

    if (text && (text & 7) == 0)
        iov[n++] =
            (struct memsrc_iov){.addr = text, .len = tr_memo_page_len(text, TR_STR_PREFETCH, need)};
    if ((t = tr_word(memo, context, l->object_type)) != 0)
        iov[n++] = (struct memsrc_iov){.addr = t, .len = tr_type_len(l)};
    if ((t = tr_word(memo, cause, l->object_type)) != 0)
        iov[n++] = (struct memsrc_iov){.addr = t, .len = tr_type_len(l)};
    tr_memo_prefetch(memo, iov, n);
}

void tr_prefetch_desc(struct memsrc *memo, const struct pyctx *c, uint64_t value, uint64_t type)
{
    const struct layout *l = c->lay;
    uint64_t none = c->syms->none;
    uint64_t vtype = tr_word(memo, value, l->object_type);
    bool instance = vtype != 0 && vtype == type; /* 3.11 may hold a str or args tuple instead */
    uint64_t args = instance ? tr_word(memo, value, l->exc_args) : 0;
    uint64_t context = instance ? tr_word(memo, value, l->exc_context) : 0;
    uint64_t cause = instance ? tr_word(memo, value, l->exc_cause) : 0;
    struct memsrc_iov iov[4] = {{0}};
    size_t n = 0;

    context = context == none ? 0 : context;
    cause = cause == none ? 0 : cause;
    if (type && (type & 7) == 0)
        iov[n++] = (struct memsrc_iov){.addr = type, .len = tr_type_len(l)};
    if (args && (args & 7) == 0)
        iov[n++] = (struct memsrc_iov){.addr = args, .len = (size_t)l->tuple_items + 8};
    if (context && (context & 7) == 0)
        iov[n++] = (struct memsrc_iov){.addr = context, .len = tr_exc_len(l)};
    if (cause && (cause & 7) == 0)
        iov[n++] = (struct memsrc_iov){.addr = cause, .len = tr_exc_len(l)};
    tr_memo_prefetch(memo, iov, n);
    tr_prefetch_leaves(memo, c, instance ? tr_word(memo, args, l->tuple_items) : value, context,
                       cause);
}
