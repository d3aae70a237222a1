/* The bootstrap's C side: the builtins py_bootstrap.py is given as `_c` (make a
 * wrapper, the target table, torch and NATTEN ready, versions, failures, the final
 * report), and running the bootstrap itself. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/nf_core.h"
#include "../../src/nf_intern.h"
#include "../../src/nf_log.h"
#include "natten_release.h"
#include "natten_targets.h"
#include "py_args.h"
#include "py_module.h"
#include "py_state.h"
#include "../torch/torch_loader.h"
#include "py_bootstrap.h" /* generated from py_bootstrap.py: nf_py_bootstrap_source */

#define P nf_py

static atomic_bool said_failed;

/* make(original, index, parameter_names, n_positional) -> (hot, token, roles), or
 * None to leave the function alone. roles: ((parameter index, values needed), ...)
 * for the roles the function has, in role order (what the compiled path describes);
 * None for a backend marker. */
static PyObject *py_make(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 4 || nf_py_wraps_full()) return nf_py_none();
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
    w->names = P.PySequence_Tuple != NULL ? P.PySequence_Tuple(args[2]) : NULL;
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
    PyObject *fn = cap ? P.PyCFunction_NewEx(&nf_py_wrapper_def, cap, NULL) : NULL;
    if (cap) P.Py_DecRef(cap);
    PyObject *out = fn && roles ? P.PyTuple_New(3) : NULL;
    if (out == NULL) {
        if (fn) P.Py_DecRef(fn);
        if (roles) P.Py_DecRef(roles);
        P.PyErr_Clear();
        return nf_py_none();
    }
    long token = nf_py_wrap_add(w);
    P.PyTuple_SetItem(out, 0, fn);
    P.PyTuple_SetItem(out, 1, P.PyLong_FromLong(token));
    P.PyTuple_SetItem(out, 2, roles);
    return out;
}

/* set_torch(torch, hook_factory, multi_grad_hook, nested_parts, has_tangent): what the
 * wrappers use. */
