/* Counting a NATTEN function with no frame of ours, on CPython 3.12 and later.
 *
 * The function object is left as it is (identity, code, attributes, signature); only
 * its vectorcall slot (PyFunction_SetVectorcall, 3.12's API) points here. A call
 * binds its arguments as CPython would, counts exactly as the generated wrapper's
 * eager path does (nf_py_counted_call), and runs the function's own code through a
 * twin: a second function object sharing its code, globals, closure and defaults,
 * with the default vectorcall. The frame that runs is the original's code, and an
 * exception passes through C only, so tracebacks, pdb, sys.settrace, sys.setprofile,
 * cProfile and TorchScript see what they see without the preload.
 *
 * 3.11 inlines Python-to-Python calls without reading the slot, and 3.10 has no
 * setter: there the bootstrap keeps the generated wrapper (README says what shows).
 * Dynamo never calls the slot: it traces bytecode, and the bootstrap hands it the
 * wrapper's traced twin instead (py_bootstrap_dynamo.py: route_functions). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "py_natten_internal.h"
#include "py_state.h"

#define P nf_py
#define NF_HOOK_MAX_PARAMS 48
#define NF_HOOK_SLOTS 256 /* a power of two, above the target table's size */

/* original -> its wrap; open addressing on the pointer, written only at import. */
static struct {
    PyObject *fn;
    nf_wrap *w;
} slots[NF_HOOK_SLOTS];

static size_t slot_of(PyObject *fn) {
    return ((uintptr_t)fn >> 4) * 0x9E3779B97F4A7C15ull >> 56 & (NF_HOOK_SLOTS - 1);
}

static nf_wrap *wrap_of(PyObject *fn) {
    for (size_t i = slot_of(fn), n = 0; n < NF_HOOK_SLOTS; i = (i + 1) & (NF_HOOK_SLOTS - 1), n++) {
        if (slots[i].fn == fn) return slots[i].w;
        if (slots[i].fn == NULL) return NULL;
    }
    return NULL;
}

static bool remember(PyObject *fn, nf_wrap *w) {
    for (size_t i = slot_of(fn), n = 0; n < NF_HOOK_SLOTS; i = (i + 1) & (NF_HOOK_SLOTS - 1), n++)
        if (slots[i].fn == NULL) {
            slots[i].w = w;
            slots[i].fn = fn;
            return true;
        }
    return false;
}

/* The twin follows the original (a program may set __defaults__, __kwdefaults__ or
 * __code__ after import; globals and closure cannot change). Pointer compares, a set
 * only when the program set something. */
static void follow(PyObject *fn, PyObject *twin) {
    PyObject *code = P.PyFunction_GetCode(fn);
    if (code != P.PyFunction_GetCode(twin) && P.PyObject_SetAttrString != NULL)
        P.PyObject_SetAttrString(twin, "__code__", code);
    PyObject *d = P.PyFunction_GetDefaults(fn), *k = P.PyFunction_GetKwDefaults(fn);
    if (d != P.PyFunction_GetDefaults(twin)) P.PyFunction_SetDefaults(twin, d ? d : P.None);
    if (k != P.PyFunction_GetKwDefaults(twin)) P.PyFunction_SetKwDefaults(twin, k ? k : P.None);
    P.PyErr_Clear();
}

static int index_of(const nf_wrap *w, PyObject *name) {
    Py_ssize_t n = P.PyTuple_Size(w->names);
    for (Py_ssize_t i = 0; i < n; i++) /* names are interned: identity first */
        if (P.PyTuple_GetItem(w->names, i) == name) return (int)i;
    for (Py_ssize_t i = 0; i < n; i++)
        if (P.PyUnicode_Compare(P.PyTuple_GetItem(w->names, i), name) == 0) return (int)i;
    P.PyErr_Clear();
    return -1;
}

/* Every parameter of the call, as CPython would bind it (borrowed: from args, the
 * defaults or the keyword defaults). False for a call CPython rejects: it is passed
 * on as it is, uncounted, for the original to raise its own TypeError. */
static bool bind(const nf_wrap *w, PyObject *fn, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                 PyObject **bound) {
    if (nargs > w->npos) return false;
    for (int i = 0; i < w->nparams; i++) bound[i] = i < nargs ? args[i] : NULL;
    Py_ssize_t nkw = kwnames ? P.PyTuple_Size(kwnames) : 0;
    for (Py_ssize_t j = 0; j < nkw; j++) {
        int i = index_of(w, P.PyTuple_GetItem(kwnames, j));
        if (i < w->nposonly || bound[i] != NULL) return false;
        bound[i] = args[nargs + j];
    }
    PyObject *defaults = P.PyFunction_GetDefaults(fn), *kwdefaults = P.PyFunction_GetKwDefaults(fn);
    Py_ssize_t nd = defaults ? P.PyTuple_Size(defaults) : 0;
    for (int i = 0; i < w->nparams; i++) {
        if (bound[i] != NULL) continue;
        if (i < w->npos) {
            Py_ssize_t k = i - (w->npos - nd);
            bound[i] = k >= 0 ? P.PyTuple_GetItem(defaults, k) : NULL;
        } else if (kwdefaults != NULL) {
            bound[i] = P.PyDict_GetItem(kwdefaults, P.PyTuple_GetItem(w->names, i));
        }
        if (bound[i] == NULL) return false;
    }
    return true;
}

