/* Tensor-core metric selection through CUPTI's profiler host API. See cupti_metrics.h.
 *
 * The metric names differ by chip (measured with this API on CUDA 13.0: GH100 has
 * sm__ops_path_tensor_src_fp16 and ..._src_fp8; GA100 and GB100 split fp16 by
 * destination, ..._src_fp16_dst_fp16 and ..._dst_fp32; GB100 counts fp8 together with
 * fp6 and fp4; GA100 has no fp8), so each dtype has candidate groups in order of
 * preference and the first group whose every metric is in the chip's list is used:
 * nothing here assumes a name exists. */
#include "cupti_metrics.h"

#include <stdio.h>
#include <string.h>

unsigned nf_tc_dtype_bit(const char *d) {
    if (d == NULL) return 0;
    if (strcmp(d, "float16") == 0 || strcmp(d, "half") == 0) return NF_TC_FP16;
    if (strcmp(d, "bfloat16") == 0) return NF_TC_BF16;
    if (strcmp(d, "float32") == 0 || strcmp(d, "float") == 0 || strcmp(d, "tf32") == 0)
        return NF_TC_TF32;
    if (strncmp(d, "float8", 6) == 0) return NF_TC_FP8;
    return 0;
}

const char *nf_tc_dtype_name(unsigned bit) {
    switch (bit) {
    case NF_TC_FP16: return "float16";
    case NF_TC_BF16: return "bfloat16";
    case NF_TC_TF32: return "tf32";
    case NF_TC_FP8: return "fp8";
    default: return "?";
    }
}

#ifndef NF_HAVE_CUPTI

/* Built without CUPTI's headers: the cross-check is off and says why. */
nf_cm_lib *nf_cm_open(const char *path, char *why, size_t len) {
    (void)path;
    snprintf(why, len, "naflops was built without CUPTI's headers (CUDA_HOME at build time)");
    return NULL;
}
void nf_cm_close(nf_cm_lib *lib) { (void)lib; }
void *nf_cm_handle(nf_cm_lib *lib) { return (void)lib, NULL; }
const char *nf_cm_path(const nf_cm_lib *lib) { return (void)lib, ""; }
bool nf_cm_chip_supported(nf_cm_lib *lib, const char *chip) { return (void)lib, (void)chip, false; }
int nf_cm_choose(nf_cm_lib *lib, const char *chip, unsigned dtypes, nf_cm_choice *c, char *why,
                 size_t len) {
    (void)lib, (void)chip, (void)dtypes, (void)c;
    snprintf(why, len, "naflops was built without CUPTI's headers");
    return -1;
}
void nf_cm_choice_free(nf_cm_lib *lib, nf_cm_choice *c) { (void)lib, (void)c; }
const char *nf_cm_host_missing(const nf_cm_lib *lib) { return (void)lib, "CUPTI's headers"; }
void nf_cm_set_layout(nf_cm_lib *lib, const struct nf_cupti_layout *running) { (void)lib, (void)running; }

#else

#include <dlfcn.h>
#include <stdlib.h>

#include "cupti_layout.h"

/* CUPTI 12.4's headers have no profiler host API: built with them, libcupti is still
 * opened (for the adapter's other entry points) but no metric can be chosen. */
#if __has_include(<cupti_profiler_host.h>)
#define NF_CM_HOST 1
/* Includes <string>, found in hooks/cuda/cupti_shim (see the file there). */
#include <cupti_profiler_host.h>
#else
#define NF_CM_HOST 0
#endif

#ifndef NF_CUDA_HOME
#define NF_CUDA_HOME "/usr/local/cuda"
#endif

struct nf_cm_lib {
    void *handle;
    char path[512];
    const char *host_missing; /* the first host API entry point this libcupti lacks */
    const nf_cupti_layout *running; /* its layout row (NULL: the build headers' sizes) */
#if NF_CM_HOST
    CUptiResult (*get_chips)(CUpti_Profiler_Host_GetSupportedChips_Params *);
    CUptiResult (*init)(CUpti_Profiler_Host_Initialize_Params *);
    CUptiResult (*deinit)(CUpti_Profiler_Host_Deinitialize_Params *);
    CUptiResult (*base_metrics)(CUpti_Profiler_Host_GetBaseMetrics_Params *);
    CUptiResult (*add_metrics)(CUpti_Profiler_Host_ConfigAddMetrics_Params *);
    CUptiResult (*image_size)(CUpti_Profiler_Host_GetConfigImageSize_Params *);
    CUptiResult (*image)(CUpti_Profiler_Host_GetConfigImage_Params *);
    CUptiResult (*passes)(CUpti_Profiler_Host_GetNumOfPasses_Params *);
#endif
};

