/* The ledger: one entry per distinct op signature, with its call count.
 *
 * Thread-safe and lock-free on the hot path: an entry's FLOPs per call are fixed
 * when it is created (they follow from the signature), so recording a call is one
 * atomic increment; no allocation happens after a signature's first call. */
#ifndef NF_LEDGER_H
#define NF_LEDGER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "nf_rules.h"

/* Everything that makes two calls "the same op". Zero-filled before use: it is
 * hashed and compared bytewise. */
typedef struct nf_key {
    nf_problem problem;
    uint16_t op;       /* interned op name, e.g. "na2d" */
    uint16_t dtype;    /* interned, e.g. "float16" */
    uint16_t device;   /* interned, e.g. "cuda:0" */
    uint16_t backend;  /* interned, e.g. "flex-fna"; NF_INTERN_NONE when unknown */
    uint16_t version;  /* interned NATTEN version */
    uint16_t module;   /* interned nn.Module name ("HDiT.encoder.blocks.3.attn"), see
                          hooks/python/py_module.c; NF_INTERN_NONE: outside any module */
    uint8_t pass;      /* nf_pass */
    uint8_t pad_[3];
} nf_key;

typedef struct nf_entry {
    nf_key key;
    nf_u128 flops_per_call;
    _Atomic uint64_t calls;
    uint32_t order; /* creation order, for stable reports */
} nf_entry;

#define NF_LEDGER_CAPACITY 8192

/* Initialises key to all zero bytes (padding included). */
void nf_key_init(nf_key *key);

/* The entry for key, created on first use with FLOPs from the rules. NULL when the
 * rules cannot read the shape or the ledger is full (reported once by the caller). */
nf_entry *nf_ledger_entry(const nf_key *key);

/* Adds calls to an entry. */
static inline void nf_entry_add(nf_entry *e, uint64_t calls) {
    atomic_fetch_add_explicit(&e->calls, calls, memory_order_relaxed);
}

/* Convenience: entry lookup plus add; false when not counted. */
bool nf_ledger_add(const nf_key *key, uint64_t calls);

/* Entries with at least one call, in creation order. Returns how many were stored
 * (at most max). */
int nf_ledger_snapshot(nf_entry **out, int max);

/* Like nf_ledger_snapshot, but out[i] points into copies, whose calls are read once:
 * a report written while other threads keep counting is consistent in itself
 * (each op's flops = calls x flops_per_call, totals = sum of ops). */
int nf_ledger_freeze(nf_entry *copies, nf_entry **out, int max);

/* Sets every count back to zero (a fork child starts empty). */
void nf_ledger_reset(void);

/* Whether the ledger had to turn a new signature away (it was full). */
bool nf_ledger_overflowed(void);

/* Totals over entries with calls, by pass. */
typedef struct nf_totals {
    nf_u128 flops[NF_PASS_COUNT];
    nf_u128 all;
    nf_u128 natten; /* NATTEN's ops, both passes */
    nf_u128 natten_model; /* NATTEN's forward + backward */
    nf_u128 other;  /* the other aten ops (whole-model count), both passes */
    uint64_t calls;
} nf_totals;

nf_totals nf_totals_of(nf_entry *const *entries, int n);

/* Totals over the whole ledger now, read in place (no copy, no sort): what a step
 * boundary takes, a few hundred nanoseconds for a hundred signatures. */
nf_totals nf_ledger_totals(void);

/* CLOCK_MONOTONIC nanoseconds at which the first signature was entered (the
 * program's first counted work); 0 before that. */
uint64_t nf_ledger_first_ns(void);

#endif
