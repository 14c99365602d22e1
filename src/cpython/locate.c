/* SPDX-License-Identifier: MIT */
/*
 * Locating the CPython runtime (see locate.h). First step after attach: maps in, addresses of
 * _PyRuntime and friends out, plus Py_Version so the caller can pick a layout table.
 *
 * Everything comes from the image file, never from target memory: the file is opened through
 * /proc/PID/root (the target's mount namespace) or, for a deleted or replaced file, through
 * /proc/PID/map_files, and in both cases checked against the inode the maps list. The load bias
 * is the start of the image's offset-0 mapping minus the vaddr file offset 0 links at.
 *
 * Failure messages name the process (pid and comm), the file and what was looked for, because
 * "not Python" on the wrong pid is the most common user error. The output struct is built in a
 * private copy and written only on success.
 */
#include "pyscope/locate.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pyscope/layout.h"
#include "pyscope/symtab.h"

/* Name of the process for messages ("nginx"); the kernel caps comm at 16 bytes. */
#define LOCATE_COMM_MAX 32

/* What locate_python knows about the target while it works. */
struct locate_ctx {
    pid_t pid;
    char comm[LOCATE_COMM_MAX];
    const struct maps *maps;
    struct locate_info *info;
    const char *file_root; /* pid 0 (a core): prefix for recorded paths, or NULL */
    const char *exe_file;  /* pid 0: file to open for the executable, or NULL */
};

/* Exported objects the engine reads, by name; absent ones resolve to 0. */
static const struct {
    const char *name;
    size_t off;
} locate_sym_table[] = {
    {"_PyRuntime", offsetof(struct locate_syms, runtime)},
    {"PyCode_Type", offsetof(struct locate_syms, code_type)},
    {"PyUnicode_Type", offsetof(struct locate_syms, unicode_type)},
    {"PyBytes_Type", offsetof(struct locate_syms, bytes_type)},
    {"PyTuple_Type", offsetof(struct locate_syms, tuple_type)},
    {"PyLong_Type", offsetof(struct locate_syms, long_type)},
    {"PyBool_Type", offsetof(struct locate_syms, bool_type)},
    {"PyFloat_Type", offsetof(struct locate_syms, float_type)},
    {"PyList_Type", offsetof(struct locate_syms, list_type)},
    {"PyDict_Type", offsetof(struct locate_syms, dict_type)},
    {"PySet_Type", offsetof(struct locate_syms, set_type)},
    {"PyFrame_Type", offsetof(struct locate_syms, frame_type)},
    {"PyTraceBack_Type", offsetof(struct locate_syms, traceback_type)},
    {"PyGen_Type", offsetof(struct locate_syms, gen_type)},
    {"PyCoro_Type", offsetof(struct locate_syms, coro_type)},
    {"PyModule_Type", offsetof(struct locate_syms, module_type)},
    {"PyType_Type", offsetof(struct locate_syms, type_type)},
    {"_Py_NoneStruct", offsetof(struct locate_syms, none)},
    {"PyTraceBack_Here", offsetof(struct locate_syms, traceback_here)},
};

void locate_version_string(uint32_t version_hex, char *buf, size_t len)
{
    unsigned major = version_hex >> 24, minor = (version_hex >> 16) & 0xffu;
    unsigned micro = (version_hex >> 8) & 0xffu, serial = version_hex & 0xfu;
    const char *level;

    if (!buf || len == 0)
        return;
    switch ((version_hex >> 4) & 0xfu) {
    case 0xa: level = "a"; break;
    case 0xb: level = "b"; break;
    case 0xc: level = "rc"; break;
    case 0xf:
        level = "";
        serial = 0;
        break;
    default: level = "?"; break; /* not a PY_RELEASE_LEVEL_*: show it is odd, keep the serial */
    }
    if (serial == 0 && *level == '\0')
        (void)snprintf(buf, len, "%u.%u.%u", major, minor, micro);
    else
        (void)snprintf(buf, len, "%u.%u.%u%s%u", major, minor, micro, level, serial);
}

static const char *locate_basename(const char *path)
{
    const char *slash = strrchr(path, '/');

    return slash ? slash + 1 : path;
}

/* Copy src into a buffer of size cap; false when it does not fit. */
static bool locate_copy(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);

    if (n >= cap)
        return false;
    memcpy(dst, src, n + 1);
    return true;
}

