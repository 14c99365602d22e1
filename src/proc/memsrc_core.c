/* SPDX-License-Identifier: MIT */
/*
 * Core-file memory source (see core.h): reads target memory from an ELF core's PT_LOAD
 * segments. A segment holds p_filesz bytes in the core; the rest of it (p_memsz) was not dumped
 * (file-backed text and read-only data under the default coredump_filter, or all but the ELF
 * header page) and is read from the file the NT_FILE note says was mapped there, at the mapped
 * file offset. A read outside every segment, or in an undumped part of an anonymous segment,
 * fails with -EFAULT like an unmapped address in a live process.
 *
 * The core is untrusted: counts come from the file and are capped, every segment is checked
 * against the file size at open (a segment past the end means a truncated core, refused with a
 * clear error rather than half-read), NT_FILE strings are bounded by the note size.
 */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <inttypes.h>
#include <libelf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "memsrc_int.h"
#include "pyscope/core.h"
#include "pyscope/tfile.h"

#define NT_FILE_TYPE 0x46494c45 /* "FILE" (linux/elf.h NT_FILE) */
/* elf_prstatus.pr_pid offset on x86-64 and aarch64: elf_siginfo (12) + cursig (2) + pad (2) +
 * sigpend (8) + sighold (8). */
#define PRSTATUS_PID_OFF 32
/* elf_prstatus.pr_reg: after pr_pid, ppid, pgrp, sid (4 x 4) and four struct timevals (64). */
#define PRSTATUS_REG_OFF 112
/* elf_prpsinfo.pr_uid, pr_gid (32-bit __kernel_uid_t on x86-64 and aarch64): after pr_state,
 * pr_sname, pr_zomb, pr_nice (4 x 1), padding (4) and pr_flag (8). */
#define PRPSINFO_UID_OFF 16
#define PRPSINFO_GID_OFF 20

struct core_seg {
    uint64_t vaddr, memsz;
    uint64_t off, filesz; /* in the core */
    char *file;           /* resolved path of the mapped file, NULL for anonymous */
    uint64_t file_off;    /* file offset mapped at vaddr */
};

struct core_fd {
    const char *file; /* borrowed from a segment; NULL: free */
    int fd;
    uint64_t used;
};

struct memsrc_core {
    struct memsrc base;
    int fd;
    char *path;
    uint64_t size;
    struct core_seg *segs;
    size_t nsegs;
    struct core_fd fds[CORE_FD_CACHE];
    uint64_t tick;
};

/* What open collects besides the segments. */
struct core_parse {
    struct memsrc_core *mc;
    const struct core_opts *opts;
    Elf *elf;
    struct maps *maps;
    struct core_thread *threads;
    size_t nthreads;
    size_t nload; /* PT_LOAD segments (before file-only ones are added) */
    struct core_cred cred;
};

static void core_src_close(struct memsrc *src)
{
    struct memsrc_core *mc = (struct memsrc_core *)src;

    for (size_t i = 0; i < CORE_FD_CACHE; i++)
        if (mc->fds[i].file)
            (void)close(mc->fds[i].fd);
    for (size_t i = 0; i < mc->nsegs; i++)
        free(mc->segs[i].file);
    if (mc->fd >= 0)
        (void)close(mc->fd);
    free(mc->segs);
    free(mc->path);
    free(mc);
}

static void core_src_describe(const struct memsrc *src, char *buf, size_t len)
{
    (void)snprintf(buf, len, "core %s", ((const struct memsrc_core *)src)->path);
}

/* An fd for file (cached), or -1. */
static int core_file_fd(struct memsrc_core *mc, const char *file)
{
    struct core_fd *v = &mc->fds[0];

    mc->tick++;
    for (size_t i = 0; i < CORE_FD_CACHE; i++) {
        if (mc->fds[i].file == file) {
            mc->fds[i].used = mc->tick;
            return mc->fds[i].fd;
        }
        if (!mc->fds[i].file || mc->fds[i].used < v->used)
            v = &mc->fds[i];
    }
    if (v->file)
        (void)close(v->fd);
    v->file = NULL;
    v->fd = tfile_open_regular(file, "mapped file", NULL);
    if (v->fd < 0)
        return -1;
    v->file = file;
    v->used = mc->tick;
    return v->fd;
}

