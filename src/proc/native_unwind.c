/* SPDX-License-Identifier: MIT */
/*
 * Native stacks, part 2 (see native.h): unwinding with libunwind. A live thread's memory and
 * registers are read through libunwind-ptrace (_UPT: PTRACE_PEEKDATA/PEEKUSER on a thread that
 * target.h has seized and stopped; nothing is written to the tracee); a core's through accessors
 * of our own over the core's memory source (which reads the text and unwind tables a core does
 * not hold from the mapped files, honouring --lib-search-root) and its NT_PRSTATUS registers.
 *
 * Both find unwind tables the same way, through the images native.c opened (tfile: never a
 * blocking open, regular files only, under /proc/PID/root), not through _UPT_find_proc_info,
 * which opens each mapped path itself with a plain open() from pyscope's root while the thread
 * is stopped: a target could swap that path for a FIFO and hold its threads stopped forever.
 * native_open_live opens the images before any thread is stopped (native_preload).
 *
 * Every loop is bounded: at most cap frames, and a frame that repeats the previous one's pc and
 * stack pointer (a corrupt stack, a CFI loop) ends the walk with an error.
 */
#include "native_int.h"

#include <errno.h>
#include <inttypes.h>
#include <libunwind-ptrace.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Core accessors: memory through the core's memory source (which reads text and unwind tables
 * from the mapped files), registers from the thread's NT_PRSTATUS, unwind tables located through
 * the image's .eh_frame_hdr and searched by libunwind's own remote-table search (what its ptrace
 * accessors do for a live process).
 */
struct unwind_arg {
    struct native_ctx *ctx;
    const struct core_thread *thread; /* a core's thread, or NULL */
    void *upt;                        /* a live thread's _UPT handle, or NULL */
};

#if defined(__x86_64__)
/* UNW_X86_64_RAX..RIP (0..16) -> word index in user_regs_struct (sys/user.h). */
static const int core_reg_index[] = {10, 12, 11, 5, 13, 14, 4, 19, 9, 8, 7, 6, 3, 2, 1, 0, 16};
#define CORE_UNWIND_SUPPORTED 1
#else
#define CORE_UNWIND_SUPPORTED 0
#endif

/* libunwind's DWARF table search (exported by libunwind-<arch>, declared in its private dwarf.h). */
extern int UNW_OBJ(dwarf_search_unwind_table)(unw_addr_space_t as, unw_word_t ip,
                                              unw_dyn_info_t *di, unw_proc_info_t *pi,
                                              int need_unwind_info, void *arg);

/* .eh_frame_hdr encodings we read: the ones every GNU toolchain emits. */
#define EH_PE_PCREL_SDATA4   0x1b
#define EH_PE_UDATA4         0x03
#define EH_PE_DATAREL_SDATA4 0x3b
#define EH_HDR_TABLE_OFF     12

/* Fill di for the image mapped by e from its .eh_frame_hdr. */
static int core_table(struct native_ctx *ctx, const struct maps_entry *e, unw_dyn_info_t *di)
{
    struct symtab *st = native_image(ctx, e);
    struct ps_err ignored = {0};
    uint64_t hdr, size, base_vaddr, bias;
    uint8_t h[EH_HDR_TABLE_OFF];
    uint32_t count;

    if (!st || symtab_section(st, ".eh_frame_hdr", &hdr, &size) < 0 || size < sizeof(h) ||
        symtab_offset_vaddr(st, e->offset, &base_vaddr) < 0 ||
        symtab_read_vaddr(st, hdr, h, sizeof(h), &ignored) < 0)
        return -UNW_ENOINFO;
    if (h[0] != 1 || h[1] != EH_PE_PCREL_SDATA4 || h[2] != EH_PE_UDATA4 ||
        h[3] != EH_PE_DATAREL_SDATA4)
        return -UNW_ENOINFO;
    memcpy(&count, h + 8, sizeof(count));
    if ((uint64_t)count * 8 > size - EH_HDR_TABLE_OFF)
        return -UNW_ENOINFO;
    bias = e->start - base_vaddr;
    memset(di, 0, sizeof(*di));
    di->format = UNW_INFO_FORMAT_REMOTE_TABLE;
    di->start_ip = e->start;
    di->end_ip = e->end;
    di->u.rti.segbase = hdr + bias;
    di->u.rti.table_data = hdr + bias + EH_HDR_TABLE_OFF;
    di->u.rti.table_len = (uint64_t)count * 8 / sizeof(unw_word_t);
    return 0;
}

static int image_find_proc_info(unw_addr_space_t as, unw_word_t ip, unw_proc_info_t *pi,
                                int need_unwind_info, void *arg)
{
    struct unwind_arg *ca = arg;
    const struct maps_entry *e = maps_find(ca->ctx->maps, ip);
    unw_dyn_info_t di;
    int rc = e ? core_table(ca->ctx, e, &di) : -UNW_ENOINFO;

    if (rc < 0)
        return rc;
    return UNW_OBJ(dwarf_search_unwind_table)(as, ip, &di, pi, need_unwind_info, arg);
}

