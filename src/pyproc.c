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
#include <string.h>

#include "pyscope/diag.h"
#include "pyscope/walk.h"

static int check_pid(pid_t pid, struct ps_err *err)
{
    char path[64];
    FILE *f;

    if (pid <= 0)
        return ps_err_set(err, -ESRCH, "%d is not a valid process id: pass the pid of a running "
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

static int pick_layout(struct pyproc *pp, struct ps_err *err)
{
    pp->lay = layout_for_version(pp->loc.version_hex);
    if (!pp->lay)
        return ps_err_set(err, -PS_EVERSION,
                          "process %d runs Python %s, which pyscope does not support (supported: "
                          "%s); run pyscope against a supported interpreter",
                          (int)pp->pid, pp->loc.version, layout_supported());
    if (pp->loc.runtime_section_size && pp->lay->runtime_size > 0 &&
        pp->loc.runtime_section_size != (uint64_t)pp->lay->runtime_size)
        (void)snprintf(pp->warning, sizeof(pp->warning),
                       "the runtime of Python %s is %llu bytes but the %s table (from %s) "
                       "expects %d: another patch release or build; results are checked but "
                       "may be wrong",
                       pp->loc.version, (unsigned long long)pp->loc.runtime_section_size,
                       pp->lay->name, pp->lay->generated_from, pp->lay->runtime_size);
    return 0;
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
    uint64_t rt = pp->loc.syms.runtime, head, main_interp;
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

static int validate_gil(struct pyproc *pp, const struct walk_interp *wi,
                        const struct walk_tstate *ts, size_t nts, struct ps_err *err)
{
    bool holder_listed = wi->gil_holder == 0;

    for (size_t i = 0; i < nts && !holder_listed; i++)
        holder_listed = ts[i].addr == wi->gil_holder;
    if (!holder_listed)
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
    size_t nts = 0, ni = 0;
    int rc;

    if (!ts || !in)
        rc = ps_err_set(err, -ENOMEM, "cannot allocate the thread list: out of memory");
    else
        rc = walk_tstates(pp, ts, WALK_MAX_THREADS, &nts, in, &ni, err);
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

static int open_parts(struct pyproc *pp, struct ps_err *err)
{
    int rc;

    rc = maps_read(pp->pid, &pp->maps, err);
    if (rc == -EACCES || rc == -EPERM)
        return diag_permission(pp->pid, DIAG_OP_READ, -rc, err);
    if (rc < 0)
        return rc;
    rc = locate_python(pp->pid, &pp->maps, &pp->loc, err);
    if (rc < 0)
        return rc;
    rc = pick_layout(pp, err);
    if (rc < 0)
        return rc;
    rc = memsrc_live_open(pp->pid, &pp->src, err);
    if (rc < 0)
        return rc;
    pp->ctx = (struct pyctx){.src = pp->src, .lay = pp->lay, .syms = &pp->loc.syms};
    rc = probe_memory(pp, err);
    if (rc < 0)
        return rc;
    rc = code_cache_new(&pp->codes, err);
    if (rc < 0)
        return rc;
    return pyproc_validate(pp, err);
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
        if (rc == -EFAULT || rc == -PS_EGONE)
            (void)check_pid(pid, err);
        pyproc_close(pp);
        return rc;
    }
    *out = pp;
    return 0;
}

void pyproc_close(struct pyproc *pp)
{
    if (!pp)
        return;
    code_cache_free(pp->codes);
    memsrc_close(pp->src);
    maps_free(&pp->maps);
    free(pp);
}