/* The segment holding addr (segments are sorted and disjoint), or NULL. */
static const struct core_seg *core_seg_of(const struct memsrc_core *mc, uint64_t addr)
{
    size_t lo = 0, hi = mc->nsegs;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct core_seg *s = &mc->segs[mid];

        if (addr < s->vaddr)
            hi = mid;
        else if (addr - s->vaddr >= s->memsz)
            lo = mid + 1;
        else
            return s;
    }
    return NULL;
}

/* Read n bytes at addr, all inside segment s. */
static int core_read_seg(struct memsrc_core *mc, const struct core_seg *s, uint64_t addr,
                         uint8_t *buf, size_t n)
{
    uint64_t rel = addr - s->vaddr;
    ssize_t got;
    int fd;

    if (rel < s->filesz) {
        size_t k = s->filesz - rel < n ? (size_t)(s->filesz - rel) : n;

        got = pread(mc->fd, buf, k, (off_t)(s->off + rel));
        if (got < 0 || (size_t)got != k)
            return -EIO;
        buf += k;
        rel += k;
        n -= k;
    }
    if (n == 0)
        return 0;
    fd = s->file ? core_file_fd(mc, s->file) : -1;
    if (fd < 0)
        return -EFAULT;
    got = pread(fd, buf, n, (off_t)(s->file_off + rel));
    return got >= 0 && (size_t)got == n ? 0 : -EFAULT;
}

static int core_read_one(struct memsrc_core *mc, uint64_t addr, uint8_t *buf, size_t len,
                         struct ps_err *err)
{
    /* Each step consumes a segment's tail, so at most nsegs + 1 steps. */
    for (size_t step = 0; len > 0 && step <= mc->nsegs; step++) {
        const struct core_seg *s = core_seg_of(mc, addr);
        uint64_t left;
        size_t n;
        int rc;

        if (!s)
            break;
        left = s->memsz - (addr - s->vaddr);
        n = left < len ? (size_t)left : len;
        rc = core_read_seg(mc, s, addr, buf, n);
        if (rc < 0)
            return ps_err_set(err, rc, "address 0x%" PRIx64 " is not readable in core %s%s", addr,
                              mc->path, rc == -EIO ? ": reading the core failed" : "");
        buf += n;
        addr += n;
        len -= n;
    }
    if (len > 0)
        return ps_err_set(err, -EFAULT, "address 0x%" PRIx64 " is not in core %s", addr, mc->path);
    return 0;
}

static int core_src_readv(struct memsrc *src, const struct memsrc_iov *iov, size_t n,
                          struct ps_err *err)
{
    struct memsrc_core *mc = (struct memsrc_core *)src;

