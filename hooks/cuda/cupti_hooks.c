/* CUPTI callbacks, activity records and the range-profiler cross-check, fed to nf_gpu.
 * See cupti_hooks.h for how this gets loaded. Everything CUPTI is dlsym'd from the
 * libcupti that cupti_metrics.c opens (the one already in the process first), so
 * libnaflops.so keeps linking against libc alone.
 *
 * Launch attribution: the runtime's launch calls the driver's; CUPTI gives a kernel
 * the correlation id of the outermost API call, so a driver launch nested in a runtime
 * launch on the same thread is not registered again.
 *
 * Why ~540 lines in one file: CUPTI's callback, activity and graph events share one
 * subscriber and one correlation map; split, each half would need the other's. */
#include "cupti_hooks.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/nf_core.h"
#include "../../src/nf_gpu.h"
#include "../../src/nf_intern.h"
#include "../../src/nf_log.h"
#include "../../src/nf_scope.h"
#include "../../src/nf_step.h"
#include "cupti_metrics.h"

static atomic_bool armed, injected, said_off, said_xc_off;

/* One line, once, and the reason kept for the report. */
static void gpu_off(const char *fmt, const char *detail) {
    char line[600];
    snprintf(line, sizeof line, fmt, detail ? detail : "");
    nf_gpu_set_off(line);
    nf_log_once(&said_off, "GPU part off: %s; NATTEN ops are still counted", line);
}


static void crosscheck_off(const char *fmt, const char *detail) {
    char line[600];
    snprintf(line, sizeof line, fmt, detail ? detail : "");
    nf_gpu_crosscheck_state(false, line);
    nf_log_once(&said_xc_off, "cross-check off: %s; kernel attribution and counting go on", line);
}

/* At exit: a cross-check was asked for but CUDA never started (no GPU, or the program
 * did not use it). */
static void never_injected(void) {
    if (nf_core_config()->crosscheck && !atomic_load(&injected))
        crosscheck_off("the CUDA driver never loaded naflops (no GPU, or CUDA not used)%s", "");
}

void nf_cupti_arm(void) {
    if (!nf_core_config()->gpu) return;
    Dl_info info;
    if (dladdr((void *)nf_cupti_arm, &info) == 0 || info.dli_fname == NULL) return;
    const char *current = getenv("CUDA_INJECTION64_PATH");
    if (current && *current && strcmp(current, info.dli_fname) != 0) {
        gpu_off("CUDA_INJECTION64_PATH already names another tool (%s)", current);
        return;
    }
    if (current == NULL || *current == '\0') setenv("CUDA_INJECTION64_PATH", info.dli_fname, 1);
    atomic_store(&armed, true);
    atexit(never_injected);
}

#ifndef NF_HAVE_CUPTI

__attribute__((visibility("default"))) int InitializeInjection(void) {
    atomic_store(&injected, true);
    if (atomic_load(&armed))
        gpu_off("naflops was built without CUPTI's headers%s", "");
    return 1;
}

#else

/* cupti.h, and the range profiler's and host API's headers where this header set has
 * them (not CUPTI 12.4's: built with those, the cross-check is off and says why). */
#include "cupti_layout_headers.h"

/* One tensor-core math op is one multiply-add, two FLOPs: the assumption the GPU check
 * (tests/gpu/test_gpu.py, a dense GEMM of known 2*M*N*K) confirms or refutes on
 * real hardware; the report names it. */
#define NF_FLOPS_PER_MATH_OP 2.0

#define BUFFER_SIZE (8u << 20)
#define RANGES_PER_PASS 256

/* ------------------------------------------------------------ CUPTI entry points */

/* Every entry point used is in NF_CUPTI_ATTRIBUTION_SYMS or NF_CUPTI_CROSSCHECK_SYMS
 * (cupti_layout.h), resolved with dlsym; nf_cupti_plan_for names the first one a
 * libcupti lacks and that feature is off. */
