/* nf_gpu: kernel attribution, timing and CUDA-graph replay bookkeeping, driven by
 * recorded sequences of the events hooks/cuda/cupti_hooks.c turns CUPTI callbacks and
 * activity records into. Every test starts from an empty nf_gpu and ledger counts of
 * zero, and uses op names of its own. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nf_unit.h"

#include "../../src/nf_gpu.h"
#include "../../src/nf_gpu_peak.h"
#include "../../src/nf_intern.h"
#include "../../src/nf_ledger.h"
#include "../../src/nf_scope.h"

/* ------------------------------------------------------------ helpers */

/* 147456 FLOPs per forward call, backward twice that (nf_unit_key_2d with d = 16);
 * backend NULL gives the key the wrapper has in scope during the call. */
static nf_key key_of(const char *op, const char *backend, nf_pass pass) {
    return nf_unit_key_2d(op, 16, pass, "0.21.7", backend);
}

static nf_entry *entry_of(const char *op, const char *backend, nf_pass pass) {
    nf_key k = key_of(op, backend, pass);
    nf_entry *e = nf_ledger_entry(&k);
    assert_non_null(e);
    return e;
}

static uint64_t calls_of(nf_entry *e) { return atomic_load(&e->calls); }

static nf_gpu_kernel kernel(uint64_t corr, const char *name, uint64_t start, uint64_t ns) {
    nf_gpu_kernel k = {.correlation = corr, .name = name, .start_ns = start, .end_ns = start + ns};
    k.grid[0] = 64, k.grid[1] = k.grid[2] = 1;
    k.block[0] = 128, k.block[1] = k.block[2] = 1;
    return k;
}

static nf_gpu_kernel graph_kernel(uint64_t corr, uint64_t graph, uint64_t node, uint64_t ns) {
    nf_gpu_kernel k = kernel(corr, "graph_kernel", 1000, ns);
    k.graph_id = graph;
    k.graph_node_id = node;
    return k;
}

/* The stat of op, or fails. */
static nf_gpu_op_stat stat_of(nf_entry *op) {
    static nf_gpu_op_stat all[NF_GPU_OPS_MAX];
    int n = nf_gpu_ops(all, NF_GPU_OPS_MAX);
    for (int i = 0; i < n; i++)
        if (all[i].op == op) return all[i];
    fail_msg("no GPU stat for the op");
    return all[0];
}

static char said[8][300];
static int nsaid;
static void collect(const char *line) {
    if (nsaid < 8) snprintf(said[nsaid], sizeof said[0], "%s", line);
    nsaid++;
}

static int setup(void **state) {
    (void)state;
    nf_ledger_reset();
    nf_gpu_reset();
    nf_gpu_set_say(collect);
    nsaid = 0;
    return 0;
}

/* Runs a report writer into a string (freed by the caller). */
static char *report(bool json, nf_entry *const *entries, int n) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    if (json) nf_gpu_report_json(f, entries, n);
    else nf_gpu_report_table(f, entries, n);
    fclose(f);
    return buf;
}

static void assert_contains(const char *text, const char *part) {
    if (strstr(text, part) == NULL) fail_msg("expected \"%s\" in:\n%s", part, text);
}

/* ------------------------------------------------------------ attribution */

/* Launches inside the op's scope belong to it, the one outside is "other"; records
 * arrive later, in another order. The report joins the scope's entry (no backend)
 * to the ledger row with the backend. */
