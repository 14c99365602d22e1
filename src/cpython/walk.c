/* SPDX-License-Identifier: MIT */
/*
 * The walker (see walk.h): interpreters -> thread states -> frame chains, as raw frames.
 *
 * Place in the data flow: memory source -> walk -> (code.h resolves) -> snapshot. Every field
 * offset comes from the layout table; nothing here knows a CPython version number.
 *
 * A thread's stack is read as: the thread state block (one read), its current frame pointer
 * (3.11/3.12: one more read through the _PyCFrame), its data-stack chunks (one read each,
 * usually one), then the frame chain is followed in those copies; frames that live elsewhere
 * (generators, C-stack shims, frame objects) cost one small read each. Finally every frame's
 * code header is fetched in one scatter read (unique code objects only) and checked.
 *
 * Invariants: every loop has a cap from walk.h; every pointer read from the target is used only
 * as an address for another bounded read, never dereferenced; a frame whose code object fails
 * its checks makes the whole walk fail with -PS_ECORRUPT so the caller can retry (the stack
 * moved under us) rather than show a torn stack.
 */
#include "pyscope/walk.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "pyscope/tidmap.h"

_Static_assert(TIDMAP_MAX_THREADS >= WALK_MAX_THREADS, "every listed thread can be mapped");

/* Bytes of a thread state / interpreter / frame we copy: enough for the furthest field. */
#define WALK_BLOCK_MAX 1024

struct chunk_copy {
    uint64_t start;
    uint64_t len;
    uint8_t *buf; /* into the scratch buffer */
};

/*
 * Speculation: what the previous walk of a thread found (its _PyCFrame, newest chunk, frames
 * outside the chunks, code objects) lets the next walk fetch all of it together with the
 * thread state in ONE scatter read; each part is used only if the fresh thread state confirms
 * it (same cframe, same chunk, top within what was read). Anything unconfirmed is read the
 * precise way. Bounded: WALK_HINTS threads (direct-mapped by thread-state address, a collision
 * just costs the precise path), WALK_HINT_EXTRA frames and WALK_HINT_CODES codes per thread.
 */
#define WALK_HINTS          256
#define WALK_HINT_EXTRA     32 /* an asyncio web stack holds ~20 coroutine frames */
#define WALK_HINT_CODES     64
#define WALK_SPEC_CHUNK_MAX 65536
#define WALK_SPEC_SLACK     1024 /* bytes past the last top: a few frames of growth */
/* Hinted code headers whose span is at most WALK_CODE_GROUP bytes are read as one range (a
 * range costs the kernel a page-table walk of its own: ~0.5 us here, more than copying a few
 * KiB), into a buffer of WALK_SPEC_CODE_BYTES; codes that do not fit are read precisely. */
#define WALK_CODE_GROUP      4096
#define WALK_SPEC_CODE_BYTES (32u << 10)
#define WALK_FRAME_COPY                                                                            \
    128 /* bytes of a speculated frame; a longer frame_len() is not speculated */

struct walk_hint {
    uint64_t tstate;
    uint64_t cframe;
    uint64_t chunk, spec_len;
    uint32_t nextra, ncode;
    uint64_t extra[WALK_HINT_EXTRA];
    uint64_t code[WALK_HINT_CODES];
};

/* What the speculative read brought, valid for the current walk only. */
struct walk_spec {
    bool cur_ok, chunk_ok;
    uint64_t cur_frame;
    /* The tail of the read: where the current frame is kept, read again after everything else
     * (tail_ok: the read succeeded; tail_at: the _PyCFrame whose current_frame was re-read). */
    bool tail_ok;
    uint64_t tail_cframe, tail_frame, tail_at;
    uint32_t nextra, ncode;
    uint32_t code_off[WALK_HINT_CODES]; /* where hinted code i's header is in spec_hdrs */
    uint8_t extra[WALK_HINT_EXTRA][WALK_FRAME_COPY];
    /* frames read outside chunks and spec extras in this walk: the next hint's extras */
    uint32_t nseen;
    uint64_t seen[WALK_HINT_EXTRA];
};

/* Per-call scratch, allocated once per walk_stack struct and reused (flat memory). */
struct walk_scratch {
    struct walk_hint hints[WALK_HINTS];
    struct walk_spec spec;
    uint8_t *spec_chunk; /* WALK_SPEC_CHUNK_MAX */
    uint8_t *spec_hdrs;  /* WALK_SPEC_CODE_BYTES: the hinted code headers, grouped */
    struct chunk_copy chunks[WALK_MAX_CHUNKS];
    size_t nchunks;
    uint8_t *bytes; /* chunk bytes, capacity cap */
    size_t used, cap;
    uint64_t *instr;     /* per candidate frame: instruction pointer, WALK_MAX_DEPTH */
    uint64_t *uniq;      /* unique code addresses, WALK_MAX_DEPTH */
    uint8_t *hdrs;       /* code headers, WALK_MAX_DEPTH * CODE_HEADER_MAX */
    size_t *idx;         /* per candidate frame: index into uniq, WALK_MAX_DEPTH */
    struct code_fp *fps; /* parsed header per unique code, WALK_MAX_DEPTH */
};

static uint64_t get64(const uint8_t *blk, int32_t off)
{
    return layout_get_u64(blk, off);
}

static int64_t get_i64(const uint8_t *blk, int32_t off)
{
    return (int64_t)layout_get_u64(blk, off);
}

static int32_t get_i32(const uint8_t *blk, int32_t off)
{
    return (int32_t)layout_get_u32(blk, off);
}

static size_t tstate_len(const struct layout *l)
{
    const int32_t offs[] = {l->tstate_next,
                            l->tstate_interp,
                            l->tstate_status,
                            l->tstate_cframe,
                            l->tstate_current_frame,
                            l->tstate_thread_id,
                            l->tstate_native_thread_id,
                            l->tstate_datastack_chunk,
                            l->tstate_datastack_top,
                            l->tstate_datastack_limit};
    return layout_span(offs, sizeof(offs) / sizeof(offs[0]));
}

