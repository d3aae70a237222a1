/* The CUPTI releases the adapter knows, as numbers. See cupti_layout.h.
 *
 * Each row is what that release's headers say (sizeof, offsetof, the _STRUCT_SIZE and
 * _CBID_SIZE macros), written down from them; tests/unit/test_cupti_layout.c, built
 * against each header set (scripts/fetch-cupti-headers; make cupti-versions), fails
 * when a row and its headers disagree. The fields read sit at the same offsets in all
 * four; the record CUPTI writes for a kernel grows from CUpti_ActivityKernel9 (12.x,
 * 208 bytes) to CUpti_ActivityKernel10 (13.x, 216 bytes) by appended fields; 13.2's
 * CUpti_Profiler_Host_Initialize_Params is 8 bytes longer than 13.0's. */
#include "cupti_layout.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#define COMMON_FIELDS                                                                      \
    .kernel = {0, 16, 24, 40, 52, 56, 60, 64, 68, 72, 92, 104, 144, 156},                  \
    .callback = {0, 16, 24, 64}, .resource = {0, 16}, .graph = {0, 16, 24, 32, 48}

/* The range profiler's and host API's sizes as of 12.8 (they came with CUDA 12.6). */
#define PROFILER_128 {32, 16, 32, 24, 64, 40, 90, 24, 41, 32, 40, 72, 32, 48, 24, 48, 40, 32, 40, 40}

const nf_cupti_layout nf_cupti_layouts[] = {
    {.release = "12.4", .api_version = 22, .kernel_record = "CUpti_ActivityKernel9",
     .kernel_size = 208, COMMON_FIELDS, .runtime_cbids = 468, .driver_cbids = 754,
     .profiler_size = {32, 16}},
    {.release = "12.8", .api_version = 26, .kernel_record = "CUpti_ActivityKernel9",
     .kernel_size = 208, COMMON_FIELDS, .runtime_cbids = 487, .driver_cbids = 782,
     .profiler_size = PROFILER_128},
    {.release = "13.0", .api_version = 130001, .kernel_record = "CUpti_ActivityKernel10",
     .kernel_size = 216, COMMON_FIELDS, .runtime_cbids = 523, .driver_cbids = 807,
     .profiler_size = PROFILER_128},
    {.release = "13.2", .api_version = 130202, .kernel_record = "CUpti_ActivityKernel10",
     .kernel_size = 216, COMMON_FIELDS, .runtime_cbids = 559, .driver_cbids = 846,
     .profiler_size = {32, 16, 32, 24, 64, 40, 90, 24, 41, 32, 40, 72, 32, 56, 24, 48, 40, 32, 40, 40}},
};
const size_t nf_cupti_layout_count = sizeof nf_cupti_layouts / sizeof *nf_cupti_layouts;

