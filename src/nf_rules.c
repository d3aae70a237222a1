#include "nf_rules.h"

#include <string.h>

static const char *const kind_names[NF_KIND_COUNT] = {"fused", "qk", "av", "attention", "aten"};

const char *nf_kind_name(nf_kind kind) {
    return (unsigned)kind < NF_KIND_COUNT ? kind_names[kind] : "unknown";
}

const char *nf_pass_name(nf_pass pass) {
    return pass == NF_PASS_BACKWARD    ? "backward"
           : pass == NF_PASS_RECOMPUTE ? "recompute"
           : pass == NF_PASS_JVP       ? "jvp"
                                       : "forward";
}

/* Product of non-negative factors; -1 on a negative factor. Saturates. */
static int prod(const int64_t *v, int n, nf_u128 *out) {
    nf_u128 r = 1;
    for (int i = 0; i < n; i++) {
        if (v[i] < 0) return -1;
        r = nf_u128_mul_sat(r, (nf_u128)v[i]);
    }
    *out = r;
    return 0;
}

/* Batch, heads, tokens and head dim of a rank-(na_dim+3) tensor in either layout. */
typedef struct dims {
    int64_t batch, heads, dim;
    nf_u128 tokens;
} dims;

static int read_dims(const int64_t *shape, int rank, nf_layout layout, dims *d) {
    if (rank < 4 || rank > NF_MAX_RANK) return -1;
    int na_dim = rank - 3;
    d->batch = shape[0];
    d->dim = shape[rank - 1];
    d->heads = layout == NF_HEADS_LAST ? shape[rank - 2] : shape[1];
    const int64_t *spatial = layout == NF_HEADS_LAST ? shape + 1 : shape + 2;
    if (d->batch < 0 || d->dim < 0 || d->heads < 0) return -1;
    return prod(spatial, na_dim, &d->tokens);
}

static nf_u128 gemm(nf_u128 b, nf_u128 m, nf_u128 n, nf_u128 k) {
    return nf_u128_mul_sat(nf_u128_mul_sat(b, m), nf_u128_mul_sat(n, k));
}

int nf_rules_natten(nf_kind kind, const int64_t *shape, int rank, const int64_t *kernel,
                    int kernel_len, nf_layout layout, bool macs, nf_u128 *out) {
    dims d;
    if (kind != NF_KIND_FUSED && kind != NF_KIND_QK && kind != NF_KIND_AV) return -1;
    if (read_dims(shape, rank, layout, &d) != 0) return -1;
    int na_dim = rank - 3;
    /* natten's check_all_args: an int kernel size applies to every dim; a tuple must
     * have one entry per spatial dim. */
    int64_t k[NF_MAX_NA_DIM];
    if (kernel_len == 1) {
        for (int i = 0; i < na_dim; i++) k[i] = kernel[0];
    } else if (kernel_len == na_dim) {
        memcpy(k, kernel, sizeof(int64_t) * (size_t)na_dim);
    } else {
        return -1;
    }
    nf_u128 weights;
    if (prod(k, na_dim, &weights) != 0) return -1;
    nf_u128 bh = nf_u128_mul_sat((nf_u128)d.batch, (nf_u128)d.heads);
    /* QK: (B*H) x N x W x D; AV: (B*H) x N x D x W. Same product, kept apart as NATTEN does. */
    nf_u128 qk = gemm(bh, d.tokens, weights, (nf_u128)d.dim);
    nf_u128 av = gemm(bh, d.tokens, (nf_u128)d.dim, weights);
    nf_u128 r = kind == NF_KIND_FUSED ? nf_u128_add_sat(qk, av) : kind == NF_KIND_QK ? qk : av;
    *out = macs ? r : nf_u128_mul_sat(r, 2);
    return 0;
}

/* Keys each query attends: the window plus any additional tokens. */
static int window(const nf_problem *p, nf_u128 *w) {
    nf_u128 k;
    if (prod(p->kernel, p->na_dim, &k) != 0 || p->extra_kv < 0) return -1;
    *w = nf_u128_add_sat(k, (nf_u128)p->extra_kv);
    return 0;
}

