/* SPDX-License-Identifier: MIT */
/*
 * bpf_exc: loads and attaches the kernel-side exception reader (see bpf_exc.h). The BPF object
 * is compiled by clang at build time (CMake) and embedded here with .incbin, then opened with
 * libbpf's bpf_object__open_mem: no file to find at run time, no skeleton generator needed.
 * Before loading, the program's read-only configuration (struct exc_bpf_cfg) is filled from
 * the target's layout table and symbols, so one object serves every supported version.
 *
 * Safety: the uprobe is attached through a bpf_link owned by this process; the kernel removes
 * the probe when the link's fd closes, so no death of pyscope can leave anything behind in the
 * target. The program only reads (bpf_probe_read_user) and never blocks the thread.
 */
#include "pyscope/bpf_exc.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <linux/capability.h>
#include <linux/perf_event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bpf/exc_rec.h"
#include "pyscope/code.h"
#include "pyscope/evloop.h"
#include "pyscope/maps.h"

#ifndef PYSCOPE_BPF_EXC_OBJ /* CMake defines it: the compiled src/trace/bpf/exc.bpf.c */
#define PYSCOPE_BPF_EXC_OBJ "exc.bpf.o"
#endif

/* The compiled program, embedded. */
__asm__(".pushsection .rodata\n"
        ".balign 8\n"
        "bpf_exc_obj_start:\n"
        ".incbin \"" PYSCOPE_BPF_EXC_OBJ "\"\n"
        "bpf_exc_obj_stop:\n"
        ".balign 8\n"
        "bpf_exc_obj_size:\n"
        ".quad bpf_exc_obj_stop - bpf_exc_obj_start\n"
        ".popsection\n");
extern const unsigned char bpf_exc_obj_start[];
extern const uint64_t bpf_exc_obj_size;

#define BPF_EXC_RING_BYTES  (16u << 20)
#define BPF_EXC_CAP_BPF     39 /* linux/capability.h since 5.8 */
#define BPF_EXC_CAP_PERFMON 38

struct bpf_exc {
    struct bpf_object *obj;
    struct bpf_link *link;
    struct bpf_link *exit_link, *exec_link; /* NULL when the tracepoint could not be attached */
    struct ring_buffer *rb;
    int tstates_fd, counters_fd, sites_fd, ctl_fd, known_fd, known_types_fd;
    int ncpus;
    void (*cb)(void *ctx, const struct exc_bpf_rec *r, size_t len);
    void *cb_ctx;
    int budget; /* records this poll may still hand out */
};

/* libbpf's messages: the engine never prints, and a failure is reported through ps_err. */
static int bpf_exc_quiet(enum libbpf_print_level level, const char *fmt, va_list ap)
{
    (void)level;
    (void)fmt;
    (void)ap;
    return 0;
}

static bool bpf_exc_has_cap(const struct __user_cap_data_struct *d, int cap)
{
    return (d[cap / 32].effective >> (cap % 32)) & 1u;
}

int bpf_exc_allowed(struct ps_err *err)
{
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct d[2] = {{0}};
    int fd;

    if (syscall(SYS_capget, &hdr, d) != 0)
        return ps_err_set(err, -EPERM, "bpf: cannot read pyscope's capabilities (%s)",
                          strerror(errno));
    if (!bpf_exc_has_cap(d, CAP_SYS_ADMIN) &&
        !(bpf_exc_has_cap(d, BPF_EXC_CAP_BPF) && bpf_exc_has_cap(d, BPF_EXC_CAP_PERFMON)))
        return ps_err_set(err, -EPERM,
                          "bpf: pyscope lacks CAP_BPF+CAP_PERFMON (or CAP_SYS_ADMIN); grant them "
                          "for kernel-side capture without stops");
    (void)libbpf_set_print(bpf_exc_quiet);
    fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "pyscope_probe", 4, 4, 1, NULL);
    if (fd < 0)
        return ps_err_set(err, -EPERM,
                          "bpf: the kernel refused bpf() (%s): seccomp or "
                          "kernel.unprivileged_bpf_disabled",
                          strerror(errno));
    (void)close(fd);
    return 0;
}

