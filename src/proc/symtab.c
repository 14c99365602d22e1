/* SPDX-License-Identifier: MIT */
/*
 * ELF images through libelf (see symtab.h). Sits below locate: it opens the file that holds the
 * CPython runtime, answers "where is symbol X" and "what bytes does the image hold at link-time
 * vaddr V", and never touches target memory.
 *
 * The file is untrusted: libelf bounds-checks section data and string offsets, and this module
 * adds its own checks on top (symbol counts from d_size, sh_link against the section count,
 * PT_LOAD ranges against the file size, vaddr arithmetic against overflow). Bytes at a vaddr are
 * read with pread() from the fd libelf was given (ELF_C_READ: read-only, nothing is mapped
 * writable). The only module state is the once-flag for elf_version(), which libelf requires
 * before any other call and which sets libelf's own process-wide state.
 */
#include "pyscope/symtab.h"

#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <inttypes.h>
#include <libelf.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pyscope/tfile.h"
#include "symtab_int.h"

/* ELF allows up to 2^32 program headers via PN_XNUM; real images have about a dozen. */
#define SYMTAB_MAX_PHDRS 4096u
/* Section counts beyond this are garbage or hostile (big C++ objects have ~100k). */
#define SYMTAB_MAX_SECTIONS (1u << 20)

static pthread_once_t symtab_elf_once = PTHREAD_ONCE_INIT;
static void symtab_elf_init(void)
{
    (void)elf_version(EV_CURRENT);
}

static int symtab_check_ehdr(struct symtab *st, struct ps_err *err)
{
    GElf_Ehdr eh;
    const char *ident;

    ident = elf_getident(st->elf, NULL);
    if (elf_kind(st->elf) != ELF_K_ELF || !ident || !gelf_getehdr(st->elf, &eh))
        return ps_err_set(err, -PS_EFORMAT,
                          "%s is not an ELF file: point at the executable or "
                          "shared library that holds the Python runtime",
                          st->path);
    if (ident[EI_CLASS] != ELFCLASS64 || ident[EI_DATA] != ELFDATA2LSB ||
        (eh.e_machine != EM_X86_64 && eh.e_machine != EM_AARCH64))
        return ps_err_set(err, -PS_EFORMAT,
                          "%s is not a 64-bit little-endian x86-64 or aarch64 "
                          "ELF file, which is all pyscope reads",
                          st->path);
    st->dyn = eh.e_type == ET_DYN;
    if (elf_getshdrnum(st->elf, &st->shnum) != 0 || st->shnum > SYMTAB_MAX_SECTIONS ||
        elf_getshdrstrndx(st->elf, &st->shstrndx) != 0 || st->shstrndx >= st->shnum)
        st->shnum = 0; /* no usable section table: symbols and sections read as absent */
    return 0;
}

/* Keep one PT_LOAD if it is consistent; inconsistent ones are dropped (never trusted). */
static void symtab_add_seg(struct symtab *st, const GElf_Phdr *ph)
{
    struct symtab_seg *s;

    if (ph->p_filesz > ph->p_memsz || ph->p_vaddr + ph->p_memsz < ph->p_vaddr ||
        ph->p_offset + ph->p_filesz < ph->p_offset)
        return;
    s = &st->segs[st->nsegs++];
    s->vaddr = ph->p_vaddr;
    s->offset = ph->p_offset;
    s->filesz = ph->p_filesz;
    s->memsz = ph->p_memsz;
}

/*
 * Copy the PT_LOAD headers and find the load vaddr: the vaddr that file offset 0 is mapped at,
 * i.e. p_vaddr - p_offset of the lowest-offset PT_LOAD, rounded down to its alignment (equal to
 * p_vaddr of the PT_LOAD at offset 0 when there is one, as with every common linker).
 */
static int symtab_load_phdrs(struct symtab *st, struct ps_err *err)
{
    size_t phnum = 0;
    uint64_t best_off = UINT64_MAX;
    GElf_Phdr ph;

    if (elf_getphdrnum(st->elf, &phnum) != 0 || phnum > SYMTAB_MAX_PHDRS)
        return ps_err_set(err, -PS_EFORMAT,
                          "%s has an unreadable program header table: the "
                          "file is corrupt or truncated",
                          st->path);
    st->segs = calloc(phnum ? phnum : 1, sizeof(*st->segs));
    if (!st->segs)
        return ps_err_set(err, -ENOMEM, "out of memory reading %s", st->path);
    for (size_t i = 0; i < phnum; i++) {
        if (!gelf_getphdr(st->elf, (int)i, &ph) || ph.p_type != PT_LOAD)
            continue;
        symtab_add_seg(st, &ph);
        if (ph.p_offset < best_off && ph.p_vaddr >= ph.p_offset) {
            uint64_t align = ph.p_align > 1 ? ph.p_align : 1;
            best_off = ph.p_offset;
            st->load_vaddr = (ph.p_vaddr - ph.p_offset) & ~(align - 1);
        }
    }
    return 0;
}

