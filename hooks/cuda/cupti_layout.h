/* What differs between the CUPTI releases users load (the one their torch wheel brings:
 * torch 2.6 CUPTI 12.4, torch 2.8 CUPTI 12.8, torch 2.15 CUPTI 13.2, and the CUDA 13
 * toolkit's 13.0), as plain numbers, so that the adapter can be built with one header
 * set and still read what another CUPTI writes:
 *
 *  - the layout of every structure the adapter reads (the kernel activity record CUPTI
 *    writes for CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL, which is CUpti_ActivityKernel9
 *    in 12.x and CUpti_ActivityKernel10 in 13.x; CUpti_CallbackData,
 *    CUpti_ResourceData, CUpti_GraphData): offsets of the fields read;
 *  - the callback ids it enables, and how many each domain has (an id a CUPTI does
 *    not have is refused by cuptiEnableCallback);
 *  - the structSize of every profiler parameter structure it passes (0: this CUPTI
 *    has no such call; 12.4 has no range profiler and no profiler host API);
 *  - the entry points each feature needs, resolved with dlsym, the first missing one
 *    named.
 *
 * The running CUPTI's version (cuptiGetVersion) picks its row; the adapter reads
 * records through its build headers' structures only when the running row agrees with
 * the build headers' layout on every field read (nf_cupti_plan_for), and refuses in
 * one line otherwise. tests/unit/test_cupti_layout.c, built against each header set
 * (make cupti-versions), checks every row against that set's headers.
 *
 * No CUPTI header is needed to compile this file. */
#ifndef NF_HOOKS_CUPTI_LAYOUT_H
#define NF_HOOKS_CUPTI_LAYOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The profiler parameter structures passed (target: in every CUPTI 12+; range and
 * host: since 12.6). */
#define NF_CUPTI_PROFILER_TARGET_STRUCTS(X)                                                     \
    X(CHIP_NAME, CUpti_Device_GetChipName_Params)                                           \
    X(PROFILER_INIT, CUpti_Profiler_Initialize_Params)
#define NF_CUPTI_PROFILER_RANGE_STRUCTS(X)                                                      \
    X(RP_ENABLE, CUpti_RangeProfiler_Enable_Params)                                         \
    X(RP_DISABLE, CUpti_RangeProfiler_Disable_Params)                                       \
    X(RP_DATA_SIZE, CUpti_RangeProfiler_GetCounterDataSize_Params)                          \
    X(RP_DATA_INIT, CUpti_RangeProfiler_CounterDataImage_Initialize_Params)                 \
    X(RP_SET_CONFIG, CUpti_RangeProfiler_SetConfig_Params)                                  \
    X(RP_START, CUpti_RangeProfiler_Start_Params)                                           \
    X(RP_STOP, CUpti_RangeProfiler_Stop_Params)                                             \
    X(RP_DECODE, CUpti_RangeProfiler_DecodeData_Params)                                     \
    X(RP_DATA_INFO, CUpti_RangeProfiler_GetCounterDataInfo_Params)                          \
    X(HOST_EVALUATE, CUpti_Profiler_Host_EvaluateToGpuValues_Params)                        \
    X(HOST_CHIPS, CUpti_Profiler_Host_GetSupportedChips_Params)                             \
    X(HOST_INIT, CUpti_Profiler_Host_Initialize_Params)                                     \
    X(HOST_DEINIT, CUpti_Profiler_Host_Deinitialize_Params)                                 \
    X(HOST_BASE_METRICS, CUpti_Profiler_Host_GetBaseMetrics_Params)                         \
    X(HOST_ADD_METRICS, CUpti_Profiler_Host_ConfigAddMetrics_Params)                        \
    X(HOST_IMAGE_SIZE, CUpti_Profiler_Host_GetConfigImageSize_Params)                       \
    X(HOST_IMAGE, CUpti_Profiler_Host_GetConfigImage_Params)                                \
    X(HOST_PASSES, CUpti_Profiler_Host_GetNumOfPasses_Params)

