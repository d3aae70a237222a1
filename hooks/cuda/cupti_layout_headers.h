/* The layout row of the CUPTI headers this file is compiled with (see cupti_layout.h):
 * what the adapter's structures are, to compare with the running CUPTI's row. Include
 * after <cupti.h>. CUPTI 12.4's headers have no range profiler or profiler host API:
 * those sizes are 0 there, and the adapter built with them has no cross-check. */
#ifndef NF_HOOKS_CUPTI_LAYOUT_HEADERS_H
#define NF_HOOKS_CUPTI_LAYOUT_HEADERS_H

#include <stddef.h>
#include <string.h>

#include <cupti.h>
#if __has_include(<cupti_range_profiler.h>) && __has_include(<cupti_profiler_host.h>)
#include <cupti_profiler_host.h> /* <string>: see hooks/cuda/cupti_shim */
#include <cupti_range_profiler.h>
#define NF_CUPTI_HEADERS_RANGE_PROFILER 1
#else
#define NF_CUPTI_HEADERS_RANGE_PROFILER 0
#endif
#include <cupti_profiler_target.h>
#include <cupti_target.h>

#include "cupti_layout.h"

/* The record CUPTI writes for CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL. */
#if CUPTI_API_VERSION >= 130000
typedef CUpti_ActivityKernel10 nf_cupti_kernel_record;
#define NF_CUPTI_KERNEL_RECORD "CUpti_ActivityKernel10"
#else
typedef CUpti_ActivityKernel9 nf_cupti_kernel_record;
#define NF_CUPTI_KERNEL_RECORD "CUpti_ActivityKernel9"
#endif

#define NF_CUPTI_RELEASE_OF(v) ((v) >= 130000 ? "13." : "12.")

static inline void nf_cupti_layout_from_headers(nf_cupti_layout *L) {
    memset(L, 0, sizeof *L);
    L->release = "(the build headers)";
    L->api_version = CUPTI_API_VERSION;
    L->kernel_record = NF_CUPTI_KERNEL_RECORD;
    L->kernel_size = (uint16_t)sizeof(nf_cupti_kernel_record);
#define NF_K(f) L->kernel.f = (uint16_t)offsetof(nf_cupti_kernel_record, f);
#define NF_C(f) L->callback.f = (uint16_t)offsetof(CUpti_CallbackData, f);
#define NF_R(f) L->resource.f = (uint16_t)offsetof(CUpti_ResourceData, f);
#define NF_G(f) L->graph.f = (uint16_t)offsetof(CUpti_GraphData, f);
    NF_CUPTI_KERNEL_FIELDS(NF_K)
    NF_CUPTI_CALLBACK_FIELDS(NF_C)
    NF_CUPTI_RESOURCE_FIELDS(NF_R)
    NF_CUPTI_GRAPH_FIELDS(NF_G)
#undef NF_K
#undef NF_C
#undef NF_R
#undef NF_G
    L->runtime_cbids = CUPTI_RUNTIME_TRACE_CBID_SIZE;
    L->driver_cbids = CUPTI_DRIVER_TRACE_CBID_SIZE;
#define NF_S(id, type) L->profiler_size[NF_PS_##id] = (uint16_t)type##_STRUCT_SIZE;
    NF_CUPTI_PROFILER_TARGET_STRUCTS(NF_S)
#if NF_CUPTI_HEADERS_RANGE_PROFILER
    NF_CUPTI_PROFILER_RANGE_STRUCTS(NF_S)
#endif
#undef NF_S
}

#endif
