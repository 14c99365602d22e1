/* SPDX-License-Identifier: MIT OR GPL-2.0 */
/*
 * exc.bpf.c: the kernel-side exception reader, a uprobe program at the entry of
 * PyTraceBack_Here(PyFrameObject *) in the target (see docs/exceptions.md, "bpf"). It runs in
 * the raising thread at the hit, so everything it reads is consistent, and the thread never
 * stops. Loaded and attached by src/trace/bpf_exc.c, which writes `cfg` (layout offsets, addresses)
 * before loading: nothing version-specific is compiled in.
 *
 * Per hit: the interpreter frame of the frame object in rdi; the thread state from `tstates`
 * (tid -> tstate, filled by user space and by this program's fallback), checked against the
 * thread's native id; the in-flight exception. A hit that continues the thread's open
 * exception (`open`: same object, a traceback already, and the frame is the caller of the last
 * one) sends a small PROP record (the frame and its caller). Anything else is a new raise: its
 * type name is checked against the --type filter (dropped and counted when it does not match),
 * then the record gets the frame chain (code, instruction pointer per frame, up to
 * EXC_BPF_MAX_FRAMES) and copies of the object bytes the user-space describer reads (exception
 * header, type header, args tuple, the message str header and text, chained exceptions and
 * their types), so user space describes it with the ordinary readers from bytes taken at the
 * raise. Every loop is bounded; a failed read sends what was read (user space validates).
 *
 * License: MIT OR GPL-2.0; the kernel needs a GPL-compatible license string for the probe-read
 * helpers.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "exc_rec.h"

#ifndef SEC /* linters that do not see libbpf's headers (cppcheck) */
#define SEC(name)
#endif

/* x86-64 struct pt_regs (arch/x86/include/asm/ptrace.h): the first argument is di. */
struct exc_regs {
    __u64 r15, r14, r13, r12, bp, bx, r11, r10, r9, r8, ax, cx, dx, si, di;
};

const volatile struct exc_bpf_cfg cfg = {0};

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1 << 22); /* resized by the loader */
} events SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, EXC_BPF_THREADS);
    __type(key, __u32);
    __type(value, __u64);
} tstates SEC(".maps");

struct exc_open {
    __u64 key;    /* the exception object (3.11 unnormalised: its type) */
    __u64 expect; /* the caller frame of its last hit */
    __u64 filtered;
};

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, EXC_BPF_THREADS);
    __type(key, __u32);
    __type(value, struct exc_open);
} open SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct exc_bpf_rec);
} scratch SEC(".maps");

/* A CODE record being built (its own: the RAISE record in `scratch` is built meanwhile). */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct exc_bpf_code_rec);
} code_scratch SEC(".maps");

/* Code objects already sent in a CODE record (user space deletes those it could not resolve or
 * dropped from its cache; the LRU forgets the oldest: at worst a code is sent again). */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, EXC_BPF_CODES);
    __type(key, __u64);
    __type(value, __u32);
} known_codes SEC(".maps");

/* Raised static types whose name a RAISE record carried (user space keeps names by type). */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, EXC_BPF_TYPES);
    __type(key, __u64);
    __type(value, __u32);
} known_types SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, EXC_BPF_SITES);
    __type(key, struct exc_bpf_site);
    __type(value, __u64);
} sites SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct exc_bpf_ctl);
} ctl SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, EXC_BPF_CNT_N);
    __type(key, __u32);
    __type(value, __u64);
} counters SEC(".maps");

static __always_inline __u64 count_add(__u32 which, __u64 n)
{
    __u64 *v = bpf_map_lookup_elem(&counters, &which);

    if (!v)
        return 0;
    *v += n; /* per CPU: no other writer */
    return *v;
}

static __always_inline void count(__u32 which)
{
    count_add(which, 1);
}

/* Read a u64 at addr + off (off < 0: absent). 0 on failure. */
static __always_inline __u64 rd64(__u64 addr, __s32 off)
{
    __u64 v = 0;

    if (off < 0 || addr == 0 || bpf_probe_read_user(&v, sizeof(v), (const void *)(addr + off)))
        return 0;
    return v;
}

