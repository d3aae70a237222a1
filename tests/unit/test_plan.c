/* nf_plan: a compiled backward's recompute plan, taken per op name in graph order. */
#include <pthread.h>
#include <stdint.h>

#include "nf_unit.h"
#include "../../src/nf_plan.h"

/* mm(R) mm(B) addmm(R) relu(R) mm(R) bmm(B): as a backward graph with checkpointed
 * forward work would list them. */
static nf_plan *sample(void) {
    static const struct { const char *op; bool recompute; } calls[] = {
        {"aten::mm", true},    {"aten::mm", false}, {"aten::addmm", true},
        {"aten::relu", true},  {"aten::mm", true},  {"aten::bmm", false},
    };
    nf_plan *p = nf_plan_new(6);
    assert_non_null(p);
    for (size_t i = 0; i < 6; i++) assert_true(nf_plan_set(p, i, calls[i].op, calls[i].recompute));
    return p;
}

static void test_outside_any_plan(void **state) {
    (void)state;
    assert_false(nf_plan_recomputed("aten::mm"));
    nf_plan_leave(); /* no run: nothing happens */
    assert_false(nf_plan_recomputed("aten::mm"));
}

static void test_per_name_in_order(void **state) {
    (void)state;
    nf_plan *p = sample();
    assert_true(nf_plan_enter(p));
    /* the backend ran addmm before the mm calls, and bmm first: per name, order holds */
    assert_false(nf_plan_recomputed("aten::bmm"));
    assert_true(nf_plan_recomputed("aten::addmm"));
    assert_true(nf_plan_recomputed("aten::mm"));
    assert_false(nf_plan_recomputed("aten::mm"));
    assert_true(nf_plan_recomputed("aten::mm"));
    /* past the plan's calls of a name, and a name it does not hold */
    assert_false(nf_plan_recomputed("aten::mm"));
    assert_false(nf_plan_recomputed("aten::addmm"));
    assert_false(nf_plan_recomputed("aten::convolution"));
    assert_false(nf_plan_recomputed(NULL));
    nf_plan_leave();
    assert_false(nf_plan_recomputed("aten::addmm"));
    /* each run starts from the first call again */
    assert_true(nf_plan_enter(p));
    assert_true(nf_plan_recomputed("aten::addmm"));
    nf_plan_leave();
    nf_plan_free(p);
}

static void test_nested_runs(void **state) {
    (void)state;
    nf_plan *outer = sample();
    nf_plan *inner = nf_plan_new(1);
    assert_non_null(inner);
    assert_true(nf_plan_set(inner, 0, "aten::mm", false));
    assert_true(nf_plan_enter(outer));
    assert_true(nf_plan_recomputed("aten::mm"));  /* outer's 1st */
    assert_true(nf_plan_enter(inner));
    assert_false(nf_plan_recomputed("aten::mm")); /* inner's only */
    assert_false(nf_plan_recomputed("aten::addmm"));
    nf_plan_leave();
    assert_false(nf_plan_recomputed("aten::mm")); /* outer's 2nd */
    nf_plan_leave();
    /* deeper than the stack: the extra runs have no plan, the rest stay balanced */
    int entered = 0;
    for (int i = 0; i < 10; i++) entered += nf_plan_enter(outer);
    assert_int_equal(entered, 4);
    assert_true(nf_plan_recomputed("aten::addmm"));
    for (int i = 0; i < entered; i++) nf_plan_leave();
    assert_false(nf_plan_recomputed("aten::addmm"));
    nf_plan_free(inner);
    nf_plan_free(outer);
}

static void test_misuse(void **state) {
    (void)state;
    nf_plan *p = nf_plan_new(2);
    assert_non_null(p);
    assert_false(nf_plan_set(p, 1, "aten::mm", true)); /* out of order */
    assert_false(nf_plan_set(p, 0, NULL, true));
    assert_true(nf_plan_set(p, 0, "aten::mm", true));
    assert_true(nf_plan_set(p, 1, "aten::mm", false));
    assert_false(nf_plan_set(p, 2, "aten::mm", true)); /* past its size */
    assert_false(nf_plan_set(NULL, 0, "aten::mm", true));
    assert_false(nf_plan_enter(NULL));
    nf_plan_free(p);
    nf_plan_free(NULL);
    nf_plan *empty = nf_plan_new(0);
    assert_non_null(empty);
    assert_true(nf_plan_enter(empty));
    assert_false(nf_plan_recomputed("aten::mm"));
    nf_plan_leave();
    nf_plan_free(empty);
}

/* A plan entered on one thread is not seen on another. */
static void *other_thread(void *arg) {
    (void)arg;
    return (void *)(intptr_t)nf_plan_recomputed("aten::mm");
}

static void test_per_thread(void **state) {
    (void)state;
    nf_plan *p = sample();
    assert_true(nf_plan_enter(p));
    pthread_t t;
    void *seen = (void *)1;
    assert_int_equal(pthread_create(&t, NULL, other_thread, NULL), 0);
    assert_int_equal(pthread_join(t, &seen), 0);
    assert_null(seen);
    assert_true(nf_plan_recomputed("aten::mm")); /* this thread's first mm is still here */
    nf_plan_leave();
    nf_plan_free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_outside_any_plan),
        cmocka_unit_test(test_per_name_in_order),
        cmocka_unit_test(test_nested_runs),
        cmocka_unit_test(test_misuse),
        cmocka_unit_test(test_per_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
