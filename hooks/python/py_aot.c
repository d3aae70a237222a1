/* Recomputed forward work inside a compiled backward (src/nf_plan.h), from the
 * Python side.
 *
 * AOTAutograd runs each compiled graph, forward and backward, through one function
 * that runtime_wrappers.py calls by its module-level name,
 * call_func_at_runtime_with_args(f, args, ...) (torch 2.5 to 2.15; run here on 2.6,
 * 2.8 and 2.15). The bootstrap puts the builtin made here in that name's place: a
 * builtin, so that no frame of the counter's is on the stack (tracebacks and
 * profilers of a backward are plain's). The
 * first time it meets a compiled function f, called from AOTAutograd's
 * _backward_impl, it asks the bootstrap for the plan of the backward graph that
 * frame has in reach (py_bootstrap_aot.py); from then on each call of f runs with
 * that plan entered on the thread, and the aten ops the observer counts there take
 * their pass from it (torch_loader.c). */
#include <stdint.h>

#include "../../src/nf_plan.h"
#include "py_natten_internal.h"
#include "py_state.h"

#define P nf_py

static const char capsule_name[] = "naflops.plan";

static void plan_free(PyObject *capsule) { nf_plan_free(P.PyCapsule_GetPointer(capsule, capsule_name)); }

/* The bootstrap's answer, ((name, ...), (recomputed, ...)) in graph order or None,
 * as a capsule holding the plan, or None. NULL with an error set. */
static PyObject *plan_capsule(PyObject *answer) {
    if (answer == P.None) return nf_py_none();
    PyObject *names = P.PySequence_GetItem(answer, 0);
    PyObject *flags = names ? P.PySequence_GetItem(answer, 1) : NULL;
    PyObject *capsule = NULL;
    Py_ssize_t n = flags ? P.PySequence_Size(names) : -1;
    nf_plan *plan = n >= 0 && P.PySequence_Size(flags) == n ? nf_plan_new((size_t)n) : NULL;
    bool ok = plan != NULL;
    for (Py_ssize_t i = 0; ok && i < n; i++) {
        PyObject *name = P.PySequence_GetItem(names, i), *flag = P.PySequence_GetItem(flags, i);
        const char *s = name ? P.PyUnicode_AsUTF8AndSize(name, NULL) : NULL;
        int recomputed = flag ? P.PyObject_IsTrue(flag) : -1;
        ok = s != NULL && recomputed >= 0 && nf_plan_set(plan, (size_t)i, s, recomputed == 1);
        if (name) P.Py_DecRef(name);
        if (flag) P.Py_DecRef(flag);
    }
    if (ok) capsule = P.PyCapsule_New(plan, capsule_name, plan_free);
    if (capsule == NULL) nf_plan_free(plan);
    if (names) P.Py_DecRef(names);
    if (flags) P.Py_DecRef(flags);
    return capsule;
}

/* The frame calling us is AOTAutograd's backward (its code is _backward_impl). */
static bool called_by_backward(PyObject *frame) {
    if (frame == NULL || P.PyFrame_GetCode == NULL) return false;
    PyObject *code = P.PyFrame_GetCode(frame);
    PyObject *name = code ? P.PyObject_GetAttrString(code, "co_name") : NULL;
    bool yes = name != NULL && P.PyUnicode_CompareWithASCIIString(name, "_backward_impl") == 0;
    if (name) P.Py_DecRef(name);
    if (code) P.Py_DecRef(code);
    return yes;
}

/* f's plan (NULL: none), found once per compiled function. state: (original,
 * backward_plan, plans); plans: id(f) -> (weakref to f or None, capsule or None).
 * An entry for a function that died is found stale through its weakref; a function
 * that takes no weakref keeps only a "no plan" answer. Never raises. */
static const nf_plan *plan_of(PyObject *state, PyObject *f) {
    PyObject *plans = P.PyTuple_GetItem(state, 2);
    PyObject *key = P.PyLong_FromLong((long)(intptr_t)f);
    const nf_plan *plan = NULL;
    if (key == NULL || plans == NULL) goto done;
    PyObject *entry = P.PyDict_GetItem(plans, key); /* borrowed */
    if (entry != NULL) {
        PyObject *weak = P.PyTuple_GetItem(entry, 0), *capsule = P.PyTuple_GetItem(entry, 1);
        bool alive = weak == P.None ? capsule == P.None : P.PyWeakref_GetObject(weak) == f;
        if (alive) {
            if (capsule != P.None) plan = P.PyCapsule_GetPointer(capsule, capsule_name);
            goto done;
        }
    }
    PyObject *frame = P.PyEval_GetFrame ? P.PyEval_GetFrame() : NULL; /* borrowed */
    PyObject *answer = called_by_backward(frame) ? nf_py_call1(P.PyTuple_GetItem(state, 1), frame) : nf_py_none();
    PyObject *capsule = answer ? plan_capsule(answer) : NULL;
    if (answer) P.Py_DecRef(answer);
    if (capsule == NULL) {
        P.PyErr_Clear();
        capsule = nf_py_none();
    }
    PyObject *weak = P.PyWeakref_NewRef ? P.PyWeakref_NewRef(f, NULL) : NULL;
    if (weak == NULL) {
        P.PyErr_Clear();
        if (capsule != P.None) { /* a plan needs a weakref to be told from a reused id */
            P.Py_DecRef(capsule);
            capsule = nf_py_none();
        }
        weak = nf_py_none();
    }
    PyObject *items[2] = {weak, capsule};
    PyObject *value = nf_py_tuple_of(items, 2);
    if (value != NULL && P.PyDict_SetItem(plans, key, value) == 0 && capsule != P.None)
        plan = P.PyCapsule_GetPointer(capsule, capsule_name);
    if (value) P.Py_DecRef(value);
    P.Py_DecRef(weak);
    P.Py_DecRef(capsule);
done:
    if (key) P.Py_DecRef(key);
    P.PyErr_Clear();
    return plan;
}

/* call_func_at_runtime_with_args(f, args, ...): the original, with f's plan entered. */
static PyObject *run_call(PyObject *state, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    const nf_plan *plan = nargs >= 1 ? plan_of(state, args[0]) : NULL;
    bool entered = plan != NULL && nf_plan_enter(plan);
    nf_py_aot_depth++;
    PyObject *r = P.PyObject_Vectorcall(P.PyTuple_GetItem(state, 0), args, (size_t)nargs, kwnames);
    nf_py_aot_depth--;
    if (entered) nf_plan_leave();
    return r;
}

static nf_py_method_def run_def = {"call_func_at_runtime_with_args", (void *)run_call,
                                   NF_METH_FASTCALL | NF_METH_KEYWORDS, NULL};

/* aot_runner(original, backward_plan) -> the builtin above, or None when this
 * CPython lacks what it needs. */
PyObject *nf_py_aot_runner(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 2 || P.PyObject_Vectorcall == NULL || P.PyWeakref_NewRef == NULL ||
        P.PyWeakref_GetObject == NULL || P.PyEval_GetFrame == NULL || P.PyFrame_GetCode == NULL)
        return nf_py_none();
    PyObject *plans = P.PyDict_New();
    if (plans == NULL) return NULL;
    PyObject *items[3] = {args[0], args[1], plans};
    PyObject *state = nf_py_tuple_of(items, 3);
    P.Py_DecRef(plans);
    if (state == NULL) return NULL;
    PyObject *fn = P.PyCFunction_NewEx(&run_def, state, NULL);
    P.Py_DecRef(state);
    return fn;
}
