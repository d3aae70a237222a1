/* Recompute plans (see nf_plan.h). A plan stores its calls grouped by name: names[k]
 * with flags[first[k] .. first[k+1]); a run keeps, per name, how many it has taken. */
#include "nf_plan.h"

#include <stdlib.h>
#include <string.h>

struct nf_plan {
    size_t n;         /* calls set so far (graph order) */
    size_t cap;       /* calls the plan was made for */
    size_t nnames;
    char **names;     /* distinct names, in order of first call */
    size_t *count;    /* calls per name */
    bool **flags;     /* per name, its calls' flags in graph order */
};

nf_plan *nf_plan_new(size_t n) {
    nf_plan *p = calloc(1, sizeof *p);
    if (p == NULL) return NULL;
    p->cap = n;
    /* at most n names; per-name flag arrays of at most n entries each grow as set */
    p->names = calloc(n ? n : 1, sizeof *p->names);
    p->count = calloc(n ? n : 1, sizeof *p->count);
    p->flags = calloc(n ? n : 1, sizeof *p->flags);
    if (p->names == NULL || p->count == NULL || p->flags == NULL) {
        nf_plan_free(p);
        return NULL;
    }
    return p;
}

static size_t name_index(const nf_plan *p, const char *op) {
    for (size_t k = 0; k < p->nnames; k++)
        if (strcmp(p->names[k], op) == 0) return k;
    return p->nnames;
}

bool nf_plan_set(nf_plan *p, size_t i, const char *op, bool recompute) {
    if (p == NULL || op == NULL || i != p->n || i >= p->cap) return false;
    size_t k = name_index(p, op);
    if (k == p->nnames) {
        p->names[k] = strdup(op);
        if (p->names[k] == NULL) return false;
        p->nnames++;
    }
    bool *grown = realloc(p->flags[k], (p->count[k] + 1) * sizeof *grown);
    if (grown == NULL) return false;
    grown[p->count[k]++] = recompute;
    p->flags[k] = grown;
    p->n++;
    return true;
}

void nf_plan_free(nf_plan *p) {
    if (p == NULL) return;
    for (size_t k = 0; k < p->nnames; k++) {
        free(p->names[k]);
        free(p->flags[k]);
    }
    free(p->names);
    free(p->count);
    free(p->flags);
    free(p);
}

/* The runs on this thread: a compiled backward that runs another (a double backward
 * through compiled code) nests. */
#define NF_PLAN_DEPTH 4
static _Thread_local struct {
    int depth;
    struct nf_plan_run {
        const nf_plan *plan;
        size_t *taken; /* per name of the plan */
    } run[NF_PLAN_DEPTH];
} runs;

bool nf_plan_enter(const nf_plan *p) {
    if (p == NULL || runs.depth >= NF_PLAN_DEPTH) return false;
    size_t *taken = calloc(p->nnames ? p->nnames : 1, sizeof *taken);
    if (taken == NULL) return false;
    runs.run[runs.depth].plan = p;
    runs.run[runs.depth].taken = taken;
    runs.depth++;
    return true;
}

void nf_plan_leave(void) {
    if (runs.depth == 0) return;
    runs.depth--;
    free(runs.run[runs.depth].taken);
    runs.run[runs.depth].taken = NULL;
    runs.run[runs.depth].plan = NULL;
}

bool nf_plan_recomputed(const char *op) {
    if (runs.depth == 0 || op == NULL) return false;
    struct nf_plan_run *r = &runs.run[runs.depth - 1];
    size_t k = name_index(r->plan, op);
    if (k == r->plan->nnames || r->taken[k] >= r->plan->count[k]) return false;
    return r->plan->flags[k][r->taken[k]++];
}
