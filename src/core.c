/* SPDX-License-Identifier: MIT */
/*
 * Opening a core file as a Python process (see core.h): memsrc_core (segments, NT_FILE maps,
 * thread notes) -> locate_python_files (the runtime's image, opened from the recorded path, the
 * search root or --exe) -> a build-id check of that image against the copy of its first page
 * that the kernel and gcore keep in the core -> pyproc_open_source, whose validation catches
 * what the build id cannot (a layout that does not fit).
 *
 * Never trusts the core: the first page is parsed with every offset checked against the page.
 */
#include "pyscope/core.h"

#include <elf.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pyscope/locate.h"
#include "pyscope/symtab.h"

#define CORE_PAGE         4096
#define CORE_BUILD_ID_MAX 64

int core_open(const struct core_opts *opts, struct core **out, struct ps_err *err)
{
    struct core *c = calloc(1, sizeof(*c));
    int rc;

    if (!c)
        return ps_err_set(err, -ENOMEM, "out of memory opening %s", opts->path);
    rc = memsrc_core_open(opts, &c->src, &c->maps, &c->threads, &c->nthreads, &c->cred, err);
    if (rc < 0) {
        free(c);
        return rc;
    }
    c->pid = c->threads[0].tid;
    for (size_t i = 0; i < c->maps.n; i++) {
        if (c->maps.v[i].path[0] == '/' && c->maps.v[i].offset == 0) {
            (void)strncpy(c->exe, c->maps.v[i].path, sizeof(c->exe) - 1);
            break;
        }
    }
    *out = c;
    return 0;
}

void core_close(struct core *c)
{
    if (!c)
        return;
    memsrc_close(c->src);
    maps_free(&c->maps);
    free(c->threads);
    free(c);
}

/* Find NT_GNU_BUILD_ID in a note area [p, p+len). */
static bool notes_build_id(const uint8_t *p, size_t len, uint8_t *id, size_t *idlen)
{
    size_t off = 0;

    while (off + sizeof(Elf64_Nhdr) <= len) {
        Elf64_Nhdr nh;
        size_t name = off + sizeof(nh), desc, next;

        memcpy(&nh, p + off, sizeof(nh));
        desc = name + ((nh.n_namesz + 3u) & ~3u);
        next = desc + ((nh.n_descsz + 3u) & ~3u);
        if (nh.n_namesz > len || nh.n_descsz > len || next > len)
            return false;
        if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 && memcmp(p + name, "GNU", 4) == 0 &&
            nh.n_descsz <= CORE_BUILD_ID_MAX) {
            memcpy(id, p + desc, nh.n_descsz);
            *idlen = nh.n_descsz;
            return true;
        }
        off = next;
    }
    return false;
}

/* The build id in an image's first page as the core holds it. */
static bool page_build_id(const uint8_t *pg, uint8_t *id, size_t *idlen)
{
    Elf64_Ehdr eh;

    memcpy(&eh, pg, sizeof(eh));
    if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_phentsize != sizeof(Elf64_Phdr) ||
        eh.e_phoff > CORE_PAGE || eh.e_phnum > (CORE_PAGE - eh.e_phoff) / sizeof(Elf64_Phdr))
        return false;
    for (size_t i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;

        memcpy(&ph, pg + eh.e_phoff + i * sizeof(ph), sizeof(ph));
        if (ph.p_type == PT_NOTE && ph.p_offset < CORE_PAGE &&
            ph.p_filesz <= CORE_PAGE - ph.p_offset &&
            notes_build_id(pg + ph.p_offset, ph.p_filesz, id, idlen))
            return true;
    }
    return false;
}

/* -PS_ECORRUPT when the core's copy of the image's first page names another build. */
static int core_check_build(struct core *c, const struct locate_info *loc, struct ps_err *err)
{
    const struct maps_entry *e = maps_first_of(&c->maps, loc->image);
    uint8_t page[CORE_PAGE], want[CORE_BUILD_ID_MAX], have[CORE_BUILD_ID_MAX];
    size_t wlen = 0, hlen = 0;
    struct ps_err ignored = {0};
    struct symtab *st = NULL;
    bool dumped;
    int rc = 0;

    if (!e || !memsrc_core_dumped(c->src, e->start, sizeof(page)) ||
        memsrc_read(c->src, e->start, page, sizeof(page), &ignored) < 0)
        return 0; /* the core kept no ELF header page: nothing to compare */
    dumped = page_build_id(page, want, &wlen);
    if (dumped && symtab_open(loc->opened, &st, &ignored) == 0 &&
        symtab_build_id(st, have, sizeof(have), &hlen) == 0 &&
        (hlen != wlen || memcmp(have, want, wlen) != 0))
        rc = ps_err_set(err, -PS_ECORRUPT,
                        "%s is not the build the core was made with (build ids differ): give the "
                        "matching binaries with --lib-search-root or --exe",
                        loc->opened);
    symtab_close(st);
    return rc;
}

int core_open_python(struct core *c, const struct core_opts *opts, struct pyproc **pp,
                     struct ps_err *err)
{
    struct locate_info *loc = calloc(1, sizeof(*loc));
    int rc;

    if (!loc)
        return ps_err_set(err, -ENOMEM, "out of memory locating Python in the core");
    rc = locate_python_files(&c->maps, c->exe, opts->file_root, opts->exe_file, loc, err);
    if (rc == 0)
        rc = core_check_build(c, loc, err);
    if (rc == 0)
        rc = pyproc_open_source(c->src, loc, pp, err);
    if (rc == 0)
        c->src = NULL; /* the pyproc owns it now */
    free(loc);
    return rc;
}