static size_t frame_len(const struct layout *l)
{
    const int32_t offs[] = {l->frame_code, l->frame_previous, l->frame_instr, l->frame_owner,
                            l->frame_is_entry};
    return layout_span(offs, sizeof(offs) / sizeof(offs[0]));
}

static int read_block(const struct pyctx *c, uint64_t addr, uint8_t *blk, size_t len,
                      const char *what, struct ps_err *err)
{
    int rc;

    if (len > WALK_BLOCK_MAX)
        return ps_err_set(err, -PS_ECORRUPT, "layout asks for a %zu-byte %s: table is wrong", len,
                          what);
    rc = memsrc_read(c->src, addr, blk, len, err);
    if (rc < 0)
        ps_err_prefix(err, "reading the %s at 0x%llx: ", what, (unsigned long long)addr);
    return rc;
}

/* ---- interpreters and thread states ------------------------------------------------------ */

/* The interpreter fields we use are kilobytes apart on 3.13: one scatter read of four words. */
enum {
    INTERP_NEXT,
    INTERP_ID,
    INTERP_THREADS,
    INTERP_GIL,
    INTERP_NFIELDS
};

static int read_interp(const struct pyctx *c, uint64_t interp, uint64_t *f, struct ps_err *err)
{
    const struct layout *l = c->lay;
    const int32_t offs[INTERP_NFIELDS] = {l->interp_next, l->interp_id, l->interp_threads_head,
                                          l->interp_gil_ptr};
    struct memsrc_iov iov[INTERP_NFIELDS];
    size_t n = 0;
    int rc;

    for (size_t i = 0; i < INTERP_NFIELDS; i++) {
        f[i] = 0;
        if (offs[i] >= 0)
            iov[n++] = (struct memsrc_iov){
                .addr = interp + (uint64_t)offs[i], .buf = &f[i], .len = sizeof(f[i])};
    }
    rc = memsrc_readv(c->src, iov, n, err);
    if (rc < 0)
        ps_err_prefix(err, "reading the interpreter state at 0x%llx: ", (unsigned long long)interp);
    return rc;
}

/* GIL facts: 3.12+ per interpreter through a pointer, 3.11 one GIL inside the runtime. */
static void read_gil(const struct pyctx *c, uint64_t gil_ptr, struct walk_interp *wi)
{
    const struct layout *l = c->lay;
    uint8_t g[64];
    struct ps_err ignored = {0};
    uint64_t gil = 0;
    int32_t locked;

    if (LAYOUT_HAS(l, interp_gil_ptr))
        gil = gil_ptr;
    else if (LAYOUT_HAS(l, runtime_gil))
        gil = c->syms->runtime + (uint64_t)l->runtime_gil;
    wi->gil = gil;
    if (!gil || l->gil_switch_number + 8 > (int32_t)sizeof(g))
        return;
    if (memsrc_read(c->src, gil, g, (size_t)l->gil_switch_number + 8, &ignored) < 0) {
        wi->gil = 0;
        return;
    }
    locked = get_i32(g, l->gil_locked);
    wi->gil_holder = locked == 1 ? get64(g, l->gil_last_holder) : 0;
    wi->gil_switches = get64(g, l->gil_switch_number);
}

static void fill_tstate(const struct layout *l, const uint8_t *blk, uint64_t addr, uint64_t interp,
                        int64_t interp_id, struct walk_tstate *t)
{
    t->addr = addr;
    t->interp = interp;
    t->interp_id = interp_id;
    t->thread_id = get64(blk, l->tstate_thread_id);
    t->native_id = (pid_t)get_i64(blk, l->tstate_native_thread_id);
    t->has_status = LAYOUT_HAS(l, tstate_status);
    t->status_bits = t->has_status ? (uint32_t)get_i32(blk, l->tstate_status) : 0;
}

static int walk_interp_threads(const struct pyctx *c, uint64_t interp, int64_t interp_id,
                               uint64_t head, struct walk_tstate *ts, size_t cap, size_t *n,
                               struct ps_err *err)
{
    const struct layout *l = c->lay;
    uint8_t blk[WALK_BLOCK_MAX];
    size_t len = tstate_len(l);
    uint64_t t = head;
    size_t seen = 0;
    int rc;

    while (t) {
        if (seen++ >= WALK_MAX_THREADS || *n >= cap)
            return ps_err_set(err, -PS_ELIMIT,
                              "more than %zu thread states in interpreter %lld: the list loops "
                              "or the process is unusual",
                              cap, (long long)interp_id);
        rc = read_block(c, t, blk, len, "thread state", err);
        /* An unreadable thread state in the list is the list changing under the walk (a thread
         * ended: its freed state's `next` read as garbage, under load 1 dump in ~500 on a
         * churning 3.13), as the back-pointer check below: -PS_ECORRUPT, which callers retry. */
        if (rc < 0 && rc != -PS_EGONE && rc != -ENOMEM && err) {
            char why[PS_ERR_MSG_MAX];

            memcpy(why, err->msg, sizeof(why)); /* replaced below: err->msg cannot be an argument */
            return ps_err_replace(err, -PS_ECORRUPT,
                                  "%s (the thread list changed while read, or the %s layout is "
                                  "wrong)",
                                  why, l->name);
        }
        if (rc < 0)
            return rc == -PS_EGONE || rc == -ENOMEM ? rc : -PS_ECORRUPT;
        if (get64(blk, l->tstate_interp) != interp)
            return ps_err_set(err, -PS_ECORRUPT,
                              "thread state 0x%llx does not point back at interpreter 0x%llx: "
                              "the thread list changed while read, or the %s layout is wrong",
                              (unsigned long long)t, (unsigned long long)interp, l->name);
        fill_tstate(l, blk, t, interp, interp_id, &ts[(*n)++]);
        if (get64(blk, l->tstate_next) == t)
            return ps_err_set(err, -PS_ECORRUPT, "thread state 0x%llx links to itself",
                              (unsigned long long)t);
        t = get64(blk, l->tstate_next);
    }
    return 0;
}

