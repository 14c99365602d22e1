/* SPDX-License-Identifier: MIT */
/*
 * Layout probe: compiled by scripts/gen-layouts against one CPython's installed headers
 * (`cc -I<prefix>/include/python3.X`, headers only, never linked with libpython) and run on the
 * build host. It prints one `key value` line per LAYOUT_FIELDS key of include/pyscope/layout.h,
 * in any order; gen-layouts checks that the key set is exactly the X-macro's. A field the version
 * lacks prints -1 (LAYOUT_ABSENT). Keys name pyscope's concept, not CPython's spelling, so they
 * survive renames (prev_instr -> instr_ptr, f_code -> f_executable).
 *
 * Keys starting with `check_` are not table fields: gen-layouts uses them only to cross-check
 * (the version, the embedded GIL, the _Py_DebugOffsets struct where the headers have one). TaskObj/FutureIter fields are private to
 * Modules/_asynciomodule.c and come from DWARF, not from here.
 *
 * Every version difference is gated on PY_VERSION_HEX (the versions of gen-layouts' MINORS).
 */

#define Py_BUILD_CORE 1

#include <Python.h>
#include <frameobject.h>
#include <opcode.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal/pycore_code.h"
#include "internal/pycore_dict.h"
#include "internal/pycore_frame.h"
#include "internal/pycore_gil.h"
#include "internal/pycore_interp.h"
#include "internal/pycore_moduleobject.h"
#include "internal/pycore_object.h"
#include "internal/pycore_pystate.h"
#include "internal/pycore_runtime.h"

#if PY_VERSION_HEX < 0x030b0000 || PY_VERSION_HEX >= 0x030e0000
#error "layout_probe.c knows CPython 3.11 to 3.13 only"
#endif

#define ABSENT (-1L)

static void put(const char *key, long value)
{
    printf("%s %ld\n", key, value);
}

#define OFF(key, type, member) put(key, (long)offsetof(type, member))

static void probe_fail(const char *what);

/* The 32-bit word at base + off (a bitfield's storage unit; the host is little-endian like every
 * target). */
static uint32_t probe_word(const void *base, size_t off)
{
    uint32_t w;

    memcpy(&w, (const char *)base + off, sizeof(w));
    return w;
}

/* The number of the lowest bit set in the word at base + off, where the caller set one bitfield
 * of an otherwise zeroed struct: its position as a reader of that word sees it. */
static long probe_field_shift(const void *base, size_t off, const char *what)
{
    uint32_t w = probe_word(base, off);
    long bit = 0;

    if (w == 0)
        probe_fail(what);
    while (!(w & 1u)) {
        w >>= 1;
        bit++;
    }
    return bit;
}

/* The number of bits set in the word at base + off (a bitfield set to all ones: its width). */
static long probe_field_width(const void *base, size_t off)
{
    uint32_t w = probe_word(base, off);
    long n = 0;

    for (; w; w &= w - 1)
        n++;
    return n;
}

static void probe_runtime(void)
{
    put("runtime_size", (long)sizeof(_PyRuntimeState));
    OFF("runtime_interpreters_head", _PyRuntimeState, interpreters.head);
    OFF("runtime_interpreters_main", _PyRuntimeState, interpreters.main);
    OFF("runtime_main_thread", _PyRuntimeState, main_thread);
#if PY_VERSION_HEX < 0x030c0000
    /* 3.11 pycore_runtime.h: one GIL in _ceval_runtime_state, tstate in gilstate */
    OFF("runtime_gil", _PyRuntimeState, ceval.gil);
    OFF("runtime_tstate_current", _PyRuntimeState, gilstate.tstate_current);
#else
    put("runtime_gil", ABSENT);
    put("runtime_tstate_current", ABSENT);
#endif
}

static void probe_interp(void)
{
    OFF("interp_next", PyInterpreterState, next);
    OFF("interp_id", PyInterpreterState, id);
    OFF("interp_threads_head", PyInterpreterState, threads.head);
    OFF("interp_threads_unique_id", PyInterpreterState, threads.next_unique_id);
    OFF("interp_threads_count", PyInterpreterState, threads.count);
#if PY_VERSION_HEX < 0x030c0000
    OFF("interp_modules", PyInterpreterState, modules);
    put("interp_gil_ptr", ABSENT);
#else
    /* 3.12+ pycore_interp.h: per-interpreter GIL, ceval.gil points at it (usually at _gil) */
    OFF("interp_modules", PyInterpreterState, imports.modules);
    OFF("interp_gil_ptr", PyInterpreterState, ceval.gil);
    OFF("check_interp_gil_embedded", PyInterpreterState, _gil);
#endif
    OFF("gil_interval", struct _gil_runtime_state, interval);
    OFF("gil_last_holder", struct _gil_runtime_state, last_holder);
    OFF("gil_locked", struct _gil_runtime_state, locked);
    OFF("gil_switch_number", struct _gil_runtime_state, switch_number);
    put("gil_size", (long)sizeof(struct _gil_runtime_state));
}

