#include "py_natten.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/nf_core.h"
#include "../src/nf_flush.h"
#include "../src/nf_intern.h"
#include "../src/nf_ledger.h"
#include "../src/nf_log.h"
#include "../src/nf_scope.h"
#include "natten_targets.h"
#include "py_api.h"
#include "torch_loader.h"
#include "py_bootstrap.h" /* generated from py_bootstrap.py: nf_py_bootstrap_source */

#define P nf_py

/* ------------------------------------------------------------ state */

/* One wrapped NATTEN function. Lives as long as the process. */
typedef struct nf_wrap {
    PyObject *original;
    const nf_target *target;
    uint16_t op;
    int pos[NF_ROLE_COUNT];         /* positional index of each role; -1: not a parameter */
    PyObject *name[NF_ROLE_COUNT];  /* interned parameter names, for keyword lookup */
} nf_wrap;

/* The op running on this thread (NATTEN calls itself: na2d -> generic -> backend). */
typedef struct nf_frame {
    int depth;
    uint16_t backend;
} nf_frame;
static _Thread_local nf_frame frame;

static uint16_t version_id;
static bool legacy;                  /* NATTEN < 0.20: unmarked ops ran on libnatten */
static uint16_t libnatten_id;
static PyObject *s_shape, *s_dtype, *s_device, *s_requires_grad, *s_register_hook, *s_grad_fn, *s_tolist,
    *s_self, *s_is_cpu;
static PyObject *backward_hooks[NF_LEDGER_CAPACITY]; /* per forward entry, by creation order */
static atomic_bool said_unreadable, said_failed, said_hook;

/* dtype objects are process-long singletons: remember their names by identity. */
static struct { PyObject *obj; uint16_t id; } dtype_cache[32];

/* ------------------------------------------------------------ reading arguments */

static PyObject *arg(const nf_wrap *w, nf_role r, PyObject *const *args, Py_ssize_t nargs,
                     PyObject *kwnames) {
    PyObject *v = NULL;
    int p = w->pos[r];
    if (p < 0) return NULL;
    if (p < nargs) {
        v = args[p];
    } else if (kwnames != NULL) {
        Py_ssize_t n = P.PyTuple_Size(kwnames);
        for (Py_ssize_t j = 0; j < n; j++) {
            PyObject *k = P.PyTuple_GetItem(kwnames, j);
            if (k == w->name[r] || P.PyUnicode_CompareWithASCIIString(k, nf_role_param[r]) == 0) {
                v = args[nargs + j];
                break;
            }
        }
    }
    return v == P.None ? NULL : v;
}

/* Reads a sequence of ints (a torch.Size, tuple or list) into out. */
static int read_int_seq(PyObject *seq, int64_t *out, int max, uint8_t *len) {
    Py_ssize_t n = P.PySequence_Size(seq);
    if (n < 0 || n > max) return -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = P.PySequence_GetItem(seq, i);
        if (item == NULL) return -1;
        long long v = P.PyLong_AsLongLong(item);
        P.Py_DecRef(item);
        if (v == -1 && P.PyErr_Occurred()) return -1;
        out[i] = v;
    }
    *len = (uint8_t)n;
    return 0;
}

static int read_shape(PyObject *tensor, int64_t *out, uint8_t *rank) {
    PyObject *shape = P.PyObject_GetAttr(tensor, s_shape);
    if (shape == NULL) return -1;
    int rc = -1;
    /* torch.Size is a tuple: borrowed items, no reference traffic */
    Py_ssize_t n = P.PyObject_IsInstance(shape, P.TupleType) == 1 ? P.PyTuple_Size(shape) : -1;
    if (n >= 0 && n <= NF_MAX_RANK) {
        rc = 0;
        for (Py_ssize_t i = 0; i < n && rc == 0; i++) {
            long long v = P.PyLong_AsLongLong(P.PyTuple_GetItem(shape, i));
            if (v == -1 && P.PyErr_Occurred()) rc = -1;
            out[i] = v;
        }
        *rank = (uint8_t)n;
    } else if (n < 0) {
        P.PyErr_Clear();
        rc = read_int_seq(shape, out, NF_MAX_RANK, rank);
    }
    P.Py_DecRef(shape);
    return rc;
}