/* ---- configuration from the layout ---------------------------------------------------------- */

/* 1 << bit for a bit of a 32-bit str state word; 0 when the layout has no such bit (then the
 * program takes no str as compact and leaves strings to user space). */
static __u32 state_bit(int32_t bit)
{
    return bit >= 0 && bit < 32 ? 1u << (unsigned)bit : 0u;
}

static int bpf_exc_cfg(const struct pyproc *pp, const char *type_filter, struct exc_bpf_cfg *c,
                       struct ps_err *err)
{
    const struct layout *l = pp->lay;
    const char *bare = type_filter ? strrchr(type_filter, '.') : NULL;

    *c = (struct exc_bpf_cfg){
        .frameobj_f_frame = l->frameobj_f_frame,
        .frameobj_f_back = l->frameobj_f_back,
        .tb_frame = l->tb_frame,
        .tstate_current_exception = l->tstate_current_exception,
        .tstate_curexc_type = l->tstate_curexc_type,
        .tstate_thread_id = l->tstate_thread_id,
        .tstate_native_thread_id = l->tstate_native_thread_id,
        .frame_code = l->frame_code,
        .frame_previous = l->frame_previous,
        .frame_instr = l->frame_instr,
        .frame_owner = l->frame_owner,
        .frame_owner_cstack = l->frame_owner_cstack,
        .object_type = l->object_type,
        .exc_args = l->exc_args,
        .exc_traceback = l->exc_traceback,
        .exc_context = l->exc_context,
        .exc_cause = l->exc_cause,
        .type_name = l->type_name,
        .type_flags = l->type_flags,
        .tuple_items = l->tuple_items,
        .str_length = l->str_length,
        .str_state = l->str_state,
        .str_ascii_data = l->str_ascii_data,
        .str_compact_data = l->str_compact_data,
        .str_kind_shift = state_bit(l->str_state_kind_shift) ? (__u32)l->str_state_kind_shift : 0,
        .str_kind_mask = state_bit(l->str_state_kind_bits) ? state_bit(l->str_state_kind_bits) - 1u
                                                           : 0u, /* no kind bits: no strs */
        .str_compact_mask = state_bit(l->str_state_compact_shift),
        .str_ascii_mask = state_bit(l->str_state_ascii_shift),
        .runtime_tstate_current = l->runtime_tstate_current,
        .runtime_interpreters_main = l->runtime_interpreters_main,
        .interp_gil_ptr = l->interp_gil_ptr,
        .gil_last_holder = l->gil_last_holder,
        .runtime = pp->loc.syms.runtime,
        .none = pp->loc.syms.none,
        .tuple_type = pp->loc.syms.tuple_type,
        .unicode_type = pp->loc.syms.unicode_type,
        .base_exc_flag = LAYOUT_TPFLAG(l, base_exc_subclass),
        .tgid = (__u32)pp->pid,
        .code_header_len = (__u32)code_header_len(l),
        .code_filename = l->code_filename,
        .code_name = l->code_name,
        .code_qualname = l->code_qualname,
        .code_linetable = l->code_linetable,
        .varobject_size = l->varobject_size,
        .bytes_sval = l->bytes_sval,
        .type_hdr_len = (__u32)((l->type_name > l->type_flags ? l->type_name : l->type_flags) + 8),
        .heaptype_flag = LAYOUT_TPFLAG(l, heaptype),
    };
    struct stat ns;

