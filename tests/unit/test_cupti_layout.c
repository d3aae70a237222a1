/* hooks/cuda/cupti_layout.c against the CUPTI header set this file is compiled with, and
 * against real libcupti builds, no GPU needed.
 *
 * Built by `make unit` with the CUDA toolkit's headers (13.0) and by `make
 * cupti-versions` once per header set scripts/fetch-cupti-headers fetches (CUPTI 12.4,
 * 12.8 and 13.2 from PyPI wheels), each with -DNF_CUPTI_LIBS listing every libcupti
 * of the cache ("12.4=path:12.8=path:..."). Per header set:
 *  - the table has a row for this CUPTI_API_VERSION, and it agrees with these headers
 *    on every offset, record size, callback-id count and profiler structSize;
 *  - every callback id the adapter enables has the header's value here, or (ids newer
 *    than this CUPTI) is past this CUPTI's count, so it is never enabled;
 *  - built with these headers, the adapter's plan for each libcupti: attribution on
 *    (the fields read are where these headers put them), cross-check on where both
 *    the library and the headers have the range profiler, and one line naming the
 *    missing entry point (CUPTI 12.4) or the headers (built with 12.4's) otherwise.
 * cuptiGetVersion is asked of every library except 13.2's: without a CUDA driver it
 * recurses until the stack overflows (seen with 13.2.86; the adapter asks it only
 * once libcuda.so.1 is loaded); 13.2's version is its headers'. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nf_unit.h"

#ifndef NF_HAVE_CUPTI
/* Built without CUPTI's headers (no CUDA toolkit): nothing to compare. */
int main(void) {
    printf("test_cupti_layout: skipped, built without CUPTI's headers\n");
    return 0;
}
#else

#include "../../hooks/cuda/cupti_layout_headers.h"
#include "../../hooks/cuda/cupti_metrics.h"

#ifndef NF_CUDA_HOME
#define NF_CUDA_HOME "/usr/local/cuda"
#endif
/* The libraries: "release=path" separated by ':'. By default the toolkit's. */
#ifndef NF_CUPTI_LIBS
#define NF_CUPTI_LIBS "13.0=" NF_CUDA_HOME "/lib64/libcupti.so"
#endif

static const nf_cupti_layout *row_of_headers(void) {
    for (size_t i = 0; i < nf_cupti_layout_count; i++)
        if (nf_cupti_layouts[i].api_version == CUPTI_API_VERSION) return &nf_cupti_layouts[i];
    return NULL;
}

static void test_row_matches_headers(void **state) {
    (void)state;
    const nf_cupti_layout *row = row_of_headers();
    if (row == NULL) fail_msg("no row for CUPTI_API_VERSION %d in hooks/cuda/cupti_layout.c", CUPTI_API_VERSION);
    nf_cupti_layout h;
    nf_cupti_layout_from_headers(&h);
    print_message("CUPTI %s (API %u): %s, %u bytes\n", row->release, row->api_version, h.kernel_record,
                  h.kernel_size);
    assert_string_equal(row->kernel_record, h.kernel_record);
    assert_int_equal(row->kernel_size, h.kernel_size);
#define EQ(part, f)                                                                                \
    if (row->part.f != h.part.f)                                                                  \
        fail_msg("CUPTI %s: %s.%s is at %u in the table, %u in the headers", row->release, #part, #f, \
                 row->part.f, h.part.f);
#define K(f) EQ(kernel, f)
#define C(f) EQ(callback, f)
#define R(f) EQ(resource, f)
#define G(f) EQ(graph, f)
    NF_CUPTI_KERNEL_FIELDS(K)
    NF_CUPTI_CALLBACK_FIELDS(C)
    NF_CUPTI_RESOURCE_FIELDS(R)
    NF_CUPTI_GRAPH_FIELDS(G)
#undef K
#undef C
#undef R
#undef G
#undef EQ
    assert_int_equal(row->runtime_cbids, h.runtime_cbids);
    assert_int_equal(row->driver_cbids, h.driver_cbids);
    for (int i = 0; i < NF_PS_COUNT; i++)
        if (row->profiler_size[i] != h.profiler_size[i])
            fail_msg("CUPTI %s: profiler struct %d is %u bytes in the table, %u in the headers",
                     row->release, i, row->profiler_size[i], h.profiler_size[i]);
    /* What the table says of the range profiler is what these headers have. */
    assert_int_equal(row->profiler_size[NF_PS_RP_ENABLE] != 0, NF_CUPTI_HEADERS_RANGE_PROFILER);
}

