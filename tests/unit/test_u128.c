/* nf_u128: decimal rendering, saturating arithmetic and SI formatting. */
#include <string.h>

#include "nf_unit.h"

/* ------------------------------------------------------------------ decimal */

static void dec_is(nf_u128 v, const char *want) {
    /* One spare byte past NF_U128_DEC_LEN catches a write beyond the documented size. */
    char buf[NF_U128_DEC_LEN + 1];
    memset(buf, '#', sizeof buf);
    assert_ptr_equal(nf_u128_to_dec(v, buf), buf);
    assert_string_equal(buf, want);
    assert_int_equal(buf[NF_U128_DEC_LEN], '#');
}

static void test_dec_small(void **state) {
    (void)state;
    dec_is(0, "0");
    dec_is(1, "1");
    dec_is(9, "9");
    dec_is(10, "10");
    dec_is(147456, "147456");
}

static void test_dec_around_2_64(void **state) {
    (void)state;
    /* 2^64 - 1 = 18446744073709551615, the largest uint64_t. */
    dec_is((nf_u128)UINT64_MAX, "18446744073709551615");
    /* 2^64 = 18446744073709551616: the first value a uint64_t cannot hold. */
    dec_is(NF_POW2(64), "18446744073709551616");
    /* 10^19 * 10^19 = 10^38: a 1 and 38 zeros (39 digits). */
    dec_is((nf_u128)10000000000000000000ULL * 10000000000000000000ULL,
           "100000000000000000000000000000000000000");
}

static void test_dec_max(void **state) {
    (void)state;
    /* 2^128 - 1 = 340282366920938463463374607431768211455 (39 digits: the longest). */
    dec_is(NF_U128_MAX, "340282366920938463463374607431768211455");
    assert_int_equal(strlen("340282366920938463463374607431768211455") + 1, NF_U128_DEC_LEN);
}

/* --------------------------------------------------------------- saturation */

static void test_mul_sat(void **state) {
    (void)state;
    assert_u128_equal(nf_u128_mul_sat(3, 5), 15);
    assert_u128_equal(nf_u128_mul_sat(0, NF_U128_MAX), 0);
    assert_u128_equal(nf_u128_mul_sat(NF_U128_MAX, 0), 0);
    assert_u128_equal(nf_u128_mul_sat(NF_U128_MAX, 1), NF_U128_MAX);
    /* 2^64 * 2^63 = 2^127: fits, exact. */
    assert_u128_equal(nf_u128_mul_sat(NF_POW2(64), NF_POW2(63)), NF_POW2(127));
    /* (2^64 - 1)(2^64 + 1) = 2^128 - 1: exactly the maximum, no overflow. */
    assert_u128_equal(nf_u128_mul_sat(NF_POW2(64) - 1, NF_POW2(64) + 1), NF_U128_MAX);
    /* (2^127 - 1) * 2 = 2^128 - 2: one below the maximum, still exact. */
    assert_u128_equal(nf_u128_mul_sat(NF_POW2(127) - 1, 2), NF_U128_MAX - 1);
    /* 2^127 * 2 = 2^128 and 2^64 * 2^64 = 2^128 overflow: saturate. */
    assert_u128_equal(nf_u128_mul_sat(NF_POW2(127), 2), NF_U128_MAX);
    assert_u128_equal(nf_u128_mul_sat(NF_POW2(64), NF_POW2(64)), NF_U128_MAX);
    assert_u128_equal(nf_u128_mul_sat(NF_U128_MAX, NF_U128_MAX), NF_U128_MAX);
}