    if (stat("/proc/self/ns/pid", &ns) != 0)
        return ps_err_set(err, -errno, "bpf: cannot stat /proc/self/ns/pid (%s)", strerror(errno));
    c->pidns_dev = (__u64)ns.st_dev;
    c->pidns_ino = (__u64)ns.st_ino;
    /* the program reads frame fields from one EXC_BPF_FRAME_BLOCK-byte block, 8-aligned */
    if (l->frame_code < 0 || l->frame_previous < 0 || l->frame_instr < 0 || l->frame_owner < 0 ||
        l->frame_code % 8 || l->frame_previous % 8 || l->frame_instr % 8 ||
        l->frame_code > EXC_BPF_FRAME_BLOCK - 16 || l->frame_previous > EXC_BPF_FRAME_BLOCK - 16 ||
        l->frame_instr > EXC_BPF_FRAME_BLOCK - 16 || l->frame_owner > EXC_BPF_FRAME_BLOCK - 9 ||
        l->frameobj_f_frame < 0 || l->tstate_native_thread_id < 0 ||
        (l->tstate_current_exception < 0 && l->tstate_curexc_type < 0))
        return ps_err_set(err, -PS_EVERSION,
                          "bpf: the %s layout lacks a field the kernel-side reader needs", l->name);
    /* CODE records copy what the code resolver reads; a layout they would not fit sends none */
    if (c->code_header_len > EXC_BPF_CODE_HDR_MAX || l->code_filename < 0 || l->code_name < 0 ||
        l->code_qualname < 0 || l->code_linetable < 0 || l->varobject_size < 0 ||
        l->bytes_sval <= 0 || l->bytes_sval > EXC_BPF_CODE_SMALL_HDR || l->str_state < 0 ||
        l->str_state + 4 > EXC_BPF_CODE_SMALL_HDR)
        c->code_header_len = 0;
    if (l->type_name < 0 || l->type_flags < 0 || c->type_hdr_len > EXC_BPF_RANGE_MAX)
        c->type_hdr_len = 0;
    bare = bare ? bare + 1 : type_filter;
    if (bare && *bare) {
        size_t n = strlen(bare);
        if (n >= sizeof(c->type_filter))
            n = 0; /* longer than the program compares: user space alone filters */
        memcpy(c->type_filter, bare, n);
        c->type_filter_len = (__u32)n;
    }
    return 0;
}

/* Write cfg into the object's .rodata before load. */
static int bpf_exc_set_cfg(struct bpf_object *obj, const struct exc_bpf_cfg *c, struct ps_err *err)
{
    struct bpf_map *m;

    bpf_object__for_each_map(m, obj)
    {
        size_t size = 0;
        const void *cur;
        uint8_t *copy;
        int rc;
        if (!strstr(bpf_map__name(m), ".rodata"))
            continue;
        cur = bpf_map__initial_value(m, &size);
        if (!cur || size < sizeof(*c) || !(copy = malloc(size)))
            break;
        memcpy(copy, cur, size);
        memcpy(copy, c, sizeof(*c)); /* cfg is the section's only object */
        rc = bpf_map__set_initial_value(m, copy, size);
        free(copy);
        if (rc == 0)
            return 0;
        break;
    }
    return ps_err_set(err, -PS_ECORRUPT, "bpf: the embedded program has no configuration block");
}

/* ---- the kernel's facts under /sys, from our root or the target's ------------------------- */

/*
 * Open a sysfs file: ours, else the target's view of it (/proc/PID/root/sys/...). A debug
 * container or an empty root may have no /sys while the target's root has one (same kernel).
 */
static FILE *bpf_exc_sysfs(pid_t pid, const char *rel)
{
    char path[160];
    FILE *f;

    (void)snprintf(path, sizeof(path), "/sys/%s", rel);
    f = fopen(path, "re");
    if (f)
        return f;
    (void)snprintf(path, sizeof(path), "/proc/%d/root/sys/%s", (int)pid, rel);
    return fopen(path, "re");
}

/*
 * How many per-CPU values a lookup of the counters map writes: libbpf's count of the possible
 * CPUs, else (no /sys in our root) the highest CPU of the target's view of the same list, + 1
 * (at least the count: the caller's buffer is zeroed, so extra slots add nothing). -1 unknown.
 */
