/* nf_rules: NATTEN 0.17's natten.flops (nf_rules_natten) and the extended forward
 * count (nf_rules_forward_flops). Every expected value is worked out by hand in the
 * comment beside it: fused = 4*B*H*N*W*D, qk = av = 2*B*H*N*W*D, with N the product
 * of the spatial dims and W the product of the kernel (window) dims. */
#include <string.h>

#include "nf_unit.h"

#include "../../src/nf_rules.h"

#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* nf_rules_natten on a literal shape and kernel; asserts success and returns the count. */
static nf_u128 natten(nf_kind kind, const int64_t *shape, int rank, const int64_t *kernel,
                      int kernel_len, nf_layout layout, bool macs) {
    nf_u128 out = 12345; /* must be overwritten */
    assert_int_equal(nf_rules_natten(kind, shape, rank, kernel, kernel_len, layout, macs, &out), 0);
    return out;
}

static void natten_rejects(nf_kind kind, const int64_t *shape, int rank, const int64_t *kernel,
                           int kernel_len, nf_layout layout) {
    nf_u128 out = 12345;
    assert_int_equal(nf_rules_natten(kind, shape, rank, kernel, kernel_len, layout, false, &out), -1);
    assert_int_equal(nf_rules_natten(kind, shape, rank, kernel, kernel_len, layout, true, &out), -1);
    assert_u128_equal(out, 12345); /* untouched on rejection */
}

/* ================================================================ natten.flops */

static void test_natten_2d_heads_last(void **state) {
    (void)state;
    /* q [B=2, 8, 8, H=2, D=16], kernel 3x3: N = 64, W = 9.
     * fused = 4*2*2*64*9*16 = 147456; qk = av = 2*2*2*64*9*16 = 73728. */
    const int64_t q[] = {2, 8, 8, 2, 16};
    const int64_t k3[] = {3}, k33[] = {3, 3};
    assert_u128_equal(natten(NF_KIND_FUSED, q, 5, k3, 1, NF_HEADS_LAST, false), 147456);
    assert_u128_equal(natten(NF_KIND_FUSED, q, 5, k33, 2, NF_HEADS_LAST, false), 147456);
    assert_u128_equal(natten(NF_KIND_QK, q, 5, k33, 2, NF_HEADS_LAST, false), 73728);
    assert_u128_equal(natten(NF_KIND_AV, q, 5, k33, 2, NF_HEADS_LAST, false), 73728);
}

static void test_natten_2d_heads_first(void **state) {
    (void)state;
    /* q [B=2, H=2, 8, 8, D=16]: the same problem as above in the other layout. */
    const int64_t q[] = {2, 2, 8, 8, 16};
    const int64_t k33[] = {3, 3};
    assert_u128_equal(natten(NF_KIND_FUSED, q, 5, k33, 2, NF_HEADS_FIRST, false), 147456);
    assert_u128_equal(natten(NF_KIND_QK, q, 5, k33, 2, NF_HEADS_FIRST, false), 73728);
    assert_u128_equal(natten(NF_KIND_AV, q, 5, k33, 2, NF_HEADS_FIRST, false), 73728);
}

static void test_natten_2d_tuple_kernel(void **state) {
    (void)state;
    /* kernel (3, 5): W = 15 (an int 3 would give 9, an int 5 would give 25).
     * fused = 4*2*2*64*15*16 = 245760 */
    const int64_t q[] = {2, 8, 8, 2, 16};
    const int64_t k35[] = {3, 5};
    assert_u128_equal(natten(NF_KIND_FUSED, q, 5, k35, 2, NF_HEADS_LAST, false), 245760);
}

static void test_natten_1d(void **state) {
    (void)state;
    /* heads last [B=1, N=100, H=4, D=32], kernel 7:
     * fused = 4*1*4*100*7*32 = 358400; qk = av = 179200 */
    const int64_t last[] = {1, 100, 4, 32};
    const int64_t first[] = {1, 4, 100, 32};
    const int64_t k7[] = {7};
    assert_u128_equal(natten(NF_KIND_FUSED, last, 4, k7, 1, NF_HEADS_LAST, false), 358400);
    assert_u128_equal(natten(NF_KIND_QK, last, 4, k7, 1, NF_HEADS_LAST, false), 179200);
    assert_u128_equal(natten(NF_KIND_AV, last, 4, k7, 1, NF_HEADS_LAST, false), 179200);
    assert_u128_equal(natten(NF_KIND_FUSED, first, 4, k7, 1, NF_HEADS_FIRST, false), 358400);
}

