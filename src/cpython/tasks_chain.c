/* SPDX-License-Identifier: MIT */
/*
 * Coroutine chains of suspended asyncio tasks (see tasks.h), the part of the tasks module that
 * follows `await` down from a task's coroutine.
 *
 * A suspended coroutine, generator or async generator keeps its frame inside the object
 * (PyGenObject.gi_iframe, CPYTHON.md section 2.3). It awaits something exactly when CPython's
 * _PyGen_yf says so (Objects/genobject.c): 3.13 by the frame state alone
 * (FRAME_SUSPENDED_YIELD_FROM); 3.11/3.12 when suspended and the code unit after prev_instr is
 * RESUME (3.11 also RESUME_QUICK, 3.12 also INSTRUMENTED_RESUME) with oparg >= 2. The awaited
 * object is then the top of the frame's value stack, localsplus[stacktop - 1]. We follow it
 * into nested coroutines and generators, through async_generator_asend into the async
 * generator, and through _asyncio.FutureIter to the future (or task) at the end.
 *
 * Each step costs three reads: the generator with its frame header, the code header plus the
 * next code unit (one scatter read), the stack slot. Every pointer is type-checked before it
 * is followed; the chain stops at TASKS_MAX_CHAIN. Never writes to the target; no globals.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "pyscope/code.h"
#include "pyscope/linetab.h"
#include "tasks_int.h"

/* A frame's value stack is far smaller than this many slots (co_stacksize is a 32-bit int,
 * but CPython's compiler never emits stacks near it); more is a torn read. */
#define CHAIN_MAX_STACKTOP (1 << 16)
/* Largest generator header + frame header we read (3.11: gi_iframe @80 + localsplus @72). */
#define CHAIN_GEN_MAX 256

/* The suspended frame of one coroutine/generator object. */
struct gen_view {
    int state;
    uint64_t frame;
    uint64_t code;
    uint64_t instr;
    int64_t stacktop;
};

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static int32_t le32s(const uint8_t *p)
{
    uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;

    return (int32_t)v;
}

/* Read the generator object and its embedded frame header in one read. */
static int gen_read(struct tasks_ctx *x, uint64_t obj, struct gen_view *g, struct ps_err *err)
{
    const struct layout *l = x->lay;
    uint8_t buf[CHAIN_GEN_MAX];
    size_t len = (size_t)l->gen_iframe + (size_t)l->frame_localsplus;
    size_t fr = (size_t)l->gen_iframe;
    int rc;

    if (len > sizeof(buf) || (size_t)l->gen_frame_state >= len)
        return ps_err_set(err, -PS_ECORRUPT, "the %s layout's generator header is too big",
                          l->name);
    rc = memsrc_read(x->c->src, obj, buf, len, err);
    if (rc < 0)
        return rc;
    /* gi_frame_state is an int8_t: sign-extend the byte. */
    g->state = (int)buf[l->gen_frame_state] - ((buf[l->gen_frame_state] & 0x80u) ? 256 : 0);
    g->frame = obj + fr;
    g->code = le64(buf + fr + (size_t)l->frame_code);
    g->instr = le64(buf + fr + (size_t)l->frame_instr);
    g->stacktop = le32s(buf + fr + (size_t)l->frame_stacktop);
    return 0;
}

/* Whether `op` is a RESUME in any of its forms (plain, specialised, instrumented). */
static bool is_resume(const struct layout *l, unsigned op)
{
    return (int)op == l->opcode_resume ||
           (LAYOUT_HAS(l, opcode_instrumented_resume) &&
            (int)op == l->opcode_instrumented_resume) ||
           (LAYOUT_HAS(l, opcode_resume_quick) && (int)op == l->opcode_resume_quick);
}

/* _PyGen_yf's test: is the suspended frame inside `await` / `yield from`? */
static bool gen_awaiting(const struct layout *l, int state, const uint8_t next[2], bool has_next)
{
    if (LAYOUT_HAS(l, gen_state_yield_from_neg))
        return state == -l->gen_state_yield_from_neg;
    if (state != -l->gen_state_suspended_neg || !has_next)
        return false;
    /* RESUME's oparg: 0 start, 1 after yield, 2 after yield from, 3 after await. */
    return is_resume(l, next[0]) && next[1] >= 2;
}

/* Copy a resolved code position into a snapshot frame. */
static int frame_fill(struct tasks_ctx *x, const struct code_info *ci, int64_t unit,
                      struct snap_frame *f, struct ps_err *err)
{
    struct linetab_pos pos = linetab_lookup(&ci->lines, ci->firstlineno, unit);

