/* NAFLOPS_STEP's function (or torch.autograd.backward for NAFLOPS_STEP=backward): the
 * bootstrap wraps it as it wraps NATTEN's entry points (py_bootstrap_step.py); its
 * `hot` builtin passes the call on unchanged and, when the outermost call on this
 * thread returns, ends a step. */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "../../src/nf_core.h"
#include "../../src/nf_log.h"
#include "../../src/nf_step.h"
#include "py_state.h"

#define P nf_py

static _Thread_local int depth;

static PyObject *step_call(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    PyObject *original = P.PyCapsule_GetPointer(self, "naflops.step");
    if (original == NULL) return NULL;
    Py_ssize_t nargs = nf_py_nargs(nargsf);
    depth++;
    PyObject *r = nf_py_call_vector(original, args, nargs, kwnames);
    depth--;
    if (depth == 0 && r != NULL) nf_step_call_end();
    return r;
}

static nf_py_method_def step_def = {"naflops_step", (void *)step_call, NF_METH_FASTCALL | NF_METH_KEYWORDS,
                                    NULL};

/* step_target() -> (module, qualname) to wrap, or None. */
static PyObject *py_step_target(PyObject *self, PyObject *unused) {
    (void)self, (void)unused;
    const nf_config *cfg = nf_core_config();
    const char *module = NULL, *qualname = NULL;
    if (cfg->step == NF_STEP_BACKWARD) module = "torch.autograd", qualname = "backward";
    else if (cfg->step == NF_STEP_FUNCTION) module = cfg->step_module, qualname = cfg->step_qualname;
    if (module == NULL) return nf_py_none();
    PyObject *m = P.PyUnicode_FromString(module), *q = P.PyUnicode_FromString(qualname);
    PyObject *pair = m && q ? P.PyTuple_New(2) : NULL;
    if (pair == NULL) {
        if (m) P.Py_DecRef(m);
        if (q) P.Py_DecRef(q);
        return NULL;
    }
    P.PyTuple_SetItem(pair, 0, m);
    P.PyTuple_SetItem(pair, 1, q);
    return pair;
}

/* step_make(original) -> the builtin its wrapper calls: original's call, then a step
 * boundary. The original is kept for the life of the process. */
static PyObject *py_step_make(PyObject *self, PyObject *original) {
    (void)self;
    P.Py_IncRef(original);
    PyObject *cap = P.PyCapsule_New(original, "naflops.step", NULL);
    PyObject *fn = cap ? P.PyCFunction_NewEx(&step_def, cap, NULL) : NULL;
    if (cap) P.Py_DecRef(cap);
    if (fn != NULL) nf_step_target_found();
    return fn;
}

/* step_failed(why): NAFLOPS_STEP's function could not be wrapped: said once. */
static PyObject *py_step_failed(PyObject *self, PyObject *why) {
    (void)self;
    static atomic_bool said;
    const char *s = P.PyUnicode_AsUTF8AndSize(why, NULL);
    const nf_config *cfg = nf_core_config();
    nf_log_once(&said, "NAFLOPS_STEP=%s:%s: %s; no steps are counted", cfg->step_module,
                cfg->step_qualname, s ? s : "?");
    P.PyErr_Clear();
    return nf_py_none();
}

nf_py_method_def nf_py_step_defs[3] = {
    {"step_failed", (void *)py_step_failed, NF_METH_O, NULL},
    {"step_target", (void *)py_step_target, NF_METH_NOARGS, NULL},
    {"step_make", (void *)py_step_make, NF_METH_O, NULL},
};