static void probe_tstate_frame_pointers(void)
{
#if PY_VERSION_HEX < 0x030d0000
    /* 3.11/3.12 cpython/pystate.h: tstate->cframe->current_frame */
    OFF("tstate_cframe", PyThreadState, cframe);
    OFF("cframe_current_frame", _PyCFrame, current_frame);
    OFF("cframe_previous", _PyCFrame, previous);
    OFF("tstate_root_cframe", PyThreadState, root_cframe);
    put("tstate_current_frame", ABSENT);
#else
    put("tstate_cframe", ABSENT);
    put("cframe_current_frame", ABSENT);
    put("cframe_previous", ABSENT);
    put("tstate_root_cframe", ABSENT);
    OFF("tstate_current_frame", PyThreadState, current_frame);
#endif
}

static void probe_tstate_exceptions(void)
{
#if PY_VERSION_HEX < 0x030c0000
    /* 3.11: (type, value, traceback) triple; 3.12+: one normalised exception */
    OFF("tstate_curexc_type", PyThreadState, curexc_type);
    OFF("tstate_curexc_value", PyThreadState, curexc_value);
    OFF("tstate_curexc_traceback", PyThreadState, curexc_traceback);
    put("tstate_current_exception", ABSENT);
#else
    put("tstate_curexc_type", ABSENT);
    put("tstate_curexc_value", ABSENT);
    put("tstate_curexc_traceback", ABSENT);
    OFF("tstate_current_exception", PyThreadState, current_exception);
#endif
    OFF("tstate_exc_info", PyThreadState, exc_info);
    OFF("tstate_exc_state", PyThreadState, exc_state);
}

static void probe_tstate(void)
{
    OFF("tstate_prev", PyThreadState, prev);
    OFF("tstate_next", PyThreadState, next);
    OFF("tstate_interp", PyThreadState, interp);
#if PY_VERSION_HEX >= 0x030c0000
    static PyThreadState ts; /* zeroed: only _status.active is set */

    ts._status.active = 1;
    OFF("tstate_status", PyThreadState, _status);
    put("tstate_status_active_bit",
        probe_field_shift(&ts, offsetof(PyThreadState, _status), "_status.active sets no bit"));
#else
    put("tstate_status", ABSENT);
    put("tstate_status_active_bit", ABSENT);
#endif
#if PY_VERSION_HEX >= 0x030d0000
    OFF("tstate_state", PyThreadState, state);
#else
    put("tstate_state", ABSENT);
#endif
    probe_tstate_frame_pointers();
    probe_tstate_exceptions();
    OFF("tstate_thread_id", PyThreadState, thread_id);
    OFF("tstate_native_thread_id", PyThreadState, native_thread_id);
    OFF("tstate_datastack_chunk", PyThreadState, datastack_chunk);
    OFF("tstate_datastack_top", PyThreadState, datastack_top);
    OFF("tstate_datastack_limit", PyThreadState, datastack_limit);
    OFF("err_stackitem_exc_value", _PyErr_StackItem, exc_value);
    OFF("err_stackitem_previous_item", _PyErr_StackItem, previous_item);
    OFF("chunk_previous", _PyStackChunk, previous);
    OFF("chunk_size", _PyStackChunk, size);
    OFF("chunk_top", _PyStackChunk, top);
    OFF("chunk_data", _PyStackChunk, data);
}

