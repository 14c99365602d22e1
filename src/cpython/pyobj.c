/* SPDX-License-Identifier: MIT */
/*
 * Scalar objects out of target memory: type checks, str -> UTF-8, bytes, int, type names.
 * Dicts, instance attributes and modules are in pyobj_dict.c.
 *
 * Data flow: resolve and snapshot hand us target addresses found in frames and thread states;
 * we read the object header through the memory source (memsrc_read only), validate it against
 * the layout table and the exported type addresses, then copy out a bounded amount of data.
 * Invariants: every object address is checked non-NULL and 8-byte aligned before use; every
 * length is checked against a cap before it sizes a read; every loop is bounded by a cap or by
 * the caller's buffer. Version differences come from struct layout only (str data offsets and
 * state bits, long digits and tag, tp_flags bits). Never
 * allocates except where the header says so; no globals.
 */
#include "pyscope/pyobj.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pyobj_int.h"

/* PyASCIIObject.state's bitfields (kind, compact, ascii) where the layout puts them. */
#define STR_KIND(lay, state)                                                                       \
    (((state) >> (unsigned)(lay)->str_state_kind_shift) &                                          \
     ((1u << (unsigned)(lay)->str_state_kind_bits) - 1u))
#define STR_COMPACT(lay, state) (((state) >> (unsigned)(lay)->str_state_compact_shift) & 1u)
#define STR_ASCII(lay, state)   (((state) >> (unsigned)(lay)->str_state_ascii_shift) & 1u)

/* No process holds a str of 2^40 characters (a TiB at one byte each): a bigger length is
 * garbage, not a long string to cut. */
#define STR_LENGTH_SANE (INT64_C(1) << 40)
/* Characters decoded per read (<= 1 KiB of UCS-4 on the stack). */
#define STR_CHUNK_CHARS 256
/* Digits an int64 needs at 15 bits a digit, the smallest CPython builds with. */
#define LONG_MAX_DIGITS 5
/* Longest tp_name we copy; read in page-bounded pieces so we never cross into an unmapped
 * page past the NUL. */
#define CSTR_PAGE 4096u

uint64_t pyobj_le64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static int check_addr(uint64_t obj, const char *what, struct ps_err *err)
{
    if (obj == 0 || (obj & 7) != 0)
        return ps_err_set(err, -PS_ECORRUPT,
                          "expected a %s object but found address 0x%" PRIx64
                          " (NULL or misaligned): the data is torn or the layout is wrong",
                          what, obj);
    return 0;
}

int pyobj_type(const struct pyctx *c, uint64_t obj, uint64_t *type, struct ps_err *err)
{
    uint64_t t = 0;
    int rc = check_addr(obj, "Python", err);

    if (rc == 0)
        rc = memsrc_read_u64(c->src, obj + (uint64_t)c->lay->object_type, &t, err);
    if (rc == 0 && (t == 0 || (t & 7) != 0))
        rc = ps_err_set(err, -PS_ECORRUPT,
                        "object at 0x%" PRIx64 " has type pointer 0x%" PRIx64
                        ": not an object (torn read or wrong address)",
                        obj, t);
    if (rc == 0)
        *type = t;
    return rc;
}

int pyobj_type_flags(const struct pyctx *c, uint64_t type, uint64_t *flags, struct ps_err *err)
{
    return memsrc_read_u64(c->src, type + (uint64_t)c->lay->type_flags, flags, err);
}

/* Whether type pointer t (read from obj) has `flag` in its tp_flags. */
static int type_has_flag(const struct pyctx *c, uint64_t obj, uint64_t t, uint64_t flag, bool *has,
                         struct ps_err *err)
{
    uint64_t flags = 0;
    int rc = 0;

    if (t == 0 || (t & 7) != 0)
        return ps_err_set(err, -PS_ECORRUPT,
                          "object at 0x%" PRIx64 " has type pointer 0x%" PRIx64
                          ": torn read or wrong address",
                          obj, t);
    rc = pyobj_type_flags(c, t, &flags, err);
    if (rc == 0)
        *has = (flags & flag) != 0;
    return rc;
}

