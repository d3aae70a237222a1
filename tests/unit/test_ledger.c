/* nf_ledger: one entry per signature, lock-free call counting, totals.
 *
 * The ledger is one table for the whole process, so every test uses keys of its own
 * (an op name nobody else uses); the tests that look at the whole table (snapshot,
 * reset) call nf_ledger_reset first. No test depends on another having run. */
#include <pthread.h>
#include <string.h>

#include "nf_unit.h"

#include "../../src/nf_intern.h"
#include "../../src/nf_ledger.h"

/* forward = 9216*d FLOPs per call (147456 for d = 16): see nf_unit_key_2d. */
static nf_key key_2d(const char *op, int64_t d, nf_pass pass) {
    return nf_unit_key_2d(op, d, pass, "0.17.5", NULL);
}

/* A fused 1D signature whose count passes 2^64 over a few calls:
 * q = k = v [B=2^20, N=2^14, H=2^10, D=2^7], kernel 2^9:
 * forward = 4 * 2^20 * 2^10 * 2^14 * 2^9 * 2^7 = 2^62 FLOPs per call. */
static nf_key key_big(const char *op, nf_pass pass) {
    nf_key k;
    nf_key_init(&k);
    nf_problem *p = &k.problem;
    p->kind = NF_KIND_FUSED;
    p->layout = NF_HEADS_LAST;
    p->na_dim = 1;
    const int64_t shape[] = {(int64_t)1 << 20, (int64_t)1 << 14, (int64_t)1 << 10, 128};
    memcpy(p->q_shape, shape, sizeof shape);
    memcpy(p->k_shape, shape, sizeof shape);
    memcpy(p->v_shape, shape, sizeof shape);
    p->q_rank = p->k_rank = p->v_rank = 4;
    p->kernel[0] = 512;
    p->dilation[0] = p->stride[0] = 1;
    k.op = nf_intern(op);
    k.pass = (uint8_t)pass;
    return k;
}

static uint64_t calls_of(nf_entry *e) { return atomic_load(&e->calls); }

static void test_same_key_same_entry(void **state) {
    (void)state;
    nf_key a = key_2d("same_key", 16, NF_PASS_FORWARD);
    nf_key b = key_2d("same_key", 16, NF_PASS_FORWARD); /* built separately, equal bytes */
    nf_entry *ea = nf_ledger_entry(&a);
    assert_non_null(ea);
    assert_ptr_equal(nf_ledger_entry(&b), ea);
    assert_ptr_equal(nf_ledger_entry(&a), ea);
    assert_memory_equal(&ea->key, &a, sizeof a);
    assert_u128_equal(ea->flops_per_call, 147456); /* 4*2*2*64*9*16 */
    assert_int_equal(calls_of(ea), 0);             /* looking up is not a call */
}

static void test_different_keys_different_entries(void **state) {
    (void)state;
    nf_key base = key_2d("diff_key", 16, NF_PASS_FORWARD);
    nf_key other_d = key_2d("diff_key", 32, NF_PASS_FORWARD);
    nf_key other_op = key_2d("diff_key_2", 16, NF_PASS_FORWARD);
    nf_key other_pass = key_2d("diff_key", 16, NF_PASS_BACKWARD);
    nf_key other_dtype = base;
    other_dtype.dtype = nf_intern("bfloat16");
    nf_key other_causal = base;
    other_causal.problem.causal_mask = 1;

    nf_entry *e[6] = {nf_ledger_entry(&base),     nf_ledger_entry(&other_d),
                      nf_ledger_entry(&other_op), nf_ledger_entry(&other_pass),
                      nf_ledger_entry(&other_dtype), nf_ledger_entry(&other_causal)};
    for (int i = 0; i < 6; i++) {
        assert_non_null(e[i]);
        for (int j = 0; j < i; j++) assert_ptr_not_equal(e[i], e[j]);
    }
    /* D = 32: 9216*32 = 294912; backward: 2 * 147456 = 294912; causal changes nothing. */
    assert_u128_equal(e[0]->flops_per_call, 147456);
    assert_u128_equal(e[1]->flops_per_call, 294912);
    assert_u128_equal(e[3]->flops_per_call, 294912);
    assert_u128_equal(e[5]->flops_per_call, 147456);
}

