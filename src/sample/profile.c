/* SPDX-License-Identifier: MIT */
/*
 * The profile aggregate (see profile.h): interned strings, a frame table and a stack trie.
 *
 * Storage: the entry arrays (string text, frames, functions, nodes, threads) are allocated once
 * at their caps plus a small reserve for overflow frames; Linux commits pages only when they are
 * first written, and entries are appended in order, so resident memory follows what is used.
 * The hash tables (open addressing, 64-bit key + id per slot) start small and double at half
 * load, bounded by the caps. profile_reset empties them in place: memory stays flat.
 *
 * Invariants: a node's parent id is smaller than its own; a thread's root and (on first need)
 * its "[profile full]" node may use a reserve of two nodes per thread, so overflow never fails.
 *
 * Never: grows past a cap, or fails a sample because a cap was reached (overflow frames count it).
 */
#include "pyscope/profile.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define RESERVE_FRAMES  4
#define RESERVE_STR     256
#define NODES_ALLOC     (PROFILE_MAX_NODES + 2 * PROFILE_MAX_THREADS)
#define HTAB_MIN        1024
#define FULL_STRINGS    "[strings full]"
#define FULL_FRAMES     "[frames full]"
#define FULL_NODES      "[profile full]"
#define FLAG_FIRST_FN   1u /* no ancestor has the same function */
#define FLAG_FIRST_LINE 2u /* no ancestor has the same frame */

struct hslot {
    uint64_t key;
    uint32_t id; /* id + 1; 0 = empty */
};

struct htab {
    struct hslot *s;
    size_t mask; /* size - 1 (size is a power of two), 0 when unallocated */
    size_t n;
};

struct function {
    uint32_t name, file; /* string ids */
    uint32_t frame;      /* first frame seen of the function */
};

struct profile {
    char *text; /* string arena */
    size_t text_len;
    uint32_t *str_off; /* string id -> arena offset */
    size_t nstr;
    struct profile_frame *frames;
    uint32_t *frame_file; /* frame -> file string id (hash verification) */
    uint32_t *frame_name;
    size_t nframes;
    struct function *fns;
    size_t nfns;
    struct profile_node *nodes;
    uint8_t *flags;
    size_t nnodes;
    struct profile_thread *threads;
    uint32_t *overflow; /* thread -> its "[profile full]" node */
    size_t nthreads;
    struct htab h_str, h_frame, h_fn, h_node, h_thread;
    uint64_t samples, dropped, generation;
    uint32_t full_frame, full_nodes_frame; /* overflow frame ids, PROFILE_NONE until used */
};

/* ---- hashing ----------------------------------------------------------------------------- */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;

    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

static int htab_grow(struct htab *t)
{
    size_t size = t->mask ? (t->mask + 1) * 2 : HTAB_MIN;
    struct hslot *s = calloc(size, sizeof(*s));

    if (!s)
        return -ENOMEM;
    for (size_t i = 0; t->mask && i <= t->mask; i++) {
        size_t j = mix64(t->s[i].key) & (size - 1);

        if (!t->s[i].id)
            continue;
        while (s[j].id)
            j = (j + 1) & (size - 1);
        s[j] = t->s[i];
    }
    free(t->s);
    t->s = s;
    t->mask = size - 1;
    return 0;
}

/* First slot index for key; iterate with htab_next until the slot is empty. */
static size_t htab_first(const struct htab *t, uint64_t key)
{
    return mix64(key) & t->mask;
}

static size_t htab_next(const struct htab *t, size_t i)
{
    return (i + 1) & t->mask;
}

/* Insert (key, id); the caller checked it is absent. */
static int htab_put(struct htab *t, uint64_t key, uint32_t id)
{
    size_t i;

    if ((t->n + 1) * 2 > t->mask + 1 && htab_grow(t) < 0)
        return -ENOMEM;
    i = htab_first(t, key);
    while (t->s[i].id)
        i = htab_next(t, i);
    t->s[i] = (struct hslot){.key = key, .id = id + 1};
    t->n++;
    return 0;
}

static void htab_clear(struct htab *t)
{
    if (t->mask)
        memset(t->s, 0, (t->mask + 1) * sizeof(*t->s));
    t->n = 0;
}

