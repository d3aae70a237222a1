/* hooks/cuda/cupti_metrics.c: tensor-core metric selection, configuration images and pass
 * counts for GH100, GA100 and GB100 through CUPTI's profiler host API, which needs no
 * GPU. libcupti comes from CUDA_HOME (the Makefile's, /usr/local/cuda by default);
 * without it every test is skipped with the reason.
 *
 * The expected names and pass counts are what CUDA 13.0's CUPTI answers; a newer
 * CUPTI that changes them fails here on purpose, so that the change is looked at. */
#include <stdio.h>
#include <string.h>

#include "nf_unit.h"

#include "../../hooks/cuda/cupti_metrics.h"

#ifndef NF_CUDA_HOME
#define NF_CUDA_HOME "/usr/local/cuda"
#endif

static nf_cm_lib *lib;
static char why[512] = "no libcupti with the profiler host API under " NF_CUDA_HOME;

static int open_lib(void **state) {
    (void)state;
#if defined(__SANITIZE_ADDRESS__)
    /* libcupti dlopens libnvperf_host with RTLD_DEEPBIND, which AddressSanitizer
     * refuses (it aborts the process; google/sanitizers#611). The plain and valgrind
     * runs cover the CUPTI part; this build checks the rest. */
    snprintf(why, sizeof why, "under AddressSanitizer, which cannot load libnvperf_host "
                              "(RTLD_DEEPBIND)");
    return 0;
#endif
    const char *paths[] = {NF_CUDA_HOME "/lib64/libcupti.so", NF_CUDA_HOME "/lib/libcupti.so",
                           NF_CUDA_HOME "/extras/CUPTI/lib64/libcupti.so"};
    for (size_t i = 0; i < 3 && lib == NULL; i++) lib = nf_cm_open(paths[i], why, sizeof why);
    return 0;
}

static int close_lib(void **state) {
    (void)state;
    nf_cm_close(lib);
    lib = NULL;
    return 0;
}

#define NEED_CUPTI()                                                                        \
    do {                                                                                    \
        if (lib == NULL) {                                                                  \
            print_message("skipped: CUPTI's host API not used here: %s\n", why);            \
            skip();                                                                         \
        }                                                                                   \
    } while (0)

#define FP16 "sm__ops_path_tensor_src_fp16.sum"
#define FP16_16 "sm__ops_path_tensor_src_fp16_dst_fp16.sum"
#define FP16_32 "sm__ops_path_tensor_src_fp16_dst_fp32.sum"
#define BF16 "sm__ops_path_tensor_src_bf16_dst_fp32.sum"
#define TF32 "sm__ops_path_tensor_src_tf32_dst_fp32.sum"
#define FP8 "sm__ops_path_tensor_src_fp8.sum"
#define FP8_16 "sm__ops_path_tensor_src_fp4_fp6_fp8_dst_fp16.sum"
#define FP8_32 "sm__ops_path_tensor_src_fp4_fp6_fp8_dst_fp32.sum"

/* Chooses for chip and dtypes and checks the metrics (in order, NULL-terminated), the
 * dtypes covered and the passes. */
static void expect(const char *chip, unsigned dtypes, unsigned covered, size_t passes, ...) {
    nf_cm_choice c;
    char err[256] = "";
    if (nf_cm_choose(lib, chip, dtypes, &c, err, sizeof err) != 0) fail_msg("%s: %s", chip, err);
    va_list ap;
    va_start(ap, passes);
    int i = 0;
    for (const char *m; (m = va_arg(ap, const char *)) != NULL; i++) {
        if (i >= c.n) fail_msg("%s 0x%x: only %d metrics, expected %s next", chip, dtypes, c.n, m);
        assert_string_equal(c.metric[i], m);
    }
    va_end(ap);
    assert_int_equal(c.n, i);
    assert_int_equal(c.covered, covered);
    assert_int_equal(c.asked, dtypes);
    assert_int_equal(c.passes, passes);
    if (c.n > 0) {
        assert_non_null(c.image);
        assert_true(c.image_size > 0);
    } else {
        assert_null(c.image);
    }
    nf_cm_choice_free(lib, &c);
}

static void test_chips_supported(void **state) {
    (void)state;
    NEED_CUPTI();
    assert_true(nf_cm_chip_supported(lib, "GH100"));
    assert_true(nf_cm_chip_supported(lib, "GA100"));
    assert_true(nf_cm_chip_supported(lib, "GB100"));
    assert_false(nf_cm_chip_supported(lib, "NOCHIP"));
}