typedef struct {
    const char *name;
    uint32_t id;
} header_cbid;

#define CB(name) {#name, (uint32_t)name},
static const header_cbid header_cbids[] = {
    CB(CUPTI_RUNTIME_TRACE_CBID_cudaLaunchKernel_v7000)
    CB(CUPTI_RUNTIME_TRACE_CBID_cudaLaunchKernel_ptsz_v7000)
    CB(CUPTI_RUNTIME_TRACE_CBID_cudaLaunchKernelExC_v11060)
    CB(CUPTI_RUNTIME_TRACE_CBID_cudaLaunchKernelExC_ptsz_v11060)
    CB(CUPTI_RUNTIME_TRACE_CBID_cudaLaunchCooperativeKernel_v9000)
    CB(CUPTI_RUNTIME_TRACE_CBID_cudaLaunchCooperativeKernel_ptsz_v9000)
#if CUPTI_API_VERSION >= 130000
    CB(CUPTI_RUNTIME_TRACE_CBID___cudaLaunchKernel_v13000)
    CB(CUPTI_RUNTIME_TRACE_CBID___cudaLaunchKernel_ptsz_v13000)
#endif
    CB(CUPTI_DRIVER_TRACE_CBID_cuLaunchKernel)
    CB(CUPTI_DRIVER_TRACE_CBID_cuLaunchKernel_ptsz)
    CB(CUPTI_DRIVER_TRACE_CBID_cuLaunchKernelEx)
    CB(CUPTI_DRIVER_TRACE_CBID_cuLaunchKernelEx_ptsz)
    CB(CUPTI_DRIVER_TRACE_CBID_cuLaunchCooperativeKernel)
    CB(CUPTI_DRIVER_TRACE_CBID_cuLaunchGrid)
    CB(CUPTI_DRIVER_TRACE_CBID_cuLaunchGridAsync)
    CB(CUPTI_DRIVER_TRACE_CBID_cuStreamBeginCapture)
    CB(CUPTI_DRIVER_TRACE_CBID_cuStreamBeginCapture_ptsz)
    CB(CUPTI_DRIVER_TRACE_CBID_cuStreamBeginCapture_v2)
    CB(CUPTI_DRIVER_TRACE_CBID_cuStreamBeginCapture_v2_ptsz)
    CB(CUPTI_DRIVER_TRACE_CBID_cuStreamBeginCaptureToGraph)
    CB(CUPTI_DRIVER_TRACE_CBID_cuStreamBeginCaptureToGraph_ptsz)
    CB(CUPTI_DRIVER_TRACE_CBID_cuStreamEndCapture)
    CB(CUPTI_DRIVER_TRACE_CBID_cuStreamEndCapture_ptsz)
    CB(CUPTI_DRIVER_TRACE_CBID_cuGraphLaunch)
    CB(CUPTI_DRIVER_TRACE_CBID_cuGraphLaunch_ptsz)
    CB(CUPTI_CBID_RESOURCE_CONTEXT_CREATED)
    CB(CUPTI_CBID_RESOURCE_GRAPHNODE_CREATED)
    CB(CUPTI_CBID_RESOURCE_GRAPHEXEC_CREATED)
    CB(CUPTI_CBID_RESOURCE_GRAPHNODE_CLONED)
};
#undef CB