    memset(f, 0, sizeof(*f));
    f->function = snap_strdup(x->s, ci->name);
    f->qualname = snap_strdup(x->s, ci->qualname);
    f->file = snap_strdup(x->s, ci->filename);
    if (!f->function || !f->qualname || !f->file)
        return ps_err_set(err, -ENOMEM, "cannot copy a coroutine frame: out of memory");
    f->line = pos.line;
    f->end_line = pos.end_line;
    f->col = pos.col;
    f->end_col = pos.end_col;
    f->code_addr = ci->addr;
    f->owner = SNAP_OWNER_GENERATOR;
    return 0;
}

/* The code unit a suspended frame is at (CPYTHON.md section 3.1), validated. */
static int gen_unit(struct tasks_ctx *x, const struct gen_view *g, const struct code_fp *fp,
                    int64_t *unit, struct ps_err *err)
{
    uint64_t base = g->code + (uint64_t)x->lay->code_code_adaptive;
    int64_t diff = (int64_t)(g->instr - base);

    if (diff % 2 != 0 || diff < -2 || diff / 2 >= (int64_t)fp->size)
        return ps_err_set(err, -PS_ECORRUPT,
                          "coroutine frame 0x%" PRIx64 " points outside its bytecode: it "
                          "resumed while read",
                          g->frame);
    *unit = diff / 2;
    return 0;
}

/* Read the code header and the unit after the instruction pointer; resolve the code. */
static int gen_code(struct tasks_ctx *x, const struct gen_view *g, const struct code_info **ci,
                    int64_t *unit, bool *has_next, uint8_t next[2], struct ps_err *err)
{
    uint8_t hdr[CODE_HEADER_MAX];
    struct memsrc_iov iov[2] = {{g->code, hdr, code_header_len(x->lay)}, {g->instr + 2, next, 2}};
    struct code_fp fp;
    int rc;

    if (iov[0].len > sizeof(hdr)) /* a target's own debug offsets can move fields that far */
        return ps_err_set(err, -PS_ECORRUPT, "the %s layout's code header is over %zu bytes",
                          x->lay->name, sizeof(hdr));
    rc = memsrc_readv(x->c->src, iov, 2, err);
    if (rc < 0)
        return rc;
    code_fp_parse(x->lay, hdr, &fp);
    if (fp.type != x->c->syms->code_type || fp.size > (1u << 24))
        return ps_err_set(err, -PS_ECORRUPT,
                          "coroutine frame 0x%" PRIx64 " has no valid code object: it resumed "
                          "while read",
                          g->frame);
    rc = gen_unit(x, g, &fp, unit, err);
    *has_next = rc == 0 && *unit + 1 < (int64_t)fp.size;
    if (rc == 0)
        rc = code_cache_resolve(x->c->codes, x->c, g->code, &fp, ci, err);
    return rc;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);

    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* A TaskGroup's __aexit__ (3.13: also _aexit) waits for the group's children. */
static bool is_taskgroup_exit(const struct code_info *ci)
{
    return ends_with(ci->filename, "/asyncio/taskgroups.py") &&
           (strcmp(ci->qualname, "TaskGroup.__aexit__") == 0 ||
            strcmp(ci->qualname, "TaskGroup._aexit") == 0);
}

/* The object a coroutine awaits: localsplus[stacktop - 1]. */
static int gen_awaited(struct tasks_ctx *x, const struct gen_view *g, uint64_t *obj,
                       struct ps_err *err)
{
    uint64_t slot;

    if (g->stacktop < 1 || g->stacktop > CHAIN_MAX_STACKTOP)
        return ps_err_set(err, -PS_ECORRUPT,
                          "coroutine frame 0x%" PRIx64 " has stack depth %" PRId64
                          ": it resumed while read",
                          g->frame, g->stacktop);
    slot = g->frame + (uint64_t)x->lay->frame_localsplus + 8u * (uint64_t)(g->stacktop - 1);
    return memsrc_read_u64(x->c->src, slot, obj, err);
}

/*
 * One coroutine of the chain: its frame into *f (when suspended), and in *next what it awaits
 * (0 when it awaits nothing or runs). Sets end->executing for a running coroutine.
 */