enum {
#define NF_PS_ENUM(id, type) NF_PS_##id,
    NF_CUPTI_PROFILER_TARGET_STRUCTS(NF_PS_ENUM) NF_CUPTI_PROFILER_RANGE_STRUCTS(NF_PS_ENUM)
#undef NF_PS_ENUM
    NF_PS_COUNT
};

/* The entry points, per feature (field name in the adapter, symbol). */
#define NF_CUPTI_ATTRIBUTION_SYMS(X)                                                             \
    X(get_version, cuptiGetVersion)                                                          \
    X(subscribe, cuptiSubscribe)                                                             \
    X(enable_callback, cuptiEnableCallback)                                                  \
    X(enable_domain, cuptiEnableDomain)                                                      \
    X(activity_enable, cuptiActivityEnable)                                                  \
    X(register_callbacks, cuptiActivityRegisterCallbacks)                                    \
    X(next_record, cuptiActivityGetNextRecord)                                               \
    X(flush_all, cuptiActivityFlushAll)                                                      \
    X(graph_id, cuptiGetGraphId)                                                             \
    X(graph_exec_id, cuptiGetGraphExecId)                                                    \
    X(node_id, cuptiGetGraphNodeId)                                                          \
    X(device_id, cuptiGetDeviceId)                                                           \
    X(result_string, cuptiGetResultString)                                                   \
    X(chip_name, cuptiDeviceGetChipName)                                                     \
    X(timestamp, cuptiGetTimestamp)
/* The range profiler first: CUPTI 12.4 has cuptiProfilerInitialize but no
 * cuptiRangeProfilerEnable, which is the one named. */
#define NF_CUPTI_CROSSCHECK_SYMS(X)                                                              \
    X(profiler_init, cuptiProfilerInitialize)                                                \
    X(rp_enable, cuptiRangeProfilerEnable)                                                   \
    X(rp_disable, cuptiRangeProfilerDisable)                                                 \
    X(rp_data_size, cuptiRangeProfilerGetCounterDataSize)                                    \
    X(rp_data_init, cuptiRangeProfilerCounterDataImageInitialize)                            \
    X(rp_set_config, cuptiRangeProfilerSetConfig)                                            \
    X(rp_start, cuptiRangeProfilerStart)                                                     \
    X(rp_stop, cuptiRangeProfilerStop)                                                       \
    X(rp_decode, cuptiRangeProfilerDecodeData)                                               \
    X(rp_data_info, cuptiRangeProfilerGetCounterDataInfo)                                    \
    X(evaluate, cuptiProfilerHostEvaluateToGpuValues)                                        \
    X(host_chips, cuptiProfilerHostGetSupportedChips)                                        \
    X(host_init, cuptiProfilerHostInitialize)                                                \
    X(host_deinit, cuptiProfilerHostDeinitialize)                                            \
    X(host_base_metrics, cuptiProfilerHostGetBaseMetrics)                                    \
    X(host_add_metrics, cuptiProfilerHostConfigAddMetrics)                                   \
    X(host_image_size, cuptiProfilerHostGetConfigImageSize)                                  \
    X(host_image, cuptiProfilerHostGetConfigImage)                                           \
    X(host_passes, cuptiProfilerHostGetNumOfPasses)

/* The fields read, with their names in CUPTI's headers (for messages and the tests). */
#define NF_CUPTI_KERNEL_FIELDS(X)                                                                \
    X(kind) X(start) X(end) X(deviceId) X(gridX) X(gridY) X(gridZ) X(blockX) X(blockY)       \
    X(blockZ) X(correlationId) X(name) X(graphNodeId) X(graphId)
#define NF_CUPTI_CALLBACK_FIELDS(X)                                                              \
    X(callbackSite) X(functionParams) X(functionReturnValue) X(correlationId)
#define NF_CUPTI_RESOURCE_FIELDS(X) X(context) X(resourceDescriptor)
#define NF_CUPTI_GRAPH_FIELDS(X) X(graph) X(node) X(originalNode) X(nodeType) X(graphExec)