static int bpf_exc_ncpus(pid_t pid)
{
    int n = libbpf_num_possible_cpus(), top = -1;
    char buf[256];
    size_t len;
    FILE *f;

    if (n > 0)
        return n;
    f = bpf_exc_sysfs(pid, "devices/system/cpu/possible");
    if (!f)
        return -1;
    len = fread(buf, 1, sizeof(buf) - 1, f);
    (void)fclose(f);
    buf[len] = '\0';
    for (char *p = buf, *end; *p; p = end) { /* "0-3,8-11\n": the last number is the top */
        long v = strtol(p, &end, 10);

        if (end == p) {
            end = p + 1;
            continue;
        }
        if (v >= 0 && v < 65536 && v > top)
            top = (int)v;
    }
    return top >= 0 ? top + 1 : -1;
}

/* ---- attaching ---------------------------------------------------------------------------- */

/*
 * The file holding addr, as the target maps it, and addr's offset in it: /proc/PID/map_files
 * (the mapped inode itself), else /proc/PID/root + the mapped path (the target's own view).
 */
static int bpf_exc_site(const struct pyproc *pp, uint64_t addr, char *path, size_t cap,
                        uint64_t *off, struct ps_err *err)
{
    const struct maps_entry *e = maps_find(&pp->maps, addr);
    struct stat st;

    if (!e || !e->path || e->path[0] != '/')
        return ps_err_set(err, -ENOENT,
                          "bpf: PyTraceBack_Here (0x%" PRIx64 ") is not in a file mapping", addr);
    *off = addr - e->start + e->offset;
    (void)snprintf(path, cap, "/proc/%d/map_files/%" PRIx64 "-%" PRIx64, (int)pp->pid, e->start,
                   e->end);
    if (stat(path, &st) == 0)
        return 0;
    (void)snprintf(path, cap, "/proc/%d/root%s", (int)pp->pid, e->path);
    return 0;
}

static int bpf_exc_on_rec(void *ctx, void *data, size_t len)
{
    struct bpf_exc *b = ctx;

    if (len >= offsetof(struct exc_bpf_rec, ranges))
        b->cb(b->cb_ctx, data, len);
    /* negative: libbpf stops after this record (it is consumed) */
    return --b->budget > 0 ? 0 : -EAGAIN;
}

static int bpf_exc_load(struct bpf_exc *b, pid_t pid, const struct exc_bpf_cfg *c,
                        struct ps_err *err)
{
    struct bpf_object_open_opts oo = {.sz = sizeof(oo), .object_name = "pyscope_exc"};
    struct bpf_map *ring;
    int rc;

    (void)libbpf_set_print(bpf_exc_quiet);
    b->obj = bpf_object__open_mem(bpf_exc_obj_start, (size_t)bpf_exc_obj_size, &oo);
    if (!b->obj) {
        b->obj = NULL;
        return ps_err_set(err, -errno, "bpf: cannot open the embedded program (%s)",
                          strerror(errno));
    }
    rc = bpf_exc_set_cfg(b->obj, c, err);
    ring = bpf_object__find_map_by_name(b->obj, "events");
    if (rc == 0 && ring)
        rc = bpf_map__set_max_entries(ring, BPF_EXC_RING_BYTES);
    if (rc == 0 && bpf_object__load(b->obj) != 0)
        rc = ps_err_set(err, -errno,
                        "bpf: the kernel refused the program (%s); run with CAP_SYS_ADMIN, or "
                        "use --mechanism perf",
                        strerror(errno));
    if (rc < 0)
        return rc;
    b->tstates_fd = bpf_object__find_map_fd_by_name(b->obj, "tstates");
    b->counters_fd = bpf_object__find_map_fd_by_name(b->obj, "counters");
    b->sites_fd = bpf_object__find_map_fd_by_name(b->obj, "sites");
    b->ctl_fd = bpf_object__find_map_fd_by_name(b->obj, "ctl");
    b->known_fd = bpf_object__find_map_fd_by_name(b->obj, "known_codes");
    b->known_types_fd = bpf_object__find_map_fd_by_name(b->obj, "known_types");
    b->ncpus = bpf_exc_ncpus(pid);
    b->rb = ring_buffer__new(bpf_map__fd(ring), bpf_exc_on_rec, b, NULL);
    if (!b->rb || b->ncpus <= 0 || b->tstates_fd < 0 || b->counters_fd < 0 || b->sites_fd < 0 ||
        b->ctl_fd < 0 || b->known_fd < 0 || b->known_types_fd < 0)
        return ps_err_set(err, -ENOMEM, "bpf: cannot set up the program's ring buffer");
    return 0;
}