static void test_cbids_match_headers(void **state) {
    (void)state;
    const nf_cupti_layout *row = row_of_headers();
    assert_non_null(row);
    assert_int_equal(CUPTI_CB_DOMAIN_DRIVER_API, NF_CUPTI_DOMAIN_DRIVER);
    assert_int_equal(CUPTI_CB_DOMAIN_RUNTIME_API, NF_CUPTI_DOMAIN_RUNTIME);
    assert_int_equal(CUPTI_CB_DOMAIN_RESOURCE, NF_CUPTI_DOMAIN_RESOURCE);
    size_t here = 0, newer = 0;
    for (size_t i = 0; i < nf_cupti_cbid_count; i++) {
        const nf_cupti_cbid *cb = &nf_cupti_cbids[i];
        const header_cbid *h = NULL;
        for (size_t j = 0; j < sizeof header_cbids / sizeof *header_cbids; j++)
            if (strcmp(header_cbids[j].name, cb->name) == 0) h = &header_cbids[j];
        if (cb->since <= CUPTI_API_VERSION) {
            if (h == NULL) fail_msg("%s: not in this test's list", cb->name);
            if (h->id != cb->id) fail_msg("%s is %u in the table, %u in the headers", cb->name, cb->id, h->id);
            assert_true(nf_cupti_has_cbid(row, cb));
            assert_int_equal(nf_cupti_role_of(cb->domain, cb->id), cb->role);
            here++;
        } else {
            /* Not in these headers, and never enabled on this CUPTI. */
            assert_null(h);
            assert_false(nf_cupti_has_cbid(row, cb));
            newer++;
        }
    }
    assert_int_equal(here + newer, nf_cupti_cbid_count);
    assert_int_equal(newer, CUPTI_API_VERSION >= 130000 ? 0 : 2);
    assert_int_equal(nf_cupti_role_of(NF_CUPTI_DOMAIN_RUNTIME, 1), 0); /* cudaDriverGetVersion */
}