static void test_calls_accumulate(void **state) {
    (void)state;
    nf_key k = key_2d("accumulate", 16, NF_PASS_FORWARD);
    assert_true(nf_ledger_add(&k, 1));
    assert_true(nf_ledger_add(&k, 1));
    assert_true(nf_ledger_add(&k, 5));
    nf_entry *e = nf_ledger_entry(&k);
    assert_non_null(e);
    nf_entry_add(e, 3);
    assert_int_equal(calls_of(e), 10); /* 1 + 1 + 5 + 3 */
    nf_totals t = nf_totals_of(&e, 1);
    assert_int_equal(t.calls, 10);
    assert_u128_equal(t.all, 1474560); /* 10 * 147456 */
}

static void test_totals_by_pass(void **state) {
    (void)state;
    nf_key f16 = key_2d("by_pass", 16, NF_PASS_FORWARD);  /* 147456 per call */
    nf_key f32 = key_2d("by_pass", 32, NF_PASS_FORWARD);  /* 294912 per call */
    nf_key b16 = key_2d("by_pass", 16, NF_PASS_BACKWARD); /* 2*147456 = 294912 per call */
    nf_ledger_add(&f16, 3);
    nf_ledger_add(&f32, 2);
    nf_ledger_add(&b16, 4);
    nf_entry *e[3] = {nf_ledger_entry(&f16), nf_ledger_entry(&f32), nf_ledger_entry(&b16)};
    nf_totals t = nf_totals_of(e, 3);
    /* forward:  3*147456 + 2*294912 = 442368 + 589824 = 1032192
     * backward: 4*294912 = 1179648
     * all:      1032192 + 1179648 = 2211840; calls 3 + 2 + 4 = 9 */
    assert_u128_equal(t.flops[NF_PASS_FORWARD], 1032192);
    assert_u128_equal(t.flops[NF_PASS_BACKWARD], 1179648);
    assert_u128_equal(t.all, 2211840);
    assert_int_equal(t.calls, 9);

    nf_totals none = nf_totals_of(e, 0);
    assert_u128_equal(none.all, 0);
    assert_int_equal(none.calls, 0);
}

/* Whole-model rows: FLOPs per call come with the key (the observer's formula), a
 * backward aten op is counted as it ran (not twice a forward), and the totals split
 * NATTEN from the rest. */
static void test_aten_rows(void **state) {
    (void)state;
    nf_key a, b;
    nf_key_init(&a);
    a.problem.kind = NF_KIND_ATEN;
    a.problem.q_rank = a.problem.k_rank = 2;
    a.problem.q_shape[0] = 7, a.problem.q_shape[1] = 5;
    a.problem.k_shape[0] = 5, a.problem.k_shape[1] = 3;
    a.problem.aten_flops = 210; /* 2*7*3*5 */
    a.op = nf_intern("aten::mm");
    a.pass = NF_PASS_BACKWARD;
    b = a;
    b.problem.aten_flops = 420; /* same operands, other FLOPs: its own row */
    assert_true(nf_ledger_add(&a, 2));
    assert_true(nf_ledger_add(&b, 1));
    nf_entry *ea = nf_ledger_entry(&a), *eb = nf_ledger_entry(&b);
    assert_ptr_not_equal(ea, eb);
    assert_u128_equal(ea->flops_per_call, 210);
    assert_u128_equal(eb->flops_per_call, 420);
    nf_key n = key_2d("aten_rows", 16, NF_PASS_BACKWARD); /* NATTEN: 2 * 147456 */
    assert_true(nf_ledger_add(&n, 1));
    nf_entry *e[3] = {ea, eb, nf_ledger_entry(&n)};
    nf_totals t = nf_totals_of(e, 3);
    assert_u128_equal(t.other, 840);      /* 2*210 + 420 */
    assert_u128_equal(t.natten, 294912);
    assert_u128_equal(t.all, 295752);
    assert_u128_equal(t.flops[NF_PASS_BACKWARD], 295752);
}