/* An int (every dim) or a sequence of na_dim ints; absent: fill. */
static int read_dims_arg(PyObject *v, int na_dim, int64_t fill, int64_t *out) {
    if (v == NULL) {
        for (int i = 0; i < na_dim; i++) out[i] = fill;
        return 0;
    }
    /* Checked first, not tried: a raised and cleared TypeError costs thousands of
     * instructions, on every call with a tuple kernel. */
    if (P.PyIndex_Check(v)) {
        long long x = P.PyLong_AsLongLong(v);
        if (x == -1 && P.PyErr_Occurred()) return -1;
        for (int i = 0; i < na_dim; i++) out[i] = x;
        return 0;
    }
    uint8_t n;
    int64_t tmp[NF_MAX_NA_DIM];
    if (read_int_seq(v, tmp, NF_MAX_NA_DIM, &n) != 0 || n != na_dim) return -1;
    memcpy(out, tmp, sizeof(int64_t) * (size_t)na_dim);
    return 0;
}

/* A bool (every dim) or a sequence of bools. */
static int read_causal(PyObject *v, int na_dim, uint8_t *mask) {
    *mask = 0;
    if (v == NULL) return 0;
    Py_ssize_t n = v == P.True || v == P.False || P.PyIndex_Check(v) ? -1 : P.PySequence_Size(v);
    if (n < 0) {
        P.PyErr_Clear();
        int t = P.PyObject_IsTrue(v);
        if (t < 0) return -1;
        *mask = t ? (uint8_t)((1u << na_dim) - 1) : 0;
        return 0;
    }
    if (n != na_dim) return -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = P.PySequence_GetItem(v, i);
        if (item == NULL) return -1;
        int t = P.PyObject_IsTrue(item);
        P.Py_DecRef(item);
        if (t < 0) return -1;
        if (t) *mask |= (uint8_t)(1u << i);
    }
    return 0;
}

/* Values of a small integer tensor (sequence lengths), via .tolist(). */
static int read_tensor_values(PyObject *t, int64_t **out, Py_ssize_t *n) {
    PyObject *list = NULL, *fn = P.PyObject_GetAttr(t, s_tolist);
    if (fn == NULL) return -1;
    list = P.PyObject_CallObject(fn, NULL);
    P.Py_DecRef(fn);
    if (list == NULL) return -1;
    *n = P.PySequence_Size(list);
    int rc = -1;
    if (*n >= 0 && (*out = calloc((size_t)*n + 1, sizeof(int64_t))) != NULL) {
        rc = 0;
        for (Py_ssize_t i = 0; i < *n && rc == 0; i++) {
            PyObject *item = P.PySequence_GetItem(list, i);
            long long v = item ? P.PyLong_AsLongLong(item) : -1;
            if (item) P.Py_DecRef(item);
            if (v < 0) rc = -1;
            (*out)[i] = v;
        }
        if (rc != 0) free(*out);
    }
    P.Py_DecRef(list);
    return rc;
}

