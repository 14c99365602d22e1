/* SPDX-License-Identifier: MIT */
/*
 * Native stacks, part 1 (see native.h): the context, its cache of opened ELF images, turning a
 * pc into symbol + offset + module, and decoding the instruction there with capstone.
 *
 * A pc maps to an image through the maps (live: /proc/PID/maps; core: the NT_FILE note), and
 * to a link-time vaddr through the mapping's file offset and the image's PT_LOAD headers, which
 * works for PIE, non-PIE and shared objects alike. Instruction bytes come from the image file
 * (a core holds no text pages) and, for anonymous code, from the memory source. Nothing here
 * touches the target except through that source; images are opened read-only.
 *
 * Cache: NATIVE_MAX_IMAGES images (a process maps a few dozen), least recently used evicted;
 * misses are cached so a missing file costs one open() per run.
 */
#include "native_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Longest x86-64 instruction; call instructions are 2 to 7 bytes. */
#define NATIVE_INSN_MAX 15
#define NATIVE_CALL_MAX 7

static int native_cs_open(struct native_ctx *ctx, struct ps_err *err)
{
#if defined(__x86_64__)
    cs_err rc = cs_open(CS_ARCH_X86, CS_MODE_64, &ctx->cs);
#elif defined(__aarch64__)
    cs_err rc = cs_open(CS_ARCH_ARM64, CS_MODE_ARM, &ctx->cs);
#else
    cs_err rc = CS_ERR_ARCH;
#endif

    if (rc != CS_ERR_OK)
        return ps_err_set(err, -ENOMEM, "capstone cannot start: %s", cs_strerror(rc));
    ctx->cs_open = true;
    return 0;
}

int native_new(pid_t pid, const struct maps *maps, struct memsrc *src,
               const struct native_opts *opts, struct native_ctx **out, struct ps_err *err)
{
    struct native_ctx *ctx = calloc(1, sizeof(*ctx));

    if (!ctx)
        return ps_err_set(err, -ENOMEM, "out of memory for native stacks");
    ctx->pid = pid;
    ctx->maps = maps;
    ctx->src = src;
    if (opts) {
        ctx->opts.disasm = opts->disasm;
        (void)snprintf(ctx->file_root, sizeof(ctx->file_root), "%s",
                       opts->file_root ? opts->file_root : "");
        (void)snprintf(ctx->debug_dir, sizeof(ctx->debug_dir), "%s",
                       opts->debug_dir ? opts->debug_dir : "");
        (void)snprintf(ctx->exe_file, sizeof(ctx->exe_file), "%s",
                       opts->exe_file ? opts->exe_file : "");
    }
    ctx->opts.file_root = ctx->file_root[0] ? ctx->file_root : NULL;
    ctx->opts.debug_dir = ctx->debug_dir[0] ? ctx->debug_dir : NULL;
    ctx->opts.exe_file = ctx->exe_file[0] ? ctx->exe_file : NULL;
    if (ctx->opts.disasm && native_cs_open(ctx, err) < 0) {
        free(ctx);
        return err->code;
    }
    *out = ctx;
    return 0;
}

void native_close(struct native_ctx *ctx)
{
    if (!ctx)
        return;
    native_unwind_close(ctx);
    for (size_t i = 0; i < NATIVE_MAX_IMAGES; i++) {
        symtab_close(ctx->images[i].st);
        free(ctx->images[i].path);
    }
    if (ctx->cs_open)
        (void)cs_close(&ctx->cs);
    free(ctx);
}

/* Where to open mapping e's file from. */
static void image_path(const struct native_ctx *ctx, const struct maps_entry *e, char *buf,
                       size_t len)
{
    if (ctx->pid > 0 && e->deleted)
        (void)snprintf(buf, len, "/proc/%d/map_files/%" PRIx64 "-%" PRIx64, (int)ctx->pid, e->start,
                       e->end);
    else if (ctx->core && ctx->opts.exe_file && strcmp(e->path, ctx->core->exe) == 0)
        (void)snprintf(buf, len, "%s", ctx->opts.exe_file);
    else if (ctx->opts.file_root && *ctx->opts.file_root)
        (void)snprintf(buf, len, "%s%s", ctx->opts.file_root, e->path);
    else
        (void)snprintf(buf, len, "%s", e->path);
}