static int symtab_open_errno(const char *path, int e, struct ps_err *err)
{
    if (e == ENOENT)
        return ps_err_set(err, -ENOENT,
                          "cannot open %s: no such file; the target may live in "
                          "another mount namespace or the file was replaced",
                          path);
    if (e == EACCES || e == EPERM)
        return ps_err_set(err, -EACCES,
                          "cannot open %s: permission denied; run pyscope as the "
                          "target's user or as root",
                          path);
    return ps_err_set(err, -e, "cannot open %s: %s", path, strerror(e));
}

static int symtab_begin(struct symtab *st, struct ps_err *err)
{
    struct stat sb;

    if (fstat(st->fd, &sb) != 0 || !S_ISREG(sb.st_mode))
        return ps_err_set(err, -PS_EFORMAT, "%s is not a regular file", st->path);
    st->file_size = (uint64_t)sb.st_size;
    st->elf = elf_begin(st->fd, ELF_C_READ, NULL);
    if (!st->elf)
        return ps_err_set(err, -PS_EFORMAT, "libelf cannot read %s: %s", st->path, elf_errmsg(-1));
    return 0;
}

int symtab_open(const char *path, struct symtab **out, struct ps_err *err)
{
    struct ps_err why = {0};
    struct symtab *st;
    int rc;

    (void)pthread_once(&symtab_elf_once, symtab_elf_init);
    st = calloc(1, sizeof(*st));
    if (!st)
        return ps_err_set(err, -ENOMEM, "out of memory opening %s", path);
    st->fd = -1;
    st->path = strdup(path);
    if (!st->path) {
        rc = ps_err_set(err, -ENOMEM, "out of memory opening %s", path);
        goto fail;
    }
    /* A path from the target's maps: never block on it (a FIFO), regular files only. */
    st->fd = tfile_open_regular(path, "ELF file", &why);
    if (st->fd < 0) {
        rc = st->fd == -PS_EFORMAT ? ps_err_set(err, st->fd, "%s", why.msg)
                                   : symtab_open_errno(path, -st->fd, err);
        goto fail;
    }
    rc = symtab_begin(st, err);
    if (rc == 0)
        rc = symtab_check_ehdr(st, err);
    if (rc == 0)
        rc = symtab_load_phdrs(st, err);
    if (rc != 0)
        goto fail;
    *out = st;
    return 0;
fail:
    symtab_close(st);
    return rc;
}

bool symtab_is_inode(const struct symtab *st, uint64_t ino)
{
    struct stat sb;

    return st && fstat(st->fd, &sb) == 0 && (uint64_t)sb.st_ino == ino;
}

void symtab_close(struct symtab *st)
{
    if (!st)
        return;
    if (st->elf)
        (void)elf_end(st->elf);
    if (st->fd >= 0)
        (void)close(st->fd);
    symtab_index_free(st->index);
    free(st->segs);
    free(st->path);
    free(st);
}

/* Section header of section number i (checked against the validated count), or NULL. */
static Elf_Scn *symtab_scn(const struct symtab *st, size_t i, GElf_Shdr *sh)
{
    Elf_Scn *scn;

    if (i == 0 || i >= st->shnum)
        return NULL;
    scn = elf_getscn(st->elf, i);
    if (!scn || !gelf_getshdr(scn, sh))
        return NULL;
    return scn;
}

/* Search one symbol table section for a defined symbol called name. */
static int symtab_search(const struct symtab *st, Elf_Scn *scn, const GElf_Shdr *sh,
                         const char *name, GElf_Sym *found)
{
    Elf_Data *data;
    size_t count;
    GElf_Sym sym;
    const char *s;

    if (sh->sh_entsize != sizeof(Elf64_Sym) || sh->sh_link == 0 || sh->sh_link >= st->shnum)
        return -ENOENT;
    data = elf_getdata(scn, NULL);
    if (!data || !data->d_buf)
        return -ENOENT;
    count = data->d_size / sizeof(Elf64_Sym); /* gelf_getsym checks each index again */
    for (size_t i = 1; i < count; i++) {
        if (!gelf_getsym(data, (int)i, &sym) || sym.st_shndx == SHN_UNDEF || sym.st_name == 0)
            continue;
        s = elf_strptr(st->elf, sh->sh_link, sym.st_name);
        if (s && strcmp(s, name) == 0) {
            *found = sym;
            return 0;
        }
    }
    return -ENOENT;
}

