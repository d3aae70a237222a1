/* nf_step: where steps end, what each holds (ledger deltas), warm-up and compiling
 * steps, merged optimizer steps, the bounded record list, GPU busy time, and the
 * report's lines and JSON.
 *
 * Steps read the whole ledger, so every test starts with nf_ledger_reset and
 * nf_step_reset; a NATTEN forward of nf_unit_key_2d(d = 16) is 147456 FLOPs and its
 * backward twice that. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "nf_unit.h"

#include "../../src/nf_ledger.h"
#include "../../src/nf_step.h"

#define FWD 147456
#define BWD (2 * FWD)

static nf_step_view view; /* large: not on the stack */

static void start(nf_step_mode mode) {
    nf_config cfg;
    nf_config_defaults(&cfg);
    cfg.step = mode;
    strcpy(cfg.step_module, "m");
    strcpy(cfg.step_qualname, "f");
    nf_ledger_reset();
    nf_step_reset();
    nf_step_set_gpu_clock(NULL);
    nf_step_configure(&cfg);
}

/* One micro-batch: a forward and a backward (and a recompute when asked). */
static void work(const char *op, bool recompute) {
    nf_key f = nf_unit_key_2d(op, 16, NF_PASS_FORWARD, "0.21.7", NULL);
    nf_key b = nf_unit_key_2d(op, 16, NF_PASS_BACKWARD, "0.21.7", NULL);
    assert_true(nf_ledger_add(&f, 1));
    assert_true(nf_ledger_add(&b, 1));
    if (recompute) {
        nf_key r = nf_unit_key_2d(op, 16, NF_PASS_RECOMPUTE, "0.21.7", NULL);
        assert_true(nf_ledger_add(&r, 1));
    }
}

static void optimizer_step(void) {
    nf_step_optimizer_begin();
    nf_step_optimizer_end();
}

static void test_accumulation_steps(void **state) {
    (void)state;
    start(NF_STEP_OPTIMIZER);
    for (int s = 0; s < 6; s++) {
        work("step_acc", false);
        work("step_acc", false); /* gradient accumulation 2 */
        optimizer_step();
    }
    assert_true(nf_step_view_now(&view));
    assert_int_equal(view.count, 6);
    assert_int_equal(view.n, 6);
    assert_int_equal(view.warmup, 1);
    assert_int_equal(view.bucket, 1);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(view.records[i].first, i + 1);
        assert_int_equal(view.records[i].steps, 1);
        assert_u128_equal(view.records[i].model, 2 * (FWD + BWD));
        assert_u128_equal(view.records[i].hardware, 2 * (FWD + BWD));
        assert_u128_equal(view.records[i].natten, 2 * (FWD + BWD));
        assert_true(view.records[i].warmup == (i == 0));
        if (i > 0) /* contiguous: each starts where the one before ended */
            assert_int_equal(view.records[i].start_ns, view.records[i - 1].start_ns + view.records[i - 1].ns);
    }
    assert_u128_equal(view.total.model, 12 * (FWD + BWD));
    nf_step_steady st;
    assert_true(nf_step_steady_of(&view, &st));
    assert_int_equal(st.steps, 5);
    assert_true(st.model_per_step == 2.0 * (FWD + BWD));
    assert_true(st.seconds_p10 <= st.seconds_median && st.seconds_median <= st.seconds_p90);
}

static void test_recompute_is_hardware_only(void **state) {
    (void)state;
    start(NF_STEP_OPTIMIZER);
    for (int s = 0; s < 3; s++) {
        work("step_ckpt", true);
        optimizer_step();
    }
    assert_true(nf_step_view_now(&view));
    assert_int_equal(view.count, 3);
    for (int i = 0; i < 3; i++) {
        assert_u128_equal(view.records[i].model, FWD + BWD);
        assert_u128_equal(view.records[i].hardware, FWD + BWD + FWD);
    }
}

static void test_nested_and_back_to_back_optimizers(void **state) {
    (void)state;
    start(NF_STEP_OPTIMIZER);
    work("step_nest", false);
    nf_step_optimizer_begin(); /* a wrapper optimizer stepping an inner one */
    nf_step_optimizer_begin();
    nf_step_optimizer_end();
    nf_step_optimizer_end();
    optimizer_step(); /* a second optimizer, no work since: the same step */
    work("step_nest", false);
    optimizer_step();
    optimizer_step();
    assert_true(nf_step_view_now(&view));
    assert_int_equal(view.count, 2);
    assert_int_equal(view.n, 2);
    assert_u128_equal(view.records[1].model, FWD + BWD);
    /* the joined step's time is in it and in the total */
    assert_int_equal(view.total.ns, view.records[0].ns + view.records[1].ns);
}