int native_core_files(const struct native_ctx *ctx, struct ps_err *err)
{
    char path[2 * MAPS_PATH_MAX];

    for (size_t i = 0; i < ctx->maps->n; i++) {
        const struct maps_entry *e = &ctx->maps->v[i];

        if (e->path[0] != '/' || e->deleted || strncmp(e->path, "/dev/", 5) == 0)
            continue; /* anonymous, gone, or a device: nothing to unwind through */
        image_path(ctx, e, path, sizeof(path));
        if (access(path, F_OK) != 0)
            return ps_err_set(err, -ENOENT,
                              "the core maps %s but %s does not exist: copy the binaries from "
                              "the crashed machine and point --lib-search-root (or --exe) at them",
                              e->path, path);
    }
    return 0;
}

/* The slot to (re)use: a free one, else the least recently used. */
static struct native_image *image_victim(struct native_ctx *ctx)
{
    struct native_image *v = &ctx->images[0];

    for (size_t i = 0; i < NATIVE_MAX_IMAGES; i++) {
        if (!ctx->images[i].path)
            return &ctx->images[i];
        if (ctx->images[i].used < v->used)
            v = &ctx->images[i];
    }
    symtab_close(v->st);
    free(v->path);
    memset(v, 0, sizeof(*v));
    return v;
}

/* Open and index the file of e into slot im (a failure leaves a cached miss). */
/* A live target's mapped file: the kernel's handle on the mapping itself (map_files: the file
 * that is mapped, whatever its path now names; needs CAP_SYS_ADMIN), else the path inside the
 * target's root, kept only when it is still the mapped file (the inode of the open
 * descriptor): a target that renames or bind-mounts another file over the path gets no
 * symbols rather than another file's. NULL when neither opens. */
static struct symtab *image_open_live(const struct native_ctx *ctx, const struct maps_entry *e)
{
    struct ps_err ignored = {0};
    char path[MAPS_PATH_MAX + 64];
    struct symtab *st = NULL;

    (void)snprintf(path, sizeof(path), "/proc/%d/map_files/%" PRIx64 "-%" PRIx64, (int)ctx->pid,
                   e->start, e->end);
    if (symtab_open(path, &st, &ignored) == 0)
        return st;
    if (e->deleted)
        return NULL; /* its path names nothing, or another file */
    image_path(ctx, e, path, sizeof(path));
    if (symtab_open(path, &st, &ignored) < 0)
        return NULL;
    if (symtab_is_inode(st, e->inode))
        return st;
    symtab_close(st);
    return NULL;
}

static void image_load(struct native_ctx *ctx, const struct maps_entry *e, struct native_image *im)
{
    struct ps_err ignored = {0};
    char path[MAPS_PATH_MAX + 64];

    im->inode = e->inode;
    if (ctx->pid > 0 && !ctx->core) {
        im->st = image_open_live(ctx, e);
    } else {
        image_path(ctx, e, path, sizeof(path));
        if (symtab_open(path, &im->st, &ignored) < 0)
            im->st = NULL;
    }
    if (im->st && symtab_index_build(im->st, ctx->opts.debug_dir, &ignored) < 0) {
        symtab_close(im->st);
        im->st = NULL;
    }
}

struct symtab *native_image(struct native_ctx *ctx, const struct maps_entry *e)
{
    struct native_image *im;

    if (!e || !e->path || e->path[0] != '/')
        return NULL;
    ctx->tick++;
    for (size_t i = 0; i < NATIVE_MAX_IMAGES; i++) {
        im = &ctx->images[i];
        if (im->path && im->inode == e->inode && strcmp(im->path, e->path) == 0) {
            im->used = ctx->tick;
            return im->st;
        }
    }
    im = image_victim(ctx);
    im->path = strdup(e->path);
    if (!im->path)
        return NULL;
    im->used = ctx->tick;
    image_load(ctx, e, im);
    return im->st;
}

void native_preload(struct native_ctx *ctx)
{
    size_t opened = 0;

    for (size_t i = 0; i < ctx->maps->n && opened < NATIVE_MAX_IMAGES; i++) {
        const struct maps_entry *e = &ctx->maps->v[i];
        if (e->x && e->path && e->path[0] == '/') {
            (void)native_image(ctx, e);
            opened++;
        }
    }
}

/* Copy up to len instruction bytes at pc: from the image file, else from target memory. */
static size_t insn_bytes(struct native_ctx *ctx, const struct maps_entry *e, struct symtab *st,
                         uint64_t pc, uint8_t *buf, size_t len)
{
    struct ps_err ignored = {0};
    uint64_t vaddr;

    if (st && symtab_offset_vaddr(st, e->offset + (pc - e->start), &vaddr) == 0 &&
        symtab_read_vaddr(st, vaddr, buf, len, &ignored) == 0)
        return len;
    if (ctx->src && memsrc_read(ctx->src, pc, buf, len, &ignored) == 0)
        return len;
    return 0;
}