#define RT NF_CUPTI_DOMAIN_RUNTIME
#define DRV NF_CUPTI_DOMAIN_DRIVER
#define RES NF_CUPTI_DOMAIN_RESOURCE
const nf_cupti_cbid nf_cupti_cbids[] = {
    {"CUPTI_RUNTIME_TRACE_CBID_cudaLaunchKernel_v7000", RT, 211, 22, NF_CB_RUNTIME_LAUNCH},
    {"CUPTI_RUNTIME_TRACE_CBID_cudaLaunchKernel_ptsz_v7000", RT, 214, 22, NF_CB_RUNTIME_LAUNCH},
    {"CUPTI_RUNTIME_TRACE_CBID_cudaLaunchKernelExC_v11060", RT, 430, 22, NF_CB_RUNTIME_LAUNCH},
    {"CUPTI_RUNTIME_TRACE_CBID_cudaLaunchKernelExC_ptsz_v11060", RT, 431, 22, NF_CB_RUNTIME_LAUNCH},
    {"CUPTI_RUNTIME_TRACE_CBID_cudaLaunchCooperativeKernel_v9000", RT, 269, 22, NF_CB_RUNTIME_LAUNCH},
    {"CUPTI_RUNTIME_TRACE_CBID_cudaLaunchCooperativeKernel_ptsz_v9000", RT, 270, 22, NF_CB_RUNTIME_LAUNCH},
    /* CUDA 13's runtime launches <<<>>> through __cudaLaunchKernel: not in 12.x. */
    {"CUPTI_RUNTIME_TRACE_CBID___cudaLaunchKernel_v13000", RT, 505, 130001, NF_CB_RUNTIME_LAUNCH},
    {"CUPTI_RUNTIME_TRACE_CBID___cudaLaunchKernel_ptsz_v13000", RT, 506, 130001, NF_CB_RUNTIME_LAUNCH},
    {"CUPTI_DRIVER_TRACE_CBID_cuLaunchKernel", DRV, 307, 22, NF_CB_DRIVER_LAUNCH},
    {"CUPTI_DRIVER_TRACE_CBID_cuLaunchKernel_ptsz", DRV, 442, 22, NF_CB_DRIVER_LAUNCH},
    {"CUPTI_DRIVER_TRACE_CBID_cuLaunchKernelEx", DRV, 652, 22, NF_CB_DRIVER_LAUNCH},
    {"CUPTI_DRIVER_TRACE_CBID_cuLaunchKernelEx_ptsz", DRV, 653, 22, NF_CB_DRIVER_LAUNCH},
    {"CUPTI_DRIVER_TRACE_CBID_cuLaunchCooperativeKernel", DRV, 477, 22, NF_CB_DRIVER_LAUNCH},
    {"CUPTI_DRIVER_TRACE_CBID_cuLaunchGrid", DRV, 116, 22, NF_CB_DRIVER_LAUNCH},
    {"CUPTI_DRIVER_TRACE_CBID_cuLaunchGridAsync", DRV, 117, 22, NF_CB_DRIVER_LAUNCH},
    {"CUPTI_DRIVER_TRACE_CBID_cuStreamBeginCapture", DRV, 495, 22, NF_CB_BEGIN_CAPTURE},
    {"CUPTI_DRIVER_TRACE_CBID_cuStreamBeginCapture_ptsz", DRV, 496, 22, NF_CB_BEGIN_CAPTURE},
    {"CUPTI_DRIVER_TRACE_CBID_cuStreamBeginCapture_v2", DRV, 539, 22, NF_CB_BEGIN_CAPTURE},
    {"CUPTI_DRIVER_TRACE_CBID_cuStreamBeginCapture_v2_ptsz", DRV, 540, 22, NF_CB_BEGIN_CAPTURE},
    {"CUPTI_DRIVER_TRACE_CBID_cuStreamBeginCaptureToGraph", DRV, 720, 22, NF_CB_BEGIN_CAPTURE},
    {"CUPTI_DRIVER_TRACE_CBID_cuStreamBeginCaptureToGraph_ptsz", DRV, 721, 22, NF_CB_BEGIN_CAPTURE},
    {"CUPTI_DRIVER_TRACE_CBID_cuStreamEndCapture", DRV, 497, 22, NF_CB_END_CAPTURE},
    {"CUPTI_DRIVER_TRACE_CBID_cuStreamEndCapture_ptsz", DRV, 498, 22, NF_CB_END_CAPTURE},
    {"CUPTI_DRIVER_TRACE_CBID_cuGraphLaunch", DRV, 514, 22, NF_CB_GRAPH_LAUNCH},
    {"CUPTI_DRIVER_TRACE_CBID_cuGraphLaunch_ptsz", DRV, 515, 22, NF_CB_GRAPH_LAUNCH},
    {"CUPTI_CBID_RESOURCE_CONTEXT_CREATED", RES, 1, 22, NF_CB_RESOURCE},
    {"CUPTI_CBID_RESOURCE_GRAPHNODE_CREATED", RES, 13, 22, NF_CB_RESOURCE},
    {"CUPTI_CBID_RESOURCE_GRAPHEXEC_CREATED", RES, 18, 22, NF_CB_RESOURCE},
    {"CUPTI_CBID_RESOURCE_GRAPHNODE_CLONED", RES, 20, 22, NF_CB_RESOURCE},
};
const size_t nf_cupti_cbid_count = sizeof nf_cupti_cbids / sizeof *nf_cupti_cbids;

enum nf_cupti_role nf_cupti_role_of(uint32_t domain, uint32_t id) {
    for (size_t i = 0; i < nf_cupti_cbid_count; i++)
        if (nf_cupti_cbids[i].domain == domain && nf_cupti_cbids[i].id == id) return nf_cupti_cbids[i].role;
    return 0;
}

bool nf_cupti_has_cbid(const nf_cupti_layout *L, const nf_cupti_cbid *cb) {
    if (L == NULL || cb->since > L->api_version) return false;
    if (cb->domain == NF_CUPTI_DOMAIN_RUNTIME) return cb->id < L->runtime_cbids;
    if (cb->domain == NF_CUPTI_DOMAIN_DRIVER) return cb->id < L->driver_cbids;
    return true;
}

/* Up to 12.x CUPTI counted its API versions up from 1 (12.4: 22, 12.8: 26; anything
 * below 22 is older than the oldest row); 13.0 started over at 130001 (major * 10000
 * + minor * 100 + patch). 0: no known numbering. */
static unsigned major_of(uint32_t v) { return v >= 130000 ? v / 10000 : v >= 1 && v < 1000 ? 12 : 0; }