/*
 * The uprobe through perf_event_open on the kernel's "uprobe" PMU, whose type number is read
 * from the target's /sys when ours has none (what libbpf does from our /sys), then handed to
 * libbpf as a perf event link (which owns and closes the event). NULL with errno on failure.
 */
static struct bpf_link *bpf_exc_attach_pmu(const struct bpf_program *prog, pid_t pid,
                                           const char *path, uint64_t off)
{
    FILE *f = bpf_exc_sysfs(pid, "bus/event_source/devices/uprobe/type");
    struct perf_event_attr attr;
    struct bpf_link *link;
    char buf[32], *end = NULL;
    size_t len;
    long type;
    int fd, e;

    if (!f) {
        errno = ENOENT;
        return NULL;
    }
    len = fread(buf, 1, sizeof(buf) - 1, f);
    (void)fclose(f);
    buf[len] = '\0';
    type = strtol(buf, &end, 10);
    if (end == buf || type < 0 || type > INT32_MAX) {
        errno = ENOENT;
        return NULL;
    }
    memset(&attr, 0, sizeof(attr));
    attr.size = sizeof(attr);
    attr.type = (__u32)type;
    attr.config1 = (__u64)(uintptr_t)path; /* uprobe_path */
    attr.config2 = off;                    /* probe_offset */
    fd = (int)syscall(SYS_perf_event_open, &attr, pid, -1, -1, PERF_FLAG_FD_CLOEXEC);
    if (fd < 0)
        return NULL;
    link = bpf_program__attach_perf_event(prog, fd);
    if (!link) {
        e = errno;
        (void)close(fd);
        errno = e;
    }
    return link;
}

/*
 * Attach program name to the raw tracepoint tp (no tracefs needed); NULL when it cannot be (the
 * feature it serves degrades).
 */
static struct bpf_link *bpf_exc_attach_tp(struct bpf_object *obj, const char *name, const char *tp)
{
    struct bpf_program *prog = bpf_object__find_program_by_name(obj, name);
    struct bpf_link *link = prog ? bpf_program__attach_raw_tracepoint(prog, tp) : NULL;

    return link && libbpf_get_error(link) == 0 ? link : NULL;
}

static int bpf_exc_attach(struct bpf_exc *b, const struct pyproc *pp, uint64_t addr,
                          struct ps_err *err)
{
    struct bpf_program *prog = bpf_object__find_program_by_name(b->obj, "exc_hit");
    char path[MAPS_PATH_MAX + 64];
    uint64_t off = 0;
    int rc = bpf_exc_site(pp, addr, path, sizeof(path), &off, err);

    if (rc < 0)
        return rc;
    if (!prog)
        return ps_err_set(err, -PS_ECORRUPT, "bpf: the embedded program has no exc_hit");
    /* the thread-exit and exec tracepoints first: no hit can precede them */
    b->exit_link = bpf_exc_attach_tp(b->obj, "exc_exit", "sched_process_exit");
    b->exec_link = bpf_exc_attach_tp(b->obj, "exc_exec", "sched_process_exec");
    b->link = bpf_program__attach_uprobe(prog, false, pp->pid, path, (size_t)off);
    if (!b->link && errno == ENOENT) /* no /sys in our root: libbpf cannot find the uprobe PMU */
        b->link = bpf_exc_attach_pmu(prog, pp->pid, path, off);
    if (!b->link) {
        rc = -errno;
        b->link = NULL;
        return ps_err_set(err, rc, "bpf: cannot attach a uprobe at %s+0x%" PRIx64 " (%s)", path,
                          off, strerror(-rc));
    }
    return 0;
}

