/* NATTEN's Flex attention run with no NATTEN call around it: an exported program
 * (torch.export) holds NATTEN's Flex backend as torch's flex_attention higher-order
 * op, whose mask is a graph.
 *
 * The bootstrap (py_bootstrap_flex.py) hooks, through their vectorcall slots on
 * CPython 3.12+ (as py_call_hook.c hooks NATTEN's functions: the function objects and
 * torch's kernel tables are left as they are), else by builtins put in their place in
 * the op's kernel table, the op's dense kernels (the CompositeExplicitAutograd kernels of flex_attention and
 * flex_attention_backward, which every real run of the op reaches on the CPU, and on a
 * GPU outside compiled code), and of flex_attention's Autograd kernel (which makes
 * the op's autograd node, whose outputs carry the backward hook). Each call:
 *   - inside a counted NATTEN call (eager, compiled or at the dispatcher): passed on;
 *     that call owns it;
 *   - a mask that is a graph and that the bootstrap found to be NATTEN's
 *     neighborhood (once per graph, kept by its code and lengths): it runs in NATTEN's
 *     scope, so the dense bmm inside is NATTEN's, not other ops; and, unless it runs
 *     inside compiled code (where the compiled path counts the NATTEN call it traced),
 *     it is counted as NATTEN's op with the key the eager call would have: forward
 *     (or recompute) by the first forward kernel it reaches, backward by the hook
 *     that kernel hangs on its outputs, as for an eager call; the backward kernel
 *     only gives compiled backward graphs NATTEN's scope;
 *   - anything else (the program's own masks): passed on untouched. */
#include <stdio.h>
#include <string.h>

#include "../../src/nf_core.h"
#include "../../src/nf_flush.h"
#include "../../src/nf_intern.h"
#include "../../src/nf_ledger.h"
#include "../../src/nf_log.h"
#include "../../src/nf_scope.h"
#include "py_args.h"
#include "py_module.h"
#include "py_natten_internal.h"
#include "py_state.h"

#define P nf_py

_Thread_local int nf_py_aot_depth;

/* state: (original, is_backward, natten_mask, GraphModule, answers). */
enum { S_ORIGINAL, S_BACKWARD, S_ANALYSE, S_GRAPH_MODULE, S_ANSWERS, S_COUNT };

/* CPython 3.12+: the kernels hooked in place (their vectorcall slots), each with the
 * twin that runs its code, and its state. */
#define FLEX_HOOKS 4
static struct {
    PyObject *fn, *twin, *state;
} hooked[FLEX_HOOKS];

/* Where the op's arguments are (forward: query, key, value, score_mod, block_mask,
 * scale, kernel_options, score_mod_other_buffers, mask_mod_other_buffers; backward:
 * query, key, value, out, logsumexp, grad_out, grad_logsumexp, fw_graph,
 * joint_graph, block_mask, ..., mask_mod_other_buffers; torch 2.5 to 2.15). */
static const Py_ssize_t block_mask_at[2] = {4, 9}, mask_buffers_at[2] = {8, 13};

static atomic_bool said_uncounted;

/* What natten_mask() says of this mask for these lengths, borrowed from the answers
 * (None: not NATTEN's), asked once per mask code and lengths; NULL: not known. */
static PyObject *answer_for(PyObject *state, PyObject *mask, int64_t q_len, int64_t kv_len) {
    PyObject *answers = P.PyTuple_GetItem(state, S_ANSWERS);
    /* GraphModule keeps its generated code in _code (its `code` is a property: a
     * Python call, which profilers would see on every run of the op). */
    PyObject *code = P.PyObject_GetAttrString(mask, "_code");
    if (code != NULL && P.PyUnicode_AsUTF8AndSize(code, NULL) == NULL) {
        P.Py_DecRef(code);
        code = NULL;
    }
    PyObject *items[3] = {code, P.PyLong_FromLong((long)q_len), P.PyLong_FromLong((long)kv_len)};
    PyObject *key = code && items[1] && items[2] ? nf_py_tuple_of(items, 3) : NULL;
    PyObject *answer = key ? P.PyDict_GetItem(answers, key) : NULL; /* borrowed */
    if (key != NULL && answer == NULL) {
        PyObject *args[3] = {mask, items[1], items[2]};
        PyObject *fresh = P.PyObject_Vectorcall(P.PyTuple_GetItem(state, S_ANALYSE), args, 3, NULL);
        if (fresh == NULL) { /* the analysis failed: not NATTEN's, for good */
            P.PyErr_Clear();
            fresh = nf_py_none();
        }
        if (P.PyDict_SetItem(answers, key, fresh) == 0) answer = fresh; /* the dict holds it */
        P.Py_DecRef(fresh);
    }
    for (int i = 0; i < 3; i++)
        if (items[i]) P.Py_DecRef(items[i]);
    if (key) P.Py_DecRef(key);
    P.PyErr_Clear();
    return answer;
}