static PyObject *py_set_torch(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 5 || nf_py_torch.tensor_type != NULL) return nf_py_none();
    PyObject *torch = args[0];
    nf_py_torch.tensor_type = P.PyObject_GetAttrString(torch, "Tensor");
    if (nf_core_config()->modules) nf_py_module_set_torch(torch);
    PyObject *C = P.PyObject_GetAttrString(torch, "_C");
    if (C != NULL) {
        nf_py_torch.mode_enabled = P.PyObject_GetAttrString(C, "_is_torch_function_mode_enabled");
        P.PyErr_Clear();
        nf_py_torch.disable_tf = P.PyObject_GetAttrString(C, "DisableTorchFunction");
        P.PyErr_Clear();
        nf_py_torch.graph_task_id = P.PyObject_GetAttrString(C, "_current_graph_task_id");
        P.Py_DecRef(C);
    }
    P.PyErr_Clear();
    P.Py_IncRef(args[1]);
    nf_py_torch.hook_factory = args[1];
    P.Py_IncRef(args[3]);
    nf_py_torch.nested_parts = args[3];
    P.Py_IncRef(args[4]);
    nf_py_torch.has_tangent = args[4];
    PyObject *autograd = P.PyObject_GetAttrString(torch, "autograd");
    PyObject *fwad = autograd ? P.PyObject_GetAttrString(autograd, "forward_ad") : NULL;
    nf_py_torch.forward_ad = fwad ? P.PyObject_GetAttrString(fwad, "__dict__") : NULL;
    nf_py_torch.minus_one = P.PyLong_FromLong(-1);
    if (fwad) P.Py_DecRef(fwad);
    if (autograd) P.Py_DecRef(autograd);
    P.PyErr_Clear();
    if (args[2] != P.None) {
        P.Py_IncRef(args[2]);
        nf_py_torch.multi_grad_hook = args[2];
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
    nf_py_release.version = nf_intern(v);
    nf_core_set_natten_version(v);
    int major = 0, minor = 0;
    nf_py_release.legacy = sscanf(v, "%d.%d", &major, &minor) == 2 && major == 0 && minor < 20;
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
    for (int i = 0; i < nf_py_wrap_count(); i++) {
        const nf_target *t = nf_py_wrap(i)->target;
        bool again = false; /* the same name in another module (natten.experimental) */
        for (int j = 0; j < i && !again; j++) again = nf_py_wrap(j)->op == nf_py_wrap(i)->op;
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

/* at_exit() -> whether the report is registered with Py_AtExit: run at the interpreter's
 * end, after the program's own atexit handlers and before an uncaught
 * KeyboardInterrupt's SIGINT (which skips C's atexit), without importing Python's
 * atexit module (-X importtime would list it). False: the bootstrap uses atexit. */
static PyObject *py_at_exit(PyObject *self, PyObject *unused) {
    (void)self, (void)unused;
    bool ok = P.Py_AtExit != NULL && P.Py_AtExit(nf_core_finish) == 0;
    PyObject *r = ok ? P.True : P.False;
    P.Py_IncRef(r);
    return r;
}

/* The builtin a found module's loader runs as its exec_module: self is
 * (exec_module, name, after). exec_module(module), then after(name, module) when it
 * succeeded. A builtin, not a Python function: no frame of the counter's sits under
 * the module's own code while it runs. */
static PyObject *exec_then_call(PyObject *self, PyObject *module) {
    PyObject *r = P.PyObject_CallFunctionObjArgs(P.PyTuple_GetItem(self, 0), module, NULL);
    if (r == NULL) return NULL;
    P.Py_DecRef(r);
    PyObject *after = P.PyObject_CallFunctionObjArgs(P.PyTuple_GetItem(self, 2), P.PyTuple_GetItem(self, 1),
                                                     module, NULL);
    if (after) P.Py_DecRef(after);
    P.PyErr_Clear(); /* after() says its own failures, once */
    return nf_py_none();
}

static nf_py_method_def exec_then_def = {"exec_module", (void *)exec_then_call, NF_METH_O, NULL};

/* exec_then(exec_module, name, after) -> the builtin above. */
static PyObject *py_exec_then(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 3) return nf_py_none();
    PyObject *bound = nf_py_tuple_of(args, 3);
    if (bound == NULL) return NULL;
    PyObject *fn = P.PyCFunction_NewEx(&exec_then_def, bound, NULL);
    P.Py_DecRef(bound);
    return fn;
}

static nf_py_method_def c_defs[] = {
    {"exec_then", (void *)py_exec_then, NF_METH_FASTCALL, NULL},
    {"at_exit", (void *)py_at_exit, NF_METH_NOARGS, NULL},
    {"torch_ready", (void *)py_torch_ready, NF_METH_O, NULL},
    {"finish", (void *)py_finish, NF_METH_NOARGS, NULL},
    {"make", (void *)py_make, NF_METH_FASTCALL, NULL},
    {"hook", (void *)nf_py_hook_calls, NF_METH_FASTCALL, NULL},
    {"code_of", (void *)nf_py_code_of, NF_METH_O, NULL},
    {"aot_runner", (void *)nf_py_aot_runner, NF_METH_FASTCALL, NULL},
    {"flex_kernel", (void *)nf_py_flex_kernel, NF_METH_FASTCALL, NULL},
    {"targets", (void *)py_targets, NF_METH_NOARGS, NULL},
    {"set_version", (void *)py_set_version, NF_METH_O, NULL},
    {"set_torch", (void *)py_set_torch, NF_METH_FASTCALL, NULL},
    {"backward", (void *)nf_py_backward, NF_METH_O, NULL},
    {"failed", (void *)py_failed, NF_METH_O, NULL},
    {"natten_ready", (void *)py_natten_ready, NF_METH_O, NULL},
};

static int intern_names(void) {
    nf_py_str.requires_grad = P.PyUnicode_InternFromString("requires_grad");
    nf_py_str.register_hook = P.PyUnicode_InternFromString("register_hook");
    nf_py_str.grad_fn = P.PyUnicode_InternFromString("grad_fn");
    nf_py_str.name = P.PyUnicode_InternFromString("__name__");
    nf_py_str.enter = P.PyUnicode_InternFromString("__enter__");
    nf_py_str.exit = P.PyUnicode_InternFromString("__exit__");
    nf_py_release.libnatten = nf_intern("libnatten");
    nf_py_release.meta = nf_intern("meta");
    return nf_py_str.requires_grad && nf_py_str.register_hook && nf_py_str.grad_fn && nf_py_str.name && nf_py_str.enter && nf_py_str.exit &&
                   nf_args_init() == 0 && nf_py_compiled_init() == 0
               ? 0
               : -1;
}

/* Runs py_bootstrap.py with the C side in its globals as `_c`. */
int nf_py_run_bootstrap(void) {
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
    for (size_t i = 0; i < sizeof nf_py_step_defs / sizeof nf_py_step_defs[0]; i++) {
        PyObject *fn = P.PyCFunction_NewEx(&nf_py_step_defs[i], NULL, module);
        if (fn == NULL || P.PyDict_SetItemString(c, nf_py_step_defs[i].ml_name, fn) != 0) goto out;
        P.Py_DecRef(fn);
    }
    if (P.PyDict_SetItemString(globals, "_c", c) != 0) goto out;
    code = P.Py_CompileString(nf_py_bootstrap_source, "<naflops bootstrap>", NF_PY_FILE_INPUT);
    if (code == NULL) goto out;
    r = P.PyEval_EvalCode(code, globals, globals);
    if (r == NULL) goto out;
    P.Py_DecRef(r);
    P.Py_DecRef(code);
    /* The finder, filed as importlib's: an import's traceback drops its frames. */
    code = P.Py_CompileString(nf_py_bootstrap_import_source, "<frozen importlib._bootstrap_external>",
                              NF_PY_FILE_INPUT);
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

