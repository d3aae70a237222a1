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
#include "natten_release.h"
#include "natten_targets.h"
#include "py_api.h"
#include "py_args.h"
#include "py_natten_internal.h"
#include "tensor_meta.h"
#include "torch_loader.h"
#include "py_bootstrap.h" /* generated from py_bootstrap.py: nf_py_bootstrap_source */

#define P nf_py

/* ------------------------------------------------------------ state */

#define NF_MAX_WRAPS 256
static nf_wrap *wraps[NF_MAX_WRAPS];
static int nwraps;

nf_wrap *nf_py_wrap(long token) { return token >= 0 && token < nwraps ? wraps[token] : NULL; }

/* The op running on this thread (NATTEN calls itself: na2d -> generic -> backend). */
typedef struct nf_frame {
    int depth;
    uint16_t backend;
} nf_frame;
static _Thread_local nf_frame frame;

static uint16_t version_id;
static bool legacy;                  /* NATTEN < 0.20: unmarked ops ran on libnatten */
static uint16_t libnatten_id, meta_id;
static PyObject *s_requires_grad, *s_register_hook, *s_grad_fn, *s_name, *s_enter, *s_exit;
static atomic_bool said_failed, said_hook;

/* From torch, once it is imported (set_torch). */
static struct {
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
} torch_;

static PyObject *call0(PyObject *fn) {
    return P.PyObject_Vectorcall ? P.PyObject_Vectorcall(fn, NULL, 0, NULL) : P.PyObject_CallObject(fn, NULL);
}

/* A new tuple of n borrowed objects (each given a reference), or NULL. */
static PyObject *tuple_of(PyObject *const *items, Py_ssize_t n) {
    PyObject *t = P.PyTuple_New(n);
    for (Py_ssize_t i = 0; t != NULL && i < n; i++) {
        P.Py_IncRef(items[i]);
        P.PyTuple_SetItem(t, i, items[i]);
    }
    return t;
}

static PyObject *call1(PyObject *fn, PyObject *a) {
    if (P.PyObject_Vectorcall) return P.PyObject_Vectorcall(fn, &a, 1, NULL);
    PyObject *t = tuple_of(&a, 1), *r = NULL;
    if (t == NULL) return NULL;
    r = P.PyObject_CallObject(fn, t);
    P.Py_DecRef(t);
    return r;
}

/* ------------------------------------------------------------ invisible reads */

/* Reading a tensor's shape, dtype or grad_fn goes through __torch_function__ when a
 * TorchFunctionMode is active or the tensor is a subclass: the program's mode would
 * see the counter's reads. Those reads then run with torch function disabled.
 * needs_guard decides once per call; guard_enter/leave bracket each group of reads. */
static bool needs_guard(PyObject *type) {
    if (type != torch_.tensor_type) return true;
    const nf_tensor_reader *r = nf_args_reader();
    if (r != NULL) return r->function_mode();
    if (torch_.mode_enabled == NULL) return false;
    PyObject *on = call0(torch_.mode_enabled);
    bool needed = on == P.True;
    if (on) P.Py_DecRef(on);
    else P.PyErr_Clear();
    return needed;
}

static PyObject *guard_enter(bool needed) {
    if (!needed || torch_.disable_tf == NULL) return NULL;
    PyObject *ctx = call0(torch_.disable_tf);
    PyObject *r = ctx ? P.PyObject_CallMethodObjArgs(ctx, s_enter, NULL) : NULL;
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
    PyObject *r = P.PyObject_CallMethodObjArgs(ctx, s_exit, P.None, P.None, P.None, NULL);
    if (r) P.Py_DecRef(r);
    P.Py_DecRef(ctx);
    P.PyErr_Clear();
    P.PyErr_Restore(et, ev, tb);
}

/* Tensors that do no work: FakeTensorMode's and functionalization's (tracing, export);
 * meta tensors are told by their device. Plain tensors are told apart by their exact
 * type, for free. */
static bool does_no_work(PyObject *type) {
    if (type == torch_.tensor_type) return false;
    bool none = false;
    PyObject *name = P.PyObject_GetAttr(type, s_name);
    if (name != NULL) {
        none = P.PyUnicode_CompareWithASCIIString(name, "FakeTensor") == 0 ||
               P.PyUnicode_CompareWithASCIIString(name, "FunctionalTensor") == 0;
        P.Py_DecRef(name);
    }
    P.PyErr_Clear();
    return none;
}

