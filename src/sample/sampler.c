/* SPDX-License-Identifier: MIT */
/*
 * The sampler's tick (see sampler.h): re-list threads now and then, probe the threads that are
 * not busy and the GIL in one scatter read, then count a stack per selected thread: reused when
 * the probe shows its top frame and instruction unchanged, else walked, checked for tearing and
 * resolved through the prefix and location caches. A busy thread is walked without a probe,
 * its GIL words read by the walk's own read. The timer and the loops are in sampler_loop.c.
 *
 * Cost model (docs/performance.md): on this class of VM the kernel charges ~0.5 us per range
 * of a process_vm_readv on top of ~2 us per call, so the probe reads neighbouring words as one
 * range (the GIL's two words, a thread state's status and frame holder).
 *
 * Invariants: memory is fixed after sampler_new (thread table, walk buffer, location cache);
 * the location cache and each thread's previous node are dropped whenever the profile's
 * generation changes. A torn or failed stack is counted in the statistics, never in the
 * profile.
 *
 * Never: prints; leaves the target stopped or traced (blocking ticks detach on every path).
 */
#include "sampler_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pyscope/evloop.h"
#include "pyscope/linetab.h"
#include "pyscope/target.h"

/* Probe slots per thread: status, frame holder (cframe or frame), frame via cframe, instr. */
#define PROBE_PER_THREAD 4
/* Walks per thread and tick before a moving stack counts as torn. */
#define SAMPLER_ATTEMPTS 32
/* ... of which the first SAMPLER_ATTEMPTS_SURE are always made; later ones only while the
 * thread's walk has taken less than SAMPLER_RETRY_S (a busy asyncio loop on 3.11 needed up to
 * ~20 attempts of 20-60 us each for 3% of its samples under load; the bound keeps a tick of
 * many such threads within its period). */
#define SAMPLER_ATTEMPTS_SURE 8
#define SAMPLER_RETRY_S       0.002

static uint64_t fp_hash(const struct code_fp *fp)
{
    const uint64_t v[] = {fp->type,
                          fp->size,
                          fp->filename,
                          fp->name,
                          fp->qualname,
                          fp->linetable,
                          (uint64_t)fp->firstlineno,
                          (uint64_t)fp->version,
                          (uint64_t)fp->firsttraceable};
    uint64_t h = 0x9e3779b97f4a7c15ull;

    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        h ^= v[i];
        h *= 0xff51afd7ed558ccdull;
        h ^= h >> 29;
    }
    return h;
}

/* ---- thread list ------------------------------------------------------------------------- */

/* threading._active of the main interpreter (best effort: no threading module, no names). */
static void find_thread_registry(struct sampler *s)
{
    struct ps_err ignored = {0};
    uint64_t mod, active;

    s->threading_active = 0;
    if (s->ninterps == 0)
        return;
    if (pyobj_module(&s->cx, s->interps[s->ninterps - 1].addr, "threading", &mod, &ignored) < 0 ||
        pyobj_module_global(&s->cx, mod, "_active", &active, &ignored) < 0)
        return;
    s->threading_active = active;
}

/* The Thread object's _name for the thread, into t->name ("" when unknown). */
static void read_thread_name(struct sampler *s, struct sthread *t)
{
    struct ps_err ignored = {0};
    uint64_t thread, name;

    /* A thread outside the registry (started from C, another interpreter) has no name to
     * find: settled. A failed read (a dict resized under us) is retried at the next re-list
     * rather than leaving the thread nameless, and so unmatched by --thread, for good. */
    if (!s->threading_active)
        return; /* the registry is looked up again at the next re-list */
    if (t->ts.interp != s->interps[s->ninterps - 1].addr || t->ts.thread_id >= (1ull << 61) - 1) {
        t->named = true;
        return;
    }
    /* Keys are the ints get_ident() returned; an int below 2^61-1 hashes to itself. */
    if (pyobj_dict_get_hash(&s->cx, s->threading_active, (int64_t)t->ts.thread_id, &thread,
                            &ignored) < 0 ||
        pyobj_instance_attr(&s->cx, thread, "_name", &name, &ignored) < 0 ||
        pyobj_str(&s->cx, name, t->name, sizeof(t->name), NULL, &ignored) < 0)
        return;
    t->named = true;
}

/* The thread's key in the profile. Idents repeat: across processes, and within one once a
 * thread has ended (a new pthread often gets the old one's ident); native ids and the pid tell
 * those threads apart. */
static uint64_t thread_key(const struct sampler *s, const struct sthread *t)
{
    uint64_t key = t->ts.thread_id;

    if (t->ts.native_id)
        key ^= (uint64_t)t->ts.native_id * 0xc2b2ae3d27d4eb4full;
    if (s->process_frame[0])
        key ^= (uint64_t)s->pp->pid * 0x9e3779b97f4a7c15ull;
    return key;
}

/* Read the thread's name (again); a changed name renames its profile root, so a thread named
 * late (the main thread before `import threading`) or renamed shows its current name. */
static void refresh_name(struct sampler *s, struct sthread *t)
{
    struct ps_err ignored = {0};
    char old[SAMPLER_NAME_MAX];
    uint32_t id;

    memcpy(old, t->name, sizeof(old));
    read_thread_name(s, t);
    if (t->pthread != PROFILE_NONE && strcmp(old, t->name) != 0 &&
        profile_thread(s->prof, thread_key(s, t), t->ts.native_id, t->name, &id, &ignored) < 0)
        return; /* the profile keeps the old name (out of memory for the new string) */
}