/* Variable-length attention: sum over sequences of Lq * Lkv. 0 when not varlen. */
static int read_varlen_pairs(const nf_wrap *w, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames, nf_u128 *pairs) {
    PyObject *q = arg(w, NF_ROLE_CU_SEQLEN_Q, args, nargs, kwnames);
    PyObject *kv = arg(w, NF_ROLE_CU_SEQLEN_KV, args, nargs, kwnames);
    bool cumulative = q != NULL && kv != NULL;
    if (!cumulative) {
        q = arg(w, NF_ROLE_SEQLENS_Q, args, nargs, kwnames);
        kv = arg(w, NF_ROLE_SEQLENS_KV, args, nargs, kwnames);
    }
    *pairs = 0;
    if (q == NULL || kv == NULL) return 0;
    int64_t *a = NULL, *b = NULL;
    Py_ssize_t na, nb;
    int rc = -1;
    if (read_tensor_values(q, &a, &na) == 0 && read_tensor_values(kv, &b, &nb) == 0 && na == nb) {
        rc = 0;
        for (Py_ssize_t i = cumulative ? 1 : 0; i < na; i++) {
            int64_t lq = cumulative ? a[i] - a[i - 1] : a[i];
            int64_t lk = cumulative ? b[i] - b[i - 1] : b[i];
            if (lq < 0 || lk < 0) rc = -1;
            else *pairs += (nf_u128)lq * (nf_u128)lk;
        }
    }
    free(a);
    free(b);
    return rc;
}

static uint16_t dtype_id(PyObject *tensor) {
    PyObject *dt = P.PyObject_GetAttr(tensor, s_dtype);
    if (dt == NULL) return NF_INTERN_NONE;
    uint16_t id = NF_INTERN_NONE;
    size_t i;
    for (i = 0; i < sizeof dtype_cache / sizeof dtype_cache[0] && dtype_cache[i].obj; i++)
        if (dtype_cache[i].obj == dt) {
            P.Py_DecRef(dt);
            return dtype_cache[i].id;
        }
    PyObject *s = P.PyObject_Str(dt);
    const char *text = s ? P.PyUnicode_AsUTF8AndSize(s, NULL) : NULL;
    if (text != NULL) {
        id = nf_intern(strncmp(text, "torch.", 6) == 0 ? text + 6 : text);
        if (i < sizeof dtype_cache / sizeof dtype_cache[0]) { /* keep dt alive: ids by identity */
            dtype_cache[i].obj = dt;
            dtype_cache[i].id = id;
            dt = NULL;
        }
    }
    if (s) P.Py_DecRef(s);
    if (dt) P.Py_DecRef(dt);
    return id;
}

/* 1 / 0 for a bool attribute, -1 on error. */
static int flag(PyObject *o, PyObject *name) {
    PyObject *v = P.PyObject_GetAttr(o, name);
    if (v == NULL) return -1;
    int r = v == P.True ? 1 : v == P.False ? 0 : -1;
    P.Py_DecRef(v);
    return r;
}

static uint16_t device_id(PyObject *tensor) {
    /* CPU tensors, the common case here, without building a torch.device and its str */
    static uint16_t cpu_id;
    if (flag(tensor, s_is_cpu) == 1) {
        if (cpu_id == NF_INTERN_NONE) cpu_id = nf_intern("cpu");
        return cpu_id;
    }
    P.PyErr_Clear();
    PyObject *dev = P.PyObject_GetAttr(tensor, s_device);
    if (dev == NULL) return NF_INTERN_NONE;
    PyObject *s = P.PyObject_Str(dev);
    P.Py_DecRef(dev);
    const char *text = s ? P.PyUnicode_AsUTF8AndSize(s, NULL) : NULL;
    uint16_t id = text ? nf_intern(text) : NF_INTERN_NONE;
    if (s) P.Py_DecRef(s);
    return id;
}

/* Tokens in additional keys/values: [B, N, H, D] heads last, [B, H, N, D] heads first. */
static int read_extra(PyObject *t, nf_layout layout, int64_t *extra) {
    int64_t s[NF_MAX_RANK];
    uint8_t rank;
    if (read_shape(t, s, &rank) != 0 || rank != 4) return -1;
    *extra = layout == NF_HEADS_LAST ? s[1] : s[2];
    return 0;
}

