/* The CUPTI glue: kernel launches, graph capture and replays, kernel activity records
 * and (opt-in) tensor-core metrics, turned into nf_gpu events.
 *
 * Loading. CUPTI must start after the program initialised CUDA, never before. The CUDA
 * driver's injection mechanism does exactly that: at cuInit it dlopens the library named
 * by CUDA_INJECTION64_PATH and calls its InitializeInjection. libnaflops.so exports one,
 * and nf_cupti_arm (called by the preload's constructor, in Python processes, before
 * the program runs) points CUDA_INJECTION64_PATH at libnaflops.so itself when it is
 * unset and NAFLOPS_GPU is on. A program that never initialises CUDA never loads CUPTI.
 * Where the variable already names another tool (Nsight Systems, ...), that tool keeps
 * it and the GPU part is off, said once. */
#ifndef NF_HOOKS_CUPTI_HOOKS_H
#define NF_HOOKS_CUPTI_HOOKS_H

/* Sets CUDA_INJECTION64_PATH to this library when unset and NAFLOPS_GPU is on. */
void nf_cupti_arm(void);

/* Called by the CUDA driver during cuInit (exported). Returns 1: a failure here
 * switches the GPU part off and never fails the program's cuInit. */
int InitializeInjection(void);

#endif