static bool thread_wanted(const struct sampler *s, const struct sthread *t)
{
    char num[32];

    if (!s->thread_filter[0] || strcmp(t->name, s->thread_filter) == 0)
        return true;
    (void)snprintf(num, sizeof(num), "%" PRIu64, t->ts.thread_id);
    if (strcmp(num, s->thread_filter) == 0)
        return true;
    (void)snprintf(num, sizeof(num), "%d", (int)t->ts.native_id);
    return t->ts.native_id && strcmp(num, s->thread_filter) == 0;
}

/*
 * The entry of thread state ts in the new list: the previous list's entry for the same thread
 * (same thread state, ident and native id) carried over WHOLE (profile root and base node,
 * previous sample, name, busy state: whatever a tick keeps about a thread, so that no field
 * can be forgotten here), with its thread-state words refreshed; else a new entry.
 */
static void carry_over(struct sampler *s, struct sthread *t, const struct walk_tstate *ts,
                       size_t nold)
{
    for (size_t k = 0; k < nold; k++) {
        const struct sthread *o = &s->old[k];

        if (o->ts.addr != ts->addr || o->ts.thread_id != ts->thread_id ||
            o->ts.native_id != ts->native_id)
            continue;
        *t = *o;
        t->ts = *ts;
        return;
    }
    *t = (struct sthread){.ts = *ts, .pthread = PROFILE_NONE};
}

/*
 * 3.11 creates a new thread's state in the thread that starts it, with the starter's ident and
 * native id, and the new thread writes its own when it runs (3.12+ leave them 0 until then).
 * Until it does, the newer of two thread states with the same ids in one interpreter (the list
 * is newest first) is no thread of its own: the starter would be sampled twice per tick.
 * O(n^2) over the thread list at a re-list; n is capped (WALK_MAX_THREADS) and small in practice.
 */
static void mark_unbound(struct sampler *s)
{
    for (size_t i = 0; i < s->nthreads; i++) {
        struct sthread *t = &s->threads[i];

        t->unbound = false;
        for (size_t j = i + 1; j < s->nthreads && !t->unbound; j++) {
            const struct walk_tstate *o = &s->threads[j].ts;

            t->unbound = o->interp == t->ts.interp && o->thread_id == t->ts.thread_id &&
                         o->native_id == t->ts.native_id;
        }
    }
}

static int relist(struct sampler *s, double now, struct ps_err *err)
{
    size_t n = 0, ni = 0, nold = s->nthreads;
    bool names = s->nrelist % SAMPLER_NAME_EVERY == 0;
    int rc;

    rc = walk_tstates(&s->cx, s->ts, WALK_MAX_THREADS, &n, s->winterps, &ni, err);
    if (rc < 0)
        return rc;
    s->stats.relists++;
    s->nrelist++;
    s->last_relist = now;
    s->relist_now = false;
    for (size_t i = 0; i < ni; i++)
        s->interps[i] = (struct sinterp){.addr = s->winterps[i].addr, .gil = s->winterps[i].gil};
    s->ninterps = ni;
    if (names || !s->threading_active)
        find_thread_registry(s);
    rc = sampler_tasks_refresh(s, err);
    if (rc < 0)
        return rc;
    memcpy(s->old, s->threads, sizeof(*s->old) * nold);
    for (size_t i = 0; i < n; i++) {
        struct sthread *t = &s->threads[i];

        carry_over(s, t, &s->ts[i], nold);
        t->full_walk_due = true;
        if (!t->named || names)
            refresh_name(s, t);
        t->wanted = thread_wanted(s, t);
    }
    s->nthreads = n;
    s->stats.threads = n;
    mark_unbound(s);
    return 0;
}

/* ---- probe ------------------------------------------------------------------------------- */

/* Queue the probe ranges of one thread. */
/* Offset of the thread-state word that leads to the current frame: 3.13 current_frame, else
 * cframe (both Include/cpython/pystate.h). */
static int32_t holder_off(const struct layout *l)
{
    return LAYOUT_HAS(l, tstate_current_frame) ? l->tstate_current_frame : l->tstate_cframe;
}

/* The status word and the frame holder as one range [*lo, *hi) of the thread state, when
 * they are close (one range costs the kernel less than two: see walk.c). */
static bool tstate_span(const struct layout *l, const struct sthread *t, int32_t *lo, int32_t *hi)
{
    int32_t h = holder_off(l);

    if (!t->ts.has_status || h < 0 || l->tstate_status < 0)
        return false;
    *lo = h < l->tstate_status ? h : l->tstate_status;
    *hi = h + 8 > l->tstate_status + 4 ? h + 8 : l->tstate_status + 4;
    return *hi - *lo <= SAMPLER_TSPAN;
}

