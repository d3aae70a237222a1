/* NATTEN calls inside code compiled by torch.compile.
 *
 * Dynamo traces a wrapped function's compiled path (py_bootstrap.py: traced), which
 * calls begin before the original, mark in each backend marker it passes, and end
 * after it. These three are registered as reorderable logging functions: Dynamo puts
 * nothing in the graph for them and calls them after the compiled graph runs, on
 * every run, in the order it traced them, with what it knew while tracing (a tensor
 * described by value (py_bootstrap.py's describe(): "T", dtype, device, rank,
 * "2x8x8x2x16"; "S", "3,3"; "V", "7": formatted after the graph where Dynamo only
 * knew them symbolically); a live tensor: "t", tensor;
 * anything else as is). So a call of na2d, which
 * calls neighborhood_attention_generic, arrives as begin(na2d) begin(generic)
 * mark(flex-fna) end(generic) end(na2d), graph breaks or not: a small per-thread
 * stack counts the outermost call, as the eager path does. */
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "../../src/nf_intern.h"
#include "../../src/nf_log.h"
#include "py_args.h"
#include "py_module.h"
#include "py_state.h"
#include "py_natten_internal.h"
#include "../torch/torch_loader.h"

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
    uint32_t epoch; /* nf_py_eager.epoch when the outermost call began */
    nf_pending stack[NF_COMPILED_DEPTH];
} pending;

static PyObject *s_T, *s_t, *s_S, *s_V;


/* The decimal digits at *s (at least one, none at or past end), advancing *s past
 * them; false when there are none or the value would overflow. */
static bool read_digits(const char **s, const char *end, int64_t *out) {
    const char *p = *s;
    int64_t v = 0;
    for (; p < end && *p >= '0' && *p <= '9'; p++) {
        if (v > (INT64_MAX - 9) / 10) return false;
        v = v * 10 + (*p - '0');
    }
    if (p == *s) return false;
    *s = p;
    *out = v;
    return true;
}

/* "2x8x8x2x16" -> rank non-negative dims; -1 unless exactly rank of them. */
static int parse_dims(const char *s, long long rank, int64_t *shape) {
    const char *end = s + strlen(s);
    for (long long k = 0; k < rank; k++)
        if ((k > 0 && *s++ != 'x') || !read_digits(&s, end, &shape[k])) return -1;
    return s == end ? 0 : -1;
}

/* One formatted value: "True"/"False" -> bool, a decimal integer -> int; NULL
 * (no error set) for anything else (what the rules read is one of those). */
static PyObject *parse_value(const char *s, size_t len) {
    if (len == 4 && memcmp(s, "True", 4) == 0) { P.Py_IncRef(P.True); return P.True; }
    if (len == 5 && memcmp(s, "False", 5) == 0) { P.Py_IncRef(P.False); return P.False; }
    const char *p = s + (len > 0 && s[0] == '-'), *end = s + len;
    int64_t v;
    if (!read_digits(&p, end, &v) || p != end) return NULL;
    return P.PyLong_FromLong(s[0] == '-' ? -(long)v : (long)v);
}

/* "3,3" -> (3, 3) for a sequence, "7" -> 7 otherwise; NULL when unreadable. */
static PyObject *parse_values(const char *s, bool sequence) {
    if (!sequence) return parse_value(s, strlen(s));
    Py_ssize_t count = *s ? 1 : 0;
    for (const char *c = s; *c; c++) count += *c == ',';
    PyObject *t = P.PyTuple_New(count);
    for (Py_ssize_t k = 0; t != NULL && k < count; k++) {
        const char *end = strchr(s, ',');
        size_t len = end ? (size_t)(end - s) : strlen(s);
        PyObject *v = parse_value(s, len);
        if (v == NULL) {
            P.Py_DecRef(t);
            return NULL;
        }
        P.PyTuple_SetItem(t, k, v);
        s += len + (end != NULL);
    }
    return t;
}

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
            if (i + 4 > n) return -1;
            nf_tdesc *d = &descs[r];
            d->dtype = items[i];
            d->device = items[i + 1];
            long long rank = P.PyLong_AsLongLong(items[i + 2]);
            const char *dims = P.PyUnicode_AsUTF8AndSize(items[i + 3], NULL);
            i += 4;
            if (rank < 0 || rank > NF_MAX_RANK || dims == NULL || parse_dims(dims, rank, d->shape) != 0)
                return -1;
            d->rank = (uint8_t)rank;
            a->d[r] = d;
        } else if (x == s_t) {
            if (i >= n) return -1;
            a->v[r] = items[i++];
        } else if (x == s_S || x == s_V) {
            if (i >= n) return -1;
            const char *text = P.PyUnicode_AsUTF8AndSize(items[i++], NULL);
            PyObject *v = text != NULL ? parse_values(text, x == s_S) : NULL;
            if (v == NULL) return -1;
            owned[(*nowned)++] = v;
            a->v[r] = v;
        } else {
            a->v[r] = x != P.None ? x : NULL;
        }
    }
    return P.PyErr_Occurred() ? -1 : 0;
}