/* A u64 at byte off of a block of EXC_BPF_FRAME_BLOCK bytes (off is 8-aligned in every table). */
static __always_inline __u64 blk64(const __u8 *blk, __s32 off)
{
    return *(const __u64 *)(blk + ((__u32)off & (EXC_BPF_FRAME_BLOCK - 8)));
}

/* The thread state of tid: the map, else the runtime's current / the GIL holder; checked. */
static __always_inline __u64 thread_state(__u32 tid)
{
    __u64 *m = bpf_map_lookup_elem(&tstates, &tid);
    __u64 ts = m ? *m : 0;

    if (ts && rd64(ts, cfg.tstate_native_thread_id) == tid)
        return ts;
    if (cfg.runtime_tstate_current >= 0) {
        ts = rd64(cfg.runtime, cfg.runtime_tstate_current);
    } else {
        __u64 interp = rd64(cfg.runtime, cfg.runtime_interpreters_main);
        ts = rd64(rd64(interp, cfg.interp_gil_ptr), cfg.gil_last_holder);
    }
    if (!ts || rd64(ts, cfg.tstate_native_thread_id) != tid)
        return 0;
    bpf_map_update_elem(&tstates, &tid, &ts, BPF_ANY);
    return ts;
}

/*
 * Copy [addr, addr+len) into the record's blob as one more range (kept 8-aligned): its offset
 * in the blob, or -1 when unread or full. The program parses what it needs from the copy, so
 * each object is read once.
 */
static __always_inline int copy_range(struct exc_bpf_rec *r, __u64 addr, __u32 len)
{
    __u32 off = r->blob_len, n = r->nranges;

    if (!addr || len == 0 || len > EXC_BPF_RANGE_MAX || n >= EXC_BPF_MAX_RANGES ||
        off > EXC_BPF_BLOB - EXC_BPF_RANGE_MAX - 8)
        return -1;
    off &= EXC_BPF_BLOB - 1;
    len &= EXC_BPF_RANGE_MAX * 2 - 1;
    if (bpf_probe_read_user(&r->blob[off], len, (const void *)addr))
        return -1;
    n &= EXC_BPF_MAX_RANGES - 1;
    r->ranges[n].addr = addr;
    r->ranges[n].off = off;
    r->ranges[n].len = len;
    r->nranges = n + 1;
    r->blob_len = (off + len + 7) & ~7u;
    return (int)off;
}

/* The u64 at byte k of the copy at blob offset at (0 when at < 0). */
static __always_inline __u64 blob64(const struct exc_bpf_rec *r, int at, __s32 k)
{
    if (at < 0 || k < 0)
        return 0;
    return *(const __u64 *)&r->blob[((__u32)at + (__u32)k) & (EXC_BPF_BLOB - 8)];
}

/* A type's header through tp_flags (what the type-name cache checks): its flags, 0 if unread. */
static __always_inline __u64 copy_type(struct exc_bpf_rec *r, __u64 type)
{
    __s32 lo = cfg.type_name < cfg.type_flags ? cfg.type_name : cfg.type_flags;
    __s32 hi = (cfg.type_name > cfg.type_flags ? cfg.type_name : cfg.type_flags) + 8;
    int at;

    if (!type || lo < 0 || hi <= lo)
        return 0;
    at = copy_range(r, type + lo, (__u32)(hi - lo));
    return blob64(r, at, cfg.type_flags - lo);
}

/* A chained exception (__cause__ / __context__): its type pointer and its type's header. */
static __always_inline void copy_chained(struct exc_bpf_rec *r, __u64 other)
{
    if (!other || other == cfg.none)
        return;
    copy_type(r, blob64(r, copy_range(r, other + cfg.object_type, 8), 0));
}

/* The kind (1, 2 or 4 bytes a character) of a compact str from its state word, else 0 (not
 * compact: user space reads it). The bits are where the layout says (cfg.str_*). */
static __always_inline __u32 compact_kind(__u32 state)
{
    __u32 kind = (state >> cfg.str_kind_shift) & cfg.str_kind_mask;

    if (!(state & cfg.str_compact_mask) || (kind != 1 && kind != 2 && kind != 4))
        return 0;
    return kind;
}

