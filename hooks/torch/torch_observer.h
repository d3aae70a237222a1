/* The interface between libnaflops.so (C) and the libtorch observer
 * (torch_observer.cpp, built per torch version as naflops-torch-<version>.so and
 * loaded with dlopen once the program has imported torch).
 *
 * The observer puts a kernel at the dispatcher's BackendSelect key for the aten ops
 * PyTorch's FlopCounterMode counts and hands their calls to the host, with their
 * FLOPs; the host turns them into ledger rows. Plain C on both sides of the line. */
#ifndef NF_TORCH_OBSERVER_H
#define NF_TORCH_OBSERVER_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NF_OBSERVER_ABI 5
#define NF_ATEN_MAX_SHAPES 3
#define NF_ATEN_MAX_RANK 6

typedef enum nf_step_event {
    NF_STEP_EVENT_OPTIMIZER_BEGIN = 0,
    NF_STEP_EVENT_OPTIMIZER_END,
    NF_STEP_EVENT_COMPILE
} nf_step_event;

/* One counted aten op call. */
typedef struct nf_aten_call {
    const char *op;      /* "aten::mm" */
    bool backward;       /* run by the autograd engine (inside a backward node) */
    bool recompute;      /* a forward op re-run inside a backward node (checkpointing) */
    int nshapes;         /* the operands the formula reads, as shown in reports */
    int rank[NF_ATEN_MAX_SHAPES];
    int64_t shape[NF_ATEN_MAX_SHAPES][NF_ATEN_MAX_RANK];
    const char *dtype;   /* "float32", as Python spells torch dtypes */
    const char *device;  /* "cpu", "cuda:0" */
    uint64_t flops_hi, flops_lo; /* FLOPs of the call, FlopCounterMode's formula */
    uint16_t module;     /* the host's id of the nn.Module that ran it (0: none) */
} nf_aten_call;

/* One call of a NATTEN dispatcher op (NATTEN 0.20+'s libnatten custom ops,
 * natten::na2d_forward, natten::hopper_na3d_backward, natten::fmha_forward, ...),
 * read from its own arguments as NATTEN's Python entry point would read its call:
 * the key the host builds from it is the one the Python wrapper builds, so their rows
 * merge. */
typedef struct nf_natten_call {
    const char *op;      /* the public entry point: "na1d", "na2d", "na3d", "attention" */
    const char *backend; /* as natten_targets.c names NATTEN's backends: "cutlass-fna" */
    bool attention;      /* plain attention (FMHA), else fused neighborhood attention */
    bool backward;       /* a backward op (natten::*_backward) */
    bool recompute;      /* a forward op re-run inside a backward node */
    int na_dim;          /* 1..3 (1 for attention) */
    int rank[3];         /* query, key, value: [B, *spatial, H, D] */
    int64_t shape[3][NF_ATEN_MAX_RANK];
    int64_t kernel[3], stride[3], dilation[3];
    uint8_t causal_mask; /* bit i: causal along spatial dim i */
    int64_t extra_kv;    /* additional tokens every query attends (reference backend) */
    const char *dtype;
    const char *device;
    uint16_t module;     /* as nf_aten_call's */
} nf_natten_call;

typedef struct nf_observer_host {
    int abi;                            /* NF_OBSERVER_ABI */
    bool (*natten_active)(void);        /* a NATTEN op runs on this thread */
    void (*count)(const nf_aten_call *call);
    void (*say)(const char *line);      /* one line to the user, once per cause */
    /* A NATTEN dispatcher op is about to run on this thread: opens NATTEN's scope for
     * it (what it runs inside is its own). True: natten_end must follow, with whether
     * the op returned (a call that raised did no work and is not counted). */
    bool (*natten_begin)(const nf_natten_call *call);
    void (*natten_end)(bool ran);
    /* torch.profiler.record_function regions the counter reads (they run whether or
     * not a profiler is on): an outermost Optimizer.step began or returned on this
     * thread, or torch.compile compiled (Dynamo's "... (dynamo_timed)" regions).
     * NULL: steps are off, and the observer puts no kernel on record_function. */
    void (*step_event)(nf_step_event what);
    /* The host's id of the nn.Module running on this thread (from the Python stack,
     * taking the GIL; 0 outside any). The observer asks it for forward work and
     * remembers, per autograd node, the module it was created in: backward work
     * belongs to the module whose forward made its node. NULL: modules are off. */
    uint16_t (*module_here)(void);
} nf_observer_host;

/* Exported by the observer. start registers the kernels; 0 on success, else -1
 * with the reason said through host->say. natten_enter/leave bracket each outermost
 * NATTEN call (on the calling thread), so that the backward nodes it created are
 * recognised later and what runs inside them is left to NATTEN's rule. */
typedef int (*nf_observer_start_fn)(const nf_observer_host *host);
/* naflops_observer_steps (same type): with the whole-model count off, puts only the
 * record_function kernels that find optimizer steps. */
/* naflops_observer_counts_natten: 1 once start has put the observer's kernel on
 * NATTEN's dispatcher ops (so that those ops are counted there, and the compiled
 * path leaves them alone), else 0. */
typedef int (*nf_observer_counts_natten_fn)(void);
typedef void (*nf_observer_scope_fn)(void);

#ifdef __cplusplus
}
#endif

#endif
