/* SPDX-License-Identifier: MIT */
/*
 * Opening a Python process for reading (see pyproc.h): maps -> locate -> layout -> memory
 * source -> validation. The order matters for the messages a user sees: a missing pid is
 * reported before anything else, "not Python" before "permission denied on memory" (maps and
 * ELF files are readable with fewer rights than memory), and a layout mismatch only once we can
 * read memory.
 *
 * Never stops, traces or writes to the target.
 */
#include "pyscope/pyproc.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <time.h>

#include "pyscope/debugoffsets.h"
#include "pyscope/diag.h"
#include "pyscope/procstat.h"
#include "pyscope/walk.h"

static int check_pid(pid_t pid, struct ps_err *err)
{
    char path[64];
    FILE *f;

    if (pid <= 0)
        return ps_err_set(err, -ESRCH,
                          "%d is not a valid process id: pass the pid of a running "
                          "Python process",
                          (int)pid);
    (void)snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (!f)
        return ps_err_set(err, -ESRCH,
                          "no process with pid %d: it may have exited; check the pid with "
                          "`ps -ef | grep python`",
                          (int)pid);
    (void)fclose(f);
    return 0;
}

/* After a failed open: if the process is gone or dying, that is the real cause (a zombie has
 * no executable and no memory, which would otherwise read as "not Python"). */
static int explain_exit(pid_t pid, int rc, struct ps_err *err)
{
    struct ps_err ignored = {0};
    char state = '?';
    int src = procstat_state(pid, pid, &state, &ignored);

    if (src == -ESRCH)
        return ps_err_replace(err, -ESRCH, "process %d exited while pyscope was reading it",
                              (int)pid);
    if (src == 0 && (state == 'Z' || state == 'X'))
        return ps_err_replace(err, -PS_EGONE,
                              "process %d has exited (it is a zombie waiting for its parent to "
                              "reap it): there is no Python state left to read",
                              (int)pid);
    return rc;
}

/* The newest table older than an unknown 3.13+ version (its debug offsets fill the rest). */
static const struct layout *standin_table(uint32_t version_hex)
{
    const struct layout *lay = NULL;

    for (uint32_t minor = (version_hex >> 16) & 0xffu; !lay && minor > 0 && minor < 256; minor--)
        lay = layout_for_version((version_hex & 0xff000000u) | (minor - 1) << 16);
    return lay;
}

static int pick_layout(struct pyproc *pp, struct ps_err *err)
{
    pp->table = layout_for_version(pp->loc.version_hex);
    pp->table_standin = !pp->table && debugoffsets_expected(pp->loc.version_hex);
    if (pp->table_standin)
        pp->table = standin_table(pp->loc.version_hex);
    if (!pp->table)
        return ps_err_set(err, -PS_EVERSION,
                          "process %d runs Python %s, which pyscope does not support (supported: "
                          "%s); run pyscope against a supported interpreter",
                          (int)pp->pid, pp->loc.version, layout_supported());
    pp->lay_own = *pp->table;
    pp->lay = &pp->lay_own;
    if (!pp->table_standin && pp->loc.runtime_section_size && pp->lay->runtime_size > 0 &&
        pp->loc.runtime_section_size != (uint64_t)pp->lay->runtime_size)
        (void)snprintf(pp->warning, sizeof(pp->warning),
                       "the runtime of Python %s is %llu bytes but the %s table (from %s) "
                       "expects %d: another patch release or build; results are checked but "
                       "may be wrong",
                       pp->loc.version, (unsigned long long)pp->loc.runtime_section_size,
                       pp->lay->name, pp->lay->generated_from, pp->lay->runtime_size);
    return 0;
}

/* Append a sentence to the warning (bounded; a repeated sentence is not added twice). */
static void add_warning(struct pyproc *pp, const char *msg)
{
    size_t len = strlen(pp->warning);

    if (!msg[0] || strstr(pp->warning, msg))
        return;
    (void)snprintf(pp->warning + len, sizeof(pp->warning) - len, "%s%s", len ? "; " : "", msg);
}

/*
 * 3.13+: prefer the target's _Py_DebugOffsets over the table (debugoffsets.h). Without them a
 * version that has its own table goes on with it (warned); a stand-in table cannot.
 */
