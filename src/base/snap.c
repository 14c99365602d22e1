/* SPDX-License-Identifier: MIT */
/*
 * Snapshot storage (see snap.h). Data flow: the walker and resolver fill a `struct snap`,
 * copying every string and array into the snapshot's arena; the writers and the TUI only read
 * it; snap_free releases it in one sweep.
 *
 * The arena is a list of large zeroed blocks with a bump pointer: one malloc per
 * SNAP_ARENA_BLOCK bytes instead of one per string, no per-object free, nothing to leak. A
 * request larger than SNAP_ARENA_BIG gets a block of its own, linked behind the current block
 * so the current block's free tail is not wasted. The arena as a whole is capped at
 * SNAP_ARENA_MAX bytes: past it, allocations fail (NULL) as if memory had run out, so a
 * corrupt or hostile target cannot make one snapshot grow without bound.
 *
 * Strings: snap_strndup copies up to the first NUL (like strndup) and replaces every ill-formed
 * UTF-8 sequence with U+FFFD, one replacement per maximal subpart (Unicode 15 §3.9, the same
 * policy as CPython's bytes.decode("utf-8", "replace")), so writers may trust that every
 * snapshot string is valid UTF-8. Pure code: no I/O, no globals; a snapshot is used by one
 * thread at a time.
 */
#include "pyscope/snap.h"

#include <errno.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

/* Block size: holds the strings of roughly a thousand frames; small enough to waste little. */
#define SNAP_ARENA_BLOCK ((size_t)64 * 1024)
/* Requests above a quarter block get their own block (at most a quarter block is wasted). */
#define SNAP_ARENA_BIG (SNAP_ARENA_BLOCK / 4)
/* Cap on one snapshot: about four million frames, far beyond any real process. */
#define SNAP_ARENA_MAX ((size_t)256 << 20)

/* Bytes of U+FFFD in UTF-8. */
#define SNAP_REPLACEMENT_LEN 3

struct snap_block {
    struct snap_block *next;
    size_t size; /* usable bytes in data */
    size_t used;
    alignas(max_align_t) unsigned char data[];
};

struct snap_arena {
    struct snap_block *head; /* the block that bump allocations come from */
    size_t total;            /* usable bytes of all blocks, bounded by SNAP_ARENA_MAX */
};

int snap_new(struct snap **out, struct ps_err *err)
{
    struct snap *s = calloc(1, sizeof(*s));

    if (!s)
        goto fail;
    s->arena = calloc(1, sizeof(*s->arena));
    if (!s->arena)
        goto free_snap;
    *out = s;
    return 0;

free_snap:
    free(s);
fail:
    return ps_err_set(err, -ENOMEM,
                      "cannot allocate a snapshot: out of memory; free memory and retry");
}

void snap_free(struct snap *s)
{
    struct snap_block *b;

    if (!s)
        return;
    if (s->arena) {
        b = s->arena->head;
        while (b) {
            struct snap_block *next = b->next;
            free(b);
            b = next;
        }
        free(s->arena);
    }
    free(s);
}

static struct snap_block *arena_block_new(struct snap_arena *a, size_t size)
{
    struct snap_block *b;

    if (size > SNAP_ARENA_MAX - a->total)
        return NULL;
    b = calloc(1, sizeof(*b) + size);
    if (!b)
        return NULL;
    b->size = size;
    a->total += size;
    return b;
}

/* A zeroed, max_align_t-aligned region of size bytes, or NULL (ENOMEM or over the cap). */
static void *arena_alloc(struct snap_arena *a, size_t size)
{
    struct snap_block *b = a->head;
    size_t need;

    if (size > SNAP_ARENA_MAX)
        return NULL;
    need = (size + alignof(max_align_t) - 1) & ~(alignof(max_align_t) - 1);
    if (need == 0)
        need = alignof(max_align_t);
    if (b && b->size - b->used >= need)
        goto bump;
    b = arena_block_new(a, need > SNAP_ARENA_BIG ? need : SNAP_ARENA_BLOCK);
    if (!b)
        return NULL;
    if (need > SNAP_ARENA_BIG && a->head) {
        b->next = a->head->next;
        a->head->next = b;
    } else {
        b->next = a->head;
        a->head = b;
    }
bump:
    b->used += need;
    return b->data + b->used - need;
}

void *snap_alloc(struct snap *s, size_t size)
{
    if (!s || !s->arena)
        return NULL;
    return arena_alloc(s->arena, size);
}

/*
 * Length of the well-formed UTF-8 sequence at p (at most n bytes), or, when it is ill-formed,
 * minus the length of its maximal subpart: the bytes that one U+FFFD replaces. Byte ranges are
 * Unicode 15 table 3-7, which excludes overlongs, surrogates and values past U+10FFFF.
 */
static int utf8_sequence(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    unsigned char lo = 0x80;
    unsigned char hi = 0xBF;
    size_t need;

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        need = 1;
    else if (c >= 0xE0 && c <= 0xEF)
        need = 2;
    else if (c >= 0xF0 && c <= 0xF4)
        need = 3;
    else
        return -1;
    lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : lo;
    hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : hi;
    for (size_t i = 1; i <= need; i++) {
        if (i >= n || p[i] < lo || p[i] > hi)
            return -(int)i;
        lo = 0x80;
        hi = 0xBF;
    }
    return (int)need + 1;
}

/*
 * Copy n bytes of src as valid UTF-8 into dst (when not NULL) and return the output length.
 * Called once with dst NULL to size the copy, once to fill it.
 */
static size_t utf8_sanitize(const unsigned char *src, size_t n, char *dst)
{
    static const char replacement[SNAP_REPLACEMENT_LEN] = {'\xEF', '\xBF', '\xBD'};
    size_t in = 0;
    size_t out = 0;

    while (in < n) {
        int len = utf8_sequence(src + in, n - in);
        if (len > 0) {
            if (dst)
                memcpy(dst + out, src + in, (size_t)len);
            in += (size_t)len;
            out += (size_t)len;
        } else {
            if (dst)
                memcpy(dst + out, replacement, SNAP_REPLACEMENT_LEN);
            in += (size_t)-len;
            out += SNAP_REPLACEMENT_LEN;
        }
    }
    return out;
}

const char *snap_strndup(struct snap *s, const char *str, size_t n)
{
    const unsigned char *src = (const unsigned char *)str;
    size_t len;
    size_t outlen;
    char *dst;

    if (!s || !str)
        return NULL;
    len = strnlen(str, n);
    /* Each input byte yields at most 3 output bytes; refuse before scanning what cannot fit. */
    if (len > SNAP_ARENA_MAX / SNAP_REPLACEMENT_LEN)
        return NULL;
    outlen = utf8_sanitize(src, len, NULL);
    dst = snap_alloc(s, outlen + 1);
    if (!dst)
        return NULL;
    (void)utf8_sanitize(src, len, dst);
    dst[outlen] = '\0';
    return dst;
}

const char *snap_strdup(struct snap *s, const char *str)
{
    if (!str)
        return NULL;
    return snap_strndup(s, str, strlen(str));
}

const char *snap_thread_os_name(const struct snap *s, const struct snap_thread *t)
{
    const char *inherited = NULL;

    if (!t->os_name)
        return NULL;
    for (size_t i = 0; i < s->nthreads; i++)
        if (s->threads[i].native_id == s->pid)
            inherited = s->threads[i].os_name;
    if (inherited && strcmp(inherited, t->os_name) == 0)
        return NULL;
    if (t->name && strncmp(t->name, t->os_name, strlen(t->os_name)) == 0)
        return NULL;
    return t->os_name;
}
