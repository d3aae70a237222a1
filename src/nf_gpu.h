/* GPU bookkeeping: which NATTEN op each kernel belongs to, how long the kernels ran,
 * how often each CUDA graph was replayed, and (opt-in) the tensor-core work the
 * hardware counted. The core knows nothing of CUDA: hooks/cuda/cupti_hooks.c turns CUPTI
 * callbacks and activity records into the events below; the unit tests replay
 * recorded sequences of the same events.
 *
 * Attribution. A kernel launched while a NATTEN op runs on the launching thread
 * (nf_scope_entry() at the launch) belongs to that op; the activity record that
 * arrives later, from another thread and in any order, is joined to the launch by its
 * correlation id. Everything else is "other". The scope's entry is the op's key
 * without its backend (the backend is only known after the call); the report joins it
 * to the ledger rows that differ only in the backend (nf_gpu_same_op).
 *
 * CUDA graphs. Kernels launched during stream capture do not run; they become graph
 * nodes, and each replay runs them again. So:
 *   - the ledger calls counted while a capture was open (from capture begin to capture
 *     end, anywhere in the process) are the graph's per-replay counts; at capture end
 *     they are taken back out of the ledger, since nothing ran then;
 *   - each replay (graph launch) adds them again with nf_entry_add.
 * Warm-up steps run eagerly before the capture count once each, as they ran; N
 * replays then add N times the per-step count. A graph built without stream capture
 * has no per-replay counts (nothing was counted into it), only kernel time.
 * Graph kernels are attributed through their node ids: a node created during a
 * launch inside a NATTEN op belongs to that op, and instantiation clones keep it.
 *
 * Thread safety: one mutex around everything here. Launches come from many threads,
 * records from CUPTI's thread; none of this runs when the program uses no GPU.
 *
 * Memory is bounded: pending launches, graph nodes, ops, graphs and names per op each
 * have a cap; overflowing one says so once and the work counts as "other". */
#ifndef NF_GPU_H
#define NF_GPU_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "nf_ledger.h"

#define NF_GPU_PENDING_MAX 16384 /* launches in a NATTEN op awaiting their record */
#define NF_GPU_NODES_MAX 16384   /* graph kernel nodes created inside a NATTEN op */
#define NF_GPU_OPS_MAX 256       /* distinct ops with kernels */
#define NF_GPU_GRAPHS_MAX 256    /* captured graphs */
#define NF_GPU_EXECS_MAX 1024    /* instantiated graphs */
#define NF_GPU_NAMES_MAX 8       /* distinct kernel names kept per op; more go to "..." */
#define NF_GPU_NAME_LEN 160      /* kernel names are cut to this many bytes */
#define NF_GPU_DEVICES_MAX 16

/* One kernel activity record, as CUPTI reports it once the kernel ran. */
typedef struct nf_gpu_kernel {
    uint64_t correlation;   /* the launch's; for graph replays, the graph launch's */
    const char *name;       /* (mangled) kernel name; copied */
    uint32_t grid[3], block[3];
    uint64_t start_ns, end_ns;
    uint32_t device;
    uint64_t graph_id;      /* 0 unless run by a graph launch */
    uint64_t graph_node_id; /* 0 unless run by a graph launch */
} nf_gpu_kernel;

/* Starts from nothing (also after fork). */
void nf_gpu_reset(void);

/* Describes a device the first time it is used: chip ("GH100") and product name
 * ("NVIDIA H200"), for the peak table. */
void nf_gpu_device(uint32_t device, const char *chip, const char *name);

/* A kernel launch on this thread, with the op in scope then (NULL: none) and its
 * correlation id. Only launches inside an op are remembered. */
void nf_gpu_launch(nf_entry *op, uint64_t correlation);
/* The launch with this correlation id did not run but became node node_id of a graph
 * being captured (graph_id): forget it as a launch, remember the node's op. */
void nf_gpu_launch_captured(uint64_t correlation, uint64_t graph_id, uint64_t node_id);
/* A kernel node added to a graph outside a launch (explicit graph building). */
void nf_gpu_graph_node(uint64_t graph_id, uint64_t node_id, nf_entry *op);
/* Instantiation copies nodes: the clone belongs to the original's op. */
void nf_gpu_graph_node_cloned(uint64_t original_node_id, uint64_t node_id);

