/* What the NATTEN wrappers' files share: the wrapped functions, the op running on
 * the thread, counting a call and hooking its backward. */
#ifndef NF_PY_NATTEN_INTERNAL_H
#define NF_PY_NATTEN_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "../src/nf_ledger.h"
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

/* The compiled path (py_compiled.c): C builtins Dynamo calls after a compiled graph. */
extern nf_py_method_def nf_py_compiled_defs[3];
int nf_py_compiled_init(void);
/* Whether a compiled NATTEN call is between its begin and end on this thread. */
bool nf_py_compiled_active(void);
/* A backend marker ran (eagerly) inside the open compiled call. */
void nf_py_compiled_note_backend(const char *backend);

#endif
