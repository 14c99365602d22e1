/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_SYMTAB_H
#define PYSCOPE_SYMTAB_H

/*
 * ELF images through libelf: symbols (.dynsym, then .symtab), sections, program headers, and
 * reading initialised data straight from the file by virtual address (Py_Version, 3.13's
 * _Py_DebugOffsets) so nothing of the target is executed and its memory is not needed for
 * constants. Files are opened read-only; nothing is ever written. Bounded: section and symbol
 * counts are taken from the file but every index is checked against the data size.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pyscope/err.h"

struct symtab; /* opaque: one opened ELF file */

/*
 * Open an ELF file (path may be under /proc/PID/root or /proc/PID/map_files). Errors: -ENOENT,
 * -EACCES, -PS_EFORMAT (not ELF, not 64-bit little-endian x86-64/aarch64), -ENOMEM.
 */
int symtab_open(const char *path, struct symtab **out, struct ps_err *err) PS_WARN_UNUSED;

/* Close; NULL-safe. */
void symtab_close(struct symtab *st);

/*
 * Whether the opened file has inode ino (fstat of the open descriptor, so a rename after the
 * open cannot fool it): the check that a path still names a mapped file. The device is not
 * compared: /proc/PID/maps shows an overlayfs file's underlying device, stat the overlay's.
 */
bool symtab_is_inode(const struct symtab *st, uint64_t ino);

/* Look up a symbol by exact name: its st_value (link-time vaddr) and st_size. -ENOENT if absent. */
int symtab_lookup(const struct symtab *st, const char *name, uint64_t *vaddr, uint64_t *size);

/* Section by name: its sh_addr and sh_size. -ENOENT if absent. */
int symtab_section(const struct symtab *st, const char *name, uint64_t *vaddr, uint64_t *size);

/*
 * Copy len bytes at link-time vaddr from the file's PT_LOAD segments (bytes past p_filesz read as
 * zero, as the loader would give). Errors: -EFAULT (not in a segment), -EIO.
 */
int symtab_read_vaddr(const struct symtab *st, uint64_t vaddr, void *buf, size_t len,
                      struct ps_err *err) PS_WARN_UNUSED;

/* p_vaddr of the PT_LOAD segment at file offset 0 (0 for non-PIE executables usually). */
uint64_t symtab_load_vaddr(const struct symtab *st);

/* True for ET_DYN (PIE executables and shared libraries). */
bool symtab_is_dyn(const struct symtab *st);

/* The path the file was opened with. */
const char *symtab_path(const struct symtab *st);

/*
 * Address -> function symbols. The index is a sorted table of the defined STT_FUNC symbols of
 * .symtab and .dynsym, plus, when the file has no .symtab, those of its MiniDebugInfo
 * (.gnu_debugdata, an xz-compressed ELF; at most SYMTAB_MAX_DEBUGDATA bytes decompressed) or of
 * its separate debug file DEBUG_DIR/.build-id/xx/yyyy.debug when present. At most
 * SYMTAB_MAX_FUNCS symbols are kept (the rest are dropped, counted in symtab_index_dropped);
 * names are copied, so the index lives as long as st. Built once: later calls return at once.
 * debug_dir NULL means /usr/lib/debug. Errors: -ENOMEM only (a missing or corrupt debug source
 * just contributes nothing).
 */
#define SYMTAB_MAX_FUNCS     (1u << 20)
#define SYMTAB_MAX_DEBUGDATA (64u << 20)
int symtab_index_build(struct symtab *st, const char *debug_dir, struct ps_err *err) PS_WARN_UNUSED;

/*
 * The function containing link-time vaddr: *name (owned by st) and *start (its st_value).
 * A symbol of size 0 covers up to the next symbol. -ENOENT when none (or no index built).
 */
int symtab_addr_lookup(const struct symtab *st, uint64_t vaddr, const char **name, uint64_t *start);

/* Where the index came from: ".symtab", ".gnu_debugdata", "debug file", ".dynsym", "none". */
const char *symtab_index_source(const struct symtab *st);

/* Symbols dropped past SYMTAB_MAX_FUNCS. */
size_t symtab_index_dropped(const struct symtab *st);

/*
 * The GNU build id (NT_GNU_BUILD_ID note) into buf (cap bytes; ids are 20 bytes for sha1), its
 * length into *len. -ENOENT when the file has none, -PS_ELIMIT when longer than cap.
 */
int symtab_build_id(const struct symtab *st, uint8_t *buf, size_t cap, size_t *len);

/* The link-time vaddr of file offset off (through the PT_LOAD holding it). -ENOENT if none. */
int symtab_offset_vaddr(const struct symtab *st, uint64_t off, uint64_t *vaddr);

#endif
