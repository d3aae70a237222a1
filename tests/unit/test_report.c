/* nf_report: the JSON and CSV dumps and the summary table, captured in memory.
 *
 * Two entries, built through the ledger so that their FLOPs come from the rules:
 *   A: na2d forward, fused, q = k = v [2, 8, 8, 2, 16], kernel 3x3, dilation (2, 1),
 *      causal (F, T), 3 calls: 4*2*2*64*9*16 = 147456 per call,
 *      3 * 147456 = 442368 FLOPs, 221184 MACs.
 *   B: na1d backward, fused, q = k = v [2^20, 2^14, 2^10, 128], kernel 512, 6 calls:
 *      forward 4 * 2^20 * 2^14 * 2^10 * 2^9 * 2^7 = 2^62, backward 2^63 =
 *      9223372036854775808 per call, 6 * 2^63 = 3 * 2^64 = 55340232221128654848 FLOPs,
 *      27670116110564327424 MACs.
 * Totals: FLOPs 442368 + 55340232221128654848 = 55340232221129097216,
 *         MACs 221184 + 27670116110564327424 = 27670116110564548608, calls 3 + 6 = 9. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nf_unit.h"

#include "../../src/nf_intern.h"
#include "../../src/nf_module_report.h"
#include "../../src/nf_report.h"

static void set_shape(int64_t *dst, uint8_t *rank, const int64_t *src, int n) {
    memcpy(dst, src, sizeof *src * (size_t)n);
    *rank = (uint8_t)n;
}

static nf_entry *entry_a(void) {
    nf_key k;
    nf_key_init(&k);
    nf_problem *p = &k.problem;
    const int64_t s[] = {2, 8, 8, 2, 16};
    p->kind = NF_KIND_FUSED;
    p->na_dim = 2;
    set_shape(p->q_shape, &p->q_rank, s, 5);
    set_shape(p->k_shape, &p->k_rank, s, 5);
    set_shape(p->v_shape, &p->v_rank, s, 5);
    p->kernel[0] = p->kernel[1] = 3;
    p->dilation[0] = 2, p->dilation[1] = 1;
    p->stride[0] = p->stride[1] = 1;
    p->causal_mask = 2; /* bit 1: causal along the second dim only */
    k.op = nf_intern("na2d");
    k.dtype = nf_intern("float16");
    k.device = nf_intern("cuda:0");
    k.backend = nf_intern("cutlass-fna");
    k.version = nf_intern("0.17.5");
    k.pass = NF_PASS_FORWARD;
    nf_entry *e = nf_ledger_entry(&k);
    assert_non_null(e);
    atomic_store(&e->calls, 3);
    return e;
}

static nf_entry *entry_b(void) {
    nf_key k;
    nf_key_init(&k);
    nf_problem *p = &k.problem;
    const int64_t s[] = {(int64_t)1 << 20, (int64_t)1 << 14, (int64_t)1 << 10, 128};
    p->kind = NF_KIND_FUSED;
    p->na_dim = 1;
    set_shape(p->q_shape, &p->q_rank, s, 4);
    set_shape(p->k_shape, &p->k_rank, s, 4);
    set_shape(p->v_shape, &p->v_rank, s, 4);
    p->kernel[0] = 512;
    p->dilation[0] = p->stride[0] = 1;
    k.op = nf_intern("na1d");
    k.dtype = nf_intern("bfloat16");
    k.device = nf_intern("cuda:1");
    k.version = nf_intern("0.17.5"); /* backend left unknown */
    k.pass = NF_PASS_BACKWARD;
    nf_entry *e = nf_ledger_entry(&k);
    assert_non_null(e);
    atomic_store(&e->calls, 6);
    return e;
}

static const nf_run_info run = {
    .pid = 4242, .host = "node7", .rank = "0", .local_rank = NULL, .world_size = "2"};

/* ------------------------------------------------------------- capturing */

typedef struct capture {
    FILE *f;
    char *text;
    size_t len;
} capture;

static void capture_open(capture *c) {
    c->text = NULL;
    c->len = 0;
    c->f = open_memstream(&c->text, &c->len);
    assert_non_null(c->f);
}

static const char *capture_close(capture *c) {
    assert_int_equal(fclose(c->f), 0);
    return c->text;
}

static void assert_contains(const char *text, const char *part) {
    if (strstr(text, part) == NULL) {
        print_error("missing: %s\nin:\n%s\n", part, text);
        fail();
    }
}

/* ------------------------------------------------- a small JSON syntax check */

static const char *json_value(const char *s);