static int apply_debug_offsets(struct pyproc *pp, struct ps_err *err)
{
    struct debugoffsets_in in = {
        .src = pp->src,
        .runtime_addr = pp->loc.syms.runtime,
        .version_hex = pp->loc.version_hex,
        .version = pp->loc.version,
        .runtime_section_size = pp->loc.runtime_section_size,
        .table = pp->table,
        .exact = !pp->table_standin,
    };
    struct debugoffsets_out *out;
    struct ps_err derr = {0};
    int rc;

    if (!debugoffsets_expected(pp->loc.version_hex))
        return 0;
    out = calloc(1, sizeof(*out));
    if (!out)
        return ps_err_set(err, -ENOMEM, "cannot allocate the debug offsets: out of memory");
    rc = debugoffsets_merge(&in, out, &derr);
    if (rc == 0) {
        pp->lay_own = out->lay;
        add_warning(pp, out->warning);
    } else if (pp->table_standin) {
        rc = ps_err_set(err, -PS_EVERSION,
                        "process %d runs Python %s, which has no pyscope table (supported: %s), "
                        "and its own _Py_DebugOffsets cannot be used: %s",
                        (int)pp->pid, pp->loc.version, layout_supported(), derr.msg);
    } else if (rc == -PS_EVERSION) {
        rc = ps_err_set(err, rc, "%s", derr.msg);
    } else {
        (void)snprintf(out->warning, sizeof(out->warning),
                       "the target's _Py_DebugOffsets could not be used (%.300s): using pyscope's "
                       "%s table alone",
                       derr.msg, pp->table->name);
        add_warning(pp, out->warning);
        rc = 0;
    }
    free(out);
    return rc;
}

/* First read of target memory: turns a bare EPERM into a diagnosed sentence. */
static int probe_memory(struct pyproc *pp, struct ps_err *err)
{
    uint64_t word;
    struct ps_err raw = {0};
    int rc;

    rc = memsrc_read_u64(pp->src, pp->loc.syms.runtime, &word, &raw);
    if (rc == -EPERM || rc == -EACCES || rc == -PS_EPERM)
        return diag_permission(pp->pid, DIAG_OP_READ, -rc == PS_EPERM ? EPERM : -rc, err);
    if (rc < 0) {
        (void)ps_err_set(err, rc, "%s", raw.msg);
        return rc;
    }
    return 0;
}

/* Is interp on the interpreter list (bounded walk)? */
static int interp_listed(struct pyproc *pp, uint64_t head, uint64_t interp, bool *found,
                         struct ps_err *err)
{
    uint64_t i = head;
    int rc;