static void test_natten_3d(void **state) {
    (void)state;
    /* heads last [B=2, 4, 6, 8, H=3, D=8]: N = 4*6*8 = 192.
     * kernel (3, 5, 7): W = 105: fused = 4*2*3*192*105*8 = 3870720, qk = 1935360.
     * kernel 3 (int):   W = 27:  fused = 4*2*3*192*27*8  = 995328. */
    const int64_t last[] = {2, 4, 6, 8, 3, 8};
    const int64_t first[] = {2, 3, 4, 6, 8, 8};
    const int64_t k357[] = {3, 5, 7}, k3[] = {3};
    assert_u128_equal(natten(NF_KIND_FUSED, last, 6, k357, 3, NF_HEADS_LAST, false), 3870720);
    assert_u128_equal(natten(NF_KIND_QK, last, 6, k357, 3, NF_HEADS_LAST, false), 1935360);
    assert_u128_equal(natten(NF_KIND_AV, last, 6, k357, 3, NF_HEADS_LAST, false), 1935360);
    assert_u128_equal(natten(NF_KIND_FUSED, first, 6, k357, 3, NF_HEADS_FIRST, false), 3870720);
    assert_u128_equal(natten(NF_KIND_FUSED, last, 6, k3, 1, NF_HEADS_LAST, false), 995328);
}

static void test_natten_macs_are_half(void **state) {
    (void)state;
    /* MACs = FLOPs / 2: fused 147456 -> 73728, qk and av 73728 -> 36864. */
    const int64_t q[] = {2, 8, 8, 2, 16};
    const int64_t k3[] = {3};
    assert_u128_equal(natten(NF_KIND_FUSED, q, 5, k3, 1, NF_HEADS_LAST, true), 73728);
    assert_u128_equal(natten(NF_KIND_QK, q, 5, k3, 1, NF_HEADS_LAST, true), 36864);
    assert_u128_equal(natten(NF_KIND_AV, q, 5, k3, 1, NF_HEADS_LAST, true), 36864);
    /* 3D tuple: fused 3870720 -> 1935360 MACs. */
    const int64_t q3[] = {2, 4, 6, 8, 3, 8};
    const int64_t k357[] = {3, 5, 7};
    assert_u128_equal(natten(NF_KIND_FUSED, q3, 6, k357, 3, NF_HEADS_LAST, true), 1935360);
}

static void test_natten_zero_sized(void **state) {
    (void)state;
    /* A zero dim is a legal empty tensor: 0 FLOPs. */
    const int64_t q[] = {0, 8, 8, 2, 16};
    const int64_t k3[] = {3};
    assert_u128_equal(natten(NF_KIND_FUSED, q, 5, k3, 1, NF_HEADS_LAST, false), 0);
}

static void test_natten_past_2_64_is_exact(void **state) {
    (void)state;
    /* q [B=2^20, 1000, 1000, H=2^10, D=128], kernel 13 (W = 169):
     * fused = 4 * 2^20 * 2^10 * 10^6 * 169 * 128 = 2^39 * 169 * 10^6
     *       = 92908732547072000000  (> 2^64 = 18446744073709551616)
     * qk = macs = half = 2^38 * 169 * 10^6 = 46454366273536000000 */
    const int64_t q[] = {(int64_t)1 << 20, 1000, 1000, 1024, 128};
    const int64_t k13[] = {13};
    nf_u128 fused = natten(NF_KIND_FUSED, q, 5, k13, 1, NF_HEADS_LAST, false);
    assert_u128_equal(fused, NF_POW2(39) * 169 * 1000000);
    assert_true(fused > NF_POW2(64));
    char buf[NF_U128_DEC_LEN];
    assert_string_equal(nf_u128_to_dec(fused, buf), "92908732547072000000");
    assert_u128_equal(natten(NF_KIND_QK, q, 5, k13, 1, NF_HEADS_LAST, false),
                      NF_POW2(38) * 169 * 1000000);
    assert_u128_equal(natten(NF_KIND_FUSED, q, 5, k13, 1, NF_HEADS_LAST, true),
                      NF_POW2(38) * 169 * 1000000);
}

