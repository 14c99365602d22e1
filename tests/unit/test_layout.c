/* SPDX-License-Identifier: MIT */
/*
 * layout: version mapping, by-index/by-name access, and the generated tables against ground
 * truth measured independently of the generator (CPYTHON.md §7: offsetof probes, DWARF and
 * 3.13.0's _Py_DebugOffsets on pyenv 3.11.7, 3.12.1, 3.13.0). If a regeneration moves one of
 * these numbers, the reading code that relies on them must be revisited, so the test fails.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "fixture.h" /* TEST_MINORS: the generated version list */
#include "pyscope/layout.h"

struct expect {
    const char *field;
    int32_t value;
};

static const struct expect measured_3_11[] = {
    {"runtime_size", 166688},
    {"runtime_tstate_current", 576},
    {"interp_threads_head", 16},
    {"interp_modules", 888},
    {"tstate_cframe", 56},
    {"cframe_current_frame", 8},
    {"tstate_curexc_value", 104},
    {"tstate_exc_state", 320},
    {"tstate_native_thread_id", 160},
    {"tstate_datastack_chunk", 296},
    {"frame_code", 32},
    {"frame_previous", 48},
    {"frame_instr", 56},
    {"frame_is_entry", 68},
    {"frame_owner", 69},
    {"code_firstlineno", 72},
    {"code_code_adaptive", 184},
    {"heaptype_qualname", 864},
    {"str_ascii_data", 48},
    {"str_compact_data", 72},
    {"gen_frame_state", 75},
    {"gen_iframe", 80},
    {"task_state", 88},
    {"task_coro", 136},
    {"opcode_resume", 151},
    {"long_tagged", 0},
    {"object_managed_dict", -24},
    {"object_managed_values", -32},
    {"object_dict_tagged", 0},
    {"type_dictoffset", 288},
};

static const struct expect measured_3_12[] = {
    {"runtime_size", 459944},
    {"runtime_main_thread", 64},
    {"interp_id", 8},
    {"interp_threads_head", 72},
    {"interp_gil_ptr", 384},
    {"tstate_status", 24},
    {"cframe_current_frame", 0},
    {"tstate_current_exception", 96},
    {"tstate_native_thread_id", 144},
    {"tstate_datastack_top", 240},
    {"frame_code", 0},
    {"frame_owner", 70},
    {"frame_localsplus", 72},
    {"code_version", 92},
    {"code_code_adaptive", 192},
    {"str_ascii_data", 40},
    {"gen_iframe", 72},
    {"task_fut_waiter", 128},
    {"task_name", 144},
    {"futureiter_future", 16},
    {"opcode_resume", 151},
    {"opcode_instrumented_resume", 240},
    {"frame_owner_cstack", 3},
    {"long_tagged", 1},
    {"object_managed_dict", -24},
    {"object_dict_tagged", 1},
    {"object_inline_values", 0},
};

static const struct expect measured_3_13[] = {
    {"runtime_size", 283320},
    {"runtime_interpreters_head", 632},
    {"interp_next", 7264},
    {"interp_threads_head", 7344},
    {"interp_modules", 7656},
    {"interp_gil_ptr", 16},
    {"tstate_status", 32},
    {"tstate_state", 40},
    {"tstate_current_frame", 72},
    {"tstate_current_exception", 112},
    {"tstate_native_thread_id", 160},
    {"frame_instr", 56},
    {"code_firsttraceable", 184},
    {"code_code_adaptive", 200},
    {"dictvalues_values", 8},
    {"task_state", 96},
    {"task_fut_waiter", 112},
    {"task_name", 128},
    {"frame_instr_is_current", 1},
    {"set_table", 40},
    {"object_managed_dict", -24},
    {"object_inline_values", 1},
    {"dictvalues_capacity", 0},
    {"dictvalues_valid", 3},
};

#define NEXP(a) (sizeof(a) / sizeof(a[0]))

/* Each version's ground truth, measured on the build named (a table with no entry here fails
 * test_supported_lists_every_table: a new version needs its own measurements). */