static void test_scope_attribution(void **state) {
    (void)state;
    nf_entry *pending = entry_of("gpu_scope", NULL, NF_PASS_FORWARD);
    nf_entry *counted = entry_of("gpu_scope", "cutlass-fna", NF_PASS_FORWARD);
    nf_gpu_device(0, "GH100", "NVIDIA H200");

    nf_scope outer = nf_scope_enter(&pending->key);
    nf_gpu_launch(nf_scope_entry(), 1);
    nf_gpu_launch(nf_scope_entry(), 2);
    nf_scope_leave(outer);
    nf_gpu_launch(nf_scope_entry(), 3); /* no op: not remembered */
    nf_entry_add(counted, 1);
    assert_int_equal(nf_gpu_pending(), 2);

    nf_gpu_kernel k3 = kernel(3, "elementwise", 5000, 700);
    nf_gpu_kernel k2 = kernel(2, "fna_backward_kernel", 3000, 2000);
    nf_gpu_kernel k1 = kernel(1, "fna_forward_kernel", 1000, 1000);
    k2.grid[0] = 32;
    nf_gpu_kernel_record(&k3);
    nf_gpu_kernel_record(&k2);
    nf_gpu_kernel_record(&k1);
    assert_int_equal(nf_gpu_pending(), 0);

    nf_gpu_op_stat s = stat_of(pending);
    assert_int_equal(s.kernels, 2);
    assert_int_equal(s.ns, 3000);
    assert_int_equal(s.names, 2);
    assert_string_equal(s.name[0].name, "fna_backward_kernel"); /* in record order */
    assert_int_equal(s.name[0].grid[0], 32);
    assert_int_equal(s.name[0].ns, 2000);
    assert_string_equal(s.name[1].name, "fna_forward_kernel");
    assert_int_equal(s.name[1].count, 1);
    nf_gpu_totals t = nf_gpu_totals_now();
    assert_int_equal(t.other_kernels, 1);
    assert_int_equal(t.other_ns, 700);

    /* 147456 FLOPs in 3000 ns: 0.049152 TFLOP/s; GH100 fp16 peak 989.4. */
    nf_entry *rows[] = {counted};
    char *json = report(true, rows, 1);
    assert_contains(json, "\"op\": \"gpu_scope\", \"pass\": \"forward\", \"dtype\": \"float16\"");
    assert_contains(json, "\"calls\": 1, \"kernels\": 2, \"gpu_ns\": 3000, \"flops\": 147456");
    assert_contains(json, "\"tflops\": 0.049152, \"peak_tflops\": 989.4, \"utilization\": 4.96786e-05");
    assert_contains(json, "\"other\": {\"kernels\": 1, \"gpu_ns\": 700, \"measured_flops\": null}");
    assert_contains(json, "{\"name\": \"fna_forward_kernel\", \"count\": 1, \"gpu_ns\": 1000, "
                          "\"grid\": [64, 1, 1], \"block\": [128, 1, 1]}");
    free(json);
    char *table = report(false, rows, 1);
    assert_contains(table, "(NVIDIA H200, GH100;");
    assert_contains(table, "gpu_scope");
    assert_contains(table, "0.003"); /* GPU ms */
    assert_contains(table, "0.05"); /* TFLOP/s */
    assert_contains(table, "0.0%"); /* utilisation */
    assert_contains(table, "naflops: other kernels (not in a NATTEN op): 1, 0.001 GPU ms");
    free(table);
    assert_int_equal(nsaid, 0);
}

/* Two ops interleaved on one thread; records in reverse order. */
static void test_interleaved_ops_reverse_records(void **state) {
    (void)state;
    nf_entry *a = entry_of("gpu_inter_a", NULL, NF_PASS_FORWARD);
    nf_entry *b = entry_of("gpu_inter_b", NULL, NF_PASS_FORWARD);
    for (uint64_t c = 1; c <= 10; c++) nf_gpu_launch(c % 2 ? a : b, c);
    for (uint64_t c = 10; c >= 1; c--) {
        nf_gpu_kernel k = kernel(c, c % 2 ? "ka" : "kb", 100 * c, c);
        nf_gpu_kernel_record(&k);
    }
    assert_int_equal(stat_of(a).kernels, 5);
    assert_int_equal(stat_of(a).ns, 1 + 3 + 5 + 7 + 9);
    assert_int_equal(stat_of(b).kernels, 5);
    assert_int_equal(stat_of(b).ns, 2 + 4 + 6 + 8 + 10);
    assert_int_equal(nf_gpu_totals_now().other_kernels, 0);
}

/* A record whose launch was never seen (CUPTI attached late) is "other". */
static void test_unknown_correlation_is_other(void **state) {
    (void)state;
    nf_gpu_kernel k = kernel(12345, "late", 0, 50);
    nf_gpu_kernel_record(&k);
    assert_int_equal(nf_gpu_ops((nf_gpu_op_stat[1]){0}, 1), 0);
    assert_int_equal(nf_gpu_totals_now().other_kernels, 1);
    assert_int_equal(nf_gpu_totals_now().other_ns, 50);
}