static const char *json_ws(const char *s) {
    while (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r') s++;
    return s;
}

static const char *json_string(const char *s) {
    if (*s++ != '"') return NULL;
    for (; *s != '"'; s++) {
        if ((unsigned char)*s < 0x20) return NULL; /* includes the end of the text */
        if (*s == '\\' && *++s == '\0') return NULL;
    }
    return s + 1;
}

static const char *json_list(const char *s, char close, int object) {
    s = json_ws(s + 1);
    if (*s == close) return s + 1;
    for (;;) {
        if (object) {
            if ((s = json_string(json_ws(s))) == NULL) return NULL;
            s = json_ws(s);
            if (*s++ != ':') return NULL;
        }
        if ((s = json_value(s)) == NULL) return NULL;
        s = json_ws(s);
        if (*s == close) return s + 1;
        if (*s++ != ',') return NULL;
    }
}

static const char *json_value(const char *s) {
    s = json_ws(s);
    if (*s == '{') return json_list(s, '}', 1);
    if (*s == '[') return json_list(s, ']', 0);
    if (*s == '"') return json_string(s);
    if (strncmp(s, "true", 4) == 0) return s + 4;
    if (strncmp(s, "false", 5) == 0) return s + 5;
    if (strncmp(s, "null", 4) == 0) return s + 4;
    const char *start = s;
    if (*s == '-') s++;
    while (isdigit((unsigned char)*s)) s++;
    return s > start ? s : NULL;
}

static void assert_json(const char *text) {
    const char *end = json_value(text);
    if (end == NULL || *json_ws(end) != '\0') {
        print_error("not one JSON value:\n%s\n", text);
        fail();
    }
}

/* -------------------------------------------------------------------- JSON */

static void test_json_header_and_ops(void **state) {
    (void)state;
    nf_entry *e[2] = {entry_a(), entry_b()};
    capture c;
    capture_open(&c);
    nf_report_json(c.f, &run, e, 2);
    const char *t = capture_close(&c);
    assert_json(t);
    assert_contains(t, "\"schema\": \"naflops/4\"");
    assert_contains(t, "\"pid\": 4242");
    assert_contains(t, "\"host\": \"node7\"");
    assert_contains(t, "\"rank\": \"0\", \"local_rank\": null, \"world_size\": \"2\"");
    assert_contains(t, "\"natten_version\": \"0.17.5\",\n  \"ops\": [");
    /* A: every field */
    assert_contains(t, "{\"op\": \"na2d\", \"pass\": \"forward\", \"module\": null, \"kind\": \"fused\", "
                       "\"natten_version\": \"0.17.5\", \"backend\": \"cutlass-fna\"");
    assert_contains(t, "\"shape\": [2, 8, 8, 2, 16], \"key_shape\": [2, 8, 8, 2, 16], "
                       "\"value_shape\": [2, 8, 8, 2, 16]");
    assert_contains(t, "\"kernel_size\": [3, 3], \"stride\": [1, 1], \"dilation\": [2, 1], "
                       "\"is_causal\": [false, true], \"additional_kv\": 0, \"varlen_pairs\": null");
    assert_contains(t, "\"dtype\": \"float16\", \"device\": \"cuda:0\", \"calls\": 3, "
                       "\"flops_per_call\": 147456, \"flops\": 442368, \"macs\": 221184}");
    /* B: unknown backend is null; counts past 2^64 are bare integers */
    assert_contains(t, "{\"op\": \"na1d\", \"pass\": \"backward\", \"module\": null, \"kind\": \"fused\", "
                       "\"natten_version\": \"0.17.5\", \"backend\": null");
    assert_contains(t, "\"kernel_size\": [512], \"stride\": [1], \"dilation\": [1], "
                       "\"is_causal\": [false]");
    assert_contains(t, "\"dtype\": \"bfloat16\", \"device\": \"cuda:1\", \"calls\": 6, "
                       "\"flops_per_call\": 9223372036854775808, "
                       "\"flops\": 55340232221128654848, \"macs\": 27670116110564327424}");
    assert_null(strstr(t, "\"55340232221128654848\""));
    free(c.text);
}

static void test_json_totals(void **state) {
    (void)state;
    nf_entry *e[2] = {entry_a(), entry_b()};
    capture c;
    capture_open(&c);
    nf_report_json(c.f, &run, e, 2);
    const char *t = capture_close(&c);
    assert_contains(t, "\"totals\": {\"flops\": 55340232221129097216, "
                       "\"macs\": 27670116110564548608, "
                       "\"forward_flops\": 442368, \"backward_flops\": 55340232221128654848, "
                       "\"forward_macs\": 221184, \"backward_macs\": 27670116110564327424, "
                       "\"jvp_flops\": 0, \"jvp_macs\": 0, "
                       "\"recompute_flops\": 0, \"recompute_macs\": 0, "
                       "\"model_flops\": 55340232221129097216, \"model_macs\": 27670116110564548608, "
                       "\"natten_flops\": 55340232221129097216, \"other_flops\": 0, "
                       "\"calls\": 9, \"uncounted_calls\": 0}");
    free(c.text);
}

/* Checkpointing's recompute and forward-mode AD: their own passes; model FLOPs are
 * forward + backward, the hardware total has every pass. NATTEN's jvp and backward
 * are 2 x forward; a recomputed forward is 1 x. */
static void test_recompute_and_jvp_totals(void **state) {
    (void)state;
    nf_entry *a = entry_a(); /* 3 forward calls of 147456 FLOPs */
    nf_key k = a->key;
    k.pass = NF_PASS_RECOMPUTE;
    nf_entry *r = nf_ledger_entry(&k);
    k.pass = NF_PASS_JVP;
    nf_entry *j = nf_ledger_entry(&k);
    assert_non_null(r);
    assert_non_null(j);
    assert_true(r->flops_per_call == a->flops_per_call);
    assert_true(j->flops_per_call == 2 * a->flops_per_call);
    nf_entry_add(r, 1);
    nf_entry_add(j, 2);
    nf_entry *e[3] = {a, r, j};
    nf_totals t = nf_totals_of(e, 3);
    assert_true(t.flops[NF_PASS_RECOMPUTE] == 147456);
    assert_true(t.flops[NF_PASS_JVP] == 4 * 147456);
    assert_true(t.all == (3 + 1 + 4) * (nf_u128)147456);
    capture c;
    capture_open(&c);
    nf_report_json(c.f, &run, e, 3);
    const char *text = capture_close(&c);
    assert_json(text);
    assert_contains(text, "\"pass\": \"recompute\"");
    assert_contains(text, "\"pass\": \"jvp\"");
    assert_contains(text, "\"recompute_flops\": 147456, \"recompute_macs\": 73728, "
                          "\"model_flops\": 442368, \"model_macs\": 221184");
    assert_contains(text, "\"jvp_flops\": 589824, \"jvp_macs\": 294912");
    free(c.text);
    capture_open(&c);
    nf_report_table(c.f, &run, e, 3, NF_UNITS_EXACT);
    text = capture_close(&c);
    assert_contains(text, "naflops: recompute 147456 FLOP  73728 MAC\n");
    assert_contains(text, "naflops: model     442368 FLOP  221184 MAC  forward + backward\n");
    assert_contains(text, "naflops: hardware  1179648 FLOP  589824 MAC  model + recompute\n");
    assert_contains(text, "naflops: jvp       589824 FLOP  294912 MAC  forward-mode AD\n");
    free(c.text);
    nf_entry_add(r, -1ull);  /* back to zero: other tests share entry_a's ledger */
    nf_entry_add(j, -2ull);
}

static void test_json_empty_and_escaping(void **state) {
    (void)state;
    /* No entries: an empty ops list, zero totals, no version. A host with a quote, a
     * backslash and a newline is escaped. */
    nf_run_info odd = {.pid = 7, .host = "a\"b\\c\nd", .rank = NULL};
    capture c;
    capture_open(&c);
    nf_report_json(c.f, &odd, NULL, 0);
    const char *t = capture_close(&c);
    assert_json(t);
    assert_contains(t, "\"host\": \"a\\\"b\\\\c\\u000ad\"");
    assert_contains(t, "\"rank\": null");
    assert_contains(t, "\"natten_version\": null");
    assert_contains(t, "\"ops\": [\n  ]");
    assert_contains(t, "\"totals\": {\"flops\": 0, \"macs\": 0, \"forward_flops\": 0, "
                       "\"backward_flops\": 0, \"forward_macs\": 0, \"backward_macs\": 0, "
                       "\"jvp_flops\": 0, \"jvp_macs\": 0, \"recompute_flops\": 0, "
                       "\"recompute_macs\": 0, \"model_flops\": 0, \"model_macs\": 0, "
                       "\"natten_flops\": 0, \"other_flops\": 0, \"calls\": 0, \"uncounted_calls\": 0}");
    free(c.text);
}

static void test_json_attention(void **state) {
    (void)state;
    /* Variable-length attention: q = k = v [1, 30, 4, 16], pairs 100 + 400 = 500:
     * 2*4*500*(16 + 16) = 128000 per call, 2 calls: 256000 FLOPs, 128000 MACs. */
    nf_key k;
    nf_key_init(&k);
    nf_problem *p = &k.problem;
    const int64_t s[] = {1, 30, 4, 16};
    p->kind = NF_KIND_ATTENTION;
    p->na_dim = 1;
    set_shape(p->q_shape, &p->q_rank, s, 4);
    set_shape(p->k_shape, &p->k_rank, s, 4);
    set_shape(p->v_shape, &p->v_rank, s, 4);
    p->varlen_pairs = 500;
    k.op = nf_intern("attention");
    nf_entry *e = nf_ledger_entry(&k);
    assert_non_null(e);
    atomic_store(&e->calls, 2);
    capture c;
    capture_open(&c);
    nf_report_json(c.f, &run, &e, 1);
    const char *t = capture_close(&c);
    assert_json(t);
    assert_contains(t, "\"kind\": \"attention\"");
    assert_contains(t, "\"key_shape\": [1, 30, 4, 16]");
    assert_contains(t, "\"kernel_size\": null, \"stride\": null, \"dilation\": null");
    assert_contains(t, "\"varlen_pairs\": 500");
    assert_contains(t, "\"flops_per_call\": 128000, \"flops\": 256000, \"macs\": 128000}");
    free(c.text);
}

/* --------------------------------------------------------------------- CSV */

static void test_csv(void **state) {
    (void)state;
    nf_entry *e[2] = {entry_a(), entry_b()};
    capture c;
    capture_open(&c);
    nf_report_csv(c.f, e, 2);
    const char *t = capture_close(&c);
    const char *want =
        "op,pass,kind,natten_version,backend,shape,key_shape,value_shape,kernel_size,stride,"
        "dilation,is_causal,additional_kv,dtype,device,calls,flops_per_call,flops,macs,module\n"
        "na2d,forward,fused,0.17.5,cutlass-fna,2x8x8x2x16,2x8x8x2x16,2x8x8x2x16,3x3,1x1,2x1,FT,"
        "0,float16,cuda:0,3,147456,442368,221184,\n"
        "na1d,backward,fused,0.17.5,,1048576x16384x1024x128,1048576x16384x1024x128,"
        "1048576x16384x1024x128,512,1,1,F,0,bfloat16,cuda:1,6,9223372036854775808,"
        "55340232221128654848,27670116110564327424,\n";
    assert_string_equal(t, want);
    free(c.text);
}

/* ------------------------------------------------------------------- table */

/* Line i (0-based) of text, without its newline, into buf. */
static const char *line_of(const char *text, int i, char *buf, size_t len) {
    for (; i > 0 && text; i--) {
        text = strchr(text, '\n');
        if (text) text++;
    }
    assert_non_null(text);
    size_t n = strcspn(text, "\n");
    assert_true(n < len);
    memcpy(buf, text, n);
    buf[n] = '\0';
    return buf;
}

/* The whitespace-separated words of a line, joined by single spaces. */
static const char *words(const char *line, char *buf, size_t len) {
    size_t n = 0;
    for (const char *s = line; *s;) {
        while (*s == ' ') s++;
        if (!*s) break;
        if (n) buf[n++] = ' ';
        while (*s && *s != ' ' && n + 1 < len) buf[n++] = *s++;
    }
    buf[n] = '\0';
    return buf;
}

static void test_table_exact(void **state) {
    (void)state;
    nf_entry *e[2] = {entry_a(), entry_b()};
    capture c;
    capture_open(&c);
    nf_report_table(c.f, &run, e, 2, NF_UNITS_EXACT);
    const char *t = capture_close(&c);
    char l[512], w[512];
    assert_string_equal(line_of(t, 0, l, sizeof l),
                        "naflops: NATTEN FLOPs of pid 4242, rank 0 (NATTEN 0.17.5)");
    assert_string_equal(words(line_of(t, 1, l, sizeof l), w, sizeof w),
                        "naflops: op pass kind backend shape kernel dilation causal dtype device "
                        "calls FLOPs");
    size_t width = strlen(l);
    assert_string_equal(words(line_of(t, 2, l, sizeof l), w, sizeof w),
                        "naflops: na2d forward fused cutlass-fna 2x8x8x2x16 3x3 2x1 FT float16 "
                        "cuda:0 3 442368");
    assert_int_equal(strlen(l), width); /* columns line up */
    assert_string_equal(words(line_of(t, 3, l, sizeof l), w, sizeof w),
                        "naflops: na1d backward fused - 1048576x16384x1024x128 512 1 F bfloat16 "
                        "cuda:1 6 55340232221128654848");
    assert_int_equal(strlen(l), width);
    assert_string_equal(line_of(t, 4, l, sizeof l), "naflops: forward   442368 FLOP  221184 MAC");
    assert_string_equal(line_of(t, 5, l, sizeof l),
                        "naflops: backward  55340232221128654848 FLOP  27670116110564327424 MAC");
    assert_string_equal(line_of(t, 6, l, sizeof l),
                        "naflops: total     55340232221129097216 FLOP  27670116110564548608 MAC");
    /* the total line is the last one */
    const char *last = strstr(t, "naflops: total");
    assert_string_equal(last + strcspn(last, "\n"), "\n");
    free(c.text);
}

static void test_table_si(void **state) {
    (void)state;
    nf_entry *e[2] = {entry_a(), entry_b()};
    capture c;
    capture_open(&c);
    nf_report_table(c.f, &run, e, 2, NF_UNITS_SI);
    const char *t = capture_close(&c);
    char l[512], w[512];
    /* 442368 -> 442.4 K; 55340232221128654848 / 10^18 = 55.34 -> 55.3 E */
    assert_string_equal(words(line_of(t, 2, l, sizeof l), w, sizeof w),
                        "naflops: na2d forward fused cutlass-fna 2x8x8x2x16 3x3 2x1 FT float16 "
                        "cuda:0 3 442.4 KFLOP");
    assert_string_equal(words(line_of(t, 3, l, sizeof l), w, sizeof w),
                        "naflops: na1d backward fused - 1048576x16384x1024x128 512 1 F bfloat16 "
                        "cuda:1 6 55.3 EFLOP");
    /* MACs: 221184 -> 221.2 K; 27670116110564327424 / 10^18 = 27.67 -> 27.7 E */
    assert_string_equal(line_of(t, 4, l, sizeof l), "naflops: forward   442.4 KFLOP  (221.2 KMAC)");
    assert_string_equal(line_of(t, 5, l, sizeof l), "naflops: backward  55.3 EFLOP  (27.7 EMAC)");
    assert_string_equal(line_of(t, 6, l, sizeof l), "naflops: total     55.3 EFLOP  (27.7 EMAC)");
    free(c.text);
}

static void test_table_kv_shapes_and_extra_kv(void **state) {
    (void)state;
    /* G: q [1, 16, 8, 64], k = v [1, 16, 2, 64] (grouped heads), kernel 5 plus 3 extra
     *    tokens: W = 8, per query head 4*1*8*16*8*64 = 262144 FLOPs, 1 call.
     * V: q = k [2, 10, 4, 32], v [2, 10, 4, 48], kernel 3: 2*2*4*10*3*(32 + 48) = 38400,
     *    2 calls: 76800. */
    nf_key g, v;
    nf_key_init(&g);
    nf_key_init(&v);
    const int64_t gq[] = {1, 16, 8, 64}, gkv[] = {1, 16, 2, 64};
    const int64_t vq[] = {2, 10, 4, 32}, vv[] = {2, 10, 4, 48};
    g.problem.kind = v.problem.kind = NF_KIND_FUSED;
    g.problem.na_dim = v.problem.na_dim = 1;
    set_shape(g.problem.q_shape, &g.problem.q_rank, gq, 4);
    set_shape(g.problem.k_shape, &g.problem.k_rank, gkv, 4);
    set_shape(g.problem.v_shape, &g.problem.v_rank, gkv, 4);
    g.problem.kernel[0] = 5;
    g.problem.extra_kv = 3;
    set_shape(v.problem.q_shape, &v.problem.q_rank, vq, 4);
    set_shape(v.problem.k_shape, &v.problem.k_rank, vq, 4);
    set_shape(v.problem.v_shape, &v.problem.v_rank, vv, 4);
    v.problem.kernel[0] = 3;
    g.op = nf_intern("gqa_extra");
    v.op = nf_intern("value_dim");
    g.problem.dilation[0] = v.problem.dilation[0] = 1;
    nf_entry *e[2] = {nf_ledger_entry(&g), nf_ledger_entry(&v)};
    assert_non_null(e[0]);
    assert_non_null(e[1]);
    atomic_store(&e[0]->calls, 1);
    atomic_store(&e[1]->calls, 2);
    capture c;
    capture_open(&c);
    nf_report_table(c.f, &run, e, 2, NF_UNITS_EXACT);
    const char *t = capture_close(&c);
    char l[512], w[512];
    assert_string_equal(words(line_of(t, 2, l, sizeof l), w, sizeof w),
                        "naflops: gqa_extra forward fused - 1x16x8x64 k:1x16x2x64 5+3 1 F - - 1 "
                        "262144");
    assert_string_equal(words(line_of(t, 3, l, sizeof l), w, sizeof w),
                        "naflops: value_dim forward fused - 2x10x4x32 v:2x10x4x48 3 1 F - - 2 "
                        "76800");
    /* 262144 + 76800 = 338944 FLOPs, 169472 MACs */
    assert_string_equal(line_of(t, 6, l, sizeof l), "naflops: total     338944 FLOP  169472 MAC");
    free(c.text);
}

static void test_table_empty(void **state) {
    (void)state;
    nf_run_info norank = {.pid = 99, .host = "h"};
    capture c;
    capture_open(&c);
    nf_report_table(c.f, &norank, NULL, 0, NF_UNITS_SI);
    const char *t = capture_close(&c);
    char l[512], w[512];
    assert_string_equal(line_of(t, 0, l, sizeof l), "naflops: NATTEN FLOPs of pid 99 (NATTEN unknown)");
    assert_string_equal(words(line_of(t, 1, l, sizeof l), w, sizeof w),
                        "naflops: op pass kind backend shape kernel dilation causal dtype device "
                        "calls FLOPs");
    assert_string_equal(line_of(t, 2, l, sizeof l), "naflops: forward   0 FLOP  (0 MAC)");
    assert_string_equal(line_of(t, 3, l, sizeof l), "naflops: backward  0 FLOP  (0 MAC)");
    assert_string_equal(line_of(t, 4, l, sizeof l), "naflops: total     0 FLOP  (0 MAC)");
    free(c.text);
}

static void test_natten_version(void **state) {
    (void)state;
    nf_entry *a = entry_a();
    nf_entry unknown;
    memset(&unknown, 0, sizeof unknown); /* version NF_INTERN_NONE */
    nf_entry *e[2] = {&unknown, a};
    assert_string_equal(nf_report_natten_version(NULL, e, 2), "0.17.5"); /* first one known */
    assert_string_equal(nf_report_natten_version(NULL, e, 1), "");
    assert_string_equal(nf_report_natten_version(NULL, NULL, 0), "");
    /* The version natten reported at import wins, counted or not. */
    nf_run_info imported = {.pid = 1, .host = "h", .natten_version = "0.21.7"};
    assert_string_equal(nf_report_natten_version(&imported, NULL, 0), "0.21.7");
    nf_run_info none = {.pid = 1, .host = "h", .natten_version = ""};
    assert_string_equal(nf_report_natten_version(&none, e, 2), "0.17.5");
}

/* ------------------------------------------------------- whole-model rows */

/* An aten row as the observer hands it over: operands and FLOPs per call given. */
static nf_entry *entry_aten(const char *op, nf_pass pass, uint64_t flops, uint64_t calls,
                            int64_t m, int64_t k, int64_t n) {
    nf_key key;
    nf_key_init(&key);
    nf_problem *p = &key.problem;
    p->kind = NF_KIND_ATEN;
    p->q_rank = p->k_rank = 2;
    p->q_shape[0] = m, p->q_shape[1] = k;
    p->k_shape[0] = k, p->k_shape[1] = n;
    p->aten_flops = flops;
    key.op = nf_intern(op);
    key.dtype = nf_intern("float32");
    key.device = nf_intern("cpu");
    key.pass = (uint8_t)pass;
    nf_entry *e = nf_ledger_entry(&key);
    assert_non_null(e);
    atomic_store(&e->calls, calls);
    return e;
}

/* A (na2d, 442368 FLOPs) with two aten rows given smallest first:
 *   mm backward 128x96 @ 96x32: 2*128*32*96 = 786432, 1 call
 *   addmm forward 128x32 @ 32x96: 786432 per call, 2 calls = 1572864
 * total 442368 + 786432 + 1572864 = 2801664; NATTEN 442368 = 15.79% -> "15.8%",
 * other 2359296 = 84.21% -> "84.2%". */
static void test_table_whole_model(void **state) {
    (void)state;
    nf_entry *e[3] = {entry_aten("aten::mm", NF_PASS_BACKWARD, 786432, 1, 128, 96, 32), entry_a(),
                      entry_aten("aten::addmm", NF_PASS_FORWARD, 786432, 2, 128, 32, 96)};
    capture c;
    capture_open(&c);
    nf_report_table(c.f, &run, e, 3, NF_UNITS_EXACT);
    const char *t = capture_close(&c);
    char l[512], w[512];
    assert_string_equal(line_of(t, 0, l, sizeof l),
                        "naflops: FLOPs (NATTEN and the whole model) of pid 4242, rank 0 (NATTEN 0.17.5)");
    /* NATTEN first, then the aten rows, largest first */
    assert_string_equal(words(line_of(t, 2, l, sizeof l), w, sizeof w),
                        "naflops: na2d forward fused cutlass-fna 2x8x8x2x16 3x3 2x1 FT float16 "
                        "cuda:0 3 442368");
    assert_string_equal(words(line_of(t, 3, l, sizeof l), w, sizeof w),
                        "naflops: aten::addmm forward aten - 128x32, 32x96 - - - float32 cpu 2 1572864");
    assert_string_equal(words(line_of(t, 4, l, sizeof l), w, sizeof w),
                        "naflops: aten::mm backward aten - 128x96, 96x32 - - - float32 cpu 1 786432");
    assert_string_equal(line_of(t, 7, l, sizeof l), "naflops: total     2801664 FLOP  1400832 MAC");
    assert_string_equal(line_of(t, 8, l, sizeof l),
                        "naflops: NATTEN    442368 FLOP  221184 MAC  15.8%");
    assert_string_equal(line_of(t, 9, l, sizeof l),
                        "naflops: other     2359296 FLOP  1179648 MAC  84.2%");
    free(c.text);

    capture_open(&c);
    nf_report_json(c.f, &run, e, 3);
    t = capture_close(&c);
    assert_json(t);
    assert_contains(t, "\"natten_flops\": 442368, \"other_flops\": 2359296, \"calls\": 6, \"uncounted_calls\": 0}");
    assert_contains(t, "{\"op\": \"aten::mm\", \"pass\": \"backward\", \"module\": null, \"kind\": \"aten\", "
                       "\"natten_version\": null, \"backend\": null,\n     \"shape\": [128, 96], "
                       "\"key_shape\": [96, 32], \"value_shape\": null,\n     \"kernel_size\": null, "
                       "\"stride\": null, \"dilation\": null, \"is_causal\": [],");
    free(c.text);

    capture_open(&c);
    nf_report_csv(c.f, e, 3);
    t = capture_close(&c);
    assert_contains(t, "\naten::mm,backward,aten,,,128x96,96x32,-,-,-,-,,0,float32,cpu,1,786432,786432,393216,\n");
    free(c.text);
}

/* 25 aten rows of 1..25 FLOPs: the table shows the 20 largest (25 down to 6) and says
 * how many more there are and what they add up to (1+2+3+4+5 = 15). */
static void test_table_caps_aten_rows(void **state) {
    (void)state;
    nf_entry *e[25];
    for (int i = 0; i < 25; i++) e[i] = entry_aten("aten::bmm", NF_PASS_FORWARD, (uint64_t)i + 1, 1, 3, 4, 1000 + i);
    capture c;
    capture_open(&c);
    nf_report_table(c.f, &run, e, 25, NF_UNITS_EXACT);
    const char *t = capture_close(&c);
    char l[512], w[512];
    assert_string_equal(words(line_of(t, 2, l, sizeof l), w, sizeof w),
                        "naflops: aten::bmm forward aten - 3x4, 4x1024 - - - float32 cpu 1 25");
    assert_string_equal(words(line_of(t, 21, l, sizeof l), w, sizeof w),
                        "naflops: aten::bmm forward aten - 3x4, 4x1005 - - - float32 cpu 1 6");
    assert_string_equal(line_of(t, 22, l, sizeof l),
                        "naflops: ... 5 more aten rows (15 FLOP); the dump has every row");
    assert_string_equal(line_of(t, 25, l, sizeof l), "naflops: total     325 FLOP  162 MAC");
    assert_string_equal(line_of(t, 26, l, sizeof l), "naflops: NATTEN    0 FLOP  0 MAC  0.0%");
    free(c.text);
}

/* ------------------------------------------------------------ modules */

static nf_entry *in_module(nf_entry *e, const char *module) {
    nf_key key = e->key;
    uint64_t calls = atomic_load(&e->calls);
    key.module = nf_intern(module);
    nf_entry *m = nf_ledger_entry(&key);
    assert_non_null(m);
    atomic_store(&m->calls, calls);
    return m;
}

/* Rows in modules: mm 1000 in Net.enc.attn.qkv (three below the root: summed into
 * Net.enc.attn in the block), addmm 2 x 500 in Net.enc, A (na2d, 442368) in
 * Net.enc.attn, mm 200 in Net.head, mm 100 outside. Total 444668; Net 444568,
 * Net.enc 444368, Net.enc.attn 443368 (NATTEN 442368), Net.head 200. Shares per
 * mille, rounded half up: Net 444568 / 444668 = 99.98% -> 100.0%, NATTEN's of Net
 * 442368 / 444568 = 99.51% -> 99.5%, Net.enc 99.93% -> 99.9% (NATTEN 99.55% -> 99.5%),
 * Net.enc.attn 99.71% -> 99.7% (NATTEN 99.77% -> 99.8%). The per-op table sums A's rows across modules; the
 * JSON row names its module, the CSV's last column too (quoted when it must be). */
static void test_module_block(void **state) {
    (void)state;
    nf_entry *e[6] = {in_module(entry_aten("aten::mm", NF_PASS_FORWARD, 1000, 1, 7, 8, 9), "Net.enc.attn.qkv"),
                      in_module(entry_aten("aten::addmm", NF_PASS_FORWARD, 500, 2, 7, 8, 10), "Net.enc"),
                      in_module(entry_a(), "Net.enc.attn"),
                      in_module(entry_aten("aten::mm", NF_PASS_FORWARD, 200, 1, 7, 8, 11), "Net.head"),
                      entry_aten("aten::mm", NF_PASS_FORWARD, 100, 1, 7, 8, 12),
                      in_module(entry_aten("aten::mm", NF_PASS_FORWARD, 0, 0, 7, 8, 13), "a,\"b")};
    capture c;
    capture_open(&c);
    nf_module_report_table(c.f, e, 5, NF_UNITS_EXACT);
    const char *t = capture_close(&c);
    char l[512], w[512];
    assert_string_equal(words(line_of(t, 0, l, sizeof l), w, sizeof w),
                        "naflops: module (submodules included) FLOPs share NATTEN");
    assert_string_equal(words(line_of(t, 1, l, sizeof l), w, sizeof w), "naflops: Net 444568 100.0% 99.5%");
    assert_string_equal(words(line_of(t, 2, l, sizeof l), w, sizeof w), "naflops: Net.enc 444368 99.9% 99.5%");
    assert_string_equal(words(line_of(t, 3, l, sizeof l), w, sizeof w),
                        "naflops: Net.enc.attn 443368 99.7% 99.8%");
    assert_string_equal(words(line_of(t, 4, l, sizeof l), w, sizeof w), "naflops: Net.head 200 0.0% 0.0%");
    assert_string_equal(words(line_of(t, 5, l, sizeof l), w, sizeof w),
                        "naflops: (outside modules) 100 0.0% 0.0%");
    assert_null(strstr(t, "qkv"));
    free(c.text);

    /* the per-op table: A's module rows summed (A itself and A in Net.enc.attn) */
    nf_entry *both[2] = {entry_a(), e[2]};
    capture_open(&c);
    nf_report_table(c.f, &run, both, 2, NF_UNITS_EXACT);
    t = capture_close(&c);
    assert_string_equal(words(line_of(t, 2, l, sizeof l), w, sizeof w),
                        "naflops: na2d forward fused cutlass-fna 2x8x8x2x16 3x3 2x1 FT float16 "
                        "cuda:0 6 884736");
    assert_null(strstr(line_of(t, 3, l, sizeof l), "na2d"));
    free(c.text);

    capture_open(&c);
    nf_report_json(c.f, &run, e, 6);
    t = capture_close(&c);
    assert_json(t);
    assert_contains(t, "\"schema\": \"naflops/4\"");
    assert_contains(t, "\"pass\": \"forward\", \"module\": \"Net.enc.attn.qkv\", \"kind\"");
    assert_contains(t, "\"module\": \"a,\\\"b\"");
    free(c.text);

    capture_open(&c);
    nf_report_csv(c.f, e, 6);
    t = capture_close(&c);
    assert_contains(t, ",macs,module\n");
    assert_contains(t, ",1000,500,Net.enc.attn.qkv\n");
    assert_contains(t, ",0,0,\"a,\"\"b\"\n");
    free(c.text);

    /* no row in a module: no block */
    nf_entry *none[1] = {e[4]};
    capture_open(&c);
    nf_module_report_table(c.f, none, 1, NF_UNITS_EXACT);
    t = capture_close(&c);
    assert_string_equal(t, "");
    free(c.text);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_whole_model),
        cmocka_unit_test(test_table_caps_aten_rows),
        cmocka_unit_test(test_json_header_and_ops),
        cmocka_unit_test(test_json_totals),
        cmocka_unit_test(test_recompute_and_jvp_totals),
        cmocka_unit_test(test_json_empty_and_escaping),
        cmocka_unit_test(test_json_attention),
        cmocka_unit_test(test_csv),
        cmocka_unit_test(test_table_exact),
        cmocka_unit_test(test_table_si),
        cmocka_unit_test(test_table_kv_shapes_and_extra_kv),
        cmocka_unit_test(test_table_empty),
        cmocka_unit_test(test_natten_version),
        cmocka_unit_test(test_module_block),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