static void test_add_sat(void **state) {
    (void)state;
    assert_u128_equal(nf_u128_add_sat(0, 0), 0);
    assert_u128_equal(nf_u128_add_sat(2, 3), 5);
    /* 2^64 + 2^64 = 2^65: carries past 64 bits exactly. */
    assert_u128_equal(nf_u128_add_sat(NF_POW2(64), NF_POW2(64)), NF_POW2(65));
    /* (2^64 - 1) + 1 = 2^64. */
    assert_u128_equal(nf_u128_add_sat((nf_u128)UINT64_MAX, 1), NF_POW2(64));
    assert_u128_equal(nf_u128_add_sat(NF_U128_MAX - 1, 1), NF_U128_MAX);
    /* 2^127 + 2^127 = 2^128, MAX + 1 and MAX + MAX overflow: saturate. */
    assert_u128_equal(nf_u128_add_sat(NF_POW2(127), NF_POW2(127)), NF_U128_MAX);
    assert_u128_equal(nf_u128_add_sat(NF_U128_MAX, 1), NF_U128_MAX);
    assert_u128_equal(nf_u128_add_sat(1, NF_U128_MAX), NF_U128_MAX);
    assert_u128_equal(nf_u128_add_sat(NF_U128_MAX, NF_U128_MAX), NF_U128_MAX);
}

/* ----------------------------------------------------------------------- SI */

static void si_is(nf_u128 v, const char *unit, const char *want) {
    char buf[64];
    assert_ptr_equal(nf_u128_to_si(v, unit, buf, sizeof buf), buf);
    assert_string_equal(buf, want);
}

static void test_si_below_1000_is_exact(void **state) {
    (void)state;
    si_is(0, "FLOP", "0 FLOP");
    si_is(1, "FLOP", "1 FLOP");
    si_is(999, "FLOP", "999 FLOP");
}

static void test_si_prefixes(void **state) {
    (void)state;
    si_is(1000, "FLOP", "1.0 KFLOP");
    /* 12345678 / 10^6 = 12.345678 -> 12.3 */
    si_is(12345678, "FLOP", "12.3 MFLOP");
    /* 221184 / 10^3 = 221.184 -> 221.2, with another unit */
    si_is(221184, "MAC", "221.2 KMAC");
    /* 1.5 * 10^12 */
    si_is((nf_u128)1500000000000ULL, "FLOP", "1.5 TFLOP");
    /* 2^64 / 10^18 = 18.446744... -> 18.4 E */
    si_is(NF_POW2(64), "FLOP", "18.4 EFLOP");
    /* (2^128 - 1) / 10^30 = 340282366.920938... -> Q is the last prefix */
    si_is(NF_U128_MAX, "FLOP", "340282366.9 QFLOP");
}

static void test_si_rounding_to_next_prefix(void **state) {
    (void)state;
    /* 999949 / 10^3 = 999.949 -> 999.9 K */
    si_is(999949, "FLOP", "999.9 KFLOP");
    /* 999950 / 10^3 = 999.95 would print "1000.0 K"; 999950 / 10^6 = 0.99995 -> 1.0 M */
    si_is(999950, "FLOP", "1.0 MFLOP");
    si_is(999999, "FLOP", "1.0 MFLOP");
    /* 999999999 / 10^9 = 0.999999999 -> 1.0 G */
    si_is(999999999, "FLOP", "1.0 GFLOP");
}

static void test_si_truncates_to_len(void **state) {
    (void)state;
    char buf[16];
    memset(buf, '#', sizeof buf);
    nf_u128_to_si(12345678, "FLOP", buf, 8);
    /* "12.3 MFLOP" cut to 7 characters and a NUL; nothing past len is written. */
    assert_string_equal(buf, "12.3 MF");
    for (size_t i = 8; i < sizeof buf; i++) assert_int_equal(buf[i], '#');
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dec_small),
        cmocka_unit_test(test_dec_around_2_64),
        cmocka_unit_test(test_dec_max),
        cmocka_unit_test(test_mul_sat),
        cmocka_unit_test(test_add_sat),
        cmocka_unit_test(test_si_below_1000_is_exact),
        cmocka_unit_test(test_si_prefixes),
        cmocka_unit_test(test_si_rounding_to_next_prefix),
        cmocka_unit_test(test_si_truncates_to_len),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
