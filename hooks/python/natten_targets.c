#include "natten_targets.h"

#include <stddef.h>

const char *const nf_role_param[NF_ROLE_COUNT] = {
    [NF_ROLE_QUERY] = "query",
    [NF_ROLE_ATTN] = "attn",
    [NF_ROLE_KEY] = "key",
    [NF_ROLE_VALUE] = "value",
    [NF_ROLE_KERNEL] = "kernel_size",
    [NF_ROLE_DILATION] = "dilation",
    [NF_ROLE_STRIDE] = "stride",
    [NF_ROLE_CAUSAL] = "is_causal",
    [NF_ROLE_ADD_KEYS] = "additional_keys",
    [NF_ROLE_ADD_VALUES] = "additional_values",
    [NF_ROLE_CU_SEQLEN_Q] = "cumulative_seqlen_Q",
    [NF_ROLE_CU_SEQLEN_KV] = "cumulative_seqlen_KV",
    [NF_ROLE_SEQLENS_Q] = "seqlens_Q",
    [NF_ROLE_SEQLENS_KV] = "seqlens_KV",
    [NF_ROLE_KERNEL_D] = "kernel_size_d",
    [NF_ROLE_DILATION_D] = "dilation_d",
};

#define OP(mod, fn, kind, layout, since, until) {mod, #fn, #fn, kind, layout, NULL, since, until}
#define MARK(mod, fn, backend, since, until) {mod, #fn, #fn, NF_KIND_FUSED, NF_HEADS_LAST, backend, since, until}

/* Canonical names before their aliases: a function object bound under several names
 * is counted under the first row that names it. */