/* Decode one instruction of exactly want bytes (0: any) at buf into out. */
static bool insn_decode(struct native_ctx *ctx, const uint8_t *buf, size_t len, uint64_t addr,
                        size_t want, bool need_call, char *out, size_t outlen)
{
    cs_insn *insn = NULL;
    size_t n = cs_disasm(ctx->cs, buf, len, addr, 1, &insn);
    bool ok = n == 1 && (want == 0 || insn->size == want) &&
              (!need_call || strncmp(insn->mnemonic, "call", 4) == 0 ||
               strcmp(insn->mnemonic, "bl") == 0 || strcmp(insn->mnemonic, "blr") == 0);

    if (ok)
        (void)snprintf(out, outlen, "%.31s%s%.100s", insn->mnemonic, insn->op_str[0] ? " " : "",
                       insn->op_str);
    if (n > 0)
        cs_free(insn, n);
    return ok;
}

/*
 * The instruction to show for pc: the one at pc for the innermost frame; for a return address,
 * the call that ends at pc when one decodes there (else the one at pc).
 */
static bool insn_text(struct native_ctx *ctx, const struct maps_entry *e, struct symtab *st,
                      uint64_t pc, bool innermost, char *out, size_t outlen)
{
    uint8_t buf[NATIVE_INSN_MAX + NATIVE_CALL_MAX];

    if (!innermost && pc >= NATIVE_CALL_MAX &&
        insn_bytes(ctx, e, st, pc - NATIVE_CALL_MAX, buf, sizeof(buf)) == sizeof(buf)) {
        /* Most calls are 5 bytes (call rel32); then the indirect forms, shortest first. */
        static const size_t sizes[] = {5, 2, 3, 6, 7, 4};

        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
            if (insn_decode(ctx, buf + NATIVE_CALL_MAX - sizes[i], sizes[i], pc - sizes[i],
                            sizes[i], true, out, outlen))
                return true;
        return insn_decode(ctx, buf + NATIVE_CALL_MAX, NATIVE_INSN_MAX, pc, 0, false, out, outlen);
    }
    if (insn_bytes(ctx, e, st, pc, buf, NATIVE_INSN_MAX) != NATIVE_INSN_MAX)
        return false;
    return insn_decode(ctx, buf, NATIVE_INSN_MAX, pc, 0, false, out, outlen);
}

/* Symbol and offset of pc in image st mapped by e. */
static int sym_of(struct native_ctx *ctx, const struct maps_entry *e, struct symtab *st,
                  uint64_t pc, bool innermost, struct snap *s, struct snap_native_frame *f)
{
    uint64_t look = innermost ? pc : pc - 1, vaddr, start;
    const char *name;

    (void)ctx;
    if (symtab_offset_vaddr(st, e->offset + (look - e->start), &vaddr) < 0 ||
        symtab_addr_lookup(st, vaddr, &name, &start) < 0)
        return 0;
    f->symbol = snap_strdup(s, name);
    f->offset = vaddr + (pc - look) - start;
    return f->symbol ? 0 : -ENOMEM;
}

int native_symbolize(struct native_ctx *ctx, uint64_t pc, bool innermost, struct snap *s,
                     struct snap_native_frame *f, struct ps_err *err)
{
    uint64_t look = innermost || pc == 0 ? pc : pc - 1;
    const struct maps_entry *e = maps_find(ctx->maps, look);
    struct symtab *st = e ? native_image(ctx, e) : NULL;
    char insn[160];

    memset(f, 0, sizeof(*f));
    f->pc = pc;
    f->python_frame = -1;
    f->nested_thread = f->nested_frame = -1;
    if (e && e->path && e->path[0]) {
        f->module = snap_strdup(s, e->path);
        if (!f->module)
            return ps_err_set(err, -ENOMEM, "out of memory symbolizing native frames");
    }
    if (st && sym_of(ctx, e, st, pc, innermost || pc == 0, s, f) < 0)
        return ps_err_set(err, -ENOMEM, "out of memory symbolizing native frames");
    if (ctx->cs_open && e && insn_text(ctx, e, st, pc, innermost, insn, sizeof(insn))) {
        f->insn = snap_strdup(s, insn);
        if (!f->insn)
            return ps_err_set(err, -ENOMEM, "out of memory disassembling native frames");
    }
    return 0;
}
