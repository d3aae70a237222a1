/* Backward passes of counted NATTEN calls: the hook each forward entry hangs on its
 * outputs (a Python function from the bootstrap, or the observer's C++ hook), and
 * the count of one backward pass through it. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/nf_core.h"
#include "../../src/nf_flush.h"
#include "../../src/nf_ledger.h"
#include "../../src/nf_log.h"
#include "py_args.h"
#include "py_state.h"
#include "../torch/tensor_meta.h"

#define P nf_py

static atomic_bool said_hook;

/* The entries a backward hook counts, by creation order (the hook carries the order,
 * a constant that compiled autograd can trace). */
static nf_entry *by_order[NF_LEDGER_CAPACITY];
static PyObject *hooks_by_order[NF_LEDGER_CAPACITY];

/* One backward pass through the op whose forward entry has this order (from the
 * Python hook, or from the observer's C++ hook on an autograd thread). */
static void count_backward(uint32_t order) {
    nf_entry *forward = order < NF_LEDGER_CAPACITY ? by_order[order] : NULL;
    if (forward == NULL) return;
    nf_key key = forward->key;
    key.pass = NF_PASS_BACKWARD;
    nf_entry *e = nf_ledger_entry(&key);
    if (e != NULL) {
        nf_entry_add(e, 1);
        nf_flush_counted();
    }
}

/* backward(order): the Python hook's call. */
PyObject *nf_py_backward(PyObject *self, PyObject *order) {
    (void)self;
    long long o = P.PyLong_AsLongLong(order);
    if (o >= 0 && o < NF_LEDGER_CAPACITY) count_backward((uint32_t)o);
    P.PyErr_Clear();
    return nf_py_none();
}

static PyObject *hook_for(nf_entry *e) {
    if (e->order >= NF_LEDGER_CAPACITY || nf_py_torch.hook_factory == NULL) return NULL;
    PyObject **slot = &hooks_by_order[e->order];
    if (*slot == NULL) {
        PyObject *order = P.PyLong_FromLong((long)e->order);
        if (order == NULL) return NULL;
        by_order[e->order] = e;
        *slot = nf_py_call1(nf_py_torch.hook_factory, order);
        P.Py_DecRef(order);
        if (*slot == NULL) return NULL;
    }
    P.Py_IncRef(*slot);
    return *slot;
}

/* Registers hook to run once per backward pass through the op that made these
 * outputs, whichever of them the gradient flows from: on their autograd node when
 * they share one (a C method), else with a multi-grad hook in "any" mode. shared:
 * false when they are already known to have different nodes. */
static bool hook_outputs(PyObject *const *outs, int n, PyObject *hook, bool shared) {
    PyObject *node = NULL;
    for (int i = 0; i < n && shared; i++) {
        PyObject *g = P.PyObject_GetAttr(outs[i], nf_py_str.grad_fn);
        if (g == NULL || g == P.None) shared = false;
        else if (node == NULL) node = g, g = NULL;
        else if (g != node) shared = false;
        if (g) P.Py_DecRef(g);
    }
    PyObject *handle = NULL;
    if (shared && node != NULL) {
        handle = P.PyObject_CallMethodObjArgs(node, nf_py_str.register_hook, hook, NULL);
    } else if (nf_py_torch.multi_grad_hook != NULL) {
        PyObject *list = nf_py_tuple_of(outs, n);
        if (list) {
            handle = P.PyObject_CallFunctionObjArgs(nf_py_torch.multi_grad_hook, list, hook, NULL);
            P.Py_DecRef(list);
        }
    }
    if (node) P.Py_DecRef(node);
    if (handle) P.Py_DecRef(handle);
    return handle != NULL;
}

/* The same through the observer's C++ hook (tensor_meta.h): 0 hooked, 1 the outputs
 * have different nodes, -1 not possible here. */
static int hook_fast(PyObject *const *outs, int n, uint32_t order, PyObject *hook) {
    const nf_tensor_reader *r = nf_args_reader();
    if (r == NULL) return -1;
    for (int i = 0; i < n; i++)
        if (!nf_args_is_exactly(outs[i], nf_py_torch.tensor_type)) return -1;
    return r->hook_backward((void *const *)outs, n, order, hook, count_backward);
}

/* Hooks the backward of entry e on the outputs of its call that need gradients. */
void nf_py_attach_backward(PyObject *const *outs, int n, nf_entry *e) {
    if (n == 0 || !nf_core_config()->backward) return;
    PyObject *hook = hook_for(e);
    int fast = hook != NULL ? hook_fast(outs, n, e->order, hook) : -1;
    if (fast != 0 && (hook == NULL || !hook_outputs(outs, n, hook, fast != 1)))
        nf_log_once(&said_hook, "could not hook a backward pass; some backward passes are not counted");
    if (hook) P.Py_DecRef(hook);
    P.PyErr_Clear();
}

/* The tensors of a result (a tensor, or a tuple such as (output, lse)) that need
 * gradients, borrowed; at most max. */
int nf_py_grad_outputs(PyObject *result, PyObject **out, int max) {
    int n = 0;
    int is_tuple = P.PyObject_IsInstance(result, P.TupleType);
    Py_ssize_t len = is_tuple == 1 ? P.PyTuple_Size(result) : 1;
    const nf_tensor_reader *r = nf_args_reader();
    for (Py_ssize_t i = 0; i < len && n < max; i++) {
        PyObject *t = is_tuple == 1 ? P.PyTuple_GetItem(result, i) : result;
        int fast = r != NULL && nf_args_is_exactly(t, nf_py_torch.tensor_type) ? r->requires_grad(t) : -1;
        if (fast >= 0) {
            if (fast) out[n++] = t;
            continue;
        }
        PyObject *rg = t ? P.PyObject_GetAttr(t, nf_py_str.requires_grad) : NULL;
        if (rg == P.True) out[n++] = t;
        if (rg) P.Py_DecRef(rg);
    }
    P.PyErr_Clear();
    return n;
}