static int attention_flops(const nf_problem *p, nf_u128 *out) {
    /* q [B, Nq, H, Dqk], k [B, Nkv, Hkv, Dqk], v [B, Nkv, Hkv, Dv]: heads last. */
    if (p->q_rank != 4 || p->k_rank != 4 || p->v_rank != 4) return -1;
    for (int i = 0; i < 4; i++)
        if (p->q_shape[i] < 0 || p->k_shape[i] < 0 || p->v_shape[i] < 0) return -1;
    nf_u128 heads = (nf_u128)p->q_shape[2];
    nf_u128 dsum = (nf_u128)p->q_shape[3] + (nf_u128)p->v_shape[3];
    nf_u128 pairs = p->varlen_pairs;
    if (pairs == 0) {
        pairs = gemm((nf_u128)p->q_shape[0], (nf_u128)p->q_shape[1], (nf_u128)p->k_shape[1], 1);
        if (p->extra_kv > 0) /* never set by NATTEN's attention; kept for completeness */
            pairs = nf_u128_add_sat(pairs, gemm((nf_u128)p->q_shape[0], (nf_u128)p->q_shape[1],
                                                (nf_u128)p->extra_kv, 1));
    }
    *out = nf_u128_mul_sat(gemm(2, heads, pairs, 1), dsum);
    return 0;
}

int nf_rules_forward_flops(const nf_problem *p, nf_u128 *out) {
    nf_u128 w;
    dims q, v;
    if (p->kind == NF_KIND_ATEN) {
        *out = p->aten_flops;
        return 0;
    }
    if (p->na_dim < 1 || p->na_dim > NF_MAX_NA_DIM) return -1;
    /* The tensors must have the rank the spatial dims imply (attention: rank 4). */
    int rank = p->na_dim + 3;
    if ((p->q_rank && p->q_rank != rank) || (p->k_rank && p->k_rank != rank) ||
        (p->v_rank && p->v_rank != rank))
        return -1;
    switch ((nf_kind)p->kind) {
    case NF_KIND_ATTENTION:
        return attention_flops(p, out);
    case NF_KIND_FUSED:
        /* Grouped/multi-query heads count per query head; value head dim may differ. */
        if (read_dims(p->q_shape, p->q_rank, p->layout, &q) != 0 ||
            read_dims(p->v_shape, p->v_rank, p->layout, &v) != 0 || window(p, &w) != 0)
            return -1;
        *out = nf_u128_mul_sat(
            gemm(2, nf_u128_mul_sat((nf_u128)q.batch, (nf_u128)q.heads), q.tokens, w),
            (nf_u128)q.dim + (nf_u128)v.dim);
        return 0;
    case NF_KIND_QK:
        if (read_dims(p->q_shape, p->q_rank, p->layout, &q) != 0 || window(p, &w) != 0) return -1;
        *out = gemm(2, nf_u128_mul_sat((nf_u128)q.batch, (nf_u128)q.heads), q.tokens,
                    nf_u128_mul_sat(w, (nf_u128)q.dim));
        return 0;
    case NF_KIND_AV:
        /* natten.flops reads the value's shape for AV. */
        if (read_dims(p->v_shape, p->v_rank, p->layout, &v) != 0 || window(p, &w) != 0) return -1;
        *out = gemm(2, nf_u128_mul_sat((nf_u128)v.batch, (nf_u128)v.heads), v.tokens,
                    nf_u128_mul_sat(w, (nf_u128)v.dim));
        return 0;
    default:
        return -1;
    }
}

nf_u128 nf_rules_backward_flops(nf_u128 forward_flops) { return nf_u128_mul_sat(forward_flops, 2); }

nf_u128 nf_rules_backward_recompute_flops(const nf_problem *p, nf_u128 forward_flops) {
    /* Recomputing QK^T costs the QK half of a fused forward. For equal head dims that
     * is half the forward; with a different value dim it is Dqk / (Dqk + Dv). */
    if (p->kind != NF_KIND_FUSED && p->kind != NF_KIND_ATTENTION) return 0;
    int64_t dqk = p->q_rank ? p->q_shape[p->q_rank - 1] : 0;
    int64_t dv = p->v_rank ? p->v_shape[p->v_rank - 1] : 0;
    if (dqk <= 0 || dv < 0) return 0;
    return forward_flops / ((nf_u128)dqk + (nf_u128)dv) * (nf_u128)dqk;
}
