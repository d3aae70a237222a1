/* The Python adapter's shared state (py_state.c): what every py_*.c file reads. */
#ifndef NF_PY_STATE_H
#define NF_PY_STATE_H

#include <stdbool.h>
#include <stdint.h>

#include "py_api.h"
#include "py_natten_internal.h"

/* The wrapped functions, by token (their index). */
long nf_py_wrap_add(nf_wrap *w); /* its token, or -1 when the table is full */
int nf_py_wrap_count(void);
bool nf_py_wraps_full(void);

/* From torch, once it is imported (the bootstrap's set_torch). */
typedef struct nf_py_torch_refs {
    PyObject *tensor_type;       /* torch.Tensor */
    PyObject *mode_enabled;      /* torch._C._is_torch_function_mode_enabled */
    PyObject *disable_tf;        /* torch._C.DisableTorchFunction */
    PyObject *graph_task_id;     /* torch._C._current_graph_task_id */
    PyObject *multi_grad_hook;   /* torch.autograd.graph.register_multi_grad_hook */
    PyObject *hook_factory;      /* bootstrap: backward_hook(order) -> function */
    PyObject *nested_parts;      /* bootstrap: nested_parts(args) -> [args per component] */
    PyObject *forward_ad;        /* torch.autograd.forward_ad's __dict__ (its _current_level) */
    PyObject *minus_one;         /* -1: _current_level with no dual level open */
    PyObject *has_tangent;       /* bootstrap: has_tangent(tensor) -> bool */
} nf_py_torch_refs;
extern nf_py_torch_refs nf_py_torch;

/* Interned attribute names (set by the bootstrap's C side before anything runs). */
typedef struct nf_py_strings {
    PyObject *requires_grad, *register_hook, *grad_fn, *name, *enter, *exit;
} nf_py_strings;
extern nf_py_strings nf_py_str;

/* The NATTEN release and interned ids the counts use. */
typedef struct nf_py_release_ids {
    uint16_t version;   /* interned NATTEN version */
    bool legacy;        /* NATTEN < 0.20: unmarked ops ran on libnatten */
    uint16_t libnatten; /* "libnatten" */
    uint16_t meta;      /* "meta" */
} nf_py_release_ids;
extern nf_py_release_ids nf_py_release;

/* The eager NATTEN call open on this thread (NATTEN calls itself: na2d -> generic
 * -> backend): depth 0 outside any, the backend markers met so far, and how many
 * outermost eager calls this thread began (the compiled path drops a call it left
 * open before the latest one). */
typedef struct nf_py_frame {
    int depth;
    uint16_t backend;
    uint32_t epoch;
} nf_py_frame;
extern _Thread_local nf_py_frame nf_py_eager;

/* fn(), fn(a), and a new tuple of n borrowed objects; NULL with an error set. */
PyObject *nf_py_call0(PyObject *fn);
PyObject *nf_py_call1(PyObject *fn, PyObject *a);
PyObject *nf_py_tuple_of(PyObject *const *items, Py_ssize_t n);
/* fn with npos positional arguments, then the values of kwnames (or NULL). */
PyObject *nf_py_call_vector(PyObject *fn, PyObject *const *args, Py_ssize_t npos, PyObject *kwnames);

#endif