/* A str object (compact forms): its header and up to 200 characters of text. */
static __always_inline void copy_str(struct exc_bpf_rec *r, __u64 s)
{
    __u32 state, kind, hlen = (__u32)cfg.str_state + 4;
    int at = copy_range(r, s, hlen);
    __u64 length, data;

    if (at < 0 || blob64(r, at, cfg.object_type) != cfg.unicode_type)
        return;
    length = blob64(r, at, cfg.str_length);
    state = (__u32)blob64(r, at, cfg.str_state);
    kind = compact_kind(state);
    if (!kind)
        return;
    data = s + ((state & cfg.str_ascii_mask) ? cfg.str_ascii_data : cfg.str_compact_data);
    if (length > 199)
        length = 199;
    copy_range(r, data, (__u32)length * kind);
}

/* The message candidate: args[0] of an instance, or 3.11's unnormalised str / tuple value. */
static __always_inline void copy_message(struct exc_bpf_rec *r, __u64 value, __u64 vtype,
                                         __u64 args)
{
    __u64 tup;

    if (vtype == cfg.unicode_type) {
        copy_str(r, value);
        return;
    }
    tup = vtype == cfg.tuple_type ? value : args;
    if (!tup || tup == cfg.none || cfg.tuple_items < 0)
        return;
    copy_str(r, blob64(r, copy_range(r, tup, (__u32)cfg.tuple_items + 8), cfg.tuple_items));
}

/*
 * Is the type's tp_name the filter, or "<something>.<filter>"? (The filter is the part of
 * --type after its last dot; user space checks the full name.) A name longer than the buffer
 * is compared by its head only, and an unreadable one passes: user space decides.
 */
static __always_inline int type_wanted(__u64 type)
{
    char name[EXC_BPF_TYPE_MAX * 2] = {0};
    __u32 n = cfg.type_filter_len, len, at;
    long got;

    if (n == 0 || n >= EXC_BPF_TYPE_MAX)
        return 1;
    got = bpf_probe_read_user_str(name, sizeof(name), (const void *)rd64(type, cfg.type_name));
    if (got <= 1 || got >= (long)sizeof(name))
        return 1;
    len = (__u32)got - 1;
    if (len < n)
        return 0;
    at = len - n;
    if (at > 0 && name[(at - 1) & (sizeof(name) - 1)] != '.')
        return 0;
    for (__u32 i = 0; i < EXC_BPF_TYPE_MAX; i++) {
        if (i >= n)
            break;
        if (name[(at + i) & (sizeof(name) - 1)] != cfg.type_filter[i])
            return 0;
    }
    return 1;
}

struct walk_ctx {
    struct exc_bpf_rec *r;
    __u64 f;
    __u32 n, max;
};

/* One link of the frame chain (a bpf_loop callback: verified once, not per iteration). */
static long walk_step(__u32 i, void *data)
{
    struct walk_ctx *w = data;
    __u8 blk[EXC_BPF_FRAME_BLOCK] = {0};
    __u64 code, f = w->f;
    __u32 n = w->n;
    __u8 owner;

    (void)i;
    if (!f)
        return 1;
    if (bpf_probe_read_user(blk, sizeof(blk) - 8, (const void *)f)) {
        count(EXC_BPF_CNT_READ_ERRORS);
        return 1;
    }
    code = blk64(blk, cfg.frame_code);
    owner = blk[(__u32)cfg.frame_owner & (EXC_BPF_FRAME_BLOCK - 1)];
    w->f = blk64(blk, cfg.frame_previous);
    if ((cfg.frame_owner_cstack >= 0 && owner == (__u8)cfg.frame_owner_cstack) ||
        code == cfg.none || !code)
        return 0; /* a C-stack shim */
    if (n >= w->max || n >= EXC_BPF_MAX_FRAMES) {
        w->r->truncated = 1;
        return 1;
    }
    w->r->frames[n].frame = f;
    w->r->frames[n].code = code;
    w->r->frames[n].instr = blk64(blk, cfg.frame_instr);
    w->n = n + 1;
    return 0;
}