/* Queue the probe ranges of one thread. */
static size_t probe_thread_iov(const struct layout *l, struct sthread *t, struct memsrc_iov *iov)
{
    uint64_t *holder = LAYOUT_HAS(l, tstate_current_frame) ? &t->frame : &t->cframe;
    int32_t lo, hi;
    size_t n = 0;

    t->cframe = t->frame = t->instr = 0;
    t->status = 0;
    t->tspan = tstate_span(l, t, &lo, &hi);
    if (t->tspan) {
        iov[n++] = (struct memsrc_iov){t->ts.addr + (uint64_t)lo, t->tblk, (size_t)(hi - lo)};
    } else {
        if (t->ts.has_status)
            iov[n++] = (struct memsrc_iov){t->ts.addr + (uint64_t)l->tstate_status, &t->status, 4};
        iov[n++] = (struct memsrc_iov){t->ts.addr + (uint64_t)holder_off(l), holder, 8};
    }
    if (!LAYOUT_HAS(l, tstate_current_frame) && t->has_prev && t->prev_cframe)
        iov[n++] =
            (struct memsrc_iov){t->prev_cframe + (uint64_t)l->cframe_current_frame, &t->frame, 8};
    if (t->has_prev && t->prev_frame)
        iov[n++] = (struct memsrc_iov){t->prev_frame + (uint64_t)l->frame_instr, &t->instr, 8};
    return n;
}

/* After a successful probe read: the words read as one span. */
static void probe_thread_parse(const struct layout *l, struct sthread *t)
{
    int32_t lo, hi;

    if (!t->tspan || !tstate_span(l, t, &lo, &hi))
        return;
    t->status = layout_get_u32(t->tblk, l->tstate_status - lo);
    if (LAYOUT_HAS(l, tstate_current_frame))
        t->frame = layout_get_u64(t->tblk, holder_off(l) - lo);
    else
        t->cframe = layout_get_u64(t->tblk, holder_off(l) - lo);
}

/* The byte range [lo, hi) of the GIL struct holding last_holder and locked; false when it does
 * not fit SAMPLER_GIL_SPAN (then the GIL is not read: nobody is seen holding it). */
static bool gil_span(const struct layout *l, int32_t *lo, int32_t *hi)
{
    *lo = l->gil_locked < l->gil_last_holder ? l->gil_locked : l->gil_last_holder;
    *hi = l->gil_locked + 4 > l->gil_last_holder + 8 ? l->gil_locked + 4 : l->gil_last_holder + 8;
    return *lo >= 0 && *hi - *lo <= SAMPLER_GIL_SPAN;
}

/* Queue one interpreter's GIL words as one range (0 or 1 ranges); resets locked/holder. */
static size_t gil_iov(const struct layout *l, struct sinterp *in, struct memsrc_iov *iov)
{
    int32_t lo, hi;

    in->locked = 0;
    in->holder = 0;
    if (!in->gil || !gil_span(l, &lo, &hi))
        return 0;
    iov[0] = (struct memsrc_iov){in->gil + (uint64_t)lo, in->words, (size_t)(hi - lo)};
    return 1;
}

/* Parse the words gil_iov queued, after a successful read. */
static void gil_parse(const struct layout *l, struct sinterp *in)
{
    int32_t lo, hi;

    if (!in->gil || !gil_span(l, &lo, &hi))
        return;
    in->locked = (int32_t)layout_get_u32(in->words, l->gil_locked - lo);
    in->holder = layout_get_u64(in->words, l->gil_last_holder - lo);
}

/* The byte range [lo, hi) of an interpreter state holding its thread-list words; false when the
 * layout lacks one or they do not fit SAMPLER_TLIST_SPAN (then only the periodic re-list finds
 * new and ended threads). */
static bool tlist_span(const struct layout *l, int32_t *lo, int32_t *hi)
{
    int32_t a = l->interp_threads_unique_id, b = l->interp_threads_head,
            c = l->interp_threads_count;

    if (!LAYOUT_HAS(l, interp_threads_unique_id) || !LAYOUT_HAS(l, interp_threads_head) ||
        !LAYOUT_HAS(l, interp_threads_count))
        return false;
    *lo = a < b ? (a < c ? a : c) : (b < c ? b : c);
    *hi = (a > b ? (a > c ? a : c) : (b > c ? b : c)) + 8;
    return *hi - *lo <= SAMPLER_TLIST_SPAN;
}

/* Queue one interpreter's thread-list words as one range (0 or 1 ranges). */
static size_t tlist_iov(const struct layout *l, struct sinterp *in, struct memsrc_iov *iov)
{
    int32_t lo, hi;

    if (!tlist_span(l, &lo, &hi))
        return 0;
    iov[0] = (struct memsrc_iov){in->addr + (uint64_t)lo, in->tlist, (size_t)(hi - lo)};
    return 1;
}

/* After a successful read of tlist_iov's range: words changed since the last read mean a thread
 * was created or ended (s->tlist_moved). */
static void tlist_parse(struct sampler *s, const struct layout *l, struct sinterp *in)
{
    int32_t lo, hi;

    if (!tlist_span(l, &lo, &hi))
        return;
    if (in->tlist_known && memcmp(in->tlist, in->tlist_prev, (size_t)(hi - lo)) != 0)
        s->tlist_moved = true;
    memcpy(in->tlist_prev, in->tlist, (size_t)(hi - lo));
    in->tlist_known = true;
    in->tlist_read = true;
}

/* Queue the GIL and thread-list words of every interpreter. */
static size_t probe_gil_iov(const struct layout *l, struct sampler *s, struct memsrc_iov *iov)
{
    size_t n = 0;

    for (size_t i = 0; i < s->ninterps; i++) {
        n += gil_iov(l, &s->interps[i], iov + n);
        n += tlist_iov(l, &s->interps[i], iov + n);
    }
    return n;
}

/* Threads the shared probe reads: wanted and not busy (a busy thread's probe words ride on its
 * walk). */
static bool probed(const struct sthread *t)
{
    return t->wanted && !t->busy;
}

