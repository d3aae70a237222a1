#include "py_args.h"

#include <stdlib.h>
#include <string.h>

#include "../../src/nf_intern.h"
#include "../torch/tensor_meta.h"

#define P nf_py


int nf_args_int_seq(PyObject *seq, int64_t *out, int max, uint8_t *len) {
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

int nf_args_shape(PyObject *tensor, int64_t *out, uint8_t *rank) {
    PyObject *shape = P.PyObject_GetAttr(tensor, nf_s_shape);
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
        rc = nf_args_int_seq(shape, out, NF_MAX_RANK, rank);
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
    if (nf_args_int_seq(v, tmp, NF_MAX_NA_DIM, &n) != 0 || n != na_dim) return -1;
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
    PyObject *list = NULL, *fn = P.PyObject_GetAttr(t, nf_s_tolist);
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

/* dtype objects are process-long singletons: remember their names by identity. */
static struct { PyObject *obj; uint16_t id; } dtype_cache[32];

uint16_t nf_args_dtype_id(PyObject *dt) {
    size_t i;
    for (i = 0; i < sizeof dtype_cache / sizeof dtype_cache[0] && dtype_cache[i].obj; i++)
        if (dtype_cache[i].obj == dt) return dtype_cache[i].id;
    PyObject *s = P.PyObject_Str(dt);
    const char *text = s ? P.PyUnicode_AsUTF8AndSize(s, NULL) : NULL;
    uint16_t id = NF_INTERN_NONE;
    if (text != NULL) {
        id = nf_intern(strncmp(text, "torch.", 6) == 0 ? text + 6 : text);
        if (i < sizeof dtype_cache / sizeof dtype_cache[0]) { /* kept alive: ids by identity */
            P.Py_IncRef(dt);
            dtype_cache[i].obj = dt;
            dtype_cache[i].id = id;
        }
    }
    if (s) P.Py_DecRef(s);
    return id;
}

uint16_t nf_args_tensor_dtype_id(PyObject *tensor) {
    PyObject *dt = P.PyObject_GetAttr(tensor, nf_s_dtype);
    if (dt == NULL) return NF_INTERN_NONE;
    uint16_t id = nf_args_dtype_id(dt);
    P.Py_DecRef(dt);
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

uint16_t nf_args_device_id(PyObject *dev) {
    PyObject *s = P.PyObject_Str(dev);
    const char *text = s ? P.PyUnicode_AsUTF8AndSize(s, NULL) : NULL;
    uint16_t id = text ? nf_intern(text) : NF_INTERN_NONE;
    if (s) P.Py_DecRef(s);
    return id;
}

uint16_t nf_args_tensor_device_id(PyObject *tensor) {
    /* CPU tensors, the common case here, without building a torch.device and its str */
    static uint16_t cpu_id;
    if (flag(tensor, nf_s_is_cpu) == 1) {
        if (cpu_id == NF_INTERN_NONE) cpu_id = nf_intern("cpu");
        return cpu_id;
    }
    P.PyErr_Clear();
    PyObject *dev = P.PyObject_GetAttr(tensor, nf_s_device);
    if (dev == NULL) return NF_INTERN_NONE;
    uint16_t id = nf_args_device_id(dev);
    P.Py_DecRef(dev);
    return id;
}

/* The shape of a tensor argument, live or described. */
static int shape_of(const nf_argv *a, nf_role r, int64_t *out, uint8_t *rank) {
    if (a->d[r] != NULL) {
        *rank = a->d[r]->rank;
        memcpy(out, a->d[r]->shape, sizeof(int64_t) * a->d[r]->rank);
        return 0;
    }
    return a->v[r] != NULL ? nf_args_shape(a->v[r], out, rank) : -1;
}

static bool present(const nf_argv *a, nf_role r) { return a->v[r] != NULL || a->d[r] != NULL; }

/* Tokens in additional keys/values: [B, N, H, D] heads last, [B, H, N, D] heads first. */
static int read_extra(const nf_argv *a, nf_role r, nf_layout layout, int64_t *extra) {
    int64_t s[NF_MAX_RANK];
    uint8_t rank;
    if (shape_of(a, r, s, &rank) != 0 || rank != 4) return -1;
    *extra = layout == NF_HEADS_LAST ? s[1] : s[2];
    return 0;
}

/* Variable-length attention: sum over sequences of Lq * Lkv. 0 when not varlen. The
 * lengths are values, so these tensors always arrive live. */
static int read_varlen_pairs(const nf_argv *a, nf_u128 *pairs) {
    PyObject *q = a->v[NF_ROLE_CU_SEQLEN_Q], *kv = a->v[NF_ROLE_CU_SEQLEN_KV];
    bool cumulative = q != NULL && kv != NULL;
    if (!cumulative) {
        q = a->v[NF_ROLE_SEQLENS_Q];
        kv = a->v[NF_ROLE_SEQLENS_KV];
    }
    *pairs = 0;
    if (q == NULL || kv == NULL) return 0;
    int64_t *x = NULL, *y = NULL;
    Py_ssize_t nx, ny;
    int rc = -1;
    if (read_tensor_values(q, &x, &nx) == 0 && read_tensor_values(kv, &y, &ny) == 0 && nx == ny) {
        rc = 0;
        for (Py_ssize_t i = cumulative ? 1 : 0; i < nx; i++) {
            int64_t lq = cumulative ? x[i] - x[i - 1] : x[i];
            int64_t lk = cumulative ? y[i] - y[i - 1] : y[i];
            if (lq < 0 || lk < 0) rc = -1;
            else *pairs += (nf_u128)lq * (nf_u128)lk;
        }
    }
    free(x);
    free(y);
    return rc;
}

int nf_args_key(const nf_target *t, uint16_t op, uint16_t version, const nf_argv *a, nf_key *key) {
    nf_problem *p = &key->problem;
    nf_key_init(key);
    key->op = op;
    key->version = version;
    key->pass = NF_PASS_FORWARD;
    p->kind = (uint8_t)t->kind;
    p->layout = (uint8_t)t->layout;

    nf_role first = t->kind == NF_KIND_AV ? NF_ROLE_ATTN : NF_ROLE_QUERY;
    if (shape_of(a, first, p->q_shape, &p->q_rank) != 0) return -1;
    if (present(a, NF_ROLE_KEY) && shape_of(a, NF_ROLE_KEY, p->k_shape, &p->k_rank) != 0) return -1;
    if (present(a, NF_ROLE_VALUE) && shape_of(a, NF_ROLE_VALUE, p->v_shape, &p->v_rank) != 0) return -1;

    if (t->kind == NF_KIND_ATTENTION) {
        p->na_dim = 1;
        if (read_causal(a->v[NF_ROLE_CAUSAL], 1, &p->causal_mask) != 0) return -1;
        if (read_varlen_pairs(a, &p->varlen_pairs) != 0) return -1;
    } else {
        int rank = t->kind == NF_KIND_AV ? p->v_rank : p->q_rank;
        if (rank < 4 || rank > NF_MAX_RANK) return -1;
        p->na_dim = (uint8_t)(rank - 3);
        PyObject *ks = a->v[NF_ROLE_KERNEL];
        if (ks == NULL || read_dims_arg(ks, p->na_dim, 0, p->kernel) != 0) return -1;
        if (read_dims_arg(a->v[NF_ROLE_DILATION], p->na_dim, 1, p->dilation) != 0 ||
            read_dims_arg(a->v[NF_ROLE_STRIDE], p->na_dim, 1, p->stride) != 0 ||
            read_causal(a->v[NF_ROLE_CAUSAL], p->na_dim, &p->causal_mask) != 0)
            return -1;
        /* Legacy 3-D: (kernel_size_d, kernel_size) = (depth, height and width). */
        if (p->na_dim == 3 && a->v[NF_ROLE_KERNEL_D] != NULL &&
            read_dims_arg(a->v[NF_ROLE_KERNEL_D], 1, 0, p->kernel) != 0)
            return -1;
        if (p->na_dim == 3 && a->v[NF_ROLE_DILATION_D] != NULL &&
            read_dims_arg(a->v[NF_ROLE_DILATION_D], 1, 1, p->dilation) != 0)
            return -1;
        bool ak = present(a, NF_ROLE_ADD_KEYS), av = present(a, NF_ROLE_ADD_VALUES);
        /* Fused ops attend the extra tokens only when both are given (NATTEN's rule). */
        int extra = t->kind == NF_KIND_QK   ? (ak ? NF_ROLE_ADD_KEYS : -1)
                    : t->kind == NF_KIND_AV ? (av ? NF_ROLE_ADD_VALUES : -1)
                    : (ak && av)            ? NF_ROLE_ADD_KEYS
                                            : -1;
        if (extra >= 0 && read_extra(a, (nf_role)extra, (nf_layout)t->layout, &p->extra_kv) != 0) return -1;
    }
    int agreed = 0;
    /* AV: the attention weights already hold the window (plus the extra tokens) for
     * every query, whatever convention the arguments follow. */
    if (t->kind == NF_KIND_AV && p->q_rank == p->na_dim + 3)
        agreed = nf_args_window_check(p, p->q_shape[p->q_rank - 1]);
    if (a->d[first] != NULL) {
        const nf_tdesc *d = a->d[first];
        key->dtype = d->dtype != NULL ? nf_args_dtype_id(d->dtype) : d->dtype_id;
        key->device = d->device != NULL ? nf_args_device_id(d->device) : d->device_id;
    } else {
        key->dtype = nf_args_tensor_dtype_id(a->v[first]);
        key->device = nf_args_tensor_device_id(a->v[first]);
    }
    return agreed;
}

int nf_args_window_check(nf_problem *p, int64_t last_dim) {
    int64_t window = last_dim - p->extra_kv;
    nf_u128 kernel = 1;
    for (int i = 0; i < p->na_dim; i++) {
        if (p->kernel[i] < 0) return 0;
        kernel *= (nf_u128)p->kernel[i];
    }
    if (window <= 0 || kernel == (nf_u128)window) return 0;
    /* The per-dim window is not known, only its size: counted as window x 1 x 1. */
    p->kernel[0] = window;
    for (int i = 1; i < p->na_dim; i++) p->kernel[i] = 1;
    return 1;
}

/* ------------------------------------------------------------ the C++ reader */

static const nf_tensor_reader *reader;

void nf_args_set_reader(const nf_tensor_reader *r) { reader = r; }
const nf_tensor_reader *nf_args_reader(void) { return reader; }

/* Interned dtype and device names by c10's enums, learnt through Python the first
 * time each is seen (the names are Python's: "float32", "cuda:0"). */
static uint16_t dtype_by_scalar[128];
static uint16_t device_by_type[64][17]; /* [device type][index + 1] */

bool nf_args_is_exactly(PyObject *o, PyObject *type) {
    PyObject *t = o != NULL ? P.PyObject_Type(o) : NULL;
    if (t) P.Py_DecRef(t);
    return t != NULL && t == type;
}

/* Fills d from the reader; -1 when it cannot (the tensor is then read through Python). */
static int read_fast(PyObject *t, nf_tdesc *d) {
    nf_tensor_meta m;
    if (reader->read(t, &m) != 0 || m.nested || m.rank > NF_MAX_RANK || m.scalar_type < 0 ||
        m.device_type < 0 || m.device_type >= 64 || m.device_index < -1 || m.device_index > 15)
        return -1;
    uint16_t *dt = &dtype_by_scalar[m.scalar_type];
    uint16_t *dev = &device_by_type[m.device_type][m.device_index + 1];
    if (*dt == NF_INTERN_NONE) *dt = nf_args_tensor_dtype_id(t);
    if (*dev == NF_INTERN_NONE) *dev = nf_args_tensor_device_id(t);
    if (*dt == NF_INTERN_NONE || *dev == NF_INTERN_NONE) {
        P.PyErr_Clear();
        return -1;
    }
    d->rank = m.rank;
    memcpy(d->shape, m.shape, sizeof(int64_t) * m.rank);
    d->dtype = d->device = NULL;
    d->dtype_id = *dt;
    d->device_id = *dev;
    return 0;
}

void nf_args_describe_fast(nf_argv *a, nf_tdesc *descs, PyObject *tensor_type) {
    if (reader == NULL) return;
    for (int r = 0; r < NF_ROLE_COUNT; r++) {
        PyObject *t = a->v[r];
        /* sequence lengths are values: those tensors are read through Python */
        if (t == NULL || a->d[r] != NULL || r == NF_ROLE_CU_SEQLEN_Q || r == NF_ROLE_CU_SEQLEN_KV ||
            r == NF_ROLE_SEQLENS_Q || r == NF_ROLE_SEQLENS_KV || !nf_args_is_exactly(t, tensor_type))
            continue;
        if (read_fast(t, &descs[r]) == 0) a->d[r] = &descs[r];
    }
}

int nf_args_shape_of(PyObject *tensor, PyObject *tensor_type, int64_t *out, uint8_t *rank) {
    nf_tdesc d;
    if (reader != NULL && nf_args_is_exactly(tensor, tensor_type) && read_fast(tensor, &d) == 0) {
        memcpy(out, d.shape, sizeof(int64_t) * d.rank);
        *rank = d.rank;
        return 0;
    }
    return nf_args_shape(tensor, out, rank);
}

PyObject *nf_s_shape, *nf_s_dtype, *nf_s_device, *nf_s_is_cpu, *nf_s_tolist;

int nf_args_init(void) {
    nf_s_shape = P.PyUnicode_InternFromString("shape");
    nf_s_dtype = P.PyUnicode_InternFromString("dtype");
    nf_s_device = P.PyUnicode_InternFromString("device");
    nf_s_is_cpu = P.PyUnicode_InternFromString("is_cpu");
    nf_s_tolist = P.PyUnicode_InternFromString("tolist");
    return nf_s_shape && nf_s_dtype && nf_s_device && nf_s_is_cpu && nf_s_tolist ? 0 : -1;
}