/*
 * Follow the frame chain from f, recording up to max Python frames (C-stack shims and frames
 * without code skipped). Returns the number recorded; sets truncated when the chain went on.
 */
static __always_inline __u32 walk(struct exc_bpf_rec *r, __u64 f, __u32 max)
{
    struct walk_ctx w = {.r = r, .f = f, .max = max};

    r->truncated = 0; /* a walk of 2 frames before this one may have set it */
    bpf_loop(EXC_BPF_MAX_STEPS, walk_step, &w, 0);
    r->nframes = w.n;
    return w.n;
}

/* Send the first size bytes of r (bounded); counts a loss when the ring buffer is full (-1). */
static __always_inline int send(struct exc_bpf_rec *r, __u64 size, int raise)
{
    if (size > sizeof(*r))
        size = sizeof(*r);
    if (bpf_ringbuf_output(&events, r, size, 0)) {
        count(EXC_BPF_CNT_LOST);
        if (raise)
            count(EXC_BPF_CNT_LOST_RAISES);
        return -1;
    }
    return 0;
}

/*
 * A static type not in known_types: its header from 0 (what the type namer checks) and its
 * tp_name's bytes, so that user space names it when the target has exited before the record is
 * read. 1 when copied (the caller marks it known once the record is sent). Heap types: no.
 */
static __always_inline int copy_type_name(struct exc_bpf_rec *r, __u64 type)
{
    __u64 name, left;
    int at;

    if (!type || cfg.type_hdr_len == 0 || bpf_map_lookup_elem(&known_types, &type))
        return 0;
    at = copy_range(r, type, cfg.type_hdr_len);
    name = blob64(r, at, cfg.type_name);
    if (at < 0 || (blob64(r, at, cfg.type_flags) & cfg.heaptype_flag) || !name)
        return 0;
    left = 4096 - (name & 4095);
    if (left >= EXC_BPF_TYPE_NAME)
        return copy_range(r, name, EXC_BPF_TYPE_NAME) >= 0;
    if (copy_range(r, name, (__u32)left) < 0)
        return 0;
    copy_range(r, name + left, EXC_BPF_TYPE_NAME - (__u32)left); /* may end before: unread */
    return 1;
}

/* ---- CODE records ---- */

/* copy_range for a CODE record: [addr, addr+len) as its next range; its blob offset, or -1. */
static __always_inline int code_copy(struct exc_bpf_code_rec *c, __u64 addr, __u32 len)
{
    __u32 off = c->blob_len, n = c->nranges;

    if (!addr || len == 0 || len > EXC_BPF_CODE_RANGE_MAX || n >= EXC_BPF_CODE_RANGES ||
        off > EXC_BPF_CODE_BLOB - EXC_BPF_CODE_RANGE_MAX - 8)
        return -1;
    off &= EXC_BPF_CODE_BLOB - 1;
    len &= EXC_BPF_CODE_RANGE_MAX * 2 - 1;
    if (bpf_probe_read_user(&c->blob[off], len, (const void *)addr))
        return -1;
    n &= EXC_BPF_CODE_RANGES - 1;
    c->ranges[n].addr = addr;
    c->ranges[n].off = off;
    c->ranges[n].len = len;
    c->nranges = n + 1;
    c->blob_len = (off + len + 7) & ~7u;
    return (int)off;
}

/* The u64 at byte k of the CODE record's copy at blob offset at (0 when at < 0). */
static __always_inline __u64 code_blob64(const struct exc_bpf_code_rec *c, int at, __s32 k)
{
    if (at < 0 || k < 0)
        return 0;
    return *(const __u64 *)&c->blob[((__u32)at + (__u32)k) & (EXC_BPF_CODE_BLOB - 8)];
}

