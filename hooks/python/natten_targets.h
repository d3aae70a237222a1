/* Which NATTEN entry points the hooks wrap, and what each one means.
 *
 * This is data: one row per (module, function), with the releases that have it. Rows
 * whose function a release does not have are skipped, so one table serves every
 * release from 0.14 to 0.21; the positions of the arguments come from each function's
 * real signature when it is wrapped, by parameter name (0.15's 3-D ops take
 * kernel_size_d and dilation_d for depth: roles of their own). Names that a release
 * binds to the same function object (0.15's `natten1dqk = na1d_qk`) share one
 * wrapper, counted under the first row's name. tests/integration/test_natten_releases.py
 * checks every row's range against each release it installs. */
#ifndef NF_NATTEN_TARGETS_H
#define NF_NATTEN_TARGETS_H

#include <stdint.h>

#include "../../src/nf_rules.h"

/* Arguments the rules need, by the parameter names NATTEN gives them. */
typedef enum nf_role {
    NF_ROLE_QUERY = 0,     /* "query" */
    NF_ROLE_ATTN,          /* "attn" (na*d_av) */
    NF_ROLE_KEY,           /* "key" */
    NF_ROLE_VALUE,         /* "value" */
    NF_ROLE_KERNEL,        /* "kernel_size" */
    NF_ROLE_DILATION,      /* "dilation" */
    NF_ROLE_STRIDE,        /* "stride" (0.20+) */
    NF_ROLE_CAUSAL,        /* "is_causal" */
    NF_ROLE_ADD_KEYS,      /* "additional_keys" */
    NF_ROLE_ADD_VALUES,    /* "additional_values" */
    NF_ROLE_CU_SEQLEN_Q,   /* "cumulative_seqlen_Q" (attention, varlen) */
    NF_ROLE_CU_SEQLEN_KV,  /* "cumulative_seqlen_KV" */
    NF_ROLE_SEQLENS_Q,     /* "seqlens_Q" */
    NF_ROLE_SEQLENS_KV,    /* "seqlens_KV" */
    NF_ROLE_KERNEL_D,      /* "kernel_size_d": the depth kernel of 0.15-0.17's legacy 3-D ops */
    NF_ROLE_DILATION_D,    /* "dilation_d" */
    NF_ROLE_COUNT
} nf_role;

extern const char *const nf_role_param[NF_ROLE_COUNT];

typedef struct nf_target {
    const char *module;    /* e.g. "natten.functional" */
    const char *function;  /* e.g. "na2d" */
    const char *op;        /* name in reports */
    /* A counted op, or (backend != NULL) a backend marker: a function NATTEN calls
     * inside a counted op, which tells which backend ran it. */
    nf_kind kind;
    nf_layout layout;
    const char *backend;
    /* The releases that have it, since .. until, each NF_V(minor, patch) of a 0.x
     * release; until 0: still there in the newest release the table knows. */
    uint16_t since, until;
} nf_target;

#define NF_V(minor, patch) ((minor) * 100 + (patch))

/* The releases the table knows: 0.NF_NATTEN_OLDEST .. 0.NF_NATTEN_NEWEST. Another
 * release is said at import (what is and is not counted), never counted silently. */
#define NF_NATTEN_OLDEST 14
#define NF_NATTEN_NEWEST 21

extern const nf_target nf_targets[];
extern const int nf_target_count;

#endif
