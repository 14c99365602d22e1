/* SPDX-License-Identifier: MIT */
/*
 * A tiny C extension for the --native tests (tests/integration/test_native.py builds it with the
 * tested interpreter's headers): call(fn) calls a Python function from C, so the C stack holds
 * two entries into the eval loop; block(fd) releases the GIL and blocks in read(2) on a pipe
 * that is never written, so the thread parks inside a C function of its own.
 */
#include <Python.h>
#include <unistd.h>

static PyObject *nat_call(PyObject *self, PyObject *fn)
{
    PyObject *r;

    (void)self;
    r = PyObject_CallNoArgs(fn);
    __asm__ volatile("" ::: "memory"); /* keep this frame: no tail call */
    return r;
}

static PyObject *nat_block(PyObject *self, PyObject *arg)
{
    long fd = PyLong_AsLong(arg);
    char c;
    ssize_t got;

    (void)self;
    if (fd < 0 && PyErr_Occurred())
        return NULL;
    Py_BEGIN_ALLOW_THREADS got = read((int)fd, &c, 1);
    Py_END_ALLOW_THREADS __asm__ volatile("" ::: "memory");
    return PyLong_FromSsize_t(got);
}

static PyMethodDef nat_methods[] = {
    {"call", nat_call, METH_O, "call fn() from C"},
    {"block", nat_block, METH_O, "read one byte from fd without the GIL"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef nat_module = {
    PyModuleDef_HEAD_INIT, "natblock", NULL, -1, nat_methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit_natblock(void)
{
    return PyModule_Create(&nat_module);
}