/* Fills key from the call's arguments; -1 (Python error set) where it cannot. */
static int read_key(const nf_wrap *w, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                    nf_key *key) {
    const nf_target *t = w->target;
    nf_problem *p = &key->problem;
    nf_key_init(key);
    key->op = w->op;
    key->version = version_id;
    key->pass = NF_PASS_FORWARD;
    p->kind = (uint8_t)t->kind;
    p->layout = (uint8_t)t->layout;

    PyObject *first = arg(w, t->kind == NF_KIND_AV ? NF_ROLE_ATTN : NF_ROLE_QUERY, args, nargs,
                          kwnames);
    PyObject *k = arg(w, NF_ROLE_KEY, args, nargs, kwnames);
    PyObject *v = arg(w, NF_ROLE_VALUE, args, nargs, kwnames);
    if (first == NULL || read_shape(first, p->q_shape, &p->q_rank) != 0) return -1;
    if (k != NULL && read_shape(k, p->k_shape, &p->k_rank) != 0) return -1;
    if (v != NULL && read_shape(v, p->v_shape, &p->v_rank) != 0) return -1;

    if (t->kind == NF_KIND_ATTENTION) {
        p->na_dim = 1;
        if (read_causal(arg(w, NF_ROLE_CAUSAL, args, nargs, kwnames), 1, &p->causal_mask) != 0)
            return -1;
        if (read_varlen_pairs(w, args, nargs, kwnames, &p->varlen_pairs) != 0) return -1;
    } else {
        int rank = t->kind == NF_KIND_AV ? p->v_rank : p->q_rank;
        if (rank < 4 || rank > NF_MAX_RANK) return -1;
        p->na_dim = (uint8_t)(rank - 3);
        PyObject *ks = arg(w, NF_ROLE_KERNEL, args, nargs, kwnames);
        if (ks == NULL || read_dims_arg(ks, p->na_dim, 0, p->kernel) != 0) return -1;
        if (read_dims_arg(arg(w, NF_ROLE_DILATION, args, nargs, kwnames), p->na_dim, 1,
                          p->dilation) != 0 ||
            read_dims_arg(arg(w, NF_ROLE_STRIDE, args, nargs, kwnames), p->na_dim, 1,
                          p->stride) != 0 ||
            read_causal(arg(w, NF_ROLE_CAUSAL, args, nargs, kwnames), p->na_dim,
                        &p->causal_mask) != 0)
            return -1;
        PyObject *ak = arg(w, NF_ROLE_ADD_KEYS, args, nargs, kwnames);
        PyObject *av = arg(w, NF_ROLE_ADD_VALUES, args, nargs, kwnames);
        /* Fused ops attend the extra tokens only when both are given (NATTEN's rule). */
        PyObject *extra = t->kind == NF_KIND_QK   ? ak
                          : t->kind == NF_KIND_AV ? av
                          : (ak != NULL && av != NULL) ? ak
                                                       : NULL;
        if (extra != NULL && read_extra(extra, (nf_layout)t->layout, &p->extra_kv) != 0) return -1;
    }
    key->dtype = dtype_id(first);
    key->device = device_id(first);
    return 0;
}

/* ------------------------------------------------------------ backward */

/* Called as a node post-hook (grad_inputs, grad_outputs) or a tensor hook (grad). */
static PyObject *backward_hook(PyObject *self, PyObject *args) {
    (void)args;
    nf_entry *forward = P.PyCapsule_GetPointer(self, "naflops.entry");
    if (forward != NULL) {
        nf_key key = forward->key;
        key.pass = NF_PASS_BACKWARD;
        nf_entry *e = nf_ledger_entry(&key);
        if (e != NULL) {
            nf_entry_add(e, 1);
            nf_flush_counted();
        }
    } else {
        P.PyErr_Clear();
    }
    return nf_py_none(); /* None: the gradient passes unchanged */
}

static nf_py_method_def backward_hook_def = {"naflops_backward_hook", (void *)backward_hook,
                                             NF_METH_VARARGS, NULL};