const nf_cupti_layout *nf_cupti_layout_of(uint32_t v, char *why, size_t len) {
    const nf_cupti_layout *best = NULL;
    for (size_t i = 0; i < nf_cupti_layout_count; i++) {
        const nf_cupti_layout *L = &nf_cupti_layouts[i];
        if (major_of(L->api_version) == major_of(v) && L->api_version <= v) best = L;
    }
    if (best) return best;
    const nf_cupti_layout *oldest = &nf_cupti_layouts[0];
    if (major_of(v) == 12 || (v > 0 && v < oldest->api_version))
        snprintf(why, len, "CUPTI API version %u is older than CUPTI %s (API %u), the oldest whose "
                 "record layouts naflops knows", v, oldest->release, oldest->api_version);
    else
        snprintf(why, len, "CUPTI API version %u is of a major release naflops does not know "
                 "(it knows CUPTI 12.4 to 13.x)", v);
    return NULL;
}

int nf_cupti_layout_compare(const nf_cupti_layout *b, const nf_cupti_layout *r, char *why, size_t len) {
#define CMP(part, type, f)                                                                         \
    if (b->part.f != r->part.f) {                                                               \
        snprintf(why, len, "CUPTI %s (API %u) has %s.%s at byte %u; naflops was built with "    \
                 "headers (API %u) that have it at byte %u", r->release, r->api_version, type,   \
                 #f, r->part.f, b->api_version, b->part.f);                                       \
        return -1;                                                                              \
    }
#define K(f) CMP(kernel, r->kernel_record, f)
#define C(f) CMP(callback, "CUpti_CallbackData", f)
#define R(f) CMP(resource, "CUpti_ResourceData", f)
#define G(f) CMP(graph, "CUpti_GraphData", f)
    NF_CUPTI_KERNEL_FIELDS(K)
    NF_CUPTI_CALLBACK_FIELDS(C)
    NF_CUPTI_RESOURCE_FIELDS(R)
    NF_CUPTI_GRAPH_FIELDS(G)
#undef K
#undef C
#undef R
#undef G
#undef CMP
    /* Every field read lies within both records (the last one read is graphId). */
    if (r->kernel.graphId + 4u > r->kernel_size) {
        snprintf(why, len, "CUPTI %s's %s (%u bytes) is too short for the fields naflops reads",
                 r->release, r->kernel_record, r->kernel_size);
        return -1;
    }
    return 0;
}

size_t nf_cupti_struct_size(const nf_cupti_layout *running, int which, size_t built_size) {
    if (running == NULL || which < 0 || which >= NF_PS_COUNT) return built_size;
    size_t theirs = running->profiler_size[which];
    return theirs != 0 && theirs < built_size ? theirs : built_size;
}

static const char *const attribution_syms[] = {
#define NAME(field, sym) #sym,
    NF_CUPTI_ATTRIBUTION_SYMS(NAME)
};
static const char *const crosscheck_syms[] = {NF_CUPTI_CROSSCHECK_SYMS(NAME)
#undef NAME
};

static const char *first_missing(void *handle, const char *const *names, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (dlsym(handle, names[i]) == NULL) return names[i];
    return NULL;
}

void nf_cupti_plan_for(void *handle, const char *where, uint32_t v, const nf_cupti_layout *built,
                       nf_cupti_plan *p) {
    memset(p, 0, sizeof *p);
    char why[256];
    const char *missing = first_missing(handle, attribution_syms,
                                        sizeof attribution_syms / sizeof *attribution_syms);
    if (missing) {
        snprintf(p->attribution_off, sizeof p->attribution_off, "%s lacks %s", where, missing);
        snprintf(p->crosscheck_off, sizeof p->crosscheck_off, "%s", p->attribution_off);
        return;
    }
    if ((p->layout = nf_cupti_layout_of(v, why, sizeof why)) == NULL ||
        nf_cupti_layout_compare(built, p->layout, why, sizeof why) != 0) {
        snprintf(p->attribution_off, sizeof p->attribution_off, "%s: %s", where, why);
        snprintf(p->crosscheck_off, sizeof p->crosscheck_off, "%s", p->attribution_off);
        return;
    }
    p->attribution = true;
    missing = first_missing(handle, crosscheck_syms, sizeof crosscheck_syms / sizeof *crosscheck_syms);
    if (missing) {
        snprintf(p->crosscheck_off, sizeof p->crosscheck_off,
                 "%s (CUPTI %s) lacks %s: the range profiler came with CUDA 12.6, and naflops does "
                 "not implement the older Profiler API (cuptiProfilerBeginSession)",
                 where, p->layout->release, missing);
    } else if (built->profiler_size[NF_PS_RP_ENABLE] == 0) {
        snprintf(p->crosscheck_off, sizeof p->crosscheck_off,
                 "naflops was built with CUPTI headers (API %u) that have no range profiler",
                 built->api_version);
    } else {
        p->crosscheck = true;
    }
}
