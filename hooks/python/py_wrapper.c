/* The eager call path: a wrapped NATTEN function's `hot` builtin. It binds nothing
 * (the generated Python function passes every parameter), reads the shapes without a
 * trace a TorchFunctionMode could see, calls the original inside the op's scope (what
 * it runs is its own), and counts the call once it returned. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/nf_intern.h"
#include "../../src/nf_ledger.h"
#include "../../src/nf_scope.h"
#include "py_args.h"
#include "py_module.h"
#include "py_state.h"
#include "../torch/tensor_meta.h"

#define P nf_py

/* Reading a tensor's shape, dtype or grad_fn goes through __torch_function__ when a
 * TorchFunctionMode is active or the tensor is a subclass: the program's mode would
 * see the counter's reads. Those reads then run with torch function disabled.
 * needs_guard decides once per call; guard_enter/leave bracket each group of reads. */
static bool needs_guard(PyObject *type) {
    if (type != nf_py_torch.tensor_type) return true;
    const nf_tensor_reader *r = nf_args_reader();
    if (r != NULL) return r->function_mode();
    if (nf_py_torch.mode_enabled == NULL) return false;
    PyObject *on = nf_py_call0(nf_py_torch.mode_enabled);
    bool needed = on == P.True;
    if (on) P.Py_DecRef(on);
    else P.PyErr_Clear();
    return needed;
}

static PyObject *guard_enter(bool needed) {
    if (!needed || nf_py_torch.disable_tf == NULL) return NULL;
    PyObject *ctx = nf_py_call0(nf_py_torch.disable_tf);
    PyObject *r = ctx ? P.PyObject_CallMethodObjArgs(ctx, nf_py_str.enter, NULL) : NULL;
    if (r == NULL) {
        if (ctx) P.Py_DecRef(ctx);
        P.PyErr_Clear();
        return NULL;
    }
    P.Py_DecRef(r);
    return ctx;
}

static void guard_leave(PyObject *ctx) {
    if (ctx == NULL) return;
    PyObject *et, *ev, *tb;
    P.PyErr_Fetch(&et, &ev, &tb);
    PyObject *r = P.PyObject_CallMethodObjArgs(ctx, nf_py_str.exit, P.None, P.None, P.None, NULL);
    if (r) P.Py_DecRef(r);
    P.Py_DecRef(ctx);
    P.PyErr_Clear();
    P.PyErr_Restore(et, ev, tb);
}

/* Tensors that do no work: FakeTensorMode's and functionalization's (tracing, export);
 * meta tensors are told by their device. Plain tensors are told apart by their exact
 * type, for free. */
static bool does_no_work(PyObject *type) {
    if (type == nf_py_torch.tensor_type) return false;
    bool none = false;
    PyObject *name = P.PyObject_GetAttr(type, nf_py_str.name);
    if (name != NULL) {
        none = P.PyUnicode_CompareWithASCIIString(name, "FakeTensor") == 0 ||
               P.PyUnicode_CompareWithASCIIString(name, "FunctionalTensor") == 0;
        P.Py_DecRef(name);
    }
    P.PyErr_Clear();
    return none;
}

/* ------------------------------------------------------------ the wrapper */

/* The original, with every parameter bound: keyword-only ones by keyword. */
static PyObject *call_original(const nf_wrap *w, PyObject *const *args) {
    return nf_py_call_vector(w->original, args, w->npos, w->nparams > w->npos ? w->kwnames : NULL);
}

static void argv_of(const nf_wrap *w, PyObject *const *args, nf_argv *a) {
    for (int r = 0; r < NF_ROLE_COUNT; r++) {
        int p = w->pos[r];
        a->v[r] = p >= 0 && p < w->nparams && args[p] != P.None ? args[p] : NULL;
        a->d[r] = NULL;
    }
}

/* Whether an exception type is torch.utils.checkpoint's early stop: raised from a
 * saved-tensor hook inside the op once the recomputation has what it needs, so the
 * op's work was done. Call with no exception set. */
bool nf_py_is_stop_recomputation(PyObject *type) {
    bool stop = false;
    PyObject *name = type ? P.PyObject_GetAttr(type, nf_py_str.name) : NULL;
    if (name) {
        stop = P.PyUnicode_CompareWithASCIIString(name, "_StopRecomputationError") == 0;
        P.Py_DecRef(name);
    }
    P.PyErr_Clear();
    return stop;
}