static int chain_step(struct tasks_ctx *x, uint64_t obj, struct snap_frame *f, bool *have_frame,
                      uint64_t *next, struct tasks_chain_end *end, struct ps_err *err)
{
    const struct code_info *ci = NULL;
    struct gen_view g = {0};
    uint8_t nextop[2] = {0, 0};
    bool has_next = false;
    int64_t unit = 0;
    int rc;

    *have_frame = false;
    *next = 0;
    rc = gen_read(x, obj, &g, err);
    if (rc < 0)
        return rc;
    if (g.state == x->lay->gen_state_executing) {
        end->executing = true;
        return 0;
    }
    if (g.state >= x->lay->gen_state_executing || g.state <= -x->lay->gen_state_created_neg)
        return 0; /* completed, cleared or not started: no frame to show */
    rc = gen_code(x, &g, &ci, &unit, &has_next, nextop, err);
    if (rc < 0 || !ci)
        return rc < 0 ? rc : -PS_ECORRUPT;
    rc = frame_fill(x, ci, unit, f, err);
    if (rc < 0)
        return rc;
    *have_frame = true;
    if (is_taskgroup_exit(ci) && end->taskgroup == 0) /* self: the first local */
        rc = memsrc_read_u64(x->c->src, g.frame + (uint64_t)x->lay->frame_localsplus,
                             &end->taskgroup, err);
    if (rc == 0 && gen_awaiting(x->lay, g.state, nextop, has_next))
        rc = gen_awaited(x, &g, next, err);
    return rc;
}

/* Past the coroutines: a FutureIter leads to its future; an asend to its async generator. */
static int chain_unwrap(struct tasks_ctx *x, uint64_t *obj, const struct tasks_type **t,
                        struct ps_err *err)
{
    uint64_t inner;
    int rc;

    if ((*t)->kind == TK_FUTUREITER) {
        rc = memsrc_read_u64(x->c->src, *obj + (uint64_t)x->lay->futureiter_future, &inner, err);
        if (rc == 0 && inner == 0)
            return 0; /* an exhausted iterator: nothing further */
    } else if ((*t)->kind == TK_ASEND) {
        /* PyAsyncGenASend {PyObject_HEAD; PyAsyncGenObject *ags_gen; ...} (genobject.c;
         * @16 in the DWARF of every supported build): the first field after the object header, whose size is
         * where PyVarObject puts ob_size. */
        rc = memsrc_read_u64(x->c->src, *obj + (uint64_t)x->lay->varobject_size, &inner, err);
    } else {
        return 0;
    }
    if (rc == 0)
        rc = tasks_kind_of(x, inner, t, err);
    if (rc == 0)
        *obj = inner;
    return rc;
}

static bool is_coroutine_kind(enum tasks_kind k)
{
    return k == TK_CORO || k == TK_GEN || k == TK_ASYNCGEN;
}

/* Copy the chain's frames (innermost first) into the snapshot. */
static int chain_store(struct tasks_ctx *x, const struct snap_frame *rev, size_t n,
                       struct snap_task *task, struct ps_err *err)
{
    task->frames = snap_alloc(x->s, (n ? n : 1) * sizeof(*task->frames));
    if (!task->frames)
        return ps_err_set(err, -ENOMEM, "cannot allocate a coroutine chain: out of memory");
    for (size_t i = 0; i < n; i++)
        task->frames[i] = rev[n - 1 - i];
    task->nframes = n;
    return 0;
}

int tasks_chain(struct tasks_ctx *x, uint64_t coro, struct snap_task *task,
                struct tasks_chain_end *end, struct ps_err *err)
{
    struct snap_frame frames[TASKS_MAX_CHAIN]; /* outermost first while walking */
    struct ps_err store_err = {0};
    const struct tasks_type *t = NULL;
    uint64_t obj = coro;
    size_t n = 0;
    int rc;

    memset(end, 0, sizeof(*end));
    rc = tasks_kind_of(x, obj, &t, err);
    while (rc == 0 && is_coroutine_kind(t->kind)) {
        uint64_t next = 0;
        bool have = false;

        if (n == TASKS_MAX_CHAIN) {
            task->chain_truncated = true;
            break;
        }
        rc = chain_step(x, obj, &frames[n], &have, &next, end, err);
        n += have ? 1 : 0;
        if (rc < 0 || next == 0)
            break;
        obj = next;
        rc = tasks_kind_of(x, obj, &t, err);
        if (rc == 0)
            rc = chain_unwrap(x, &obj, &t, err);
        if (rc == 0 && !is_coroutine_kind(t->kind)) {
            end->obj = obj;
            end->type = t->addr;
            end->kind = t->kind;
        }
    }
    /* Keep what was read before a failure: the caller shows it with the error. */
    if (rc != -ENOMEM && chain_store(x, frames, n, task, &store_err) < 0)
        rc = ps_err_replace(err, -ENOMEM, "%s", store_err.msg);
    return rc;
}