/* More distinct kernel names than kept: the rest go to "...". */
static void test_names_overflow(void **state) {
    (void)state;
    nf_entry *op = entry_of("gpu_names", NULL, NF_PASS_FORWARD);
    char name[32];
    for (uint64_t c = 1; c <= NF_GPU_NAMES_MAX + 3; c++) {
        nf_gpu_launch(op, c);
        snprintf(name, sizeof name, "k%llu", (unsigned long long)c);
        nf_gpu_kernel k = kernel(c, name, 0, 10);
        nf_gpu_kernel_record(&k);
    }
    nf_gpu_op_stat s = stat_of(op);
    assert_int_equal(s.kernels, NF_GPU_NAMES_MAX + 3);
    assert_int_equal(s.names, NF_GPU_NAMES_MAX);
    assert_int_equal(s.more.count, 3);
    assert_int_equal(s.more.ns, 30);
}

/* ------------------------------------------------------------ graphs */

/* A torch.cuda.graph step: one eager warm-up (runs, counts once), a capture of one
 * forward and one backward (does not run: taken back), then N replays: the ledger
 * ends at warm-up + N x per-step, and the replays' kernels belong to the op through
 * the captured node and its instantiated clone. */
static void test_graph_capture_and_replays(void **state) {
    (void)state;
    enum { N = 7 };
    nf_entry *pending = entry_of("gpu_graph", NULL, NF_PASS_FORWARD);
    nf_entry *fwd = entry_of("gpu_graph", "hopper-fna", NF_PASS_FORWARD);
    nf_entry *bwd = entry_of("gpu_graph", "hopper-fna", NF_PASS_BACKWARD);

    /* warm-up, eager */
    nf_gpu_launch(pending, 1);
    nf_entry_add(fwd, 1);
    nf_entry_add(bwd, 1);
    nf_gpu_kernel warm = kernel(1, "fna_forward", 0, 400);
    nf_gpu_kernel_record(&warm);

    /* capture on stream 0x77 into graph 5: the launch becomes node 50 */
    nf_gpu_capture_begin(0x77);
    nf_gpu_launch(pending, 2);
    nf_gpu_launch_captured(2, 5, 50);
    nf_gpu_launch(NULL, 3); /* an "other" kernel captured too */
    nf_entry_add(fwd, 1);
    nf_entry_add(bwd, 1);
    assert_int_equal(calls_of(fwd), 2);
    nf_gpu_capture_end(0x77, 5);
    assert_int_equal(calls_of(fwd), 1); /* the capture ran nothing */
    assert_int_equal(calls_of(bwd), 1);
    assert_int_equal(nf_gpu_pending(), 0);

    nf_gpu_graph_instantiate(5, 500);
    nf_gpu_graph_node_cloned(50, 5050);
    nf_gpu_graph_node_cloned(51, 5051); /* the other kernel: no op */
    for (int r = 0; r < N; r++) nf_gpu_graph_launch(500, 100 + (uint64_t)r);
    assert_int_equal(calls_of(fwd), 1 + N);
    assert_int_equal(calls_of(bwd), 1 + N);

    /* the replays' records: graph 500 (the executable graph), nodes 5050 and 5051 */
    for (int r = 0; r < N; r++) {
        nf_gpu_kernel a = graph_kernel(100 + (uint64_t)r, 500, 5050, 300);
        nf_gpu_kernel b = graph_kernel(100 + (uint64_t)r, 500, 5051, 20);
        nf_gpu_kernel_record(&b);
        nf_gpu_kernel_record(&a);
    }
    nf_gpu_op_stat s = stat_of(pending);
    assert_int_equal(s.kernels, 1 + N);
    assert_int_equal(s.ns, 400 + N * 300);
    assert_int_equal(nf_gpu_totals_now().other_kernels, N);

    nf_gpu_graph_stat g[2];
    assert_int_equal(nf_gpu_graphs(g, 2), 1);
    assert_int_equal(g[0].graph_id, 5);
    assert_int_equal(g[0].replays, N);
    assert_int_equal(g[0].ops, 2);
    assert_int_equal(g[0].calls, 2);
    assert_int_equal(g[0].kernels, 2 * N);
    assert_int_equal(g[0].ns, N * 320);

    nf_entry *rows[] = {fwd, bwd};
    char *json = report(true, rows, 2);
    assert_contains(json, "\"graphs\": [{\"graph_id\": 5, \"replays\": 7, \"ops\": 2, "
                          "\"calls_per_replay\": 2, \"kernels\": 14, \"gpu_ns\": 2240}]");
    assert_contains(json, "\"calls\": 8, \"kernels\": 8"); /* forward row only: 1 + 7 */
    free(json);
    char *table = report(false, rows, 2);
    assert_contains(table, "CUDA graph 5: 7 replays, 2 NATTEN calls per replay (2 ops), 14 kernels");
    free(table);
}

