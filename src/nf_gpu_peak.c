#include "nf_gpu_peak.h"

#include <string.h>

/* Dense (no 2:4 sparsity) tensor-core TFLOP/s of the SXM part of each chip; a PCIe
 * card of the same chip runs fewer SMs at lower clocks, so its utilisation reads low.
 *  - GH100 (H100 SXM5; the H200 has the same SMs and clocks): NVIDIA H100 datasheet,
 *    FP16/BF16 1,979 and FP8 3,958 TFLOP/s "with sparsity", TF32 989 with sparsity;
 *    halved: 989.4, 1978.9, 494.7.
 *  - GA100 (A100 SXM4): NVIDIA A100 datasheet, FP16/BF16 312, TF32 156 dense; no FP8.
 *  - GB100 (HGX B200, 1000 W): NVIDIA HGX B200 datasheet, FP16/BF16 4.5 PFLOP/s,
 *    FP8 9 PFLOP/s, TF32 2.2 PFLOP/s, all with sparsity; halved: 2250, 4500, 1100.
 * float32 is compared with the TF32 peak: NATTEN's float32 kernels run on tensor
 * cores only with TF32 allowed; otherwise utilisation reads against a peak they cannot
 * reach, which the report's header says. */
typedef struct peak {
    const char *chip;
    double f16, bf16, tf32, fp8;
} peak;

static const peak peaks[] = {
    {"GH100", 989.4, 989.4, 494.7, 1978.9},
    {"GA100", 312.0, 312.0, 156.0, 0.0},
    {"GB100", 2250.0, 2250.0, 1100.0, 4500.0},
};

double nf_gpu_peak_tflops(const char *chip, const char *dtype) {
    if (chip == NULL || dtype == NULL) return 0.0;
    for (size_t i = 0; i < sizeof peaks / sizeof peaks[0]; i++) {
        const peak *p = &peaks[i];
        if (strcmp(chip, p->chip) != 0) continue;
        if (strcmp(dtype, "float16") == 0 || strcmp(dtype, "half") == 0) return p->f16;
        if (strcmp(dtype, "bfloat16") == 0) return p->bf16;
        if (strcmp(dtype, "float32") == 0 || strcmp(dtype, "float") == 0) return p->tf32;
        if (strncmp(dtype, "float8", 6) == 0) return p->fp8;
        return 0.0;
    }
    return 0.0;
}