/* A name of a code object (a compact str): header, and text up to EXC_BPF_CODE_STR_MAX bytes. */
static __always_inline void code_str(struct exc_bpf_code_rec *c, __u64 s)
{
    __u32 state, kind;
    int at = code_copy(c, s, (__u32)cfg.str_state + 4);
    __u64 len;

    if (at < 0 || code_blob64(c, at, cfg.object_type) != cfg.unicode_type)
        return;
    state = (__u32)code_blob64(c, at, cfg.str_state);
    kind = compact_kind(state);
    if (!kind)
        return;
    len = code_blob64(c, at, cfg.str_length);
    if (len > EXC_BPF_CODE_STR_MAX)
        len = EXC_BPF_CODE_STR_MAX;
    len *= kind;
    if (len > EXC_BPF_CODE_STR_MAX)
        len = EXC_BPF_CODE_STR_MAX;
    code_copy(c, s + ((state & cfg.str_ascii_mask) ? cfg.str_ascii_data : cfg.str_compact_data),
              (__u32)len);
}

/*
 * Send a CODE record for code: its header, names and location table as the resolver reads
 * them. Marks code known once sent. -1 when the ring buffer had no room (stop sending).
 */
static __always_inline int send_code(__u64 code)
{
    struct exc_bpf_code_rec *c;
    __u32 zero = 0, one = 1;
    __u64 lt, size;
    int at;

    c = bpf_map_lookup_elem(&code_scratch, &zero);
    if (!c)
        return -1;
    c->kind = EXC_BPF_CODE;
    c->code = code;
    c->nranges = c->blob_len = c->pad = 0;
    at = code_copy(c, code, cfg.code_header_len);
    if (at < 0)
        return 0; /* unreadable: not sent, user space reads it live */
    code_str(c, code_blob64(c, at, cfg.code_filename));
    code_str(c, code_blob64(c, at, cfg.code_name));
    code_str(c, code_blob64(c, at, cfg.code_qualname));
    lt = code_blob64(c, at, cfg.code_linetable);
    at = code_copy(c, lt, (__u32)cfg.bytes_sval);
    size = code_blob64(c, at, cfg.varobject_size);
    if (at >= 0 && size > 0 && size <= EXC_BPF_CODE_RANGE_MAX)
        code_copy(c, lt + cfg.bytes_sval, (__u32)size); /* longer: read live */
    size = __builtin_offsetof(struct exc_bpf_code_rec, blob) + c->blob_len;
    if (size > sizeof(*c))
        size = sizeof(*c);
    if (bpf_ringbuf_output(&events, c, size, 0)) {
        count(EXC_BPF_CNT_LOST);
        return -1;
    }
    count(EXC_BPF_CNT_CODES);
    bpf_map_update_elem(&known_codes, &code, &one, BPF_ANY);
    return 0;
}

struct codes_ctx {
    const struct exc_bpf_rec *r;
    __u32 tried;
};

/* Frame i of a RAISE record to send: its code in a CODE record unless known (bpf_loop). */
static long code_step(__u32 i, void *data)
{
    struct codes_ctx *x = data;
    __u64 k = i, code;

    __asm__ volatile("" : "+r"(k)); /* the bound below on the register the index uses */
    if (k >= EXC_BPF_MAX_FRAMES || k >= x->r->nframes || x->tried >= EXC_BPF_NEW_CODES)
        return 1;
    code = x->r->frames[k].code;
    if (bpf_map_lookup_elem(&known_codes, &code))
        return 0;
    x->tried++;
    return send_code(code) < 0;
}

/* A new raise: filter, frames, object bytes, record. */
/* Make key the thread's open exception (in place when it has a slot: no map update). */
static __always_inline void set_open(__u32 tid, struct exc_open *cur, __u64 key, __u64 expect,
                                     __u64 filtered)
{
    struct exc_open o = {.key = key, .expect = expect, .filtered = filtered};

    if (cur)
        *cur = o;
    else
        bpf_map_update_elem(&open, &tid, &o, BPF_ANY);
}

/* One more raise of r's site (type, raising code, instruction) in the exact per-site counts.
 * Returns 1 when this was the site's first raise (its entry was made here). */