static PyObject *hook_for(nf_entry *e) {
    PyObject **slot = e->order < NF_LEDGER_CAPACITY ? &backward_hooks[e->order] : NULL;
    if (slot && *slot) {
        P.Py_IncRef(*slot);
        return *slot;
    }
    PyObject *cap = P.PyCapsule_New(e, "naflops.entry", NULL);
    if (cap == NULL) return NULL;
    PyObject *fn = P.PyCFunction_NewEx(&backward_hook_def, cap, NULL);
    P.Py_DecRef(cap);
    if (fn && slot) {
        *slot = fn;
        P.Py_IncRef(fn);
    }
    return fn;
}

/* Counts the backward of this call when autograd runs it: a hook on the output's
 * gradient fires once per backward through the op, whatever the backend. */
static void attach_backward(PyObject *result, nf_entry *e) {
    PyObject *out = result;
    int is_tuple = P.PyObject_IsInstance(result, P.TupleType);
    if (is_tuple == 1 && P.PyTuple_Size(result) >= 1) /* (output, lse) with return_lse=True */
        out = P.PyTuple_GetItem(result, 0);
    P.PyErr_Clear();
    int needs = out ? flag(out, s_requires_grad) : -1;
    if (needs == 1) {
        /* On the output's autograd node (a C method, cheaper than Tensor.register_hook,
         * which is Python); on the tensor where it has no node. Either fires once per
         * backward pass through the op. */
        PyObject *node = P.PyObject_GetAttr(out, s_grad_fn);
        PyObject *target = node && node != P.None ? node : out;
        PyObject *reg = P.PyObject_GetAttr(target, s_register_hook);
        if (node) P.Py_DecRef(node); /* out still holds its node */
        PyObject *fn = reg ? hook_for(e) : NULL;
        PyObject *argv = fn ? P.PyTuple_New(1) : NULL;
        PyObject *handle = NULL;
        if (argv) {
            P.PyTuple_SetItem(argv, 0, fn); /* steals fn */
            fn = NULL;
            handle = P.PyObject_CallObject(reg, argv);
            P.Py_DecRef(argv);
        }
        if (handle) P.Py_DecRef(handle);
        else nf_log_once(&said_hook, "could not hook a backward pass; some backward passes are not counted");
        if (fn) P.Py_DecRef(fn);
        if (reg) P.Py_DecRef(reg);
    }
    P.PyErr_Clear();
}

/* ------------------------------------------------------------ the wrapper */

/* Records the backend that ran part of the current op. An op whose parts ran on
 * two backends (NA plus additional KV through FMHA) reports both: "flex-fna+flex-fmha". */
static void note_backend(const char *backend) {
    uint16_t id = nf_intern(backend);
    if (frame.backend == NF_INTERN_NONE) {
        frame.backend = id;
    } else if (frame.backend != id) {
        char both[128];
        const char *first = nf_intern_str(frame.backend);
        if (strstr(first, backend) == NULL) { /* not already in "a+b" */
            snprintf(both, sizeof both, "%s+%s", first, backend);
            frame.backend = nf_intern(both);
        }
    }
}

static PyObject *call_original(const nf_wrap *w, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames) {
    if (P.PyObject_Vectorcall != NULL) return P.PyObject_Vectorcall(w->original, args, (size_t)nargs, kwnames);
    /* CPython without an exported vectorcall: build a tuple and a dict. */
    PyObject *tuple = P.PyTuple_New(nargs), *kwargs = NULL, *r = NULL;
    if (tuple == NULL) return NULL;
    for (Py_ssize_t i = 0; i < nargs; i++) {
        P.Py_IncRef(args[i]);
        P.PyTuple_SetItem(tuple, i, args[i]);
    }
    Py_ssize_t nk = kwnames ? P.PyTuple_Size(kwnames) : 0;
    if (nk > 0 && (kwargs = P.PyDict_New()) != NULL)
        for (Py_ssize_t j = 0; j < nk; j++)
            P.PyDict_SetItem(kwargs, P.PyTuple_GetItem(kwnames, j), args[nargs + j]);
    if (nk == 0 || kwargs != NULL) r = P.PyObject_Call(w->original, tuple, kwargs);
    P.Py_DecRef(tuple);
    if (kwargs) P.Py_DecRef(kwargs);
    return r;
}

