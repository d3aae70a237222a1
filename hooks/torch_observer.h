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

#define NF_OBSERVER_ABI 2
#define NF_ATEN_MAX_SHAPES 3
#define NF_ATEN_MAX_RANK 6

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
} nf_aten_call;

typedef struct nf_observer_host {
    int abi;                            /* NF_OBSERVER_ABI */
    bool (*natten_active)(void);        /* a NATTEN op runs on this thread */
    void (*count)(const nf_aten_call *call);
    void (*say)(const char *line);      /* one line to the user, once per cause */
} nf_observer_host;

/* Exported by the observer. start registers the kernels; 0 on success, else -1
 * with the reason said through host->say. natten_enter/leave bracket each outermost
 * NATTEN call (on the calling thread), so that the backward nodes it created are
 * recognised later and what runs inside them is left to NATTEN's rule. */
typedef int (*nf_observer_start_fn)(const nf_observer_host *host);
typedef void (*nf_observer_scope_fn)(void);

#ifdef __cplusplus
}
#endif

#endif