typedef struct twin_call {
    PyObject *twin;
    PyObject *const *args;
    size_t nargsf;
    PyObject *kwnames;
} twin_call;

static PyObject *invoke_twin(void *ctx) {
    const twin_call *c = ctx;
    return P.PyObject_Vectorcall(c->twin, c->args, c->nargsf, c->kwnames);
}

/* The hooked function's vectorcall. The program's own arguments go to the twin as
 * they came; the bound copy is only read. */
static PyObject *hooked_call(PyObject *fn, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    nf_wrap *w = wrap_of(fn);
    if (w == NULL || w->twin == NULL) { /* cannot happen: the slot is set after remember() */
        P.PyErr_Clear();
        return NULL;
    }
    PyObject *twin = w->twin;
    follow(fn, twin);
    twin_call c = {twin, args, nargsf, kwnames};
    Py_ssize_t nargs = nf_py_nargs(nargsf);
    PyObject *bound[NF_HOOK_MAX_PARAMS];
    /* The defaults the bound copy borrows from stay alive through the call. */
    PyObject *defaults = P.PyFunction_GetDefaults(fn), *kwdefaults = P.PyFunction_GetKwDefaults(fn);
    if (defaults) P.Py_IncRef(defaults);
    if (kwdefaults) P.Py_IncRef(kwdefaults);
    P.Py_IncRef(twin);
    PyObject *r = bind(w, fn, args, nargs, kwnames, bound) ? nf_py_counted_call(w, bound, invoke_twin, &c)
                                                           : invoke_twin(&c);
    P.Py_DecRef(twin);
    if (kwdefaults) P.Py_DecRef(kwdefaults);
    if (defaults) P.Py_DecRef(defaults);
    return r;
}

PyObject *nf_py_twin_of(PyObject *fn) {
    PyObject *qualname = P.PyObject_GetAttrString(fn, "__qualname__");
    PyObject *twin = qualname ? P.PyFunction_NewWithQualName(P.PyFunction_GetCode(fn), P.PyFunction_GetGlobals(fn),
                                                             qualname)
                              : NULL;
    if (qualname) P.Py_DecRef(qualname);
    if (twin == NULL) return NULL;
    PyObject *closure = P.PyFunction_GetClosure(fn);
    if (closure != NULL && P.PyFunction_SetClosure(twin, closure) != 0) {
        P.Py_DecRef(twin);
        return NULL;
    }
    follow(fn, twin);
    return twin;
}

bool nf_py_can_hook_calls(void) {
    return P.PyFunction_SetVectorcall && P.PyFunction_NewWithQualName && P.PyFunction_GetCode &&
           P.PyFunction_GetGlobals && P.PyFunction_GetDefaults && P.PyFunction_SetDefaults &&
           P.PyFunction_GetKwDefaults && P.PyFunction_SetKwDefaults && P.PyFunction_GetClosure &&
           P.PyFunction_SetClosure && P.PyUnicode_Compare && P.PyObject_Vectorcall;
}

/* hook(original, token, n_positional_only) -> the twin (Dynamo's traced path runs
 * it), or None where this CPython cannot (the bootstrap then wraps). */
PyObject *nf_py_hook_calls(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 3 || !nf_py_can_hook_calls()) return nf_py_none();
    nf_wrap *w = nf_py_wrap((long)P.PyLong_AsLongLong(args[1]));
    long long nposonly = P.PyLong_AsLongLong(args[2]);
    P.PyErr_Clear();
    if (w == NULL || w->original != args[0] || w->names == NULL || w->nparams > NF_HOOK_MAX_PARAMS ||
        P.PyTuple_Size(w->names) != w->nparams || nposonly < 0 || nposonly > w->npos || wrap_of(args[0]) != NULL)
        return nf_py_none();
    PyObject *twin = nf_py_twin_of(args[0]);
    if (twin == NULL || !remember(args[0], w)) {
        if (twin) P.Py_DecRef(twin);
        P.PyErr_Clear();
        return nf_py_none();
    }
    w->nposonly = (int)nposonly;
    w->twin = twin; /* kept for the process's life, as the wrap is */
    P.PyFunction_SetVectorcall(args[0], (void *)hooked_call);
    P.Py_IncRef(twin);
    return twin;
}

/* code_of(function) -> its code object, read without the "object.__getattr__" audit
 * event that reading __code__ in Python raises; None where it is not a function. */
PyObject *nf_py_code_of(PyObject *self, PyObject *fn) {
    (void)self;
    PyObject *code = P.PyFunction_GetCode != NULL ? P.PyFunction_GetCode(fn) : NULL; /* borrowed */
    if (code == NULL) {
        P.PyErr_Clear();
        return nf_py_none();
    }
    P.Py_IncRef(code);
    return code;
}