/* Check a type pointer already read from obj: `exact`, or a type with `flag` in tp_flags. */
static int type_matches(const struct pyctx *c, uint64_t obj, uint64_t t, uint64_t exact,
                        uint64_t flag, const char *what, struct ps_err *err)
{
    bool has = false;
    int rc = 0;

    if (exact != 0 && t == exact)
        return 0;
    rc = type_has_flag(c, obj, t, flag, &has, err);
    if (rc == 0 && !has)
        rc = ps_err_set(err, -PS_ECORRUPT,
                        "object at 0x%" PRIx64 " is not a %s (its type is 0x%" PRIx64
                        "): torn read or wrong layout",
                        obj, what, t);
    return rc;
}

int pyobj_check_type(const struct pyctx *c, uint64_t obj, uint64_t exact, uint64_t flag,
                     const char *what, uint64_t *type, struct ps_err *err)
{
    uint64_t t = 0;
    int rc = check_addr(obj, what, err);

    if (rc == 0)
        rc = memsrc_read_u64(c->src, obj + (uint64_t)c->lay->object_type, &t, err);
    if (rc == 0)
        rc = type_matches(c, obj, t, exact, flag, what, err);
    if (rc == 0 && type)
        *type = t;
    return rc;
}

/* ---- str ------------------------------------------------------------------------------- */

/* A str header, validated: where its characters are and how wide. */
struct str_info {
    uint64_t data;
    int64_t length;
    unsigned kind;
    bool ascii; /* compact ASCII: the only form a str equal to ASCII text can take */
};

static int str_data_addr(const struct pyctx *c, uint64_t obj, uint32_t state, uint64_t *data,
                         struct ps_err *err)
{
    const struct layout *lay = c->lay;

    if (STR_COMPACT(lay, state)) {
        *data =
            obj + (uint64_t)(STR_ASCII(lay, state) ? lay->str_ascii_data : lay->str_compact_data);
        return 0;
    }
    /* Non-compact (str subclass instances, 3.11 legacy): PyUnicodeObject.data.any. */
    int rc = memsrc_read_u64(c->src, obj + (uint64_t)lay->str_legacy_data, data, err);
    if (rc == 0 && *data == 0)
        rc = ps_err_set(err, -PS_ECORRUPT,
                        "str at 0x%" PRIx64 " is not compact and has no data pointer (a 3.11 "
                        "string that is not ready, or a torn read)",
                        obj);
    return rc;
}

/* Largest header prefix we copy in one read: ob_type, length and state (40 bytes on 64-bit
 * builds; the layout fields are checked against it). */
#define STR_HDR_MAX 64

/* Validate the state and length words of a str header copied into hdr. */
static int str_parse(const struct pyctx *c, uint64_t obj, const uint8_t *hdr, struct str_info *si,
                     struct ps_err *err)
{
    const struct layout *lay = c->lay;
    int64_t length = (int64_t)pyobj_le64(hdr + lay->str_length);
    uint32_t state = 0;

    memcpy(&state, hdr + lay->str_state, sizeof(state));
    si->kind = STR_KIND(lay, state);
    if (si->kind != 1 && si->kind != 2 && si->kind != 4)
        return ps_err_set(err, -PS_ECORRUPT,
                          "str at 0x%" PRIx64 " has kind %u (state 0x%x), not 1, 2 or 4: torn "
                          "read, wrong layout, or a 3.11 string that is not ready",
                          obj, si->kind, state);
    if (length < 0 || length >= STR_LENGTH_SANE || (STR_ASCII(lay, state) && si->kind != 1))
        return ps_err_set(err, -PS_ECORRUPT,
                          "str at 0x%" PRIx64 " has length %" PRId64 " and state 0x%x, which "
                          "no real str has: torn read or wrong layout",
                          obj, length, state);
    si->length = length;
    si->ascii = STR_ASCII(lay, state) && STR_COMPACT(lay, state);
    return str_data_addr(c, obj, state, &si->data, err);
}

/*
 * Read and validate a str header: the type first (so a smaller object of another type is
 * never over-read), then the header up to the state word. A readable object of another type
 * sets *is_str = false and succeeds (dict keys need not be str); garbage is -PS_ECORRUPT.
 */
