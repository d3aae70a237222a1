/* Dense tensor-core peaks per chip and dtype, for "utilisation" in the GPU report. */
#ifndef NF_GPU_PEAK_H
#define NF_GPU_PEAK_H

/* Peak TFLOP/s of chip (CUPTI's name: "GH100", "GA100", "GB100") for a torch dtype
 * name ("float16", "bfloat16", "float32" as TF32, "float8_*"); 0 when not known. */
double nf_gpu_peak_tflops(const char *chip, const char *dtype);

#endif
