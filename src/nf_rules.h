/* NATTEN's FLOP/MAC counting rules (NATTEN 0.17 docs/flops.md and natten/flops.py),
 * plus the documented extensions for what newer NATTEN can do.
 *
 * Only tensor-core GEMM work counts: a GEMM (M, N, K) is 2*M*N*K FLOPs and M*N*K
 * MACs. Softmax, masking, scale and biases are not counted; dilation, stride and
 * causal masking do not change the count (NATTEN's convention). */
#ifndef NF_RULES_H
#define NF_RULES_H

#include <stdbool.h>
#include <stdint.h>

#include "nf_u128.h"

#define NF_MAX_NA_DIM 3
#define NF_MAX_RANK (NF_MAX_NA_DIM + 3)

typedef enum nf_kind {
    NF_KIND_FUSED = 0,  /* na*d, FNA: QK then AV */
    NF_KIND_QK,         /* na*d_qk: first half */
    NF_KIND_AV,         /* na*d_av: second half */
    NF_KIND_ATTENTION,  /* plain (dense) attention: every query sees every key */
    NF_KIND_ATEN,       /* another aten op (whole-model count): FLOPs given by the observer */
    NF_KIND_COUNT
} nf_kind;

typedef enum nf_layout {
    NF_HEADS_LAST = 0,  /* [B, *spatial, H, D]: fused ops */
    NF_HEADS_FIRST,     /* [B, H, *spatial, D]: unfused ops in 0.17 */
} nf_layout;

/* forward and backward are the model's work (what MFU divides); recompute is a
 * forward run again for memory (activation checkpointing): hardware work only. */
/* jvp: forward-mode AD (NATTEN's jvp runs two GEMMs per forward GEMM). */
typedef enum nf_pass {
    NF_PASS_FORWARD = 0,
    NF_PASS_BACKWARD,
    NF_PASS_RECOMPUTE,
    NF_PASS_JVP,
    NF_PASS_COUNT
} nf_pass;

/* One operation, as read from the live tensors. Unused entries are zero so that
 * the struct can be hashed and compared bytewise. */
typedef struct nf_problem {
    uint8_t kind;    /* nf_kind */
    uint8_t layout;  /* nf_layout */
    uint8_t na_dim;  /* 1..3; 1 for attention */
    uint8_t causal_mask;             /* bit i: causal along spatial dim i */
    uint8_t q_rank, k_rank, v_rank;  /* 0 where a tensor is absent */
    uint8_t pad_;
    /* fused/attention: query, key, value. qk: query, key. av: attn, -, value. */
    int64_t q_shape[NF_MAX_RANK];
    int64_t k_shape[NF_MAX_RANK];
    int64_t v_shape[NF_MAX_RANK];
    int64_t kernel[NF_MAX_NA_DIM];
    int64_t dilation[NF_MAX_NA_DIM];
    int64_t stride[NF_MAX_NA_DIM];
    int64_t extra_kv;     /* additional key/value tokens every query also attends */
    int64_t pad2_;        /* keeps varlen_pairs 16-aligned with no unnamed padding: keys are hashed bytewise */
    nf_u128 varlen_pairs; /* attention with variable lengths: sum of Lq_i * Lkv_i; 0: none */
    /* NF_KIND_ATEN: the call's FLOPs, by PyTorch FlopCounterMode's formula for the op;
     * q/k/v shapes then hold the operands the formula reads, in its order. Part of
     * the key, so calls with the same shapes and other parameters (a convolution's
     * stride) get their own rows. */
    nf_u128 aten_flops;
} nf_problem;

/* NATTEN 0.17 natten.flops, exactly: the FLOPs (or MACs) of kind NF_KIND_FUSED,
 * NF_KIND_QK or NF_KIND_AV given the shape natten.flops reads (the query's for
 * fused and qk, the value's for av), the kernel size and the layout. A kernel of
 * length 1 applies to every spatial dim (an int in Python). Returns 0 on success,
 * -1 where natten.flops would reject the arguments. */
int nf_rules_natten(nf_kind kind, const int64_t *shape, int rank, const int64_t *kernel,
                    int kernel_len, nf_layout layout, bool macs, nf_u128 *out);

/* FLOPs of one forward call of p under NATTEN's convention, with the extensions
 * (grouped heads counted per query head, value head dim, additional KV tokens,
 * plain attention, variable length). Equal to nf_rules_natten wherever that
 * applies. Returns 0 on success, -1 for a shape the rules cannot read. */
int nf_rules_forward_flops(const nf_problem *p, nf_u128 *out);

/* Whether p's FLOPs come from the rules above (NATTEN) or from the observer (aten). */
static inline bool nf_problem_is_natten(const nf_problem *p) { return p->kind != NF_KIND_ATEN; }

/* Backward FLOPs for a forward count: two GEMMs per forward GEMM (dQ, dK from
 * QK; dA, dV from AV), PyTorch FlopCounterMode's convention. */
nf_u128 nf_rules_backward_flops(nf_u128 forward_flops);

/* A fused backward kernel recomputes QK^T: extra hardware work, not model FLOPs. */
nf_u128 nf_rules_backward_recompute_flops(const nf_problem *p, nf_u128 forward_flops);

const char *nf_kind_name(nf_kind kind);
const char *nf_pass_name(nf_pass pass);

#endif