/* Without warm-up: N replays report exactly N x the per-step count. */
static void test_graph_replays_only(void **state) {
    (void)state;
    nf_entry *fwd = entry_of("gpu_graph_only", "flex-fna", NF_PASS_FORWARD);
    nf_gpu_capture_begin(1);
    nf_entry_add(fwd, 3); /* three NATTEN calls per step */
    nf_gpu_capture_end(1, 9);
    assert_int_equal(calls_of(fwd), 0);
    nf_gpu_graph_instantiate(9, 90);
    nf_gpu_graph_instantiate(9, 91); /* a second executable of the same graph */
    for (int r = 0; r < 10; r++) nf_gpu_graph_launch(r % 2 ? 90 : 91, 0);
    assert_int_equal(calls_of(fwd), 30);
    nf_gpu_graph_stat g[1];
    assert_int_equal(nf_gpu_graphs(g, 1), 1);
    assert_int_equal(g[0].replays, 10);
}

/* A capture that fails (no graph) leaves what it counted; a graph launch nobody saw
 * captured adds nothing and is noted. */
static void test_failed_capture_and_unknown_launch(void **state) {
    (void)state;
    nf_entry *fwd = entry_of("gpu_graph_fail", "flex-fna", NF_PASS_FORWARD);
    nf_gpu_capture_begin(3);
    nf_entry_add(fwd, 1);
    nf_gpu_capture_end(3, 0);
    assert_int_equal(calls_of(fwd), 1);
    nf_gpu_graph_launch(4242, 1);
    assert_int_equal(calls_of(fwd), 1);
    assert_int_equal(nf_gpu_graphs((nf_gpu_graph_stat[1]){0}, 1), 0);
    assert_int_equal(nf_gpu_totals_now().unknown_graph_launches, 1);
    /* an end without a begin is ignored */
    nf_gpu_capture_end(99, 7);
    assert_int_equal(nf_gpu_graphs((nf_gpu_graph_stat[1]){0}, 1), 0);
}

/* Two captures open at once on two streams: each gets the counts of its window. */
static void test_nested_captures(void **state) {
    (void)state;
    nf_entry *a = entry_of("gpu_cap_a", "x", NF_PASS_FORWARD);
    nf_entry *b = entry_of("gpu_cap_b", "x", NF_PASS_FORWARD);
    nf_gpu_capture_begin(1);
    nf_entry_add(a, 1);
    nf_gpu_capture_begin(2);
    nf_entry_add(b, 2);
    nf_gpu_capture_end(2, 20); /* b's window: b x2 */
    nf_gpu_capture_end(1, 10); /* a's window: a x1 (b already taken back) */
    nf_gpu_graph_instantiate(10, 100);
    nf_gpu_graph_instantiate(20, 200);
    nf_gpu_graph_launch(100, 0);
    assert_int_equal(calls_of(a), 1);
    assert_int_equal(calls_of(b), 0);
    nf_gpu_graph_launch(200, 0);
    assert_int_equal(calls_of(b), 2);
}

/* ------------------------------------------------------------ threads */

#define THREADS 4
#define PER_THREAD 2000

typedef struct worker {
    nf_entry *op;
    int index;
} worker;

/* Each thread runs its own op and launches inside it, then some kernels outside. */
static void *launcher(void *arg) {
    worker *w = arg;
    nf_scope outer = nf_scope_enter(w->op ? &w->op->key : NULL);
    for (int j = 0; j < PER_THREAD; j++)
        nf_gpu_launch(nf_scope_entry(), (uint64_t)w->index * 100000 + (uint64_t)j + 1);
    nf_scope_leave(outer);
    for (int j = 0; j < 100; j++)
        nf_gpu_launch(nf_scope_entry(), (uint64_t)w->index * 100000 + 50000 + (uint64_t)j);
    return NULL;
}

/* The records of half the threads, in reverse, as CUPTI's buffer thread would. */
static void *recorder(void *arg) {
    int half = *(int *)arg;
    for (int t = half; t < THREADS; t += 2)
        for (int j = PER_THREAD + 99; j >= 0; j--) {
            uint64_t c = (uint64_t)t * 100000 + (j < PER_THREAD ? (uint64_t)j + 1 : 50000 + (uint64_t)(j - PER_THREAD));
            nf_gpu_kernel k = kernel(c, "k", 0, (uint64_t)t + 1);
            nf_gpu_kernel_record(&k);
        }
    return NULL;
}

