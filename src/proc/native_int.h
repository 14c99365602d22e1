/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_NATIVE_INT_H
#define PYSCOPE_NATIVE_INT_H

/*
 * Private to the native module: native.c (context, image cache, symbols, disassembly),
 * native_unwind.c (libunwind, live and core), native_merge.c (merging with Python frames).
 */

#include <capstone/capstone.h>
#include <libunwind.h>

#include "pyscope/core.h"
#include "pyscope/native.h"
#include "pyscope/symtab.h"

/* One opened (or failed) image of the cache, keyed by mapped path + inode. */
struct native_image {
    char *path; /* as mapped; NULL: free slot */
    uint64_t inode;
    struct symtab *st; /* NULL: could not be opened (a cached miss) */
    uint64_t used;     /* tick of the last use: the smallest is evicted first */
};

struct native_ctx {
    pid_t pid; /* live target, 0 for a core */
    const struct maps *maps;
    struct memsrc *src;
    struct native_opts opts; /* strings point into the two copies below */
    char file_root[MAPS_PATH_MAX];
    char debug_dir[MAPS_PATH_MAX];
    char exe_file[MAPS_PATH_MAX];
    struct native_image images[NATIVE_MAX_IMAGES];
    uint64_t tick;
    csh cs;
    bool cs_open;
    unw_addr_space_t as;
    const struct core *core; /* core only: threads and their registers (borrowed) */
};

/*
 * Allocate a context with copied options (and capstone with opts->disasm); the unwinder is set
 * up by the caller (native_unwind.c). Errors: -ENOMEM.
 */
int native_new(pid_t pid, const struct maps *maps, struct memsrc *src,
               const struct native_opts *opts, struct native_ctx **out, struct ps_err *err);

/* The image holding mapping e (opened through the cache), or NULL when it cannot be opened. */
struct symtab *native_image(struct native_ctx *ctx, const struct maps_entry *e);
/* Open the image of every executable file mapping (up to NATIVE_MAX_IMAGES) now, so that the
 * file I/O happens before the target's threads are stopped. Failures are cached misses. */
void native_preload(struct native_ctx *ctx);

/*
 * A core's context: check that every file the core maps can be opened where image_path looks
 * (--exe, --lib-search-root), so a missing one is refused by name rather than stopping the
 * unwinding later. Errors: -ENOENT.
 */
int native_core_files(const struct native_ctx *ctx, struct ps_err *err);

/* Release the unwinder parts of ctx (native_unwind.c); NULL-safe fields. */
void native_unwind_close(struct native_ctx *ctx);

#endif