/* n non-negative ints of a sequence into out; false unless exactly n. */
static bool ints_of(PyObject *seq, int n, int64_t *out) {
    uint8_t len = 0;
    if (nf_args_int_seq(seq, out, n, &len) != 0 || len != n) return false;
    for (int i = 0; i < n; i++)
        if (out[i] < 0) return false;
    return true;
}

/* Flex's heads-first shape s (batch, heads, tokens, dim) as NATTEN's heads-last
 * layout (batch, *spatial, heads, dim). */
static void heads_last(const int64_t *s, int na_dim, const int64_t *spatial, int64_t *out, uint8_t *rank) {
    out[0] = s[0];
    memcpy(out + 1, spatial, sizeof(int64_t) * (size_t)na_dim);
    out[na_dim + 1] = s[1];
    out[na_dim + 2] = s[3];
    *rank = (uint8_t)(na_dim + 3);
}

/* The key NATTEN's own call would have (py_args.c's nf_args_key for na{1,2,3}d run
 * on the Flex backend), from the answer (shape, kernel, stride, dilation, causal)
 * and the rank-4 shapes of query and key, already read. */
static bool key_of(PyObject *answer, PyObject *const *args, const int64_t *q, const int64_t *kv, nf_key *key) {
    PyObject *parts[5] = {NULL};
    bool ok = P.PySequence_Size(answer) == 5;
    for (int i = 0; ok && i < 5; i++) ok = (parts[i] = P.PySequence_GetItem(answer, i)) != NULL;
    int n = ok ? (int)P.PySequence_Size(parts[0]) : 0;
    int64_t spatial[NF_MAX_NA_DIM], causal[NF_MAX_NA_DIM], v[NF_MAX_RANK];
    uint8_t vr = 0;
    nf_key_init(key);
    nf_problem *p = &key->problem;
    ok = ok && n >= 1 && n <= NF_MAX_NA_DIM && ints_of(parts[0], n, spatial) && ints_of(parts[1], n, p->kernel) &&
         ints_of(parts[2], n, p->stride) && ints_of(parts[3], n, p->dilation) && ints_of(parts[4], n, causal) &&
         nf_args_shape_of(args[2], nf_py_torch.tensor_type, v, &vr) == 0 && vr == 4;
    for (int i = 0; i < 5; i++)
        if (parts[i]) P.Py_DecRef(parts[i]);
    P.PyErr_Clear();
    if (!ok) return false;
    heads_last(q, n, spatial, p->q_shape, &p->q_rank);
    heads_last(kv, n, spatial, p->k_shape, &p->k_rank);
    heads_last(v, n, spatial, p->v_shape, &p->v_rank);
    p->kind = NF_KIND_FUSED;
    p->layout = NF_HEADS_LAST;
    p->na_dim = (uint8_t)n;
    for (int i = 0; i < n; i++)
        if (causal[i]) p->causal_mask |= (uint8_t)(1u << i);
    char op[8];
    snprintf(op, sizeof op, "na%dd", n);
    key->op = nf_intern(op);
    key->backend = nf_intern("flex-fna");
    key->version = nf_py_version();
    key->dtype = nf_args_tensor_dtype_id(args[0]);
    key->device = nf_args_tensor_device_id(args[0]);
    P.PyErr_Clear();
    return key->op != NF_INTERN_NONE && key->dtype != NF_INTERN_NONE && key->device != NF_INTERN_NONE;
}

/* Whether the code calls a function Dynamo compiled (its bytecode, as Dynamo rewrote
 * it, loads a global named __compiled_fn_*). */