static const struct measured {
    const char *name;     /* the table's name */
    uint32_t version_hex; /* the build measured */
    const struct expect *exp;
    size_t n;
} measured[] = {
    {"3.11", 0x030b07f0, measured_3_11, NEXP(measured_3_11)},
    {"3.12", 0x030c01f0, measured_3_12, NEXP(measured_3_12)},
    {"3.13", 0x030d00f0, measured_3_13, NEXP(measured_3_13)},
};

#define NMEASURED (sizeof(measured) / sizeof(measured[0]))

static const struct layout *must_get(uint32_t version_hex)
{
    const struct layout *lay = layout_for_version(version_hex);

    assert_non_null(lay);
    return lay;
}

static void check_values(const struct layout *lay, const struct expect *exp, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int32_t got = 0;

        assert_true(layout_field_by_name(lay, exp[i].field, &got));
        if (got != exp[i].value) {
            fail_msg("%s %s: table %d, measured %d", lay->name, exp[i].field, (int)got,
                     (int)exp[i].value);
        }
    }
}

static void test_version_mapping(void **state)
{
    (void)state;
    assert_null(layout_for_version(0x030a0df0));                  /* 3.10.13 */
    assert_null(layout_for_version(0x030e00f0));                  /* 3.14.0 */
    assert_null(layout_for_version(0x020712f0));                  /* 2.7.18 */
    assert_null(layout_for_version(0x040b0000));                  /* 4.11: major matters too */
    assert_ptr_equal(must_get(0x030c01f0), must_get(0x030c0000)); /* 3.12.1 -> 3.12 */
    assert_string_equal(must_get(0x030c01f0)->name, "3.12");
    assert_string_equal(must_get(0x030b02f0)->name, "3.11"); /* Debian 3.11.2 */
    assert_string_equal(must_get(0x030d00a1)->name, "3.13"); /* alpha shares the minor */
    assert_int_equal(must_get(0x030d00f0)->version_hex_min, 0x030d0000);
}

/* The one version list: every table is listed, in the generated order (LAYOUT_VERSION_NAMES,
 * which scripts and CMake read), found by its version, named in the message, and measured. */
static void test_supported_lists_every_table(void **state)
{
    static const char *const names[] = TEST_MINORS;
    size_t n = layout_table_count();

    (void)state;
    assert_int_equal(n, sizeof(names) / sizeof(names[0]));
    assert_null(layout_table(n));
    for (size_t i = 0; i < n; i++) {
        const struct layout *lay = layout_table(i);
        size_t m = 0;

        assert_non_null(lay);
        assert_string_equal(lay->name, names[i]);
        assert_ptr_equal(layout_for_version(lay->version_hex_min), lay);
        assert_true(i == 0 || layout_table(i - 1)->version_hex_min < lay->version_hex_min);
        assert_non_null(strstr(layout_supported(), lay->name));
        assert_int_equal(strncmp(lay->generated_from, lay->name, strlen(lay->name)), 0);
        while (m < NMEASURED && strcmp(measured[m].name, lay->name) != 0)
            m++;
        if (m == NMEASURED)
            fail_msg("table %s has no measured ground truth in this test", lay->name);
    }
    for (size_t m = 0; m < NMEASURED; m++)
        assert_string_equal(must_get(measured[m].version_hex)->name, measured[m].name);
}

/* Every version's table against the values measured on its build. */
static void test_measured(void **state)
{
    (void)state;
    for (size_t m = 0; m < NMEASURED; m++)
        check_values(must_get(measured[m].version_hex), measured[m].exp, measured[m].n);
}