int walk_tstates(const struct pyctx *c, struct walk_tstate *ts, size_t cap, size_t *n,
                 struct walk_interp *interps, size_t *ninterps, struct ps_err *err)
{
    const struct layout *l = c->lay;
    uint64_t f[INTERP_NFIELDS];
    uint64_t interp;
    size_t count = 0, ni = 0;
    bool refreshed = false;
    int rc;

    rc = memsrc_read_u64(c->src, c->syms->runtime + (uint64_t)l->runtime_interpreters_head, &interp,
                         err);
    if (rc < 0)
        return rc;
    while (interp) {
        struct walk_interp wi = {.addr = interp};

        if (ni >= WALK_MAX_INTERPS)
            return ps_err_set(err, -PS_ELIMIT, "more than %d interpreters: the list loops",
                              WALK_MAX_INTERPS);
        rc = read_interp(c, interp, f, err);
        if (rc < 0)
            return rc;
        wi.id = (int64_t)f[INTERP_ID];
        read_gil(c, f[INTERP_GIL], &wi);
        rc = walk_interp_threads(c, interp, wi.id, f[INTERP_THREADS], ts, cap, &count, err);
        if (rc < 0)
            return rc;
        if (interps)
            interps[ni] = wi;
        ni++;
        interp = f[INTERP_NEXT];
    }
    /* The target's ids are its pid namespace's; /proc, ptrace and the tracer use ours. */
    for (size_t i = 0; i < count; i++)
        ts[i].native_id = tidmap_host_tid(c->tids, ts[i].native_id, &refreshed);
    *n = count;
    if (ninterps)
        *ninterps = ni;
    return 0;
}

/* ---- stacks ------------------------------------------------------------------------------ */

int walk_stack_init(struct walk_stack *st, struct ps_err *err)
{
    struct walk_scratch *s;

    memset(st, 0, sizeof(*st));
    st->frames = calloc(WALK_MAX_DEPTH, sizeof(*st->frames));
    s = calloc(1, sizeof(*s));
    if (s) {
        s->instr = calloc(WALK_MAX_DEPTH, sizeof(*s->instr));
        s->uniq = calloc(WALK_MAX_DEPTH, sizeof(*s->uniq));
        s->hdrs = malloc((size_t)WALK_MAX_DEPTH * CODE_HEADER_MAX);
        s->idx = calloc(WALK_MAX_DEPTH, sizeof(*s->idx));
        s->fps = calloc(WALK_MAX_DEPTH, sizeof(*s->fps));
        s->spec_chunk = malloc(WALK_SPEC_CHUNK_MAX);
        s->spec_hdrs = malloc(WALK_SPEC_CODE_BYTES);
    }
    st->scratch = s;
    if (!st->frames || !s || !s->instr || !s->uniq || !s->hdrs || !s->idx || !s->spec_chunk ||
        !s->spec_hdrs || !s->fps) {
        walk_stack_free(st);
        return ps_err_set(err, -ENOMEM, "cannot allocate a stack buffer: out of memory");
    }
    return 0;
}

void walk_stack_free(struct walk_stack *st)
{
    struct walk_scratch *s;

    if (!st)
        return;
    s = st->scratch;
    if (s) {
        free(s->bytes);
        free(s->instr);
        free(s->uniq);
        free(s->hdrs);
        free(s->idx);
        free(s->spec_chunk);
        free(s->spec_hdrs);
        free(s->fps);
        free(s);
    }
    free(st->frames);
    memset(st, 0, sizeof(*st));
}

/* Reserve len bytes of chunk scratch (grows up to WALK_MAX_CHUNK_BYTES; never shrinks, so a
 * long-running sampler reaches a fixed footprint). */
static int scratch_reserve(struct walk_scratch *s, size_t len, uint8_t **out, struct ps_err *err)
{
    size_t need = s->used + len;

    if (need > WALK_MAX_CHUNK_BYTES)
        return ps_err_set(err, -PS_ELIMIT,
                          "a thread's frame stack is over %u MiB: not a plausible stack",
                          WALK_MAX_CHUNK_BYTES >> 20);
    if (need > s->cap) {
        size_t ncap = s->cap ? s->cap : 32768;
        uint8_t *nb;

        while (ncap < need)
            ncap *= 2;
        nb = realloc(s->bytes, ncap);
        if (!nb)
            return ps_err_set(err, -ENOMEM, "cannot grow the stack buffer: out of memory");
        /* Rebase existing chunk copies into the moved buffer. */
        for (size_t i = 0; i < s->nchunks; i++)
            s->chunks[i].buf = nb + (s->chunks[i].buf - s->bytes);
        s->bytes = nb;
        s->cap = ncap;
    }
    *out = s->bytes + s->used;
    s->used = need;
    return 0;
}

static int copy_chunk(const struct pyctx *c, struct walk_scratch *s, uint64_t start, uint64_t len,
                      struct ps_err *err)
{
    uint8_t *buf = NULL;
    int rc;

    if (s->nchunks >= WALK_MAX_CHUNKS)
        return ps_err_set(err, -PS_ELIMIT, "more than %d data-stack chunks in one thread",
                          WALK_MAX_CHUNKS);
    if (len > MEMSRC_MAX_READ)
        return ps_err_set(err, -PS_ECORRUPT, "data-stack chunk of %llu bytes: implausible",
                          (unsigned long long)len);
    rc = scratch_reserve(s, (size_t)len, &buf, err);
    if (rc < 0)
        return rc;
    rc = memsrc_read(c->src, start, buf, (size_t)len, err);
    if (rc < 0)
        return rc;
    s->chunks[s->nchunks++] = (struct chunk_copy){.start = start, .len = len, .buf = buf};
    return 0;
}