/* /proc/PID/comm, or "?" when unreadable; for messages only. */
static void locate_read_comm(struct locate_ctx *c)
{
    char path[64];
    FILE *f;

    (void)snprintf(c->comm, sizeof(c->comm), "?");
    (void)snprintf(path, sizeof(path), "/proc/%d/comm", (int)c->pid);
    f = fopen(path, "re");
    if (!f)
        return;
    if (fgets(c->comm, (int)sizeof(c->comm), f))
        c->comm[strcspn(c->comm, "\n")] = '\0';
    else
        (void)snprintf(c->comm, sizeof(c->comm), "?");
    (void)fclose(f);
}

/* Diagnose a failed readlink of /proc/PID/exe (errno e). */
static int locate_exe_error(const struct locate_ctx *c, const char *dir, int e, struct ps_err *err)
{
    if (e == EACCES || e == EPERM)
        return ps_err_set(err, -EACCES,
                          "cannot read %s/exe of process %d (%s): permission "
                          "denied; run pyscope as the target's user or as root",
                          dir, (int)c->pid, c->comm);
    if (access(dir, F_OK) != 0)
        return ps_err_set(err, -ESRCH, "process %d exited while pyscope was attaching",
                          (int)c->pid);
    return ps_err_set(err, -PS_ENOTPYTHON,
                      "process %d (%s) has no executable (a kernel thread "
                      "or a zombie), so it cannot be Python",
                      (int)c->pid, c->comm);
}

/* Check that the process exists; readlink /proc/PID/exe into info->exe (" (deleted)" removed). */
static int locate_read_exe(struct locate_ctx *c, struct ps_err *err)
{
    char dir[32], path[64];
    char *exe = c->info->exe;
    ssize_t n;
    size_t len, dl = strlen(" (deleted)");

    (void)snprintf(dir, sizeof(dir), "/proc/%d", (int)c->pid);
    if (c->pid <= 0 || access(dir, F_OK) != 0)
        return ps_err_set(err, -ESRCH,
                          "no process with pid %d: it has exited or the pid is "
                          "wrong",
                          (int)c->pid);
    locate_read_comm(c);
    (void)snprintf(path, sizeof(path), "%s/exe", dir);
    n = readlink(path, exe, LOCATE_PATH_MAX - 1);
    if (n < 0)
        return locate_exe_error(c, dir, errno, err);
    len = (size_t)n;
    exe[len] = '\0';
    if (len > dl && strcmp(exe + len - dl, " (deleted)") == 0)
        exe[len - dl] = '\0';
    return 0;
}

/*
 * libpython3.<digit>... at file offset 0: the versioned library (3.10, 3.12d, 3.13t). The
 * stable-ABI shim libpython3.so has no runtime, which is why this does not stop at the first
 * "libpython3." match the way maps_find_lib does.
 */
static const struct maps_entry *locate_find_libpython(const struct maps *m)
{
    static const char prefix[] = "libpython3.";

    for (size_t i = 0; i < m->n; i++) {
        const struct maps_entry *e = &m->v[i];
        const char *base;

        if (e->offset != 0 || !e->path || e->path[0] != '/')
            continue;
        base = locate_basename(e->path);
        if (strncmp(base, prefix, sizeof(prefix) - 1) == 0 && base[sizeof(prefix) - 1] >= '0' &&
            base[sizeof(prefix) - 1] <= '9')
            return e;
    }
    return NULL;
}

/* The offset-0 mapping of the image that should hold the runtime; sets image and shared. */
static int locate_pick_image(struct locate_ctx *c, const struct maps_entry **out,
                             struct ps_err *err)
{
    struct locate_info *info = c->info;
    const struct maps_entry *e = locate_find_libpython(c->maps);

    info->shared = e != NULL;
    if (!e)
        e = maps_first_of(c->maps, info->exe);
    if (!e)
        return ps_err_set(err, -PS_ENOTPYTHON,
                          "process %d (%s) is not Python: no libpython3.* "
                          "mapping and its executable %s is not in its maps",
                          (int)c->pid, c->comm, info->exe);
    if (e->offset != 0)
        return ps_err_set(err, -PS_EFORMAT,
                          "process %d (%s): the first mapping of %s is at "
                          "file offset 0x%" PRIx64 ", not 0, so its load bias is unknown",
                          (int)c->pid, c->comm, e->path, e->offset);
    if (!locate_copy(info->image, sizeof(info->image), e->path))
        return ps_err_set(err, -PS_ELIMIT, "process %d (%s): image path too long", (int)c->pid,
                          c->comm);
    *out = e;
    return 0;
}