static void test_natten_saturates_past_2_128(void **state) {
    (void)state;
    /* 4 * (2^62)^6 * 2^62 is about 2^436: reported as the maximum, never wrapped. */
    const int64_t big = (int64_t)1 << 62;
    const int64_t q[] = {big, big, big, big, big, big};
    const int64_t k[] = {big};
    assert_u128_equal(natten(NF_KIND_FUSED, q, 6, k, 1, NF_HEADS_LAST, false), NF_U128_MAX);
    assert_u128_equal(natten(NF_KIND_QK, q, 6, k, 1, NF_HEADS_LAST, true), NF_U128_MAX);
}

static void test_natten_rejects_bad_rank(void **state) {
    (void)state;
    const int64_t q[] = {2, 8, 8, 2, 16, 4, 4};
    const int64_t k3[] = {3};
    natten_rejects(NF_KIND_FUSED, q, 0, k3, 1, NF_HEADS_LAST);
    natten_rejects(NF_KIND_FUSED, q, 3, k3, 1, NF_HEADS_LAST); /* no spatial dim */
    natten_rejects(NF_KIND_FUSED, q, 7, k3, 1, NF_HEADS_LAST); /* 4 spatial dims */
    natten_rejects(NF_KIND_QK, q, 3, k3, 1, NF_HEADS_FIRST);
    natten_rejects(NF_KIND_AV, q, 7, k3, 1, NF_HEADS_FIRST);
}

static void test_natten_rejects_wrong_kernel_length(void **state) {
    (void)state;
    const int64_t q1[] = {1, 100, 4, 32};
    const int64_t q2[] = {2, 8, 8, 2, 16};
    const int64_t q3[] = {2, 4, 6, 8, 3, 8};
    const int64_t k[] = {3, 3, 3};
    natten_rejects(NF_KIND_FUSED, q1, 4, k, 2, NF_HEADS_LAST); /* 1D with a pair */
    natten_rejects(NF_KIND_FUSED, q2, 5, k, 3, NF_HEADS_LAST); /* 2D with a triple */
    natten_rejects(NF_KIND_FUSED, q3, 6, k, 2, NF_HEADS_LAST); /* 3D with a pair */
    natten_rejects(NF_KIND_FUSED, q2, 5, k, 0, NF_HEADS_LAST);
    natten_rejects(NF_KIND_FUSED, q2, 5, k, -1, NF_HEADS_LAST);
}

static void test_natten_rejects_negative_dims(void **state) {
    (void)state;
    const int64_t k33[] = {3, 3};
    const int64_t neg_b[] = {-2, 8, 8, 2, 16};
    const int64_t neg_spatial[] = {2, 8, -8, 2, 16};
    const int64_t neg_h_last[] = {2, 8, 8, -2, 16};
    const int64_t neg_h_first[] = {2, -2, 8, 8, 16};
    const int64_t neg_d[] = {2, 8, 8, 2, -16};
    natten_rejects(NF_KIND_FUSED, neg_b, 5, k33, 2, NF_HEADS_LAST);
    natten_rejects(NF_KIND_FUSED, neg_spatial, 5, k33, 2, NF_HEADS_LAST);
    natten_rejects(NF_KIND_FUSED, neg_spatial, 5, k33, 2, NF_HEADS_FIRST);
    natten_rejects(NF_KIND_FUSED, neg_h_last, 5, k33, 2, NF_HEADS_LAST);
    natten_rejects(NF_KIND_FUSED, neg_h_first, 5, k33, 2, NF_HEADS_FIRST);
    natten_rejects(NF_KIND_QK, neg_d, 5, k33, 2, NF_HEADS_LAST);
    /* a negative kernel entry, as an int and inside a tuple */
    const int64_t q[] = {2, 8, 8, 2, 16};
    const int64_t kneg[] = {-3}, kneg2[] = {3, -3};
    natten_rejects(NF_KIND_FUSED, q, 5, kneg, 1, NF_HEADS_LAST);
    natten_rejects(NF_KIND_AV, q, 5, kneg2, 2, NF_HEADS_LAST);
}