int bpf_exc_open(const struct pyproc *pp, uint64_t addr, const char *type_filter,
                 struct bpf_exc **out, struct ps_err *err)
{
    struct exc_bpf_cfg c;
    struct bpf_exc *b;
    int rc = bpf_exc_allowed(err);

    if (rc == 0)
        rc = bpf_exc_cfg(pp, type_filter, &c, err);
    if (rc < 0)
        return rc;
    b = calloc(1, sizeof(*b));
    if (!b)
        return ps_err_set(err, -ENOMEM, "out of memory for the bpf exception reader");
    b->tstates_fd = b->counters_fd = b->sites_fd = b->ctl_fd = b->known_fd = b->known_types_fd = -1;
    rc = bpf_exc_load(b, pp->pid, &c, err);
    if (rc == 0)
        rc = bpf_exc_attach(b, pp, addr, err);
    if (rc < 0) {
        bpf_exc_close(b);
        return rc;
    }
    *out = b;
    return 0;
}

bool bpf_exc_sees_exits(const struct bpf_exc *b)
{
    return b->exit_link && b->exec_link;
}

int bpf_exc_fd(const struct bpf_exc *b)
{
    return ring_buffer__epoll_fd(b->rb);
}

int bpf_exc_poll(struct bpf_exc *b, int max,
                 void (*cb)(void *ctx, const struct exc_bpf_rec *r, size_t len), void *ctx)
{
    int rc;

    b->cb = cb;
    b->cb_ctx = ctx;
    b->budget = max;
    rc = ring_buffer__consume(b->rb);
    return rc == -EAGAIN ? max : rc;
}

void bpf_exc_set_tstate(struct bpf_exc *b, pid_t tid, uint64_t tstate)
{
    __u32 key = (__u32)tid;
    __u64 v = tstate;

    if (tstate)
        (void)bpf_map_update_elem(b->tstates_fd, &key, &v, BPF_ANY);
    else
        (void)bpf_map_delete_elem(b->tstates_fd, &key);
}

void bpf_exc_forget_code(struct bpf_exc *b, uint64_t code)
{
    __u64 key = code;

    if (b && b->known_fd >= 0)
        (void)bpf_map_delete_elem(b->known_fd, &key);
}

void bpf_exc_forget_type(struct bpf_exc *b, uint64_t type)
{
    __u64 key = type;

    if (b && b->known_types_fd >= 0)
        (void)bpf_map_delete_elem(b->known_types_fd, &key);
}

void bpf_exc_counters(const struct bpf_exc *b, uint64_t *out)
{
    uint64_t *per = calloc((size_t)b->ncpus, sizeof(*per));

    for (__u32 k = 0; k < EXC_BPF_CNT_N; k++) {
        out[k] = 0;
        if (per && bpf_map_lookup_elem(b->counters_fd, &k, per) == 0)
            for (int c = 0; c < b->ncpus; c++)
                out[k] += per[c];
    }
    free(per);
}

void bpf_exc_set_sampling(struct bpf_exc *b, uint32_t every)
{
    __u32 zero = 0;
    struct exc_bpf_ctl c = {.sample_every = every};

    (void)bpf_map_update_elem(b->ctl_fd, &zero, &c, BPF_ANY);
}

size_t bpf_exc_sites(const struct bpf_exc *b, struct exc_bpf_site *keys, uint64_t *counts,
                     size_t cap)
{
    struct exc_bpf_site k, next;
    const void *prev = NULL;
    size_t n = 0;

    while (n < cap && bpf_map_get_next_key(b->sites_fd, prev, &next) == 0) {
        __u64 v = 0;
        if (bpf_map_lookup_elem(b->sites_fd, &next, &v) == 0) {
            keys[n] = next;
            counts[n++] = v;
        }
        k = next;
        prev = &k;
    }
    return n;
}