static void test_field_access(void **state)
{
    const struct layout *lay = must_get(0x030c01f0);
    int32_t v = 12345;

    (void)state;
    assert_true(layout_field_count() > 100);
    assert_string_equal(layout_field_name(0), "runtime_size");
    assert_int_equal(layout_field_value(lay, 0), lay->runtime_size);
    /* The last field by index is found by name with the same value (no off-by-one). */
    assert_non_null(layout_field_name(layout_field_count() - 1));
    assert_true(layout_field_by_name(lay, layout_field_name(layout_field_count() - 1), &v));
    assert_int_equal(v, layout_field_value(lay, layout_field_count() - 1));
    assert_null(layout_field_name(layout_field_count()));
    assert_int_equal(layout_field_value(lay, layout_field_count()), LAYOUT_ABSENT);
    assert_int_equal(layout_field_value(NULL, 0), LAYOUT_ABSENT);

    assert_true(layout_field_by_name(lay, "tstate_native_thread_id", &v));
    assert_int_equal(v, lay->tstate_native_thread_id);
    v = 12345;
    assert_false(layout_field_by_name(lay, "no_such_field", &v));
    assert_false(layout_field_by_name(lay, "tstate_native_thread_i", &v)); /* no prefixes */
    assert_false(layout_field_by_name(NULL, "tstate_next", &v));
    assert_int_equal(v, 12345); /* out-param untouched on failure */
}

/* Every name resolves by name to the value found by index, and names are unique. */
static void test_names_and_indices_agree(void **state)
{
    const struct layout *lay = must_get(0x030d0000);

    (void)state;
    for (size_t i = 0; i < layout_field_count(); i++) {
        int32_t v = 0;

        assert_true(layout_field_by_name(lay, layout_field_name(i), &v));
        assert_int_equal(v, layout_field_value(lay, i));
        for (size_t j = 0; j < i; j++) {
            assert_string_not_equal(layout_field_name(i), layout_field_name(j));
        }
    }
}

/* tp_flags bits, Include/object.h of 3.11.7, 3.12.1 and 3.13.0 (Py_TPFLAGS_*): the readers'
 * type checks test these bits, so a table that moved one would misclassify objects. */
static void test_tpflags_measured(void **state)
{
    static const struct expect common[] = {
        {"tpflag_managed_dict", 4},       {"tpflag_heaptype", 9},
        {"tpflag_long_subclass", 24},     {"tpflag_list_subclass", 25},
        {"tpflag_tuple_subclass", 26},    {"tpflag_bytes_subclass", 27},
        {"tpflag_unicode_subclass", 28},  {"tpflag_dict_subclass", 29},
        {"tpflag_base_exc_subclass", 30}, {"tpflag_type_subclass", 31},
    };

    (void)state;
    for (size_t i = 0; i < layout_table_count(); i++)
        check_values(layout_table(i), common, sizeof(common) / sizeof(common[0]));
    assert_false(LAYOUT_HAS(must_get(0x030b0000), tpflag_inline_values));
    assert_false(LAYOUT_HAS(must_get(0x030c0000), tpflag_inline_values));
    assert_int_equal(must_get(0x030d0000)->tpflag_inline_values, 2);
    /* The mask of an absent flag is 0: a test of it is false, never bit 63 or UB. */
    assert_int_equal(layout_tpflag(LAYOUT_ABSENT), 0);
    assert_true(layout_tpflag(must_get(0x030c0000)->tpflag_type_subclass) == (1ull << 31));
}

/* The constants readers take from the tables instead of typing them (CPython's headers and
 * DWARF: cpython/unicodeobject.h, longintrepr.h, pycore_dict.h, setobject.h, pycore_frame.h,
 * code.h, pycore_code.h, _collectionsmodule.c, _asynciomodule.c), as read in CPython's source. */