/* A profiler structure's structSize for the CUPTI in use. */
#define SIZE(lib, id, type) nf_cupti_struct_size((lib)->running, NF_PS_##id, type##_STRUCT_SIZE)

/* The copy already loaded (torch's kineto, or the program's own) comes first: two
 * CUPTIs in one process cannot both subscribe. Then the names the loader finds, then
 * the toolkit's places. */
static void *open_cupti(const char *path, char *where, size_t len) {
    static const char *const sonames[] = {"libcupti.so", "libcupti.so.13", "libcupti.so.12"};
    void *h;
    if (path) {
        snprintf(where, len, "%s", path);
        return dlopen(path, RTLD_NOW | RTLD_LOCAL);
    }
    for (size_t i = 0; i < sizeof sonames / sizeof *sonames; i++)
        if ((h = dlopen(sonames[i], RTLD_NOW | RTLD_NOLOAD)) != NULL) {
            snprintf(where, len, "%s (already loaded)", sonames[i]);
            return h;
        }
    for (size_t i = 0; i < sizeof sonames / sizeof *sonames; i++)
        if ((h = dlopen(sonames[i], RTLD_NOW | RTLD_LOCAL)) != NULL) {
            snprintf(where, len, "%s", sonames[i]);
            return h;
        }
    const char *homes[] = {getenv("CUDA_HOME"), getenv("CUDA_PATH"), NF_CUDA_HOME};
    const char *dirs[] = {"lib64", "lib", "extras/CUPTI/lib64", "targets/x86_64-linux/lib",
                          "targets/sbsa-linux/lib"};
    for (size_t i = 0; i < 3; i++) {
        if (homes[i] == NULL || *homes[i] == '\0') continue;
        for (size_t j = 0; j < sizeof dirs / sizeof *dirs; j++) {
            snprintf(where, len, "%s/%s/libcupti.so", homes[i], dirs[j]);
            if ((h = dlopen(where, RTLD_NOW | RTLD_LOCAL)) != NULL) return h;
        }
    }
    snprintf(where, len, "libcupti.so");
    return NULL;
}

nf_cm_lib *nf_cm_open(const char *path, char *why, size_t len) {
    nf_cm_lib *lib = calloc(1, sizeof *lib);
    if (lib == NULL) {
        snprintf(why, len, "out of memory");
        return NULL;
    }
    lib->handle = open_cupti(path, lib->path, sizeof lib->path);
    if (lib->handle == NULL) {
        snprintf(why, len, "libcupti not found (looked in the loader's path and CUDA_HOME, "
                           "default " NF_CUDA_HOME ")");
        free(lib);
        return NULL;
    }
    /* CUPTI older than 12.6 (12.4) has no host API: the library still opens, and
     * choosing metrics says which entry point is missing. */
#if NF_CM_HOST
#define SYM(field, name)                                                                          \
    if ((*(void **)(&lib->field) = dlsym(lib->handle, name)) == NULL && !lib->host_missing)       \
        lib->host_missing = name;
    SYM(get_chips, "cuptiProfilerHostGetSupportedChips");
    SYM(init, "cuptiProfilerHostInitialize");
    SYM(deinit, "cuptiProfilerHostDeinitialize");
    SYM(base_metrics, "cuptiProfilerHostGetBaseMetrics");
    SYM(add_metrics, "cuptiProfilerHostConfigAddMetrics");
    SYM(image_size, "cuptiProfilerHostGetConfigImageSize");
    SYM(image, "cuptiProfilerHostGetConfigImage");
    SYM(passes, "cuptiProfilerHostGetNumOfPasses");
#undef SYM
#else
    lib->host_missing = "the profiler host API in the build headers";
#endif
    return lib;
}