/* ---- the trap's cost, measured on our own code ---------------------------------------------- */

#define BPF_EXC_CALIB_CALLS  2000
#define BPF_EXC_CALIB_ROUNDS 3

/*
 * What the calibration probe is put on: a function of ours that starts as the target's
 * PyTraceBack_Here does in every build seen (Debian 3.11, pyenv 3.12/3.13: `push %r15`,
 * `push %r12`, `push %r14`), with a push, which the kernel emulates at a hit: one trap, as in
 * the target. (A C function started with a rip-relative load, which the kernel single-steps out
 * of line: two traps, 20-25 us per hit here against the target's ~7.) x86-64, as the program.
 */
__asm__(".pushsection .text\n"
        ".p2align 4\n"
        ".type bpf_exc_calib_point, @function\n"
        "bpf_exc_calib_point:\n"
        "    push %rbx\n"
        "    pop %rbx\n"
        "    ret\n"
        ".size bpf_exc_calib_point, . - bpf_exc_calib_point\n"
        ".popsection\n");
void bpf_exc_calib_point(void) __attribute__((visibility("hidden")));

/* CPU seconds per call of fn, the least of BPF_EXC_CALIB_ROUNDS rounds. The thread's CPU clock
 * counts the trap (the kernel handles it in this thread, as system time) and not the time other
 * threads had the core: by the wall clock, a loaded machine made the trap look twice as dear. */
static double bpf_exc_call_s(void (*volatile fn)(void))
{
    double best = INFINITY;

    for (int r = 0; r < BPF_EXC_CALIB_ROUNDS; r++) {
        double t0 = evloop_thread_cpu();
        for (int i = 0; i < BPF_EXC_CALIB_CALLS; i++)
            fn();
        best = fmin(best, (evloop_thread_cpu() - t0) / BPF_EXC_CALIB_CALLS);
    }
    return best;
}

double bpf_exc_trap_cost_s(struct bpf_exc *b)
{
    struct bpf_program *prog = bpf_object__find_program_by_name(b->obj, "exc_hit");
    void (*volatile fn)(void) = bpf_exc_calib_point;
    uint64_t addr = (uint64_t)(uintptr_t)fn, off = 0;
    struct ps_err ignored = {0};
    struct maps m = {0};
    const struct maps_entry *e;
    struct bpf_link *link;
    char path[96];
    double plain, probed;

    if (!prog || maps_read(getpid(), &m, &ignored) < 0)
        return -1.0;
    e = maps_find(&m, addr);
    if (e && e->x && e->path && e->path[0] == '/') {
        off = addr - e->start + e->offset;
        (void)snprintf(path, sizeof(path), "/proc/self/map_files/%" PRIx64 "-%" PRIx64, e->start,
                       e->end);
    }
    maps_free(&m);
    if (!e || off == 0)
        return -1.0;
    plain = bpf_exc_call_s(fn);
    /* the same program as the target's: for our pid it returns at its first check */
    link = bpf_program__attach_uprobe(prog, false, getpid(), path, (size_t)off);
    if (!link || libbpf_get_error(link) != 0)
        return -1.0;
    probed = bpf_exc_call_s(fn);
    bpf_link__destroy(link);
    return probed > plain ? probed - plain : -1.0;
}

void bpf_exc_detach(struct bpf_exc *b)
{
    if (!b)
        return;
    bpf_link__destroy(b->link);
    b->link = NULL;
}

void bpf_exc_close(struct bpf_exc *b)
{
    if (!b)
        return;
    bpf_link__destroy(b->link); /* first: the kernel removes the uprobe */
    bpf_link__destroy(b->exit_link);
    bpf_link__destroy(b->exec_link);
    ring_buffer__free(b->rb);
    bpf_object__close(b->obj);
    free(b);
}