/* The row chosen for a running CUPTI's version. */
static void test_version_picks_row(void **state) {
    (void)state;
    char why[256] = "";
    const struct {
        uint32_t version;
        const char *release; /* NULL: refused */
    } cases[] = {
        {22, "12.4"},     {23, "12.4"},     {25, "12.4"},     {26, "12.8"},   {27, "12.8"},
        {130001, "13.0"}, {130100, "13.0"}, {130202, "13.2"}, {130500, "13.2"},
        {21, NULL},       {1, NULL},        {0, NULL},        {129999, NULL}, {140000, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        why[0] = '\0';
        const nf_cupti_layout *L = nf_cupti_layout_of(cases[i].version, why, sizeof why);
        if (cases[i].release == NULL) {
            if (L) fail_msg("version %u: row %s, expected none", cases[i].version, L->release);
            assert_true(strlen(why) > 0);
            assert_null(strchr(why, '\n'));
        } else {
            if (L == NULL) fail_msg("version %u: no row (%s)", cases[i].version, why);
            assert_string_equal(L->release, cases[i].release);
        }
    }
    nf_cupti_layout_of(21, why, sizeof why);
    assert_string_equal(why, "CUPTI API version 21 is older than CUPTI 12.4 (API 22), the oldest "
                             "whose record layouts naflops knows");
    nf_cupti_layout_of(140000, why, sizeof why);
    assert_string_equal(why, "CUPTI API version 140000 is of a major release naflops does not know "
                             "(it knows CUPTI 12.4 to 13.x)");
}

/* Built with these headers, every known CUPTI's records read alike; a moved field is
 * refused, naming it. */
static void test_compare(void **state) {
    (void)state;
    nf_cupti_layout h;
    nf_cupti_layout_from_headers(&h);
    char why[320] = "";
    for (size_t i = 0; i < nf_cupti_layout_count; i++)
        if (nf_cupti_layout_compare(&h, &nf_cupti_layouts[i], why, sizeof why) != 0)
            fail_msg("%s", why);
    nf_cupti_layout moved = nf_cupti_layouts[0];
    moved.kernel.graphId = 160;
    assert_int_equal(nf_cupti_layout_compare(&h, &moved, why, sizeof why), -1);
    char expect[320];
    snprintf(expect, sizeof expect, "CUPTI 12.4 (API 22) has CUpti_ActivityKernel9.graphId at byte 160; "
             "naflops was built with headers (API %d) that have it at byte 156", CUPTI_API_VERSION);
    assert_string_equal(why, expect);
    nf_cupti_layout shorter = nf_cupti_layouts[0];
    shorter.kernel_size = 150;
    assert_int_equal(nf_cupti_layout_compare(&h, &shorter, why, sizeof why), -1);
    assert_string_equal(why, "CUPTI 12.4's CUpti_ActivityKernel9 (150 bytes) is too short for the "
                             "fields naflops reads");
    nf_cupti_layout cb = nf_cupti_layouts[1];
    cb.callback.correlationId = 60;
    assert_int_equal(nf_cupti_layout_compare(&h, &cb, why, sizeof why), -1);
    assert_non_null(strstr(why, "CUpti_CallbackData.correlationId at byte 60"));
}

/* The running CUPTI's structSize never exceeds what it knows. */
static void test_struct_sizes(void **state) {
    (void)state;
    const nf_cupti_layout *r130 = &nf_cupti_layouts[2], *r132 = &nf_cupti_layouts[3];
    assert_string_equal(r132->release, "13.2");
    assert_int_equal(nf_cupti_struct_size(r130, NF_PS_HOST_INIT, 56), 48);
    assert_int_equal(nf_cupti_struct_size(r132, NF_PS_HOST_INIT, 56), 56);
    assert_int_equal(nf_cupti_struct_size(r132, NF_PS_HOST_INIT, 48), 48);
    assert_int_equal(nf_cupti_struct_size(NULL, NF_PS_HOST_INIT, 56), 56);
    assert_int_equal(nf_cupti_struct_size(&nf_cupti_layouts[0], NF_PS_RP_ENABLE, 32), 32);
}

/* ------------------------------------------------------------ real libraries */

typedef struct {
    char release[16];
    char path[512];
} lib_entry;

static size_t libs_of(lib_entry *out, size_t max) {
    size_t n = 0;
    char list[4096];
    snprintf(list, sizeof list, "%s", NF_CUPTI_LIBS);
    for (char *save = NULL, *tok = strtok_r(list, ":", &save); tok && n < max; tok = strtok_r(NULL, ":", &save)) {
        char *eq = strchr(tok, '=');
        if (eq == NULL) continue;
        *eq = '\0';
        snprintf(out[n].release, sizeof out[n].release, "%s", tok);
        snprintf(out[n].path, sizeof out[n].path, "%s", eq + 1);
        n++;
    }
    return n;
}

static const nf_cupti_layout *row_named(const char *release) {
    for (size_t i = 0; i < nf_cupti_layout_count; i++)
        if (strcmp(nf_cupti_layouts[i].release, release) == 0) return &nf_cupti_layouts[i];
    return NULL;
}

static void test_libraries(void **state) {
    (void)state;
    lib_entry libs[8];
    size_t n = libs_of(libs, 8);
    assert_true(n >= 1);
    nf_cupti_layout built;
    nf_cupti_layout_from_headers(&built);
    for (size_t i = 0; i < n; i++) {
        const nf_cupti_layout *row = row_named(libs[i].release);
        if (row == NULL) fail_msg("%s: no row named %s", libs[i].path, libs[i].release);
        void *h = dlopen(libs[i].path, RTLD_NOW | RTLD_LOCAL);
        if (h == NULL) fail_msg("%s: %s", libs[i].path, dlerror());
        uint32_t version = row->api_version;
        if (row->api_version < 130200) {
            CUptiResult (*get)(uint32_t *) = NULL;
            *(void **)(&get) = dlsym(h, "cuptiGetVersion");
            assert_non_null(get);
            version = 0;
            assert_int_equal(get(&version), CUPTI_SUCCESS);
            if (version != row->api_version)
                fail_msg("%s: cuptiGetVersion %u, its row %s says %u", libs[i].path, version,
                         row->release, row->api_version);
        }
        nf_cupti_plan plan;
        nf_cupti_plan_for(h, libs[i].path, version, &built, &plan);
        print_message("headers API %d, CUPTI %s (%u): attribution %s, cross-check %s%s%s\n",
                      CUPTI_API_VERSION, row->release, version, plan.attribution ? "on" : "off",
                      plan.crosscheck ? "on" : "off", plan.crosscheck ? "" : ": ",
                      plan.crosscheck ? "" : plan.crosscheck_off);
        if (!plan.attribution) fail_msg("%s: %s", libs[i].path, plan.attribution_off);
        assert_ptr_equal(plan.layout, row);
        bool lib_has_rp = dlsym(h, "cuptiRangeProfilerEnable") != NULL;
        assert_int_equal(lib_has_rp, row->profiler_size[NF_PS_RP_ENABLE] != 0);
        if (!lib_has_rp) {
            char expect[512];
            snprintf(expect, sizeof expect,
                     "%s (CUPTI %s) lacks cuptiRangeProfilerEnable: the range profiler came with CUDA "
                     "12.6, and naflops does not implement the older Profiler API "
                     "(cuptiProfilerBeginSession)", libs[i].path, row->release);
            assert_false(plan.crosscheck);
            assert_string_equal(plan.crosscheck_off, expect);
        } else if (!NF_CUPTI_HEADERS_RANGE_PROFILER) {
            char expect[256];
            snprintf(expect, sizeof expect,
                     "naflops was built with CUPTI headers (API %d) that have no range profiler",
                     CUPTI_API_VERSION);
            assert_false(plan.crosscheck);
            assert_string_equal(plan.crosscheck_off, expect);
        } else {
            assert_true(plan.crosscheck);
            assert_string_equal(plan.crosscheck_off, "");
        }
        /* cupti_metrics.c opens it either way; without the host API (12.4, or
         * headers without it) choosing metrics says what is missing. */
        char why[512] = "";
        nf_cm_lib *cm = nf_cm_open(libs[i].path, why, sizeof why);
        if (cm == NULL) fail_msg("nf_cm_open %s: %s", libs[i].path, why);
        nf_cm_choice choice;
        if (!NF_CUPTI_HEADERS_RANGE_PROFILER) {
            assert_string_equal(nf_cm_host_missing(cm), "the profiler host API in the build headers");
            assert_int_equal(nf_cm_choose(cm, "GH100", NF_TC_BF16, &choice, why, sizeof why), -1);
            assert_string_equal(why, "naflops was built with CUPTI headers that have no profiler "
                                     "host API (chip GH100)");
        } else if (!lib_has_rp) {
            assert_string_equal(nf_cm_host_missing(cm), "cuptiProfilerHostGetSupportedChips");
            assert_false(nf_cm_chip_supported(cm, "GH100"));
            assert_int_equal(nf_cm_choose(cm, "GH100", NF_TC_BF16, &choice, why, sizeof why), -1);
            char expect[640];
            snprintf(expect, sizeof expect, "%s lacks cuptiProfilerHostGetSupportedChips (no profiler "
                     "host API before CUDA 12.6)", libs[i].path);
            assert_string_equal(why, expect);
        } else {
            assert_null(nf_cm_host_missing(cm));
        }
        nf_cm_close(cm);
        /* A version with no row: attribution off, in one line. */
        nf_cupti_plan_for(h, libs[i].path, 21, &built, &plan);
        assert_false(plan.attribution);
        assert_false(plan.crosscheck);
        assert_non_null(strstr(plan.attribution_off, "CUPTI API version 21 is older than CUPTI 12.4"));
        /* Not dlclose'd, as the adapter never closes it: libcupti's constructor keeps a
         * 72 KiB buffer only its globals point to, a leak once they are unmapped. */
    }
}

/* A library without the entry points: both features off, the first one named. */
static void test_not_cupti(void **state) {
    (void)state;
    void *h = dlopen("libm.so.6", RTLD_NOW | RTLD_LOCAL);
    assert_non_null(h);
    nf_cupti_layout built;
    nf_cupti_layout_from_headers(&built);
    nf_cupti_plan plan;
    nf_cupti_plan_for(h, "libm.so.6", CUPTI_API_VERSION, &built, &plan);
    assert_false(plan.attribution);
    assert_false(plan.crosscheck);
    assert_null(plan.layout);
    assert_string_equal(plan.attribution_off, "libm.so.6 lacks cuptiGetVersion");
    assert_string_equal(plan.crosscheck_off, "libm.so.6 lacks cuptiGetVersion");
    dlclose(h);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_row_matches_headers),
        cmocka_unit_test(test_cbids_match_headers),
        cmocka_unit_test(test_version_picks_row),
        cmocka_unit_test(test_compare),
        cmocka_unit_test(test_struct_sizes),
        cmocka_unit_test(test_libraries),
        cmocka_unit_test(test_not_cupti),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#endif
