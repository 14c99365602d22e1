/* SPDX-License-Identifier: MIT */
/*
 * symtab tests: the test binary itself (a static function, a const blob and a .bss array looked
 * up in .symtab and read by vaddr, compared with this process's memory), hand-built tiny ELF
 * files for p_filesz/p_memsz edges and bad headers, a truncation/corruption sweep (must never
 * crash; run under ASan), and Py_Version read from a real libpython. A missing interpreter fails
 * under CI=true and skips otherwise.
 */
#include "pyscope/symtab.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#define LIBPY312 "/root/.pyenv/versions/3.12.1/lib/libpython3.12.so.1.0"

/* Distinctive bytes at file scope: kept in .rodata and named in .symtab (not exported). */
static const unsigned char symtab_test_blob[40] = "pyscope symtab test blob \x01\x02\x03\xfe\xff";
/* Zero-initialised: lives past p_filesz of the data segment, so reads must zero-fill. */
static unsigned char symtab_test_bss[8192];

static int symtab_test_marker(int x)
{
    return x * 3 + 1;
}

static int main_bias_cb(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    *(uint64_t *)data = (uint64_t)info->dlpi_addr;
    return 1; /* the main program comes first */
}

static uint64_t main_bias(void)
{
    uint64_t bias = 0;

    (void)dl_iterate_phdr(main_bias_cb, &bias);
    return bias;
}

static void self_path(char *buf, size_t len)
{
    ssize_t n = readlink("/proc/self/exe", buf, len - 1);

    assert_true(n > 0);
    buf[n] = '\0';
}

static void require_file(const char *path)
{
    const char *ci = getenv("CI");

    if (access(path, R_OK) == 0)
        return;
    if (ci && strcmp(ci, "true") == 0)
        fail_msg("%s is missing and CI=true: install the reference interpreters", path);
    skip();
}

static void test_self_function(void **state)
{
    char path[4096];
    struct symtab *st = NULL;
    struct ps_err err = {0};
    uint64_t vaddr = 0, size = 0;

    (void)state;
    self_path(path, sizeof(path));
    assert_int_equal(symtab_open(path, &st, &err), 0);
    assert_string_equal(symtab_path(st), path);
    assert_int_equal(symtab_lookup(st, "symtab_test_marker", &vaddr, &size), 0);
    assert_true(size > 0);
    assert_int_equal(vaddr + main_bias(), (uint64_t)(uintptr_t)&symtab_test_marker);
    assert_int_equal(symtab_test_marker(1), 4);
    /* Undefined imports in .dynsym are not definitions. */
    assert_int_equal(symtab_lookup(st, "elf_begin", NULL, NULL), -ENOENT);
    assert_int_equal(symtab_lookup(st, "no_such_symbol_anywhere", NULL, NULL), -ENOENT);
    assert_int_equal(symtab_lookup(st, "", NULL, NULL), -ENOENT);
    symtab_close(st);
}

static void test_self_read_vaddr(void **state)
{
    char path[4096];
    struct symtab *st = NULL;
    struct ps_err err = {0};
    uint64_t vaddr = 0, size = 0;
    unsigned char buf[sizeof(symtab_test_bss)];

    (void)state;
    self_path(path, sizeof(path));
    assert_int_equal(symtab_open(path, &st, &err), 0);
    assert_int_equal(symtab_lookup(st, "symtab_test_blob", &vaddr, &size), 0);
    assert_int_equal(size, sizeof(symtab_test_blob));
    assert_int_equal(vaddr + main_bias(), (uint64_t)(uintptr_t)symtab_test_blob);
    memset(buf, 0xaa, sizeof(buf));
    assert_int_equal(symtab_read_vaddr(st, vaddr, buf, sizeof(symtab_test_blob), &err), 0);
    assert_memory_equal(buf, symtab_test_blob, sizeof(symtab_test_blob));

    assert_int_equal(symtab_lookup(st, "symtab_test_bss", &vaddr, &size), 0);
    assert_int_equal(vaddr + main_bias(), (uint64_t)(uintptr_t)symtab_test_bss);
    memset(buf, 0xaa, sizeof(buf));
    assert_int_equal(symtab_read_vaddr(st, vaddr, buf, sizeof(buf), &err), 0);
    assert_memory_equal(buf, symtab_test_bss, sizeof(buf));
    assert_int_equal(symtab_read_vaddr(st, UINT64_MAX - 4, buf, 8, &err), -EFAULT);
    assert_int_equal(err.code, -EFAULT);
    symtab_close(st);
}

static void test_self_sections(void **state)
{
    char path[4096];
    struct symtab *st = NULL;
    struct ps_err err = {0};
    uint64_t vaddr = 0, size = 0, fn = 0;

    (void)state;
    self_path(path, sizeof(path));
    assert_int_equal(symtab_open(path, &st, &err), 0);
    assert_int_equal(symtab_section(st, ".text", &vaddr, &size), 0);
    assert_int_equal(symtab_lookup(st, "symtab_test_marker", &fn, NULL), 0);
    assert_true(fn >= vaddr && fn < vaddr + size);
    assert_int_equal(symtab_section(st, ".PyRuntime", NULL, NULL), -ENOENT);
    symtab_close(st);
}