static void test_totals_past_2_64(void **state) {
    (void)state;
    nf_key fwd = key_big("big_totals", NF_PASS_FORWARD);  /* 2^62 per call */
    nf_key bwd = key_big("big_totals", NF_PASS_BACKWARD); /* 2^63 per call */
    nf_entry *e[2] = {nf_ledger_entry(&fwd), nf_ledger_entry(&bwd)};
    assert_non_null(e[0]);
    assert_non_null(e[1]);
    assert_u128_equal(e[0]->flops_per_call, NF_POW2(62));
    assert_u128_equal(e[1]->flops_per_call, NF_POW2(63));
    for (int i = 0; i < 12; i++) nf_ledger_add(&fwd, 1);
    nf_ledger_add(&bwd, 5);
    nf_totals t = nf_totals_of(e, 2);
    /* forward:  12 * 2^62 = 3 * 2^64 = 55340232221128654848
     * backward:  5 * 2^63 = 46116860184273879040
     * all:       55340232221128654848 + 46116860184273879040 = 101457092405402533888 */
    assert_u128_equal(t.flops[NF_PASS_FORWARD], 3 * NF_POW2(64));
    assert_u128_equal(t.flops[NF_PASS_BACKWARD], 5 * NF_POW2(63));
    assert_u128_equal(t.all, 3 * NF_POW2(64) + 5 * NF_POW2(63));
    char buf[NF_U128_DEC_LEN];
    assert_string_equal(nf_u128_to_dec(t.all, buf), "101457092405402533888");
    assert_int_equal(t.calls, 17);
}

/* ------------------------------------------------------------------ threads */

#define THREADS 8
#define ITERATIONS 10000
#define SHARED_KEYS 4

static nf_key shared[SHARED_KEYS];
static nf_entry *seen[THREADS][SHARED_KEYS];
static pthread_barrier_t start_line;

static void *adder(void *arg) {
    int id = (int)(intptr_t)arg;
    pthread_barrier_wait(&start_line); /* all threads race to create the entries */
    for (int j = 0; j < ITERATIONS; j++) {
        int k = j % SHARED_KEYS;
        if (!nf_ledger_add(&shared[k], (uint64_t)k + 1)) return (void *)1;
    }
    for (int k = 0; k < SHARED_KEYS; k++) seen[id][k] = nf_ledger_entry(&shared[k]);
    return NULL;
}

static void test_threads_exact_totals(void **state) {
    (void)state;
    nf_ledger_reset();
    for (int k = 0; k < SHARED_KEYS; k++)
        shared[k] = key_2d("threads", 8 * (k + 1), NF_PASS_FORWARD); /* d = 8, 16, 24, 32 */
    assert_int_equal(pthread_barrier_init(&start_line, NULL, THREADS), 0);
    pthread_t tid[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&tid[i], NULL, adder, (void *)(intptr_t)i), 0);
    for (int i = 0; i < THREADS; i++) {
        void *r;
        assert_int_equal(pthread_join(tid[i], &r), 0);
        assert_null(r);
    }
    pthread_barrier_destroy(&start_line);

    /* Each thread adds key k on 10000/4 = 2500 iterations, k+1 calls each time:
     * key k has 8 * 2500 * (k+1) = 20000 * (k+1) calls. */
    nf_entry *e[SHARED_KEYS];
    for (int k = 0; k < SHARED_KEYS; k++) {
        e[k] = nf_ledger_entry(&shared[k]);
        assert_non_null(e[k]);
        for (int i = 0; i < THREADS; i++) assert_ptr_equal(seen[i][k], e[k]);
        assert_int_equal(calls_of(e[k]), 20000 * (uint64_t)(k + 1));
    }
    /* The race made exactly one entry per key: nothing else has calls after the reset. */
    nf_entry *snap[16];
    assert_int_equal(nf_ledger_snapshot(snap, 16), SHARED_KEYS);
    /* calls: 20000 * (1+2+3+4) = 200000.
     * FLOPs: per call 9216*d with d = 8(k+1): 73728 (k+1);
     *        sum_k 20000 (k+1) * 73728 (k+1) = 20000 * 73728 * (1+4+9+16)
     *        = 1474560000 * 30 = 44236800000 */
    nf_totals t = nf_totals_of(e, SHARED_KEYS);
    assert_int_equal(t.calls, 200000);
    assert_u128_equal(t.all, (nf_u128)44236800000ULL);
    assert_false(nf_ledger_overflowed());
}