static bool calls_compiled_fn(PyObject *code) {
    PyObject *names = code ? P.PyObject_GetAttrString(code, "co_names") : NULL;
    Py_ssize_t n = names && P.PyObject_IsInstance(names, P.TupleType) == 1 ? P.PyTuple_Size(names) : 0;
    bool yes = false;
    for (Py_ssize_t i = 0; i < n && !yes; i++) {
        const char *s = P.PyUnicode_AsUTF8AndSize(P.PyTuple_GetItem(names, i), NULL);
        yes = s != NULL && strncmp(s, "__compiled_fn", 13) == 0;
    }
    if (names) P.Py_DecRef(names);
    P.PyErr_Clear();
    return yes;
}

/* Whether this run of the op is part of code torch.compile compiled: an AOTAutograd
 * graph (py_aot.c's runner is running one) or a graph a Dynamo-rewritten frame calls
 * (up the stack). The compiled path counts the NATTEN call such code was traced from
 * (py_compiled.c); a compiled graph holding the op with no NATTEN call traced (a
 * compiled exported program) is not counted. Not the frames of torch's
 * torch._dynamo.disable wrappers, which eager code such as checkpointing has. */
static bool in_compiled_code(void) {
    if (nf_py_aot_depth > 0) return true;
    if (P.PyEval_GetFrame == NULL || P.PyFrame_GetBack == NULL || P.PyFrame_GetCode == NULL) return false;
    PyObject *frame = P.PyEval_GetFrame(); /* borrowed */
    if (frame) P.Py_IncRef(frame);
    bool compiled = false;
    for (int depth = 0; frame != NULL && depth < 64 && !compiled; depth++) {
        PyObject *code = P.PyFrame_GetCode(frame);
        compiled = calls_compiled_fn(code);
        if (code) P.Py_DecRef(code);
        PyObject *back = P.PyFrame_GetBack(frame);
        P.Py_DecRef(frame);
        frame = back;
    }
    if (frame) P.Py_DecRef(frame);
    return compiled;
}

static nf_entry *count(nf_key *key) {
    nf_entry *e = nf_ledger_entry(key);
    if (e == NULL) {
        nf_core_note_uncounted();
        nf_log_once(&said_uncounted, "a NATTEN Flex op in an exported program ran but is not counted: %s",
                    nf_ledger_overflowed() ? "too many distinct op signatures" : "shape outside the rules");
        return NULL;
    }
    nf_entry_add(e, 1);
    nf_flush_counted();
    return e;
}

/* One run of the kernel whose state this is; original runs its own code (the kernel
 * itself, or its twin). */
static PyObject *flex_run(PyObject *state, PyObject *original, PyObject *const *args, size_t nargsf,
                          PyObject *kwnames) {
    Py_ssize_t nargs = nf_py_nargs(nargsf);
    bool backward = P.PyTuple_GetItem(state, S_BACKWARD) == P.True;
    if (nf_scope_active() || kwnames != NULL || nargs <= mask_buffers_at[backward] ||
        !nf_args_is_exactly(args[0], nf_py_torch.tensor_type))
        return P.PyObject_Vectorcall(original, args, nargsf, kwnames);
    PyObject *block_mask = args[block_mask_at[backward]];
    Py_ssize_t parts = P.PyObject_IsInstance(block_mask, P.TupleType) == 1 ? P.PyTuple_Size(block_mask) : 0;
    PyObject *mask = parts > 0 ? P.PyTuple_GetItem(block_mask, parts - 1) : NULL;
    int64_t q[NF_MAX_RANK], kv[NF_MAX_RANK];
    uint8_t qr = 0, kr = 0;
    nf_key key;
    PyObject *answer = NULL;
    if (mask != NULL && P.PyObject_IsInstance(mask, P.PyTuple_GetItem(state, S_GRAPH_MODULE)) == 1 &&
        P.PySequence_Size(args[mask_buffers_at[backward]]) == 0 &&
        nf_args_shape_of(args[0], nf_py_torch.tensor_type, q, &qr) == 0 && qr == 4 &&
        nf_args_shape_of(args[1], nf_py_torch.tensor_type, kv, &kr) == 0 && kr == 4)
        answer = answer_for(state, mask, q[2], kv[2]);
    P.PyErr_Clear();
    if (answer == NULL || answer == P.None || !key_of(answer, args, q, kv, &key))
        return P.PyObject_Vectorcall(original, args, nargsf, kwnames);

    /* A backward outside compiled code runs in an autograd node that a counted
     * forward made (this file's, or NATTEN's own call): the observer leaves its ops
     * to that op, and the op's backward hook counts it. */
    bool compiled = in_compiled_code();
    if (backward && !compiled) return P.PyObject_Vectorcall(original, args, nargsf, kwnames);
    key.module = nf_py_module_here();
    key.pass = backward ? NF_PASS_BACKWARD : nf_py_forward_pass();
    nf_scope outer = nf_scope_enter(&key);
    PyObject *result = P.PyObject_Vectorcall(original, args, nargsf, kwnames);
    nf_scope_leave(outer);
    if (compiled || key.device == nf_py_release.meta) return result;
    if (result == NULL) { /* checkpointing stops its recompute inside the op, once done */
        PyObject *et, *ev, *tb;
        P.PyErr_Fetch(&et, &ev, &tb);
        if (key.pass == NF_PASS_RECOMPUTE && nf_py_is_stop_recomputation(et)) count(&key);
        P.PyErr_Restore(et, ev, tb);
        return NULL;
    }
    nf_entry *e = count(&key);
    PyObject *outs[3];
    int n = e != NULL ? nf_py_grad_outputs(result, outs, 3) : 0;
    if (n > 0 && (key.pass == NF_PASS_FORWARD || key.pass == NF_PASS_RECOMPUTE)) nf_py_attach_backward(outs, n, e);
    return result;
}