static int str_probe(const struct pyctx *c, uint64_t obj, struct str_info *si, bool *is_str,
                     struct ps_err *err)
{
    const struct layout *lay = c->lay;
    uint8_t hdr[STR_HDR_MAX];
    uint64_t t = 0;
    int rc = pyobj_type(c, obj, &t, err);

    if (rc < 0)
        return rc;
    if (lay->str_length + 8 > STR_HDR_MAX || lay->str_state + 4 > STR_HDR_MAX)
        return ps_err_set(err, -PS_EVERSION, "layout %s places the str header past %d bytes",
                          lay->name, STR_HDR_MAX);
    if (c->syms && c->syms->unicode_type != 0 && t == c->syms->unicode_type)
        *is_str = true;
    else
        rc = type_has_flag(c, obj, t, LAYOUT_TPFLAG(c->lay, unicode_subclass), is_str, err);
    if (rc < 0 || !*is_str)
        return rc;
    rc = memsrc_read(c->src, obj, hdr, (size_t)lay->str_state + 4, err);
    if (rc < 0)
        return rc;
    return str_parse(c, obj, hdr, si, err);
}

static int str_header(const struct pyctx *c, uint64_t obj, struct str_info *si, struct ps_err *err)
{
    bool is_str = false;
    int rc = str_probe(c, obj, si, &is_str, err);

    if (rc == 0 && !is_str)
        rc = ps_err_set(err, -PS_ECORRUPT,
                        "object at 0x%" PRIx64 " is not a str: torn read or wrong layout", obj);
    return rc;
}

/* Append code point cp as UTF-8 if it fits in buf[0..cap-1) (leaving room for the NUL). */
static bool utf8_put(char *buf, size_t cap, size_t *pos, uint32_t cp)
{
    uint8_t u[4];
    size_t n = 0;

    if ((cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
        cp = 0xfffd; /* lone surrogate or garbage: U+FFFD, as errors="replace" would */
    if (cp < 0x80) {
        u[n++] = (uint8_t)cp;
    } else if (cp < 0x800) {
        u[n++] = (uint8_t)(0xc0 | cp >> 6);
        u[n++] = (uint8_t)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        u[n++] = (uint8_t)(0xe0 | cp >> 12);
        u[n++] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
        u[n++] = (uint8_t)(0x80 | (cp & 0x3f));
    } else {
        u[n++] = (uint8_t)(0xf0 | cp >> 18);
        u[n++] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
        u[n++] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
        u[n++] = (uint8_t)(0x80 | (cp & 0x3f));
    }
    if (*pos + n >= cap)
        return false;
    memcpy(buf + *pos, u, n);
    *pos += n;
    return true;
}

static uint32_t str_char(const uint8_t *raw, unsigned kind, size_t i)
{
    if (kind == 1)
        return raw[i];
    if (kind == 2)
        return (uint32_t)raw[2 * i] | (uint32_t)raw[2 * i + 1] << 8;
    return (uint32_t)raw[4 * i] | (uint32_t)raw[4 * i + 1] << 8 | (uint32_t)raw[4 * i + 2] << 16 |
           (uint32_t)raw[4 * i + 3] << 24;
}

/*
 * Decode up to `chars` characters into buf in chunks. Every character takes at least one
 * output byte, so chars <= cap - 1 bounds the reads by the caller's buffer. Sets *full when
 * the buffer filled before all characters were written.
 */
static int str_decode(const struct pyctx *c, const struct str_info *si, size_t chars, char *buf,
                      size_t cap, bool *full, size_t *out_len, struct ps_err *err)
{
    uint8_t raw[STR_CHUNK_CHARS * 4];
    size_t pos = 0;
    int rc = 0;

    *full = false;
    for (size_t done = 0; done < chars && !*full && rc == 0;) {
        size_t n = chars - done;
        if (n > STR_CHUNK_CHARS)
            n = STR_CHUNK_CHARS;
        rc = memsrc_read(c->src, si->data + done * si->kind, raw, n * si->kind, err);
        for (size_t i = 0; rc == 0 && i < n && !*full; i++)
            *full = !utf8_put(buf, cap, &pos, str_char(raw, si->kind, i));
        done += n;
    }
    buf[pos] = '\0';
    *out_len = pos;
    return rc;
}

int pyobj_str(const struct pyctx *c, uint64_t obj, char *buf, size_t cap, bool *truncated,
              struct ps_err *err)
{
    struct str_info si = {0};
    size_t chars = 0;
    size_t out_len = 0;
    bool full = false;
    int rc = 0;

    if (!buf || cap == 0)
        return ps_err_set(err, -EINVAL, "pyobj_str needs a buffer of at least one byte");
    rc = str_header(c, obj, &si, err);
    if (rc < 0)
        return rc;
    chars = si.length < PYOBJ_STR_MAX_CHARS ? (size_t)si.length : PYOBJ_STR_MAX_CHARS;
    if (chars > cap - 1)
        chars = cap - 1;
    rc = str_decode(c, &si, chars, buf, cap, &full, &out_len, err);
    if (rc == 0 && truncated)
        *truncated = full || chars < (size_t)si.length;
    return rc;
}

int pyobj_str_equals(const struct pyctx *c, uint64_t obj, const char *key, size_t len, bool *equal,
                     struct ps_err *err)
{
    struct str_info si = {0};
    char text[PYOBJ_KEY_MAX + 2];
    size_t text_len = 0;
    bool is_str = false;
    bool full = false;
    int rc = 0;

    if (len > PYOBJ_KEY_MAX)
        return ps_err_set(err, -PS_ELIMIT, "a key of %zu bytes is longer than the %d-byte cap", len,
                          PYOBJ_KEY_MAX);
    rc = str_probe(c, obj, &si, &is_str, err);
    *equal = false;
    if (rc < 0 || !is_str || si.length > (int64_t)len) /* each char takes >= 1 UTF-8 byte */
        return rc;
    rc = str_decode(c, &si, (size_t)si.length, text, sizeof(text), &full, &text_len, err);
    if (rc == 0)
        *equal = !full && text_len == len && memcmp(text, key, len) == 0;
    return rc;
}

static bool is_ascii(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] >= 0x80)
            return false;
    return true;
}