typedef void (*nf_fn)(void);
static struct {
    CUptiResult (*get_version)(uint32_t *);
    CUptiResult (*subscribe)(CUpti_SubscriberHandle *, CUpti_CallbackFunc, void *);
    CUptiResult (*enable_callback)(uint32_t, CUpti_SubscriberHandle, CUpti_CallbackDomain, CUpti_CallbackId);
    CUptiResult (*enable_domain)(uint32_t, CUpti_SubscriberHandle, CUpti_CallbackDomain);
    CUptiResult (*activity_enable)(CUpti_ActivityKind);
    CUptiResult (*register_callbacks)(CUpti_BuffersCallbackRequestFunc, CUpti_BuffersCallbackCompleteFunc);
    CUptiResult (*next_record)(uint8_t *, size_t, CUpti_Activity **);
    CUptiResult (*flush_all)(uint32_t);
    CUptiResult (*graph_id)(CUgraph, uint32_t *);
    CUptiResult (*graph_exec_id)(CUgraphExec, uint32_t *);
    CUptiResult (*node_id)(CUgraphNode, uint64_t *);
    CUptiResult (*device_id)(CUcontext, uint32_t *);
    CUptiResult (*result_string)(CUptiResult, const char **);
    CUptiResult (*chip_name)(CUpti_Device_GetChipName_Params *);
    CUptiResult (*timestamp)(uint64_t *);
    CUptiResult (*profiler_init)(CUpti_Profiler_Initialize_Params *);
#if NF_CUPTI_HEADERS_RANGE_PROFILER
    CUptiResult (*rp_enable)(CUpti_RangeProfiler_Enable_Params *);
    CUptiResult (*rp_disable)(CUpti_RangeProfiler_Disable_Params *);
    CUptiResult (*rp_data_size)(CUpti_RangeProfiler_GetCounterDataSize_Params *);
    CUptiResult (*rp_data_init)(CUpti_RangeProfiler_CounterDataImage_Initialize_Params *);
    CUptiResult (*rp_set_config)(CUpti_RangeProfiler_SetConfig_Params *);
    CUptiResult (*rp_start)(CUpti_RangeProfiler_Start_Params *);
    CUptiResult (*rp_stop)(CUpti_RangeProfiler_Stop_Params *);
    CUptiResult (*rp_decode)(CUpti_RangeProfiler_DecodeData_Params *);
    CUptiResult (*rp_data_info)(CUpti_RangeProfiler_GetCounterDataInfo_Params *);
    CUptiResult (*evaluate)(CUpti_Profiler_Host_EvaluateToGpuValues_Params *);
#endif
    nf_fn host_chips, host_init, host_deinit, host_base_metrics, host_add_metrics, host_image_size,
        host_image, host_passes; /* cupti_metrics.c calls these */
} C;

static nf_cm_lib *lib;
static CUpti_SubscriberHandle subscriber;
static const nf_cupti_layout *running; /* the running CUPTI's layout row */
static nf_cupti_plan plan;

/* A profiler structure's structSize for the running CUPTI. */
#define SIZE(id, type) nf_cupti_struct_size(running, NF_PS_##id, type##_STRUCT_SIZE)

static const char *cupti_error(CUptiResult r) {
    const char *s = NULL;
    if (C.result_string == NULL || C.result_string(r, &s) != CUPTI_SUCCESS || s == NULL) return "CUPTI error";
    return s;
}

/* After nf_cupti_plan_for found them all (the cross-check's only when it is on). */
static void load_symbols(bool crosscheck) {
    void *h = nf_cm_handle(lib);
#define LOAD(field, sym) *(void **)(&C.field) = dlsym(h, #sym);
    NF_CUPTI_ATTRIBUTION_SYMS(LOAD)
#if NF_CUPTI_HEADERS_RANGE_PROFILER
    if (crosscheck) {
        NF_CUPTI_CROSSCHECK_SYMS(LOAD)
    }
#else
    (void)crosscheck;
#endif
#undef LOAD
}