static void test_threads(void **state) {
    (void)state;
    pthread_t th[THREADS];
    worker w[THREADS];
    const char *names[THREADS] = {"gpu_thr_0", "gpu_thr_1", "gpu_thr_2", "gpu_thr_3"};
    for (int t = 0; t < THREADS; t++) {
        w[t] = (worker){entry_of(names[t], NULL, NF_PASS_FORWARD), t};
        assert_int_equal(pthread_create(&th[t], NULL, launcher, &w[t]), 0);
    }
    for (int t = 0; t < THREADS; t++) pthread_join(th[t], NULL);
    assert_int_equal(nf_gpu_pending(), THREADS * PER_THREAD);
    int halves[2] = {0, 1};
    pthread_t rec[2];
    for (int i = 0; i < 2; i++) assert_int_equal(pthread_create(&rec[i], NULL, recorder, &halves[i]), 0);
    for (int i = 0; i < 2; i++) pthread_join(rec[i], NULL);
    for (int t = 0; t < THREADS; t++) {
        nf_gpu_op_stat s = stat_of(w[t].op);
        assert_int_equal(s.kernels, PER_THREAD);
        assert_int_equal(s.ns, PER_THREAD * (t + 1));
    }
    assert_int_equal(nf_gpu_totals_now().other_kernels, THREADS * 100);
    assert_int_equal(nf_gpu_pending(), 0);
}

/* ------------------------------------------------------------ bounds */

/* Past the cap, launches are not remembered (said once) and their kernels are
 * "other"; the table keeps working after thousands of removals. */
static void test_pending_overflow(void **state) {
    (void)state;
    nf_entry *op = entry_of("gpu_overflow", NULL, NF_PASS_FORWARD);
    const uint64_t extra = 5, total = NF_GPU_PENDING_MAX + extra;
    for (uint64_t c = 1; c <= total; c++) nf_gpu_launch(op, c * 7919); /* spread ids */
    assert_int_equal(nf_gpu_pending(), NF_GPU_PENDING_MAX);
    assert_int_equal(nsaid, 1);
    assert_non_null(strstr(said[0], "more than 16384 kernels of NATTEN ops"));
    assert_int_equal(nf_gpu_totals_now().pending_overflows, extra);
    /* records in an order unrelated to the launches' */
    for (uint64_t i = 0; i < total; i++) {
        uint64_t c = (i * 40009 % total) + 1;
        nf_gpu_kernel k = kernel(c * 7919, "k", 0, 1);
        nf_gpu_kernel_record(&k);
    }
    assert_int_equal(nf_gpu_pending(), 0);
    assert_int_equal(stat_of(op).kernels, NF_GPU_PENDING_MAX);
    assert_int_equal(nf_gpu_totals_now().other_kernels, extra);
    assert_int_equal(nsaid, 1);
}

/* More ops than the cap: the rest is "other", said once. */
static void test_ops_overflow(void **state) {
    (void)state;
    char name[32];
    for (int i = 0; i < NF_GPU_OPS_MAX + 2; i++) {
        snprintf(name, sizeof name, "gpu_many_%d", i);
        nf_gpu_launch(entry_of(name, NULL, NF_PASS_FORWARD), (uint64_t)i + 1);
        nf_gpu_kernel k = kernel((uint64_t)i + 1, "k", 0, 1);
        nf_gpu_kernel_record(&k);
    }
    assert_int_equal(nf_gpu_totals_now().op_overflows, 2);
    assert_int_equal(nf_gpu_totals_now().other_kernels, 2);
    assert_int_equal(nsaid, 1);
}

/* ------------------------------------------------------------ cross-check, join, peaks */