    for (size_t i = 0; i < n; i++) {
        int rc = core_read_one(mc, iov[i].addr, iov[i].buf, iov[i].len, err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static const struct memsrc_ops core_ops = {
    .name = "core",
    .readv = core_src_readv,
    .describe = core_src_describe,
    .close = core_src_close,
};

/* Path to open for a recorded path: --exe for the executable, else under --lib-search-root. */
static char *core_resolve(const struct core_opts *o, const char *recorded, const char *exe)
{
    char buf[MAPS_PATH_MAX + 512];

    if (o->exe_file && exe && strcmp(recorded, exe) == 0)
        return strdup(o->exe_file);
    (void)snprintf(buf, sizeof(buf), "%s%s", o->file_root ? o->file_root : "", recorded);
    return strdup(buf);
}

/* True when [start, end) overlaps one of the first nload segments (the PT_LOADs: sorted and
 * disjoint, checked at open), by binary search. */
static bool core_overlaps(const struct memsrc_core *mc, size_t nload, uint64_t start, uint64_t end)
{
    size_t lo = 0, hi = nload;

    while (lo < hi) { /* first segment starting at or after end */
        size_t mid = lo + (hi - lo) / 2;

        if (mc->segs[mid].vaddr < end)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo > 0 && mc->segs[lo - 1].vaddr + mc->segs[lo - 1].memsz > start;
}

/* A file mapping with no PT_LOAD (gcore leaves out read-only file mappings): a segment with
 * nothing in the core, read from the file. Arrays grow one entry at a time (bounded by
 * CORE_MAX_FILES); core_sort restores the address order. */
static int core_add_file_seg(struct core_parse *p, uint64_t start, uint64_t end, uint64_t off,
                             const char *path)
{
    struct memsrc_core *mc = p->mc;
    struct core_seg *ns;
    struct maps_entry *ne;

    if (end <= start || core_overlaps(mc, p->nload, start, end))
        return 0;
    ns = realloc(mc->segs, (mc->nsegs + 1) * sizeof(*ns));
    if (ns)
        mc->segs = ns;
    ne = realloc(p->maps->v, (p->maps->n + 1) * sizeof(*ne));
    if (ne)
        p->maps->v = ne;
    if (!ns || !ne)
        return -ENOMEM;
    mc->segs[mc->nsegs++] = (struct core_seg){.vaddr = start, .memsz = end - start};
    p->maps->v[p->maps->n] = (struct maps_entry){.start = start,
                                                 .end = end,
                                                 .offset = off,
                                                 .r = true,
                                                 .x = true,
                                                 .p = true,
                                                 .path = strdup(path)};
    return p->maps->v[p->maps->n++].path ? 0 : -ENOMEM;
}

/* Name the segment starting at start (NT_FILE entry), or add one for the file. */
static int core_name_seg(struct core_parse *p, uint64_t start, uint64_t end, uint64_t file_off,
                         const char *path)
{
    struct maps *m = p->maps;

    for (size_t i = 0; i < m->n; i++) {
        if (m->v[i].start != start || m->v[i].path[0])
            continue;
        free(m->v[i].path);
        m->v[i].path = strdup(path);
        m->v[i].offset = file_off;
        return m->v[i].path ? 0 : -ENOMEM;
    }
    return core_add_file_seg(p, start, end, file_off, path);
}

static int seg_cmp(const void *a, const void *b)
{
    const struct core_seg *x = a, *y = b;

    return x->vaddr < y->vaddr ? -1 : x->vaddr > y->vaddr;
}

static int entry_cmp(const void *a, const void *b)
{
    const struct maps_entry *x = a, *y = b;

    return x->start < y->start ? -1 : x->start > y->start;
}

/* Segments and maps entries are 1:1 with distinct starts: sorting both keeps them aligned. */
static void core_sort(struct core_parse *p)
{
    qsort(p->mc->segs, p->mc->nsegs, sizeof(*p->mc->segs), seg_cmp);
    qsort(p->maps->v, p->maps->n, sizeof(*p->maps->v), entry_cmp);
}

/* NT_FILE: count, page size, count x {start, end, page offset}, then count file names. */
static int core_note_file(struct core_parse *p, const uint8_t *d, size_t len, struct ps_err *err)
{
    uint64_t count, page;
    const char *names;
    size_t left;

    if (len < 16)
        return 0;
    count = memsrc_le64(d);
    page = memsrc_le64(d + 8);
    if (count > CORE_MAX_FILES || 16 + count * 24 > len)
        return ps_err_set(err, -PS_EFORMAT, "the NT_FILE note of the core is corrupt");
    names = (const char *)d + 16 + count * 24;
    left = len - 16 - count * 24;
    for (uint64_t i = 0; i < count; i++) {
        const uint8_t *e = d + 16 + i * 24;
        size_t nl = strnlen(names, left);

        if (nl == left)
            break; /* unterminated: the rest is unnamed */
        if (core_name_seg(p, memsrc_le64(e), memsrc_le64(e + 8), memsrc_le64(e + 16) * page,
                          names) < 0)
            return ps_err_set(err, -ENOMEM, "out of memory reading the core's file list");
        names += nl + 1;
        left -= nl + 1;
    }
    return 0;
}

static int core_note_prstatus(struct core_parse *p, const uint8_t *d, size_t len,
                              struct ps_err *err)
{
    struct core_thread *nt;
    size_t nregs;

    if (len < PRSTATUS_REG_OFF)
        return 0;
    if (p->nthreads >= CORE_MAX_THREADS)
        return ps_err_set(err, -PS_ELIMIT, "the core has more than %d threads", CORE_MAX_THREADS);
    nt = realloc(p->threads, (p->nthreads + 1) * sizeof(*nt));
    if (!nt)
        return ps_err_set(err, -ENOMEM, "out of memory reading the core's threads");
    p->threads = nt;
    nt = &p->threads[p->nthreads++];
    memset(nt, 0, sizeof(*nt));
    nt->tid = (pid_t)memsrc_le32(d + PRSTATUS_PID_OFF);
    nregs = (len - PRSTATUS_REG_OFF) / 8;
    for (size_t i = 0; i < nregs && i < CORE_NREGS; i++)
        nt->regs[i] = memsrc_le64(d + PRSTATUS_REG_OFF + i * 8);
    return 0;
}

/* NT_PRPSINFO: the process's real uid and gid (a cut note leaves them unknown). */
static void core_note_prpsinfo(struct core_parse *p, const uint8_t *d, size_t len)
{
    if (len < PRPSINFO_GID_OFF + 4)
        return;
    p->cred = (struct core_cred){.known = true,
                                 .uid = (uid_t)memsrc_le32(d + PRPSINFO_UID_OFF),
                                 .gid = (gid_t)memsrc_le32(d + PRPSINFO_GID_OFF)};
}

/* Walk one PT_NOTE segment. */
static int core_notes(struct core_parse *p, const GElf_Phdr *ph, struct ps_err *err)
{
    Elf_Data *data = elf_getdata_rawchunk(p->elf, (int64_t)ph->p_offset, ph->p_filesz, ELF_T_NHDR);
    size_t off = 0, next, name_off, desc_off;
    GElf_Nhdr nh;
    int rc = 0;

    if (!data || !data->d_buf)
        return ps_err_set(err, -PS_EFORMAT, "the notes of core %s are unreadable: %s", p->mc->path,
                          elf_errmsg(-1));
    while (rc == 0 && off < data->d_size &&
           (next = gelf_getnote(data, off, &nh, &name_off, &desc_off)) > off) {
        const uint8_t *desc = (const uint8_t *)data->d_buf + desc_off;

        if (nh.n_type == NT_PRSTATUS)
            rc = core_note_prstatus(p, desc, nh.n_descsz, err);
        else if (nh.n_type == NT_FILE_TYPE)
            rc = core_note_file(p, desc, nh.n_descsz, err);
        else if (nh.n_type == NT_PRPSINFO)
            core_note_prpsinfo(p, desc, nh.n_descsz);
        off = next;
    }
    return rc;
}

/* Add PT_LOAD ph as a segment and an (unnamed for now) maps entry. */
static int core_add_load(struct core_parse *p, const GElf_Phdr *ph, struct ps_err *err)
{
    struct memsrc_core *mc = p->mc;
    struct maps_entry *e = &p->maps->v[p->maps->n];
    struct core_seg *s = &mc->segs[mc->nsegs];

    if (ph->p_offset + ph->p_filesz > mc->size || ph->p_offset + ph->p_filesz < ph->p_offset)
        return ps_err_set(err, -PS_EFORMAT,
                          "core %s is truncated: a segment ends at byte %" PRIu64
                          " but the file has %" PRIu64
                          " bytes (was the disk full, or RLIMIT_CORE too small?)",
                          mc->path, ph->p_offset + ph->p_filesz, mc->size);
    if (ph->p_filesz > ph->p_memsz || ph->p_vaddr + ph->p_memsz < ph->p_vaddr ||
        (mc->nsegs > 0 &&
         ph->p_vaddr < mc->segs[mc->nsegs - 1].vaddr + mc->segs[mc->nsegs - 1].memsz))
        return ps_err_set(err, -PS_EFORMAT, "core %s has overlapping or unsorted segments",
                          mc->path);
    *s = (struct core_seg){
        .vaddr = ph->p_vaddr, .memsz = ph->p_memsz, .off = ph->p_offset, .filesz = ph->p_filesz};
    *e = (struct maps_entry){.start = ph->p_vaddr,
                             .end = ph->p_vaddr + ph->p_memsz,
                             .r = (ph->p_flags & PF_R) != 0,
                             .w = (ph->p_flags & PF_W) != 0,
                             .x = (ph->p_flags & PF_X) != 0,
                             .p = true,
                             .path = strdup("")};
    if (!e->path)
        return ps_err_set(err, -ENOMEM, "out of memory reading core %s", mc->path);
    mc->nsegs++;
    p->maps->n++;
    return 0;
}

static int core_phdrs(struct core_parse *p, struct ps_err *err)
{
    size_t phnum = 0;
    GElf_Phdr ph;
    int rc = 0;

    if (elf_getphdrnum(p->elf, &phnum) != 0 || phnum > CORE_MAX_SEGMENTS)
        return ps_err_set(err, -PS_EFORMAT, "core %s has an unreadable program header table",
                          p->mc->path);
    p->mc->segs = calloc(phnum ? phnum : 1, sizeof(*p->mc->segs));
    p->maps->v = calloc(phnum ? phnum : 1, sizeof(*p->maps->v));
    if (!p->mc->segs || !p->maps->v)
        return ps_err_set(err, -ENOMEM, "out of memory reading core %s", p->mc->path);
    for (size_t i = 0; i < phnum && rc == 0; i++)
        if (gelf_getphdr(p->elf, (int)i, &ph) && ph.p_type == PT_LOAD)
            rc = core_add_load(p, &ph, err);
    p->nload = p->mc->nsegs;
    for (size_t i = 0; i < phnum && rc == 0; i++)
        if (gelf_getphdr(p->elf, (int)i, &ph) && ph.p_type == PT_NOTE)
            rc = core_notes(p, &ph, err);
    if (rc == 0)
        core_sort(p);
    return rc;
}

/* The recorded executable: the lowest-addressed file mapping at offset 0. */
static const char *core_exe(const struct maps *m)
{
    for (size_t i = 0; i < m->n; i++)
        if (m->v[i].path && m->v[i].path[0] == '/' && m->v[i].offset == 0)
            return m->v[i].path;
    return NULL;
}

/* Resolve every named segment's file for fallback reads. */
static int core_files(struct core_parse *p, struct ps_err *err)
{
    const char *exe = core_exe(p->maps);

    if (!p->mc->segs)
        return 0;
    /* Segments and maps entries are 1:1 (core_sort keeps them aligned). */
    for (size_t i = 0; i < p->maps->n && i < p->mc->nsegs; i++) {
        const struct maps_entry *e = &p->maps->v[i];

        if (!e->path || e->path[0] != '/')
            continue;
        p->mc->segs[i].file = core_resolve(p->opts, e->path, exe);
        p->mc->segs[i].file_off = e->offset;
        if (!p->mc->segs[i].file)
            return ps_err_set(err, -ENOMEM, "out of memory reading core %s", p->mc->path);
    }
    return 0;
}

static int core_check_elf(struct core_parse *p, struct ps_err *err)
{
    GElf_Ehdr eh;
    const char *ident = elf_getident(p->elf, NULL);

    if (elf_kind(p->elf) != ELF_K_ELF || !ident || !gelf_getehdr(p->elf, &eh) ||
        eh.e_type != ET_CORE)
        return ps_err_set(err, -PS_EFORMAT,
                          "%s is not an ELF core file: give the file the kernel or gcore "
                          "wrote",
                          p->mc->path);
    if (ident[EI_CLASS] != ELFCLASS64 || ident[EI_DATA] != ELFDATA2LSB ||
        (eh.e_machine != EM_X86_64 && eh.e_machine != EM_AARCH64))
        return ps_err_set(err, -PS_EFORMAT,
                          "core %s is not a 64-bit little-endian x86-64 or aarch64 core",
                          p->mc->path);
    return 0;
}

static int core_open_file(struct memsrc_core *mc, const char *path, struct ps_err *err)
{
    struct stat sb;

    mc->path = strdup(path);
    if (!mc->path)
        return ps_err_set(err, -ENOMEM, "out of memory opening %s", path);
    mc->fd = tfile_open_regular(path, "the core file", err);
    if (mc->fd < 0)
        return mc->fd;
    if (fstat(mc->fd, &sb) != 0)
        return ps_err_set(err, -errno, "cannot read the core file %s: %s", path, strerror(errno));
    mc->size = (uint64_t)sb.st_size;
    return 0;
}

static int core_parse_all(struct core_parse *p, struct ps_err *err)
{
    int rc;

    (void)elf_version(EV_CURRENT);
    p->elf = elf_begin(p->mc->fd, ELF_C_READ, NULL);
    if (!p->elf)
        return ps_err_set(err, -PS_EFORMAT, "libelf cannot read core %s: %s", p->mc->path,
                          elf_errmsg(-1));
    rc = core_check_elf(p, err);
    if (rc == 0)
        rc = core_phdrs(p, err);
    if (rc == 0 && p->nthreads == 0)
        rc = ps_err_set(err, -PS_EFORMAT,
                        "core %s holds no thread (NT_PRSTATUS) notes: it is truncated or not "
                        "a process core",
                        p->mc->path);
    if (rc == 0)
        rc = core_files(p, err);
    (void)elf_end(p->elf);
    return rc;
}

int memsrc_core_open(const struct core_opts *opts, struct memsrc **out, struct maps *maps,
                     struct core_thread **threads, size_t *nthreads, struct core_cred *cred,
                     struct ps_err *err)
{
    struct memsrc_core *mc = calloc(1, sizeof(*mc));
    struct core_parse p = {.mc = mc, .opts = opts, .maps = maps};
    int rc;

    memset(maps, 0, sizeof(*maps));
    if (!mc)
        return ps_err_set(err, -ENOMEM, "out of memory opening %s", opts->path);
    mc->base.ops = &core_ops;
    mc->fd = -1;
    rc = core_open_file(mc, opts->path, err);
    if (rc == 0)
        rc = core_parse_all(&p, err);
    if (rc < 0) {
        core_src_close(&mc->base);
        maps_free(maps);
        free(p.threads);
        return rc;
    }
    mc->base.pid = 0; /* no live process: the collector must not consult /proc */
    *out = &mc->base;
    *threads = p.threads;
    *nthreads = p.nthreads;
    *cred = p.cred;
    return 0;
}

bool memsrc_core_dumped(const struct memsrc *src, uint64_t addr, size_t len)
{
    const struct memsrc_core *mc = (const struct memsrc_core *)src;
    const struct core_seg *s;

    if (!src || src->ops != &core_ops)
        return false;
    s = core_seg_of(mc, addr);
    return s && addr - s->vaddr < s->filesz && len <= s->filesz - (addr - s->vaddr);
}
