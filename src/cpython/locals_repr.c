/* SPDX-License-Identifier: MIT */
/*
 * Bounded reprs of target objects (locals.h: locals_repr). Used by locals.c for `--locals`.
 *
 * A repr is written into a caller buffer by a small writer that never overflows: once the text
 * would pass the cap it stops and the result ends in "...". Target reads go through rw_read,
 * which charges a per-value budget (LOCALS_MAX_READS); when it runs out the rest prints as
 * "...". Containers print at most LOCALS_MAX_ITEMS items and LOCALS_MAX_DEPTH levels; a
 * container already being printed prints as Python does for recursion ("[...]"). Every length
 * and count read from the target is bounded before use; a failing read prints "<unreadable>"
 * where the value would be. Object layouts come from the layout table (CPYTHON.md section 3.3;
 * float ob_fval, list ob_item, set table from the generated tables).
 */
#include "pyscope/locals.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Text of a str or bytes decoded before escaping (a repr shows far less). */
#define REPR_TEXT_MAX 512
/* Bytes of a bytes object read. */
#define REPR_BYTES_MAX 128
/* A length beyond this is garbage, not an object (2^40 items would be terabytes). */
#define REPR_MAX_LEN ((uint64_t)1 << 40)
/* Set slots scanned for the first items (a sparse huge set shows "..." instead). */
#define REPR_SET_SCAN  1024
#define REPR_SET_CHUNK 64
/* Room kept at the end of the buffer for "..." and the NUL. */
#define REPR_TAIL 4
/* PyLong digits are 30 bits (PYLONG_BITS_IN_DIGIT, the default on 64-bit builds). */

struct rw {
    const struct pyctx *c;
    char *buf;
    size_t cap;
    size_t len;
    bool cut;                            /* output or read budget exhausted: the rest is "..." */
    int reads;                           /* budget used */
    uint64_t open[LOCALS_MAX_DEPTH + 1]; /* containers being printed (recursion check) */
    int depth;
};

enum repr_kind {
    K_NONE,
    K_BOOL,
    K_INT,
    K_FLOAT,
    K_STR,
    K_BYTES,
    K_TUPLE,
    K_LIST,
    K_DICT,
    K_SET,
    K_OTHER
};

/* ---- the writer ------------------------------------------------------------------------ */