/* Stream capture: begin and end, matched by a key (the stream); the graph id is only
 * known at the end. A capture that fails (graph_id 0) gives its counts back as they
 * were, i.e. it leaves the ledger alone. */
void nf_gpu_capture_begin(uint64_t capture_key);
void nf_gpu_capture_end(uint64_t capture_key, uint64_t graph_id);
void nf_gpu_graph_instantiate(uint64_t graph_id, uint64_t exec_id);
/* One replay: adds the graph's per-replay counts to the ledger again. */
void nf_gpu_graph_launch(uint64_t exec_id, uint64_t correlation);

/* A kernel activity record. */
void nf_gpu_kernel_record(const nf_gpu_kernel *k);

/* Cross-check: tensor-core FLOPs the hardware counted for kernels of op (NULL:
 * other), already converted from math ops to FLOPs by the caller. */
void nf_gpu_crosscheck_add(nf_entry *op, double measured_flops);
/* Says whether the cross-check ran and, if not, why (shown in the report). */
void nf_gpu_crosscheck_state(bool ran, const char *note);
/* Why the GPU part is off, shown in the report ("" when on). */
void nf_gpu_set_off(const char *why);

/* ---------------------------------------------------------------- reading back */

typedef struct nf_gpu_name_stat {
    char name[NF_GPU_NAME_LEN];
    uint64_t count;
    uint64_t ns;
    uint32_t grid[3], block[3]; /* of the first such kernel */
} nf_gpu_name_stat;

typedef struct nf_gpu_op_stat {
    nf_entry *op;       /* the scope's entry (key without backend) */
    uint64_t kernels;
    uint64_t ns;
    int names;
    nf_gpu_name_stat name[NF_GPU_NAMES_MAX];
    nf_gpu_name_stat more; /* kernels whose names did not fit */
    double measured_flops;  /* cross-check */
    bool measured;
} nf_gpu_op_stat;

typedef struct nf_gpu_graph_stat {
    uint64_t graph_id;
    uint64_t replays;
    uint64_t kernels; /* kernel records from its replays */
    uint64_t ns;
    int ops;          /* distinct ledger entries counted per replay */
    uint64_t calls;   /* calls counted per replay, summed over those entries */
} nf_gpu_graph_stat;

typedef struct nf_gpu_totals {
    uint64_t other_kernels, other_ns;
    double other_measured_flops;
    uint64_t pending_overflows, node_overflows, op_overflows, graph_overflows;
    uint64_t unknown_graph_launches; /* launches of graphs not seen being captured */
} nf_gpu_totals;

/* Copies of the current state. Return how many were stored (at most max). */
int nf_gpu_ops(nf_gpu_op_stat *out, int max);
int nf_gpu_graphs(nf_gpu_graph_stat *out, int max);
nf_gpu_totals nf_gpu_totals_now(void);
typedef struct nf_gpu_info {
    char off_reason[256];     /* "" when the GPU part is on (or never needed) */
    bool crosscheck_ran;
    char crosscheck_note[256];
    char chip[NF_GPU_DEVICES_MAX][16];        /* "" for a device never described */
    char device_name[NF_GPU_DEVICES_MAX][64];
} nf_gpu_info;
void nf_gpu_info_now(nf_gpu_info *out);
/* Launches in an op still waiting for their record. */
int nf_gpu_pending(void);

/* Whether a and b are the same op apart from the backend. */
bool nf_gpu_same_op(const nf_key *a, const nf_key *b);

/* Whether anything GPU-side happened (a kernel or a graph seen, or a reason to be off). */
bool nf_gpu_has_data(void);

/* The GPU section of the summary and the "gpu" object of the JSON dump, over the
 * ledger rows the report shows (frozen copies are fine: rows are joined by key). */
void nf_gpu_report_table(FILE *f, nf_entry *const *entries, int n);
void nf_gpu_report_json(FILE *f, nf_entry *const *entries, int n);

/* Where overflows and similar are said, once each; defaults to nf_log. Tests
 * replace it to see the lines. */
typedef void (*nf_gpu_say_fn)(const char *line);
void nf_gpu_set_say(nf_gpu_say_fn fn);

#endif