/* ---- strings, frames, functions ---------------------------------------------------------- */

static uint32_t str_find(const struct profile *p, const char *s, size_t n, uint64_t key)
{
    for (size_t i = htab_first(&p->h_str, key); p->h_str.s[i].id; i = htab_next(&p->h_str, i)) {
        const char *c = p->text + p->str_off[p->h_str.s[i].id - 1];

        if (p->h_str.s[i].key == key && strncmp(c, s, n) == 0 && c[n] == '\0')
            return p->h_str.s[i].id - 1;
    }
    return PROFILE_NONE;
}

/* Append a string (cap `limit` bytes of arena); PROFILE_NONE when full or out of memory. */
static uint32_t str_add(struct profile *p, const char *s, size_t n, uint64_t key, size_t limit)
{
    uint32_t id = (uint32_t)p->nstr;

    if (p->text_len + n + 1 > limit || htab_put(&p->h_str, key, id) < 0)
        return PROFILE_NONE;
    memcpy(p->text + p->text_len, s, n);
    p->text[p->text_len + n] = '\0';
    p->str_off[p->nstr++] = (uint32_t)p->text_len;
    p->text_len += n + 1;
    return id;
}

static uint32_t str_intern(struct profile *p, const char *s)
{
    size_t n = s ? strnlen(s, PROFILE_MAX_STR_LEN) : 0;
    uint64_t key;
    uint32_t id;

    if (!s)
        s = "";
    key = hash_bytes(s, n);
    if (!p->h_str.mask && htab_grow(&p->h_str) < 0)
        return PROFILE_NONE;
    id = str_find(p, s, n, key);
    if (id == PROFILE_NONE)
        id = str_add(p, s, n, key, PROFILE_MAX_STR_BYTES);
    if (id == PROFILE_NONE) {
        key = hash_bytes(FULL_STRINGS, strlen(FULL_STRINGS));
        id = str_find(p, FULL_STRINGS, strlen(FULL_STRINGS), key);
        if (id == PROFILE_NONE)
            id = str_add(p, FULL_STRINGS, strlen(FULL_STRINGS), key,
                         PROFILE_MAX_STR_BYTES + RESERVE_STR);
    }
    return id;
}

static const char *str_get(const struct profile *p, uint32_t id)
{
    return id == PROFILE_NONE ? "" : p->text + p->str_off[id];
}

static uint32_t function_intern(struct profile *p, uint32_t name, uint32_t file, uint32_t frame)
{
    uint64_t key = ((uint64_t)name << 32) | file;
    uint32_t id = (uint32_t)p->nfns;

    for (size_t i = htab_first(&p->h_fn, key); p->h_fn.mask && p->h_fn.s[i].id;
         i = htab_next(&p->h_fn, i))
        if (p->h_fn.s[i].key == key)
            return p->h_fn.s[i].id - 1;
    if (htab_put(&p->h_fn, key, id) < 0)
        return 0;
    p->fns[p->nfns++] = (struct function){.name = name, .file = file, .frame = frame};
    return id;
}

static uint64_t frame_key(uint32_t name, uint32_t file, int line)
{
    return mix64(((uint64_t)name << 32 | file) ^ mix64((uint64_t)(uint32_t)line));
}

static uint32_t frame_find(const struct profile *p, uint32_t name, uint32_t file, int line)
{
    uint64_t key = frame_key(name, file, line);

    for (size_t i = htab_first(&p->h_frame, key); p->h_frame.mask && p->h_frame.s[i].id;
         i = htab_next(&p->h_frame, i)) {
        uint32_t f = p->h_frame.s[i].id - 1;

        if (p->h_frame.s[i].key == key && p->frame_name[f] == name && p->frame_file[f] == file &&
            p->frames[f].line == line)
            return f;
    }
    return PROFILE_NONE;
}

static uint32_t frame_add(struct profile *p, uint32_t name, uint32_t file, int line)
{
    uint32_t id = (uint32_t)p->nframes;

    if (htab_put(&p->h_frame, frame_key(name, file, line), id) < 0)
        return PROFILE_NONE;
    p->frame_name[id] = name;
    p->frame_file[id] = file;
    p->frames[id] = (struct profile_frame){.function = str_get(p, name),
                                           .file = str_get(p, file),
                                           .line = line,
                                           .function_id = function_intern(p, name, file, id)};
    p->nframes++;
    return id;
}