/* Find the first section of type type (SHT_DYNSYM, SHT_SYMTAB) and search it. */
static int symtab_search_type(const struct symtab *st, uint32_t type, const char *name,
                              GElf_Sym *found)
{
    GElf_Shdr sh;

    for (size_t i = 1; i < st->shnum; i++) {
        Elf_Scn *scn = symtab_scn(st, i, &sh);
        if (scn && sh.sh_type == type)
            return symtab_search(st, scn, &sh, name, found);
    }
    return -ENOENT;
}

int symtab_lookup(const struct symtab *st, const char *name, uint64_t *vaddr, uint64_t *size)
{
    GElf_Sym sym;

    if (!st || !name || !*name)
        return -ENOENT;
    if (symtab_search_type(st, SHT_DYNSYM, name, &sym) != 0 &&
        symtab_search_type(st, SHT_SYMTAB, name, &sym) != 0)
        return -ENOENT;
    if (vaddr)
        *vaddr = sym.st_value;
    if (size)
        *size = sym.st_size;
    return 0;
}

int symtab_section(const struct symtab *st, const char *name, uint64_t *vaddr, uint64_t *size)
{
    GElf_Shdr sh;
    const char *s;

    if (!st || !name)
        return -ENOENT;
    for (size_t i = 1; i < st->shnum; i++) {
        if (!symtab_scn(st, i, &sh))
            continue;
        s = elf_strptr(st->elf, st->shstrndx, sh.sh_name);
        if (s && strcmp(s, name) == 0) {
            if (vaddr)
                *vaddr = sh.sh_addr;
            if (size)
                *size = sh.sh_size;
            return 0;
        }
    }
    return -ENOENT;
}

/* The segment holding vaddr, or NULL. */
static const struct symtab_seg *symtab_seg_of(const struct symtab *st, uint64_t vaddr)
{
    for (size_t i = 0; i < st->nsegs; i++) {
        const struct symtab_seg *s = &st->segs[i];
        if (vaddr >= s->vaddr && vaddr - s->vaddr < s->memsz)
            return s;
    }
    return NULL;
}

/* Copy n bytes at vaddr, all inside segment s: file bytes, then zeros past p_filesz. */
static int symtab_read_seg(const struct symtab *st, const struct symtab_seg *s, uint64_t vaddr,
                           unsigned char *buf, size_t n, struct ps_err *err)
{
    uint64_t rel = vaddr - s->vaddr;
    size_t from_file = rel < s->filesz ? (size_t)(s->filesz - rel < n ? s->filesz - rel : n) : 0;

    if (from_file > 0) {
        ssize_t got;

        if (s->offset + s->filesz > st->file_size)
            return ps_err_set(err, -EIO,
                              "%s is truncated: a PT_LOAD segment ends past the end "
                              "of the file",
                              st->path);
        got = pread(st->fd, buf, from_file, (off_t)(s->offset + rel));
        if (got < 0 || (size_t)got != from_file)
            return ps_err_set(err, -EIO, "cannot read %zu bytes at vaddr 0x%" PRIx64 " of %s",
                              from_file, vaddr, st->path);
    }
    memset(buf + from_file, 0, n - from_file);
    return 0;
}

int symtab_read_vaddr(const struct symtab *st, uint64_t vaddr, void *buf, size_t len,
                      struct ps_err *err)
{
    unsigned char *p = buf;

    /* Each step consumes a segment's tail, so at most nsegs + 1 iterations. */
    for (size_t step = 0; len > 0 && step <= st->nsegs; step++) {
        const struct symtab_seg *s = symtab_seg_of(st, vaddr);
        uint64_t left;
        size_t n;
        int rc;

        if (!s)
            break;
        left = s->memsz - (vaddr - s->vaddr);
        n = left < len ? (size_t)left : len;
        rc = symtab_read_seg(st, s, vaddr, p, n, err);
        if (rc != 0)
            return rc;
        p += n;
        vaddr += n;
        len -= n;
    }
    if (len > 0)
        return ps_err_set(err, -EFAULT,
                          "vaddr 0x%" PRIx64 " (%zu bytes) is not in a loadable "
                          "segment of %s",
                          vaddr, len, st->path);
    return 0;
}

uint64_t symtab_load_vaddr(const struct symtab *st)
{
    return st->load_vaddr;
}

bool symtab_is_dyn(const struct symtab *st)
{
    return st->dyn;
}

const char *symtab_path(const struct symtab *st)
{
    return st->path;
}