/* Batch state: per key, what the header read decided. */
enum match_verdict {
    MATCH_NO,
    MATCH_SLOW,
    MATCH_DATA
};

/*
 * Fast classification of an exact PyUnicode_Type header: compact ASCII of the key's length ->
 * compare data; other compact str -> cannot equal ASCII text; non-compact or odd state ->
 * per-key slow path.
 */
static enum match_verdict match_classify(const struct pyctx *c, const uint8_t *hdr, size_t len)
{
    const struct layout *lay = c->lay;
    uint32_t state = 0;

    memcpy(&state, hdr + lay->str_state, sizeof(state));
    if (!STR_COMPACT(lay, state) || STR_KIND(lay, state) == 0)
        return MATCH_SLOW;
    if (STR_ASCII(lay, state) && pyobj_le64(hdr + lay->str_length) == len)
        return MATCH_DATA;
    return MATCH_NO;
}

/*
 * Classify keys[0..n) with two scatter reads: their types, then the headers of those that are
 * exactly PyUnicode_Type. Keys left MATCH_SLOW (a failed read, a subclass, another type) go
 * through pyobj_str_equals, which reports garbage precisely.
 */
static void match_headers(const struct pyctx *c, const uint64_t *keys, size_t n, size_t len,
                          enum match_verdict *v)
{
    uint8_t hdrs[PYOBJ_MATCH_BATCH][STR_HDR_MAX] = {{0}};
    uint64_t types[PYOBJ_MATCH_BATCH];
    struct memsrc_iov iov[PYOBJ_MATCH_BATCH];
    size_t hdr_len = (size_t)c->lay->str_state + 4;
    size_t m = 0;
    struct ps_err ignored = {0};

    for (size_t i = 0; i < n; i++) {
        iov[i] = (struct memsrc_iov){keys[i] + (uint64_t)c->lay->object_type, &types[i], 8};
        v[i] = MATCH_SLOW;
    }
    if (hdr_len > STR_HDR_MAX || memsrc_readv(c->src, iov, n, &ignored) < 0)
        return;
    for (size_t i = 0; i < n; i++)
        if (types[i] == c->syms->unicode_type)
            iov[m++] = (struct memsrc_iov){keys[i], hdrs[i], hdr_len};
    if (m == 0 || memsrc_readv(c->src, iov, m, &ignored) < 0)
        return;
    for (size_t i = 0; i < n; i++)
        if (types[i] == c->syms->unicode_type)
            v[i] = match_classify(c, hdrs[i], len);
}