/* An overflow frame ("[frames full]"...) from the reserve, created once per reset. */
static uint32_t overflow_frame(struct profile *p, uint32_t *slot, const char *label)
{
    if (*slot == PROFILE_NONE && p->nframes < PROFILE_MAX_FRAMES + RESERVE_FRAMES)
        *slot = frame_add(p, str_intern(p, label), str_intern(p, ""), -1);
    return *slot == PROFILE_NONE ? 0 : *slot;
}

uint32_t profile_frame_intern(struct profile *p, const char *function, const char *file, int line)
{
    uint32_t name = str_intern(p, function), fl = str_intern(p, file), id;

    id = frame_find(p, name, fl, line);
    if (id != PROFILE_NONE)
        return id;
    if (p->nframes < PROFILE_MAX_FRAMES && name != PROFILE_NONE && fl != PROFILE_NONE)
        id = frame_add(p, name, fl, line);
    if (id == PROFILE_NONE)
        id = overflow_frame(p, &p->full_frame, FULL_FRAMES);
    return id;
}

/* ---- lifetime ---------------------------------------------------------------------------- */

int profile_new(struct profile **out, struct ps_err *err)
{
    struct profile *p = calloc(1, sizeof(*p));

    if (!p)
        return ps_err_set(err, -ENOMEM, "out of memory creating a profile");
    p->text = malloc(PROFILE_MAX_STR_BYTES + RESERVE_STR);
    p->str_off = malloc(sizeof(uint32_t) * (PROFILE_MAX_STR_BYTES / 2 + RESERVE_STR));
    p->frames = malloc(sizeof(*p->frames) * (PROFILE_MAX_FRAMES + RESERVE_FRAMES));
    p->frame_file = malloc(sizeof(uint32_t) * (PROFILE_MAX_FRAMES + RESERVE_FRAMES));
    p->frame_name = malloc(sizeof(uint32_t) * (PROFILE_MAX_FRAMES + RESERVE_FRAMES));
    p->fns = malloc(sizeof(*p->fns) * (PROFILE_MAX_FRAMES + RESERVE_FRAMES));
    p->nodes = malloc(sizeof(*p->nodes) * NODES_ALLOC);
    p->flags = malloc(NODES_ALLOC);
    p->threads = malloc(sizeof(*p->threads) * PROFILE_MAX_THREADS);
    p->overflow = malloc(sizeof(uint32_t) * PROFILE_MAX_THREADS);
    if (!p->text || !p->str_off || !p->frames || !p->frame_file || !p->frame_name || !p->fns ||
        !p->nodes || !p->flags || !p->threads || !p->overflow) {
        profile_free(p);
        return ps_err_set(err, -ENOMEM, "out of memory creating a profile");
    }
    for (size_t i = 0; i < PROFILE_MAX_THREADS; i++)
        p->overflow[i] = PROFILE_NONE;
    profile_reset(p);
    *out = p;
    return 0;
}

void profile_free(struct profile *p)
{
    if (!p)
        return;
    free(p->h_str.s);
    free(p->h_frame.s);
    free(p->h_fn.s);
    free(p->h_node.s);
    free(p->h_thread.s);
    free(p->overflow);
    free(p->threads);
    free(p->flags);
    free(p->nodes);
    free(p->fns);
    free(p->frame_name);
    free(p->frame_file);
    free(p->frames);
    free(p->str_off);
    free(p->text);
    free(p);
}

void profile_reset(struct profile *p)
{
    for (size_t i = 0; i < p->nthreads; i++)
        p->overflow[i] = PROFILE_NONE;
    htab_clear(&p->h_str);
    htab_clear(&p->h_frame);
    htab_clear(&p->h_fn);
    htab_clear(&p->h_node);
    htab_clear(&p->h_thread);
    p->text_len = 0;
    p->nstr = p->nframes = p->nfns = p->nnodes = p->nthreads = 0;
    p->samples = p->dropped = 0;
    p->full_frame = p->full_nodes_frame = PROFILE_NONE;
    p->generation++;
}

uint64_t profile_generation(const struct profile *p)
{
    return p->generation;
}

/* ---- threads and stacks ------------------------------------------------------------------ */