static void test_constants_measured(void **state)
{
    static const struct expect common[] = {
        {"str_state_kind_shift", 2},  {"str_state_kind_bits", 3},   {"str_state_compact_shift", 5},
        {"str_state_ascii_shift", 6}, {"long_shift", 30},           {"long_digit_size", 4},
        {"dict_entry_general", 24},   {"dict_entry_unicode", 16},   {"dictentry_hash", 0},
        {"dictentry_key", 8},         {"dictentry_value", 16},      {"dictunicode_key", 0},
        {"dictunicode_value", 8},     {"dict_kind_general", 0},     {"dict_kind_split", 2},
        {"set_entry_size", 16},       {"deque_blocklen", 64},       {"deque_block_size", 528},
        {"frame_owner_thread", 0},    {"frame_owner_generator", 1}, {"co_varargs", 4},
        {"co_varkeywords", 8},        {"co_fast_cell", 0x40},       {"co_fast_free", 0x80},
        {"fut_state_pending", 0},     {"fut_state_cancelled", 1},   {"fut_state_finished", 2},
    };
    static const struct expect only_3_11[] = {
        {"frame_owner_max", 2}, /* FRAME_OWNED_BY_FRAME_OBJECT: no C-stack owner yet */
        {"tstate_status_active_bit", LAYOUT_ABSENT},
        {"co_fast_hidden", LAYOUT_ABSENT},
        {"long_tag_size_shift", LAYOUT_ABSENT},
    };
    static const struct expect since_3_12[] = {
        {"frame_owner_max", 3}, /* FRAME_OWNED_BY_CSTACK */
        {"tstate_status_active_bit", 4},
        {"co_fast_hidden", 0x10},
        {"long_tag_size_shift", 3},
    };

    (void)state;
    for (size_t i = 0; i < layout_table_count(); i++) {
        const struct layout *lay = layout_table(i);

        check_values(lay, common, sizeof(common) / sizeof(common[0]));
        if (lay->version_hex_min < 0x030c0000)
            check_values(lay, only_3_11, sizeof(only_3_11) / sizeof(only_3_11[0]));
        else
            check_values(lay, since_3_12, sizeof(since_3_12) / sizeof(since_3_12[0]));
        /* The GIL struct holds every GIL field the walker reads. */
        assert_true(lay->gil_size > lay->gil_switch_number && lay->gil_size > lay->gil_locked);
    }
    /* The active bit is tested where the layout puts it, and never on a version without one. */
    assert_true(layout_tstate_active(must_get(0x030c0000), 1u << 4));
    assert_false(layout_tstate_active(must_get(0x030c0000), ~(1u << 4)));
    assert_false(layout_tstate_active(must_get(0x030b0000), ~0u));
}

/* Fields a version lacks must read as absent, or code would follow garbage offsets. */
static void test_absent_fields(void **state)
{
    const struct layout *l11 = must_get(0x030b0000);
    const struct layout *l12 = must_get(0x030c0000);
    const struct layout *l13 = must_get(0x030d0000);

    (void)state;
    assert_false(LAYOUT_HAS(l11, tstate_status));
    assert_false(LAYOUT_HAS(l11, tstate_current_exception));
    assert_false(LAYOUT_HAS(l11, interp_gil_ptr));
    assert_false(LAYOUT_HAS(l11, frame_owner_cstack));
    assert_false(LAYOUT_HAS(l11, opcode_instrumented_resume));
    assert_false(LAYOUT_HAS(l12, tstate_state));
    assert_false(LAYOUT_HAS(l12, tstate_current_frame));
    assert_false(LAYOUT_HAS(l12, runtime_gil));
    assert_false(LAYOUT_HAS(l12, frame_is_entry));
    assert_false(LAYOUT_HAS(l13, tstate_cframe));
    assert_false(LAYOUT_HAS(l13, tstate_curexc_type));
    assert_true(LAYOUT_HAS(l13, frame_owner));
    assert_false(LAYOUT_HAS(l12, object_managed_values));
    assert_false(LAYOUT_HAS(l13, object_managed_values));
    assert_false(LAYOUT_HAS(l12, dictvalues_valid));
    assert_true(LAYOUT_HAS(l11, object_managed_dict)); /* -24: negative is not absent */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version_mapping),  cmocka_unit_test(test_supported_lists_every_table),
        cmocka_unit_test(test_field_access),     cmocka_unit_test(test_names_and_indices_agree),
        cmocka_unit_test(test_measured),         cmocka_unit_test(test_absent_fields),
        cmocka_unit_test(test_tpflags_measured), cmocka_unit_test(test_constants_measured),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
