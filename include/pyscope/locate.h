/* SPDX-License-Identifier: MIT */
#ifndef PYSCOPE_LOCATE_H
#define PYSCOPE_LOCATE_H

/*
 * Locate the CPython runtime of a process: find the image holding it (libpython3.X*.so* mapped
 * at offset 0, else the executable), open it through /proc/PID/root (container mount namespaces;
 * /proc/PID/map_files for a deleted file), compute the load bias, read Py_Version from the file,
 * and resolve the exported symbols the engine needs, as target addresses. Never executes the
 * target's binaries and never reads target memory.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "pyscope/err.h"
#include "pyscope/maps.h"

/* Addresses (biased, in the target) of exported objects; 0 when the symbol is absent. */
struct locate_syms {
    uint64_t runtime;        /* _PyRuntime */
    uint64_t code_type;      /* PyCode_Type */
    uint64_t unicode_type;   /* PyUnicode_Type */
    uint64_t bytes_type;     /* PyBytes_Type */
    uint64_t tuple_type;     /* PyTuple_Type */
    uint64_t long_type;      /* PyLong_Type */
    uint64_t bool_type;      /* PyBool_Type */
    uint64_t float_type;     /* PyFloat_Type */
    uint64_t list_type;      /* PyList_Type */
    uint64_t dict_type;      /* PyDict_Type */
    uint64_t set_type;       /* PySet_Type */
    uint64_t frame_type;     /* PyFrame_Type */
    uint64_t traceback_type; /* PyTraceBack_Type */
    uint64_t gen_type;       /* PyGen_Type */
    uint64_t coro_type;      /* PyCoro_Type */
    uint64_t module_type;    /* PyModule_Type */
    uint64_t type_type;      /* PyType_Type */
    uint64_t none;           /* _Py_NoneStruct */
    uint64_t traceback_here; /* PyTraceBack_Here (exception tracing breakpoint) */
};

#define LOCATE_PATH_MAX 4096

struct locate_info {
    uint32_t version_hex;          /* Py_Version, e.g. 0x030c01f0 */
    char version[32];              /* "3.12.1" (with "a1"/"b2"/"rc1" for pre-releases) */
    bool shared;                   /* runtime in libpython (true) or the executable */
    char image[LOCATE_PATH_MAX];   /* path as mapped in the target */
    char opened[LOCATE_PATH_MAX];  /* path pyscope opened (/proc/PID/root/... or map_files) */
    char exe[LOCATE_PATH_MAX];     /* the target's executable (readlink /proc/PID/exe) */
    uint64_t bias;                 /* mapping start - p_vaddr of the offset-0 PT_LOAD */
    uint64_t runtime_section_size; /* size of section .PyRuntime (0 if none) */
    struct locate_syms syms;
};

/*
 * Fill *out for process pid with the given maps. Errors (err says which, and what was looked
 * for): -PS_ENOTPYTHON (no libpython mapping and no _PyRuntime in the executable),
 * -PS_EVERSION (Py_Version missing: Python older than 3.11), -ESRCH, -EACCES, -PS_EFORMAT.
 * Does not check that a layout exists for the version (the caller does).
 */
int locate_python(pid_t pid, const struct maps *maps, struct locate_info *out,
                  struct ps_err *err) PS_WARN_UNUSED;

/*
 * As locate_python for a process that no longer runs (a core file): maps as recorded in the core,
 * exe the recorded path of its executable; each image is opened as file_root + recorded path
 * (file_root NULL: as recorded), the executable from exe_file when set. No /proc access and no
 * inode check (a core records none). Same errors, plus -ENOENT naming a missing binary.
 */
int locate_python_files(const struct maps *maps, const char *exe, const char *file_root,
                        const char *exe_file, struct locate_info *out,
                        struct ps_err *err) PS_WARN_UNUSED;

/*
 * Whether process pid's executable could ever hold a CPython runtime: it defines _PyRuntime or
 * its dynamic string table names a libpython (DT_NEEDED). False only when the executable was
 * read and has neither (sleep, bash): then the process is not Python unless it execs something
 * else. True when the executable cannot be read (unknown). Reads /proc/PID/exe, the target's
 * own binary; never touches target memory. Any thread.
 */
bool locate_exe_may_be_python(pid_t pid);

/* Format a PY_VERSION_HEX as "3.12.1" / "3.13.0rc2" into buf. */
void locate_version_string(uint32_t version_hex, char *buf, size_t len);

#endif