static uint32_t node_new(struct profile *p, uint32_t parent, uint32_t frame, uint32_t thread)
{
    uint32_t id = (uint32_t)p->nnodes++;
    uint8_t flags = FLAG_FIRST_FN | FLAG_FIRST_LINE;

    p->nodes[id] =
        (struct profile_node){.parent = parent,
                              .frame = frame,
                              .thread = thread,
                              .depth = parent == PROFILE_NONE ? 0 : p->nodes[parent].depth + 1};
    /* Recursion flags, computed once per node (not per sample): the top view counts a
     * function's total once per stack. */
    for (uint32_t a = parent; frame != PROFILE_NONE && a != PROFILE_NONE; a = p->nodes[a].parent) {
        uint32_t af = p->nodes[a].frame;

        if (af == PROFILE_NONE)
            break;
        if (af == frame)
            flags &= (uint8_t)~FLAG_FIRST_LINE;
        if (p->frames[af].function_id == p->frames[frame].function_id)
            flags &= (uint8_t)~FLAG_FIRST_FN;
        if (!flags)
            break;
    }
    p->flags[id] = flags;
    return id;
}

int profile_thread(struct profile *p, uint64_t thread_id, pid_t native_id, const char *name,
                   uint32_t *thread, struct ps_err *err)
{
    uint32_t id = (uint32_t)p->nthreads;

    for (size_t i = htab_first(&p->h_thread, thread_id); p->h_thread.mask && p->h_thread.s[i].id;
         i = htab_next(&p->h_thread, i)) {
        struct profile_thread *t = &p->threads[p->h_thread.s[i].id - 1];

        if (p->h_thread.s[i].key != thread_id)
            continue;
        if (name && strcmp(name, t->name) != 0)
            t->name = str_get(p, str_intern(p, name));
        if (native_id)
            t->native_id = native_id;
        *thread = p->h_thread.s[i].id - 1;
        return 0;
    }
    if (p->nthreads >= PROFILE_MAX_THREADS)
        return ps_err_set(err, -PS_ELIMIT,
                          "more than %d threads in one profile; filter with "
                          "--thread",
                          PROFILE_MAX_THREADS);
    if (htab_put(&p->h_thread, thread_id, id) < 0)
        return ps_err_set(err, -ENOMEM, "out of memory adding a thread to the profile");
    p->threads[id] = (struct profile_thread){.thread_id = thread_id,
                                             .native_id = native_id,
                                             .name = str_get(p, str_intern(p, name ? name : "")),
                                             .root = node_new(p, PROFILE_NONE, PROFILE_NONE, id)};
    p->overflow[id] = PROFILE_NONE; /* created from the reserve on first use */
    p->nthreads++;
    *thread = id;
    return 0;
}

/* The child of node for frame, created when absent and allowed; PROFILE_NONE otherwise. */
static uint32_t child_of(struct profile *p, uint32_t node, uint32_t frame, uint32_t thread)
{
    uint64_t key = ((uint64_t)node << 32) | frame;
    uint32_t id;

    for (size_t i = htab_first(&p->h_node, key); p->h_node.mask && p->h_node.s[i].id;
         i = htab_next(&p->h_node, i))
        if (p->h_node.s[i].key == key)
            return p->h_node.s[i].id - 1;
    if (p->nnodes >= PROFILE_MAX_NODES || frame >= p->nframes)
        return PROFILE_NONE;
    id = (uint32_t)p->nnodes;
    if (htab_put(&p->h_node, key, id) < 0)
        return PROFILE_NONE;
    return node_new(p, node, frame, thread);
}

/* The thread's "[profile full]" node (reserve: one per thread, never refused). */
static uint32_t overflow_node(struct profile *p, uint32_t thread)
{
    if (p->overflow[thread] == PROFILE_NONE)
        p->overflow[thread] = node_new(p, p->threads[thread].root,
                                       overflow_frame(p, &p->full_nodes_frame, FULL_NODES), thread);
    return p->overflow[thread];
}

uint32_t profile_add(struct profile *p, uint32_t thread, const uint32_t *frames, size_t n,
                     uint64_t count)
{
    if (thread >= p->nthreads)
        return PROFILE_NONE;
    return profile_add_below(p, p->threads[thread].root, frames, n, count);
}