static PyObject *wrapper(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    nf_wrap *w = P.PyCapsule_GetPointer(self, "naflops.wrap");
    Py_ssize_t nargs = (Py_ssize_t)(nargsf & ~((size_t)1 << (8 * sizeof(size_t) - 1)));
    if (w == NULL) return NULL;

    if (w->target->backend != NULL || frame.depth > 0) {
        /* A backend marker, or a NATTEN call inside a counted op: count nothing. */
        if (w->target->backend != NULL && frame.depth > 0) note_backend(w->target->backend);
        return call_original(w, args, nargs, kwnames);
    }

    /* Read the arguments first (no side effects), count only once the call succeeded:
     * a call NATTEN rejects is not counted and its exception reaches the program. */
    nf_key key;
    bool readable = read_key(w, args, nargs, kwnames, &key) == 0;
    P.PyErr_Clear(); /* no error is set on entry to a call */

    /* In scope during the call, for work done meanwhile to be attributed to it (the
     * backend is only known afterwards). */
    nf_frame saved = frame;
    frame.depth = 1;
    frame.backend = NF_INTERN_NONE;
    nf_scope outer = nf_scope_enter(readable ? &key : NULL);
    PyObject *result = call_original(w, args, nargs, kwnames);
    nf_scope_leave(outer);
    uint16_t backend = frame.backend;
    frame = saved;
    if (result == NULL) return NULL;

    if (!readable) {
        nf_log_once(&said_unreadable,
                    "could not read the arguments of a %s call; such calls are not counted",
                    nf_intern_str(w->op));
        return result;
    }
    key.backend = backend != NF_INTERN_NONE ? backend : legacy ? libnatten_id : NF_INTERN_NONE;
    nf_entry *e = nf_ledger_entry(&key);
    if (e == NULL) {
        nf_log_once(&said_unreadable, "could not count a %s call (shape outside the rules); such calls are not counted",
                    nf_intern_str(w->op));
        return result;
    }
    nf_entry_add(e, 1);
    nf_flush_counted();
    if (nf_core_config()->backward) attach_backward(result, e);
    return result;
}

static nf_py_method_def wrapper_def = {"naflops_wrapper", (void *)wrapper,
                                       NF_METH_FASTCALL | NF_METH_KEYWORDS, NULL};

/* ------------------------------------------------------------ the bootstrap's C side */

static bool is_our_wrapper(PyObject *fn) {
    PyObject *self = P.PyObject_GetAttr(fn, s_self);
    bool ours = self != NULL && P.PyCapsule_GetPointer(self, "naflops.wrap") != NULL;
    if (self) P.Py_DecRef(self);
    P.PyErr_Clear();
    return ours;
}

/* make(original, index, parameter_names) -> wrapper, or None to leave it alone. */
static PyObject *py_make(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 3) return nf_py_none();
    long long index = P.PyLong_AsLongLong(args[1]);
    if (index < 0 || index >= nf_target_count || is_our_wrapper(args[0])) {
        P.PyErr_Clear();
        return nf_py_none();
    }
    nf_wrap *w = calloc(1, sizeof *w);
    if (w == NULL) return nf_py_none();
    w->target = &nf_targets[index];
    w->op = nf_intern(w->target->op);
    w->original = args[0];
    P.Py_IncRef(w->original);
    Py_ssize_t np = P.PySequence_Size(args[2]);
    for (int r = 0; r < NF_ROLE_COUNT; r++) {
        w->pos[r] = -1;
        w->name[r] = P.PyUnicode_InternFromString(nf_role_param[r]);
        for (Py_ssize_t i = 0; i < np; i++) {
            PyObject *name = P.PySequence_GetItem(args[2], i);
            int same = name && P.PyUnicode_CompareWithASCIIString(name, nf_role_param[r]) == 0;
            if (name) P.Py_DecRef(name);
            if (same) w->pos[r] = (int)i;
        }
    }
    P.PyErr_Clear();
    PyObject *cap = P.PyCapsule_New(w, "naflops.wrap", NULL);
    PyObject *fn = cap ? P.PyCFunction_NewEx(&wrapper_def, cap, NULL) : NULL;
    if (cap) P.Py_DecRef(cap);
    if (fn == NULL) {
        P.PyErr_Clear();
        return nf_py_none();
    }
    return fn;
}

