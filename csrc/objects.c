/* objects.c — pyraftlog._objects: the one place C touches Python objects.
 *
 * The engine's core is a cffi module that sees only bytes and integers; two
 * loops over Python objects are too slow in Python and live here instead:
 *
 *   encode_entries(buf, group, entries, entry_type) -> int
 *       Appends one ENTRY record (docs/FORMAT.md) per Entry to the bytearray
 *       `buf`, if every entry is an exact `entry_type` whose fields are exact
 *       ints and bytes in range with consecutive indexes (what batch.py's fast
 *       path accepts).  Returns the number appended, or -1 having appended
 *       nothing when any entry is not like that: batch.py then checks them
 *       one by one and raises the error the contract names.
 *
 *   make_entries(entry_type, lo, terms, lens, auxs, data) -> list
 *       The Entry objects of one read: entry k has index lo + k, terms[k]
 *       (uint64 buffer), auxs[k] (uint8 buffer) and the next lens[k] (uint32
 *       buffer) bytes of `data`.  Every length is checked against the
 *       buffers; a mismatch is a ValueError.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "format.h"

static int u64_of(PyObject *o, uint64_t *out) {
    if (!PyLong_CheckExact(o)) return 0;
    unsigned long long v = PyLong_AsUnsignedLongLong(o);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear(); /* negative or too large: the slow path says so */
        return 0;
    }
    *out = v;
    return 1;
}

static PyObject *encode_entries(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *buf, *group_obj, *entries, *entry_type;
    if (!PyArg_ParseTuple(args, "O!OOO", &PyByteArray_Type, &buf, &group_obj, &entries,
                          &entry_type))
        return NULL;
    uint64_t group;
    if (!u64_of(group_obj, &group) || !PyList_CheckExact(entries)) return PyLong_FromLong(-1);
    Py_ssize_t n = PyList_GET_SIZE(entries);
    /* first pass: check everything and size the records */
    uint64_t total = 0, prev = 0;
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *e = PyList_GET_ITEM(entries, k);
        if ((PyObject *)Py_TYPE(e) != entry_type || PyTuple_GET_SIZE(e) != 4)
            return PyLong_FromLong(-1);
        uint64_t index, term, etype;
        PyObject *data = PyTuple_GET_ITEM(e, 2);
        if (!u64_of(PyTuple_GET_ITEM(e, 0), &index) || !u64_of(PyTuple_GET_ITEM(e, 1), &term) ||
            !u64_of(PyTuple_GET_ITEM(e, 3), &etype) || etype > 255 || !PyBytes_CheckExact(data) ||
            (uint64_t)PyBytes_GET_SIZE(data) > UINT32_MAX || (k && index != prev + 1))
            return PyLong_FromLong(-1);
        prev = index;
        total += prl_record_size((uint64_t)PyBytes_GET_SIZE(data));
    }
    Py_ssize_t at = PyByteArray_GET_SIZE(buf);
    if (total > (uint64_t)(PY_SSIZE_T_MAX - at)) return PyLong_FromLong(-1);
    if (PyByteArray_Resize(buf, at + (Py_ssize_t)total) < 0) return NULL;
    uint8_t *dst = (uint8_t *)PyByteArray_AS_STRING(buf) + at;
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *e = PyList_GET_ITEM(entries, k);
        PyObject *data = PyTuple_GET_ITEM(e, 2);
        uint32_t len = (uint32_t)PyBytes_GET_SIZE(data);
        struct prl_record_header h = {PRL_REC_ENTRY,
                                      (uint8_t)PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(e, 3)),
                                      0, len, group,
                                      PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(e, 0)),
                                      PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(e, 1))};
        memcpy(dst, &h, sizeof h);
        memcpy(dst + sizeof h, PyBytes_AS_STRING(data), len);
        uint64_t size = prl_record_size(len);
        memset(dst + sizeof h + len, 0, size - sizeof h - len);
        dst += size;
    }
    return PyLong_FromSsize_t(n);
}

static PyObject *make_entries(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *entry_type;
    unsigned long long lo;
    Py_buffer terms, lens, auxs, data;
    if (!PyArg_ParseTuple(args, "OKy*y*y*y*", &entry_type, &lo, &terms, &lens, &auxs, &data))
        return NULL;
    PyObject *out = NULL;
    PyTypeObject *tp = (PyTypeObject *)entry_type;
    Py_ssize_t n = terms.len / 8;
    if (!PyType_Check(entry_type) || !PyType_IsSubtype(tp, &PyTuple_Type) || terms.len % 8 ||
        lens.len != n * 4 || auxs.len != n) {
        PyErr_SetString(PyExc_ValueError, "make_entries: buffers of different lengths");
        goto done;
    }
    const uint64_t *t = terms.buf;
    const uint32_t *l = lens.buf;
    const uint8_t *a = auxs.buf, *d = data.buf;
    uint64_t off = 0;
    for (Py_ssize_t k = 0; k < n; k++) off += l[k];
    if (off != (uint64_t)data.len) {
        PyErr_SetString(PyExc_ValueError, "make_entries: lengths do not add up to the data");
        goto done;
    }
    out = PyList_New(n);
    if (!out) goto done;
    off = 0;
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *e = tp->tp_alloc(tp, 4);
        PyObject *f[4] = {PyLong_FromUnsignedLongLong(lo + (unsigned long long)k),
                          PyLong_FromUnsignedLongLong(t[k]),
                          PyBytes_FromStringAndSize((const char *)d + off, l[k]),
                          PyLong_FromLong(a[k])};
        off += l[k];
        if (!e || !f[0] || !f[1] || !f[2] || !f[3]) {
            Py_XDECREF(e);
            for (int j = 0; j < 4; j++) Py_XDECREF(f[j]);
            Py_CLEAR(out);
            goto done;
        }
        for (int j = 0; j < 4; j++) PyTuple_SET_ITEM(e, j, f[j]);
        PyList_SET_ITEM(out, k, e);
    }
done:
    PyBuffer_Release(&terms);
    PyBuffer_Release(&lens);
    PyBuffer_Release(&auxs);
    PyBuffer_Release(&data);
    return out;
}

static PyMethodDef methods[] = {
    {"encode_entries", encode_entries, METH_VARARGS,
     "encode_entries(buf, group, entries, entry_type) -> records appended, or -1"},
    {"make_entries", make_entries, METH_VARARGS,
     "make_entries(entry_type, lo, terms, lens, auxs, data) -> list of entry_type"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "pyraftlog._objects",
                                    "Python objects to and from records (csrc/objects.c).", -1,
                                    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__objects(void) { return PyModule_Create(&module); }
