/* Recompute plans: which of a compiled backward's ops are forward work run again.
 *
 * A compiler that partitions a joint forward+backward graph (AOTAutograd) may put
 * forward ops into the backward graph, to recompute activations instead of saving
 * them (activation checkpointing, or its own choice). At run time those ops run inside
 * the backward like the backward's own, so the adapters read the graph once: for each
 * op name the graph calls, in graph order, whether that call is recomputed forward
 * work. While a compiled backward runs, its plan is entered on the thread, and each op
 * counted there takes the next flag of its name. Per name, not over all ops, so that
 * a backend which reorders ops of different kinds (or leaves some uncounted) still
 * matches. Thread-local: no locking; plans themselves are immutable once built. */
#ifndef NF_PLAN_H
#define NF_PLAN_H

#include <stdbool.h>
#include <stddef.h>

typedef struct nf_plan nf_plan;

/* A plan for n calls; NULL when out of memory. */
nf_plan *nf_plan_new(size_t n);
/* Call i of the graph: its op's name ("aten::mm", copied) and whether it is
 * recomputed forward work. Calls must be set in graph order; false: out of memory. */
bool nf_plan_set(nf_plan *plan, size_t i, const char *op, bool recompute);
void nf_plan_free(nf_plan *plan);

/* The plan's compiled backward begins / ends on this thread (nested runs stack, up
 * to a small depth: beyond it a run has no plan). enter returns false when the run
 * has none; leave only after an enter that returned true. */
bool nf_plan_enter(const nf_plan *plan);
void nf_plan_leave(void);

/* A counted backward op named op ran on this thread: whether the running plan says it
 * is recomputed forward work (false outside any plan, past the plan's calls of that
 * name, or for a name the plan does not hold). */
bool nf_plan_recomputed(const char *op);

#endif