const char *nf_cm_host_missing(const nf_cm_lib *lib) { return lib ? lib->host_missing : NULL; }

void nf_cm_set_layout(nf_cm_lib *lib, const nf_cupti_layout *running) {
    if (lib) lib->running = running;
}

void nf_cm_close(nf_cm_lib *lib) {
    if (lib == NULL) return;
    dlclose(lib->handle);
    free(lib);
}

void *nf_cm_handle(nf_cm_lib *lib) { return lib ? lib->handle : NULL; }
const char *nf_cm_path(const nf_cm_lib *lib) { return lib ? lib->path : ""; }

#if !NF_CM_HOST

bool nf_cm_chip_supported(nf_cm_lib *lib, const char *chip) { return (void)lib, (void)chip, false; }
int nf_cm_choose(nf_cm_lib *lib, const char *chip, unsigned dtypes, nf_cm_choice *c, char *why,
                 size_t len) {
    (void)lib, (void)dtypes;
    memset(c, 0, sizeof *c);
    snprintf(why, len, "naflops was built with CUPTI headers that have no profiler host API "
                       "(chip %s)", chip);
    return -1;
}
void nf_cm_choice_free(nf_cm_lib *lib, nf_cm_choice *c) { (void)lib, (void)c; }

#else

bool nf_cm_chip_supported(nf_cm_lib *lib, const char *chip) {
    if (lib->host_missing) return false;
    CUpti_Profiler_Host_GetSupportedChips_Params p = {
        .structSize = SIZE(lib, HOST_CHIPS, CUpti_Profiler_Host_GetSupportedChips_Params)};
    if (lib->get_chips(&p) != CUPTI_SUCCESS) return false;
    for (size_t i = 0; i < p.numChips; i++)
        if (strcmp(p.ppChipNames[i], chip) == 0) return true;
    return false;
}

/* Candidate groups per dtype, best first; a group is used when all its metrics exist
 * and its values are summed. */
typedef struct candidates {
    unsigned dtype;
    const char *group[2][2];
} candidates;

static const candidates table[] = {
    {NF_TC_FP16,
     {{"sm__ops_path_tensor_src_fp16", NULL},
      {"sm__ops_path_tensor_src_fp16_dst_fp16", "sm__ops_path_tensor_src_fp16_dst_fp32"}}},
    {NF_TC_BF16, {{"sm__ops_path_tensor_src_bf16_dst_fp32", NULL}, {NULL, NULL}}},
    {NF_TC_TF32, {{"sm__ops_path_tensor_src_tf32_dst_fp32", NULL}, {NULL, NULL}}},
    /* Blackwell counts fp8 with fp6 and fp4 in one path; NATTEN has no fp6/fp4. */
    {NF_TC_FP8,
     {{"sm__ops_path_tensor_src_fp8", NULL},
      {"sm__ops_path_tensor_src_fp4_fp6_fp8_dst_fp16",
       "sm__ops_path_tensor_src_fp4_fp6_fp8_dst_fp32"}}},
};

static bool listed(const char *const *names, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0) return true;
    return false;
}

static void deinit(nf_cm_lib *lib, void *host) {
    CUpti_Profiler_Host_Deinitialize_Params d = {
        .structSize = SIZE(lib, HOST_DEINIT, CUpti_Profiler_Host_Deinitialize_Params), .pHostObject = host};
    if (host) lib->deinit(&d);
}