/* True when path names the file the mapping e maps (same inode as in the maps). */
static bool locate_same_file(const char *path, const struct maps_entry *e)
{
    struct stat sb;

    return stat(path, &sb) == 0 && (uint64_t)sb.st_ino == e->inode;
}

static int locate_open_map_files(struct locate_ctx *c, const struct maps_entry *e,
                                 struct symtab **st, struct ps_err *err)
{
    char *opened = c->info->opened;

    (void)snprintf(opened, LOCATE_PATH_MAX, "/proc/%d/map_files/%" PRIx64 "-%" PRIx64, (int)c->pid,
                   e->start, e->end);
    if (access(opened, F_OK) != 0 && (errno == EACCES || errno == EPERM))
        return ps_err_set(err, -EACCES,
                          "cannot open %s of process %d (%s): permission denied; "
                          "run pyscope as root or with CAP_SYS_ADMIN",
                          opened, (int)c->pid, c->comm);
    if (!locate_same_file(opened, e))
        return ps_err_set(err, -PS_EFORMAT,
                          "cannot open the image %s of process %d (%s): it is "
                          "gone from its mount namespace and %s is not the mapped file (inode "
                          "%" PRIu64 ")",
                          e->path, (int)c->pid, c->comm, opened, e->inode);
    return symtab_open(opened, st, err);
}

/* A core's image: exe_file for the executable, else file_root + the recorded path. */
static int locate_open_recorded(struct locate_ctx *c, const struct maps_entry *e,
                                struct symtab **st, struct ps_err *err)
{
    char *opened = c->info->opened;
    int rc;
    struct ps_err why = {0};

    if (c->exe_file && strcmp(e->path, c->info->exe) == 0)
        (void)snprintf(opened, LOCATE_PATH_MAX, "%s", c->exe_file);
    else
        (void)snprintf(opened, LOCATE_PATH_MAX, "%s%s", c->file_root ? c->file_root : "", e->path);
    rc = symtab_open(opened, st, &why);
    if (rc == -ENOENT)
        return ps_err_set(err, rc,
                          "the core maps %s but %s does not exist: copy the binaries from the "
                          "crashed machine and point --lib-search-root (or --exe) at them",
                          e->path, opened);
    if (rc < 0)
        return ps_err_set(err, rc, "%s", why.msg);
    return 0;
}

/*
 * Open the image: /proc/PID/root/<path> when it is still the mapped file, else the mapping
 * itself through /proc/PID/map_files (deleted or replaced files, foreign namespaces).
 */
static int locate_open_image(struct locate_ctx *c, const struct maps_entry *e, struct symtab **st,
                             struct ps_err *err)
{
    char *opened = c->info->opened;
    struct ps_err first;

    ps_err_clear(&first);
    if (c->pid == 0) /* a core: the recorded file, no process to cross-check inodes with */
        return locate_open_recorded(c, e, st, err);
    if (!e->deleted) {
        int n = snprintf(opened, LOCATE_PATH_MAX, "/proc/%d/root%s", (int)c->pid, e->path);
        if (n > 0 && n < LOCATE_PATH_MAX && locate_same_file(opened, e) &&
            symtab_open(opened, st, &first) == 0)
            return 0;
        if (first.code == -PS_EFORMAT)
            return ps_err_set(err, first.code, "%s", first.msg);
    }
    return locate_open_map_files(c, e, st, err);
}

/* The oldest supported version: the first generated table (layout_table, oldest first). Every
 * supported version exports Py_Version, so an image without it, or a Py_Version below this
 * minor, is an older Python. */
static const struct layout *locate_oldest(void)
{
    return layout_table(0);
}

static unsigned locate_oldest_minor(void)
{
    const struct layout *oldest = locate_oldest();

    return oldest ? (oldest->version_hex_min >> 16) & 0xffu : 0;
}

/* "3.10" from ".../libpython3.10.so.1.0" or ".../python3.10" when older than the oldest
 * supported version, else "older than 3.X" (the oldest). */
