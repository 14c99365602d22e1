/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_SYMTAB_INT_H
#define PYSCOPE_SYMTAB_INT_H

/*
 * Private to the symtab module (symtab.c: opening, exact lookups, reads by vaddr;
 * symtab_index.c: the address -> function index, build ids, MiniDebugInfo and debug files).
 */

#include <libelf.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A PT_LOAD program header, copied and validated once at open. */
struct symtab_seg {
    uint64_t vaddr;
    uint64_t offset;
    uint64_t filesz;
    uint64_t memsz;
};

struct symtab_index; /* symtab_index.c */

struct symtab {
    int fd;
    Elf *elf;
    char *path;
    uint64_t file_size;
    bool dyn;
    uint64_t load_vaddr;
    size_t nsegs;
    struct symtab_seg *segs;
    size_t shnum;
    size_t shstrndx;
    struct symtab_index *index; /* built on first symtab_index_build, owned */
};

/* Free an index; NULL-safe (called by symtab_close). */
void symtab_index_free(struct symtab_index *ix);

#endif