const nf_target nf_targets[] = {
    /* Fused NA, heads last: 0.17 (FNA or Flex) and 0.20+ (every backend). */
    OP("natten.functional", na1d, NF_KIND_FUSED, NF_HEADS_LAST, NF_V(17, 0), 0),
    OP("natten.functional", na2d, NF_KIND_FUSED, NF_HEADS_LAST, NF_V(17, 0), 0),
    OP("natten.functional", na3d, NF_KIND_FUSED, NF_HEADS_LAST, NF_V(17, 0), 0),
    /* 0.20+: the generic NA entry point (na*d call it) and plain attention. */
    OP("natten.functional", neighborhood_attention_generic, NF_KIND_FUSED, NF_HEADS_LAST, NF_V(20, 0), 0),
    OP("natten.functional", attention, NF_KIND_ATTENTION, NF_HEADS_LAST, NF_V(20, 0), 0),
    /* 0.15-0.17 unfused ops, heads first. */
    OP("natten.functional", na1d_qk, NF_KIND_QK, NF_HEADS_FIRST, NF_V(15, 0), NF_V(17, 99)),
    OP("natten.functional", na2d_qk, NF_KIND_QK, NF_HEADS_FIRST, NF_V(15, 0), NF_V(17, 99)),
    OP("natten.functional", na3d_qk, NF_KIND_QK, NF_HEADS_FIRST, NF_V(15, 0), NF_V(17, 99)),
    OP("natten.functional", na1d_av, NF_KIND_AV, NF_HEADS_FIRST, NF_V(15, 0), NF_V(17, 99)),
    OP("natten.functional", na2d_av, NF_KIND_AV, NF_HEADS_FIRST, NF_V(15, 0), NF_V(17, 99)),
    OP("natten.functional", na3d_av, NF_KIND_AV, NF_HEADS_FIRST, NF_V(15, 0), NF_V(17, 99)),
    /* 0.15: QK with relative positional bias (its modules' QK; the bias add is not
     * counted, as natten.flops does not count it). */
    OP("natten.functional", na1d_qk_with_bias, NF_KIND_QK, NF_HEADS_FIRST, NF_V(15, 0), NF_V(15, 99)),
    OP("natten.functional", na2d_qk_with_bias, NF_KIND_QK, NF_HEADS_FIRST, NF_V(15, 0), NF_V(15, 99)),
    OP("natten.functional", na3d_qk_with_bias, NF_KIND_QK, NF_HEADS_FIRST, NF_V(15, 0), NF_V(15, 99)),
    /* 0.14's names, deprecated in 0.15-0.17 (Hugging Face's DiNAT/NAT still call
     * them): functions of their own in 0.14 and 0.17, and for *rpb in 0.15; aliases of
     * na*d_qk/na*d_av in 0.15. 3-D from 0.15, with kernel_size_d/dilation_d. */
    OP("natten.functional", natten1dqkrpb, NF_KIND_QK, NF_HEADS_FIRST, NF_V(14, 0), NF_V(17, 99)),
    OP("natten.functional", natten2dqkrpb, NF_KIND_QK, NF_HEADS_FIRST, NF_V(14, 0), NF_V(17, 99)),
    OP("natten.functional", natten3dqkrpb, NF_KIND_QK, NF_HEADS_FIRST, NF_V(15, 0), NF_V(17, 99)),
    OP("natten.functional", natten1dqk, NF_KIND_QK, NF_HEADS_FIRST, NF_V(14, 0), NF_V(17, 99)),
    OP("natten.functional", natten2dqk, NF_KIND_QK, NF_HEADS_FIRST, NF_V(14, 0), NF_V(17, 99)),
    OP("natten.functional", natten3dqk, NF_KIND_QK, NF_HEADS_FIRST, NF_V(15, 0), NF_V(17, 99)),
    OP("natten.functional", natten1dav, NF_KIND_AV, NF_HEADS_FIRST, NF_V(14, 0), NF_V(17, 99)),
    OP("natten.functional", natten2dav, NF_KIND_AV, NF_HEADS_FIRST, NF_V(14, 0), NF_V(17, 99)),
    OP("natten.functional", natten3dav, NF_KIND_AV, NF_HEADS_FIRST, NF_V(15, 0), NF_V(17, 99)),
    /* 0.17 torch.library ops (inference only). */
    OP("natten.experimental", na1d, NF_KIND_FUSED, NF_HEADS_LAST, NF_V(17, 0), NF_V(17, 99)),
    OP("natten.experimental", na2d, NF_KIND_FUSED, NF_HEADS_LAST, NF_V(17, 0), NF_V(17, 99)),
    OP("natten.experimental", na3d, NF_KIND_FUSED, NF_HEADS_LAST, NF_V(17, 0), NF_V(17, 99)),

    /* Backend markers. 0.17's Flex backend arrived in 0.17.5. */
    MARK("natten.flex", flex_na1d, "flex", NF_V(17, 5), NF_V(17, 99)),
    MARK("natten.flex", flex_na2d, "flex", NF_V(17, 5), NF_V(17, 99)),
    MARK("natten.flex", flex_na3d, "flex", NF_V(17, 5), NF_V(17, 99)),
    MARK("natten.backends.flex", flex_fna_generic, "flex-fna", NF_V(20, 0), 0),
    MARK("natten.backends.flex", flex_fmha, "flex-fmha", NF_V(20, 0), 0),
    MARK("natten.backends.fna", cutlass_fna_generic, "cutlass-fna", NF_V(20, 0), 0),
    MARK("natten.backends.fmha", cutlass_fmha, "cutlass-fmha", NF_V(20, 0), 0),
    MARK("natten.backends.hopper_fna", cutlass_hopper_fna_generic, "hopper-fna", NF_V(20, 0), 0),
    MARK("natten.backends.hopper_fmha", cutlass_hopper_fmha, "hopper-fmha", NF_V(20, 0), 0),
    MARK("natten.backends.blackwell_fna", cutlass_blackwell_fna_generic, "blackwell-fna", NF_V(20, 0), 0),
    MARK("natten.backends.blackwell_fmha", cutlass_blackwell_fmha, "blackwell-fmha", NF_V(20, 0), 0),
    MARK("natten.backends.reference", reference_fna_generic, "reference-fna", NF_V(20, 0), 0),
};

const int nf_target_count = (int)(sizeof nf_targets / sizeof nf_targets[0]);