static void locate_guess_minor(const char *path, char *buf, size_t len)
{
    const char *p = strstr(locate_basename(path), "python3.");
    const struct layout *oldest = locate_oldest();
    unsigned minor = 0;
    int digits = 0;

    (void)snprintf(buf, len, "older than %s", oldest ? oldest->name : "the supported versions");
    if (!p)
        return;
    for (p += strlen("python3."); digits < 3 && *p >= '0' && *p <= '9'; p++, digits++)
        minor = minor * 10 + (unsigned)(*p - '0');
    if (digits > 0 && minor < locate_oldest_minor())
        (void)snprintf(buf, len, "3.%u", minor);
}

/* Diagnose an image without Py_Version: too old, or not Python at all. */
static int locate_no_version(struct locate_ctx *c, bool has_runtime, struct ps_err *err)
{
    const struct locate_info *info = c->info;
    char guess[48];

    locate_guess_minor(info->image, guess, sizeof(guess));
    if (has_runtime)
        return ps_err_set(err, -PS_EVERSION,
                          "process %d (%s) runs Python %s: %s has _PyRuntime "
                          "but no Py_Version (which every supported version has); pyscope "
                          "supports CPython %s",
                          (int)c->pid, c->comm, guess, info->image, layout_supported());
    if (info->shared)
        return ps_err_set(err, -PS_EVERSION,
                          "process %d (%s) maps %s, which has neither "
                          "Py_Version nor _PyRuntime: Python %s; pyscope supports CPython %s",
                          (int)c->pid, c->comm, info->image, guess, layout_supported());
    return ps_err_set(err, -PS_ENOTPYTHON,
                      "process %d (%s) is not Python: no libpython3.* "
                      "mapping and no _PyRuntime symbol in %s; point pyscope at a CPython "
                      "process",
                      (int)c->pid, c->comm, info->exe);
}

/* Read and check Py_Version (PY_VERSION_HEX as an 8-byte unsigned long, Include/pylifecycle.h)
 * from the file: a CPython 3 release number, no older than the oldest supported version. */
static int locate_read_version(struct locate_ctx *c, const struct symtab *st, uint64_t vaddr,
                               struct ps_err *err)
{
    struct locate_info *info = c->info;
    unsigned char b[8];
    uint32_t v;
    unsigned level;
    int rc;

    rc = symtab_read_vaddr(st, vaddr, b, sizeof(b), err);
    if (rc != 0)
        return rc;
    v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    level = (v >> 4) & 0xfu;
    if ((b[4] | b[5] | b[6] | b[7]) != 0 || v >> 24 != 3 ||
        ((v >> 16) & 0xffu) < locate_oldest_minor() ||
        (level != 0xa && level != 0xb && level != 0xc && level != 0xf))
        return ps_err_set(err, -PS_ECORRUPT,
                          "Py_Version in %s reads 0x%08" PRIx32 ", which is "
                          "not a CPython 3.%u+ version number; the file may not be the one the "
                          "process runs",
                          info->image, v, locate_oldest_minor());
    info->version_hex = v;
    locate_version_string(v, info->version, sizeof(info->version));
    return 0;
}

/* Fill info->syms (biased; 0 when absent) and runtime_section_size. */
static void locate_resolve(struct locate_info *info, const struct symtab *st)
{
    uint64_t vaddr;
    size_t n = sizeof(locate_sym_table) / sizeof(locate_sym_table[0]);

    for (size_t i = 0; i < n; i++) {
        uint64_t addr = 0;

        if (symtab_lookup(st, locate_sym_table[i].name, &vaddr, NULL) == 0 && vaddr != 0)
            addr = vaddr + info->bias;
        memcpy((char *)&info->syms + locate_sym_table[i].off, &addr, sizeof(addr));
    }
    if (symtab_section(st, ".PyRuntime", &vaddr, &info->runtime_section_size) != 0)
        info->runtime_section_size = 0;
}

/* With the image open: version, symbols, and a check that _PyRuntime lands in the maps. */
static int locate_examine(struct locate_ctx *c, const struct maps_entry *e, const struct symtab *st,
                          struct ps_err *err)
{
    struct locate_info *info = c->info;
    uint64_t ver_vaddr, rt_vaddr;
    bool has_ver = symtab_lookup(st, "Py_Version", &ver_vaddr, NULL) == 0;
    bool has_rt = symtab_lookup(st, "_PyRuntime", &rt_vaddr, NULL) == 0 && rt_vaddr != 0;
    int rc;