/* Append n bytes, cutting at a UTF-8 boundary when the cap is reached. */
static void rw_putn(struct rw *w, const char *s, size_t n)
{
    size_t room;

    if (w->cut)
        return;
    room = w->cap > w->len + REPR_TAIL ? w->cap - w->len - REPR_TAIL : 0;
    if (n > room) {
        n = room;
        while (n > 0 && ((unsigned char)s[n] & 0xc0u) == 0x80u)
            n--;
        w->cut = true;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    w->buf[w->len] = '\0';
}

static void rw_puts(struct rw *w, const char *s)
{
    rw_putn(w, s, strlen(s));
}

static void rw_printf(struct rw *w, const char *fmt, ...) PS_PRINTF(2, 3);
static void rw_printf(struct rw *w, const char *fmt, ...)
{
    char tmp[96];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap); // NOLINT(clang-analyzer-valist.*): clang 14 FP
    va_end(ap);
    if (n > 0)
        rw_putn(w, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* A budgeted read: -PS_ELIMIT (and the writer cut) when the value has cost enough. */
static int rw_read(struct rw *w, uint64_t addr, void *dst, size_t n)
{
    struct ps_err ignored = {0};

    if (w->reads >= LOCALS_MAX_READS) {
        w->cut = true;
        return -PS_ELIMIT;
    }
    w->reads++;
    return memsrc_read(w->c->src, addr, dst, n, &ignored);
}

static int rw_u64(struct rw *w, uint64_t addr, uint64_t *out)
{
    return rw_read(w, addr, out, sizeof(*out));
}

static void rw_unreadable(struct rw *w)
{
    rw_puts(w, "<unreadable>");
}

/* ---- scalars --------------------------------------------------------------------------- */

/* Python's quote choice: ' unless the text has ' and no ". */
static char repr_quote(const char *s, size_t n)
{
    bool single = memchr(s, '\'', n) != NULL, dbl = memchr(s, '"', n) != NULL;

    return single && !dbl ? '"' : '\'';
}

/* One byte of str (UTF-8) or bytes text, escaped as repr does. */
static void repr_escape(struct rw *w, const unsigned char *s, size_t i, char quote, bool bytes)
{
    unsigned char ch = s[i];

    if (ch == (unsigned char)quote || ch == '\\')
        rw_printf(w, "\\%c", ch);
    else if (ch == '\n')
        rw_puts(w, "\\n");
    else if (ch == '\r')
        rw_puts(w, "\\r");
    else if (ch == '\t')
        rw_puts(w, "\\t");
    else if (ch < 0x20 || ch == 0x7f || (bytes && ch >= 0x80))
        rw_printf(w, "\\x%02x", ch);
    else
        rw_putn(w, (const char *)&s[i], 1);
}

/* Length of the UTF-8 sequence starting with lead byte ch (1 for ASCII or a stray byte). */
static size_t utf8_len(unsigned char ch)
{
    return ch >= 0xf0 ? 4 : ch >= 0xe0 ? 3 : ch >= 0xc0 ? 2 : 1;
}

/* UTF-8 C2 80..C2 A0 and C2 AD (C1 controls, no-break space, soft hyphen) are not printable:
 * Python escapes them as \xNN. Returns the bytes consumed (0: not such a sequence). */
static size_t repr_c1(struct rw *w, const unsigned char *s, size_t i, size_t n)
{
    if (i + 1 < n && s[i] == 0xc2 && (s[i + 1] <= 0xa0 || s[i + 1] == 0xad)) {
        rw_printf(w, "\\x%02x", s[i + 1]);
        return 2;
    }
    return 0;
}

static void repr_text(struct rw *w, const char *text, size_t n, bool bytes, bool more, uint64_t len)
{
    const unsigned char *s = (const unsigned char *)text;
    char quote = repr_quote(text, n);

    rw_puts(w, bytes ? "b" : "");
    rw_putn(w, &quote, 1);
    for (size_t i = 0; i < n && !w->cut;) {
        size_t used = bytes ? 0 : repr_c1(w, s, i, n);

        if (!used && !bytes && s[i] >= 0x80) {
            /* whole sequences only, so that a cut never splits a character */
            used = utf8_len(s[i]) <= n - i ? utf8_len(s[i]) : n - i;
            rw_putn(w, text + i, used);
        } else if (!used) {
            repr_escape(w, s, i, quote, bytes);
            used = 1;
        }
        i += used;
    }
    rw_puts(w, more ? "..." : "");
    rw_putn(w, &quote, 1);
    if (more)
        rw_printf(w, " (len %" PRIu64 ")", len);
}

static int repr_str(struct rw *w, uint64_t obj)
{
    char *text = malloc(REPR_TEXT_MAX);
    struct ps_err ignored = {0};
    bool truncated = false;
    uint64_t len = 0;
    int rc = text ? rw_u64(w, obj + (uint64_t)w->c->lay->str_length, &len) : -ENOMEM;

    w->reads += 2; /* pyobj_str reads the header and the data */
    if (rc == 0)
        rc = pyobj_str(w->c, obj, text, REPR_TEXT_MAX, &truncated, &ignored);
    if (rc == 0)
        repr_text(w, text, strlen(text), false, truncated, len);
    free(text);
    return rc;
}

static int repr_bytes(struct rw *w, uint64_t obj)
{
    char data[REPR_BYTES_MAX];
    uint64_t len = 0;
    size_t n;
    int rc = rw_u64(w, obj + (uint64_t)w->c->lay->varobject_size, &len);

    if (rc == 0 && len > REPR_MAX_LEN)
        rc = -PS_ECORRUPT;
    n = rc == 0 && len < sizeof(data) ? (size_t)len : sizeof(data);
    if (rc == 0 && n > 0)
        rc = rw_read(w, obj + (uint64_t)w->c->lay->bytes_sval, data, n);
    if (rc == 0)
        repr_text(w, data, n, true, len > n, len);
    return rc;
}

/* Python's float repr: the shortest round-tripping digits, exponent form outside 1e-4..1e16. */
static void repr_double(struct rw *w, double d)
{
    char digits[40], out[64];
    int exp = 0, p;

    if (isnan(d) || isinf(d)) {
        rw_puts(w, isnan(d) ? "nan" : d < 0 ? "-inf" : "inf");
        return;
    }
    for (p = 1; p <= 17; p++) {
        (void)snprintf(digits, sizeof(digits), "%.*e", p - 1, d);
        if (strtod(digits, NULL) == d)
            break;
    }
    exp = (int)strtol(strchr(digits, 'e') + 1, NULL, 10);
    *strchr(digits, 'e') = '\0';
    if (exp < -4 || exp >= 16) {
        size_t n = strlen(digits);

        while (n > 1 && digits[n - 1] == '0')
            digits[--n] = '\0';
        if (n > 0 && digits[n - 1] == '.')
            digits[--n] = '\0';
        (void)snprintf(out, sizeof(out), "%se%c%02d", digits, exp < 0 ? '-' : '+', abs(exp));
    } else {
        (void)snprintf(out, sizeof(out), "%.*f", p - 1 - exp > 0 ? p - 1 - exp : 0, d);
        if (!strchr(out, '.'))
            (void)strncat(out, ".0", sizeof(out) - strlen(out) - 1);
    }
    rw_puts(w, out);
}

static int repr_float(struct rw *w, uint64_t obj)
{
    double d = 0;
    int rc = rw_read(w, obj + (uint64_t)w->c->lay->float_value, &d, sizeof(d));

    if (rc == 0)
        repr_double(w, d);
    return rc;
}

/* Sign (-1, 0, 1) and digit count of an int (pyobj_long_shape). */
static int long_shape(struct rw *w, uint64_t obj, int *sign, uint64_t *nd)
{
    uint64_t word = 0;
    int rc = rw_u64(w, obj + (uint64_t)w->c->lay->long_size, &word);

    return rc < 0 ? rc : pyobj_long_shape(w->c->lay, word, sign, nd);
}

/* Print base-2^shift digits (little-endian, consumed; shift <= 32, so rem << shift | digit
 * stays under 2^62) in decimal: repeated division by 1e9. */
static void long_decimal(struct rw *w, uint32_t *d, size_t nd, unsigned shift, int sign)
{
    uint32_t *chunks = malloc((nd * 33 / 29 + 2) * sizeof(*chunks)); /* 1e9 holds 29.9 bits */
    size_t nc = 0;

    if (!chunks) {
        rw_unreadable(w);
        return;
    }
    while (nd > 0) {
        uint64_t rem = 0;

        for (size_t i = nd; i > 0; i--) {
            uint64_t cur = rem << shift | d[i - 1];

            d[i - 1] = (uint32_t)(cur / 1000000000u);
            rem = cur % 1000000000u;
        }
        chunks[nc++] = (uint32_t)rem;
        while (nd > 0 && d[nd - 1] == 0)
            nd--;
    }
    rw_printf(w, "%s%" PRIu32, sign < 0 ? "-" : "", nc ? chunks[nc - 1] : 0);
    for (size_t i = nc > 0 ? nc - 1 : 0; i > 0 && !w->cut; i--)
        rw_printf(w, "%09" PRIu32, chunks[i - 1]);
    free(chunks);
}

static int repr_int(struct rw *w, uint64_t obj, bool is_bool)
{
    const struct layout *lay = w->c->lay;
    uint32_t *d = NULL;
    uint8_t *raw = NULL;
    uint64_t nd = 0;
    int sign = 0;
    int rc = long_shape(w, obj, &sign, &nd); /* the layout's digits checked: 2 or 4 bytes */
    unsigned shift = (unsigned)lay->long_shift;

    if (rc == 0 && (sign == 0 || nd == 0)) {
        rw_puts(w, is_bool ? "False" : "0");
        return 0;
    }
    if (rc == 0 && nd > LOCALS_MAX_INT_DIGITS) {
        rw_printf(w, "<int of %" PRIu64 " bits>", nd * shift);
        return 0;
    }
    d = rc == 0 ? malloc(nd * sizeof(*d)) : NULL;
    raw = d ? malloc(nd * (uint64_t)lay->long_digit_size) : NULL;
    rc = rc == 0 && !raw ? -ENOMEM : rc;
    if (rc == 0)
        rc = rw_read(w, obj + (uint64_t)lay->long_digits, raw, nd * (uint64_t)lay->long_digit_size);
    if (rc == 0)
        pyobj_long_digits(lay, raw, (size_t)nd, d);
    for (size_t i = 0; rc == 0 && i < nd; i++)
        rc = (uint64_t)d[i] >> shift ? -PS_ECORRUPT : 0;
    if (rc == 0 && is_bool)
        rw_puts(w, "True");
    else if (rc == 0)
        long_decimal(w, d, (size_t)nd, shift, sign);
    free(raw);
    free(d);
    return rc;
}

/* ---- containers ------------------------------------------------------------------------ */

/* Containers recurse into their items, at most LOCALS_MAX_DEPTH levels deep (repr_container
 * checks before descending), so the recursion below is bounded. */
/* NOLINTBEGIN(misc-no-recursion) */

static int repr_obj(struct rw *w, uint64_t obj);

/* Print a list of item addresses; "(x,)" for a 1-tuple. */
static void repr_items(struct rw *w, const uint64_t *items, size_t shown, uint64_t len, bool tuple)
{
    for (size_t i = 0; i < shown && !w->cut; i++) {
        rw_puts(w, i ? ", " : "");
        if (repr_obj(w, items[i]) < 0 && !w->cut)
            rw_unreadable(w);
    }
    if (tuple && len == 1)
        rw_puts(w, ",");
    if (len > shown)
        rw_puts(w, shown ? ", ..." : "...");
}

/* Length of a sequence, bounded; and how many items to show. */
static int seq_len(struct rw *w, uint64_t obj, uint64_t *len, size_t *shown)
{
    int rc = rw_u64(w, obj + (uint64_t)w->c->lay->varobject_size, len);

    if (rc == 0 && *len > REPR_MAX_LEN)
        rc = -PS_ECORRUPT;
    *shown = rc == 0 && *len < LOCALS_MAX_ITEMS ? (size_t)*len : LOCALS_MAX_ITEMS;
    return rc;
}

static int repr_seq(struct rw *w, uint64_t obj, bool tuple)
{
    uint64_t items[LOCALS_MAX_ITEMS], len = 0, base = obj + (uint64_t)w->c->lay->tuple_items;
    size_t shown = 0;
    int rc = seq_len(w, obj, &len, &shown);

    if (rc == 0 && !tuple)
        rc = rw_u64(w, obj + (uint64_t)w->c->lay->list_items, &base);
    if (rc == 0 && shown > 0)
        rc = base ? rw_read(w, base, items, shown * sizeof(items[0])) : -PS_ECORRUPT;
    if (rc < 0)
        return rc;
    rw_puts(w, tuple ? "(" : "[");
    repr_items(w, items, shown, len, tuple);
    rw_puts(w, tuple ? ")" : "]");
    if (len > shown)
        rw_printf(w, " (len %" PRIu64 ")", len);
    return 0;
}

struct dict_pairs {
    uint64_t k[LOCALS_MAX_ITEMS];
    uint64_t v[LOCALS_MAX_ITEMS];
    size_t n;
};

static int dict_collect(uint64_t key, uint64_t value, void *arg)
{
    struct dict_pairs *p = arg;

    if (p->n >= LOCALS_MAX_ITEMS)
        return 1;
    p->k[p->n] = key;
    p->v[p->n++] = value;
    return 0;
}

static int repr_dict(struct rw *w, uint64_t obj)
{
    struct dict_pairs p = {.n = 0};
    struct ps_err ignored = {0};
    uint64_t len = 0;
    int rc = LAYOUT_HAS(w->c->lay, dict_used)
                 ? rw_u64(w, obj + (uint64_t)w->c->lay->dict_used, &len)
                 : -PS_ECORRUPT;

    w->reads += 3; /* pyobj_dict_iter: the dict, its keys, the entries */
    if (rc == 0 && len > REPR_MAX_LEN)
        rc = -PS_ECORRUPT;
    if (rc == 0 && len > 0)
        rc = pyobj_dict_iter(w->c, obj, LOCALS_MAX_ITEMS, dict_collect, &p, &ignored);
    if (rc < 0)
        return rc;
    rw_puts(w, "{");
    for (size_t i = 0; i < p.n && !w->cut; i++) {
        rw_puts(w, i ? ", " : "");
        if (repr_obj(w, p.k[i]) < 0 && !w->cut)
            rw_unreadable(w);
        rw_puts(w, ": ");
        if (repr_obj(w, p.v[i]) < 0 && !w->cut)
            rw_unreadable(w);
    }
    rw_puts(w, len > p.n ? (p.n ? ", ...}" : "...}") : "}");
    if (len > p.n)
        rw_printf(w, " (len %" PRIu64 ")", len);
    return 0;
}

/* Live keys of a set's table in slot order (= iteration order); dummies have hash -1. */
static int set_scan(struct rw *w, uint64_t table, uint64_t slots, uint64_t *keys, size_t *n)
{
    uint64_t chunk[REPR_SET_CHUNK * 2];
    int rc = 0;

    *n = 0;
    for (uint64_t at = 0; rc == 0 && at < slots && *n < LOCALS_MAX_ITEMS; at += REPR_SET_CHUNK) {
        size_t k = slots - at < REPR_SET_CHUNK ? (size_t)(slots - at) : REPR_SET_CHUNK;

        rc = rw_read(w, table + at * 16, chunk, k * 16);
        for (size_t i = 0; rc == 0 && i < k && *n < LOCALS_MAX_ITEMS; i++)
            if (chunk[2 * i] != 0 && chunk[2 * i + 1] != UINT64_MAX)
                keys[(*n)++] = chunk[2 * i];
    }
    return rc;
}

static int repr_set(struct rw *w, uint64_t obj)
{
    const struct layout *l = w->c->lay;
    uint64_t used = 0, mask = 0, table = 0, keys[LOCALS_MAX_ITEMS];
    size_t n = 0;
    int rc = rw_u64(w, obj + (uint64_t)l->set_used, &used);

    if (rc == 0)
        rc = rw_u64(w, obj + (uint64_t)l->set_mask, &mask);
    if (rc == 0)
        rc = rw_u64(w, obj + (uint64_t)l->set_table, &table);
    if (rc == 0 && (used > REPR_MAX_LEN || used > mask + 1 || !table))
        rc = -PS_ECORRUPT;
    if (rc == 0 && used > 0)
        rc = set_scan(w, table, mask + 1 < REPR_SET_SCAN ? mask + 1 : REPR_SET_SCAN, keys, &n);
    if (rc < 0)
        return rc;
    if (used == 0) {
        rw_puts(w, "set()");
        return 0;
    }
    rw_puts(w, "{");
    repr_items(w, keys, n, used, false);
    rw_puts(w, "}");
    if (used > n)
        rw_printf(w, " (len %" PRIu64 ")", used);
    return 0;
}

/* ---- dispatch -------------------------------------------------------------------------- */

static enum repr_kind repr_kind_of(const struct locate_syms *s, uint64_t obj, uint64_t type)
{
    const struct {
        uint64_t type;
        enum repr_kind kind;
    } map[] = {
        {s->bool_type, K_BOOL},   {s->long_type, K_INT},    {s->float_type, K_FLOAT},
        {s->unicode_type, K_STR}, {s->bytes_type, K_BYTES}, {s->tuple_type, K_TUPLE},
        {s->list_type, K_LIST},   {s->dict_type, K_DICT},   {s->set_type, K_SET},
    };

    if (s->none && obj == s->none)
        return K_NONE;
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (map[i].type && map[i].type == type)
            return map[i].kind;
    return K_OTHER;
}

static const char *const kind_names[] = {"NoneType", "bool", "int",  "float", "str", "bytes",
                                         "tuple",    "list", "dict", "set",   NULL};

static int repr_other(struct rw *w, uint64_t obj, uint64_t type)
{
    char name[128];
    struct ps_err ignored = {0};

    w->reads += 3; /* type flags, name pointer, name text */
    if (pyobj_type_name(w->c, type, name, sizeof(name), &ignored) < 0)
        (void)snprintf(name, sizeof(name), "object");
    rw_printf(w, "<%.80s at 0x%" PRIx64 ">", name, obj);
    return 0;
}

/* Containers: depth cap and recursion ("[...]" as Python prints a list inside itself). */
static int repr_container(struct rw *w, uint64_t obj, enum repr_kind k)
{
    const char *elided = k == K_TUPLE ? "(...)" : k == K_LIST ? "[...]" : "{...}";
    bool open = false;
    int rc;

    for (int i = 0; i < w->depth; i++)
        open = open || w->open[i] == obj;
    if (open || w->depth >= LOCALS_MAX_DEPTH) {
        rw_puts(w, elided);
        return 0;
    }
    w->open[w->depth++] = obj;
    rc = k == K_DICT  ? repr_dict(w, obj)
         : k == K_SET ? repr_set(w, obj)
                      : repr_seq(w, obj, k == K_TUPLE);
    w->depth--;
    return rc;
}

static int repr_dispatch(struct rw *w, uint64_t obj, uint64_t type, enum repr_kind k)
{
    switch (k) {
    case K_NONE: rw_puts(w, "None"); return 0;
    case K_BOOL: return repr_int(w, obj, true);
    case K_INT: return repr_int(w, obj, false);
    case K_FLOAT: return repr_float(w, obj);
    case K_STR: return repr_str(w, obj);
    case K_BYTES: return repr_bytes(w, obj);
    case K_TUPLE:
    case K_LIST:
    case K_DICT:
    case K_SET: return repr_container(w, obj, k);
    case K_OTHER:
    default: return repr_other(w, obj, type);
    }
}

static int repr_obj(struct rw *w, uint64_t obj)
{
    uint64_t type = 0;
    int rc = obj ? rw_u64(w, obj + (uint64_t)w->c->lay->object_type, &type) : -PS_ECORRUPT;

    if (rc == 0 && !type)
        rc = -PS_ECORRUPT;
    if (rc < 0)
        return rc;
    return repr_dispatch(w, obj, type, repr_kind_of(w->c->syms, obj, type));
}

/* NOLINTEND(misc-no-recursion) */

/* The value's type name for the var ("" when the type cannot be read). */
static void repr_type_name(const struct pyctx *c, uint64_t obj, char *type, size_t tcap)
{
    struct ps_err ignored = {0};
    uint64_t t = 0;
    enum repr_kind k;

    type[0] = '\0';
    if (pyobj_type(c, obj, &t, &ignored) < 0 || !t)
        return;
    k = repr_kind_of(c->syms, obj, t);
    if (kind_names[k])
        (void)snprintf(type, tcap, "%s", kind_names[k]);
    else if (pyobj_type_name(c, t, type, tcap, &ignored) < 0)
        type[0] = '\0';
}

int locals_repr(const struct pyctx *c, uint64_t obj, char *buf, size_t cap, char *type, size_t tcap,
                struct ps_err *err)
{
    struct rw w = {.c = c, .buf = buf, .cap = cap};
    int rc;

    if (!buf || cap < 16 || !type || tcap == 0)
        return ps_err_set(err, -EINVAL, "locals_repr needs buffers of at least 16 bytes");
    buf[0] = '\0';
    rc = repr_obj(&w, obj);
    if (rc < 0 && !w.cut) {
        (void)snprintf(buf, cap, "<unreadable>");
        type[0] = '\0';
        return ps_err_set(err, rc, "the object at 0x%" PRIx64 " could not be read", obj);
    }
    if (w.cut)
        (void)snprintf(buf + w.len, cap - w.len, "...");
    repr_type_name(c, obj, type, tcap);
    return 0;
}