/* Probe in as few scatter reads as the iov limit allows (the GIL words in the first); a failed
 * batch leaves its threads unprobed (they are walked) and asks for a re-list. When no thread
 * needs the probe (all busy or filtered out), nothing is read. */
static void probe(struct sampler *s)
{
    const struct layout *l = s->cx.lay;
    struct memsrc_iov iov[MEMSRC_MAX_IOV];
    struct ps_err ignored = {0};
    bool gil_done = false, first_batch = true;
    size_t i = 0;

    for (size_t k = 0; k < s->ninterps; k++)
        s->interps[k].tlist_read = false;

    while (i < s->nthreads) {
        size_t first = i, n = 0;
        bool ok;

        for (; i < s->nthreads && n + PROBE_PER_THREAD <= MEMSRC_MAX_IOV; i++) {
            struct sthread *t = &s->threads[i];

            t->probe_ok = false;
            if (!probed(t))
                continue;
            if (!gil_done)
                n += probe_gil_iov(l, s, iov + n);
            gil_done = true;
            n += probe_thread_iov(l, t, iov + n);
        }
        if (n == 0)
            continue;
        ok = memsrc_readv(s->cx.src, iov, n, &ignored) == 0;
        for (size_t k = 0; ok && first_batch && k < s->ninterps; k++) {
            gil_parse(l, &s->interps[k]);
            tlist_parse(s, l, &s->interps[k]);
        }
        first_batch = false;
        for (size_t k = first; k < i; k++) {
            s->threads[k].probe_ok = ok && probed(&s->threads[k]);
            if (s->threads[k].probe_ok)
                probe_thread_parse(l, &s->threads[k]);
        }
        if (!ok)
            s->relist_now = true;
    }
}

/* ---- resolve and count ------------------------------------------------------------------- */

static void loc_clear(struct sampler *s)
{
    memset(s->loc, 0, sizeof(*s->loc) * SAMPLER_LOC_CACHE);
    s->nloc = 0;
    s->truncated_frame = PROFILE_NONE;
}

static int resolve_miss(struct sampler *s, const struct walk_frame *f, uint32_t *frame,
                        struct ps_err *err)
{
    const struct code_info *ci;
    struct linetab_pos pos;
    int rc = code_cache_resolve(s->cx.codes, &s->cx, f->code_addr, &f->fp, &ci, err);

    if (rc < 0)
        return rc;
    pos = linetab_lookup(&ci->lines, ci->firstlineno, f->unit);
    *frame = profile_frame_intern(
        s->prof, ci->qualname && ci->qualname[0] ? ci->qualname : ci->name, ci->filename, pos.line);
    return 0;
}

/* Frame id of a walked frame through the location cache (full at 3/4: cleared). */
static int resolve_frame(struct sampler *s, const struct walk_frame *f, uint32_t *frame,
                         struct ps_err *err)
{
    uint64_t fp = fp_hash(&f->fp), unit = (uint64_t)(f->unit + 2);
    size_t i =
        (size_t)((f->code_addr * 0x9e3779b97f4a7c15ull) ^ fp ^ (unit * 0xc2b2ae3d27d4eb4full));
    int rc;

    for (i &= SAMPLER_LOC_CACHE - 1; s->loc[i].unit; i = (i + 1) & (SAMPLER_LOC_CACHE - 1)) {
        const struct loc_slot *e = &s->loc[i];

        if (e->code == f->code_addr && e->fp == fp && e->unit == unit) {
            *frame = e->frame;
            return 0;
        }
    }
    rc = resolve_miss(s, f, frame, err);
    if (rc < 0)
        return rc;
    if (s->nloc >= (size_t)SAMPLER_LOC_CACHE / 4 * 3) {
        loc_clear(s);
        return 0;
    }
    s->loc[i] = (struct loc_slot){.code = f->code_addr, .fp = fp, .unit = unit, .frame = *frame};
    s->nloc++;
    return 0;
}

/* Resolve the walked stack into s->ids, outermost first; *n gets the count. */
static int resolve_stack(struct sampler *s, size_t *n, struct ps_err *err)
{
    size_t k = 0;

    if (s->st.truncated) {
        if (s->truncated_frame == PROFILE_NONE)
            s->truncated_frame = profile_frame_intern(s->prof, "[truncated]", "", -1);
        s->ids[k++] = s->truncated_frame;
    }
    for (size_t i = s->st.n; i-- > 0;) {
        int rc = resolve_frame(s, &s->st.frames[i], &s->ids[k], err);

        if (rc < 0)
            return rc;
        k++;
    }
    *n = k;
    return 0;
}

static bool pfx_same(const struct pfx_frame *e, const struct walk_frame *f)
{
    return e->frame == f->frame_addr && e->code == f->code_addr && e->unit == (uint64_t)f->unit &&
           e->fp == fp_hash(&f->fp);
}

/* The trie node of the slot's first k frames: up from its leaf, checking every step against
 * the frame ids it recorded (PROFILE_NONE when the path is not what it recorded, e.g. the
 * "[profile full]" node). Frame d - 1 of a stack sits at depth d + depth0 (depth0: the depth of
 * the thread's base node, 1 below a process frame). */
