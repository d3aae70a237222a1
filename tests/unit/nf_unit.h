/* Shared bits for the cmocka unit tests: the includes cmocka needs, in the order it
 * needs them, and an equality assertion for 128-bit counts. */
#ifndef NF_UNIT_H
#define NF_UNIT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

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

#endif