/* The builtin that takes a kernel's place in py_kernels (CPython 3.10, 3.11). */
static PyObject *flex_call(PyObject *state, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    return flex_run(state, P.PyTuple_GetItem(state, S_ORIGINAL), args, nargsf, kwnames);
}

static nf_py_method_def flex_def = {"flex_attention_dense", (void *)flex_call, NF_METH_FASTCALL | NF_METH_KEYWORDS,
                                    NULL};

/* A hooked kernel's vectorcall (3.12+): torch's dispatcher calls the kernel itself,
 * and its code runs in the twin's frame, so profilers and tracers see the calls they
 * see without the preload. */
static PyObject *hooked_call(PyObject *fn, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    for (int i = 0; i < FLEX_HOOKS; i++)
        if (hooked[i].fn == fn) return flex_run(hooked[i].state, hooked[i].twin, args, nargsf, kwnames);
    return NULL; /* cannot happen: the slot is set once the table holds fn */
}

/* Hooks fn in place; false where this CPython cannot (or fn is not a function). */
static bool hook_in_place(PyObject *fn, PyObject *state) {
    if (!nf_py_can_hook_calls() || P.PyFunction_GetCode(fn) == NULL) {
        P.PyErr_Clear();
        return false;
    }
    for (int i = 0; i < FLEX_HOOKS; i++) {
        if (hooked[i].fn == fn) return true;
        if (hooked[i].fn != NULL) continue;
        PyObject *twin = nf_py_twin_of(fn);
        if (twin == NULL) break;
        P.Py_IncRef(state);
        P.Py_IncRef(fn);
        hooked[i].twin = twin; /* kept for the process's life */
        hooked[i].state = state;
        hooked[i].fn = fn;
        P.PyFunction_SetVectorcall(fn, (void *)hooked_call);
        return true;
    }
    P.PyErr_Clear();
    return false;
}

/* flex_kernel(original, is_backward, natten_mask, GraphModule) -> True when the
 * kernel was hooked in place (3.12+), else the builtin to put in its place, or None
 * when this CPython lacks what it needs. */
PyObject *nf_py_flex_kernel(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 4 || P.PyObject_Vectorcall == NULL) return nf_py_none();
    PyObject *answers = P.PyDict_New();
    if (answers == NULL) return NULL;
    PyObject *items[S_COUNT] = {args[0], P.PyObject_IsTrue(args[1]) == 1 ? P.True : P.False, args[2], args[3],
                                answers};
    PyObject *state = nf_py_tuple_of(items, S_COUNT);
    P.Py_DecRef(answers);
    if (state == NULL) return NULL;
    if (hook_in_place(args[0], state)) {
        P.Py_DecRef(state);
        P.Py_IncRef(P.True);
        return P.True;
    }
    PyObject *fn = P.PyCFunction_NewEx(&flex_def, state, NULL);
    P.Py_DecRef(state);
    return fn;
}