static uint32_t pfx_node(const struct profile *p, const struct sprefix *x, size_t k, size_t depth0)
{
    const struct profile_node *nd;
    uint32_t node = x->leaf;

    for (size_t d = x->n; d > k; d--) {
        nd = profile_node_get(p, node);
        if (!nd || nd->depth != d + depth0 || nd->frame != x->f[d - 1].id)
            return PROFILE_NONE;
        node = nd->parent;
    }
    nd = profile_node_get(p, node);
    return nd && nd->depth == k + depth0 ? node : PROFILE_NONE;
}

/* Resolve the frames past the shared prefix k into the slot and s->ids (outermost first). */
static int pfx_resolve(struct sampler *s, struct sprefix *x, size_t k, struct ps_err *err)
{
    size_t n = s->st.n;

    for (size_t i = 0; i < k; i++)
        s->ids[i] = x->f[i].id;
    for (size_t i = k; i < n; i++) {
        const struct walk_frame *f = &s->st.frames[n - 1 - i];
        int rc = resolve_frame(s, f, &s->ids[i], err);

        if (rc < 0) {
            x->n = 0;
            return rc;
        }
        x->f[i] = (struct pfx_frame){.frame = f->frame_addr,
                                     .code = f->code_addr,
                                     .fp = fp_hash(&f->fp),
                                     .unit = (uint64_t)f->unit,
                                     .id = s->ids[i]};
    }
    return 0;
}

/* Where a walked stack meets the trie: resolved into s->ids[0..n); the first k frames are the
 * trie path ending at node (PROFILE_NONE: no shared prefix, count from the thread's root). */
struct pfx_plan {
    size_t n, k;
    uint32_t node;
};

/*
 * Resolve the walked stack into s->ids (outermost first). Outer frames shared with the
 * thread's previous walk (prefix cache, sampler_int.h) reuse its ids and trie path instead of
 * being resolved and looked up again.
 */
static int pfx_resolve_stack(struct sampler *s, const struct sthread *t, struct pfx_plan *pl,
                             struct ps_err *err)
{
    struct sprefix *x = &s->pfx[(t->ts.addr >> 6) % SAMPLER_PREFIX_SLOTS];
    size_t n = s->st.n, k = 0;
    uint32_t node = PROFILE_NONE;
    int rc;

    *pl = (struct pfx_plan){.node = PROFILE_NONE};
    if (s->st.truncated || n > SAMPLER_PREFIX_DEPTH || s->tasks || s->native) {
        x->n = 0;
        return resolve_stack(s, &pl->n, err);
    }
    if (x->n && x->tstate == t->ts.addr && x->pthread == t->pthread) {
        while (k < n && k < x->n && pfx_same(&x->f[k], &s->st.frames[n - 1 - k]))
            k++;
        node = pfx_node(s->prof, x, k, profile_node_get(s->prof, t->base_node)->depth);
    }
    if (node == PROFILE_NONE)
        k = 0;
    rc = pfx_resolve(s, x, k, err);
    if (rc == 0)
        *pl = (struct pfx_plan){.n = n, .k = k, .node = node};
    return rc;
}

/* Count the resolved stack under the thread (t->pthread exists); remember it in its slot. */
static uint32_t pfx_add(struct sampler *s, const struct sthread *t, const struct pfx_plan *pl)
{
    struct sprefix *x = &s->pfx[(t->ts.addr >> 6) % SAMPLER_PREFIX_SLOTS];
    uint32_t base = s->tasks ? sampler_tasks_base(s, t) : t->base_node;
    size_t n = pl->n;
    const uint32_t *ids = s->native ? sampler_native_stack(s, t, &n) : s->ids;
    uint32_t leaf = pl->node == PROFILE_NONE
                        ? profile_add_below(s->prof, base, ids, n, 1)
                        : profile_add_below(s->prof, pl->node, s->ids + pl->k, pl->n - pl->k, 1);

    if (s->st.truncated || pl->n > SAMPLER_PREFIX_DEPTH || s->tasks || s->native)
        return leaf;
    x->tstate = t->ts.addr;
    x->pthread = t->pthread;
    x->leaf = leaf;
    x->n = pl->n;
    return leaf;
}

/* The thread's profile root, and its base node (the root, or the process frame below it). */
static int ensure_pthread(struct sampler *s, struct sthread *t, struct ps_err *err)
{
    int rc;

    if (t->pthread != PROFILE_NONE)
        return 0;
    rc = profile_thread(s->prof, thread_key(s, t), t->ts.native_id, t->name, &t->pthread, err);
    if (rc < 0)
        return rc;
    t->base_node = profile_thread_get(s->prof, t->pthread)->root;
    if (s->process_frame[0]) {
        uint32_t f = profile_frame_intern(s->prof, s->process_frame, "", -1);

        t->base_node = profile_add(s->prof, t->pthread, &f, 1, 0);
    }
    if (t->base_node == PROFILE_NONE) {
        t->pthread = PROFILE_NONE;
        return ps_err_set(err, -PS_ELIMIT, "the profile is full");
    }
    return 0;
}

static void emit(struct sampler *s, const struct sthread *t, double now, bool active, bool gil)
{
    struct sampler_sample smp;

    s->stats.samples++;
    if (!s->opts.on_sample)
        return;
    smp = (struct sampler_sample){.time = now - s->t0,
                                  .wall = evloop_wall(),
                                  .pid = s->pp->pid,
                                  .ident = t->ts.thread_id,
                                  .native_id = t->ts.native_id,
                                  .thread = t->pthread,
                                  .node = t->prev_node,
                                  .state = active ? SAMPLER_ACTIVE : SAMPLER_IDLE,
                                  .gil = gil};
    s->opts.on_sample(s->opts.sample_arg, s->prof, &smp);
}