static void probe_frame(void)
{
#if PY_VERSION_HEX >= 0x030d0000
    /* 3.13 pycore_frame.h: f_executable, instr_ptr points at the running instruction */
    OFF("frame_code", _PyInterpreterFrame, f_executable);
    OFF("frame_instr", _PyInterpreterFrame, instr_ptr);
    put("frame_instr_is_current", 1);
#else
    OFF("frame_code", _PyInterpreterFrame, f_code);
    OFF("frame_instr", _PyInterpreterFrame, prev_instr);
    put("frame_instr_is_current", 0);
#endif
    OFF("frame_previous", _PyInterpreterFrame, previous);
    OFF("frame_stacktop", _PyInterpreterFrame, stacktop);
#if PY_VERSION_HEX < 0x030c0000
    OFF("frame_is_entry", _PyInterpreterFrame, is_entry);
    put("frame_owner_cstack", ABSENT);
    put("frame_owner_max", (long)FRAME_OWNED_BY_FRAME_OBJECT);
#else
    /* 3.12+: entry frames are separate frames owned by the C stack (an enum, not a macro) */
    put("frame_is_entry", ABSENT);
    put("frame_owner_cstack", (long)FRAME_OWNED_BY_CSTACK);
    put("frame_owner_max", (long)FRAME_OWNED_BY_CSTACK);
#endif
    put("frame_owner_thread", (long)FRAME_OWNED_BY_THREAD);
    put("frame_owner_generator", (long)FRAME_OWNED_BY_GENERATOR);
    OFF("frame_owner", _PyInterpreterFrame, owner);
    OFF("frame_localsplus", _PyInterpreterFrame, localsplus);
    OFF("frameobj_f_back", PyFrameObject, f_back);
    OFF("frameobj_f_frame", PyFrameObject, f_frame);
}

static void probe_code(void)
{
    OFF("code_firstlineno", PyCodeObject, co_firstlineno);
    OFF("code_nlocalsplus", PyCodeObject, co_nlocalsplus);
#if PY_VERSION_HEX >= 0x030c0000
    OFF("code_framesize", PyCodeObject, co_framesize);
    OFF("code_version", PyCodeObject, co_version);
#else
    put("code_framesize", ABSENT);
    put("code_version", ABSENT);
#endif
    OFF("code_localsplusnames", PyCodeObject, co_localsplusnames);
    OFF("code_localspluskinds", PyCodeObject, co_localspluskinds);
    OFF("code_filename", PyCodeObject, co_filename);
    OFF("code_name", PyCodeObject, co_name);
    OFF("code_qualname", PyCodeObject, co_qualname);
    OFF("code_linetable", PyCodeObject, co_linetable);
    OFF("code_firsttraceable", PyCodeObject, _co_firsttraceable);
    OFF("code_code_adaptive", PyCodeObject, co_code_adaptive);
    OFF("code_argcount", PyCodeObject, co_argcount);
    OFF("code_kwonlyargcount", PyCodeObject, co_kwonlyargcount);
    OFF("code_flags", PyCodeObject, co_flags);
    put("co_varargs", (long)CO_VARARGS);
    put("co_varkeywords", (long)CO_VARKEYWORDS);
#ifdef CO_FAST_HIDDEN
    put("co_fast_hidden", (long)CO_FAST_HIDDEN); /* 3.12+: inlined comprehension */
#else
    put("co_fast_hidden", ABSENT);
#endif
    put("co_fast_cell", (long)CO_FAST_CELL);
    put("co_fast_free", (long)CO_FAST_FREE);
}

/* PyASCIIObject.state's bitfields as a reader of the 32-bit word at str_state sees them. */
static void probe_str_state(void)
{
    static PyASCIIObject s;
    const size_t off = offsetof(PyASCIIObject, state);
    unsigned all = ~0u;

    s.state.kind = 1;
    put("str_state_kind_shift", probe_field_shift(&s, off, "state.kind sets no bit"));
    s.state.kind = all;
    put("str_state_kind_bits", probe_field_width(&s, off));
    memset(&s, 0, sizeof(s));
    s.state.compact = 1;
    put("str_state_compact_shift", probe_field_shift(&s, off, "state.compact sets no bit"));
    memset(&s, 0, sizeof(s));
    s.state.ascii = 1;
    put("str_state_ascii_shift", probe_field_shift(&s, off, "state.ascii sets no bit"));
}