/* The clock kernel records are timed by: step boundaries note where they fall on it. */
static uint64_t cupti_now(void) {
    uint64_t t = 0;
    return C.timestamp != NULL && C.timestamp(&t) == CUPTI_SUCCESS ? t : 0;
}

/* ------------------------------------------------------------ activity buffers */

static void CUPTIAPI buffer_requested(uint8_t **buffer, size_t *size, size_t *max_records) {
    /* CUPTI wants 8-byte alignment. */
    *buffer = aligned_alloc(8, BUFFER_SIZE);
    *size = *buffer ? BUFFER_SIZE : 0;
    *max_records = 0;
}

static void CUPTIAPI buffer_completed(CUcontext ctx, uint32_t stream, uint8_t *buffer, size_t size,
                                      size_t valid) {
    (void)ctx, (void)stream, (void)size;
    CUpti_Activity *r = NULL;
    while (buffer && C.next_record(buffer, valid, &r) == CUPTI_SUCCESS) {
        if (r->kind != CUPTI_ACTIVITY_KIND_KERNEL && r->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL)
            continue;
        /* The running CUPTI writes its own record (CUpti_ActivityKernel9 in 12.x,
         * CUpti_ActivityKernel10 in 13.x); InitializeInjection went on only when its
         * row puts every field read here where the build headers' record has it. */
        const nf_cupti_kernel_record *k = (const nf_cupti_kernel_record *)r;
        nf_gpu_kernel e = {
            .correlation = k->correlationId,
            .name = k->name,
            .grid = {(uint32_t)k->gridX, (uint32_t)k->gridY, (uint32_t)k->gridZ},
            .block = {(uint32_t)k->blockX, (uint32_t)k->blockY, (uint32_t)k->blockZ},
            .start_ns = k->start,
            .end_ns = k->end,
            .device = k->deviceId,
            .graph_id = k->graphId,
            .graph_node_id = k->graphNodeId,
        };
        nf_gpu_kernel_record(&e);
    }
    free(buffer);
}

/* ------------------------------------------------------------ cross-check */

#if NF_CUPTI_HEADERS_RANGE_PROFILER
static struct {
    _Atomic bool on;
    pthread_mutex_t lock;
    CUpti_RangeProfiler_Object *object;
    nf_cm_choice choice;
    const char *names[NF_CM_MAX_METRICS];
    uint8_t *data;
    size_t data_size;
    nf_entry *range_op[RANGES_PER_PASS]; /* the op in scope at each kernel, in launch order */
    size_t ranges;
    bool said_graphs;
} X = {.lock = PTHREAD_MUTEX_INITIALIZER};

static bool rp_begin(void) {
    CUpti_RangeProfiler_CounterDataImage_Initialize_Params ip = {
        .structSize = SIZE(RP_DATA_INIT, CUpti_RangeProfiler_CounterDataImage_Initialize_Params),
        .pRangeProfilerObject = X.object, .counterDataSize = X.data_size, .pCounterData = X.data};
    CUpti_RangeProfiler_SetConfig_Params sp = {
        .structSize = SIZE(RP_SET_CONFIG, CUpti_RangeProfiler_SetConfig_Params),
        .pRangeProfilerObject = X.object, .configSize = X.choice.image_size,
        .pConfig = X.choice.image, .counterDataImageSize = X.data_size,
        .pCounterDataImage = X.data, .range = CUPTI_AutoRange, .replayMode = CUPTI_KernelReplay,
        .maxRangesPerPass = RANGES_PER_PASS, .numNestingLevels = 1, .minNestingLevel = 1};
    CUpti_RangeProfiler_Start_Params st = {.structSize = SIZE(RP_START, CUpti_RangeProfiler_Start_Params),
                                           .pRangeProfilerObject = X.object};
    X.ranges = 0;
    return C.rp_data_init(&ip) == CUPTI_SUCCESS && C.rp_set_config(&sp) == CUPTI_SUCCESS &&
           C.rp_start(&st) == CUPTI_SUCCESS;
}

