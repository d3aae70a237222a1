/* NATTEN calls inside code compiled by torch.compile.
 *
 * Dynamo traces a wrapped function's compiled path (py_bootstrap.py: traced), which
 * calls begin before the original, mark in each backend marker it passes, and end
 * after it. These three are registered as reorderable logging functions: Dynamo puts
 * nothing in the graph for them and calls them after the compiled graph runs, on
 * every run, in the order it traced them, with what it knew while tracing (a tensor
 * described by value: "T", dtype, device, rank, dims; a live tensor: "t", tensor;
 * a sequence: "S", length, items; "?" for what Dynamo only knew symbolically;
 * anything else as is). So a call of na2d, which
 * calls neighborhood_attention_generic, arrives as begin(na2d) begin(generic)
 * mark(flex-fna) end(generic) end(na2d), graph breaks or not: a small per-thread
 * stack counts the outermost call, as the eager path does. */
#include <stdatomic.h>
#include <string.h>

#include "../src/nf_intern.h"
#include "../src/nf_log.h"
#include "py_args.h"
#include "py_natten_internal.h"

#define P nf_py

#define NF_COMPILED_DEPTH 8

typedef struct nf_pending {
    const nf_wrap *w;
    nf_key key;
    bool counted;   /* false: nested in another op, or unreadable */
    uint16_t backend;
} nf_pending;

static _Thread_local struct {
    int depth;
    nf_pending stack[NF_COMPILED_DEPTH];
} pending;

static PyObject *s_T, *s_t, *s_S, *s_unknown;

bool nf_py_compiled_active(void) { return pending.depth > 0; }

/* Decodes the described arguments into a, in role order. Tuples built for "S" are
 * returned in owned[] for the caller to release. Returns -1 on a malformed list. */
static int decode(const nf_wrap *w, PyObject *const *items, Py_ssize_t n, nf_argv *a,
                  nf_tdesc *descs, PyObject **owned, int *nowned) {
    Py_ssize_t i = 0;
    memset(a, 0, sizeof *a);
    for (int r = 0; r < NF_ROLE_COUNT; r++) {
        if (w->pos[r] < 0) continue;
        if (i >= n) return -1;
        PyObject *x = items[i++];
        if (x == s_T) {
            if (i + 3 > n) return -1;
            nf_tdesc *d = &descs[r];
            d->dtype = items[i];
            d->device = items[i + 1];
            long long rank = P.PyLong_AsLongLong(items[i + 2]);
            i += 3;
            if (rank < 0 || rank > NF_MAX_RANK || i + rank > n) return -1;
            d->rank = (uint8_t)rank;
            for (long long k = 0; k < rank; k++) d->shape[k] = P.PyLong_AsLongLong(items[i++]);
            a->d[r] = d;
        } else if (x == s_t) {
            if (i >= n) return -1;
            a->v[r] = items[i++];
        } else if (x == s_S) {
            if (i >= n) return -1;
            long long len = P.PyLong_AsLongLong(items[i++]);
            if (len < 0 || i + len > n) return -1;
            PyObject *t = P.PyTuple_New((Py_ssize_t)len);
            if (t == NULL) return -1;
            owned[(*nowned)++] = t;
            for (long long k = 0; k < len; k++) {
                P.Py_IncRef(items[i]);
                P.PyTuple_SetItem(t, (Py_ssize_t)k, items[i++]);
            }
            a->v[r] = t;
        } else if (x == s_unknown) {
            return -1; /* a value Dynamo only knew symbolically */
        } else {
            a->v[r] = x != P.None ? x : NULL;
        }
    }
    return P.PyErr_Occurred() ? -1 : 0;
}

/* begin(token, *described) */
static PyObject *py_begin(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    const nf_wrap *w = nargs >= 1 ? nf_py_wrap(P.PyLong_AsLongLong(args[0])) : NULL;
    P.PyErr_Clear();
    if (w == NULL) return nf_py_none();
    /* Nested: 0.21's generic inside na*d. Anything else arriving while a call is
     * open means that call never ended (it raised): start over. */
    bool nested = pending.depth > 0 && w->inner && !pending.stack[pending.depth - 1].w->inner;
    if (!nested) pending.depth = 0;
    if (pending.depth >= NF_COMPILED_DEPTH) return nf_py_none();
    nf_pending *p = &pending.stack[pending.depth++];
    p->w = w;
    p->backend = NF_INTERN_NONE;
    p->counted = false;
    if (nested) return nf_py_none();

    nf_argv a;
    nf_tdesc descs[NF_ROLE_COUNT];
    PyObject *owned[NF_ROLE_COUNT];
    int nowned = 0;
    p->counted = decode(w, args + 1, nargs - 1, &a, descs, owned, &nowned) == 0 &&
                 nf_py_key(w, &a, &p->key) == 0;
    if (p->counted) p->key.pass = nf_py_forward_pass();
    else nf_py_uncounted(w, "the arguments of its compiled call could not be read");
    for (int k = 0; k < nowned; k++) P.Py_DecRef(owned[k]);
    P.PyErr_Clear();
    return nf_py_none();
}

void nf_py_compiled_note_backend(const char *backend) {
    if (pending.depth > 0) pending.stack[0].backend = nf_py_join_backend(pending.stack[0].backend, backend);
}

/* mark(token): a backend marker ran inside the open call. */
static PyObject *py_mark(PyObject *self, PyObject *token) {
    (void)self;
    const nf_wrap *w = nf_py_wrap(P.PyLong_AsLongLong(token));
    P.PyErr_Clear();
    if (w != NULL && w->target->backend != NULL) nf_py_compiled_note_backend(w->target->backend);
    return nf_py_none();
}

/* end(token, *outputs needing gradients) */
static PyObject *py_end(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    const nf_wrap *w = nargs >= 1 ? nf_py_wrap(P.PyLong_AsLongLong(args[0])) : NULL;
    P.PyErr_Clear();
    if (w == NULL || pending.depth == 0 || pending.stack[pending.depth - 1].w != w) {
        pending.depth = 0; /* out of step: drop what is open */
        return nf_py_none();
    }
    nf_pending *p = &pending.stack[--pending.depth];
    if (p->counted) nf_py_count(w, &p->key, p->backend, args + 1, (int)(nargs - 1));
    P.PyErr_Clear();
    return nf_py_none();
}

nf_py_method_def nf_py_compiled_defs[3] = {
    {"begin", (void *)py_begin, NF_METH_FASTCALL, NULL},
    {"mark", (void *)py_mark, NF_METH_O, NULL},
    {"end", (void *)py_end, NF_METH_FASTCALL, NULL},
};

int nf_py_compiled_init(void) {
    s_T = P.PyUnicode_InternFromString("T");
    s_t = P.PyUnicode_InternFromString("t");
    s_S = P.PyUnicode_InternFromString("S");
    s_unknown = P.PyUnicode_InternFromString("?");
    return s_T && s_t && s_S && s_unknown ? 0 : -1;
}