/* targets() -> {module: [(function, index), ...]} */
static PyObject *py_targets(PyObject *self, PyObject *unused) {
    (void)self, (void)unused;
    PyObject *d = P.PyDict_New();
    for (int i = 0; d != NULL && i < nf_target_count; i++) {
        PyObject *list = P.PyDict_GetItemString(d, nf_targets[i].module); /* borrowed */
        if (list == NULL) {
            list = P.PyList_New(0);
            if (list == NULL) break;
            P.PyDict_SetItemString(d, nf_targets[i].module, list);
            P.Py_DecRef(list);
        }
        PyObject *row = P.PyTuple_New(2);
        if (row == NULL) break;
        P.PyTuple_SetItem(row, 0, P.PyUnicode_FromString(nf_targets[i].function));
        P.PyTuple_SetItem(row, 1, P.PyLong_FromLong(i));
        P.PyList_Append(list, row);
        P.Py_DecRef(row);
    }
    return d;
}

static PyObject *py_set_version(PyObject *self, PyObject *version) {
    (void)self;
    const char *v = P.PyUnicode_AsUTF8AndSize(version, NULL);
    if (v == NULL) {
        P.PyErr_Clear();
        return nf_py_none();
    }
    version_id = nf_intern(v);
    int major = 0, minor = 0;
    legacy = sscanf(v, "%d.%d", &major, &minor) == 2 && major == 0 && minor < 20;
    return nf_py_none();
}

static PyObject *py_failed(PyObject *self, PyObject *what) {
    (void)self;
    const char *s = P.PyUnicode_AsUTF8AndSize(what, NULL);
    nf_log_once(&said_failed, "could not wrap NATTEN (%s); some NATTEN ops are not counted",
                s ? s : "?");
    P.PyErr_Clear();
    return nf_py_none();
}

/* finish(): the final report, from Python's atexit. An uncaught KeyboardInterrupt
 * makes CPython end by re-raising SIGINT after finalization, which skips C's atexit. */
static PyObject *py_finish(PyObject *self, PyObject *unused) {
    (void)self, (void)unused;
    nf_core_finish();
    return nf_py_none();
}

/* torch_ready(version): torch has finished importing. */
static PyObject *py_torch_ready(PyObject *self, PyObject *version) {
    (void)self;
    const char *v = P.PyUnicode_AsUTF8AndSize(version, NULL);
    if (v != NULL) nf_torch_load(v);
    P.PyErr_Clear();
    return nf_py_none();
}

static nf_py_method_def c_defs[] = {
    {"torch_ready", (void *)py_torch_ready, NF_METH_O, NULL},
    {"finish", (void *)py_finish, NF_METH_NOARGS, NULL},
    {"make", (void *)py_make, NF_METH_FASTCALL, NULL},
    {"targets", (void *)py_targets, NF_METH_NOARGS, NULL},
    {"set_version", (void *)py_set_version, NF_METH_O, NULL},
    {"failed", (void *)py_failed, NF_METH_O, NULL},
};