/* Tiny ELF: ehdr, one PT_LOAD at vaddr 0x10000 covering the file, then memsz_extra zeros. */
struct tiny_elf {
    Elf64_Ehdr eh;
    Elf64_Phdr ph;
    unsigned char data[16];
};

static void tiny_init(struct tiny_elf *t, uint64_t filesz, uint64_t memsz)
{
    memset(t, 0, sizeof(*t));
    memcpy(t->eh.e_ident, ELFMAG, SELFMAG);
    t->eh.e_ident[EI_CLASS] = ELFCLASS64;
    t->eh.e_ident[EI_DATA] = ELFDATA2LSB;
    t->eh.e_ident[EI_VERSION] = EV_CURRENT;
    t->eh.e_type = ET_DYN;
    t->eh.e_machine = EM_X86_64;
    t->eh.e_version = EV_CURRENT;
    t->eh.e_phoff = offsetof(struct tiny_elf, ph);
    t->eh.e_ehsize = sizeof(Elf64_Ehdr);
    t->eh.e_phentsize = sizeof(Elf64_Phdr);
    t->eh.e_phnum = 1;
    t->ph.p_type = PT_LOAD;
    t->ph.p_flags = PF_R;
    t->ph.p_vaddr = 0x10000;
    t->ph.p_paddr = 0x10000;
    t->ph.p_filesz = filesz;
    t->ph.p_memsz = memsz;
    t->ph.p_align = 0x1000;
    for (size_t i = 0; i < sizeof(t->data); i++)
        t->data[i] = (unsigned char)(0x40 + i);
}

static void write_file(char *path, const void *buf, size_t len)
{
    int fd;

    memcpy(path, "/tmp/pyscope-symtab-XXXXXX", sizeof("/tmp/pyscope-symtab-XXXXXX"));
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, buf, len), (ssize_t)len);
    assert_int_equal(close(fd), 0);
}

static void test_tiny_filesz_memsz(void **state)
{
    struct tiny_elf t;
    char path[64];
    struct symtab *st = NULL;
    struct ps_err err = {0};
    unsigned char buf[16], want[16] = {0};
    uint64_t end = 0x10000 + sizeof(t);

    (void)state;
    tiny_init(&t, sizeof(t), sizeof(t) + 64);
    write_file(path, &t, sizeof(t));
    assert_int_equal(symtab_open(path, &st, &err), 0);
    assert_true(symtab_is_dyn(st));
    assert_int_equal(symtab_load_vaddr(st), 0x10000);
    /* Straddles p_filesz: 8 file bytes, then 8 zeros. */
    memcpy(want, t.data + 8, 8);
    memset(buf, 0xaa, sizeof(buf));
    assert_int_equal(symtab_read_vaddr(st, end - 8, buf, 16, &err), 0);
    assert_memory_equal(buf, want, 16);
    /* Wholly in the zero-fill. */
    memset(want, 0, sizeof(want));
    assert_int_equal(symtab_read_vaddr(st, end + 40, buf, 16, &err), 0);
    assert_memory_equal(buf, want, 16);
    /* Past p_memsz, and below the segment. */
    assert_int_equal(symtab_read_vaddr(st, end + 60, buf, 8, &err), -EFAULT);
    assert_int_equal(symtab_read_vaddr(st, 0xfff8, buf, 16, &err), -EFAULT);
    assert_int_equal(symtab_lookup(st, "anything", NULL, NULL), -ENOENT);
    assert_int_equal(symtab_section(st, ".text", NULL, NULL), -ENOENT);
    symtab_close(st);
    unlink(path);
}

static void test_tiny_truncated_segment(void **state)
{
    struct tiny_elf t;
    char path[64];
    struct symtab *st = NULL;
    struct ps_err err = {0};
    unsigned char buf[8];

    (void)state;
    tiny_init(&t, sizeof(t) + 4096, sizeof(t) + 8192);
    write_file(path, &t, sizeof(t));
    assert_int_equal(symtab_open(path, &st, &err), 0);
    assert_int_equal(symtab_read_vaddr(st, 0x10000 + offsetof(struct tiny_elf, data), buf, 8, &err),
                     -EIO);
    assert_non_null(strstr(err.msg, "truncated"));
    symtab_close(st);
    unlink(path);
}

static void expect_format_error(const struct tiny_elf *t, size_t len)
{
    char path[64];
    struct symtab *st = NULL;
    struct ps_err err = {0};

    write_file(path, t, len);
    assert_int_equal(symtab_open(path, &st, &err), -PS_EFORMAT);
    assert_null(st);
    assert_int_equal(err.code, -PS_EFORMAT);
    assert_non_null(strstr(err.msg, path));
    unlink(path);
}