/* A call on nested tensors (NATTEN 0.17: batches of different shapes in one call, no
 * autograd) is counted component by component, each as a call of its own shape:
 * the rule applied to what each component's kernels computed. False: not nested, or a
 * component could not be read. */
static bool count_nested(const nf_wrap *w, PyObject *const *args) {
    if (nf_py_torch.nested_parts == NULL) return false;
    PyObject *tuple = nf_py_tuple_of(args, w->nparams);
    if (tuple == NULL) return false;
    PyObject *parts = nf_py_call1(nf_py_torch.nested_parts, tuple);
    P.Py_DecRef(tuple);
    bool ok = parts != NULL && parts != P.None;
    Py_ssize_t n = ok ? P.PySequence_Size(parts) : 0;
    nf_key keys[64];
    ok = ok && n > 0 && n <= 64;
    for (Py_ssize_t i = 0; ok && i < n; i++) {
        PyObject *part = P.PySequence_GetItem(parts, i);
        nf_argv a;
        if (part == NULL) {
            ok = false;
            break;
        }
        PyObject *items[64];
        Py_ssize_t np = P.PyTuple_Size(part);
        for (Py_ssize_t j = 0; j < np && j < 64; j++) items[j] = P.PyTuple_GetItem(part, j);
        argv_of(w, items, &a);
        ok = np == w->nparams && nf_py_key(w, &a, &keys[i]) == 0;
        P.Py_DecRef(part);
    }
    if (parts) P.Py_DecRef(parts);
    P.PyErr_Clear();
    uint16_t module = ok ? nf_py_module_here() : NF_INTERN_NONE;
    for (Py_ssize_t i = 0; ok && i < n; i++) {
        keys[i].module = module;
        nf_py_count(w, &keys[i], nf_py_default_backend(), NULL, 0);
    }
    return ok;
}

/* Whether the call ran NATTEN's jvp too: a forward-mode AD level is open and one of
 * its tensors carries a tangent (the level is read first: one dict lookup). */
static bool in_jvp(const nf_argv *a) {
    static PyObject *s_level;
    if (nf_py_torch.forward_ad == NULL || nf_py_torch.has_tangent == NULL) return false;
    if (s_level == NULL && (s_level = P.PyUnicode_InternFromString("_current_level")) == NULL) return false;
    /* the module's dict, borrowed: no dual level open is the cached int -1, by identity */
    PyObject *level = P.PyDict_GetItem(nf_py_torch.forward_ad, s_level);
    if (level == NULL || level == nf_py_torch.minus_one) return false;
    long long l = P.PyLong_AsLongLong(level);
    P.PyErr_Clear();
    if (l < 0) return false;
    PyObject *ts[4] = {a->v[NF_ROLE_QUERY], a->v[NF_ROLE_ATTN], a->v[NF_ROLE_KEY], a->v[NF_ROLE_VALUE]};
    bool any = false;
    for (int i = 0; i < 4 && !any; i++) {
        if (ts[i] == NULL) continue;
        PyObject *r = nf_py_call1(nf_py_torch.has_tangent, ts[i]);
        any = r == P.True;
        if (r) P.Py_DecRef(r);
    }
    P.PyErr_Clear();
    return any;
}

/* QK's output holds the window (plus the extra keys) for every query: the truth
 * where the arguments follow a convention the table does not know. */
static void check_qk_output(const nf_wrap *w, nf_key *key, PyObject *result) {
    int64_t shape[NF_MAX_RANK];
    uint8_t rank;
    if (nf_args_shape_of(result, nf_py_torch.tensor_type, shape, &rank) == 0 && rank == key->problem.na_dim + 3)
        nf_py_check_window(w, key, shape[rank - 1]);
    P.PyErr_Clear();
}

/* The eager path: args holds every parameter bound, in signature order (borrowed);
 * invoke(ctx) makes the call itself. */