/* begin(token, *described) */
static PyObject *py_begin(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    /* The module Dynamo traced the call in (py_bootstrap_dynamo.py: traced_module),
     * a last argument "naflops.module=<path>" */
    const char *module_path = NULL;
    static const char prefix[] = "naflops.module=";
    if (nargs > 1) {
        Py_ssize_t len = 0;
        const char *last = P.PyUnicode_AsUTF8AndSize(args[nargs - 1], &len);
        if (last != NULL && (size_t)len >= sizeof prefix - 1 && memcmp(last, prefix, sizeof prefix - 1) == 0) {
            module_path = last + sizeof prefix - 1;
            nargs--;
        }
        P.PyErr_Clear();
    }
    const nf_wrap *w = nargs >= 1 ? nf_py_wrap(P.PyLong_AsLongLong(args[0])) : NULL;
    P.PyErr_Clear();
    /* Compiled code run inside an eager NATTEN call (a graph break inside NATTEN):
     * that call counts it. */
    if (w == NULL || nf_py_eager_active()) return nf_py_none();
    /* Nested: 0.21's generic inside na*d. Anything else arriving while a call is
     * open means that call never ended (it raised): start over. */
    if (pending.epoch != nf_py_eager.epoch) pending.depth = 0; /* an eager call began since */
    bool nested = pending.depth > 0 && w->inner && !pending.stack[pending.depth - 1].w->inner;
    if (!nested) {
        pending.depth = 0;
        pending.epoch = nf_py_eager.epoch;
    }
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
    if (p->counted) {
        p->key.pass = nf_py_forward_pass();
        /* called after the compiled graph ran: the module on the stack is the one
         * that was compiled; Dynamo's path leads from it to the call's own */
        p->key.module = nf_py_module_below(module_path);
    } else nf_py_uncounted(w, "the arguments of its compiled call could not be read");
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
    if (w == NULL || w->target->backend == NULL) return nf_py_none();
    if (nf_py_eager_active()) nf_py_eager_note_backend(w->target->backend);
    else nf_py_compiled_note_backend(w->target->backend);
    return nf_py_none();
}

/* Which layer counts a compiled call: the observer counts NATTEN's libnatten ops at
 * the dispatcher (torch_observer.cpp) where it has put its kernel on them, so a call
 * whose backends (its markers) all reached libnatten is counted there, forward and
 * backward, and not here (varlen attention excepted: its lengths are values the
 * dispatcher does not read). Anything else (Flex, 0.17, no observer, the whole-model
 * count off) is counted here. */
static bool counted_at_dispatcher(const nf_pending *p) {
    static const char *const libnatten[] = {"cutlass-fna",  "hopper-fna",  "blackwell-fna", "reference-fna",
                                            "cutlass-fmha", "hopper-fmha", "blackwell-fmha"};
    if (p->backend == NF_INTERN_NONE || !nf_torch_counts_natten_ops()) return false;
    if (p->key.problem.kind == NF_KIND_ATTENTION && p->key.problem.varlen_pairs != 0) return false;
    const char *s = nf_intern_str(p->backend);
    while (s != NULL && *s) { /* "a+b": every part a libnatten backend */
        const char *plus = strchr(s, '+');
        size_t len = plus ? (size_t)(plus - s) : strlen(s);
        bool known = false;
        for (size_t i = 0; i < sizeof libnatten / sizeof libnatten[0] && !known; i++)
            known = strlen(libnatten[i]) == len && memcmp(libnatten[i], s, len) == 0;
        if (!known) return false;
        s = plus ? plus + 1 : NULL;
    }
    return true;
}

/* end(token, *outputs needing gradients) */
static PyObject *py_end(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    const nf_wrap *w = nargs >= 1 ? nf_py_wrap(P.PyLong_AsLongLong(args[0])) : NULL;
    P.PyErr_Clear();
    if (nf_py_eager_active()) return nf_py_none();
    if (w == NULL || pending.depth == 0 || pending.epoch != nf_py_eager.epoch ||
        pending.stack[pending.depth - 1].w != w) {
        pending.depth = 0; /* out of step: drop what is open */
        return nf_py_none();
    }
    nf_pending *p = &pending.stack[--pending.depth];
    if (p->counted && !counted_at_dispatcher(p)) nf_py_count(w, &p->key, p->backend, args + 1, (int)(nargs - 1));
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
    s_V = P.PyUnicode_InternFromString("V");
    return s_T && s_t && s_S && s_V ? 0 : -1;
}