uint32_t profile_add_below(struct profile *p, uint32_t node, const uint32_t *frames, size_t n,
                           uint64_t count)
{
    uint32_t thread;

    if (node >= p->nnodes)
        return PROFILE_NONE;
    thread = p->nodes[node].thread;
    for (size_t i = 0; i < n; i++) {
        uint32_t next = child_of(p, node, frames[i], thread);

        if (next == PROFILE_NONE) {
            node = overflow_node(p, thread);
            p->dropped += count;
            break;
        }
        node = next;
    }
    profile_add_node(p, node, count);
    return node;
}

void profile_add_node(struct profile *p, uint32_t node, uint64_t count)
{
    if (node >= p->nnodes)
        return;
    p->nodes[node].self += count;
    p->threads[p->nodes[node].thread].samples += count;
    p->samples += count;
}

/* ---- accessors --------------------------------------------------------------------------- */

size_t profile_nframes(const struct profile *p)
{
    return p->nframes;
}

const struct profile_frame *profile_frame_get(const struct profile *p, uint32_t frame)
{
    return frame < p->nframes ? &p->frames[frame] : NULL;
}

size_t profile_nnodes(const struct profile *p)
{
    return p->nnodes;
}

const struct profile_node *profile_node_get(const struct profile *p, uint32_t node)
{
    return node < p->nnodes ? &p->nodes[node] : NULL;
}

size_t profile_nthreads(const struct profile *p)
{
    return p->nthreads;
}

const struct profile_thread *profile_thread_get(const struct profile *p, uint32_t thread)
{
    return thread < p->nthreads ? &p->threads[thread] : NULL;
}

size_t profile_stack(const struct profile *p, uint32_t node, uint32_t *out, size_t cap)
{
    size_t depth;

    if (node >= p->nnodes)
        return 0;
    depth = p->nodes[node].depth;
    for (uint32_t n = node; n != PROFILE_NONE && p->nodes[n].frame != PROFILE_NONE;
         n = p->nodes[n].parent)
        if (p->nodes[n].depth - 1 < cap)
            out[p->nodes[n].depth - 1] = p->nodes[n].frame;
    return depth;
}

void profile_stats_get(const struct profile *p, struct profile_stats *out)
{
    *out = (struct profile_stats){
        .samples = p->samples,
        .dropped_nodes = p->dropped,
        .strings = p->nstr,
        .string_bytes = p->text_len,
        .frames = p->nframes,
        .functions = p->nfns,
        .nodes = p->nnodes,
        .threads = p->nthreads,
        .memory_bytes = p->text_len + p->nstr * 4 + p->nframes * (sizeof(*p->frames) + 8) +
                        p->nfns * sizeof(*p->fns) + p->nnodes * (sizeof(*p->nodes) + 1) +
                        p->nthreads * (sizeof(*p->threads) + 4) +
                        sizeof(struct hslot) * (p->h_str.mask + p->h_frame.mask + p->h_fn.mask +
                                                p->h_node.mask + p->h_thread.mask + 5),
    };
}

void profile_node_totals(const struct profile *p, uint64_t *totals)
{
    for (size_t i = 0; i < p->nnodes; i++)
        totals[i] = p->nodes[i].self;
    for (size_t i = p->nnodes; i-- > 0;)
        if (p->nodes[i].parent != PROFILE_NONE)
            totals[p->nodes[i].parent] += totals[i];
}

/* ---- derived views ----------------------------------------------------------------------- */