/* Copy older chunks (each up to its saved top, a slot index), starting at chunk. */
static int copy_older_chunks(const struct pyctx *c, struct walk_scratch *s, uint64_t chunk,
                             struct ps_err *err)
{
    const struct layout *l = c->lay;
    uint8_t hdr[64];
    int rc;

    while (chunk && s->nchunks < WALK_MAX_CHUNKS) {
        uint64_t size, slots, len;

        if (l->chunk_data > (int32_t)sizeof(hdr))
            return ps_err_set(err, -PS_ECORRUPT, "chunk header too big: layout is wrong");
        rc = memsrc_read(c->src, chunk, hdr, (size_t)l->chunk_data, err);
        if (rc < 0)
            return rc;
        size = get64(hdr, l->chunk_size);
        slots = get64(hdr, l->chunk_top);
        len = (uint64_t)l->chunk_data + slots * 8;
        if (slots > MEMSRC_MAX_READ / 8 || len > size)
            return ps_err_set(err, -PS_ECORRUPT, "data-stack chunk 0x%llx has top %llu > size %llu",
                              (unsigned long long)chunk, (unsigned long long)slots,
                              (unsigned long long)size);
        rc = copy_chunk(c, s, chunk, len, err);
        if (rc < 0)
            return rc;
        chunk = get64(hdr, l->chunk_previous);
    }
    return 0;
}

/* Copy the live part of every data-stack chunk: the newest up to datastack_top, older ones up
 * to their saved top. */
static int copy_chunks(const struct pyctx *c, struct walk_scratch *s, uint64_t chunk, uint64_t top,
                       struct ps_err *err)
{
    int rc;

    s->nchunks = 0;
    s->used = 0;
    if (!chunk || top <= chunk || top - chunk > MEMSRC_MAX_READ)
        return 0; /* no chunk, or an implausible top: frames will be read one by one */
    rc = copy_chunk(c, s, chunk, top - chunk, err);
    if (rc < 0)
        return rc;
    return copy_older_chunks(c, s, get64(s->chunks[0].buf, c->lay->chunk_previous), err);
}

/* Remember a frame that lives outside the chunks, for the next walk's speculative read. */
static void note_extra(struct walk_spec *sp, uint64_t f)
{
    if (sp->nseen < WALK_HINT_EXTRA)
        sp->seen[sp->nseen++] = f;
}

/* Frame bytes: from a chunk copy when the frame lies wholly inside one, else from the
 * speculative read, else one read. */
static int frame_bytes(const struct pyctx *c, struct walk_scratch *s, const struct walk_hint *h,
                       uint64_t f, uint8_t *blk, size_t len, struct ps_err *err)
{
    struct walk_spec *sp = &s->spec;

    for (size_t i = 0; i < s->nchunks; i++) {
        const struct chunk_copy *cc = &s->chunks[i];

        if (f >= cc->start && f - cc->start <= cc->len && cc->len - (f - cc->start) >= len) {
            memcpy(blk, cc->buf + (f - cc->start), len);
            return 0;
        }
    }
    note_extra(sp, f);
    for (uint32_t i = 0; i < sp->nextra && len <= WALK_FRAME_COPY; i++) {
        if (h->extra[i] == f) {
            memcpy(blk, sp->extra[i], len);
            return 0;
        }
    }
    return read_block(c, f, blk, len, "frame", err);
}

int walk_current_frame(const struct pyctx *c, uint64_t tstate, uint64_t *frame, struct ps_err *err)
{
    const struct layout *l = c->lay;
    uint64_t cframe;
    int rc;

    if (LAYOUT_HAS(l, tstate_current_frame))
        return memsrc_read_u64(c->src, tstate + (uint64_t)l->tstate_current_frame, frame, err);
    rc = memsrc_read_u64(c->src, tstate + (uint64_t)l->tstate_cframe, &cframe, err);
    if (rc < 0)
        return rc;
    if (!cframe) {
        *frame = 0;
        return 0;
    }
    return memsrc_read_u64(c->src, cframe + (uint64_t)l->cframe_current_frame, frame, err);
}

/* Follow `previous` from the top frame, recording candidate frames (shims skipped). */
/*
 * Does the chain end where a complete thread stack ends? Every run of Python frames starts in a
 * C call of the evaluation loop: on 3.12+ that call pushes a C-stack shim (owner 3) whose
 * `previous` is NULL at the bottom of the thread; on 3.11 the bottom frame carries is_entry. A
 * chain that ends anywhere else was cut while it was read, e.g. at a coroutine frame that its
 * task suspended in between (a suspended generator's frame has previous == NULL).
 */
static bool chain_complete(const struct layout *l, uint8_t last_owner, bool last_entry)
{
    if (l->frame_owner_cstack >= 0)
        return last_owner == (uint8_t)l->frame_owner_cstack;
    return !LAYOUT_HAS(l, frame_is_entry) || last_entry;
}

/*
 * 3.11: does a chain that ends at a frame not owned by the thread (a generator's) end at the
 * bottom of the thread? Such a frame keeps is_entry after its generator yields, and its
 * `previous` is then NULL: a chain read across a yield stops there and looks complete, its
 * caller's frames lost. The _PyCFrame the walk started from knows: every evaluation-loop call
 * pushes one _PyCFrame, linked by `previous` down to the root _PyCFrame inside the thread state,
 * and marks its first frame is_entry; so a whole chain holds exactly as many entry frames as
 * there are _PyCFrames above the root, counted from the walk's. The root is matched by its
 * address (a _PyCFrame read after its evaluation loop returned is C-stack garbage: its
 * `previous` may point anywhere). One read per _PyCFrame, at most nentries; only for these
 * chains (rare unless a generator is resumed from C at a high rate, and then usually cut). A
 * read that fails, a count that differs: the chain was cut (torn).
 */
