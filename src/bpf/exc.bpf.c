/* SPDX-License-Identifier: MIT OR GPL-2.0 */
/*
 * exc.bpf.c: the kernel-side exception reader, a uprobe program at the entry of
 * PyTraceBack_Here(PyFrameObject *) in the target (see docs/exceptions.md, "bpf"). It runs in
 * the raising thread at the hit, so everything it reads is consistent, and the thread never
 * stops. Loaded and attached by src/bpf_exc.c, which writes `cfg` (layout offsets, addresses)
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

/* x86-64 struct pt_regs (arch/x86/include/asm/ptrace.h): the first argument is di. */
struct exc_regs {
    __u64 r15, r14, r13, r12, bp, bx, r11, r10, r9, r8, ax, cx, dx, si, di;
};

#define TPFLAGS_BASE_EXC (1ull << 30)

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

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, EXC_BPF_CNT_N);
    __type(key, __u32);
    __type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 which)
{
    __u64 *v = bpf_map_lookup_elem(&counters, &which);

    if (v)
        *v += 1; /* per CPU: no other writer */
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

/* Copy [addr, addr+len) into the record's blob as one more range (skipped when full). */
static __always_inline void copy_range(struct exc_bpf_rec *r, __u64 addr, __u32 len)
{
    __u32 off = r->blob_len, n = r->nranges;

    if (!addr || len == 0 || len > EXC_BPF_RANGE_MAX || n >= EXC_BPF_MAX_RANGES ||
        off > EXC_BPF_BLOB - EXC_BPF_RANGE_MAX)
        return;
    off &= EXC_BPF_BLOB - 1;
    len &= EXC_BPF_RANGE_MAX * 2 - 1;
    if (bpf_probe_read_user(&r->blob[off], len, (const void *)addr))
        return;
    n &= EXC_BPF_MAX_RANGES - 1;
    r->ranges[n].addr = addr;
    r->ranges[n].off = off;
    r->ranges[n].len = len;
    r->nranges = n + 1;
    r->blob_len = off + len;
}

/* A type's header through tp_flags (what the type-name cache checks): its flags, 0 if unread. */
static __always_inline __u64 copy_type(struct exc_bpf_rec *r, __u64 type)
{
    __s32 lo = cfg.type_name < cfg.type_flags ? cfg.type_name : cfg.type_flags;
    __s32 hi = (cfg.type_name > cfg.type_flags ? cfg.type_name : cfg.type_flags) + 8;

    if (!type || lo < 0 || hi <= lo)
        return 0;
    copy_range(r, type + lo, (__u32)(hi - lo));
    return rd64(type, cfg.type_flags);
}

/* A chained exception (__cause__ / __context__): its object header and its type's. */
static __always_inline void copy_chained(struct exc_bpf_rec *r, __u64 other)
{
    __u64 type;

    if (!other || other == cfg.none)
        return;
    type = rd64(other, cfg.object_type);
    copy_range(r, other + cfg.object_type, 8);
    copy_type(r, type);
}

/* A str object (compact forms): its header and up to 200 characters of text. */
static __always_inline void copy_str(struct exc_bpf_rec *r, __u64 s)
{
    __u8 hdr[64] = {0};
    __u32 state, kind, hlen = (__u32)cfg.str_state + 4;
    __u64 length, data;

    if (!s || hlen > sizeof(hdr) || cfg.str_length < 0 || cfg.str_length > 56 ||
        bpf_probe_read_user(hdr, hlen & 63, (const void *)s))
        return;
    copy_range(r, s, hlen);
    length = *(const __u64 *)(hdr + (cfg.str_length & 56));
    state = *(const __u32 *)(hdr + (cfg.str_state & 60));
    kind = (state >> 2) & 7;
    if (!(state & (1u << 5)) || (kind != 1 && kind != 2 && kind != 4))
        return; /* not compact: user space reads it */
    data = s + ((state & (1u << 6)) ? cfg.str_ascii_data : cfg.str_compact_data);
    if (length > 199)
        length = 199;
    copy_range(r, data, (__u32)length * kind);
}

/* The message candidate: args[0] of an instance, or 3.11's unnormalised str / tuple value. */
static __always_inline void copy_message(struct exc_bpf_rec *r, __u64 value, __u64 vtype,
                                         __u64 args)
{
    __u64 tup = 0, item = 0;

    if (vtype == cfg.unicode_type) {
        copy_str(r, value);
        return;
    }
    tup = vtype == cfg.tuple_type ? value : args;
    if (!tup || tup == cfg.none || cfg.tuple_items < 0)
        return;
    copy_range(r, tup, (__u32)cfg.tuple_items + 8);
    item = rd64(tup, cfg.tuple_items);
    if (item && rd64(item, cfg.object_type) == cfg.unicode_type)
        copy_str(r, item);
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

    bpf_loop(EXC_BPF_MAX_STEPS, walk_step, &w, 0);
    r->nframes = w.n;
    return w.n;
}

/* Send the first size bytes of r (bounded); counts a loss when the ring buffer is full. */
static __always_inline void send(struct exc_bpf_rec *r, __u64 size, int raise)
{
    if (size > sizeof(*r))
        size = sizeof(*r);
    if (bpf_ringbuf_output(&events, r, size, 0)) {
        count(EXC_BPF_CNT_LOST);
        if (raise)
            count(EXC_BPF_CNT_LOST_RAISES);
    }
}

/* A new raise: filter, frames, object bytes, record. */
static __always_inline void new_raise(struct exc_bpf_rec *r, __u32 tid, __u64 key)
{
    struct exc_open o = {.key = key};
    __u64 hdr_lo = (__u64)cfg.object_type, args = 0, vtype = 0;

    if (!type_wanted(r->type)) {
        count(EXC_BPF_CNT_FILTERED_RAISES);
        o.filtered = 1;
        bpf_map_update_elem(&open, &tid, &o, BPF_ANY);
        return;
    }
    if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) + sizeof(*r) >
        bpf_ringbuf_query(&events, BPF_RB_RING_SIZE)) {
        count(EXC_BPF_CNT_LOST); /* full: skip the reads, the record would not fit */
        count(EXC_BPF_CNT_LOST_RAISES);
        bpf_map_update_elem(&open, &tid, &o, BPF_ANY);
        return;
    }
    r->kind = EXC_BPF_RAISE;
    walk(r, r->iframe, EXC_BPF_MAX_FRAMES);
    o.expect = r->nframes > 1 ? r->frames[1].frame : 0;
    bpf_map_update_elem(&open, &tid, &o, BPF_ANY);
    if (r->value && r->value != cfg.none && cfg.exc_cause > 0) {
        copy_range(r, r->value + hdr_lo, (__u32)(cfg.exc_cause + 8 - cfg.object_type));
        vtype = rd64(r->value, cfg.object_type);
    }
    if (copy_type(r, r->type) & TPFLAGS_BASE_EXC && vtype == r->type) {
        args = rd64(r->value, cfg.exc_args);
        copy_chained(r, rd64(r->value, cfg.exc_cause));
        copy_chained(r, rd64(r->value, cfg.exc_context));
    } else if (vtype && vtype != r->type) {
        copy_type(r, vtype); /* 3.11 unnormalised value */
    }
    copy_message(r, r->value, vtype, args);
    send(r, __builtin_offsetof(struct exc_bpf_rec, blob) + r->blob_len, 1);
}