static int intern_names(void) {
    s_shape = P.PyUnicode_InternFromString("shape");
    s_dtype = P.PyUnicode_InternFromString("dtype");
    s_device = P.PyUnicode_InternFromString("device");
    s_requires_grad = P.PyUnicode_InternFromString("requires_grad");
    s_register_hook = P.PyUnicode_InternFromString("register_hook");
    s_grad_fn = P.PyUnicode_InternFromString("grad_fn");
    s_tolist = P.PyUnicode_InternFromString("tolist");
    s_self = P.PyUnicode_InternFromString("__self__");
    s_is_cpu = P.PyUnicode_InternFromString("is_cpu");
    libnatten_id = nf_intern("libnatten");
    return s_shape && s_dtype && s_device && s_requires_grad && s_register_hook && s_grad_fn &&
                   s_tolist &&
                   s_self && s_is_cpu
               ? 0
               : -1;
}

/* Runs py_bootstrap.py with the C side in its globals as `_c`. */
static int run_bootstrap(void) {
    int rc = -1;
    PyObject *globals = P.PyDict_New(), *c = P.PyDict_New(), *code = NULL, *r = NULL;
    if (globals == NULL || c == NULL || intern_names() != 0) goto out;
    if (P.PyDict_SetItemString(globals, "__builtins__", P.PyEval_GetBuiltins()) != 0) goto out;
    P.PyDict_SetItemString(globals, "__name__", P.PyUnicode_FromString("naflops_bootstrap"));
    for (size_t i = 0; i < sizeof c_defs / sizeof c_defs[0]; i++) {
        PyObject *fn = P.PyCFunction_NewEx(&c_defs[i], NULL, NULL);
        if (fn == NULL || P.PyDict_SetItemString(c, c_defs[i].ml_name, fn) != 0) goto out;
        P.Py_DecRef(fn);
    }
    if (P.PyDict_SetItemString(globals, "_c", c) != 0) goto out;
    code = P.Py_CompileString(nf_py_bootstrap_source, "<naflops bootstrap>", NF_PY_FILE_INPUT);
    if (code == NULL) goto out;
    r = P.PyEval_EvalCode(code, globals, globals);
    rc = r != NULL ? 0 : -1;
out:
    if (r) P.Py_DecRef(r);
    if (code) P.Py_DecRef(code);
    if (c) P.Py_DecRef(c);
    if (globals) P.Py_DecRef(globals);
    return rc;
}

/* ------------------------------------------------------------ the audit hook */

static bool installed, installing;
static atomic_bool said_install;

/* The first import of a natten module, or of torch itself when the whole model is
 * counted, runs the bootstrap. */
static bool is_trigger_module(PyObject *name) {
    Py_ssize_t len;
    const char *s = name ? P.PyUnicode_AsUTF8AndSize(name, &len) : NULL;
    if (s == NULL) {
        P.PyErr_Clear();
        return false;
    }
    if (strncmp(s, "natten", 6) == 0 && (s[6] == '\0' || s[6] == '.')) return true;
    return nf_core_config()->whole_model && strcmp(s, "torch") == 0;
}

static int audit_hook(const char *event, PyObject *args, void *data) {
    (void)data;
    /* Called for every audit event in the process: leave at once unless this is the
     * first import of a natten module (or of torch). */
    if (installed || installing || event[0] != 'i' || strcmp(event, "import") != 0) return 0;
    PyObject *et, *ev, *tb;
    P.PyErr_Fetch(&et, &ev, &tb);
    if (is_trigger_module(P.PyTuple_GetItem(args, 0))) {
        installing = true;
        if (run_bootstrap() != 0) {
            P.PyErr_Clear();
            nf_log_once(&said_install, "could not hook NATTEN's import; NATTEN ops are not counted");
        }
        installing = false;
        installed = true;
    }
    P.PyErr_Clear();
    P.PyErr_Restore(et, ev, tb);
    return 0;
}

bool nf_py_natten_install(void) { return P.PySys_AddAuditHook(audit_hook, NULL) == 0; }