static int entries_match_cframes(const struct pyctx *c, uint64_t tstate, uint64_t cframe,
                                 size_t nentries, struct ps_err *err)
{
    const struct layout *l = c->lay;
    struct ps_err ignored = {0};
    uint64_t root;
    size_t above_root = 0;

    if (!LAYOUT_HAS(l, cframe_previous) || !LAYOUT_HAS(l, tstate_root_cframe))
        return 0;
    root = tstate + (uint64_t)l->tstate_root_cframe;
    while (cframe && cframe != root && above_root < nentries) {
        if (memsrc_read_u64(c->src, cframe + (uint64_t)l->cframe_previous, &cframe, &ignored) < 0)
            break;
        above_root++;
    }
    if (cframe == root && above_root == nentries)
        return 0;
    return ps_err_set(err, -PS_ECORRUPT,
                      "the frame chain was cut while it was read (it ends at a generator's frame "
                      "above the thread's first evaluation-loop entry)");
}

/* Record one Python frame of the chain (not a shim). */
static void push_frame(const struct pyctx *c, struct walk_stack *st, uint64_t f, const uint8_t *blk,
                       uint8_t owner)
{
    const struct layout *l = c->lay;
    struct walk_frame *wf = &st->frames[st->n];

    memset(wf, 0, sizeof(*wf));
    wf->frame_addr = f;
    wf->code_addr = get64(blk, l->frame_code);
    wf->owner = owner;
    wf->is_entry = LAYOUT_HAS(l, frame_is_entry) && blk[l->frame_is_entry] != 0;
    st->scratch->instr[st->n++] = get64(blk, l->frame_instr);
}

static int chain_frames(const struct pyctx *c, struct walk_stack *st, const struct walk_hint *h,
                        uint64_t tstate, uint64_t f, struct ps_err *err)
{
    const struct layout *l = c->lay;
    struct walk_scratch *s = st->scratch;
    uint8_t blk[WALK_BLOCK_MAX];
    size_t len = frame_len(l);
    size_t steps = 0;
    uint8_t owner = 0;
    bool entry = false;
    size_t nentries = 0;
    int rc;

    while (f) {
        uint64_t prev;

        if (st->n >= WALK_MAX_DEPTH || steps++ >= 2 * (size_t)WALK_MAX_DEPTH) {
            st->truncated = true;
            return 0;
        }
        rc = frame_bytes(c, s, h, f, blk, len, err);
        if (rc < 0)
            return rc;
        owner = blk[l->frame_owner];
        entry = LAYOUT_HAS(l, frame_is_entry) && blk[l->frame_is_entry] != 0;
        nentries += entry;
        prev = get64(blk, l->frame_previous);
        if (steps == 1)
            st->top_instr = get64(blk, l->frame_instr);
        if (owner > (uint8_t)l->frame_owner_max || prev == f)
            return ps_err_set(err, -PS_ECORRUPT, "frame 0x%llx is invalid (owner %u)",
                              (unsigned long long)f, owner);
        if (l->frame_owner_cstack >= 0 && owner == (uint8_t)l->frame_owner_cstack) {
            /* A C-stack shim: the Python frame recorded just before it entered from C. */
            if (!st->entry_shim)
                st->entry_shim = f;
            if (st->n > 0)
                st->frames[st->n - 1].is_entry = true;
        } else if (get64(blk, l->frame_code) != c->syms->none) {
            push_frame(c, st, f, blk, owner);
        }
        f = prev;
    }
    if (steps > 0 && !chain_complete(l, owner, entry))
        return ps_err_set(err, -PS_ECORRUPT,
                          "the frame chain was cut while it was read (it ends at a frame of "
                          "owner %u, not at the thread's first evaluation-loop entry)",
                          owner);
    if (steps > 0 && LAYOUT_HAS(l, frame_is_entry) && owner != (uint8_t)l->frame_owner_thread)
        return entries_match_cframes(c, tstate, st->cframe, nentries, err);
    return 0;
}

/* Index of code address a in the unique list, adding it when new (n <= WALK_MAX_DEPTH). A
 * linear scan from the end: stacks repeat recent code (recursion), and n is small in practice;
 * the worst case (8192 distinct) is bounded. */
static size_t uniq_index(uint64_t *uniq, size_t *n, uint64_t a)
{
    for (size_t i = *n; i > 0; i--)
        if (uniq[i - 1] == a)
            return i - 1;
    uniq[*n] = a;
    return (*n)++;
}

/* The speculative copy of code header a, or NULL. */
static const uint8_t *spec_header(const struct walk_scratch *s, const struct walk_hint *h,
                                  uint64_t a)
{
    for (uint32_t i = 0; i < s->spec.ncode; i++)
        if (h->code[i] == a)
            return s->spec_hdrs + s->spec.code_off[i];
    return NULL;
}

static int read_code_headers(const struct pyctx *c, struct walk_stack *st,
                             const struct walk_hint *h, size_t *idx_out, size_t *nuniq,
                             struct ps_err *err)
{
    struct walk_scratch *s = st->scratch;
    struct memsrc_iov iov[MEMSRC_MAX_IOV];
    size_t hlen = code_header_len(c->lay);
    size_t n = 0, k = 0;
    int rc;