SEC("uprobe")
int exc_hit(struct exc_regs *ctx)
{
    __u32 zero = 0, tid = (__u32)bpf_get_current_pid_tgid();
    struct exc_bpf_rec *r = bpf_map_lookup_elem(&scratch, &zero);
    struct exc_open *o;
    __u64 key;

    count(EXC_BPF_CNT_HITS);
    if (!r)
        return 0;
    r->tid = tid;
    r->time_ns = bpf_ktime_get_ns();
    r->nframes = r->truncated = r->nranges = r->blob_len = 0;
    r->iframe = rd64(ctx->di, cfg.frameobj_f_frame);
    r->tstate = thread_state(tid);
    if (!r->tstate) {
        count(EXC_BPF_CNT_NO_TSTATE);
        return 0;
    }
    if (cfg.tstate_current_exception >= 0) {
        r->value = rd64(r->tstate, cfg.tstate_current_exception);
        r->type = rd64(r->value, cfg.object_type);
        r->traceback = rd64(r->value, cfg.exc_traceback);
    } else {
        r->type = rd64(r->tstate, cfg.tstate_curexc_type);
        r->value = rd64(r->tstate, cfg.tstate_curexc_type + 8);
        r->traceback = rd64(r->tstate, cfg.tstate_curexc_type + 16);
    }
    if (r->traceback == cfg.none)
        r->traceback = 0;
    key = r->value ? r->value : r->type;
    if (!key || !r->iframe) {
        count(EXC_BPF_CNT_READ_ERRORS);
        return 0;
    }
    o = bpf_map_lookup_elem(&open, &tid);
    if (o && r->traceback && o->key == key && o->expect == r->iframe) {
        walk(r, r->iframe, 2);
        o->expect = r->nframes > 1 ? r->frames[1].frame : 0;
        if (o->filtered)
            return 0;
        r->kind = EXC_BPF_PROP;
        send(r, __builtin_offsetof(struct exc_bpf_rec, frames) + 2 * sizeof(r->frames[0]), 0);
        return 0;
    }
    r->thread_id = rd64(r->tstate, cfg.tstate_thread_id);
    new_raise(r, tid, key);
    return 0;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