static __always_inline int count_site(const struct exc_bpf_rec *r)
{
    struct exc_bpf_site k = {.type = r->type};
    __u64 one = 1, *v;

    if (r->nframes == 0)
        return 0;
    k.code = r->frames[0].code;
    k.instr = r->frames[0].instr;
    v = bpf_map_lookup_elem(&sites, &k);
    if (v) {
        __sync_fetch_and_add(v, 1);
        return 0;
    }
    if (bpf_map_update_elem(&sites, &k, &one, BPF_NOEXIST) == 0)
        return 1;
    if ((v = bpf_map_lookup_elem(&sites, &k)))
        __sync_fetch_and_add(v, 1); /* another CPU inserted it first */
    return 0;
}

/*
 * Is there room in the ring for a record? A site's first raise may take all of it; any other
 * leaves EXC_BPF_RING_KEEP of it free, so a slow reader (a loaded machine, a sanitizer build)
 * that lets the ring fill up still gets the rare site's first record.
 */
static __always_inline int ring_room(int first)
{
    __u64 size = bpf_ringbuf_query(&events, BPF_RB_RING_SIZE);
    __u64 keep = first ? 0 : size / EXC_BPF_RING_KEEP;

    return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) + sizeof(struct exc_bpf_rec) + keep <=
           size;
}

/*
 * The budget's gate: with ctl.sample_every = N > 1, one raise in N (per CPU) goes on to its
 * record; the others are counted per site and followed silently (their propagation is not a new
 * raise). Returns 1 when the raise gets its record.
 */
static __always_inline int sampled(__u32 tid, struct exc_open *cur, struct exc_bpf_rec *r,
                                   __u64 key)
{
    __u32 zero = 0;
    struct exc_bpf_ctl *c = bpf_map_lookup_elem(&ctl, &zero);
    __u32 every = c ? c->sample_every : 1;

    __u64 tick = count_add(EXC_BPF_CNT_TICK, 1); /* every raise past --type: the rate */

    struct exc_bpf_site k = {.type = r->type};
    __u64 *v = NULL;

    if (every <= 1 || tick % every == 0)
        return 1;
    walk(r, r->iframe, 2);
    k.code = r->nframes ? r->frames[0].code : 0;
    k.instr = r->nframes ? r->frames[0].instr : 0;
    if (r->nframes && !(v = bpf_map_lookup_elem(&sites, &k)))
        return 1; /* a site's first raise always gets its record: the rare one is not lost */
    count(EXC_BPF_CNT_SAMPLED_OUT);
    if (v)
        __sync_fetch_and_add(v, 1); /* count_site's, with the lookup already made */
    set_open(tid, cur, key, r->nframes > 1 ? r->frames[1].frame : 0, 1);
    return 0;
}

static __always_inline void new_raise(struct exc_bpf_rec *r, __u32 tid, __u64 key,
                                      struct exc_open *cur)
{
    struct codes_ctx codes = {.r = r};
    __u32 one = 1;
    int named;
    __s32 lo = cfg.object_type;
    __u64 args = 0, vtype = 0;
    int at = -1;

    if (!type_wanted(r->type)) {
        count(EXC_BPF_CNT_FILTERED_RAISES);
        walk(r, r->iframe, 2); /* its caller: where its propagation (not counted) hits next */
        set_open(tid, cur, key, r->nframes > 1 ? r->frames[1].frame : 0, 1);
        return;
    }
    if (!sampled(tid, cur, r, key))
        return;
    r->kind = EXC_BPF_RAISE;
    r->thread_id = rd64(r->tstate, cfg.tstate_thread_id); /* records only */
    walk(r, r->iframe, EXC_BPF_MAX_FRAMES);
    if (!ring_room(count_site(r))) {
        count(EXC_BPF_CNT_LOST); /* full: skip the reads, the record would not fit */
        count(EXC_BPF_CNT_LOST_RAISES);
        set_open(tid, cur, key, r->nframes > 1 ? r->frames[1].frame : 0, 1); /* followed silently */
        return;
    }
    set_open(tid, cur, key, r->nframes > 1 ? r->frames[1].frame : 0, 0);
    bpf_loop(EXC_BPF_MAX_FRAMES, code_step, &codes, 0); /* code objects new to user space */
    if (r->value && r->value != cfg.none && cfg.exc_cause > lo) {
        at = copy_range(r, r->value + lo, (__u32)(cfg.exc_cause + 8 - lo));
        vtype = blob64(r, at, 0);
    }
    if ((copy_type(r, r->type) & cfg.base_exc_flag) && vtype == r->type) {
        args = blob64(r, at, cfg.exc_args - lo);
        copy_chained(r, blob64(r, at, cfg.exc_cause - lo));
        copy_chained(r, blob64(r, at, cfg.exc_context - lo));
    } else if (vtype && vtype != r->type) {
        copy_type(r, vtype); /* 3.11 unnormalised value */
    }
    copy_message(r, r->value, vtype, args);
    named = copy_type_name(r, r->type);
    if (send(r, __builtin_offsetof(struct exc_bpf_rec, blob) + r->blob_len, 1) == 0 && named)
        bpf_map_update_elem(&known_types, &r->type, &one, BPF_ANY);
}

