/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_CORE_H
#define PYSCOPE_CORE_H

/*
 * ELF core files (`pyscope dump --core core.N`): a memory source over the core's PT_LOAD
 * segments, falling back to the mapped files (from the NT_FILE note) for the pages a core does
 * not hold (text, read-only data); the maps rebuilt from PT_LOAD + NT_FILE; the threads from
 * the NT_PRSTATUS notes. Opening the Python runtime found in those maps is pycore.h's part.
 *
 * Files recorded in the core are opened as recorded, or under file_root (--lib-search-root) when
 * set; the executable from exe_file (--exe) when set. The core and the files are opened
 * read-only; nothing is executed.
 *
 * Bounds: CORE_MAX_SEGMENTS PT_LOAD segments, CORE_MAX_THREADS thread notes, CORE_MAX_FILES
 * NT_FILE entries; file descriptors for fallback reads are cached (CORE_FD_CACHE, least recently
 * used closed).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pyscope/err.h"
#include "pyscope/maps.h"
#include "pyscope/memsrc.h"

#define CORE_MAX_SEGMENTS 65536
#define CORE_MAX_THREADS  65536
#define CORE_MAX_FILES    65536
#define CORE_FD_CACHE     16

struct core_opts {
    const char *path;      /* the core file */
    const char *exe_file;  /* --exe: file to read for the executable, NULL: as recorded */
    const char *file_root; /* --lib-search-root: prefix for recorded paths, NULL: none */
};

/* General registers of a thread as NT_PRSTATUS holds them (x86-64 user_regs_struct: 27 words;
 * aarch64 user_pt_regs: 34). */
#define CORE_NREGS 34

struct core_thread {
    pid_t tid;
    uint64_t regs[CORE_NREGS];
};

/* The crashed process's credentials as its NT_PRPSINFO note holds them (pr_uid, pr_gid: the
 * real ids, as the kernel and gdb's gcore write them; no supplementary groups). */
struct core_cred {
    bool known; /* false: the core has no (or a cut) NT_PRPSINFO note */
    uid_t uid;
    gid_t gid;
};

struct core {
    struct memsrc *src; /* owned until core_open_python (pycore.h) hands it to the pyproc */
    struct maps maps;   /* owned: PT_LOAD segments named by NT_FILE */
    pid_t pid;          /* the crashed process's pid (first thread note) */
    size_t nthreads;
    struct core_thread *threads; /* thread note order */
    struct core_cred cred;       /* for reading the files it names as it could (source lines) */
    char exe[MAPS_PATH_MAX]; /* recorded path of the executable (lowest offset-0 file mapping) */
};

/*
 * Open and index a core. On success *out is owned by the caller (core_close). Errors, each one
 * sentence: -ENOENT/-EACCES (the core), -PS_EFORMAT (not an x86-64/aarch64 ELF core, no thread
 * notes, a segment past the end of the file: "truncated"), -PS_ELIMIT, -ENOMEM.
 */
int core_open(const struct core_opts *opts, struct core **out, struct ps_err *err) PS_WARN_UNUSED;

/* Close; NULL-safe. */
void core_close(struct core *c);

/*
 * The memory source over opts->path alone (core_open uses it): *out (memsrc_close), the rebuilt
 * maps (maps_free) and the threads in note order (*threads, malloc'ed) are the caller's on
 * success; *cred is the NT_PRPSINFO credentials (known false without the note). src->pid is 0.
 * Errors as core_open.
 */
int memsrc_core_open(const struct core_opts *opts, struct memsrc **out, struct maps *maps,
                     struct core_thread **threads, size_t *nthreads, struct core_cred *cred,
                     struct ps_err *err) PS_WARN_UNUSED;

/* True when [addr, addr+len) is held by the core itself (not read from a mapped file); false
 * for any other source. For the build-id check. */
bool memsrc_core_dumped(const struct memsrc *src, uint64_t addr, size_t len);

#endif