static void test_natten_rejects_other_kinds(void **state) {
    (void)state;
    const int64_t q[] = {2, 8, 8, 2, 16};
    const int64_t k3[] = {3};
    natten_rejects(NF_KIND_ATTENTION, q, 5, k3, 1, NF_HEADS_LAST);
    natten_rejects(NF_KIND_COUNT, q, 5, k3, 1, NF_HEADS_LAST);
    natten_rejects((nf_kind)99, q, 5, k3, 1, NF_HEADS_LAST);
}

/* ========================================================= extended forward count */

/* Fills a zeroed problem. Shapes are given as literal arrays. */
#define SET_SHAPE(p, which, ...)                                      \
    do {                                                              \
        const int64_t v_[] = {__VA_ARGS__};                           \
        memcpy((p)->which##_shape, v_, sizeof v_);                    \
        (p)->which##_rank = (uint8_t)N_OF(v_);                        \
    } while (0)
#define SET_KERNEL(p, ...)                                            \
    do {                                                              \
        const int64_t v_[] = {__VA_ARGS__};                           \
        memcpy((p)->kernel, v_, sizeof v_);                           \
        for (int i_ = 0; i_ < N_OF(v_); i_++) (p)->dilation[i_] = 1;  \
        for (int i_ = 0; i_ < N_OF(v_); i_++) (p)->stride[i_] = 1;    \
    } while (0)

static nf_problem new_problem(nf_kind kind, nf_layout layout, int na_dim) {
    nf_problem p;
    memset(&p, 0, sizeof p);
    p.kind = (uint8_t)kind;
    p.layout = (uint8_t)layout;
    p.na_dim = (uint8_t)na_dim;
    return p;
}

static nf_u128 forward(const nf_problem *p) {
    nf_u128 out = 12345;
    assert_int_equal(nf_rules_forward_flops(p, &out), 0);
    return out;
}

static void forward_rejects(const nf_problem *p) {
    nf_u128 out = 12345;
    assert_int_equal(nf_rules_forward_flops(p, &out), -1);
}

/* The 2D example as a problem: q = k = v = [2, 8, 8, 2, 16], kernel 3x3. */
static nf_problem example_2d(nf_kind kind) {
    nf_problem p = new_problem(kind, NF_HEADS_LAST, 2);
    if (kind != NF_KIND_AV) SET_SHAPE(&p, q, 2, 8, 8, 2, 16);
    if (kind != NF_KIND_AV) SET_SHAPE(&p, k, 2, 8, 8, 2, 16);
    if (kind != NF_KIND_QK) SET_SHAPE(&p, v, 2, 8, 8, 2, 16);
    SET_KERNEL(&p, 3, 3);
    return p;
}

static void test_forward_matches_natten(void **state) {
    (void)state;
    /* Without extensions the forward count is natten.flops: 147456 / 73728 / 73728. */
    nf_problem fused = example_2d(NF_KIND_FUSED);
    nf_problem qk = example_2d(NF_KIND_QK);
    nf_problem av = example_2d(NF_KIND_AV);
    assert_u128_equal(forward(&fused), 147456);
    assert_u128_equal(forward(&qk), 73728);
    assert_u128_equal(forward(&av), 73728);
    /* heads first: [B=2, H=2, 8, 8, D=16] */
    nf_problem first = new_problem(NF_KIND_FUSED, NF_HEADS_FIRST, 2);
    SET_SHAPE(&first, q, 2, 2, 8, 8, 16);
    SET_SHAPE(&first, k, 2, 2, 8, 8, 16);
    SET_SHAPE(&first, v, 2, 2, 8, 8, 16);
    SET_KERNEL(&first, 3, 3);
    assert_u128_equal(forward(&first), 147456);
    /* dilation, stride and causal masking do not change the count */
    fused.dilation[0] = 2;
    fused.stride[1] = 2;
    fused.causal_mask = 3;
    assert_u128_equal(forward(&fused), 147456);
}

static void test_forward_3d(void **state) {
    (void)state;
    /* [2, 4, 6, 8, 3, 8], kernel (3, 5, 7): 3870720, as natten.flops. */
    nf_problem p = new_problem(NF_KIND_FUSED, NF_HEADS_LAST, 3);
    SET_SHAPE(&p, q, 2, 4, 6, 8, 3, 8);
    SET_SHAPE(&p, k, 2, 4, 6, 8, 3, 8);
    SET_SHAPE(&p, v, 2, 4, 6, 8, 3, 8);
    SET_KERNEL(&p, 3, 5, 7);
    assert_u128_equal(forward(&p), 3870720);
}

static void test_forward_gqa_counts_per_query_head(void **state) {
    (void)state;
    /* q [1, 16, Hq=8, 64], k = v [1, 16, Hkv=2, 64], kernel 5:
     * per query head: 2*1*8*16*5*64 (QK) + 2*1*8*16*5*64 (AV) = 81920 + 81920 = 163840.
     * (Per KV head it would be 4*1*2*16*5*64 = 40960.) */
    nf_problem p = new_problem(NF_KIND_FUSED, NF_HEADS_LAST, 1);
    SET_SHAPE(&p, q, 1, 16, 8, 64);
    SET_SHAPE(&p, k, 1, 16, 2, 64);
    SET_SHAPE(&p, v, 1, 16, 2, 64);
    SET_KERNEL(&p, 5);
    assert_u128_equal(forward(&p), 163840);
}

static void test_forward_value_head_dim(void **state) {
    (void)state;
    /* q = k [2, 10, 4, Dqk=32], v [2, 10, 4, Dv=48], kernel 3: B*H*N*W = 2*4*10*3 = 240.
     * 2*240*32 + 2*240*48 = 15360 + 23040 = 38400 */
    nf_problem p = new_problem(NF_KIND_FUSED, NF_HEADS_LAST, 1);
    SET_SHAPE(&p, q, 2, 10, 4, 32);
    SET_SHAPE(&p, k, 2, 10, 4, 32);
    SET_SHAPE(&p, v, 2, 10, 4, 48);
    SET_KERNEL(&p, 3);
    assert_u128_equal(forward(&p), 38400);
}

static void test_forward_extra_kv(void **state) {
    (void)state;
    /* q = k = v [1, 4, 4, 2, 8], kernel 3x3 plus 7 extra tokens: W = 9 + 7 = 16, N = 16.
     * fused = 4*1*2*16*16*8 = 16384; qk = av = 2*1*2*16*16*8 = 8192 */
    nf_problem p = new_problem(NF_KIND_FUSED, NF_HEADS_LAST, 2);
    SET_SHAPE(&p, q, 1, 4, 4, 2, 8);
    SET_SHAPE(&p, k, 1, 4, 4, 2, 8);
    SET_SHAPE(&p, v, 1, 4, 4, 2, 8);
    SET_KERNEL(&p, 3, 3);
    p.extra_kv = 7;
    assert_u128_equal(forward(&p), 16384);
    p.kind = NF_KIND_QK;
    assert_u128_equal(forward(&p), 8192);
    p.kind = NF_KIND_AV;
    assert_u128_equal(forward(&p), 8192);
}

static void test_forward_attention(void **state) {
    (void)state;
    /* q [B=2, Nq=100, H=8, Dqk=64], k [2, Nkv=300, Hkv=2, 64], v [2, 300, 2, Dv=32]:
     * W = Nkv = 300; 2*B*H*Nq*Nkv*(Dqk + Dv) = 2*2*8*100*300*96 = 92160000 */
    nf_problem p = new_problem(NF_KIND_ATTENTION, NF_HEADS_LAST, 1);
    SET_SHAPE(&p, q, 2, 100, 8, 64);
    SET_SHAPE(&p, k, 2, 300, 2, 64);
    SET_SHAPE(&p, v, 2, 300, 2, 32);
    assert_u128_equal(forward(&p), 92160000);
}

static void test_forward_attention_varlen(void **state) {
    (void)state;
    /* Two packed sequences (Lq, Lkv) = (10, 10) and (20, 20): pairs = 100 + 400 = 500.
     * q = k = v [1, 30, H=4, 16]: 2*H*pairs*(16 + 16) = 2*4*500*32 = 128000
     * (dense over all 30x30 would be 2*4*900*32 = 230400). */
    nf_problem p = new_problem(NF_KIND_ATTENTION, NF_HEADS_LAST, 1);
    SET_SHAPE(&p, q, 1, 30, 4, 16);
    SET_SHAPE(&p, k, 1, 30, 4, 16);
    SET_SHAPE(&p, v, 1, 30, 4, 16);
    assert_u128_equal(forward(&p), 230400);
    p.varlen_pairs = 500;
    assert_u128_equal(forward(&p), 128000);
}

static void test_forward_attention_past_2_64(void **state) {
    (void)state;
    /* q = k = v [B=2^20, 100000, H=2^10, 128]:
     * 2 * 2^20 * 2^10 * 10^5 * 10^5 * 256 = 2^39 * 10^10 = 5497558138880000000000 */
    nf_problem p = new_problem(NF_KIND_ATTENTION, NF_HEADS_LAST, 1);
    SET_SHAPE(&p, q, (int64_t)1 << 20, 100000, 1024, 128);
    SET_SHAPE(&p, k, (int64_t)1 << 20, 100000, 1024, 128);
    SET_SHAPE(&p, v, (int64_t)1 << 20, 100000, 1024, 128);
    nf_u128 f = forward(&p);
    assert_u128_equal(f, NF_POW2(39) * 10000000000ULL);
    char buf[NF_U128_DEC_LEN];
    assert_string_equal(nf_u128_to_dec(f, buf), "5497558138880000000000");
}

static void test_forward_past_2_64(void **state) {
    (void)state;
    /* The natten example above as a problem: 2^39 * 169 * 10^6 = 92908732547072000000. */
    nf_problem p = new_problem(NF_KIND_FUSED, NF_HEADS_LAST, 2);
    SET_SHAPE(&p, q, (int64_t)1 << 20, 1000, 1000, 1024, 128);
    SET_SHAPE(&p, k, (int64_t)1 << 20, 1000, 1000, 1024, 128);
    SET_SHAPE(&p, v, (int64_t)1 << 20, 1000, 1000, 1024, 128);
    SET_KERNEL(&p, 13, 13);
    assert_u128_equal(forward(&p), NF_POW2(39) * 169 * 1000000);
}

static void test_backward_is_twice_forward(void **state) {
    (void)state;
    /* 2 * 147456 = 294912; 2 * 2^127 saturates. */
    assert_u128_equal(nf_rules_backward_flops(147456), 294912);
    assert_u128_equal(nf_rules_backward_flops(0), 0);
    assert_u128_equal(nf_rules_backward_flops(NF_POW2(100)), NF_POW2(101));
    assert_u128_equal(nf_rules_backward_flops(NF_POW2(127)), NF_U128_MAX);
}

static void test_recompute_is_qk_half(void **state) {
    (void)state;
    /* equal head dims: half the forward, 147456 / 2 = 73728 */
    nf_problem fused = example_2d(NF_KIND_FUSED);
    assert_u128_equal(nf_rules_backward_recompute_flops(&fused, 147456), 73728);

    /* Dqk = 32, Dv = 48: the QK part, 2*240*32 = 15360 = 38400 * 32 / 80 */
    nf_problem p = new_problem(NF_KIND_FUSED, NF_HEADS_LAST, 1);
    SET_SHAPE(&p, q, 2, 10, 4, 32);
    SET_SHAPE(&p, k, 2, 10, 4, 32);
    SET_SHAPE(&p, v, 2, 10, 4, 48);
    SET_KERNEL(&p, 3);
    assert_u128_equal(nf_rules_backward_recompute_flops(&p, 38400), 15360);

    /* attention, Dqk = 64, Dv = 32: 2*2*8*100*300*64 = 61440000 */
    nf_problem a = new_problem(NF_KIND_ATTENTION, NF_HEADS_LAST, 1);
    SET_SHAPE(&a, q, 2, 100, 8, 64);
    SET_SHAPE(&a, k, 2, 300, 2, 64);
    SET_SHAPE(&a, v, 2, 300, 2, 32);
    assert_u128_equal(nf_rules_backward_recompute_flops(&a, 92160000), 61440000);

    /* unfused halves recompute nothing */
    nf_problem qk = example_2d(NF_KIND_QK), av = example_2d(NF_KIND_AV);
    assert_u128_equal(nf_rules_backward_recompute_flops(&qk, 73728), 0);
    assert_u128_equal(nf_rules_backward_recompute_flops(&av, 73728), 0);
}

static void test_forward_rejects(void **state) {
    (void)state;
    nf_problem p;

    p = example_2d(NF_KIND_FUSED);
    p.na_dim = 0;
    forward_rejects(&p);
    p.na_dim = 4;
    forward_rejects(&p);

    p = example_2d(NF_KIND_FUSED);
    p.kind = NF_KIND_COUNT;
    forward_rejects(&p);

    p = example_2d(NF_KIND_FUSED);
    p.q_rank = 3; /* too few dims */
    forward_rejects(&p);

    p = example_2d(NF_KIND_FUSED);
    p.v_rank = 0; /* fused needs a value */
    forward_rejects(&p);

    p = example_2d(NF_KIND_QK);
    p.q_shape[2] = -8;
    forward_rejects(&p);

    p = example_2d(NF_KIND_AV);
    p.v_shape[4] = -16;
    forward_rejects(&p);

    p = example_2d(NF_KIND_FUSED);
    p.kernel[1] = -3;
    forward_rejects(&p);

    p = example_2d(NF_KIND_FUSED);
    p.extra_kv = -1;
    forward_rejects(&p);

    p = new_problem(NF_KIND_ATTENTION, NF_HEADS_LAST, 1);
    SET_SHAPE(&p, q, 2, 8, 8, 2, 16); /* attention is [B, N, H, D] only */
    SET_SHAPE(&p, k, 2, 64, 2, 16);
    SET_SHAPE(&p, v, 2, 64, 2, 16);
    forward_rejects(&p);

    p = new_problem(NF_KIND_ATTENTION, NF_HEADS_LAST, 1);
    SET_SHAPE(&p, q, 2, 64, 2, 16);
    SET_SHAPE(&p, k, 2, -64, 2, 16);
    SET_SHAPE(&p, v, 2, 64, 2, 16);
    forward_rejects(&p);
}

static void test_names(void **state) {
    (void)state;
    assert_string_equal(nf_kind_name(NF_KIND_FUSED), "fused");
    assert_string_equal(nf_kind_name(NF_KIND_QK), "qk");
    assert_string_equal(nf_kind_name(NF_KIND_AV), "av");
    assert_string_equal(nf_kind_name(NF_KIND_ATTENTION), "attention");
    assert_string_equal(nf_kind_name(NF_KIND_COUNT), "unknown");
    assert_string_equal(nf_pass_name(NF_PASS_FORWARD), "forward");
    assert_string_equal(nf_pass_name(NF_PASS_BACKWARD), "backward");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_natten_2d_heads_last),
        cmocka_unit_test(test_natten_2d_heads_first),
        cmocka_unit_test(test_natten_2d_tuple_kernel),
        cmocka_unit_test(test_natten_1d),
        cmocka_unit_test(test_natten_3d),
        cmocka_unit_test(test_natten_macs_are_half),
        cmocka_unit_test(test_natten_zero_sized),
        cmocka_unit_test(test_natten_past_2_64_is_exact),
        cmocka_unit_test(test_natten_saturates_past_2_128),
        cmocka_unit_test(test_natten_rejects_bad_rank),
        cmocka_unit_test(test_natten_rejects_wrong_kernel_length),
        cmocka_unit_test(test_natten_rejects_negative_dims),
        cmocka_unit_test(test_natten_rejects_other_kinds),
        cmocka_unit_test(test_forward_matches_natten),
        cmocka_unit_test(test_forward_3d),
        cmocka_unit_test(test_forward_gqa_counts_per_query_head),
        cmocka_unit_test(test_forward_value_head_dim),
        cmocka_unit_test(test_forward_extra_kv),
        cmocka_unit_test(test_forward_attention),
        cmocka_unit_test(test_forward_attention_varlen),
        cmocka_unit_test(test_forward_attention_past_2_64),
        cmocka_unit_test(test_forward_past_2_64),
        cmocka_unit_test(test_backward_is_twice_forward),
        cmocka_unit_test(test_recompute_is_qk_half),
        cmocka_unit_test(test_forward_rejects),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