#define NF_CUPTI_FIELD(f) uint16_t f;
typedef struct nf_cupti_layout {
    const char *release;        /* "12.4" */
    uint32_t api_version;       /* CUPTI_API_VERSION of that release's headers */
    const char *kernel_record;  /* the struct CUPTI writes for a concurrent kernel */
    uint16_t kernel_size;       /* its sizeof */
    struct { NF_CUPTI_KERNEL_FIELDS(NF_CUPTI_FIELD) } kernel;
    struct { NF_CUPTI_CALLBACK_FIELDS(NF_CUPTI_FIELD) } callback;
    struct { NF_CUPTI_RESOURCE_FIELDS(NF_CUPTI_FIELD) } resource;
    struct { NF_CUPTI_GRAPH_FIELDS(NF_CUPTI_FIELD) } graph;
    uint32_t runtime_cbids;     /* CUPTI_RUNTIME_TRACE_CBID_SIZE */
    uint32_t driver_cbids;      /* CUPTI_DRIVER_TRACE_CBID_SIZE */
    uint16_t profiler_size[NF_PS_COUNT]; /* each struct's _STRUCT_SIZE; 0: not in this CUPTI */
} nf_cupti_layout;
#undef NF_CUPTI_FIELD

/* The rows, oldest first, and how many. */
extern const nf_cupti_layout nf_cupti_layouts[];
extern const size_t nf_cupti_layout_count;

/* The row for a CUPTI API version: that release's, or the newest older release of the
 * same major version (CUPTI only appends fields within a major version). NULL, with
 * one line in why, for a version older than the oldest row or of an unknown major. */
const nf_cupti_layout *nf_cupti_layout_of(uint32_t api_version, char *why, size_t len);

/* 0 when running agrees with built on every field read (and on the record being at
 * least as long); -1 with the first difference in why. */
int nf_cupti_layout_compare(const nf_cupti_layout *built, const nf_cupti_layout *running,
                            char *why, size_t len);

/* The callback ids enabled, the same number in every CUPTI the table knows. */
enum nf_cupti_role {
    NF_CB_RUNTIME_LAUNCH = 1,
    NF_CB_DRIVER_LAUNCH,
    NF_CB_BEGIN_CAPTURE, /* every variant's first parameter is the stream */
    NF_CB_END_CAPTURE,
    NF_CB_GRAPH_LAUNCH,
    NF_CB_RESOURCE, /* resource domain: compared with the headers, enabled as a domain */
};
enum { NF_CUPTI_DOMAIN_DRIVER = 1, NF_CUPTI_DOMAIN_RUNTIME = 2, NF_CUPTI_DOMAIN_RESOURCE = 3 };
typedef struct nf_cupti_cbid {
    const char *name; /* the enum constant in CUPTI's headers */
    uint32_t domain;
    uint32_t id;
    uint32_t since;   /* the first CUPTI API version that has it */
    enum nf_cupti_role role;
} nf_cupti_cbid;
extern const nf_cupti_cbid nf_cupti_cbids[];
extern const size_t nf_cupti_cbid_count;

/* The role of a callback (0 when it is none of ours). */
enum nf_cupti_role nf_cupti_role_of(uint32_t domain, uint32_t id);
/* Whether the running CUPTI has this callback id. */
bool nf_cupti_has_cbid(const nf_cupti_layout *running, const nf_cupti_cbid *cb);

/* What the adapter can do with one libcupti (dlopen handle, where it came from, its
 * cuptiGetVersion) when built with the layout built: */
typedef struct nf_cupti_plan {
    const nf_cupti_layout *layout; /* the running CUPTI's row (NULL: unknown) */
    bool attribution;              /* kernels, timing, CUDA graphs */
    char attribution_off[320];     /* why not, one line */
    bool crosscheck;               /* the range profiler and the host API */
    char crosscheck_off[320];
} nf_cupti_plan;
void nf_cupti_plan_for(void *handle, const char *where, uint32_t api_version,
                       const nf_cupti_layout *built, nf_cupti_plan *plan);

/* A profiler structSize: the build headers' size, or the running CUPTI's when that is
 * smaller (fields are only appended; a CUPTI reads only the fields it knows of). */
size_t nf_cupti_struct_size(const nf_cupti_layout *running, int which, size_t built_size);

#endif
