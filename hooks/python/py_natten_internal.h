/* What the Python adapter's files share, one line per file that provides it:
 *   py_state.c            the wrapped functions, torch's refs, the pass (py_state.h)
 *   py_backward.c         backward hooks and their counts
 *   py_count.c            counting one call
 *   py_wrapper.c          the eager call path (nf_py_wrapper_def)
 *   py_call_hook.c        the same path from a function's vectorcall slot (3.12+)
 *   py_compiled.c         the compiled path (builtins Dynamo calls after a graph)
 *   py_bootstrap_side.c   the bootstrap's builtins, and running it
 *   py_audit.c            the audit hook that starts it all (py_natten.h)
 * Dependencies point one way: a file calls only files above it in this list
 * (py_wrapper.c and py_compiled.c meet in py_state.c's nf_py_eager: the eager
 * call open on the thread, and an epoch that lets the compiled path drop a call
 * left open before an eager one began, so that no state outlives a failed compile
 * or run). */
#ifndef NF_PY_NATTEN_INTERNAL_H
#define NF_PY_NATTEN_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "../../src/nf_ledger.h"
#include "natten_targets.h"
#include "py_api.h"

/* One wrapped NATTEN function. Lives as long as the process. */
typedef struct nf_wrap {
    PyObject *original;
    const nf_target *target;
    uint16_t op;
    int pos[NF_ROLE_COUNT];  /* parameter index of each role; -1: not a parameter */
    int nparams;             /* every parameter, bound, is passed to the hot path */
    int npos;                /* the first npos positionally, the rest by keyword */
    PyObject *kwnames;       /* names of the keyword-only parameters, or NULL */
    bool inner;              /* may run inside another counted op (0.21's generic) */
    PyObject *names;         /* every parameter's name, in signature order */
    int nposonly;            /* how many of the first are positional-only */
    PyObject *twin;          /* 3.12+: the function object that runs the original's
                              * code for its hooked call (py_call_hook.c), or NULL */
    atomic_bool said;        /* a call of it could not be counted: said once */
    atomic_bool said_window; /* its kernel size and a tensor's window disagreed: said once */
} nf_wrap;

/* nf_args_key for a call of w; a window that disagreed with the kernel size is said
 * once (the key counts the window). 0, or -1 where the arguments cannot be read. */
struct nf_argv;
int nf_py_key(const nf_wrap *w, const struct nf_argv *a, nf_key *key);

/* For a key already read: the window the call's output (QK) or argument (AV) holds
 * per query, as nf_py_key checks. */
void nf_py_check_window(const nf_wrap *w, nf_key *key, int64_t last_dim);

/* A call of w ran but is not counted: counted as such, said once per op. */
void nf_py_uncounted(const nf_wrap *w, const char *why);

/* The wrapper with this token (its index), or NULL. */
nf_wrap *nf_py_wrap(long token);

/* Counts one call of key (forward or recompute) with the backend that ran it, and
 * hooks its backward on the outputs that need gradients. Returns false when it could
 * not be counted (said once). */
bool nf_py_count(const nf_wrap *w, nf_key *key, uint16_t backend, PyObject *const *outputs, int n);

/* The interned NATTEN version. */
uint16_t nf_py_version(void);

/* The backend id as NATTEN's legacy releases report it when no marker ran. */
uint16_t nf_py_default_backend(void);

/* "a" + "b" -> "a+b": an op whose parts ran on two backends. */
uint16_t nf_py_join_backend(uint16_t current, const char *backend);

/* The pass a forward call on this thread belongs to: recompute while the autograd
 * engine runs (activation checkpointing), else forward. */
uint8_t nf_py_forward_pass(void);

/* py_backward.c. backward(order): the Python hook's builtin. */
PyObject *nf_py_backward(PyObject *self, PyObject *order);
/* Hooks the backward of entry e on the outputs of its call that need gradients. */
void nf_py_attach_backward(PyObject *const *outs, int n, nf_entry *e);
/* The tensors of a result (a tensor, or a tuple such as (output, lse)) that need
 * gradients, borrowed; at most max. */
int nf_py_grad_outputs(PyObject *result, PyObject **out, int max);

/* py_count.c. Why a call's arguments could not be read, in words. */
const char *nf_py_why_unreadable(const struct nf_argv *a, const nf_wrap *w);

/* py_wrapper.c: the `hot` builtin each wrapper calls. */
extern nf_py_method_def nf_py_wrapper_def;
/* The eager path for a call of w whose every parameter is bound in args (borrowed, in
 * signature order): reads, calls invoke(ctx) in the op's scope, counts. */
typedef PyObject *(*nf_py_invoke)(void *ctx);
PyObject *nf_py_counted_call(const nf_wrap *w, PyObject *const *args, nf_py_invoke invoke, void *ctx);
/* Whether an exception type is torch.utils.checkpoint's early stop (raised inside an
 * op whose recomputed work was done). Call with no exception set. */
bool nf_py_is_stop_recomputation(PyObject *type);

/* py_call_hook.c: hook(original, token, n_positional_only) -> twin or None: counts
 * the function's calls through its vectorcall slot (3.12+), no wrapper. */
PyObject *nf_py_hook_calls(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
/* Whether this CPython can hook a function's calls through its vectorcall slot
 * (3.12+), and a twin of fn: a new function with its code, globals, closure and
 * defaults and the default vectorcall (NULL with an error set). */
bool nf_py_can_hook_calls(void);
PyObject *nf_py_twin_of(PyObject *fn);
/* code_of(function) -> its code, read in C (no audit event), or None. */
PyObject *nf_py_code_of(PyObject *self, PyObject *fn);
/* py_aot.c: aot_runner(original, backward_plan) -> the builtin that runs AOTAutograd's
 * compiled graphs in call_func_at_runtime_with_args's place, each compiled backward
 * with its recompute plan entered (src/nf_plan.h), or None. */
PyObject *nf_py_aot_runner(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
/* How many of AOTAutograd's compiled graphs the runner is running on this thread. */
extern _Thread_local int nf_py_aot_depth;
/* py_flex.c: flex_kernel(original, is_backward, natten_mask, GraphModule) -> the
 * builtin in place of a kernel of torch's flex_attention op, which counts NATTEN's
 * Flex calls in exported programs, or None. */
PyObject *nf_py_flex_kernel(PyObject *self, PyObject *const *args, Py_ssize_t nargs);

/* py_bootstrap_side.c: runs py_bootstrap.py with its builtins; 0 or -1. */
int nf_py_run_bootstrap(void);

/* The compiled path (py_compiled.c): C builtins Dynamo calls after a compiled graph. */
extern nf_py_method_def nf_py_compiled_defs[3];
/* py_step.c: step_target(), step_make(original), step_failed(why): NAFLOPS_STEP */
extern nf_py_method_def nf_py_step_defs[3];
int nf_py_compiled_init(void);
/* py_state.c. Whether an eager NATTEN call is being counted on this thread (what
 * it runs, compiled or not, is its own). */
bool nf_py_eager_active(void);
/* A backend marker ran, compiled, inside the eager call open on this thread. */
void nf_py_eager_note_backend(const char *backend);
/* A backend marker ran (eagerly) inside the open compiled call. */
void nf_py_compiled_note_backend(const char *backend);

#endif