/* Every thread looks up the same brand-new key at the same moment, round after
 * round: each round must end with one entry that every thread got. */
#define ROUNDS 200

static nf_entry *created_by[ROUNDS][THREADS];

static void *creator(void *arg) {
    int id = (int)(intptr_t)arg;
    for (int r = 0; r < ROUNDS; r++) {
        nf_key k = key_2d("create_race", r + 1, NF_PASS_FORWARD);
        pthread_barrier_wait(&start_line);
        created_by[r][id] = nf_ledger_entry(&k);
        nf_entry_add(created_by[r][id], 1);
    }
    return NULL;
}

static void test_threads_create_one_entry(void **state) {
    (void)state;
    assert_int_equal(pthread_barrier_init(&start_line, NULL, THREADS), 0);
    pthread_t tid[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&tid[i], NULL, creator, (void *)(intptr_t)i), 0);
    for (int i = 0; i < THREADS; i++) assert_int_equal(pthread_join(tid[i], NULL), 0);
    pthread_barrier_destroy(&start_line);
    for (int r = 0; r < ROUNDS; r++) {
        nf_entry *e = created_by[r][0];
        assert_non_null(e);
        for (int i = 1; i < THREADS; i++) assert_ptr_equal(created_by[r][i], e);
        assert_int_equal(atomic_load(&e->calls), THREADS); /* one call per thread */
        /* d = r + 1: 9216 * (r + 1) FLOPs per call */
        assert_u128_equal(e->flops_per_call, (nf_u128)9216 * (nf_u128)(r + 1));
    }
}

/* The hot path alone: 8 threads x 100000 increments of one entry, 800000 in all. */
static void *hammer(void *arg) {
    nf_entry *e = arg;
    pthread_barrier_wait(&start_line);
    for (int j = 0; j < 100000; j++) nf_entry_add(e, 1);
    return NULL;
}

static void test_threads_hot_entry(void **state) {
    (void)state;
    nf_key k = key_2d("hot_entry", 16, NF_PASS_FORWARD);
    nf_entry *e = nf_ledger_entry(&k);
    assert_non_null(e);
    assert_int_equal(pthread_barrier_init(&start_line, NULL, THREADS), 0);
    pthread_t tid[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&tid[i], NULL, hammer, e), 0);
    for (int i = 0; i < THREADS; i++) assert_int_equal(pthread_join(tid[i], NULL), 0);
    pthread_barrier_destroy(&start_line);
    assert_int_equal(atomic_load(&e->calls), 800000);
    /* 800000 * 147456 = 117964800000 */
    nf_totals t = nf_totals_of(&e, 1);
    assert_u128_equal(t.all, (nf_u128)117964800000ULL);
}

/* ------------------------------------------------------- reset and snapshot */

static void test_reset_zeroes_counts(void **state) {
    (void)state;
    nf_key k = key_2d("reset", 16, NF_PASS_FORWARD);
    nf_ledger_add(&k, 7);
    nf_entry *e = nf_ledger_entry(&k);
    assert_int_equal(calls_of(e), 7);
    nf_ledger_reset();
    assert_int_equal(calls_of(e), 0);
    nf_entry *snap[16];
    assert_int_equal(nf_ledger_snapshot(snap, 16), 0);
    /* the entry stays and counts again from zero */
    nf_ledger_add(&k, 2);
    assert_ptr_equal(nf_ledger_entry(&k), e);
    assert_int_equal(calls_of(e), 2);
    assert_u128_equal(e->flops_per_call, 147456);
}