static void probe_objects(void)
{
    OFF("object_type", PyObject, ob_type);
    OFF("varobject_size", PyVarObject, ob_size);
    OFF("type_name", PyTypeObject, tp_name);
    OFF("type_flags", PyTypeObject, tp_flags);
    OFF("type_dict", PyTypeObject, tp_dict);
    OFF("type_dictoffset", PyTypeObject, tp_dictoffset);
    OFF("heaptype_qualname", PyHeapTypeObject, ht_qualname);
    OFF("heaptype_cached_keys", PyHeapTypeObject, ht_cached_keys);
    OFF("tuple_items", PyTupleObject, ob_item);
    OFF("bytes_sval", PyBytesObject, ob_sval);
    /* cpython/unicodeobject.h: compact data follows the header struct */
    OFF("str_length", PyASCIIObject, length);
    OFF("str_hash", PyASCIIObject, hash);
    OFF("str_state", PyASCIIObject, state);
    put("str_ascii_data", (long)sizeof(PyASCIIObject));
    put("str_compact_data", (long)sizeof(PyCompactUnicodeObject));
    OFF("str_legacy_data", PyUnicodeObject, data);
    probe_str_state();
#if PY_VERSION_HEX >= 0x030c0000
    /* 3.12 cpython/longintrepr.h: lv_tag = ndigits << 3 | sign */
    OFF("long_size", PyLongObject, long_value.lv_tag);
    OFF("long_digits", PyLongObject, long_value.ob_digit);
    put("long_tagged", 1);
#else
    OFF("long_size", PyLongObject, ob_base.ob_size);
    OFF("long_digits", PyLongObject, ob_digit);
    put("long_tagged", 0);
#endif
    put("long_shift", (long)PyLong_SHIFT);
    put("long_digit_size", (long)sizeof(digit));
#ifdef _PyLong_NON_SIZE_BITS
    put("long_tag_size_shift", (long)_PyLong_NON_SIZE_BITS); /* lv_tag = ndigits << this | sign */
#else
    put("long_tag_size_shift", ABSENT);
#endif
}

static void probe_exceptions(void)
{
    OFF("exc_args", PyBaseExceptionObject, args);
    OFF("exc_notes", PyBaseExceptionObject, notes);
    OFF("exc_traceback", PyBaseExceptionObject, traceback);
    OFF("exc_context", PyBaseExceptionObject, context);
    OFF("exc_cause", PyBaseExceptionObject, cause);
    OFF("exc_suppress_context", PyBaseExceptionObject, suppress_context);
    OFF("tb_next", PyTracebackObject, tb_next);
    OFF("tb_frame", PyTracebackObject, tb_frame);
    OFF("tb_lasti", PyTracebackObject, tb_lasti);
    OFF("tb_lineno", PyTracebackObject, tb_lineno);
    OFF("gen_exc_state", PyGenObject, gi_exc_state);
    OFF("gen_frame_state", PyGenObject, gi_frame_state);
    OFF("gen_iframe", PyGenObject, gi_iframe);
    /* pycore_frame.h enum _framestate, negated (LAYOUT_ABSENT is -1): 3.11/3.12 CREATED -2,
     * SUSPENDED -1; 3.13 CREATED -3, SUSPENDED -2, SUSPENDED_YIELD_FROM -1 */
    put("gen_state_created_neg", -(long)FRAME_CREATED);
    put("gen_state_suspended_neg", -(long)FRAME_SUSPENDED);
#if PY_VERSION_HEX >= 0x030d0000
    put("gen_state_yield_from_neg", -(long)FRAME_SUSPENDED_YIELD_FROM);
#else
    put("gen_state_yield_from_neg", ABSENT);
#endif
    put("gen_state_executing", (long)FRAME_EXECUTING);
}

/*
 * Managed __dict__ (pycore_object.h): CPython's own accessors are called on a fake object in a
 * local buffer, so the offsets are the headers' arithmetic (the accessors compute addresses and
 * read ob_type's tp_flags/tp_basicsize in their asserts; the 3.12 tag check writes one pre-header
 * word of the buffer). A header that contradicts how pyscope reads these slots stops the probe.
 */
struct probe_fake {
    PyTypeObject type;
    PyObject *pre[8];
    PyObject obj;
    PyObject *post[8];
};

static PyObject *probe_fake_object(struct probe_fake *f, unsigned long flags)
{
    memset(f, 0, sizeof(*f));
    f->type.tp_flags = flags;
    f->type.tp_basicsize = (Py_ssize_t)sizeof(PyObject);
    f->obj.ob_type = &f->type;
    return &f->obj;
}

static long probe_delta(const void *slot, const PyObject *obj)
{
    return (long)((const char *)slot - (const char *)obj);
}

static void probe_fail(const char *what)
{
    fprintf(stderr, "layout_probe: %s\n", what);
    exit(1);
}

/* A pre-header slot: negative and word-aligned, so never LAYOUT_ABSENT (-1). */
static void put_pre_header(const char *key, long off)
{
    if (off >= 0 || off % 8 != 0)
        probe_fail("a managed __dict__ slot is not a pre-header word");
    put(key, off);
}

