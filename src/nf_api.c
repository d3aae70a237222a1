/* The few symbols libnaflops.so exports for tools and tests (everything else is
 * hidden). The parity tests call naflops_natten_flops through ctypes. */
#include <stdio.h>

#include "nf_rules.h"

#define NF_EXPORT __attribute__((visibility("default")))

/* natten.flops 0.17 (fna_flop_count, na_qk_flop_count, na_av_flop_count), written
 * as a decimal string into out. kind: 0 fused, 1 qk, 2 av. Returns 0, or -1 where
 * natten.flops would reject the arguments. */
NF_EXPORT int naflops_natten_flops(int kind, const long long *shape, int rank,
                                   const long long *kernel, int kernel_len, int heads_last,
                                   int macs, char *out, int out_len) {
    int64_t s[NF_MAX_RANK], k[NF_MAX_NA_DIM];
    if (rank < 0 || rank > NF_MAX_RANK || kernel_len < 1 || kernel_len > NF_MAX_NA_DIM ||
        out_len < NF_U128_DEC_LEN)
        return -1;
    for (int i = 0; i < rank; i++) s[i] = shape[i];
    for (int i = 0; i < kernel_len; i++) k[i] = kernel[i];
    nf_u128 r;
    if (nf_rules_natten((nf_kind)kind, s, rank, k, kernel_len,
                        heads_last ? NF_HEADS_LAST : NF_HEADS_FIRST, macs != 0, &r) != 0)
        return -1;
    nf_u128_to_dec(r, out);
    return 0;
}