    *found = false;
    for (int n = 0; i && n < WALK_MAX_INTERPS; n++) {
        if (i == interp) {
            *found = true;
            return 0;
        }
        rc = memsrc_read_u64(pp->src, i + (uint64_t)pp->lay->interp_next, &i, err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int validate_interps(struct pyproc *pp, struct ps_err *err)
{
    const struct layout *l = pp->lay;
    uint64_t rt = pp->loc.syms.runtime, head = 0, main_interp = 0;
    bool found;
    int rc;

    rc = memsrc_read_u64(pp->src, rt + (uint64_t)l->runtime_interpreters_head, &head, err);
    if (rc == 0)
        rc = memsrc_read_u64(pp->src, rt + (uint64_t)l->runtime_interpreters_main, &main_interp,
                             err);
    if (rc < 0)
        return rc;
    if (!head || !main_interp)
        return ps_err_set(err, -PS_ECORRUPT,
                          "the Python %s runtime has no interpreter yet (or is finalizing): "
                          "retry in a moment",
                          pp->loc.version);
    rc = interp_listed(pp, head, main_interp, &found, err);
    if (rc < 0)
        return rc;
    if (!found)
        return ps_err_set(err, -PS_ECORRUPT,
                          "layout check failed: interpreters.main (0x%llx) is not on the "
                          "interpreter list of Python %s; the %s table does not fit this build",
                          (unsigned long long)main_interp, pp->loc.version, l->name);
    return 0;
}

/* A GIL holder missing from the list that still names the interpreter: a thread state just
 * unlinked (the thread is ending; free() leaves that word), or read before the holder updated
 * last_holder. A holder read through a wrong table points at memory that does not. */
static bool holder_of_interp(struct pyproc *pp, const struct walk_interp *wi)
{
    struct ps_err ignored = {0};
    uint64_t interp = 0;

    return pp->lay->tstate_interp >= 0 &&
           memsrc_read_u64(pp->src, wi->gil_holder + (uint64_t)pp->lay->tstate_interp, &interp,
                           &ignored) == 0 &&
           interp == wi->addr;
}

static int validate_gil(struct pyproc *pp, const struct walk_interp *wi,
                        const struct walk_tstate *ts, size_t nts, struct ps_err *err)
{
    bool holder_listed = wi->gil_holder == 0;

    for (size_t i = 0; i < nts && !holder_listed; i++)
        holder_listed = ts[i].addr == wi->gil_holder;
    if (!holder_listed && !holder_of_interp(pp, wi))
        return ps_err_set(err, -PS_ECORRUPT,
                          "layout check failed: the GIL holder 0x%llx is not a thread state of "
                          "Python %s; the %s table does not fit this build",
                          (unsigned long long)wi->gil_holder, pp->loc.version, pp->lay->name);
    return 0;
}

/* Every thread state points back at its interpreter (walk_tstates checks) and each GIL's
 * holder is one of the listed thread states. */
static int validate_threads(struct pyproc *pp, struct ps_err *err)
{
    struct walk_tstate *ts = calloc(WALK_MAX_THREADS, sizeof(*ts));
    struct walk_interp *in = calloc(WALK_MAX_INTERPS, sizeof(*in));
    const struct pyctx c = pyproc_ctx(pp);
    size_t nts = 0, ni = 0;
    int rc;

    if (!ts || !in)
        rc = ps_err_set(err, -ENOMEM, "cannot allocate the thread list: out of memory");
    else
        rc = walk_tstates(&c, ts, WALK_MAX_THREADS, &nts, in, &ni, err);
    for (size_t i = 0; rc == 0 && i < ni; i++)
        rc = validate_gil(pp, &in[i], ts, nts, err);
    free(in);
    free(ts);
    return rc;
}

int pyproc_validate(struct pyproc *pp, struct ps_err *err)
{
    int rc = validate_interps(pp, err);

    return rc < 0 ? rc : validate_threads(pp, err);
}

int pyproc_check_alive(const struct pyproc *pp, struct ps_err *err)
{
    struct procstat_stat st;
    struct ps_err ignored = {0};

    if (pp->pid <= 0 || !pp->start_ticks)
        return 0;
    if (procstat_stat(pp->pid, pp->pid, &st, &ignored) < 0 || st.state == 'Z' || st.state == 'X')
        return ps_err_set(err, -PS_EGONE, "process %d exited", (int)pp->pid);
    if (st.start_ticks != pp->start_ticks)
        return ps_err_set(err, -PS_EGONE,
                          "process %d exited and its pid now belongs to another process",
                          (int)pp->pid);
    return 0;
}

/* Tries of the thread checks on a running process, the pause doubling from 1 ms (127 ms in all):
 * a thread ending between the read of the GIL and the walk of the list (its state unlinked
 * while it still holds the GIL, then freed), or preempted inside take_gil between setting
 * `locked` and `last_holder` (the holder then names the previous, maybe freed, thread state for
 * as long as it waits for a CPU: milliseconds on a loaded machine), makes a read inconsistent;
 * a table that does not fit fails every try. */
enum {
    VALIDATE_LIVE_TRIES = 8
};

/* pyproc_validate on a live target: an inconsistency (-PS_ECORRUPT) is retried, since the target
 * runs while it is read; any other error, or the last try's, is returned. */
static int validate_live(struct pyproc *pp, struct ps_err *err)
{
    struct timespec pause = {.tv_nsec = 1000000};
    struct ps_err one = {0};
    int rc = 0;

    for (int i = 0; i < VALIDATE_LIVE_TRIES; i++) {
        if (i > 0) {
            (void)nanosleep(&pause, NULL);
            pause.tv_nsec *= 2;
        }
        one = (struct ps_err){0};
        rc = pyproc_validate(pp, &one);
        if (rc != -PS_ECORRUPT)
            break;
    }
    return rc < 0 ? ps_err_set(err, rc, "%s", one.msg) : 0;
}

static int open_parts(struct pyproc *pp, struct ps_err *err)
{
    struct procstat_stat st;
    struct ps_err ignored = {0};
    int rc;

    if (procstat_stat(pp->pid, pp->pid, &st, &ignored) == 0)
        pp->start_ticks = st.start_ticks;
    tidmap_open(&pp->tids, pp->pid);
    rc = maps_read(pp->pid, &pp->maps, err);
    if (rc == -EACCES || rc == -EPERM)
        return diag_permission(pp->pid, DIAG_OP_READ, -rc, err);
    if (rc < 0)
        return rc;
    rc = locate_python(pp->pid, &pp->maps, &pp->loc, err);
    if (rc == -EACCES || rc == -EPERM) /* /proc/PID/exe refused: the same checks as memory */
        return diag_permission(pp->pid, DIAG_OP_READ, -rc, err);
    if (rc < 0)
        return rc;
    rc = pick_layout(pp, err);
    if (rc < 0)
        return rc;
    rc = memsrc_live_open(pp->pid, &pp->src, err);
    if (rc < 0)
        return rc;
    rc = probe_memory(pp, err);
    if (rc == 0)
        rc = apply_debug_offsets(pp, err);
    if (rc < 0)
        return rc;
    rc = code_cache_new(&pp->codes, err);
    if (rc < 0)
        return rc;
    return validate_live(pp, err);
}

int pyproc_open(pid_t pid, struct pyproc **out, struct ps_err *err)
{
    struct pyproc *pp;
    int rc;

    rc = check_pid(pid, err);
    if (rc < 0)
        return rc;
    pp = calloc(1, sizeof(*pp));
    if (!pp)
        return ps_err_set(err, -ENOMEM, "cannot allocate the process state: out of memory");
    pp->pid = pid;
    rc = open_parts(pp, err);
    if (rc < 0) {
        rc = explain_exit(pid, rc, err);
        pyproc_close(pp);
        return rc;
    }
    *out = pp;
    return 0;
}

int pyproc_open_source(struct memsrc *src, const struct locate_info *loc, struct pyproc **out,
                       struct ps_err *err)
{
    struct pyproc *pp = calloc(1, sizeof(*pp));
    int rc;

    if (!pp)
        return ps_err_set(err, -ENOMEM, "cannot allocate the process state: out of memory");
    pp->pid = src->pid;
    pp->loc = *loc;
    rc = pick_layout(pp, err);
    if (rc == 0) {
        pp->src = src;
        rc = apply_debug_offsets(pp, err);
    }
    if (rc == 0)
        rc = code_cache_new(&pp->codes, err);
    if (rc == 0)
        rc = pyproc_validate(pp, err);
    if (rc < 0) {
        pp->src = NULL; /* the caller keeps it */
        pyproc_close(pp);
        return rc;
    }
    *out = pp;
    return 0;
}

/* The symbol table of the meta file: name -> member of struct locate_syms. */
static const struct meta_sym {
    const char *name;
    size_t off;
} meta_syms[] = {
#define META_SYM(m)                                                                                \
    {                                                                                              \
#m, offsetof(struct locate_syms, m)                                                        \
    }
    META_SYM(runtime),        META_SYM(code_type), META_SYM(unicode_type),   META_SYM(bytes_type),
    META_SYM(tuple_type),     META_SYM(long_type), META_SYM(bool_type),      META_SYM(float_type),
    META_SYM(list_type),      META_SYM(dict_type), META_SYM(set_type),       META_SYM(frame_type),
    META_SYM(traceback_type), META_SYM(gen_type),  META_SYM(coro_type),      META_SYM(module_type),
    META_SYM(type_type),      META_SYM(none),      META_SYM(traceback_here),
#undef META_SYM
};

static int meta_write(const struct pyproc *pp, const char *path, struct ps_err *err)
{
    const struct locate_info *l = &pp->loc;
    FILE *f = fopen(path, "w");

    if (!f)
        return ps_err_set(err, -errno, "cannot write %s: %s", path, strerror(errno));
    (void)fprintf(f, "# pyscope fixture meta v1\nversion_hex 0x%08x\nversion %s\nshared %d\n",
                  l->version_hex, l->version, l->shared ? 1 : 0);
    (void)fprintf(f, "runtime_section_size %llu\nimage %s\nexe %s\n",
                  (unsigned long long)l->runtime_section_size, l->image, l->exe);
    for (size_t i = 0; i < sizeof(meta_syms) / sizeof(meta_syms[0]); i++) {
        uint64_t v;

        memcpy(&v, (const char *)&l->syms + meta_syms[i].off, sizeof(v));
        (void)fprintf(f, "sym %s 0x%llx\n", meta_syms[i].name, (unsigned long long)v);
    }
    if (fclose(f) != 0)
        return ps_err_set(err, -EIO, "cannot write %s", path);
    return 0;
}

static bool meta_sym_set(struct locate_info *loc, const char *name, uint64_t v)
{
    for (size_t i = 0; i < sizeof(meta_syms) / sizeof(meta_syms[0]); i++) {
        if (!strcmp(meta_syms[i].name, name)) {
            memcpy((char *)&loc->syms + meta_syms[i].off, &v, sizeof(v));
            return true;
        }
    }
    return false;
}

/* Parse an unsigned number (base 0: 0x prefix for hex) that must fill the whole word. */
static bool parse_u64(const char *s, uint64_t *out)
{
    char *end = NULL;
    unsigned long long v;

    if (!s)
        return false;
    errno = 0;
    v = strtoull(s, &end, 0);
    if (errno || end == s || *end)
        return false;
    *out = v;
    return true;
}

static bool copy_word(char *dst, size_t cap, const char *s)
{
    if (!s || strlen(s) >= cap)
        return false;
    memcpy(dst, s, strlen(s) + 1);
    return true;
}

/* One "key value [value]" line of a meta file; false for an unknown or malformed line. */
static bool meta_line(struct locate_info *loc, char *line)
{
    char *save = NULL;
    const char *key = strtok_r(line, " \n", &save);
    const char *v1 = key ? strtok_r(NULL, " \n", &save) : NULL;
    const char *v2 = v1 ? strtok_r(NULL, " \n", &save) : NULL;
    uint64_t v = 0;

    if (!key || key[0] == '#')
        return true;
    if (!strcmp(key, "version_hex") && parse_u64(v1, &v) && v <= UINT32_MAX) {
        loc->version_hex = (uint32_t)v;
        return true;
    }
    if (!strcmp(key, "shared") && parse_u64(v1, &v)) {
        loc->shared = v != 0;
        return true;
    }
    if (!strcmp(key, "runtime_section_size"))
        return parse_u64(v1, &loc->runtime_section_size);
    if (!strcmp(key, "version"))
        return copy_word(loc->version, sizeof(loc->version), v1);
    if (!strcmp(key, "image"))
        return copy_word(loc->image, sizeof(loc->image), v1);
    if (!strcmp(key, "exe"))
        return copy_word(loc->exe, sizeof(loc->exe), v1);
    if (!strcmp(key, "sym") && v1 && parse_u64(v2, &v))
        return meta_sym_set(loc, v1, v);
    return false;
}

int pyproc_meta_read(const char *path, struct locate_info *loc, struct ps_err *err)
{
    char line[4200];
    FILE *f = fopen(path, "r");
    int n = 0, rc = 0;

    if (!f)
        return ps_err_set(err, -errno, "cannot open the fixture meta file %s: %s", path,
                          strerror(errno));
    memset(loc, 0, sizeof(*loc));
    while (rc == 0 && n < 1000 && fgets(line, sizeof(line), f)) {
        n++;
        if (!meta_line(loc, line))
            rc = ps_err_set(err, -PS_EFORMAT, "%s line %d is not a meta entry", path, n);
    }
    (void)fclose(f);
    if (rc == 0 && (!loc->version_hex || !loc->syms.runtime))
        rc = ps_err_set(err, -PS_EFORMAT, "%s lacks version_hex or the runtime address", path);
    return rc;
}

int pyproc_record(struct pyproc *pp, const char *path, struct ps_err *err)
{
    char meta[4200];
    struct memsrc *rec = NULL;
    int rc;

    (void)snprintf(meta, sizeof(meta), "%s.meta", path);
    rc = meta_write(pp, meta, err);
    if (rc == 0)
        rc = memsrc_record_wrap(pp->src, path, &rec, err);
    if (rc < 0)
        return rc;
    pp->src = rec; /* pp's own source, before any component reads through it (pyproc.h) */
    rc = apply_debug_offsets(pp, err);             /* recorded too, so that a replay reads them */
    return rc < 0 ? rc : pyproc_validate(pp, err); /* recorded, so that a replay validates */
}

void pyproc_close(struct pyproc *pp)
{
    if (!pp)
        return;
    code_cache_free(pp->codes);
    memsrc_close(pp->src);
    maps_free(&pp->maps);
    tidmap_free(&pp->tids);
    free(pp);
}

struct pyctx pyproc_ctx(struct pyproc *pp)
{
    return (struct pyctx){.src = pp->src,
                          .lay = pp->lay,
                          .syms = &pp->loc.syms,
                          .codes = pp->codes,
                          .tids = &pp->tids};
}