#if PY_VERSION_HEX >= 0x030c0000 && PY_VERSION_HEX < 0x030d0000
/* 3.12: values are stored as (values - 1), the low bit telling them from a dict. */
static long probe_dict_tagged(PyObject *obj, struct probe_fake *f)
{
    PyDictOrValues *dorv = _PyObject_DictOrValuesPointer(obj);
    PyDictValues *values = (PyDictValues *)f->post;

    _PyDictOrValues_SetValues(dorv, values);
    if (!_PyDictOrValues_IsValues(*dorv) || _PyDictOrValues_GetValues(*dorv) != values ||
        (uintptr_t)dorv->values != (uintptr_t)values - 1)
        probe_fail("3.12 PyDictOrValues does not hold values as (values - 1)");
    return 1;
}
#endif

/* 3.13+: inline values follow the object at tp_basicsize (Py_TPFLAGS_INLINE_VALUES). */
static long probe_inline_values(struct probe_fake *f)
{
#if PY_VERSION_HEX >= 0x030d0000
    PyObject *obj = probe_fake_object(f, Py_TPFLAGS_MANAGED_DICT | Py_TPFLAGS_INLINE_VALUES);

    if (probe_delta(_PyObject_InlineValues(obj), obj) != (long)f->type.tp_basicsize)
        probe_fail("_PyObject_InlineValues is not at obj + tp_basicsize");
    return 1;
#else
    (void)f;
    return 0;
#endif
}

static void probe_managed_dict(void)
{
    struct probe_fake f;
    PyObject *obj = probe_fake_object(&f, Py_TPFLAGS_MANAGED_DICT);

#if PY_VERSION_HEX < 0x030c0000
    /* 3.11: the dict pointer, and before it a separate values pointer */
    put_pre_header("object_managed_dict", probe_delta(_PyObject_ManagedDictPointer(obj), obj));
    put_pre_header("object_managed_values", probe_delta(_PyObject_ValuesPointer(obj), obj));
    put("object_dict_tagged", 0);
#elif PY_VERSION_HEX < 0x030d0000
    /* 3.12: one PyDictOrValues word (no MANAGED_DICT_OFFSET macro in this version) */
    put_pre_header("object_managed_dict", probe_delta(_PyObject_DictOrValuesPointer(obj), obj));
    put("object_managed_values", ABSENT);
    put("object_dict_tagged", probe_dict_tagged(obj, &f));
#else
    put_pre_header("object_managed_dict", probe_delta(_PyObject_ManagedDictPointer(obj), obj));
    put("object_managed_values", ABSENT);
    put("object_dict_tagged", 0);
#endif
    put("object_inline_values", probe_inline_values(&f));
}

static void probe_containers(void)
{
    OFF("dict_keys", PyDictObject, ma_keys);
    OFF("dict_values", PyDictObject, ma_values);
    OFF("dictkeys_log2_index_bytes", PyDictKeysObject, dk_log2_index_bytes);
    OFF("dictkeys_kind", PyDictKeysObject, dk_kind);
    OFF("dictkeys_nentries", PyDictKeysObject, dk_nentries);
    OFF("dictkeys_indices", PyDictKeysObject, dk_indices);
    /* 3.13 pycore_dict.h: capacity/size/embedded/valid bytes precede values[] */
    OFF("dictvalues_values", PyDictValues, values);
#if PY_VERSION_HEX >= 0x030d0000
    OFF("dictvalues_capacity", PyDictValues, capacity);
    OFF("dictvalues_valid", PyDictValues, valid);
#else
    put("dictvalues_capacity", ABSENT);
    put("dictvalues_valid", ABSENT);
#endif
    OFF("set_mask", PySetObject, mask);
    OFF("set_table", PySetObject, table);
    OFF("set_used", PySetObject, used);
    OFF("list_items", PyListObject, ob_item);
    OFF("float_value", PyFloatObject, ob_fval);
    OFF("cell_ref", PyCellObject, ob_ref);
    OFF("module_dict", PyModuleObject, md_dict);
    OFF("weakref_object", PyWeakReference, wr_object);
}

/* Container sizes for `pyscope growth`: lengths, allocations and sys.getsizeof's arithmetic
 * (dict_sizeof, list___sizeof__, set_sizeof; PyGC_Head from internal/pycore_gc.h). */