/* A frozen snapshot keeps the calls it read: counting after it changes the ledger,
 * not the copy a report is being written from. */
static void test_freeze_keeps_calls(void **state) {
    (void)state;
    nf_ledger_reset();
    nf_key k = key_2d("freeze", 16, NF_PASS_FORWARD);
    nf_ledger_add(&k, 3);
    static nf_entry copies[4];
    nf_entry *out[4];
    assert_int_equal(nf_ledger_freeze(copies, out, 4), 1);
    assert_ptr_equal(out[0], &copies[0]);
    nf_ledger_add(&k, 5);
    assert_int_equal(calls_of(out[0]), 3);
    assert_int_equal(calls_of(nf_ledger_entry(&k)), 8);
    /* 3 calls x 147456 FLOPs (4*2*2*64*9*16) */
    assert_u128_equal(nf_totals_of(out, 1).all, 3 * (nf_u128)147456);
    assert_memory_equal(&out[0]->key, &k, sizeof k);
}

static void test_snapshot_creation_order_skips_unused(void **state) {
    (void)state;
    nf_ledger_reset();
    /* Created in the order a, b, c, d; only a, c and d get calls, added in reverse. */
    nf_key a = key_2d("order_a", 16, NF_PASS_FORWARD);
    nf_key b = key_2d("order_b", 16, NF_PASS_FORWARD);
    nf_key c = key_2d("order_c", 16, NF_PASS_FORWARD);
    nf_key d = key_2d("order_d", 16, NF_PASS_BACKWARD);
    nf_entry *ea = nf_ledger_entry(&a), *eb = nf_ledger_entry(&b);
    nf_entry *ec = nf_ledger_entry(&c), *ed = nf_ledger_entry(&d);
    assert_true(ea->order < eb->order && eb->order < ec->order && ec->order < ed->order);
    nf_ledger_add(&d, 1);
    nf_ledger_add(&c, 2);
    nf_ledger_add(&a, 3);

    nf_entry *snap[16];
    int n = nf_ledger_snapshot(snap, 16);
    assert_int_equal(n, 3);
    assert_ptr_equal(snap[0], ea);
    assert_ptr_equal(snap[1], ec);
    assert_ptr_equal(snap[2], ed);

    /* max bounds what is stored */
    nf_entry *two[2] = {NULL, NULL};
    assert_int_equal(nf_ledger_snapshot(two, 2), 2);
    assert_int_equal(nf_ledger_snapshot(two, 0), 0);
}

static void test_rejected_key_is_not_counted(void **state) {
    (void)state;
    nf_key bad = key_2d("rejected", 16, NF_PASS_FORWARD);
    bad.problem.q_rank = 3; /* no spatial dim: the rules cannot read it */
    assert_null(nf_ledger_entry(&bad));
    assert_false(nf_ledger_add(&bad, 1));

    nf_key neg = key_2d("rejected", -16, NF_PASS_FORWARD);
    assert_null(nf_ledger_entry(&neg));
    assert_false(nf_ledger_add(&neg, 1));

    nf_key kind = key_2d("rejected", 16, NF_PASS_FORWARD);
    kind.problem.kind = NF_KIND_COUNT;
    assert_false(nf_ledger_add(&kind, 1));

    /* rejection is not the ledger being full */
    assert_false(nf_ledger_overflowed());
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_key_same_entry),
        cmocka_unit_test(test_different_keys_different_entries),
        cmocka_unit_test(test_calls_accumulate),
        cmocka_unit_test(test_totals_by_pass),
        cmocka_unit_test(test_aten_rows),
        cmocka_unit_test(test_totals_past_2_64),
        cmocka_unit_test(test_threads_exact_totals),
        cmocka_unit_test(test_threads_create_one_entry),
        cmocka_unit_test(test_threads_hot_entry),
        cmocka_unit_test(test_reset_zeroes_counts),
        cmocka_unit_test(test_snapshot_creation_order_skips_unused),
        cmocka_unit_test(test_freeze_keeps_calls),
        cmocka_unit_test(test_rejected_key_is_not_counted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