/* AdamW, then Muon whose own step runs matmuls: one step, Muon's FLOPs in it. */
static void test_second_optimizer_with_its_own_work(void **state) {
    (void)state;
    start(NF_STEP_OPTIMIZER);
    for (int i = 0; i < 3; i++) {
        work("step_muon", false);
        optimizer_step(); /* AdamW */
        nf_step_optimizer_begin(); /* Muon */
        nf_key ns = nf_unit_key_2d("step_muon_ns", 16, NF_PASS_FORWARD, "0.21.7", NULL);
        assert_true(nf_ledger_add(&ns, 1));
        nf_step_optimizer_end();
    }
    assert_true(nf_step_view_now(&view));
    assert_int_equal(view.count, 3);
    for (int i = 0; i < 3; i++) assert_u128_equal(view.records[i].hardware, FWD + BWD + FWD);
}

static void test_gan_steps_each_optimizer(void **state) {
    (void)state;
    start(NF_STEP_OPTIMIZER);
    for (int i = 0; i < 4; i++) {
        work("step_gan", false); /* discriminator */
        optimizer_step();
        work("step_gan", false); /* generator */
        optimizer_step();
    }
    assert_true(nf_step_view_now(&view));
    assert_int_equal(view.count, 8);
}

static void test_warmup_and_recompile(void **state) {
    (void)state;
    start(NF_STEP_OPTIMIZER);
    for (int s = 1; s <= 8; s++) {
        if (s <= 2 || s == 6) nf_step_note_compile();
        work("step_warm", false);
        optimizer_step();
    }
    assert_true(nf_step_view_now(&view));
    assert_int_equal(view.warmup, 2);
    assert_int_equal(view.recompiled, 1);
    assert_true(view.records[0].warmup && view.records[1].warmup && !view.records[2].warmup);
    assert_int_equal(view.records[5].compiled, 1);
    nf_step_steady st;
    assert_true(nf_step_steady_of(&view, &st));
    assert_int_equal(st.steps, 5); /* 3, 4, 5, 7, 8 */
}

static void test_only_warmup_has_no_steady(void **state) {
    (void)state;
    start(NF_STEP_OPTIMIZER);
    work("step_one", false);
    optimizer_step();
    assert_true(nf_step_view_now(&view));
    nf_step_steady st;
    assert_false(nf_step_steady_of(&view, &st));
}

static void test_modes(void **state) {
    (void)state;
    start(NF_STEP_OFF);
    work("step_mode", false);
    optimizer_step();
    nf_step_call_end();
    assert_false(nf_step_view_now(&view));

    start(NF_STEP_FUNCTION);
    work("step_mode", false);
    optimizer_step(); /* not a boundary here */
    nf_step_call_end();
    work("step_mode", false);
    nf_step_call_end();
    assert_true(nf_step_view_now(&view));
    assert_int_equal(view.count, 2);
    assert_string_equal(view.boundary, "function m:f");
    assert_u128_equal(view.records[1].model, FWD + BWD);

    start(NF_STEP_OPTIMIZER);
    nf_step_call_end(); /* not a boundary here */
    assert_false(nf_step_view_now(&view));
}

static void test_bounded_records_exact_totals(void **state) {
    (void)state;
    start(NF_STEP_OPTIMIZER);
    const int steps = 5000;
    for (int s = 0; s < steps; s++) {
        work("step_long", false);
        optimizer_step();
    }
    assert_true(nf_step_view_now(&view));
    assert_int_equal(view.count, steps);
    assert_true(view.n <= NF_STEP_RECORDS);
    assert_int_equal(view.bucket, 8); /* 5000 steps over at most 1024 records */
    assert_true(view.records[0].warmup && view.records[0].steps == 1);
    uint64_t next = 1, sum = 0;
    nf_u128 model = 0;
    for (int i = 0; i < view.n; i++) {
        assert_int_equal(view.records[i].first, next); /* contiguous, in order */
        assert_true(view.records[i].steps <= view.bucket);
        assert_u128_equal(view.records[i].model, (nf_u128)view.records[i].steps * (FWD + BWD));
        next += view.records[i].steps;
        sum += view.records[i].steps;
        model += view.records[i].model;
    }
    assert_int_equal(sum, steps);
    assert_u128_equal(model, (nf_u128)steps * (FWD + BWD));
    assert_u128_equal(view.total.model, (nf_u128)steps * (FWD + BWD));
    nf_step_steady st;
    assert_true(nf_step_steady_of(&view, &st));
    assert_int_equal(st.steps, steps - 1);
}

/* A GPU clock the test moves by hand. */
static uint64_t fake_now;
static uint64_t fake_clock(void) { return fake_now; }