/*
 * Did the thread's frame chain move since st was read? One scatter read of where the thread
 * keeps its current frame. Unlike walk_stack_changed, a changed instruction pointer in the same
 * top frame is not tearing here: every frame was read consistently and only the innermost
 * line may be a few instructions old, which a sampler accepts (a running thread's instruction
 * changes constantly; rejecting those samples would drop most of every busy thread).
 */
static int stack_moved(struct sampler *s, const struct sthread *t, bool *moved, struct ps_err *err)
{
    const struct layout *l = s->cx.lay;
    uint64_t cframe = 0, frame = 0;
    struct memsrc_iov iov[2];
    size_t n = 0;
    int rc;

    if (LAYOUT_HAS(l, tstate_current_frame)) {
        iov[n++] = (struct memsrc_iov){t->ts.addr + (uint64_t)l->tstate_current_frame, &frame, 8};
    } else {
        iov[n++] = (struct memsrc_iov){t->ts.addr + (uint64_t)l->tstate_cframe, &cframe, 8};
        if (s->st.cframe)
            iov[n++] =
                (struct memsrc_iov){s->st.cframe + (uint64_t)l->cframe_current_frame, &frame, 8};
    }
    rc = memsrc_readv(s->cx.src, iov, n, err);
    if (rc == 0)
        *moved = cframe != s->st.cframe || frame != s->st.top_frame;
    return rc;
}

/* Same frame: address, code object, its header and (unless top) code unit. */
static bool same_frame(const struct walk_frame *a, const struct walk_frame *b, bool top)
{
    return a->frame_addr == b->frame_addr && a->code_addr == b->code_addr &&
           fp_hash(&a->fp) == fp_hash(&b->fp) && (top || a->unit == b->unit);
}

/* sampler_int.h */
bool sampler_grew_from(const struct walk_stack *old, const struct walk_stack *cur)
{
    size_t d;

    if (old->truncated || cur->truncated || old->n == 0 || cur->n < old->n)
        return false;
    d = cur->n - old->n;
    for (size_t i = 0; i < old->n; i++)
        if (!same_frame(&old->frames[i], &cur->frames[d + i], i == 0))
            return false;
    return true;
}

/* Swap the current walk with the kept one (the caller's co-reads stay with s->st, and so does
 * its scratch: the walker's hints, so that the next attempt predicts from this one). */
static void swap_walks(struct sampler *s)
{
    struct walk_stack tmp = s->st;
    struct walk_scratch *scratch = s->st.scratch;

    s->st = s->st_prev;
    s->st_prev = tmp;
    s->st_prev.scratch = s->st.scratch;
    s->st.scratch = scratch;
    s->st.co_reads = s->st_prev.co_reads;
    s->st.nco_reads = s->st_prev.nco_reads;
    s->st_prev.co_reads = NULL;
    s->st_prev.nco_reads = 0;
}

/*
 * Walk until the chain did not move while read (SAMPLER_ATTEMPTS at most, within this tick; a
 * read that faults, a pointer the stack dropped while read, is tried again too).
 * The tearing check is free when the walk's own single read confirmed its top (walk.h,
 * top_confirmed: the current-frame words read again after the frames, in the same syscall,
 * unchanged); that is the check stack_moved makes, from a point just after the frame bytes
 * instead of one syscall later, so it is no weaker. Otherwise (a cold or mispredicted walk,
 * several reads) one more read checks. A thread that calls faster than a read completes moves
 * under every attempt: an attempt whose stack the next attempt shows the thread still inside
 * (sampler_grew_from) is taken instead.
 */
static int walk_consistent(struct sampler *s, const struct sthread *t, bool *moved,
                           struct ps_err *err)
{
    bool kept = false;
    double t0 = 0;
    int rc = 0;

    *moved = false;
    for (int attempt = 0; attempt < SAMPLER_ATTEMPTS; attempt++) {
        if (attempt == SAMPLER_ATTEMPTS_SURE - 1)
            t0 = sampler_clock(s);
        else if (attempt >= SAMPLER_ATTEMPTS_SURE && sampler_clock(s) - t0 > SAMPLER_RETRY_S)
            break;
        ps_err_clear(err);
        rc = walk_stack(&s->cx, t->ts.addr, &s->st, err);
        if (rc == 0 && !s->opts.blocking && !s->st.top_confirmed)
            rc = stack_moved(s, t, moved, err);
        if ((rc == 0 && !*moved) || (rc < 0 && rc != -PS_ECORRUPT && rc != -EFAULT))
            return rc;
        if (rc == 0 && kept && sampler_grew_from(&s->st_prev, &s->st)) {
            swap_walks(s);
            *moved = false;
            return 0;
        }
        kept = rc == 0;
        if (kept)
            swap_walks(s);
    }
    if (kept)
        swap_walks(s);
    return rc;
}

/* Walk and check one thread; counts torn/errors. 0 = walked, 1 = not usable, < 0 = fatal. */
static int walk_checked(struct sampler *s, struct sthread *t, struct ps_err *err)
{
    struct ps_err e = {0};
    bool moved = false;
    int rc = walk_consistent(s, t, &moved, &e);

    if (rc == -ENOMEM)
        return ps_err_set(err, rc, "%s", e.msg);
    if (rc == 0 && !moved)
        return 0;
    t->has_prev = false;
    t->busy = false;
    if (moved || rc == -PS_ECORRUPT)
        s->stats.torn++;
    else
        s->stats.errors++;
    if (rc < 0 && rc != -PS_ECORRUPT)
        s->relist_now = true;
    return 1;
}