int profile_merge_threads(const struct profile *src, struct profile **out, struct ps_err *err)
{
    struct profile *p = NULL;
    uint32_t *fmap = malloc(sizeof(uint32_t) * (src->nframes + 1));
    uint32_t *nmap = calloc(src->nnodes + 1, sizeof(uint32_t));
    uint32_t root = 0;
    int rc = -ENOMEM;

    if (!fmap || !nmap)
        goto out_free;
    rc = profile_new(&p, err);
    if (rc < 0 || !p) {
        rc = -ENOMEM;
        goto out_free;
    }
    rc = profile_thread(p, 0, 0, "all threads", &root, err);
    if (rc < 0)
        goto out_free;
    for (size_t i = 0; i < src->nframes; i++)
        fmap[i] = profile_frame_intern(p, src->frames[i].function, src->frames[i].file,
                                       src->frames[i].line);
    for (size_t i = 0; i < src->nnodes; i++) {
        const struct profile_node *n = &src->nodes[i];
        uint32_t parent = n->parent == PROFILE_NONE ? p->threads[root].root : nmap[n->parent];

        nmap[i] = n->frame == PROFILE_NONE ? parent : child_of(p, parent, fmap[n->frame], root);
        if (nmap[i] == PROFILE_NONE)
            nmap[i] = overflow_node(p, root);
        if (n->self)
            profile_add_node(p, nmap[i], n->self);
    }
    *out = p;
    p = NULL;
    rc = 0;
out_free:
    if (rc == -ENOMEM)
        (void)ps_err_set(err, rc, "out of memory merging the profile's threads");
    profile_free(p);
    free(nmap);
    free(fmap);
    return rc;
}

struct top_acc {
    uint64_t own, total;
};

static int top_cmp_own(const void *a, const void *b)
{
    const struct profile_top_row *x = a, *y = b;

    if (x->own != y->own)
        return x->own < y->own ? 1 : -1;
    if (x->total != y->total)
        return x->total < y->total ? 1 : -1;
    return x->frame < y->frame ? -1 : x->frame > y->frame;
}

static int top_cmp_total(const void *a, const void *b)
{
    const struct profile_top_row *x = a, *y = b;

    if (x->total != y->total)
        return x->total < y->total ? 1 : -1;
    return top_cmp_own(a, b);
}

/* Accumulate own/total per key (function id or frame id) over the nodes in scope. */
static void top_accumulate(const struct profile *p, enum profile_top_by by, uint32_t thread,
                           const uint64_t *totals, struct top_acc *acc, uint64_t *samples)
{
    uint8_t first = by == PROFILE_TOP_FUNCTION ? FLAG_FIRST_FN : FLAG_FIRST_LINE;

    *samples = 0;
    for (size_t i = 0; i < p->nnodes; i++) {
        const struct profile_node *n = &p->nodes[i];
        uint32_t key;

        if (thread != PROFILE_NONE && n->thread != thread)
            continue;
        *samples += n->self;
        if (n->frame == PROFILE_NONE)
            continue;
        key = by == PROFILE_TOP_FUNCTION ? p->frames[n->frame].function_id : n->frame;
        acc[key].own += n->self;
        if (p->flags[i] & first)
            acc[key].total += totals[i];
    }
}

int profile_top(const struct profile *p, enum profile_top_by by, enum profile_top_sort sort,
                uint32_t thread, struct profile_top_row *rows, size_t cap, size_t *n,
                uint64_t *samples, struct ps_err *err)
{
    size_t nkeys = by == PROFILE_TOP_FUNCTION ? p->nfns : p->nframes, nrows = 0;
    uint64_t *totals = malloc(sizeof(uint64_t) * (p->nnodes + 1));
    struct top_acc *acc = calloc(nkeys + 1, sizeof(*acc));
    struct profile_top_row *all = malloc(sizeof(*all) * (nkeys + 1));
    uint64_t in_scope = 0;

    if (!totals || !acc || !all) {
        free(all);
        free(acc);
        free(totals);
        return ps_err_set(err, -ENOMEM, "out of memory computing the top view");
    }
    profile_node_totals(p, totals);
    top_accumulate(p, by, thread, totals, acc, &in_scope);
    for (size_t k = 0; k < nkeys; k++) {
        if (!acc[k].own && !acc[k].total)
            continue;
        all[nrows++] = (struct profile_top_row){
            .frame = by == PROFILE_TOP_FUNCTION ? p->fns[k].frame : (uint32_t)k,
            .line = by == PROFILE_TOP_FUNCTION ? -1 : p->frames[k].line,
            .own = acc[k].own,
            .total = acc[k].total};
    }
    qsort(all, nrows, sizeof(*all), sort == PROFILE_SORT_OWN ? top_cmp_own : top_cmp_total);
    *n = nrows < cap ? nrows : cap;
    memcpy(rows, all, sizeof(*rows) * *n);
    if (samples)
        *samples = in_scope;
    free(all);
    free(acc);
    free(totals);
    return 0;
}
