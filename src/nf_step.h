/* Training steps: where each one ends (an optimizer step, a named function's return),
 * the FLOPs, wall time and GPU busy time of each, and the steady state's figures.
 *
 * A step's FLOPs are the ledger's totals at its end minus those at its start, so
 * counting itself pays nothing for steps: only a boundary reads the ledger (once per
 * optimizer step). Memory is bounded: every step is kept up to NF_STEP_RECORDS
 * records; then adjacent steady records are merged pairwise (each record then holds
 * 2, 4, ... steps), while the totals stay exact. */
#ifndef NF_STEP_H
#define NF_STEP_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "nf_config.h"
#include "nf_u128.h"

#define NF_STEP_RECORDS 1024

/* How a hook saw a boundary. */
typedef enum nf_step_cause {
    NF_STEP_CAUSE_OPTIMIZER, /* an outermost Optimizer.step returned */
    NF_STEP_CAUSE_CALL       /* an outermost call of NAFLOPS_STEP's function returned */
} nf_step_cause;

/* One record: one step, or (a long job) several adjacent steady steps. */
typedef struct nf_step_record {
    uint64_t first;           /* its first step, counted from 1 */
    uint64_t steps;           /* how many steps it holds */
    uint64_t start_ns;        /* from the counter's start */
    uint64_t ns;              /* wall time of its steps */
    nf_u128 model, hardware, natten; /* FLOPs: forward + backward; every pass; NATTEN's model */
    uint64_t gpu_ns;          /* GPU busy time (kernels' union, per record) */
    uint64_t gpu_start, gpu_end; /* its interval on the GPU clock; 0 when none */
    uint64_t gpu_until;       /* the latest kernel end counted in gpu_ns */
    uint32_t compiled;        /* steps in it during which torch.compile compiled */
    bool warmup;              /* the first step, and compiling steps right after it */
} nf_step_record;

/* The steps so far, copied out for a report. */
typedef struct nf_step_view {
    nf_step_mode mode;
    const char *boundary;     /* "optimizer", "backward", "function m:q" */
    uint64_t count, warmup, recompiled, bucket;
    nf_step_record total;     /* sums over every ended step (exact) */
    bool gpu;                 /* GPU kernels were seen (gpu_ns means something) */
    int n;
    nf_step_record records[NF_STEP_RECORDS];
} nf_step_view;

/* Steady-state figures: steps that are neither warm-up nor compiling, each record
 * weighted by its steps. */
typedef struct nf_step_steady {
    uint64_t steps;
    double seconds_median, seconds_p10, seconds_p90;
    double model_per_step, hardware_per_step; /* means */
    double flops_per_s_median;               /* model FLOPs / s */
    double hardware_per_s_median;
} nf_step_steady;

/* Sets what ends a step (from NAFLOPS_STEP) and the counter's start time. */
void nf_step_configure(const nf_config *cfg);

/* Hooks. Optimizer steps nest per thread (an optimizer whose step calls another's):
 * only the outermost one ends a step. */
void nf_step_optimizer_begin(void);
void nf_step_optimizer_end(void);
/* NAFLOPS_STEP's function returned (the hook counts outermost calls itself). */
void nf_step_call_end(void);
/* NAFLOPS_STEP's function was wrapped (else the summary says it never was). */
void nf_step_target_found(void);
bool nf_step_target_missing(void);

/* torch.compile compiled something: the step running now is a compiling step. */
void nf_step_note_compile(void);

/* The GPU clock kernel records are timed by (CUPTI's); set by the CUDA adapter, so
 * that boundaries note where they fall on it. */
void nf_step_set_gpu_clock(uint64_t (*now)(void));
/* A kernel ran on the GPU from start to end (GPU clock): its time goes to the step
 * that was running when it started. */
void nf_step_gpu_kernel(uint64_t start, uint64_t end);

/* Copies the steps so far; false when no step ended (or steps are off). The step in
 * progress is not included. */
bool nf_step_view_now(nf_step_view *out);
/* The steady state of a view; false when it has no steady step. */
bool nf_step_steady_of(const nf_step_view *v, nf_step_steady *out);

/* The summary's step lines and the dump's "steps" object. peak: FLOP/s (0 when not
 * known), peak_source says where it came from. */
void nf_step_report_table(FILE *f, const nf_step_view *v, double peak, const char *peak_source,
                          nf_units units);
void nf_step_report_json(FILE *f, const nf_step_view *v, double peak, const char *peak_source);

/* Forgets every step (a fork child starts empty). */
void nf_step_reset(void);

#endif