static void probe_growth(void)
{
    OFF("type_basicsize", PyTypeObject, tp_basicsize);
    put("gc_head_size", (long)sizeof(PyGC_Head));
    OFF("dict_used", PyDictObject, ma_used);
    OFF("dictkeys_refcnt", PyDictKeysObject, dk_refcnt);
    OFF("dictkeys_log2_size", PyDictKeysObject, dk_log2_size);
    OFF("dictkeys_usable", PyDictKeysObject, dk_usable);
    put("dictkeys_size", (long)sizeof(PyDictKeysObject));
    OFF("list_allocated", PyListObject, allocated);
    OFF("set_fill", PySetObject, fill);
    OFF("set_smalltable", PySetObject, smalltable);
    put("set_entry_size", (long)sizeof(setentry));
    put("dict_entry_general", (long)sizeof(PyDictKeyEntry));
    put("dict_entry_unicode", (long)sizeof(PyDictUnicodeEntry));
    put("dict_kind_general", (long)DICT_KEYS_GENERAL);
    put("dict_kind_split", (long)DICT_KEYS_SPLIT);
    OFF("dictentry_hash", PyDictKeyEntry, me_hash);
    OFF("dictentry_key", PyDictKeyEntry, me_key);
    OFF("dictentry_value", PyDictKeyEntry, me_value);
    OFF("dictunicode_key", PyDictUnicodeEntry, me_key);
    OFF("dictunicode_value", PyDictUnicodeEntry, me_value);
}

static void probe_opcodes(void)
{
    put("opcode_resume", (long)RESUME);
#ifdef INSTRUMENTED_RESUME
    put("opcode_instrumented_resume", (long)INSTRUMENTED_RESUME);
#else
    put("opcode_instrumented_resume", ABSENT);
#endif
#ifdef RESUME_QUICK
    put("opcode_resume_quick", (long)RESUME_QUICK); /* 3.11 specialised RESUME */
#else
    put("opcode_resume_quick", ABSENT);
#endif
}

/* The number of the one bit set in flag. */
static long probe_bit(unsigned long flag)
{
    long bit = 0;

    while (bit < 63 && !(flag & (1UL << bit)))
        bit++;
    return bit;
}

/* tp_flags bits (Include/object.h), as bit numbers. */
static void probe_tpflags(void)
{
#ifdef Py_TPFLAGS_INLINE_VALUES
    put("tpflag_inline_values", probe_bit(Py_TPFLAGS_INLINE_VALUES)); /* 3.13+ */
#else
    put("tpflag_inline_values", ABSENT);
#endif
    put("tpflag_managed_dict", probe_bit(Py_TPFLAGS_MANAGED_DICT));
    put("tpflag_heaptype", probe_bit(Py_TPFLAGS_HEAPTYPE));
    put("tpflag_long_subclass", probe_bit(Py_TPFLAGS_LONG_SUBCLASS));
    put("tpflag_list_subclass", probe_bit(Py_TPFLAGS_LIST_SUBCLASS));
    put("tpflag_tuple_subclass", probe_bit(Py_TPFLAGS_TUPLE_SUBCLASS));
    put("tpflag_bytes_subclass", probe_bit(Py_TPFLAGS_BYTES_SUBCLASS));
    put("tpflag_unicode_subclass", probe_bit(Py_TPFLAGS_UNICODE_SUBCLASS));
    put("tpflag_dict_subclass", probe_bit(Py_TPFLAGS_DICT_SUBCLASS));
    put("tpflag_base_exc_subclass", probe_bit(Py_TPFLAGS_BASE_EXC_SUBCLASS));
    put("tpflag_type_subclass", probe_bit(Py_TPFLAGS_TYPE_SUBCLASS));
}

/* _Py_DebugOffsets (internal/pycore_runtime.h), where the headers have it: its size and its
 * cookie's length, so that gen-layouts can check that DEBUG_OFFSETS starts at the right minor
 * and that its slot list fills the struct exactly. */
static void probe_debug_offsets(void)
{
#ifdef _Py_Debug_Cookie
    put("check_debug_offsets_size", (long)sizeof(_Py_DebugOffsets));
    put("check_debug_cookie_len", (long)strlen(_Py_Debug_Cookie));
#endif
}

int main(void)
{
    put("check_py_version_hex", (long)PY_VERSION_HEX);
    probe_runtime();
    probe_interp();
    probe_tstate();
    probe_frame();
    probe_code();
    probe_objects();
    probe_exceptions();
    probe_containers();
    probe_managed_dict();
    probe_growth();
    probe_tpflags();
    probe_opcodes();
    probe_debug_offsets();
    return 0;
}