/* Read the data of MATCH_DATA keys in one readv and settle them to a match or MATCH_NO. */
static void match_data(const struct pyctx *c, const uint64_t *keys, size_t n, const char *key,
                       size_t len, enum match_verdict *v, bool *hit)
{
    char data[PYOBJ_MATCH_BATCH][PYOBJ_KEY_MAX] = {{0}};
    struct memsrc_iov iov[PYOBJ_MATCH_BATCH];
    size_t idx[PYOBJ_MATCH_BATCH];
    struct ps_err ignored = {0};
    size_t m = 0;

    for (size_t i = 0; i < n; i++) {
        hit[i] = false;
        if (v[i] != MATCH_DATA)
            continue;
        iov[m] = (struct memsrc_iov){keys[i] + (uint64_t)c->lay->str_ascii_data, data[m], len};
        idx[m++] = i;
    }
    if (m > 0 && len > 0 && memsrc_readv(c->src, iov, m, &ignored) < 0) {
        for (size_t j = 0; j < m; j++)
            v[idx[j]] = MATCH_SLOW;
        return;
    }
    for (size_t j = 0; j < m; j++)
        hit[idx[j]] = memcmp(data[j], key, len) == 0;
}

int pyobj_str_match(const struct pyctx *c, const uint64_t *keys, size_t n, const char *key,
                    size_t len, size_t *index, struct ps_err *err)
{
    enum match_verdict v[PYOBJ_MATCH_BATCH];
    bool hit[PYOBJ_MATCH_BATCH] = {false};
    bool fast = c->syms && c->syms->unicode_type != 0 && is_ascii(key, len);
    int rc = 0;

    if (n > PYOBJ_MATCH_BATCH || len > PYOBJ_KEY_MAX)
        return ps_err_set(err, -PS_ELIMIT, "str match of %zu keys / %zu bytes over the caps", n,
                          len);
    for (size_t i = 0; i < n; i++)
        v[i] = MATCH_SLOW;
    if (fast) {
        match_headers(c, keys, n, len, v);
        match_data(c, keys, n, key, len, v, hit);
    }
    for (size_t i = 0; i < n; i++) {
        bool eq = v[i] == MATCH_DATA && hit[i];
        if (v[i] == MATCH_SLOW)
            rc = pyobj_str_equals(c, keys[i], key, len, &eq, err);
        if (rc < 0)
            return rc;
        if (eq) {
            *index = i;
            return 0;
        }
    }
    *index = n;
    return 0;
}

/* ---- bytes, int ------------------------------------------------------------------------ */

int pyobj_bytes(const struct pyctx *c, uint64_t obj, size_t maxlen, uint8_t **data, size_t *len,
                struct ps_err *err)
{
    uint64_t size = 0;
    uint8_t *buf = NULL;
    int rc = pyobj_check_type(c, obj, c->syms ? c->syms->bytes_type : 0,
                              LAYOUT_TPFLAG(c->lay, bytes_subclass), "bytes", NULL, err);

    if (rc == 0)
        rc = memsrc_read_u64(c->src, obj + (uint64_t)c->lay->varobject_size, &size, err);
    if (rc < 0)
        return rc;
    if ((int64_t)size < 0)
        return ps_err_set(err, -PS_ECORRUPT,
                          "bytes at 0x%" PRIx64 " has negative size %" PRId64 ": torn read", obj,
                          (int64_t)size);
    if (size > maxlen || size > MEMSRC_MAX_READ)
        return ps_err_set(err, -PS_ELIMIT,
                          "bytes at 0x%" PRIx64 " holds %" PRIu64 " bytes, over the %zu-byte "
                          "cap: garbage, or an object too big to copy",
                          obj, size, maxlen < MEMSRC_MAX_READ ? maxlen : MEMSRC_MAX_READ);
    buf = malloc(size ? size : 1);
    if (!buf)
        return ps_err_set(err, -ENOMEM, "out of memory copying %" PRIu64 " bytes", size);
    rc = memsrc_read(c->src, obj + (uint64_t)c->lay->bytes_sval, buf, size, err);
    if (rc < 0)
        goto free_buf;
    *data = buf;
    *len = size;
    return 0;
free_buf:
    free(buf);
    return rc;
}