/* Stops, reads every range's metrics into nf_gpu, and (again) starts. */
static void rp_collect(bool restart) {
    CUpti_RangeProfiler_Stop_Params sp = {.structSize = SIZE(RP_STOP, CUpti_RangeProfiler_Stop_Params),
                                          .pRangeProfilerObject = X.object};
    CUpti_RangeProfiler_DecodeData_Params dp = {.structSize = SIZE(RP_DECODE, CUpti_RangeProfiler_DecodeData_Params),
                                                .pRangeProfilerObject = X.object};
    CUpti_RangeProfiler_GetCounterDataInfo_Params ip = {
        .structSize = SIZE(RP_DATA_INFO, CUpti_RangeProfiler_GetCounterDataInfo_Params),
        .pCounterDataImage = X.data, .counterDataImageSize = X.data_size};
    if (C.rp_stop(&sp) != CUPTI_SUCCESS || C.rp_decode(&dp) != CUPTI_SUCCESS ||
        C.rp_data_info(&ip) != CUPTI_SUCCESS) {
        X.on = false;
        crosscheck_off("CUPTI could not read the counters back%s", "");
        return;
    }
    for (size_t i = 0; i < ip.numTotalRanges && i < X.ranges; i++) {
        double values[NF_CM_MAX_METRICS] = {0};
        CUpti_Profiler_Host_EvaluateToGpuValues_Params ep = {
            .structSize = SIZE(HOST_EVALUATE, CUpti_Profiler_Host_EvaluateToGpuValues_Params),
            .pHostObject = X.choice.host_object, .pCounterDataImage = X.data,
            .counterDataImageSize = X.data_size, .rangeIndex = i,
            .ppMetricNames = X.names, .numMetrics = (size_t)X.choice.n, .pMetricValues = values};
        if (C.evaluate(&ep) != CUPTI_SUCCESS) continue;
        double ops = 0;
        for (int m = 0; m < X.choice.n; m++) ops += values[m];
        nf_gpu_crosscheck_add(X.range_op[i], ops * NF_FLOPS_PER_MATH_OP);
    }
    if (restart && !rp_begin()) {
        X.on = false;
        crosscheck_off("CUPTI could not restart the range profiler%s", "");
    }
}

/* On the first context: configure the metrics of every dtype this chip has and start
 * per-kernel ranges with kernel replay (each kernel runs once per pass). */
static void crosscheck_start(CUcontext ctx, uint32_t device, const char *chip) {
    if (!plan.crosscheck) {
        crosscheck_off("%s", plan.crosscheck_off);
        return;
    }
    CUpti_Profiler_Initialize_Params pi = {.structSize = SIZE(PROFILER_INIT, CUpti_Profiler_Initialize_Params)};
    CUptiResult r = C.profiler_init(&pi);
    CUpti_RangeProfiler_Enable_Params ep = {.structSize = SIZE(RP_ENABLE, CUpti_RangeProfiler_Enable_Params),
                                            .ctx = ctx};
    if (r == CUPTI_SUCCESS) r = C.rp_enable(&ep);
    if (r == CUPTI_ERROR_INSUFFICIENT_PRIVILEGES) {
        crosscheck_off("hardware counters are not permitted for this user (the driver's "
                       "NVreg_RestrictProfilingToAdminUsers=1%s)", "");
        return;
    }
    if (r != CUPTI_SUCCESS) {
        crosscheck_off("the range profiler could not start: %s", cupti_error(r));
        return;
    }
    X.object = ep.pRangeProfilerObject;
    char why[256];
    if (nf_cm_choose(lib, chip, NF_TC_ALL, &X.choice, why, sizeof why) != 0 || X.choice.n == 0) {
        crosscheck_off("%s", X.choice.n == 0 ? "no tensor-core metric for this chip" : why);
        return;
    }
    for (int m = 0; m < X.choice.n; m++) X.names[m] = X.choice.metric[m];
    CUpti_RangeProfiler_GetCounterDataSize_Params sp = {
        .structSize = SIZE(RP_DATA_SIZE, CUpti_RangeProfiler_GetCounterDataSize_Params),
        .pRangeProfilerObject = X.object, .pMetricNames = X.names, .numMetrics = (size_t)X.choice.n,
        .maxNumOfRanges = RANGES_PER_PASS, .maxNumRangeTreeNodes = RANGES_PER_PASS};
    if (C.rp_data_size(&sp) != CUPTI_SUCCESS || (X.data = calloc(1, sp.counterDataSize)) == NULL) {
        crosscheck_off("the counter data image could not be sized%s", "");
        return;
    }
    X.data_size = sp.counterDataSize;
    if (!rp_begin()) {
        crosscheck_off("the range profiler could not be configured%s", "");
        return;
    }
    X.on = true;
    char note[256];
    snprintf(note, sizeof note, "device %u (%s), %d metrics, %zu passes per kernel, 1 math op = %g FLOPs",
             device, chip, X.choice.n, X.choice.passes, NF_FLOPS_PER_MATH_OP);
    nf_gpu_crosscheck_state(true, note);
}