/* ------------------------------------------------------------ passes */

uint8_t nf_py_forward_pass(void) {
    if (torch_.graph_task_id == NULL) return NF_PASS_FORWARD;
    PyObject *id = call0(torch_.graph_task_id);
    long long v = id ? P.PyLong_AsLongLong(id) : -1;
    if (id) P.Py_DecRef(id);
    P.PyErr_Clear();
    return v >= 0 ? NF_PASS_RECOMPUTE : NF_PASS_FORWARD;
}

/* ------------------------------------------------------------ backward */

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
static PyObject *py_backward(PyObject *self, PyObject *order) {
    (void)self;
    long long o = P.PyLong_AsLongLong(order);
    if (o >= 0 && o < NF_LEDGER_CAPACITY) count_backward((uint32_t)o);
    P.PyErr_Clear();
    return nf_py_none();
}

static PyObject *hook_for(nf_entry *e) {
    if (e->order >= NF_LEDGER_CAPACITY || torch_.hook_factory == NULL) return NULL;
    PyObject **slot = &hooks_by_order[e->order];
    if (*slot == NULL) {
        PyObject *order = P.PyLong_FromLong((long)e->order);
        if (order == NULL) return NULL;
        by_order[e->order] = e;
        *slot = call1(torch_.hook_factory, order);
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
        PyObject *g = P.PyObject_GetAttr(outs[i], s_grad_fn);
        if (g == NULL || g == P.None) shared = false;
        else if (node == NULL) node = g, g = NULL;
        else if (g != node) shared = false;
        if (g) P.Py_DecRef(g);
    }
    PyObject *handle = NULL;
    if (shared && node != NULL) {
        handle = P.PyObject_CallMethodObjArgs(node, s_register_hook, hook, NULL);
    } else if (torch_.multi_grad_hook != NULL) {
        PyObject *list = tuple_of(outs, n);
        if (list) {
            handle = P.PyObject_CallFunctionObjArgs(torch_.multi_grad_hook, list, hook, NULL);
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
        if (!nf_args_is_exactly(outs[i], torch_.tensor_type)) return -1;
    return r->hook_backward((void *const *)outs, n, order, hook, count_backward);
}

/* Hooks the backward of entry e on the outputs of its call that need gradients. */
static void attach_backward(PyObject *const *outs, int n, nf_entry *e) {
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
static int grad_outputs(PyObject *result, PyObject **out, int max) {
    int n = 0;
    int is_tuple = P.PyObject_IsInstance(result, P.TupleType);
    Py_ssize_t len = is_tuple == 1 ? P.PyTuple_Size(result) : 1;
    const nf_tensor_reader *r = nf_args_reader();
    for (Py_ssize_t i = 0; i < len && n < max; i++) {
        PyObject *t = is_tuple == 1 ? P.PyTuple_GetItem(result, i) : result;
        int fast = r != NULL && nf_args_is_exactly(t, torch_.tensor_type) ? r->requires_grad(t) : -1;
        if (fast >= 0) {
            if (fast) out[n++] = t;
            continue;
        }
        PyObject *rg = t ? P.PyObject_GetAttr(t, s_requires_grad) : NULL;
        if (rg == P.True) out[n++] = t;
        if (rg) P.Py_DecRef(rg);
    }
    P.PyErr_Clear();
    return n;
}

/* ------------------------------------------------------------ counting */

uint16_t nf_py_version(void) { return version_id; }

uint16_t nf_py_default_backend(void) { return legacy ? libnatten_id : NF_INTERN_NONE; }

uint16_t nf_py_join_backend(uint16_t current, const char *backend) {
    uint16_t id = nf_intern(backend);
    if (current == NF_INTERN_NONE || current == id) return id;
    const char *first = nf_intern_str(current);
    if (strstr(first, backend) != NULL) return current; /* already in "a+b" */
    char both[128];
    snprintf(both, sizeof both, "%s+%s", first, backend);
    return nf_intern(both);
}

bool nf_py_count(const nf_wrap *w, nf_key *key, uint16_t backend, PyObject *const *outputs, int n) {
    if (key->device == meta_id) return false; /* meta tensors: nothing ran */
    key->backend = backend != NF_INTERN_NONE ? backend : nf_py_default_backend();
    nf_entry *e = nf_ledger_entry(key);
    if (e == NULL) {
        nf_py_uncounted(w, nf_ledger_overflowed() ? "too many distinct op signatures" : "shape outside the rules");
        return false;
    }
    nf_entry_add(e, 1);
    nf_flush_counted();
    if (key->pass == NF_PASS_FORWARD || key->pass == NF_PASS_RECOMPUTE) attach_backward(outputs, n, e);
    return true;
}

void nf_py_uncounted(const nf_wrap *w, const char *why) {
    nf_core_note_uncounted();
    nf_log_once(&((nf_wrap *)w)->said, "a %s call ran but is not counted: %s; later such calls are not counted either",
                nf_intern_str(w->op), why);
}

static void say_window(const nf_wrap *w, const nf_key *key) {
    if (atomic_load_explicit(&w->said_window, memory_order_relaxed)) return; /* said: no formatting */
    nf_log_once(&((nf_wrap *)w)->said_window,
                "%s: the kernel size its arguments give does not match the %lld keys per query "
                "its %s; its calls are counted with the tensor's window",
                nf_intern_str(w->op), (long long)key->problem.kernel[0] + (long long)key->problem.extra_kv,
                w->target->kind == NF_KIND_AV ? "attention weights hold" : "output holds");
}

int nf_py_key(const nf_wrap *w, const struct nf_argv *a, nf_key *key) {
    int rc = nf_args_key(w->target, w->op, version_id, a, key);
    if (rc == 1) say_window(w, key);
    return rc < 0 ? -1 : 0;
}

void nf_py_check_window(const nf_wrap *w, nf_key *key, int64_t last_dim) {
    if (nf_args_window_check(&key->problem, last_dim)) say_window(w, key);
}

/* Why a call's arguments could not be read, in words. */
static const char *why_unreadable(const nf_argv *a, const nf_wrap *w) {
    PyObject *first = a->v[w->target->kind == NF_KIND_AV ? NF_ROLE_ATTN : NF_ROLE_QUERY];
    if (first == NULL) return "no query tensor among its arguments";
    return "its arguments could not be read";
}

/* ------------------------------------------------------------ the wrapper */

/* Calls fn with npos positional arguments, then the values of kwnames (or NULL). */
static PyObject *call_vector(PyObject *fn, PyObject *const *args, Py_ssize_t npos, PyObject *kwnames) {
    if (P.PyObject_Vectorcall != NULL) return P.PyObject_Vectorcall(fn, args, (size_t)npos, kwnames);
    /* CPython without an exported vectorcall: build a tuple and a dict. */
    Py_ssize_t nkw = kwnames ? P.PyTuple_Size(kwnames) : 0;
    PyObject *tuple = tuple_of(args, npos), *kwargs = NULL, *r = NULL;
    if (tuple == NULL) return NULL;
    if (nkw > 0 && (kwargs = P.PyDict_New()) != NULL)
        for (Py_ssize_t j = 0; j < nkw; j++)
            P.PyDict_SetItem(kwargs, P.PyTuple_GetItem(kwnames, j), args[npos + j]);
    if (nkw == 0 || kwargs != NULL) r = P.PyObject_Call(fn, tuple, kwargs);
    P.Py_DecRef(tuple);
    if (kwargs) P.Py_DecRef(kwargs);
    return r;
}

/* The original, with every parameter bound: keyword-only ones by keyword. */
static PyObject *call_original(const nf_wrap *w, PyObject *const *args) {
    return call_vector(w->original, args, w->npos, w->nparams > w->npos ? w->kwnames : NULL);
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
static bool is_stop_recomputation(PyObject *type) {
    bool stop = false;
    PyObject *name = type ? P.PyObject_GetAttr(type, s_name) : NULL;
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
    if (torch_.nested_parts == NULL) return false;
    PyObject *tuple = tuple_of(args, w->nparams);
    if (tuple == NULL) return false;
    PyObject *parts = call1(torch_.nested_parts, tuple);
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
    for (Py_ssize_t i = 0; ok && i < n; i++) nf_py_count(w, &keys[i], nf_py_default_backend(), NULL, 0);
    return ok;
}

/* Whether the call ran NATTEN's jvp too: a forward-mode AD level is open and one of
 * its tensors carries a tangent (the level is read first: one dict lookup). */
static bool in_jvp(const nf_argv *a) {
    static PyObject *s_level;
    if (torch_.forward_ad == NULL || torch_.has_tangent == NULL) return false;
    if (s_level == NULL && (s_level = P.PyUnicode_InternFromString("_current_level")) == NULL) return false;
    /* the module's dict, borrowed: no dual level open is the cached int -1, by identity */
    PyObject *level = P.PyDict_GetItem(torch_.forward_ad, s_level);
    if (level == NULL || level == torch_.minus_one) return false;
    long long l = P.PyLong_AsLongLong(level);
    P.PyErr_Clear();
    if (l < 0) return false;
    PyObject *ts[4] = {a->v[NF_ROLE_QUERY], a->v[NF_ROLE_ATTN], a->v[NF_ROLE_KEY], a->v[NF_ROLE_VALUE]};
    bool any = false;
    for (int i = 0; i < 4 && !any; i++) {
        if (ts[i] == NULL) continue;
        PyObject *r = call1(torch_.has_tangent, ts[i]);
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
    if (nf_args_shape_of(result, torch_.tensor_type, shape, &rank) == 0 && rank == key->problem.na_dim + 3)
        nf_py_check_window(w, key, shape[rank - 1]);
    P.PyErr_Clear();
}

/* The eager path: every parameter bound, in signature order. */
static PyObject *wrapper(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    nf_wrap *w = P.PyCapsule_GetPointer(self, "naflops.wrap");
    Py_ssize_t nargs = (Py_ssize_t)(nargsf & ~((size_t)1 << (8 * sizeof(size_t) - 1)));
    if (w == NULL) return NULL;
    if (nargs != w->nparams || kwnames != NULL) /* not the generated function's call: pass on */
        return call_vector(w->original, args, nargs, kwnames);

    if (w->target->backend != NULL || frame.depth > 0 || nf_py_compiled_active()) {
        /* A backend marker, or a NATTEN call inside a counted op (eager, or compiled
         * and still open: a frame Dynamo left to run eagerly): count nothing. */
        if (w->target->backend != NULL && frame.depth > 0)
            frame.backend = nf_py_join_backend(frame.backend, w->target->backend);
        else if (w->target->backend != NULL)
            nf_py_compiled_note_backend(w->target->backend);
        return call_original(w, args);
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
        if (idle) return call_original(w, args);
    }

    /* Read the arguments first (no side effects), count only once the call succeeded:
     * a call NATTEN rejects is not counted and its exception reaches the program. */
    nf_key key;
    nf_tdesc descs[NF_ROLE_COUNT];
    if (!guarded) nf_args_describe_fast(&a, descs, torch_.tensor_type);
    PyObject *guard = guard_enter(guarded);
    bool readable = first != NULL && nf_py_key(w, &a, &key) == 0;
    guard_leave(guard);
    P.PyErr_Clear(); /* no error is set on entry to a call */

    /* In scope during the call, for work done meanwhile to be attributed to it (the
     * backend is only known afterwards). */
    nf_frame saved = frame;
    frame.depth = 1;
    frame.backend = NF_INTERN_NONE;
    nf_scope outer = nf_scope_enter(readable ? &key : NULL);
    PyObject *result = call_original(w, args);
    nf_scope_leave(outer);
    uint16_t backend = frame.backend;
    frame = saved;
    if (result == NULL) {
        if (readable) { /* the program's exception is held meanwhile, then handed back */
            PyObject *et, *ev, *tb;
            P.PyErr_Fetch(&et, &ev, &tb);
            if (is_stop_recomputation(et) && (key.pass = nf_py_forward_pass()) == NF_PASS_RECOMPUTE)
                nf_py_count(w, &key, backend, NULL, 0);
            P.PyErr_Restore(et, ev, tb);
        }
        return NULL;
    }
    if (!readable) {
        if (!count_nested(w, args)) nf_py_uncounted(w, why_unreadable(&a, w));
        return result;
    }
    PyObject *outs[4];
    guard = guard_enter(guarded);
    if (w->target->kind == NF_KIND_QK) check_qk_output(w, &key, result);
    int n = grad_outputs(result, outs, 4);
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

static nf_py_method_def wrapper_def = {"naflops_wrapper", (void *)wrapper,
                                       NF_METH_FASTCALL | NF_METH_KEYWORDS, NULL};

/* ------------------------------------------------------------ the bootstrap's C side */

/* make(original, index, parameter_names, n_positional) -> (hot, token, roles), or
 * None to leave the function alone. roles: ((parameter index, values needed), ...)
 * for the roles the function has, in role order (what the compiled path describes);
 * None for a backend marker. */
static PyObject *py_make(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 4 || nwraps >= NF_MAX_WRAPS) return nf_py_none();
    long long index = P.PyLong_AsLongLong(args[1]);
    long long npos = P.PyLong_AsLongLong(args[3]);
    Py_ssize_t np = P.PySequence_Size(args[2]);
    if (index < 0 || index >= nf_target_count || np < 0 || npos < 0 || npos > np) {
        P.PyErr_Clear();
        return nf_py_none();
    }
    nf_wrap *w = calloc(1, sizeof *w);
    if (w == NULL) return nf_py_none();
    w->target = &nf_targets[index];
    w->op = nf_intern(w->target->op);
    w->inner = strcmp(w->target->function, "neighborhood_attention_generic") == 0;
    w->original = args[0];
    w->nparams = (int)np;
    w->npos = (int)npos;
    P.Py_IncRef(w->original);
    if (np > npos && (w->kwnames = P.PyTuple_New(np - npos)) != NULL)
        for (Py_ssize_t i = npos; i < np; i++) P.PyTuple_SetItem(w->kwnames, i - npos, P.PySequence_GetItem(args[2], i));
    int nroles = 0;
    for (int r = 0; r < NF_ROLE_COUNT; r++) {
        w->pos[r] = -1;
        for (Py_ssize_t i = 0; i < np; i++) {
            PyObject *name = P.PySequence_GetItem(args[2], i);
            int same = name && P.PyUnicode_CompareWithASCIIString(name, nf_role_param[r]) == 0;
            if (name) P.Py_DecRef(name);
            if (same) w->pos[r] = (int)i;
        }
        if (w->pos[r] >= 0) nroles++;
    }
    P.PyErr_Clear();
    PyObject *roles = NULL;
    if (w->target->backend != NULL) {
        roles = nf_py_none();
    } else if ((roles = P.PyTuple_New(nroles)) != NULL) {
        for (int r = 0, j = 0; r < NF_ROLE_COUNT; r++) {
            if (w->pos[r] < 0) continue;
            bool values = r == NF_ROLE_CU_SEQLEN_Q || r == NF_ROLE_CU_SEQLEN_KV ||
                          r == NF_ROLE_SEQLENS_Q || r == NF_ROLE_SEQLENS_KV;
            PyObject *pair = P.PyTuple_New(2);
            if (pair == NULL) break;
            P.PyTuple_SetItem(pair, 0, P.PyLong_FromLong(w->pos[r]));
            P.PyTuple_SetItem(pair, 1, P.PyLong_FromLong(values));
            P.PyTuple_SetItem(roles, j++, pair);
        }
    }
    PyObject *cap = P.PyCapsule_New(w, "naflops.wrap", NULL);
    PyObject *fn = cap ? P.PyCFunction_NewEx(&wrapper_def, cap, NULL) : NULL;
    if (cap) P.Py_DecRef(cap);
    PyObject *out = fn && roles ? P.PyTuple_New(3) : NULL;
    if (out == NULL) {
        if (fn) P.Py_DecRef(fn);
        if (roles) P.Py_DecRef(roles);
        P.PyErr_Clear();
        return nf_py_none();
    }
    wraps[nwraps] = w;
    P.PyTuple_SetItem(out, 0, fn);
    P.PyTuple_SetItem(out, 1, P.PyLong_FromLong(nwraps++));
    P.PyTuple_SetItem(out, 2, roles);
    return out;
}

/* set_torch(torch, hook_factory, multi_grad_hook, nested_parts, has_tangent): what the
 * wrappers use. */
static PyObject *py_set_torch(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 5 || torch_.tensor_type != NULL) return nf_py_none();
    PyObject *torch = args[0];
    torch_.tensor_type = P.PyObject_GetAttrString(torch, "Tensor");
    PyObject *C = P.PyObject_GetAttrString(torch, "_C");
    if (C != NULL) {
        torch_.mode_enabled = P.PyObject_GetAttrString(C, "_is_torch_function_mode_enabled");
        P.PyErr_Clear();
        torch_.disable_tf = P.PyObject_GetAttrString(C, "DisableTorchFunction");
        P.PyErr_Clear();
        torch_.graph_task_id = P.PyObject_GetAttrString(C, "_current_graph_task_id");
        P.Py_DecRef(C);
    }
    P.PyErr_Clear();
    P.Py_IncRef(args[1]);
    torch_.hook_factory = args[1];
    P.Py_IncRef(args[3]);
    torch_.nested_parts = args[3];
    P.Py_IncRef(args[4]);
    torch_.has_tangent = args[4];
    PyObject *autograd = P.PyObject_GetAttrString(torch, "autograd");
    PyObject *fwad = autograd ? P.PyObject_GetAttrString(autograd, "forward_ad") : NULL;
    torch_.forward_ad = fwad ? P.PyObject_GetAttrString(fwad, "__dict__") : NULL;
    torch_.minus_one = P.PyLong_FromLong(-1);
    if (fwad) P.Py_DecRef(fwad);
    if (autograd) P.Py_DecRef(autograd);
    P.PyErr_Clear();
    if (args[2] != P.None) {
        P.Py_IncRef(args[2]);
        torch_.multi_grad_hook = args[2];
    }
    return nf_py_none();
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
    nf_core_set_natten_version(v);
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

/* natten_ready(version): natten has finished importing. A release the target table
 * does not know is said once, with the entry points that will be counted. */
static PyObject *py_natten_ready(PyObject *self, PyObject *version) {
    (void)self;
    static atomic_bool said_release;
    const char *v = P.PyUnicode_AsUTF8AndSize(version, NULL);
    P.PyErr_Clear();
    if (nf_natten_release(v) == NF_RELEASE_KNOWN) return nf_py_none();
    char counted[1024] = "", line[1536];
    size_t len = 0;
    for (int i = 0; i < nwraps; i++) {
        const nf_target *t = wraps[i]->target;
        bool again = false; /* the same name in another module (natten.experimental) */
        for (int j = 0; j < i && !again; j++) again = wraps[j]->op == wraps[i]->op;
        if (t->backend != NULL || again) continue;
        int k = snprintf(counted + len, sizeof counted - len, "%s%s", len ? ", " : "", t->op);
        if (k < 0 || (size_t)k >= sizeof counted - len) break;
        len += (size_t)k;
    }
    nf_log_once(&said_release, "%s", nf_natten_release_line(v, counted, line, sizeof line));
    return nf_py_none();
}

/* torch_ready(version): torch has finished importing. */
static PyObject *py_torch_ready(PyObject *self, PyObject *version) {
    (void)self;
    const char *v = P.PyUnicode_AsUTF8AndSize(version, NULL);
    if (v != NULL) nf_torch_load(v);
    nf_args_set_reader(nf_torch_reader());
    P.PyErr_Clear();
    return nf_py_none();
}

static nf_py_method_def c_defs[] = {
    {"torch_ready", (void *)py_torch_ready, NF_METH_O, NULL},
    {"finish", (void *)py_finish, NF_METH_NOARGS, NULL},
    {"make", (void *)py_make, NF_METH_FASTCALL, NULL},
    {"targets", (void *)py_targets, NF_METH_NOARGS, NULL},
    {"set_version", (void *)py_set_version, NF_METH_O, NULL},
    {"set_torch", (void *)py_set_torch, NF_METH_FASTCALL, NULL},
    {"backward", (void *)py_backward, NF_METH_O, NULL},
    {"failed", (void *)py_failed, NF_METH_O, NULL},
    {"natten_ready", (void *)py_natten_ready, NF_METH_O, NULL},
};

static int intern_names(void) {
    s_requires_grad = P.PyUnicode_InternFromString("requires_grad");
    s_register_hook = P.PyUnicode_InternFromString("register_hook");
    s_grad_fn = P.PyUnicode_InternFromString("grad_fn");
    s_name = P.PyUnicode_InternFromString("__name__");
    s_enter = P.PyUnicode_InternFromString("__enter__");
    s_exit = P.PyUnicode_InternFromString("__exit__");
    libnatten_id = nf_intern("libnatten");
    meta_id = nf_intern("meta");
    return s_requires_grad && s_register_hook && s_grad_fn && s_name && s_enter && s_exit &&
                   nf_args_init() == 0 && nf_py_compiled_init() == 0
               ? 0
               : -1;
}

/* Runs py_bootstrap.py with the C side in its globals as `_c`. */
static int run_bootstrap(void) {
    int rc = -1;
    PyObject *globals = P.PyDict_New(), *c = P.PyDict_New(), *code = NULL, *r = NULL;
    /* __module__ of the builtins: inductor writes the reorderable logging functions
     * into its config strings as module.name */
    PyObject *module = P.PyUnicode_FromString("naflops");
    if (globals == NULL || c == NULL || module == NULL || intern_names() != 0) goto out;
    if (P.PyDict_SetItemString(globals, "__builtins__", P.PyEval_GetBuiltins()) != 0) goto out;
    /* No __name__: Dynamo imports the module a traced function's globals name (torch
     * 2.6 when it inlines the bootstrap's traced helper); without one it keeps the
     * globals by identity. */
    for (size_t i = 0; i < sizeof c_defs / sizeof c_defs[0]; i++) {
        PyObject *fn = P.PyCFunction_NewEx(&c_defs[i], NULL, module);
        if (fn == NULL || P.PyDict_SetItemString(c, c_defs[i].ml_name, fn) != 0) goto out;
        P.Py_DecRef(fn);
    }
    for (size_t i = 0; i < sizeof nf_py_compiled_defs / sizeof nf_py_compiled_defs[0]; i++) {
        PyObject *fn = P.PyCFunction_NewEx(&nf_py_compiled_defs[i], NULL, module);
        if (fn == NULL || P.PyDict_SetItemString(c, nf_py_compiled_defs[i].ml_name, fn) != 0) goto out;
        P.Py_DecRef(fn);
    }
    if (P.PyDict_SetItemString(globals, "_c", c) != 0) goto out;
    code = P.Py_CompileString(nf_py_bootstrap_source, "<naflops bootstrap>", NF_PY_FILE_INPUT);
    if (code == NULL) goto out;
    r = P.PyEval_EvalCode(code, globals, globals);
    rc = r != NULL ? 0 : -1;
    if (rc == 0) nf_core_note_program();
out:
    if (module) P.Py_DecRef(module);
    if (r) P.Py_DecRef(r);
    if (code) P.Py_DecRef(code);
    if (c) P.Py_DecRef(c);
    if (globals) P.Py_DecRef(globals);
    return rc;
}

/* ------------------------------------------------------------ the audit hook */

static bool installed, installing;
static atomic_bool said_install;

/* The first import of a natten module, or of torch, runs the bootstrap. */
static bool is_trigger_module(PyObject *name) {
    Py_ssize_t len;
    const char *s = name ? P.PyUnicode_AsUTF8AndSize(name, &len) : NULL;
    if (s == NULL) {
        P.PyErr_Clear();
        return false;
    }
    if (strncmp(s, "natten", 6) == 0 && (s[6] == '\0' || s[6] == '.')) return true;
    return strcmp(s, "torch") == 0; /* a torch program: its dump is always written */
}

static int audit_hook(const char *event, PyObject *args, void *data) {
    (void)data;
    /* Called for every audit event in the process: leave at once unless this is the
     * first import of a natten module (or of torch), or an exec. */
    if (event[0] == 'o' && strcmp(event, "os.exec") == 0) {
        nf_core_finish(); /* the image ends here: its report now, before it is replaced */
        return 0;
    }
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