int pyobj_long_shape(const struct layout *lay, uint64_t word, int *sign, uint64_t *ndigits)
{
    if ((lay->long_digit_size != 2 && lay->long_digit_size != 4) || lay->long_shift <= 0 ||
        lay->long_shift > 8 * lay->long_digit_size ||
        (lay->long_tagged == 1 && (lay->long_tag_size_shift < 2 || lay->long_tag_size_shift > 8)))
        return -PS_EVERSION;
    if (lay->long_tagged == 1) {
        unsigned s = (unsigned)(word & 3);
        if (s == 3)
            return -PS_ECORRUPT;
        *sign = 1 - (int)s;
        *ndigits = word >> lay->long_tag_size_shift;
    } else {
        int64_t size = (int64_t)word;
        *sign = size > 0 ? 1 : size < 0 ? -1 : 0;
        *ndigits = size < 0 ? 0 - (uint64_t)size : (uint64_t)size;
    }
    return 0;
}

void pyobj_long_digits(const struct layout *lay, const uint8_t *raw, size_t n, uint32_t *out)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t d = 0;

        for (int32_t b = lay->long_digit_size; b-- > 0;)
            d = d << 8 | raw[i * (size_t)lay->long_digit_size + (size_t)b];
        out[i] = d;
    }
}

static int long_shape(const struct pyctx *c, uint64_t obj, uint64_t word, int *sign,
                      uint64_t *ndigits, struct ps_err *err)
{
    int rc = pyobj_long_shape(c->lay, word, sign, ndigits);

    if (rc == -PS_EVERSION)
        return ps_err_set(err, rc,
                          "the Python %s layout has int digits of %d bytes and %d bits, which "
                          "pyscope does not decode",
                          c->lay->name, c->lay->long_digit_size, c->lay->long_shift);
    if (rc < 0)
        return ps_err_set(err, rc,
                          "int at 0x%" PRIx64 " has lv_tag 0x%" PRIx64
                          " with sign bits 3: torn read or wrong layout",
                          obj, word);
    return 0;
}

/* Digits of `shift` bits each (1..32, checked by pyobj_long_shape), most significant last. */
static int long_value(uint64_t obj, const uint32_t *digits, uint64_t nd, unsigned shift, int sign,
                      int64_t *out, struct ps_err *err)
{
    uint64_t mag = 0;

    for (uint64_t i = nd; i-- > 0;) {
        if ((uint64_t)digits[i] >> shift)
            return ps_err_set(err, -PS_ECORRUPT,
                              "int at 0x%" PRIx64 " has digit 0x%x over %u bits: torn read", obj,
                              digits[i], shift);
        if (mag >> (64 - shift))
            return ps_err_set(err, -PS_ELIMIT, "int at 0x%" PRIx64 " does not fit int64", obj);
        mag = mag << shift | digits[i];
    }
    if (mag > (uint64_t)INT64_MAX + (sign < 0 ? 1u : 0u))
        return ps_err_set(err, -PS_ELIMIT, "int at 0x%" PRIx64 " does not fit int64", obj);
    *out = sign < 0 ? (int64_t)(0 - mag) : (int64_t)mag;
    return 0;
}

int pyobj_long(const struct pyctx *c, uint64_t obj, int64_t *out, struct ps_err *err)
{
    uint64_t word = 0;
    uint64_t nd = 0;
    uint32_t digits[LONG_MAX_DIGITS] = {0};
    uint8_t raw[LONG_MAX_DIGITS * 4] = {0};
    int sign = 0;
    int rc = pyobj_check_type(c, obj, c->syms ? c->syms->long_type : 0,
                              LAYOUT_TPFLAG(c->lay, long_subclass), "int", NULL, err);

    if (rc == 0)
        rc = memsrc_read_u64(c->src, obj + (uint64_t)c->lay->long_size, &word, err);
    if (rc == 0)
        rc = long_shape(c, obj, word, &sign, &nd, err);
    if (rc < 0)
        return rc;
    if (sign == 0) {
        *out = 0;
        return 0;
    }
    if (nd == 0 || nd > LONG_MAX_DIGITS)
        return ps_err_set(err, nd ? -PS_ELIMIT : -PS_ECORRUPT,
                          "int at 0x%" PRIx64 " has %" PRIu64 " digits: %s", obj, nd,
                          nd ? "it does not fit int64" : "a non-zero int needs digits");
    rc = memsrc_read(c->src, obj + (uint64_t)c->lay->long_digits, raw,
                     (size_t)nd * (size_t)c->lay->long_digit_size, err);
    if (rc == 0) {
        pyobj_long_digits(c->lay, raw, (size_t)nd, digits);
        rc = long_value(obj, digits, nd, (unsigned)c->lay->long_shift, sign, out, err);
    }
    return rc;
}