    if (hlen > CODE_HEADER_MAX)
        return ps_err_set(err, -PS_ECORRUPT, "code header of %zu bytes: layout is wrong", hlen);
    for (size_t i = 0; i < st->n; i++)
        idx_out[i] = uniq_index(s->uniq, &n, st->frames[i].code_addr);
    for (size_t j = 0; j <= n; j++) {
        const uint8_t *spec = j < n ? spec_header(s, h, s->uniq[j]) : NULL;

        if (spec)
            memcpy(s->hdrs + j * CODE_HEADER_MAX, spec, hlen);
        else if (j < n)
            iov[k++] = (struct memsrc_iov){
                .addr = s->uniq[j], .buf = s->hdrs + j * CODE_HEADER_MAX, .len = hlen};
        if (k == MEMSRC_MAX_IOV || (j == n && k > 0)) {
            rc = memsrc_readv(c->src, iov, k, err);
            if (rc < 0) {
                ps_err_prefix(err, "reading code objects: ");
                return rc;
            }
            k = 0;
        }
    }
    *nuniq = n;
    return 0;
}

/* Compute each frame's code unit, check it, and drop incomplete frames (in place). */
static int finish_frames(const struct pyctx *c, struct walk_stack *st, const size_t *idx,
                         size_t nuniq, struct ps_err *err)
{
    const struct layout *l = c->lay;
    struct walk_scratch *s = st->scratch;
    size_t out = 0;

    for (size_t u = 0; u < nuniq; u++)
        code_fp_parse(l, s->hdrs + u * CODE_HEADER_MAX, &s->fps[u]);
    for (size_t i = 0; i < st->n; i++) {
        struct walk_frame wf = st->frames[i];
        uint64_t base;
        int64_t diff;

        wf.fp = s->fps[idx[i]];
        if (wf.fp.type != c->syms->code_type || wf.fp.size > (1u << 24))
            return ps_err_set(err, -PS_ECORRUPT,
                              "frame 0x%llx has no valid code object (0x%llx): the stack "
                              "changed while read, or the %s layout is wrong",
                              (unsigned long long)wf.frame_addr, (unsigned long long)wf.code_addr,
                              l->name);
        base = wf.code_addr + (uint64_t)l->code_code_adaptive;
        diff = (int64_t)(s->instr[i] - base);
        if (diff % 2 != 0 || diff < -2 || diff / 2 > (int64_t)wf.fp.size)
            return ps_err_set(err, -PS_ECORRUPT,
                              "frame 0x%llx points outside its bytecode (offset %lld of %llu "
                              "units)",
                              (unsigned long long)wf.frame_addr, (long long)diff,
                              (unsigned long long)wf.fp.size);
        wf.unit = diff / 2;
        /* _PyFrame_IsIncomplete: still in the prologue, before the first RESUME. */
        if (wf.owner != (uint8_t)c->lay->frame_owner_generator && wf.unit < wf.fp.firsttraceable) {
            if (wf.is_entry && out > 0)
                st->frames[out - 1].is_entry = true;
            continue;
        }
        st->frames[out++] = wf;
    }
    st->n = out;
    return 0;
}

/* The hint slot of a thread; a different thread in the slot is replaced (fresh hint). */
static struct walk_hint *hint_of(struct walk_scratch *s, uint64_t tstate)
{
    struct walk_hint *h = &s->hints[(tstate >> 6) % WALK_HINTS];

    if (h->tstate != tstate) {
        memset(h, 0, sizeof(*h));
        h->tstate = tstate;
    }
    return h;
}

/* Queue the hinted code headers (h->code is sorted by address) after iov[0..n), grouping
 * neighbours (WALK_CODE_GROUP); sets spec.ncode to how many were queued. */
static size_t spec_code_iov(struct walk_scratch *s, const struct walk_hint *h, size_t hlen,
                            struct memsrc_iov *iov, size_t n)
{
    struct walk_spec *sp = &s->spec;
    size_t used = 0;
    uint32_t i = 0;

    while (i < h->ncode) {
        uint64_t start = h->code[i];
        uint32_t j = i + 1;
        size_t span;

        while (j < h->ncode && h->code[j] >= start && h->code[j] - start <= WALK_CODE_GROUP - hlen)
            j++;
        span = (size_t)(h->code[j - 1] - start) + hlen;
        if (used + span > WALK_SPEC_CODE_BYTES)
            break;
        iov[n++] = (struct memsrc_iov){.addr = start, .buf = s->spec_hdrs + used, .len = span};
        for (; i < j; i++)
            sp->code_off[i] = (uint32_t)(used + (h->code[i] - start));
        used += span;
    }
    sp->ncode = i;
    return n;
}

/* Queue the hint's predictions after iov[0..n): the _PyCFrame's current frame, the newest chunk,
 * outside frames, code headers, then the tail (the current-frame words again; process_vm_readv
 * and the other backends read ranges in order, so the tail is read after every frame byte). */
static size_t spec_iov(const struct layout *l, struct walk_scratch *s, const struct walk_hint *h,
                       struct memsrc_iov *iov, size_t n)
{
    struct walk_spec *sp = &s->spec;
    size_t flen = frame_len(l), hlen = code_header_len(l), first = n;

    if (h->cframe)
        iov[n++] = (struct memsrc_iov){
            .addr = h->cframe + (uint64_t)l->cframe_current_frame, .buf = &sp->cur_frame, .len = 8};
    if (h->chunk && h->spec_len)
        iov[n++] = (struct memsrc_iov){.addr = h->chunk, .buf = s->spec_chunk, .len = h->spec_len};
    for (uint32_t i = 0; i < h->nextra && flen <= WALK_FRAME_COPY; i++)
        iov[n++] = (struct memsrc_iov){.addr = h->extra[i], .buf = sp->extra[i], .len = flen};
    if (hlen <= CODE_HEADER_MAX)
        n = spec_code_iov(s, h, hlen, iov, n);
    if (n == first)
        return n; /* nothing predicted: no tail either */
    if (LAYOUT_HAS(l, tstate_current_frame)) {
        iov[n++] = (struct memsrc_iov){.addr = h->tstate + (uint64_t)l->tstate_current_frame,
                                       .buf = &sp->tail_frame,
                                       .len = 8};
        return n;
    }
    iov[n++] = (struct memsrc_iov){
        .addr = h->tstate + (uint64_t)l->tstate_cframe, .buf = &sp->tail_cframe, .len = 8};
    sp->tail_at = h->cframe;
    if (h->cframe)
        iov[n++] = (struct memsrc_iov){.addr = h->cframe + (uint64_t)l->cframe_current_frame,
                                       .buf = &sp->tail_frame,
                                       .len = 8};
    return n;
}

