/* SPDX-License-Identifier: MIT */
/*
 * The address -> function index of an ELF image (see symtab.h), for native stacks: a pc in the
 * target becomes a link-time vaddr (through the mapping's file offset) and then a function name
 * here. Sources, in order: the file's own .symtab and .dynsym; when the file has no .symtab,
 * its MiniDebugInfo (.gnu_debugdata: an xz-compressed ELF holding a .symtab of the local
 * functions, as Fedora and others ship) or a separate debug file found by build id.
 *
 * Everything read here is untrusted: symbol counts come from d_size, every name is copied with
 * a length bound into one pool, the table and the pool are capped (SYMTAB_MAX_FUNCS,
 * SYMTAB_NAMES_MAX) and decompression is capped (SYMTAB_MAX_DEBUGDATA) with a memory limit for
 * the xz decoder. A corrupt debug source adds nothing; it is never an error. Nothing is written.
 */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <lzma.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pyscope/symtab.h"
#include "pyscope/tfile.h"
#include "symtab_int.h"

/* Bytes of names kept in all (libpython's ~12k functions use ~300 KiB); longer lists drop. */
#define SYMTAB_NAMES_MAX (64u << 20)
/* Bytes of one name kept (C++ names can be huge; the tail says little). */
#define SYMTAB_NAME_MAX 512
/* xz decoder memory limit (MiniDebugInfo is compressed with default presets: ~9 MiB). */
#define SYMTAB_XZ_MEMLIMIT (128u << 20)

struct symtab_func {
    uint64_t start;
    uint64_t size;
    uint32_t name; /* offset in names */
    uint8_t bind;  /* STB_* for tie breaks: a global name wins over a local alias */
};

struct symtab_index {
    struct symtab_func *v;
    size_t n, cap;
    char *names;
    size_t names_len, names_cap;
    size_t dropped;
    const char *source;
};

void symtab_index_free(struct symtab_index *ix)
{
    if (!ix)
        return;
    free(ix->v);
    free(ix->names);
    free(ix);
}

static int ix_grow(void **p, size_t *cap, size_t need, size_t elem)
{
    size_t ncap = *cap ? *cap : 1024;
    void *np;

    while (ncap < need)
        ncap *= 2;
    if (ncap == *cap)
        return 0;
    np = realloc(*p, ncap * elem);
    if (!np)
        return -ENOMEM;
    *p = np;
    *cap = ncap;
    return 0;
}

/* Add one function; a full table or pool drops it (counted). -ENOMEM only. */
static int ix_add(struct symtab_index *ix, const GElf_Sym *sym, const char *name)
{
    size_t len = strnlen(name, SYMTAB_NAME_MAX);
    const char *at = memchr(name, '@', len);

    /* "clock_nanosleep@GLIBC_2.2.5" (versioned .symtab names): the version is noise here. */
    if (at && at > name)
        len = (size_t)(at - name);

    if (ix->n >= SYMTAB_MAX_FUNCS || ix->names_len + len + 1 > SYMTAB_NAMES_MAX) {
        ix->dropped++;
        return 0;
    }
    if (ix_grow((void **)&ix->v, &ix->cap, ix->n + 1, sizeof(*ix->v)) < 0 ||
        ix_grow((void **)&ix->names, &ix->names_cap, ix->names_len + len + 1, 1) < 0)
        return -ENOMEM;
    memcpy(ix->names + ix->names_len, name, len);
    ix->names[ix->names_len + len] = '\0';
    ix->v[ix->n].start = sym->st_value;
    ix->v[ix->n].size = sym->st_size;
    ix->v[ix->n].name = (uint32_t)ix->names_len;
    ix->v[ix->n].bind = (uint8_t)GELF_ST_BIND(sym->st_info);
    ix->names_len += len + 1;
    ix->n++;
    return 0;
}

static bool sym_is_func(const GElf_Sym *sym)
{
    int type = GELF_ST_TYPE(sym->st_info);

    return (type == STT_FUNC || type == STT_GNU_IFUNC) && sym->st_shndx != SHN_UNDEF &&
           sym->st_value != 0 && sym->st_name != 0;
}