PyObject *nf_py_counted_call(const nf_wrap *w, PyObject *const *args, nf_py_invoke invoke, void *ctx) {
    if (nf_py_eager.depth == 0 && w->target->backend == NULL)
        nf_py_eager.epoch++; /* a compiled call left open cannot hold this one */
    if (w->target->backend != NULL || nf_py_eager.depth > 0) {
        /* A backend marker, or a NATTEN call inside a counted op: count nothing. */
        if (w->target->backend != NULL && nf_py_eager.depth > 0)
            nf_py_eager.backend = nf_py_join_backend(nf_py_eager.backend, w->target->backend);
        else if (w->target->backend != NULL)
            nf_py_compiled_note_backend(w->target->backend);
        return invoke(ctx);
    }

    nf_argv a;
    argv_of(w, args, &a);
    PyObject *first = a.v[w->target->kind == NF_KIND_AV ? NF_ROLE_ATTN : NF_ROLE_QUERY];
    bool guarded = false;
    if (first != NULL) {
        PyObject *type = P.PyObject_Type(first);
        bool idle = type != NULL && does_no_work(type);
        guarded = type != NULL && needs_guard(type);
        if (type) P.Py_DecRef(type);
        if (idle) return invoke(ctx);
    }

    /* Read the arguments first (no side effects), count only once the call succeeded:
     * a call NATTEN rejects is not counted and its exception reaches the program. */
    nf_key key;
    nf_tdesc descs[NF_ROLE_COUNT];
    if (!guarded) nf_args_describe_fast(&a, descs, nf_py_torch.tensor_type);
    PyObject *guard = guard_enter(guarded);
    bool readable = first != NULL && nf_py_key(w, &a, &key) == 0;
    guard_leave(guard);
    if (readable) key.module = nf_py_module_here(); /* read before the call: the caller's */
    P.PyErr_Clear(); /* no error is set on entry to a call */

    /* In scope during the call, for work done meanwhile to be attributed to it (the
     * backend is only known afterwards). */
    nf_py_frame saved = nf_py_eager;
    nf_py_eager.depth = 1;
    nf_py_eager.backend = NF_INTERN_NONE;
    nf_scope outer = nf_scope_enter(readable ? &key : NULL);
    PyObject *result = invoke(ctx);
    nf_scope_leave(outer);
    uint16_t backend = nf_py_eager.backend;
    saved.epoch = nf_py_eager.epoch;
    nf_py_eager = saved;
    if (result == NULL) {
        if (readable) { /* the program's exception is held meanwhile, then handed back */
            PyObject *et, *ev, *tb;
            P.PyErr_Fetch(&et, &ev, &tb);
            if (nf_py_is_stop_recomputation(et) && (key.pass = nf_py_forward_pass()) == NF_PASS_RECOMPUTE)
                nf_py_count(w, &key, backend, NULL, 0);
            P.PyErr_Restore(et, ev, tb);
        }
        return NULL;
    }
    if (!readable) {
        if (!count_nested(w, args)) nf_py_uncounted(w, nf_py_why_unreadable(&a, w));
        return result;
    }
    PyObject *outs[4];
    guard = guard_enter(guarded);
    if (w->target->kind == NF_KIND_QK) check_qk_output(w, &key, result);
    int n = nf_py_grad_outputs(result, outs, 4);
    /* A forward the autograd engine runs is checkpointing's recompute; it has outputs
     * that need gradients (the recomputed graph is what the backward uses). */
    key.pass = n > 0 ? nf_py_forward_pass() : NF_PASS_FORWARD;
    if (nf_py_count(w, &key, backend, outs, n) && in_jvp(&a)) {
        key.pass = NF_PASS_JVP;
        nf_py_count(w, &key, backend, NULL, 0);
    }
    guard_leave(guard);
    return result;
}

/* The call a generated wrapper made, every parameter bound. */
typedef struct nf_bound_call {
    const nf_wrap *w;
    PyObject *const *args;
} nf_bound_call;

static PyObject *invoke_bound(void *ctx) {
    const nf_bound_call *c = ctx;
    return call_original(c->w, c->args);
}

/* The generated function's builtin (Python 3.10, 3.11; Dynamo's traced twin). */
static PyObject *wrapper(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    nf_wrap *w = P.PyCapsule_GetPointer(self, "naflops.wrap");
    Py_ssize_t nargs = nf_py_nargs(nargsf);
    if (w == NULL) return NULL;
    if (nargs != w->nparams || kwnames != NULL) /* not the generated function's call: pass on */
        return nf_py_call_vector(w->original, args, nargs, kwnames);
    nf_bound_call c = {w, args};
    return nf_py_counted_call(w, args, invoke_bound, &c);
}

nf_py_method_def nf_py_wrapper_def = {"naflops_wrapper", (void *)wrapper,
                                       NF_METH_FASTCALL | NF_METH_KEYWORDS, NULL};