/* One scatter read: the thread state block and the caller's co-reads, plus everything the hint
 * predicts. On failure (a predicted address is gone), the hint is dropped and only the thread
 * state and the co-reads are read. */
static int spec_read(const struct pyctx *c, struct walk_stack *st, struct walk_hint *h,
                     uint8_t *blk, size_t blen, struct ps_err *err)
{
    const struct layout *l = c->lay;
    struct walk_scratch *s = st->scratch;
    struct memsrc_iov iov[1 + WALK_MAX_CO_READS + 4 + WALK_HINT_EXTRA + WALK_HINT_CODES];
    struct walk_spec *sp = &s->spec;
    struct ps_err ignored = {0};
    size_t n = 0, nbase;
    int rc;

    if (blen > WALK_BLOCK_MAX || st->nco_reads > WALK_MAX_CO_READS)
        return ps_err_set(err, blen > WALK_BLOCK_MAX ? -PS_ECORRUPT : -EINVAL,
                          "a walk asked for a %zu-byte thread state or %zu co-reads: over the caps",
                          blen, st->nco_reads);
    memset(sp, 0, offsetof(struct walk_spec, extra));
    sp->nseen = 0;
    iov[n] = (struct memsrc_iov){.addr = h->tstate, .len = blen};
    iov[n++].buf = blk;
    for (size_t i = 0; i < st->nco_reads; i++)
        iov[n++] = st->co_reads[i];
    nbase = n;
    n = spec_iov(l, s, h, iov, n);
    if (n > nbase && memsrc_readv(c->src, iov, n, &ignored) == 0) {
        sp->cur_ok = h->cframe != 0;
        sp->chunk_ok = h->chunk && h->spec_len;
        sp->nextra = frame_len(l) <= WALK_FRAME_COPY ? h->nextra : 0;
        if (code_header_len(l) > CODE_HEADER_MAX)
            sp->ncode = 0;
        sp->tail_ok = true;
        return 0;
    }
    sp->ncode = 0;
    if (n > nbase) {
        uint64_t tstate = h->tstate;

        memset(h, 0, sizeof(*h));
        h->tstate = tstate;
    }
    rc = memsrc_readv(c->src, iov, nbase, err);
    if (rc < 0)
        ps_err_prefix(err, "reading the thread state at 0x%llx: ", (unsigned long long)h->tstate);
    return rc;
}

/* The thread's current frame from its thread-state block (3.13: a field; 3.11/3.12: through
 * the _PyCFrame, from the speculative read when the cframe is the predicted one). */
static int top_frame_of(const struct pyctx *c, const struct walk_scratch *s,
                        const struct walk_hint *h, const uint8_t *blk, uint64_t *cframe_out,
                        uint64_t *frame, struct ps_err *err)
{
    const struct layout *l = c->lay;
    uint64_t cframe;

    *cframe_out = 0;
    if (LAYOUT_HAS(l, tstate_current_frame)) {
        *frame = get64(blk, l->tstate_current_frame);
        return 0;
    }
    cframe = get64(blk, l->tstate_cframe);
    *cframe_out = cframe;
    *frame = 0;
    if (!cframe)
        return 0;
    if (s->spec.cur_ok && cframe == h->cframe) {
        *frame = s->spec.cur_frame;
        return 0;
    }
    return memsrc_read_u64(c->src, cframe + (uint64_t)l->cframe_current_frame, frame, err);
}

/* Chunks: the newest from the speculative read when the thread state confirms it. */
static int take_chunks(const struct pyctx *c, struct walk_scratch *s, const struct walk_hint *h,
                       const uint8_t *blk, struct ps_err *err)
{
    const struct layout *l = c->lay;
    uint64_t chunk = get64(blk, l->tstate_datastack_chunk);
    uint64_t top = get64(blk, l->tstate_datastack_top);

    if (!(s->spec.chunk_ok && chunk == h->chunk && top > chunk && top - chunk <= h->spec_len))
        return copy_chunks(c, s, chunk, top, err);
    s->nchunks = 0;
    s->used = 0;
    s->chunks[s->nchunks++] =
        (struct chunk_copy){.start = chunk, .len = top - chunk, .buf = s->spec_chunk};
    return copy_older_chunks(c, s, get64(s->spec_chunk, l->chunk_previous), err);
}

/* The next walk's code headers: this walk's codes, then the previous hint's others (most
 * recent first, WALK_HINT_CODES at most), so a thread alternating between a few stacks finds
 * all their headers in its one speculative read. */
static void hint_codes(struct walk_hint *h, const uint64_t *uniq, size_t nuniq)
{
    uint64_t old[WALK_HINT_CODES];
    uint32_t nold = h->ncode, n = 0;

    memcpy(old, h->code, sizeof(old[0]) * nold);
    for (size_t i = 0; i < nuniq && n < WALK_HINT_CODES; i++)
        h->code[n++] = uniq[i];
    for (uint32_t i = 0; i < nold && n < WALK_HINT_CODES; i++) {
        bool dup = false;

        for (size_t j = 0; j < nuniq && !dup; j++)
            dup = uniq[j] == old[i];
        if (!dup)
            h->code[n++] = old[i];
    }
    h->ncode = n;
    /* Sorted by address, so that neighbours can be read as one range (insertion sort: 64). */
    for (uint32_t i = 1; i < n; i++) {
        uint64_t v = h->code[i];
        uint32_t j = i;

        for (; j > 0 && h->code[j - 1] > v; j--)
            h->code[j] = h->code[j - 1];
        h->code[j] = v;
    }
}

