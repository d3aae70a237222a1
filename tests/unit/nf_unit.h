/* Shared bits for the cmocka unit tests: the includes cmocka needs, in the order it
 * needs them, and an equality assertion for 128-bit counts. */
#ifndef NF_UNIT_H
#define NF_UNIT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "../../src/nf_intern.h"
#include "../../src/nf_ledger.h"
#include "../../src/nf_u128.h"

/* 2^k as a 128-bit count, for writing large expected values by hand. */
#define NF_POW2(k) ((nf_u128)1 << (k))

/* Fails with both values in hex (high:low words) so that a failure never depends on
 * the decimal renderer under test. */
#define assert_u128_equal(actual, expected)                                                     \
    do {                                                                                        \
        nf_u128 a_ = (actual), e_ = (expected);                                                 \
        if (a_ != e_) {                                                                         \
            print_error("%s = 0x%016llx:%016llx, expected 0x%016llx:%016llx\n", #actual,       \
                        (unsigned long long)(a_ >> 64), (unsigned long long)a_,                 \
                        (unsigned long long)(e_ >> 64), (unsigned long long)e_);                \
            fail();                                                                             \
        }                                                                                       \
    } while (0)

/* A fused 2D heads-last signature q = k = v [2, 8, 8, 2, d], kernel 3x3, float16 on
 * cuda:0: forward = 4*2*2*64*9*d = 9216*d FLOPs per call (147456 for d = 16), backward
 * twice that. backend NULL: unknown (the key a wrapper has in scope during a call). */
static inline nf_key nf_unit_key_2d(const char *op, int64_t d, nf_pass pass, const char *version,
                                    const char *backend) {
    nf_key k;
    nf_key_init(&k);
    nf_problem *p = &k.problem;
    p->kind = NF_KIND_FUSED;
    p->layout = NF_HEADS_LAST;
    p->na_dim = 2;
    const int64_t shape[] = {2, 8, 8, 2, d};
    memcpy(p->q_shape, shape, sizeof shape);
    memcpy(p->k_shape, shape, sizeof shape);
    memcpy(p->v_shape, shape, sizeof shape);
    p->q_rank = p->k_rank = p->v_rank = 5;
    p->kernel[0] = p->kernel[1] = 3;
    p->dilation[0] = p->dilation[1] = 1;
    p->stride[0] = p->stride[1] = 1;
    k.op = nf_intern(op);
    k.dtype = nf_intern("float16");
    k.device = nf_intern("cuda:0");
    k.version = nf_intern(version);
    k.backend = backend ? nf_intern(backend) : NF_INTERN_NONE;
    k.pass = (uint8_t)pass;
    return k;
}

#endif