/* The walked stack's top is the thread's previous sample's (same test as unchanged()). */
static bool walked_same(const struct sampler *s, const struct sthread *t)
{
    return t->has_prev && !t->full_walk_due && !s->opts.blocking &&
           s->st.cframe == t->prev_cframe && s->st.top_frame == t->prev_frame &&
           s->st.top_instr == t->prev_instr;
}

/* Count the walked stack (resolved through the location cache). 0 = counted, 1 = not counted
 * (a resolution error, counted in the stats), < 0 = fatal. A thread whose stack changed (or is
 * new) becomes busy. */
static int count_walked(struct sampler *s, struct sthread *t, struct ps_err *err)
{
    struct ps_err e = {0};
    struct pfx_plan pl;
    int rc = pfx_resolve_stack(s, t, &pl, &e);

    if (rc == -ENOMEM)
        return ps_err_set(err, rc, "%s", e.msg);
    if (rc < 0) {
        t->has_prev = false;
        t->busy = false;
        if (rc == -PS_ECORRUPT)
            s->stats.torn++; /* a code object that no longer matches: the stack moved */
        else
            s->stats.errors++;
        if (rc != -PS_ECORRUPT)
            s->relist_now = true;
        return 1;
    }
    rc = ensure_pthread(s, t, err);
    if (rc < 0)
        return rc;
    if (!t->has_prev || s->st.cframe != t->prev_cframe || s->st.top_frame != t->prev_frame ||
        s->st.top_instr != t->prev_instr)
        t->busy = true;
    t->still = 0;
    t->prev_node = pfx_add(s, t, &pl);
    t->prev_cframe = s->st.cframe;
    t->prev_frame = s->st.top_frame;
    t->prev_instr = s->st.top_instr;
    t->has_prev = true;
    t->full_walk_due = false;
    return 0;
}

static bool unchanged(const struct sampler *s, const struct sthread *t)
{
    if (!t->probe_ok || !t->has_prev || t->full_walk_due || s->opts.blocking)
        return false;
    if (LAYOUT_HAS(s->cx.lay, tstate_current_frame))
        return t->frame == t->prev_frame && t->instr == t->prev_instr;
    return t->cframe == t->prev_cframe && t->frame == t->prev_frame && t->instr == t->prev_instr;
}

static struct sinterp *interp_of(struct sampler *s, const struct sthread *t)
{
    for (size_t i = 0; i < s->ninterps; i++)
        if (s->interps[i].addr == t->ts.interp)
            return &s->interps[i];
    return NULL;
}

/* Is the thread selected by --idle/--gil, from its probe words? *active, *gil: its state. */
static bool selected(const struct sampler *s, const struct sinterp *in, const struct sthread *t,
                     bool *active, bool *gil)
{
    *gil = in && in->locked == 1 && in->holder == t->ts.addr;
    *active =
        *gil || (t->ts.has_status && t->probe_ok && layout_tstate_active(s->cx.lay, t->status));
    return (s->opts.idle || *active) && (!s->opts.gil_only || *gil);
}

/* A probed thread: reuse its previous stack when the probe shows it unchanged, else walk. */
static int sample_probed(struct sampler *s, struct sthread *t, double now, struct ps_err *err)
{
    bool gil, active;
    int rc;

    if (!selected(s, interp_of(s, t), t, &active, &gil)) {
        s->stats.idle_skipped++;
        return 0;
    }
    if (unchanged(s, t)) {
        profile_add_node(s->prof, t->prev_node, 1);
        s->stats.reused++;
        emit(s, t, now, active, gil);
        return 0;
    }
    rc = walk_checked(s, t, err);
    if (rc == 0)
        rc = count_walked(s, t, err);
    if (rc == 0)
        emit(s, t, now, active, gil);
    return rc < 0 ? rc : 0;
}

/* Queue a busy thread's probe words as the walk's co-reads: its interpreter's GIL, and its
 * thread-list words when no probe read them this tick (its status word comes with the walk's
 * thread-state block). *tlist: the thread-list words were queued. */
static size_t busy_co_reads(const struct layout *l, struct sinterp *in, struct memsrc_iov *iov,
                            bool *tlist)
{
    size_t n;

    *tlist = false;
    if (!in)
        return 0;
    n = gil_iov(l, in, iov);
    if (!in->tlist_read) {
        size_t k = tlist_iov(l, in, iov + n);

        *tlist = k > 0;
        n += k;
    }
    return n;
}

/*
 * A busy thread: walk at once, its probe words read by the walk's own first read, then decide
 * from them whether the sample counts (a thread found idle is skipped and probed again from the
 * next tick on). A top unchanged since the previous sample reuses that node, as the probe path
 * would; SAMPLER_STILL_MAX such walks in a row send the thread back to the probe.
 */