static void test_bad_headers(void **state)
{
    struct tiny_elf t;
    struct symtab *st = NULL;
    struct ps_err err = {0};

    (void)state;
    tiny_init(&t, sizeof(t), sizeof(t));
    t.eh.e_ident[EI_CLASS] = ELFCLASS32;
    expect_format_error(&t, sizeof(t));
    tiny_init(&t, sizeof(t), sizeof(t));
    t.eh.e_machine = EM_386;
    expect_format_error(&t, sizeof(t));
    tiny_init(&t, sizeof(t), sizeof(t));
    t.eh.e_ident[EI_DATA] = ELFDATA2MSB;
    expect_format_error(&t, sizeof(t));
    memset(&t, 'x', sizeof(t));
    expect_format_error(&t, sizeof(t));
    assert_int_equal(symtab_open("/nonexistent/pyscope/file", &st, &err), -ENOENT);
    assert_null(st);
    ps_err_clear(&err);
    assert_int_equal(symtab_open("/tmp", &st, &err), -PS_EFORMAT);
    symtab_close(NULL);
}

/* Exercise every entry point on a damaged image: errors are fine, crashes are not. */
static void poke(const char *path)
{
    struct symtab *st = NULL;
    struct ps_err err = {0};
    unsigned char buf[64];
    uint64_t v = 0, s = 0;

    if (symtab_open(path, &st, &err) != 0) {
        assert_true(err.code < 0);
        return;
    }
    (void)symtab_lookup(st, "symtab_test_marker", &v, &s);
    (void)symtab_lookup(st, "main", &v, &s);
    (void)symtab_section(st, ".rodata", &v, &s);
    if (symtab_lookup(st, "symtab_test_blob", &v, &s) == 0)
        assert_true(symtab_read_vaddr(st, v, buf, sizeof(buf), &err) <= 0);
    assert_true(symtab_read_vaddr(st, symtab_load_vaddr(st), buf, sizeof(buf), &err) <= 0);
    symtab_close(st);
}

static void test_damaged_images(void **state)
{
    char self[4096], path[64];
    unsigned char *img;
    struct stat sb;
    FILE *f;
    uint64_t seed = 0x9e3779b97f4a7c15u;

    (void)state;
    self_path(self, sizeof(self));
    assert_int_equal(stat(self, &sb), 0);
    img = malloc((size_t)sb.st_size);
    assert_non_null(img);
    f = fopen(self, "rb");
    assert_non_null(f);
    assert_int_equal(fread(img, 1, (size_t)sb.st_size, f), (size_t)sb.st_size);
    (void)fclose(f);
    for (size_t cut = 16; cut < (size_t)sb.st_size; cut = cut * 3 + 7) {
        write_file(path, img, cut);
        poke(path);
        unlink(path);
    }
    /* Scribble over the tail, where the section headers and string tables live. */
    for (int round = 0; round < 8; round++) {
        for (int k = 0; k < 64; k++) {
            seed = seed * 6364136223846793005u + 1442695040888963407u;
            size_t at = (size_t)sb.st_size - 1 - (size_t)((seed >> 33) % 8192u);
            img[at] = (unsigned char)(seed >> 24);
        }
        write_file(path, img, (size_t)sb.st_size);
        poke(path);
        unlink(path);
    }
    free(img);
}

static void test_libpython_version(void **state)
{
    struct symtab *st = NULL;
    struct ps_err err = {0};
    uint64_t vaddr = 0, size = 0, sec = 0, secsize = 0, rt = 0;
    unsigned char b[8];

    (void)state;
    require_file(LIBPY312);
    assert_int_equal(symtab_open(LIBPY312, &st, &err), 0);
    assert_true(symtab_is_dyn(st));
    assert_int_equal(symtab_load_vaddr(st), 0);
    assert_int_equal(symtab_lookup(st, "Py_Version", &vaddr, &size), 0);
    assert_int_equal(size, 8);
    assert_int_equal(symtab_read_vaddr(st, vaddr, b, sizeof(b), &err), 0);
    assert_int_equal(b[0] | b[1] << 8 | b[2] << 16 | (uint32_t)b[3] << 24, 0x030c01f0);
    assert_int_equal(symtab_lookup(st, "_PyRuntime", &rt, NULL), 0);
    assert_int_equal(symtab_section(st, ".PyRuntime", &sec, &secsize), 0);
    assert_int_equal(sec, rt);
    assert_int_equal(secsize, 459944); /* sizeof(_PyRuntimeState), CPYTHON.md §1 */
    symtab_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_self_function),          cmocka_unit_test(test_self_read_vaddr),
        cmocka_unit_test(test_self_sections),          cmocka_unit_test(test_tiny_filesz_memsz),
        cmocka_unit_test(test_tiny_truncated_segment), cmocka_unit_test(test_bad_headers),
        cmocka_unit_test(test_damaged_images),         cmocka_unit_test(test_libpython_version),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