/* Add the functions of one symbol table section. */
static int ix_add_section(struct symtab_index *ix, Elf *elf, Elf_Scn *scn, const GElf_Shdr *sh,
                          size_t shnum)
{
    Elf_Data *data = elf_getdata(scn, NULL);
    GElf_Sym sym;
    size_t count;
    int rc;

    if (!data || !data->d_buf || sh->sh_entsize != sizeof(Elf64_Sym) || sh->sh_link == 0 ||
        sh->sh_link >= shnum)
        return 0;
    count = data->d_size / sizeof(Elf64_Sym);
    for (size_t i = 1; i < count; i++) {
        const char *name;

        if (!gelf_getsym(data, (int)i, &sym) || !sym_is_func(&sym))
            continue;
        name = elf_strptr(elf, sh->sh_link, sym.st_name);
        if (!name || !*name)
            continue;
        rc = ix_add(ix, &sym, name);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Add the functions of every section of type `type` of elf; *found tells whether one existed. */
static int ix_add_elf(struct symtab_index *ix, Elf *elf, uint32_t type, bool *found)
{
    size_t shnum = 0;
    GElf_Shdr sh;
    int rc;

    *found = false;
    if (elf_kind(elf) != ELF_K_ELF || elf_getshdrnum(elf, &shnum) != 0)
        return 0;
    for (size_t i = 1; i < shnum; i++) {
        Elf_Scn *scn = elf_getscn(elf, i);

        if (!scn || !gelf_getshdr(scn, &sh) || sh.sh_type != type)
            continue;
        *found = true;
        rc = ix_add_section(ix, elf, scn, &sh, shnum);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Section `name` of st's file, or NULL. */
static Elf_Scn *st_section(const struct symtab *st, const char *name)
{
    GElf_Shdr sh;

    for (size_t i = 1; i < st->shnum; i++) {
        Elf_Scn *scn = elf_getscn(st->elf, i);
        const char *s;

        if (!scn || !gelf_getshdr(scn, &sh))
            continue;
        s = elf_strptr(st->elf, st->shstrndx, sh.sh_name);
        if (s && strcmp(s, name) == 0)
            return scn;
    }
    return NULL;
}

/* Decompress an xz buffer into *out (malloc'ed), at most SYMTAB_MAX_DEBUGDATA bytes. */
static int xz_decode(const uint8_t *in, size_t in_len, uint8_t **out, size_t *out_len)
{
    lzma_stream strm = LZMA_STREAM_INIT;
    size_t cap = in_len * 4 > 65536 ? in_len * 4 : 65536;
    uint8_t *buf = NULL;
    lzma_ret ret = LZMA_OK;

    if (lzma_stream_decoder(&strm, SYMTAB_XZ_MEMLIMIT, 0) != LZMA_OK)
        return -ENOMEM;
    strm.next_in = in;
    strm.avail_in = in_len;
    while (ret == LZMA_OK && cap <= SYMTAB_MAX_DEBUGDATA) {
        uint8_t *nb = realloc(buf, cap);

        if (!nb)
            break;
        buf = nb;
        strm.next_out = buf + strm.total_out;
        strm.avail_out = cap - strm.total_out;
        ret = lzma_code(&strm, LZMA_FINISH);
        cap *= 2;
    }
    *out_len = strm.total_out;
    lzma_end(&strm);
    if (ret != LZMA_STREAM_END) {
        free(buf);
        return -EINVAL;
    }
    *out = buf;
    return 0;
}

/* Functions of .gnu_debugdata's embedded ELF; nothing when absent or corrupt. */
static int ix_add_debugdata(struct symtab_index *ix, const struct symtab *st, bool *found)
{
    Elf_Scn *scn = st_section(st, ".gnu_debugdata");
    Elf_Data *data = scn ? elf_rawdata(scn, NULL) : NULL;
    uint8_t *img = NULL;
    size_t len = 0;
    Elf *mini;
    int rc = 0;

    *found = false;
    if (!data || !data->d_buf || data->d_size == 0)
        return 0;
    if (xz_decode(data->d_buf, data->d_size, &img, &len) < 0)
        return 0;
    mini = elf_memory((char *)img, len);
    if (mini) {
        rc = ix_add_elf(ix, mini, SHT_SYMTAB, found);
        (void)elf_end(mini);
    }
    free(img);
    return rc;
}

/* Functions of DEBUG_DIR/.build-id/xx/rest.debug; nothing when absent. */
static int ix_add_debug_file(struct symtab_index *ix, const struct symtab *st, const char *dir,
                             bool *found)
{
    uint8_t id[64];
    size_t idlen = 0, off;
    char path[4096];
    Elf *elf;
    int fd, rc = 0;

    *found = false;
    if (symtab_build_id(st, id, sizeof(id), &idlen) < 0 || idlen < 2)
        return 0;
    off = (size_t)snprintf(path, sizeof(path), "%s/.build-id/%02x/", dir, id[0]);
    for (size_t i = 1; i < idlen && off + 3 < sizeof(path); i++)
        off += (size_t)snprintf(path + off, sizeof(path) - off, "%02x", id[i]);
    if (off + 7 >= sizeof(path))
        return 0;
    memcpy(path + off, ".debug", 7);
    fd = tfile_open_regular(path, "debug file", NULL);
    if (fd < 0)
        return 0;
    elf = elf_begin(fd, ELF_C_READ, NULL);
    if (elf) {
        rc = ix_add_elf(ix, elf, SHT_SYMTAB, found);
        (void)elf_end(elf);
    }
    (void)close(fd);
    return rc;
}

static int func_cmp(const void *a, const void *b)
{
    const struct symtab_func *x = a, *y = b;

    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    /* Same address: sized before unsized, global before local, so dedup keeps the best. */
    if ((x->size != 0) != (y->size != 0))
        return x->size ? -1 : 1;
    if ((x->bind == STB_GLOBAL) != (y->bind == STB_GLOBAL))
        return x->bind == STB_GLOBAL ? -1 : 1;
    return 0;
}

/* Sort by address and keep one entry per address. */
static void ix_finish(struct symtab_index *ix)
{
    size_t w = 0;

    if (ix->n == 0)
        return;
    qsort(ix->v, ix->n, sizeof(*ix->v), func_cmp);
    for (size_t r = 1; r < ix->n; r++)
        if (ix->v[r].start != ix->v[w].start)
            ix->v[++w] = ix->v[r];
    ix->n = w + 1;
}

static int ix_fill(struct symtab_index *ix, const struct symtab *st, const char *debug_dir)
{
    bool has_symtab = false, found = false;
    int rc;

    rc = ix_add_elf(ix, st->elf, SHT_SYMTAB, &has_symtab);
    if (rc == 0 && has_symtab)
        ix->source = ".symtab";
    if (rc == 0 && !has_symtab) {
        rc = ix_add_debugdata(ix, st, &found);
        ix->source = found ? ".gnu_debugdata" : NULL;
    }
    if (rc == 0 && !has_symtab && !found) {
        rc = ix_add_debug_file(ix, st, debug_dir ? debug_dir : "/usr/lib/debug", &found);
        ix->source = found ? "debug file" : NULL;
    }
    if (rc == 0)
        rc = ix_add_elf(ix, st->elf, SHT_DYNSYM, &found);
    if (!ix->source)
        ix->source = found ? ".dynsym" : "none";
    return rc;
}

int symtab_index_build(struct symtab *st, const char *debug_dir, struct ps_err *err)
{
    struct symtab_index *ix;

    if (st->index)
        return 0;
    ix = calloc(1, sizeof(*ix));
    if (!ix || ix_fill(ix, st, debug_dir) < 0) {
        symtab_index_free(ix);
        return ps_err_set(err, -ENOMEM, "out of memory indexing the symbols of %s", st->path);
    }
    ix_finish(ix);
    st->index = ix;
    return 0;
}

int symtab_addr_lookup(const struct symtab *st, uint64_t vaddr, const char **name, uint64_t *start)
{
    const struct symtab_index *ix = st ? st->index : NULL;
    size_t lo = 0, hi;
    const struct symtab_func *f;

    if (!ix || ix->n == 0 || vaddr < ix->v[0].start)
        return -ENOENT;
    hi = ix->n;
    while (hi - lo > 1) { /* invariant: v[lo].start <= vaddr < v[hi].start (hi == n: end) */
        size_t mid = lo + (hi - lo) / 2;

        if (ix->v[mid].start <= vaddr)
            lo = mid;
        else
            hi = mid;
    }
    f = &ix->v[lo];
    if (f->size != 0 && vaddr - f->start >= f->size)
        return -ENOENT;
    *name = ix->names + f->name;
    *start = f->start;
    return 0;
}

const char *symtab_index_source(const struct symtab *st)
{
    return st && st->index ? st->index->source : "none";
}

size_t symtab_index_dropped(const struct symtab *st)
{
    return st && st->index ? st->index->dropped : 0;
}

/* Look for an NT_GNU_BUILD_ID note in one note data block. */
static int note_build_id(Elf_Data *data, uint8_t *buf, size_t cap, size_t *len)
{
    size_t off = 0, next, name_off, desc_off;
    GElf_Nhdr nh;

    /* Each note consumes at least its header, so this ends within d_size / 12 steps. */
    while (off < data->d_size &&
           (next = gelf_getnote(data, off, &nh, &name_off, &desc_off)) > off) {
        if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 &&
            memcmp((const char *)data->d_buf + name_off, "GNU", 4) == 0) {
            if (nh.n_descsz > cap)
                return -PS_ELIMIT;
            memcpy(buf, (const char *)data->d_buf + desc_off, nh.n_descsz);
            *len = nh.n_descsz;
            return 0;
        }
        off = next;
    }
    return -ENOENT;
}

int symtab_build_id(const struct symtab *st, uint8_t *buf, size_t cap, size_t *len)
{
    GElf_Shdr sh;

    for (size_t i = 1; i < st->shnum; i++) {
        Elf_Scn *scn = elf_getscn(st->elf, i);
        Elf_Data *data;
        int rc;

        if (!scn || !gelf_getshdr(scn, &sh) || sh.sh_type != SHT_NOTE)
            continue;
        data = elf_getdata(scn, NULL);
        if (!data || !data->d_buf)
            continue;
        rc = note_build_id(data, buf, cap, len);
        if (rc != -ENOENT)
            return rc;
    }
    return -ENOENT;
}

int symtab_offset_vaddr(const struct symtab *st, uint64_t off, uint64_t *vaddr)
{
    for (size_t i = 0; i < st->nsegs; i++) {
        const struct symtab_seg *s = &st->segs[i];

        /* Page-aligned mappings start below p_offset: accept the page holding it. */
        uint64_t lo = s->offset & ~(uint64_t)0xfff;

        if (off >= lo && off - lo < s->filesz + (s->offset - lo)) {
            *vaddr = s->vaddr - (s->offset - lo) + (off - lo);
            return 0;
        }
    }
    return -ENOENT;
}
