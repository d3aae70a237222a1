/* The Python adapter's shared state: the wrapped functions, what it took from torch
 * and NATTEN, interned names, small call helpers and the pass of a forward call.
 * Every other py_*.c file reads it; it calls none of them. */
#include "py_state.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "../../src/nf_intern.h"
#include "py_api.h"

#define P nf_py

#define NF_MAX_WRAPS 256
static nf_wrap *wraps[NF_MAX_WRAPS];
static int nwraps;

nf_wrap *nf_py_wrap(long token) { return token >= 0 && token < nwraps ? wraps[token] : NULL; }

int nf_py_wrap_count(void) { return nwraps; }

long nf_py_wrap_add(nf_wrap *w) {
    if (nwraps >= NF_MAX_WRAPS) return -1;
    wraps[nwraps] = w;
    return nwraps++;
}

bool nf_py_wraps_full(void) { return nwraps >= NF_MAX_WRAPS; }

_Thread_local nf_py_frame nf_py_eager;

bool nf_py_eager_active(void) { return nf_py_eager.depth > 0; }

void nf_py_eager_note_backend(const char *backend) {
    if (nf_py_eager.depth > 0) nf_py_eager.backend = nf_py_join_backend(nf_py_eager.backend, backend);
}

nf_py_torch_refs nf_py_torch;
nf_py_strings nf_py_str;
nf_py_release_ids nf_py_release;

PyObject *nf_py_call0(PyObject *fn) {
    return P.PyObject_Vectorcall ? P.PyObject_Vectorcall(fn, NULL, 0, NULL) : P.PyObject_CallObject(fn, NULL);
}

/* A new tuple of n borrowed objects (each given a reference), or NULL. */
PyObject *nf_py_tuple_of(PyObject *const *items, Py_ssize_t n) {
    PyObject *t = P.PyTuple_New(n);
    for (Py_ssize_t i = 0; t != NULL && i < n; i++) {
        P.Py_IncRef(items[i]);
        P.PyTuple_SetItem(t, i, items[i]);
    }
    return t;
}

/* Calls fn with npos positional arguments, then the values of kwnames (or NULL). */
PyObject *nf_py_call_vector(PyObject *fn, PyObject *const *args, Py_ssize_t npos, PyObject *kwnames) {
    if (P.PyObject_Vectorcall != NULL) return P.PyObject_Vectorcall(fn, args, (size_t)npos, kwnames);
    /* CPython without an exported vectorcall: build a tuple and a dict. */
    Py_ssize_t nkw = kwnames ? P.PyTuple_Size(kwnames) : 0;
    PyObject *tuple = nf_py_tuple_of(args, npos), *kwargs = NULL, *r = NULL;
    if (tuple == NULL) return NULL;
    if (nkw > 0 && (kwargs = P.PyDict_New()) != NULL)
        for (Py_ssize_t j = 0; j < nkw; j++)
            P.PyDict_SetItem(kwargs, P.PyTuple_GetItem(kwnames, j), args[npos + j]);
    if (nkw == 0 || kwargs != NULL) r = P.PyObject_Call(fn, tuple, kwargs);
    P.Py_DecRef(tuple);
    if (kwargs) P.Py_DecRef(kwargs);
    return r;
}

PyObject *nf_py_call1(PyObject *fn, PyObject *a) {
    if (P.PyObject_Vectorcall) return P.PyObject_Vectorcall(fn, &a, 1, NULL);
    PyObject *t = nf_py_tuple_of(&a, 1), *r = NULL;
    if (t == NULL) return NULL;
    r = P.PyObject_CallObject(fn, t);
    P.Py_DecRef(t);
    return r;
}

/* ------------------------------------------------------------ passes */

uint8_t nf_py_forward_pass(void) {
    if (nf_py_torch.graph_task_id == NULL) return NF_PASS_FORWARD;
    PyObject *id = nf_py_call0(nf_py_torch.graph_task_id);
    long long v = id ? P.PyLong_AsLongLong(id) : -1;
    if (id) P.Py_DecRef(id);
    P.PyErr_Clear();
    return v >= 0 ? NF_PASS_RECOMPUTE : NF_PASS_FORWARD;
}

uint16_t nf_py_version(void) { return nf_py_release.version; }

uint16_t nf_py_default_backend(void) { return nf_py_release.legacy ? nf_py_release.libnatten : NF_INTERN_NONE; }

uint16_t nf_py_join_backend(uint16_t current, const char *backend) {
    uint16_t id = nf_intern(backend);
    if (current == NF_INTERN_NONE || current == id) return id;
    const char *first = nf_intern_str(current);
    if (strstr(first, backend) != NULL) return current; /* already in "a+b" */
    char both[128];
    snprintf(both, sizeof both, "%s+%s", first, backend);
    return nf_intern(both);
}