/* The thread's in-flight exception into r (value, type, traceback; 3.11: curexc_*): two reads
 * on 3.12+ (the value, then its type through its traceback in one block), one on 3.11. */
static __always_inline void read_exc(struct exc_bpf_rec *r)
{
    __u64 blk[EXC_BPF_EXC_WORDS] = {0};
    __u32 ti = (__u32)cfg.object_type / 8, bi = (__u32)cfg.exc_traceback / 8;

    if (cfg.tstate_current_exception >= 0) {
        r->value = rd64(r->tstate, cfg.tstate_current_exception);
        if (!r->value || ti >= bi || bi >= EXC_BPF_EXC_WORDS ||
            bpf_probe_read_user(blk, (bi + 1) * 8, (const void *)r->value))
            r->type = r->traceback = 0;
        else {
            r->type = blk[ti & (EXC_BPF_EXC_WORDS - 1)];
            r->traceback = blk[bi & (EXC_BPF_EXC_WORDS - 1)];
        }
    } else if (cfg.tstate_curexc_type >= 0 &&
               bpf_probe_read_user(blk, 24, (const void *)(r->tstate + cfg.tstate_curexc_type)) ==
                   0) {
        r->type = blk[0];
        r->value = blk[1];
        r->traceback = blk[2];
    } else {
        r->value = r->type = r->traceback = 0;
    }
    if (r->traceback == cfg.none)
        r->traceback = 0;
}

/*
 * Was this exception already propagating when the probe was attached? At the thread's first
 * hit since then (no open entry), a traceback whose newest entry is a callee of the hit frame
 * (its frame object's f_back, set when that frame stopped running, is the hit frame object)
 * means the exception left that callee before: its raise and the hits up to here were missed.
 * A re-raise (`raise e`) of a caught exception shows the catching frame itself there.
 */
static __always_inline int in_flight_before(const struct exc_bpf_rec *r, __u64 frameobj)
{
    __u64 tbf;

    if (!r->traceback || cfg.tb_frame < 0 || cfg.frameobj_f_back < 0)
        return 0;
    tbf = rd64(r->traceback, cfg.tb_frame);
    return tbf && tbf != frameobj && rd64(tbf, cfg.frameobj_f_back) == frameobj;
}

/* The record of this hit's thread, or NULL when the hit is not the target's; counts the hit. */
static __always_inline struct exc_bpf_rec *begin(__u32 *tid, __u64 now)
{
    struct bpf_pidns_info ns = {0};
    struct exc_bpf_rec *r;
    __u32 zero = 0;

    if (bpf_get_ns_current_pid_tgid(cfg.pidns_dev, cfg.pidns_ino, &ns, sizeof(ns)) ||
        ns.tgid != cfg.tgid)
        return NULL; /* not the target (a fork child) */
    *tid = ns.pid;
    r = bpf_map_lookup_elem(&scratch, &zero);
    if (!r)
        return NULL;
    r->tid = ns.pid;
    r->time_ns = now;
    r->nframes = r->truncated = r->nranges = r->blob_len = 0;
    r->value = r->type = r->traceback = r->thread_id = r->iframe = r->tstate = 0;
    return r;
}