static void core_put_unwind_info(unw_addr_space_t as, unw_proc_info_t *pi, void *arg)
{
    (void)as;
    (void)arg;
    free(pi->unwind_info); /* allocated by the DWARF search, as with libunwind's own accessors */
    pi->unwind_info = NULL;
}

/* The pointer parameters below are libunwind's accessor signatures (unw_accessors_t). */
static int core_get_dyn_info_list_addr(
    unw_addr_space_t as, unw_word_t *addr, /* NOLINT(readability-non-const-parameter) */
    void *arg)
{
    (void)as;
    (void)addr;
    (void)arg;
    return -UNW_ENOINFO;
}

static int core_access_mem(unw_addr_space_t as, unw_word_t addr, unw_word_t *val, int write,
                           void *arg)
{
    struct unwind_arg *ca = arg;
    struct ps_err ignored = {0};
    uint64_t v;

    (void)as;
    if (write || memsrc_read_u64(ca->ctx->src, addr, &v, &ignored) < 0)
        return -UNW_EINVAL;
    *val = v;
    return 0;
}

static int core_access_reg(unw_addr_space_t as, unw_regnum_t reg, unw_word_t *val, int write,
                           void *arg)
{
    struct unwind_arg *ca = arg;

    (void)as;
#if CORE_UNWIND_SUPPORTED
    if (!write && reg >= 0 && (size_t)reg < sizeof(core_reg_index) / sizeof(core_reg_index[0])) {
        *val = ca->thread->regs[core_reg_index[reg]];
        return 0;
    }
#else
    (void)ca;
    (void)reg;
    (void)val;
    (void)write;
#endif
    return -UNW_EBADREG;
}

static int core_access_fpreg(unw_addr_space_t as, unw_regnum_t reg,
                             unw_fpreg_t *val, /* NOLINT(readability-non-const-parameter) */
                             int write, void *arg)
{
    (void)as;
    (void)reg;
    (void)val;
    (void)write;
    (void)arg;
    return -UNW_EBADREG;
}

static int core_resume(unw_addr_space_t as, unw_cursor_t *c, void *arg)
{
    (void)as;
    (void)c;
    (void)arg;
    return -UNW_EINVAL; /* a core never runs */
}

static int core_get_proc_name(unw_addr_space_t as, unw_word_t addr,
                              char *buf, /* NOLINT(readability-non-const-parameter) */
                              size_t len,
                              unw_word_t *off, /* NOLINT(readability-non-const-parameter) */
                              void *arg)
{
    (void)as;
    (void)addr;
    (void)buf;
    (void)len;
    (void)off;
    (void)arg;
    return -UNW_ENOINFO; /* symbols come from symtab, not from libunwind */
}

static unw_accessors_t core_accessors = {
    .find_proc_info = image_find_proc_info,
    .put_unwind_info = core_put_unwind_info,
    .get_dyn_info_list_addr = core_get_dyn_info_list_addr,
    .access_mem = core_access_mem,
    .access_reg = core_access_reg,
    .access_fpreg = core_access_fpreg,
    .resume = core_resume,
    .get_proc_name = core_get_proc_name,
};

/* Live: memory and registers through _UPT with the thread's handle; tables as for a core. */
static int live_access_mem(unw_addr_space_t as, unw_word_t addr, unw_word_t *val, int write,
                           void *arg)
{
    return _UPT_access_mem(as, addr, val, write, ((struct unwind_arg *)arg)->upt);
}

static int live_access_reg(unw_addr_space_t as, unw_regnum_t reg, unw_word_t *val, int write,
                           void *arg)
{
    return _UPT_access_reg(as, reg, val, write, ((struct unwind_arg *)arg)->upt);
}

static int live_access_fpreg(unw_addr_space_t as, unw_regnum_t reg, unw_fpreg_t *val, int write,
                             void *arg)
{
    return _UPT_access_fpreg(as, reg, val, write, ((struct unwind_arg *)arg)->upt);
}

static unw_accessors_t live_accessors = {
    .find_proc_info = image_find_proc_info,
    .put_unwind_info = core_put_unwind_info,
    .get_dyn_info_list_addr = core_get_dyn_info_list_addr,
    .access_mem = live_access_mem,
    .access_reg = live_access_reg,
    .access_fpreg = live_access_fpreg,
    .resume = core_resume, /* never resume from here: target.h owns the thread */
    .get_proc_name = core_get_proc_name,
};

/* Give ctx its libunwind address space over acc, or close ctx and fail. */
static int unwind_space(struct native_ctx *ctx, unw_accessors_t *acc, struct native_ctx **out,
                        struct ps_err *err)
{
    ctx->as = unw_create_addr_space(acc, 0);
    if (!ctx->as) {
        native_close(ctx);
        return ps_err_set(err, -PS_ELIMIT, "libunwind cannot create an address space");
    }
    /* Unwind info of an image is parsed once per run, not once per thread. */
    (void)unw_set_caching_policy(ctx->as, UNW_CACHE_GLOBAL);
    *out = ctx;
    return 0;
}

