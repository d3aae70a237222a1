/* Which tensor-core metrics to read for the dtypes in use, on a given chip, through
 * CUPTI's profiler host API (no GPU needed): the metric names that exist on that chip,
 * the configuration image the range profiler takes, and how many passes (kernel
 * replays) that configuration costs. libcupti is dlopen'd: libnaflops.so links
 * against libc alone.
 *
 * (Not CUPTI's own cupti_metrics.h, which this file's directory shadows only for
 * quoted includes from hooks/.) */
#ifndef NF_HOOKS_CUPTI_METRICS_H
#define NF_HOOKS_CUPTI_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The dtypes whose tensor-core work can be read back. */
enum {
    NF_TC_FP16 = 1u << 0,
    NF_TC_BF16 = 1u << 1,
    NF_TC_TF32 = 1u << 2, /* float32 tensors on TF32 tensor cores */
    NF_TC_FP8 = 1u << 3,
    NF_TC_ALL = 0xfu,
};

/* The dtype bit of a torch dtype name ("float16", "bfloat16", "float32",
 * "float8_e4m3fn", ...); 0 for others. */
unsigned nf_tc_dtype_bit(const char *dtype);
const char *nf_tc_dtype_name(unsigned bit);

#define NF_CM_MAX_METRICS 8
#define NF_CM_NAME_LEN 96

typedef struct nf_cm_choice {
    char chip[32];
    unsigned asked;    /* dtypes asked for */
    unsigned covered;  /* those with a metric on this chip */
    int n;
    char metric[NF_CM_MAX_METRICS][NF_CM_NAME_LEN]; /* with the ".sum" rollup */
    unsigned dtype[NF_CM_MAX_METRICS];              /* the dtype bit each one counts */
    size_t passes;
    uint8_t *image;     /* the configuration image (malloc'd) */
    size_t image_size;
    void *host_object;  /* CUPTI's host object, kept for evaluating counter data */
} nf_cm_choice;

typedef struct nf_cm_lib nf_cm_lib;

/* Opens libcupti: path, or (NULL) the copy already in the process, then the usual
 * names and places under CUDA_HOME. NULL with a reason in why when it cannot. A
 * libcupti without the profiler host API opens (see nf_cm_host_missing). */
nf_cm_lib *nf_cm_open(const char *path, char *why, size_t len);
void nf_cm_close(nf_cm_lib *lib);
/* The dlopen handle, for the other CUPTI entry points. */
void *nf_cm_handle(nf_cm_lib *lib);
/* Where it was opened from. */
const char *nf_cm_path(const nf_cm_lib *lib);

/* The first profiler host API entry point this libcupti lacks (CUPTI 12.4 has none of
 * them), or NULL. */
const char *nf_cm_host_missing(const nf_cm_lib *lib);

/* The layout row of this libcupti (cupti_layout.h): the structSize passed to it is
 * never larger than it knows. NULL: the build headers' sizes. */
struct nf_cupti_layout;
void nf_cm_set_layout(nf_cm_lib *lib, const struct nf_cupti_layout *running);

/* Whether CUPTI's host API knows the chip. */
bool nf_cm_chip_supported(nf_cm_lib *lib, const char *chip);

/* Chooses the metrics of dtypes (NF_TC_* bits) that exist on chip, builds the
 * configuration image and counts its passes. 0 on success (choice->n may be 0 when
 * none of the dtypes has a metric there), -1 with a reason in why. */
int nf_cm_choose(nf_cm_lib *lib, const char *chip, unsigned dtypes, nf_cm_choice *choice,
                 char *why, size_t len);
void nf_cm_choice_free(nf_cm_lib *lib, nf_cm_choice *choice);

#endif