int nf_cm_choose(nf_cm_lib *lib, const char *chip, unsigned dtypes, nf_cm_choice *c, char *why,
                 size_t len) {
    memset(c, 0, sizeof *c);
    snprintf(c->chip, sizeof c->chip, "%s", chip);
    c->asked = dtypes;
    if (lib->host_missing) {
        snprintf(why, len, "%s lacks %s (no profiler host API before CUDA 12.6)", lib->path,
                 lib->host_missing);
        return -1;
    }
    CUpti_Profiler_Host_Initialize_Params ip = {
        .structSize = SIZE(lib, HOST_INIT, CUpti_Profiler_Host_Initialize_Params),
        .profilerType = CUPTI_PROFILER_TYPE_RANGE_PROFILER,
        .pChipName = chip};
    if (lib->init(&ip) != CUPTI_SUCCESS || ip.pHostObject == NULL) {
        snprintf(why, len, "CUPTI's host API does not know chip %s", chip);
        return -1;
    }
    c->host_object = ip.pHostObject;
    CUpti_Profiler_Host_GetBaseMetrics_Params bp = {
        .structSize = SIZE(lib, HOST_BASE_METRICS, CUpti_Profiler_Host_GetBaseMetrics_Params),
        .pHostObject = ip.pHostObject,
        .metricType = CUPTI_METRIC_TYPE_COUNTER};
    if (lib->base_metrics(&bp) != CUPTI_SUCCESS) {
        snprintf(why, len, "CUPTI could not list the metrics of chip %s", chip);
        nf_cm_choice_free(lib, c);
        return -1;
    }
    const char *names[NF_CM_MAX_METRICS];
    for (size_t t = 0; t < sizeof table / sizeof *table; t++) {
        if (!(dtypes & table[t].dtype)) continue;
        for (int g = 0; g < 2; g++) {
            const char *const *group = table[t].group[g];
            if (group[0] == NULL) break;
            bool all = true;
            for (int m = 0; m < 2 && group[m]; m++) all = all && listed(bp.ppMetricNames, bp.numMetrics, group[m]);
            if (!all) continue;
            for (int m = 0; m < 2 && group[m] && c->n < NF_CM_MAX_METRICS; m++) {
                snprintf(c->metric[c->n], NF_CM_NAME_LEN, "%s.sum", group[m]);
                c->dtype[c->n] = table[t].dtype;
                names[c->n] = c->metric[c->n];
                c->n++;
            }
            c->covered |= table[t].dtype;
            break;
        }
    }
    if (c->n == 0) return 0; /* nothing to read for these dtypes here: no image, 0 passes */

    CUpti_Profiler_Host_ConfigAddMetrics_Params ap = {
        .structSize = SIZE(lib, HOST_ADD_METRICS, CUpti_Profiler_Host_ConfigAddMetrics_Params),
        .pHostObject = ip.pHostObject,
        .ppMetricNames = names,
        .numMetrics = (size_t)c->n};
    CUpti_Profiler_Host_GetConfigImageSize_Params sp = {
        .structSize = SIZE(lib, HOST_IMAGE_SIZE, CUpti_Profiler_Host_GetConfigImageSize_Params),
        .pHostObject = ip.pHostObject};
    if (lib->add_metrics(&ap) != CUPTI_SUCCESS || lib->image_size(&sp) != CUPTI_SUCCESS ||
        sp.configImageSize == 0 || (c->image = malloc(sp.configImageSize)) == NULL) {
        snprintf(why, len, "CUPTI could not configure the metrics for chip %s", chip);
        nf_cm_choice_free(lib, c);
        return -1;
    }
    c->image_size = sp.configImageSize;
    CUpti_Profiler_Host_GetConfigImage_Params gp = {
        .structSize = SIZE(lib, HOST_IMAGE, CUpti_Profiler_Host_GetConfigImage_Params),
        .pHostObject = ip.pHostObject,
        .configImageSize = c->image_size,
        .pConfigImage = c->image};
    CUpti_Profiler_Host_GetNumOfPasses_Params np = {
        .structSize = SIZE(lib, HOST_PASSES, CUpti_Profiler_Host_GetNumOfPasses_Params),
        .configImageSize = c->image_size,
        .pConfigImage = c->image};
    if (lib->image(&gp) != CUPTI_SUCCESS || lib->passes(&np) != CUPTI_SUCCESS) {
        snprintf(why, len, "CUPTI could not build the configuration image for chip %s", chip);
        nf_cm_choice_free(lib, c);
        return -1;
    }
    c->passes = np.numOfPasses;
    return 0;
}

void nf_cm_choice_free(nf_cm_lib *lib, nf_cm_choice *c) {
    if (lib) deinit(lib, c->host_object);
    free(c->image);
    c->image = NULL;
    c->host_object = NULL;
    c->image_size = 0;
}

#endif /* NF_CM_HOST */

#endif