int native_open_live(pid_t pid, const struct maps *maps, struct memsrc *src,
                     const struct native_opts *opts, struct native_ctx **out, struct ps_err *err)
{
    struct native_ctx *ctx = NULL;
    int rc = native_new(pid, maps, src, opts, &ctx, err);

    if (rc < 0)
        return rc;
    native_preload(ctx); /* file I/O now, before any thread of the target is stopped */
    return unwind_space(ctx, &live_accessors, out, err);
}

int native_open_core(const struct core *core, struct memsrc *src, const struct native_opts *opts,
                     struct native_ctx **out, struct ps_err *err)
{
    struct native_ctx *ctx = NULL;
    int rc;

    if (!CORE_UNWIND_SUPPORTED)
        return ps_err_set(err, -PS_EFORMAT,
                          "native stacks from core files are supported on x86-64 only");
    rc = native_new(0, &core->maps, src, opts, &ctx, err);
    if (rc < 0)
        return rc;
    ctx->core = core;
    rc = native_core_files(ctx, err);
    if (rc < 0) {
        native_close(ctx);
        return rc;
    }
    return unwind_space(ctx, &core_accessors, out, err);
}

void native_unwind_close(struct native_ctx *ctx)
{
    if (ctx->as)
        unw_destroy_addr_space(ctx->as);
    ctx->as = NULL;
}

/* Walk the cursor into pcs; see native_unwind_thread for the results. */
static int unwind_walk(unw_cursor_t *cur, uint64_t *pcs, size_t cap, size_t *n, struct ps_err *err)
{
    unw_word_t ip = 0, sp = 0, prev_ip = 0, prev_sp = 0;
    int r;

    *n = 0;
    for (;;) {
        if (unw_get_reg(cur, UNW_REG_IP, &ip) < 0 || unw_get_reg(cur, UNW_REG_SP, &sp) < 0)
            return ps_err_set(err, -PS_ECORRUPT, "cannot read the registers of frame %zu", *n);
        if (ip == 0)
            return 0;
        if (*n > 0 && ip == prev_ip && sp == prev_sp)
            return ps_err_set(err, -PS_ECORRUPT, "the native stack loops at frame %zu", *n);
        if (*n == cap)
            return ps_err_set(err, -PS_ELIMIT,
                              "the native stack is deeper than %zu frames; the innermost are "
                              "shown",
                              cap);
        pcs[(*n)++] = ip;
        prev_ip = ip;
        prev_sp = sp;
        r = unw_step(cur);
        if (r == 0)
            return 0;
        if (r < 0)
            return ps_err_set(err, -PS_ECORRUPT, "unwinding stopped after %zu frames: %s", *n,
                              unw_strerror(r));
    }
}

static int unwind_core(struct native_ctx *ctx, pid_t tid, uint64_t *pcs, size_t cap, size_t *n,
                       struct ps_err *err)
{
    struct unwind_arg ca = {.ctx = ctx};
    unw_cursor_t cur;
    int r;

    for (size_t i = 0; i < ctx->core->nthreads && !ca.thread; i++)
        if (ctx->core->threads[i].tid == tid)
            ca.thread = &ctx->core->threads[i];
    if (!ca.thread)
        return ps_err_set(err, -ESRCH, "thread %d has no register note in the core", (int)tid);
    r = unw_init_remote(&cur, ctx->as, &ca);
    if (r < 0)
        return ps_err_set(err, -PS_ECORRUPT, "cannot start unwinding thread %d: %s", (int)tid,
                          unw_strerror(r));
    return unwind_walk(&cur, pcs, cap, n, err);
}

static int unwind_live(struct native_ctx *ctx, pid_t tid, uint64_t *pcs, size_t cap, size_t *n,
                       struct ps_err *err)
{
    void *upt = _UPT_create(tid);
    struct unwind_arg la = {.ctx = ctx, .upt = upt};
    unw_cursor_t cur;
    int rc, r;

    if (!upt)
        return ps_err_set(err, -ENOMEM, "out of memory unwinding thread %d", (int)tid);
    r = unw_init_remote(&cur, ctx->as, &la);
    if (r < 0)
        rc = ps_err_set(err, -ESRCH,
                        "cannot read the registers of thread %d (%s): it exited or is not "
                        "stopped",
                        (int)tid, unw_strerror(r));
    else
        rc = unwind_walk(&cur, pcs, cap, n, err);
    _UPT_destroy(upt);
    return rc;
}

int native_unwind_thread(struct native_ctx *ctx, pid_t tid, uint64_t *pcs, size_t cap, size_t *n,
                         struct ps_err *err)
{
    *n = 0;
    if (ctx->core)
        return unwind_core(ctx, tid, pcs, cap, n, err);
    if (tid <= 0) /* walk_tstates could not translate the target's id (tidmap_host_tid) */
        return ps_err_set(err, -ESRCH,
                          "the thread's id has no match in pyscope's pid namespace (it exited, "
                          "or its /proc status cannot be read)");
    return unwind_live(ctx, tid, pcs, cap, n, err);
}