/* After each launch (kernel replay has run it): which op the range belongs to. */
static void crosscheck_launched(nf_entry *op) {
    pthread_mutex_lock(&X.lock);
    if (X.on) {
        X.range_op[X.ranges++] = op;
        if (X.ranges == RANGES_PER_PASS) rp_collect(true);
    }
    pthread_mutex_unlock(&X.lock);
}

static bool crosscheck_on(void) { return X.on; }

static void crosscheck_finish(void) {
    pthread_mutex_lock(&X.lock);
    if (X.on) {
        rp_collect(false);
        CUpti_RangeProfiler_Disable_Params dp = {.structSize = SIZE(RP_DISABLE, CUpti_RangeProfiler_Disable_Params),
                                                 .pRangeProfilerObject = X.object};
        C.rp_disable(&dp);
        X.on = false;
    }
    pthread_mutex_unlock(&X.lock);
}

static void crosscheck_begin(CUcontext ctx, uint32_t device, const char *chip) {
    pthread_mutex_lock(&X.lock);
    crosscheck_start(ctx, device, chip);
    pthread_mutex_unlock(&X.lock);
}

#else /* headers without the range profiler (CUPTI 12.4's) */

static void crosscheck_begin(CUcontext ctx, uint32_t device, const char *chip) {
    (void)ctx, (void)device, (void)chip;
    crosscheck_off("%s", plan.crosscheck_off);
}
static bool crosscheck_on(void) { return false; }
static void crosscheck_launched(nf_entry *op) { (void)op; }
static void crosscheck_finish(void) {}

#endif

/* ------------------------------------------------------------ callbacks */

static _Thread_local int in_runtime_launch; /* depth of runtime launches on this thread */
static _Thread_local uint64_t launching;     /* correlation id of this thread's launch */
static atomic_bool context_seen;

static void on_launch(const CUpti_CallbackData *cb, bool runtime) {
    if (cb->callbackSite == CUPTI_API_ENTER) {
        if (runtime) in_runtime_launch++;
        else if (in_runtime_launch > 0) return; /* the runtime's own driver call */
        launching = cb->correlationId;
        nf_gpu_launch(nf_scope_entry(), cb->correlationId);
    } else {
        if (runtime) in_runtime_launch--;
        else if (in_runtime_launch > 0) return;
        launching = 0;
        if (crosscheck_on()) crosscheck_launched(nf_scope_entry());
    }
}