static void test_gpu_busy_per_step(void **state) {
    (void)state;
    start(NF_STEP_OPTIMIZER);
    fake_now = 1000;
    nf_step_set_gpu_clock(fake_clock);
    work("step_gpu", false);
    fake_now = 2000;
    optimizer_step(); /* step 1: [1000, 2000) */
    work("step_gpu", false);
    fake_now = 3000;
    optimizer_step(); /* step 2: [2000, 3000) */
    /* records come late, as CUPTI delivers them */
    nf_step_gpu_kernel(1100, 1300);
    nf_step_gpu_kernel(1200, 1400); /* overlaps the one before: 100 more */
    nf_step_gpu_kernel(2100, 2600);
    nf_step_gpu_kernel(3100, 3200); /* the step in progress */
    assert_true(nf_step_view_now(&view));
    assert_true(view.gpu);
    assert_int_equal(view.records[0].gpu_ns, 300);
    assert_int_equal(view.records[1].gpu_ns, 500);
    assert_int_equal(view.total.gpu_ns, 800);
    work("step_gpu", false);
    fake_now = 4000;
    optimizer_step();
    assert_true(nf_step_view_now(&view));
    assert_int_equal(view.records[2].gpu_ns, 100);
}

static char *render(void (*fn)(FILE *, const nf_step_view *, double, const char *), double peak) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    fn(f, &view, peak, "NAFLOPS_PEAK");
    fclose(f);
    return text;
}

static void table_si(FILE *f, const nf_step_view *v, double peak, const char *src) {
    nf_step_report_table(f, v, peak, src, NF_UNITS_SI);
}

static void test_report_text(void **state) {
    (void)state;
    start(NF_STEP_OPTIMIZER);
    for (int s = 0; s < 4; s++) {
        work("step_text", false);
        optimizer_step();
    }
    assert_true(nf_step_view_now(&view));
    char *t = render(table_si, 1e12);
    assert_non_null(strstr(t, "naflops: steps     4 optimizer steps (boundary: optimizer); 1 warm-up\n"));
    assert_non_null(strstr(t, "model 442.37 kFLOP  hardware 442.37 kFLOP  NATTEN 100.0%  (steady state: 3 steps)"));
    assert_non_null(strstr(t, "naflops: MFU       "));
    assert_non_null(strstr(t, "(peak 1.00 TFLOP/s, NAFLOPS_PEAK)"));
    free(t);
    t = render(table_si, 0);
    assert_non_null(strstr(t, "MFU       unknown"));
    free(t);
    t = render(nf_step_report_json, 1e12);
    assert_non_null(strstr(t, "{\"boundary\": \"optimizer\", \"count\": 4, \"warmup\": 1, \"recompiled\": 0, \"bucket\": 1,"));
    assert_non_null(strstr(t, "\"peak_flops_per_s\": 1000000000000, \"peak_source\": \"NAFLOPS_PEAK\""));
    assert_non_null(strstr(t, "\"model_flops\": 1769472")); /* the total: 4 x 442368 */
    assert_non_null(strstr(t, "{\"step\": 4, \"steps\": 1, \"start_s\": "));
    assert_non_null(strstr(t, "\"gpu_busy_seconds\": null"));
    assert_null(strstr(t, "nan"));
    free(t);
}

/* Boundaries from several threads, with counting going on: every step is kept. */
static void *stepper(void *arg) {
    (void)arg;
    for (int i = 0; i < 200; i++) {
        work("step_threads", false);
        optimizer_step();
    }
    return NULL;
}

static void test_threads(void **state) {
    (void)state;
    start(NF_STEP_OPTIMIZER);
    pthread_t t[4];
    for (int i = 0; i < 4; i++) assert_int_equal(pthread_create(&t[i], NULL, stepper, NULL), 0);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    assert_true(nf_step_view_now(&view));
    /* a boundary with no work since the one before joins it: at most 800 steps, and
     * every FLOP is in one */
    assert_true(view.count >= 1 && view.count <= 800);
    assert_u128_equal(view.total.model, (nf_u128)800 * (FWD + BWD));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accumulation_steps),
        cmocka_unit_test(test_recompute_is_hardware_only),
        cmocka_unit_test(test_nested_and_back_to_back_optimizers),
        cmocka_unit_test(test_second_optimizer_with_its_own_work),
        cmocka_unit_test(test_gan_steps_each_optimizer),
        cmocka_unit_test(test_warmup_and_recompile),
        cmocka_unit_test(test_only_warmup_has_no_steady),
        cmocka_unit_test(test_modes),
        cmocka_unit_test(test_bounded_records_exact_totals),
        cmocka_unit_test(test_gpu_busy_per_step),
        cmocka_unit_test(test_report_text),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