/* ---- type names ------------------------------------------------------------------------ */

/* Copy a NUL-terminated C string from the target (at most cap-1 bytes, page by page). */
static int read_cstr(const struct pyctx *c, uint64_t addr, char *buf, size_t cap,
                     struct ps_err *err)
{
    size_t got = 0;

    while (got + 1 < cap) {
        uint64_t a = addr + got;
        size_t n = CSTR_PAGE - (size_t)(a % CSTR_PAGE);
        if (n > cap - 1 - got)
            n = cap - 1 - got;
        int rc = memsrc_read(c->src, a, buf + got, n, err);
        if (rc < 0)
            return rc;
        char *nul = memchr(buf + got, '\0', n);
        if (nul)
            return 0;
        got += n;
    }
    buf[got] = '\0';
    return 0;
}

static int check_is_type(const struct pyctx *c, uint64_t type, struct ps_err *err)
{
    uint64_t meta = 0;
    int rc = pyobj_type(c, type, &meta, err);

    if (rc == 0 && (!c->syms || meta != c->syms->type_type))
        rc = pyobj_check_type(c, type, 0, LAYOUT_TPFLAG(c->lay, type_subclass), "type", NULL, err);
    return rc;
}

/* "module.qualname" of a heap type; "builtins." omitted; qualname alone without __module__. */
static int heap_type_name(const struct pyctx *c, uint64_t type, char *buf, size_t cap,
                          struct ps_err *err)
{
    char qual[256];
    char mod[256];
    uint64_t qual_addr = 0;
    uint64_t dict = 0;
    uint64_t mod_addr = 0;
    int rc = memsrc_read_u64(c->src, type + (uint64_t)c->lay->heaptype_qualname, &qual_addr, err);

    if (rc == 0)
        rc = pyobj_str(c, qual_addr, qual, sizeof(qual), NULL, err);
    if (rc == 0)
        rc = memsrc_read_u64(c->src, type + (uint64_t)c->lay->type_dict, &dict, err);
    if (rc < 0)
        return rc;
    mod[0] = '\0';
    if (dict != 0 && pyobj_dict_get_str(c, dict, "__module__", &mod_addr, NULL) == 0 &&
        pyobj_str(c, mod_addr, mod, sizeof(mod), NULL, NULL) == 0 && strcmp(mod, "builtins") != 0)
        (void)snprintf(buf, cap, "%s.%s", mod, qual);
    else
        (void)snprintf(buf, cap, "%s", qual);
    return 0;
}

int pyobj_type_name(const struct pyctx *c, uint64_t type, char *buf, size_t cap, struct ps_err *err)
{
    uint64_t flags = 0;
    uint64_t name = 0;
    int rc = 0;

    if (!buf || cap == 0)
        return ps_err_set(err, -EINVAL, "pyobj_type_name needs a buffer of at least one byte");
    rc = check_is_type(c, type, err);
    if (rc == 0)
        rc = pyobj_type_flags(c, type, &flags, err);
    if (rc < 0)
        return rc;
    if (flags & LAYOUT_TPFLAG(c->lay, heaptype))
        return heap_type_name(c, type, buf, cap, err);
    rc = memsrc_read_u64(c->src, type + (uint64_t)c->lay->type_name, &name, err);
    if (rc == 0 && name == 0)
        rc = ps_err_set(err, -PS_ECORRUPT, "type at 0x%" PRIx64 " has no tp_name", type);
    if (rc == 0)
        rc = read_cstr(c, name, buf, cap, err);
    return rc;
}