    if (!has_ver)
        return locate_no_version(c, has_rt, err);
    if (!has_rt)
        return ps_err_set(err, -PS_EFORMAT,
                          "%s of process %d (%s) has Py_Version but no "
                          "_PyRuntime symbol; is it a CPython build?",
                          info->image, (int)c->pid, c->comm);
    rc = locate_read_version(c, st, ver_vaddr, err);
    if (rc != 0)
        return rc;
    info->bias = e->start - symtab_load_vaddr(st);
    locate_resolve(info, st);
    if (!maps_find(c->maps, info->syms.runtime))
        return ps_err_set(err, -PS_ECORRUPT,
                          "_PyRuntime of process %d (%s) would be at 0x%" PRIx64
                          ", which is not mapped: %s does not match the running image",
                          (int)c->pid, c->comm, info->syms.runtime, info->opened);
    return 0;
}

int locate_python_files(const struct maps *maps, const char *exe, const char *file_root,
                        const char *exe_file, struct locate_info *out, struct ps_err *err)
{
    struct locate_ctx c = {.maps = maps, .file_root = file_root, .exe_file = exe_file};
    const struct maps_entry *e = NULL;
    struct symtab *st = NULL;
    int rc;

    c.info = calloc(1, sizeof(*c.info));
    if (!c.info)
        return ps_err_set(err, -ENOMEM, "out of memory locating Python in the core");
    (void)snprintf(c.comm, sizeof(c.comm), "core");
    if (!locate_copy(c.info->exe, sizeof(c.info->exe), exe ? exe : ""))
        rc = ps_err_set(err, -PS_ELIMIT, "the core's executable path is too long");
    else
        rc = locate_pick_image(&c, &e, err);
    if (rc == 0 && e)
        rc = locate_open_image(&c, e, &st, err);
    if (rc == 0 && e)
        rc = locate_examine(&c, e, st, err);
    if (rc == 0)
        *out = *c.info;
    symtab_close(st);
    free(c.info);
    return rc;
}

int locate_python(pid_t pid, const struct maps *maps, struct locate_info *out, struct ps_err *err)
{
    struct locate_ctx c = {.pid = pid, .maps = maps};
    const struct maps_entry *e = NULL;
    struct symtab *st = NULL;
    int rc;

    c.info = calloc(1, sizeof(*c.info));
    if (!c.info)
        return ps_err_set(err, -ENOMEM, "out of memory locating Python in process %d", (int)pid);
    rc = locate_read_exe(&c, err);
    if (rc == 0)
        rc = locate_pick_image(&c, &e, err);
    if (rc != 0 || !e)
        goto out_free;
    rc = locate_open_image(&c, e, &st, err);
    if (rc != 0)
        goto out_free;
    rc = locate_examine(&c, e, st, err);
    if (rc == 0)
        *out = *c.info;
    symtab_close(st);
out_free:
    free(c.info);
    return rc;
}

/* Bytes of .dynstr searched for "libpython": DT_NEEDED names of a real executable fit well
 * within it (python3.12's is under 8 KiB; bash's about 10 KiB). */
#define LOCATE_DYNSTR_MAX ((uint64_t)256 * 1024)

static bool dynstr_names_libpython(const struct symtab *st)
{
    struct ps_err ignored = {0};
    uint64_t vaddr = 0, size = 0;
    char *buf;
    bool found;

    if (symtab_section(st, ".dynstr", &vaddr, &size) < 0 || size == 0)
        return false;
    size = size < LOCATE_DYNSTR_MAX ? size : LOCATE_DYNSTR_MAX;
    buf = malloc(size);
    if (!buf)
        return true; /* unknown */
    found = symtab_read_vaddr(st, vaddr, buf, size, &ignored) < 0 ||
            memmem(buf, size, "libpython", strlen("libpython")) != NULL;
    free(buf);
    return found;
}

bool locate_exe_may_be_python(pid_t pid)
{
    struct ps_err ignored = {0};
    struct symtab *st = NULL;
    char path[64];
    uint64_t vaddr, size;
    bool may;

    (void)snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
    if (symtab_open(path, &st, &ignored) < 0)
        return true;
    may = symtab_lookup(st, "_PyRuntime", &vaddr, &size) == 0 || dynstr_names_libpython(st);
    symtab_close(st);
    return may;
}