/* Remember what this walk found, for the next one. */
static void hint_update(const struct layout *l, struct walk_scratch *s, struct walk_hint *h,
                        const uint8_t *blk, uint64_t cframe, size_t nuniq)
{
    uint64_t chunk = get64(blk, l->tstate_datastack_chunk);
    uint64_t top = get64(blk, l->tstate_datastack_top);
    uint64_t size = 0;

    h->cframe = cframe;
    h->chunk = 0;
    h->spec_len = 0;
    if (s->nchunks > 0 && s->chunks[0].start == chunk && top > chunk)
        size = get64(s->chunks[0].buf, l->chunk_size);
    if (size && top - chunk + WALK_SPEC_SLACK <= WALK_SPEC_CHUNK_MAX) {
        /* Room for the stack to grow: WALK_SPEC_SLACK bytes, then to the end of that page (the
         * kernel pins whole pages, so the rest of the page is nearly free); never past the
         * chunk's own end. */
        uint64_t want = ((top + WALK_SPEC_SLACK + 4095) & ~(uint64_t)4095) - chunk;

        if (want > WALK_SPEC_CHUNK_MAX)
            want = WALK_SPEC_CHUNK_MAX;
        h->chunk = chunk;
        h->spec_len = want < size ? want : size;
    }
    h->nextra = s->spec.nseen;
    memcpy(h->extra, s->spec.seen, sizeof(h->extra[0]) * s->spec.nseen);
    hint_codes(h, s->uniq, nuniq);
}

/*
 * Did the speculative read's tail find the top where its head found it? Only meaningful when
 * that read was the walk's only one (the caller checks): then the frames the walk used were
 * all copied between two reads showing the same cframe and current frame. That is the check
 * the sampler would otherwise make with one more read after the walk (and the same ABA caveat:
 * a frame popped and another pushed at the same address in between is not seen, the code
 * header checks catch most of those); the top frame's instruction pointer is not compared,
 * because a running thread changes it constantly and a sampler accepts that skew.
 */
static bool tail_confirms(const struct layout *l, const struct walk_spec *sp,
                          const struct walk_stack *st)
{
    if (!sp->tail_ok)
        return false;
    if (LAYOUT_HAS(l, tstate_current_frame))
        return sp->tail_frame == st->top_frame;
    if (sp->tail_cframe != st->cframe)
        return false;
    return st->cframe == 0 || (sp->tail_at == st->cframe && sp->tail_frame == st->top_frame);
}

int walk_stack(const struct pyctx *c, uint64_t tstate, struct walk_stack *st, struct ps_err *err)
{
    const struct layout *l = c->lay;
    struct walk_scratch *s = st->scratch;
    struct walk_hint *h = hint_of(s, tstate);
    uint8_t blk[WALK_BLOCK_MAX];
    size_t nuniq = 0;
    uint64_t calls;
    bool have_blk;
    int rc;

    st->n = 0;
    st->entry_shim = 0;
    st->top_confirmed = false;
    st->status_bits = 0;
    st->truncated = false;
    st->top_instr = 0;
    calls = c->src->stats.calls;
    rc = spec_read(c, st, h, blk, tstate_len(l), err);
    have_blk = rc == 0;
    if (rc == 0 && LAYOUT_HAS(l, tstate_status))
        st->status_bits = (uint32_t)get_i32(blk, l->tstate_status);
    if (rc == 0)
        rc = top_frame_of(c, s, h, blk, &st->cframe, &st->top_frame, err);
    if (rc == 0)
        rc = take_chunks(c, s, h, blk, err);
    if (rc == 0)
        rc = chain_frames(c, st, h, tstate, st->top_frame, err);
    if (rc == 0 && st->n > 0)
        rc = read_code_headers(c, st, h, s->idx, &nuniq, err);
    if (rc == 0 && st->n > 0)
        rc = finish_frames(c, st, s->idx, nuniq, err);
    if (rc == 0)
        st->top_confirmed = c->src->stats.calls == calls + 1 && tail_confirms(l, &s->spec, st);
    if (rc == 0)
        hint_update(l, s, h, blk, st->cframe, nuniq);
    else if (rc == -PS_ECORRUPT && have_blk)
        hint_update(l, s, h, blk, st->cframe, 0); /* torn: what it read, for the retry */
    else
        memset(h, 0, sizeof(*h)); /* a failed read: an address may be gone */
    return rc;
}

int walk_stack_changed(const struct pyctx *c, uint64_t tstate, const struct walk_stack *st,
                       bool *changed, struct ps_err *err)
{
    const struct layout *l = c->lay;
    uint64_t cframe = 0, frame = 0, instr = 0;
    struct memsrc_iov iov[3];
    size_t n = 0;
    int rc;

    /* One scatter read of: where the current frame is kept, the current frame, its instr. */
    if (LAYOUT_HAS(l, tstate_current_frame)) {
        iov[n++] = (struct memsrc_iov){tstate + (uint64_t)l->tstate_current_frame, &frame, 8};
    } else {
        iov[n++] = (struct memsrc_iov){tstate + (uint64_t)l->tstate_cframe, &cframe, 8};
        if (st->cframe)
            iov[n++] =
                (struct memsrc_iov){st->cframe + (uint64_t)l->cframe_current_frame, &frame, 8};
    }
    if (st->top_frame)
        iov[n++] = (struct memsrc_iov){st->top_frame + (uint64_t)l->frame_instr, &instr, 8};
    rc = memsrc_readv(c->src, iov, n, err);
    if (rc < 0)
        return rc;
    *changed = cframe != st->cframe || frame != st->top_frame || instr != st->top_instr;
    return 0;
}