static void on_graph_api(enum nf_cupti_role role, const CUpti_CallbackData *cb) {
    const void *params = cb->functionParams;
    switch (role) {
    case NF_CB_END_CAPTURE: {
        if (cb->callbackSite != CUPTI_API_EXIT) return;
        const cuStreamEndCapture_params *p = params;
        uint32_t gid = 0;
        if (*(const CUresult *)cb->functionReturnValue == CUDA_SUCCESS && p->phGraph && *p->phGraph)
            C.graph_id(*p->phGraph, &gid);
        nf_gpu_capture_end((uint64_t)(uintptr_t)p->hStream, gid);
        return;
    }
    case NF_CB_GRAPH_LAUNCH: {
        if (cb->callbackSite != CUPTI_API_ENTER) return;
        const cuGraphLaunch_params *p = params;
        uint32_t eid = 0;
        if (C.graph_exec_id(p->hGraph, &eid) == CUPTI_SUCCESS) nf_gpu_graph_launch(eid, cb->correlationId);
        if (crosscheck_on()) crosscheck_launched(NULL); /* a graph replay is one range: not per op */
        return;
    }
    case NF_CB_BEGIN_CAPTURE: /* every variant starts with the stream */
        if (cb->callbackSite != CUPTI_API_ENTER) return;
        nf_gpu_capture_begin((uint64_t)(uintptr_t)*(const CUstream *)params);
        return;
    default:
        return;
    }
}

static void describe_device(CUcontext ctx) {
    uint32_t dev = 0;
    if (C.device_id(ctx, &dev) != CUPTI_SUCCESS) return;
    const char *chip = "";
    CUpti_Device_GetChipName_Params cp = {.structSize = SIZE(CHIP_NAME, CUpti_Device_GetChipName_Params),
                                          .deviceIndex = dev};
    if (C.chip_name && C.chip_name(&cp) == CUPTI_SUCCESS && cp.pChipName) chip = cp.pChipName;
    char name[64] = "";
    CUresult (*get)(CUdevice *, int) = NULL;
    CUresult (*get_name)(char *, int, CUdevice) = NULL;
    *(void **)(&get) = dlsym(RTLD_DEFAULT, "cuDeviceGet");
    *(void **)(&get_name) = dlsym(RTLD_DEFAULT, "cuDeviceGetName");
    CUdevice d;
    if (get && get_name && get(&d, (int)dev) == CUDA_SUCCESS) get_name(name, sizeof name, d);
    nf_gpu_device(dev, chip, name);
    if (nf_core_config()->crosscheck && !atomic_exchange(&context_seen, true)) {
        crosscheck_begin(ctx, dev, chip);
    }
}

static void on_resource(CUpti_CallbackId id, const CUpti_ResourceData *r) {
    const CUpti_GraphData *g = r->resourceDescriptor;
    uint32_t gid = 0, eid = 0;
    uint64_t node = 0, original = 0;
    switch (id) {
    case CUPTI_CBID_RESOURCE_CONTEXT_CREATED:
        describe_device(r->context);
        return;
    case CUPTI_CBID_RESOURCE_GRAPHNODE_CREATED:
        if (g == NULL || g->nodeType != CU_GRAPH_NODE_TYPE_KERNEL) return;
        C.graph_id(g->graph, &gid);
        C.node_id(g->node, &node);
        if (launching) nf_gpu_launch_captured(launching, gid, node); /* captured launch */
        else nf_gpu_graph_node(gid, node, nf_scope_entry());       /* built by hand */
        return;
    case CUPTI_CBID_RESOURCE_GRAPHNODE_CLONED:
        if (g == NULL || g->nodeType != CU_GRAPH_NODE_TYPE_KERNEL) return;
        C.node_id(g->originalNode, &original);
        C.node_id(g->node, &node);
        nf_gpu_graph_node_cloned(original, node);
        return;
    case CUPTI_CBID_RESOURCE_GRAPHEXEC_CREATED:
        if (g == NULL) return;
        C.graph_id(g->graph, &gid);
        C.graph_exec_id(g->graphExec, &eid);
        nf_gpu_graph_instantiate(gid, eid);
        return;
    default:
        return;
    }
}

static void CUPTIAPI on_callback(void *user, CUpti_CallbackDomain domain, CUpti_CallbackId id,
                                 const void *data) {
    (void)user;
    if (domain == CUPTI_CB_DOMAIN_RESOURCE) {
        on_resource(id, data);
        return;
    }
    enum nf_cupti_role role = nf_cupti_role_of((uint32_t)domain, id);
    if (role == NF_CB_RUNTIME_LAUNCH) on_launch(data, true);
    else if (role == NF_CB_DRIVER_LAUNCH) on_launch(data, false);
    else if (role != 0) on_graph_api(role, data);
}