static void test_crosscheck_report(void **state) {
    (void)state;
    nf_entry *pending = entry_of("gpu_xc", NULL, NF_PASS_FORWARD);
    nf_entry *counted = entry_of("gpu_xc", "cutlass-fna", NF_PASS_FORWARD);
    nf_gpu_launch(pending, 1);
    nf_entry_add(counted, 2); /* 2 x 147456 = 294912 counted */
    nf_gpu_kernel k = kernel(1, "fna", 0, 1000);
    nf_gpu_kernel_record(&k);
    nf_gpu_crosscheck_add(pending, 589824.0); /* measured: twice the count */
    nf_gpu_crosscheck_add(NULL, 1000.0);
    nf_gpu_crosscheck_state(true, "metrics sm__ops_path_tensor_src_fp16.sum, 2 passes");
    nf_entry *rows[] = {counted};
    char *table = report(false, rows, 1);
    assert_contains(table, "cross-check: tensor-core FLOPs counted by the hardware (CUPTI): metrics "
                           "sm__ops_path_tensor_src_fp16.sum, 2 passes");
    assert_contains(table, "2.000");
    assert_contains(table, "NATTEN total");
    assert_contains(table, "a ratio above 1 is real work beyond NATTEN's convention");
    free(table);
    char *json = report(true, rows, 1);
    assert_contains(json, "\"measured_flops\": 589824, \"ratio\": 2,");
    assert_contains(json, "\"other\": {\"kernels\": 0, \"gpu_ns\": 0, \"measured_flops\": 1000}");
    assert_contains(json, "\"crosscheck\": {\"ran\": true, \"note\": \"metrics sm__ops_path_tensor_src_fp16.sum, 2 passes\"");
    free(json);
}

/* Off: the reason is in the dump; nothing else needed to happen. */
static void test_off_reason(void **state) {
    (void)state;
    assert_false(nf_gpu_has_data());
    char *empty = report(false, NULL, 0);
    assert_string_equal(empty, "");
    free(empty);
    nf_gpu_set_off("no CUDA driver (libcuda.so.1 not found)");
    assert_true(nf_gpu_has_data());
    char *json = report(true, NULL, 0);
    assert_contains(json, "{\"off_reason\": \"no CUDA driver (libcuda.so.1 not found)\", \"devices\": [], \"ops\": []");
    free(json);
}

static void test_same_op_ignores_backend(void **state) {
    (void)state;
    nf_key a = key_of("gpu_same", NULL, NF_PASS_FORWARD);
    nf_key b = key_of("gpu_same", "cutlass-fna", NF_PASS_FORWARD);
    nf_key c = key_of("gpu_same", "cutlass-fna", NF_PASS_BACKWARD);
    nf_key d = key_of("gpu_other", NULL, NF_PASS_FORWARD);
    assert_true(nf_gpu_same_op(&a, &b));
    assert_false(nf_gpu_same_op(&a, &c));
    assert_false(nf_gpu_same_op(&a, &d));
}

static void test_peaks(void **state) {
    (void)state;
    assert_true(nf_gpu_peak_tflops("GH100", "bfloat16") == 989.4);
    assert_true(nf_gpu_peak_tflops("GH100", "float16") == 989.4);
    assert_true(nf_gpu_peak_tflops("GH100", "float32") == 494.7);
    assert_true(nf_gpu_peak_tflops("GH100", "float8_e4m3fn") == 1978.9);
    assert_true(nf_gpu_peak_tflops("GA100", "float16") == 312.0);
    assert_true(nf_gpu_peak_tflops("GA100", "float32") == 156.0);
    assert_true(nf_gpu_peak_tflops("GA100", "float8_e5m2") == 0.0);
    assert_true(nf_gpu_peak_tflops("GB100", "bfloat16") == 2250.0);
    assert_true(nf_gpu_peak_tflops("GB100", "float8_e4m3fn") == 4500.0);
    assert_true(nf_gpu_peak_tflops("AD102", "float16") == 0.0);
    assert_true(nf_gpu_peak_tflops("GH100", "int8") == 0.0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_scope_attribution, setup),
        cmocka_unit_test_setup(test_interleaved_ops_reverse_records, setup),
        cmocka_unit_test_setup(test_unknown_correlation_is_other, setup),
        cmocka_unit_test_setup(test_names_overflow, setup),
        cmocka_unit_test_setup(test_graph_capture_and_replays, setup),
        cmocka_unit_test_setup(test_graph_replays_only, setup),
        cmocka_unit_test_setup(test_failed_capture_and_unknown_launch, setup),
        cmocka_unit_test_setup(test_nested_captures, setup),
        cmocka_unit_test_setup(test_threads, setup),
        cmocka_unit_test_setup(test_pending_overflow, setup),
        cmocka_unit_test_setup(test_ops_overflow, setup),
        cmocka_unit_test_setup(test_crosscheck_report, setup),
        cmocka_unit_test_setup(test_off_reason, setup),
        cmocka_unit_test_setup(test_same_op_ignores_backend, setup),
        cmocka_unit_test_setup(test_peaks, setup),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    nf_gpu_reset(); /* frees the graphs' rows for valgrind */
    return failed;
}