static int sample_busy(struct sampler *s, struct sthread *t, double now, struct ps_err *err)
{
    struct sinterp *in = interp_of(s, t);
    struct memsrc_iov co[2];
    bool gil, active, tlist;
    int rc;

    s->st.co_reads = co;
    s->st.nco_reads = busy_co_reads(s->cx.lay, in, co, &tlist);
    rc = walk_checked(s, t, err);
    s->st.co_reads = NULL;
    s->st.nco_reads = 0;
    if (rc != 0)
        return rc < 0 ? rc : 0;
    if (in)
        gil_parse(s->cx.lay, in);
    if (tlist)
        tlist_parse(s, s->cx.lay, in);
    t->status = s->st.status_bits;
    t->probe_ok = true;
    if (!selected(s, in, t, &active, &gil)) {
        s->stats.idle_skipped++;
        t->busy = false;
        return 0;
    }
    if (walked_same(s, t)) {
        profile_add_node(s->prof, t->prev_node, 1);
        s->stats.reused++;
        if (++t->still >= SAMPLER_STILL_MAX)
            t->busy = false;
    } else {
        rc = count_walked(s, t, err);
        if (rc != 0)
            return rc < 0 ? rc : 0;
    }
    emit(s, t, now, active, gil);
    return 0;
}

static int sample_thread(struct sampler *s, struct sthread *t, double now, struct ps_err *err)
{
    /* A thread state not bound to a thread yet (3.12+ create it in the parent thread; the new
     * thread fills in its ident when it starts; 3.11 fills in the parent's, mark_unbound): no
     * thread to sample; re-list until bound. */
    if (!t->ts.thread_id || t->unbound) {
        s->relist_now = true;
        return 0;
    }
    if (!t->wanted) {
        s->stats.idle_skipped++;
        return 0;
    }
    return t->busy ? sample_busy(s, t, now, err) : sample_probed(s, t, now, err);
}

/* /proc/PID/stat says the process is gone or a zombie. */
static bool process_gone(const struct sampler *s)
{
    char path[64], buf[256];
    FILE *f;
    const char *rp;
    bool gone = true;

    if (s->pid <= 0)
        return false;
    (void)snprintf(path, sizeof(path), "/proc/%d/stat", (int)s->pid);
    f = fopen(path, "re");
    if (!f)
        return true;
    if (fgets(buf, sizeof(buf), f) && (rp = strrchr(buf, ')')) && rp[1] == ' ')
        gone = rp[2] == 'Z' || rp[2] == 'X';
    (void)fclose(f);
    return gone;
}

static void sync_generation(struct sampler *s)
{
    uint64_t g = profile_generation(s->prof);

    if (g == s->generation)
        return;
    s->generation = g;
    loc_clear(s);
    for (size_t i = 0; i < SAMPLER_PREFIX_SLOTS; i++)
        s->pfx[i].n = 0;
    for (size_t i = 0; i < s->nthreads; i++) {
        s->threads[i].pthread = PROFILE_NONE;
        s->threads[i].has_prev = false;
    }
}

/* Re-list within a tick: 0 = done, 1 = failed (counted; skip this tick), < 0 = the end. */
static int relist_tick(struct sampler *s, double now, struct ps_err *err)
{
    if (relist(s, now, err) >= 0)
        return 0;
    s->stats.errors++;
    return process_gone(s) ? ps_err_replace(err, -PS_EGONE, "the target exited") : 1;
}

/* One sample of every selected thread (no stopping). */
static int sample_all(struct sampler *s, double now, struct ps_err *err)
{
    int rc = 0;

    sync_generation(s);
    if (s->relist_now || now - s->last_relist >= SAMPLER_RELIST_MS / 1000.0 || !s->nthreads)
        rc = relist_tick(s, now, err);
    s->tlist_moved = false;
    if (rc == 0)
        probe(s);
    if (rc == 0 && s->tlist_moved) { /* a thread was created or ended: follow it now */
        rc = relist_tick(s, now, err);
        s->tlist_moved = false;
        if (rc == 0)
            probe(s);
    }
    if (rc != 0)
        return rc < 0 ? rc : 0;
    for (size_t i = 0; i < s->nthreads && rc == 0; i++)
        rc = sample_thread(s, &s->threads[i], now, err);
    if (s->tlist_moved) /* seen by a busy thread's walk: re-list at the next tick */
        s->relist_now = true;
    if (rc == 0 && s->relist_now && process_gone(s))
        rc = ps_err_set(err, -PS_EGONE, "the target exited");
    return rc;
}

struct stopped_tick {
    struct sampler *s;
    double now;
};

static int sample_all_cb(void *arg, struct ps_err *err)
{
    const struct stopped_tick *t = arg;

    return sample_all(t->s, t->now, err);
}

/* Blocking: stop every thread, sample, detach on every path (target_run_stopped). */
static int sample_stopped(struct sampler *s, double now, struct ps_err *err)
{
    struct stopped_tick t = {.s = s, .now = now};
    int rc = target_run_stopped(s->pp->pid, sample_all_cb, &t, err);

    if (rc == -ESRCH)
        return ps_err_replace(err, -PS_EGONE, "the target exited");
    return rc;
}

int sampler_sample_once(struct sampler *s, struct ps_err *err)
{
    double start = sampler_clock(s), us;
    int rc;

    s->stats.ticks++;
    if (!s->pp) /* clock-only: nothing to read (sampler_run's pidfd sees the exit) */
        return 0;
    s->cx = pyproc_ctx(s->pp);
    rc = s->opts.blocking ? sample_stopped(s, start, err) : sample_all(s, start, err);
    us = (sampler_clock(s) - start) * 1e6;
    s->stats.tick_total_us += us;
    if (us > s->stats.tick_max_us)
        s->stats.tick_max_us = us;
    return rc;
}