/* ------------------------------------------------------------ start and end */

static void finish(void) {
    crosscheck_finish();
    C.flush_all(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
}

/* Which CUPTI this is and what it can do: its version (asked only once the driver is
 * in: CUPTI 13.2's cuptiGetVersion recurses until the stack overflows when there is
 * no libcuda.so.1), its layout row against the build headers', its entry points. */
static bool adopt_cupti(void) {
    void *driver = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
    if (driver == NULL) {
        gpu_off("InitializeInjection ran without the CUDA driver (libcuda.so.1) loaded; CUPTI "
                "was not asked%s", "");
        return false;
    }
    dlclose(driver);
    char why[256];
    if ((lib = nf_cm_open(NULL, why, sizeof why)) == NULL) {
        gpu_off("%s", why);
        return false;
    }
    uint32_t version = 0;
    *(void **)(&C.get_version) = dlsym(nf_cm_handle(lib), "cuptiGetVersion");
    if (C.get_version == NULL || C.get_version(&version) != CUPTI_SUCCESS) {
        gpu_off("%s lacks cuptiGetVersion, or it failed", nf_cm_path(lib));
        return false;
    }
    nf_cupti_layout built;
    nf_cupti_layout_from_headers(&built);
    nf_cupti_plan_for(nf_cm_handle(lib), nf_cm_path(lib), version, &built, &plan);
    if (!plan.attribution) {
        gpu_off("%s", plan.attribution_off);
        return false;
    }
    running = plan.layout;
    nf_cm_set_layout(lib, running);
    load_symbols(plan.crosscheck);
    return true;
}

__attribute__((visibility("default"))) int InitializeInjection(void) {
    static atomic_bool once;
    if (!atomic_load(&armed) || atomic_exchange(&once, true)) return 1;
    atomic_store(&injected, true);
    if (!adopt_cupti()) return 1;
    /* Said now rather than at the first context: which CUPTI cannot cross-check. */
    if (nf_core_config()->crosscheck && !plan.crosscheck) crosscheck_off("%s", plan.crosscheck_off);
    CUptiResult r = C.subscribe(&subscriber, on_callback, NULL);
    if (r != CUPTI_SUCCESS) {
        gpu_off(r == CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED
                    ? "another CUPTI client (a profiler) is subscribed%s"
                    : "CUPTI refused a subscriber: %s",
                r == CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED ? "" : cupti_error(r));
        return 1;
    }
    /* The launch and graph callbacks this CUPTI has (CUDA 13's __cudaLaunchKernel is
     * not in 12.x, whose cuptiEnableCallback would refuse it). */
    bool ok = C.enable_domain(1, subscriber, CUPTI_CB_DOMAIN_RESOURCE) == CUPTI_SUCCESS;
    for (size_t i = 0; i < nf_cupti_cbid_count; i++) {
        const nf_cupti_cbid *cb = &nf_cupti_cbids[i];
        if (cb->role == NF_CB_RESOURCE || !nf_cupti_has_cbid(running, cb)) continue;
        ok = C.enable_callback(1, subscriber, (CUpti_CallbackDomain)cb->domain, cb->id) == CUPTI_SUCCESS && ok;
    }
    ok = C.register_callbacks(buffer_requested, buffer_completed) == CUPTI_SUCCESS && ok;
    ok = C.activity_enable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) == CUPTI_SUCCESS && ok;
    if (!ok) {
        gpu_off("CUPTI would not enable the callbacks and kernel records this needs%s", "");
        return 1;
    }
    nf_step_set_gpu_clock(cupti_now);
    /* Runs first in the report (from Python's end or C's atexit, whichever comes
     * first): the records of the last kernels are in by then. */
    nf_core_before_finish(finish);
    return 1;
}

#endif