static void test_gh100(void **state) {
    (void)state;
    NEED_CUPTI();
    expect("GH100", NF_TC_FP16, NF_TC_FP16, 2, FP16, NULL);
    expect("GH100", NF_TC_BF16, NF_TC_BF16, 1, BF16, NULL);
    expect("GH100", NF_TC_TF32, NF_TC_TF32, 1, TF32, NULL);
    expect("GH100", NF_TC_FP8, NF_TC_FP8, 1, FP8, NULL);
    expect("GH100", NF_TC_FP16 | NF_TC_BF16, NF_TC_FP16 | NF_TC_BF16, 3, FP16, BF16, NULL);
    expect("GH100", NF_TC_FP16 | NF_TC_BF16 | NF_TC_TF32, NF_TC_FP16 | NF_TC_BF16 | NF_TC_TF32, 4,
           FP16, BF16, TF32, NULL);
    expect("GH100", NF_TC_ALL, NF_TC_ALL, 4, FP16, BF16, TF32, FP8, NULL);
}

/* GA100: fp16 split by destination (both read, summed); no fp8 path at all. */
static void test_ga100(void **state) {
    (void)state;
    NEED_CUPTI();
    expect("GA100", NF_TC_FP16, NF_TC_FP16, 2, FP16_16, FP16_32, NULL);
    expect("GA100", NF_TC_BF16, NF_TC_BF16, 1, BF16, NULL);
    expect("GA100", NF_TC_TF32, NF_TC_TF32, 1, TF32, NULL);
    expect("GA100", NF_TC_FP8, 0, 0, NULL);
    expect("GA100", NF_TC_FP16 | NF_TC_BF16 | NF_TC_TF32, NF_TC_FP16 | NF_TC_BF16 | NF_TC_TF32, 4,
           FP16_16, FP16_32, BF16, TF32, NULL);
    expect("GA100", NF_TC_ALL, NF_TC_FP16 | NF_TC_BF16 | NF_TC_TF32, 4, FP16_16, FP16_32, BF16,
           TF32, NULL);
}

/* GB100: fp16 split by destination, fp8 counted with fp6/fp4. */
static void test_gb100(void **state) {
    (void)state;
    NEED_CUPTI();
    expect("GB100", NF_TC_FP16, NF_TC_FP16, 2, FP16_16, FP16_32, NULL);
    expect("GB100", NF_TC_BF16, NF_TC_BF16, 1, BF16, NULL);
    expect("GB100", NF_TC_TF32, NF_TC_TF32, 2, TF32, NULL);
    expect("GB100", NF_TC_FP8, NF_TC_FP8, 2, FP8_16, FP8_32, NULL);
    expect("GB100", NF_TC_FP16 | NF_TC_BF16 | NF_TC_TF32, NF_TC_FP16 | NF_TC_BF16 | NF_TC_TF32, 4,
           FP16_16, FP16_32, BF16, TF32, NULL);
    expect("GB100", NF_TC_ALL, NF_TC_ALL, 5, FP16_16, FP16_32, BF16, TF32, FP8_16, FP8_32, NULL);
}

static void test_unknown_chip(void **state) {
    (void)state;
    NEED_CUPTI();
    nf_cm_choice c;
    char err[256] = "";
    assert_int_equal(nf_cm_choose(lib, "NOCHIP", NF_TC_BF16, &c, err, sizeof err), -1);
    assert_string_equal(err, "CUPTI's host API does not know chip NOCHIP");
    nf_cm_choice_free(lib, &c);
}

static void test_missing_library(void **state) {
    (void)state;
    char err[256] = "";
    assert_null(nf_cm_open("/nonexistent/libcupti.so", err, sizeof err));
    assert_non_null(strstr(err, "libcupti not found"));
}

/* No CUPTI needed: the dtype names the wrappers see. */
static void test_dtype_bits(void **state) {
    (void)state;
    assert_int_equal(nf_tc_dtype_bit("float16"), NF_TC_FP16);
    assert_int_equal(nf_tc_dtype_bit("bfloat16"), NF_TC_BF16);
    assert_int_equal(nf_tc_dtype_bit("float32"), NF_TC_TF32);
    assert_int_equal(nf_tc_dtype_bit("float8_e4m3fn"), NF_TC_FP8);
    assert_int_equal(nf_tc_dtype_bit("float8_e5m2"), NF_TC_FP8);
    assert_int_equal(nf_tc_dtype_bit("float64"), 0);
    assert_int_equal(nf_tc_dtype_bit(NULL), 0);
    assert_string_equal(nf_tc_dtype_name(NF_TC_BF16), "bfloat16");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dtype_bits),
        cmocka_unit_test(test_missing_library),
        cmocka_unit_test(test_chips_supported),
        cmocka_unit_test(test_gh100),
        cmocka_unit_test(test_ga100),
        cmocka_unit_test(test_gb100),
        cmocka_unit_test(test_unknown_chip),
    };
    return cmocka_run_group_tests(tests, open_lib, close_lib);
}