static __always_inline int hit(struct exc_regs *ctx, __u64 t0);

SEC("uprobe")
int exc_hit(struct exc_regs *ctx)
{
    __u64 t0 = bpf_ktime_get_ns();

    if (hit(ctx, t0))
        count_add(EXC_BPF_CNT_NS, bpf_ktime_get_ns() - t0);
    return 0;
}

/* One hit; returns 1 when it was the target's (its time is then counted). */
static __always_inline int hit(struct exc_regs *ctx, __u64 t0)
{
    struct exc_bpf_rec *r;
    struct exc_open *o;
    __u32 tid = 0;
    __u64 key;

    r = begin(&tid, t0);
    if (!r)
        return 0;
    /* the target's from here: every return below counts the time */
    count(EXC_BPF_CNT_HITS);
    r->iframe = rd64(ctx->di, cfg.frameobj_f_frame);
    r->tstate = thread_state(tid);
    if (!r->tstate) {
        count(EXC_BPF_CNT_NO_TSTATE);
        return 1;
    }
    read_exc(r);
    key = r->value ? r->value : r->type;
    if (!key || !r->iframe) {
        count(EXC_BPF_CNT_READ_ERRORS);
        return 1;
    }
    o = bpf_map_lookup_elem(&open, &tid);
    if (o && r->traceback && o->key == key && o->expect == r->iframe) {
        walk(r, r->iframe, 2);
        o->expect = r->nframes > 1 ? r->frames[1].frame : 0;
        if (o->filtered)
            return 1;
        r->kind = EXC_BPF_PROP;
        send(r, __builtin_offsetof(struct exc_bpf_rec, frames) + 2 * sizeof(r->frames[0]), 0);
        return 1;
    }
    if (!o && in_flight_before(r, ctx->di)) {
        count(EXC_BPF_CNT_IN_FLIGHT); /* followed silently: its raise site is not known */
        walk(r, r->iframe, 2);
        set_open(tid, NULL, key, r->nframes > 1 ? r->frames[1].frame : 0, 1);
        return 1;
    }
    new_raise(r, tid, key, o);
    return 1;
}

/*
 * A thread of the target exits (in that thread, before the kernel releases its memory on
 * kernels that place the tracepoint so): its in-flight exception, so user space learns the fate
 * of the exception it followed last (still in flight: it was propagating; gone: handled).
 */
SEC("raw_tp/sched_process_exit")
int exc_exit(void *ctx)
{
    __u32 tid = 0, ntid = 0;
    __u64 *m, ts;
    struct exc_bpf_rec *r = begin(&tid, bpf_ktime_get_ns());

    (void)ctx;
    if (!r)
        return 0;
    r->kind = EXC_BPF_EXIT;
    r->truncated = EXC_BPF_EXIT_UNREAD;
    m = bpf_map_lookup_elem(&tstates, &tid);
    ts = m ? *m : 0;
    if (ts && cfg.tstate_native_thread_id >= 0 &&
        bpf_probe_read_user(&ntid, sizeof(ntid),
                            (const void *)(ts + cfg.tstate_native_thread_id)) == 0) {
        r->truncated = ntid == tid ? EXC_BPF_EXIT_READ : EXC_BPF_EXIT_CLEARED;
        if (ntid == tid) {
            r->tstate = ts;
            read_exc(r);
        }
    }
    send(r, __builtin_offsetof(struct exc_bpf_rec, ranges), 0);
    bpf_map_delete_elem(&open, &tid); /* a later thread may get its id */
    bpf_map_delete_elem(&tstates, &tid);
    return 0;
}

/* The target exec'd: everything the uprobe program holds is the old image's. */
SEC("raw_tp/sched_process_exec")
int exc_exec(void *ctx)
{
    __u32 tid = 0;
    struct exc_bpf_rec *r = begin(&tid, bpf_ktime_get_ns());

    (void)ctx;
    if (!r)
        return 0;
    r->kind = EXC_BPF_EXEC;
    send(r, __builtin_offsetof(struct exc_bpf_rec, ranges), 0);
    return 0;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
