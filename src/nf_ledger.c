#include "nf_ledger.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Open addressing over atomic pointers: slots go from NULL to an entry once and
 * never change again, so lookups need no lock. */
static _Atomic(nf_entry *) slots[NF_LEDGER_CAPACITY];
static _Atomic uint32_t created;
/* Entries by creation order (a slot stays NULL where a creation lost a race): what
 * nf_ledger_totals reads, without walking the whole table. */
static _Atomic(nf_entry *) in_order[NF_LEDGER_CAPACITY];
static atomic_bool overflowed;
static _Atomic uint64_t first_ns;

void nf_key_init(nf_key *key) { memset(key, 0, sizeof *key); }

static uint64_t hash_key(const nf_key *key) {
    /* Eight bytes at a time (keys are a multiple of 8 bytes, all bytes defined), mixed
     * with a 64-bit multiply-xorshift: one pass over ~300 bytes in a few dozen cycles. */
    _Static_assert(sizeof(nf_key) % 8 == 0, "nf_key is hashed in 8-byte words");
    uint64_t h = 0x9e3779b97f4a7c15ULL;
    const unsigned char *p = (const unsigned char *)key;
    for (size_t i = 0; i < sizeof *key; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
        h ^= h >> 32;
    }
    return h;
}

static nf_entry *new_entry(const nf_key *key) {
    nf_u128 flops;
    if (nf_rules_forward_flops(&key->problem, &flops) != 0) return NULL;
    /* A NATTEN op's backward follows from its forward; an aten op's backward pass runs
     * its own aten ops, counted as they are. */
    /* jvp: NATTEN's jvp runs each GEMM twice, tangent x primal and primal x tangent */
    if ((key->pass == NF_PASS_BACKWARD || key->pass == NF_PASS_JVP) && nf_problem_is_natten(&key->problem))
        flops = nf_rules_backward_flops(flops);
    nf_entry *e = calloc(1, sizeof *e);
    if (e == NULL) return NULL;
    e->key = *key;
    e->flops_per_call = flops;
    return e;
}

nf_entry *nf_ledger_entry(const nf_key *key) {
    uint64_t h = hash_key(key);
    nf_entry *fresh = NULL;
    for (size_t i = 0; i < NF_LEDGER_CAPACITY; i++) {
        _Atomic(nf_entry *) *slot = &slots[(h + i) & (NF_LEDGER_CAPACITY - 1)];
        nf_entry *e = atomic_load_explicit(slot, memory_order_acquire);
        if (e == NULL) {
            if (fresh == NULL && (fresh = new_entry(key)) == NULL) return NULL;
            fresh->order = atomic_fetch_add(&created, 1);
            if (atomic_load_explicit(&first_ns, memory_order_relaxed) == 0) {
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                uint64_t zero = 0;
                atomic_compare_exchange_strong(&first_ns, &zero,
                                               (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
            }
            nf_entry *expected = NULL;
            if (atomic_compare_exchange_strong(slot, &expected, fresh)) {
                if (fresh->order < NF_LEDGER_CAPACITY)
                    atomic_store_explicit(&in_order[fresh->order], fresh, memory_order_release);
                return fresh;
            }
            e = expected; /* another thread filled this slot first */
        }
        if (memcmp(&e->key, key, sizeof *key) == 0) {
            free(fresh);
            return e;
        }
    }
    free(fresh);
    atomic_store(&overflowed, true);
    return NULL;
}

bool nf_ledger_add(const nf_key *key, uint64_t calls) {
    nf_entry *e = nf_ledger_entry(key);
    if (e == NULL) return false;
    nf_entry_add(e, calls);
    return true;
}

static int by_order(const void *a, const void *b) {
    uint32_t x = (*(nf_entry *const *)a)->order, y = (*(nf_entry *const *)b)->order;
    return (x > y) - (x < y);
}

int nf_ledger_snapshot(nf_entry **out, int max) {
    int n = 0;
    for (size_t i = 0; i < NF_LEDGER_CAPACITY && n < max; i++) {
        nf_entry *e = atomic_load_explicit(&slots[i], memory_order_acquire);
        if (e != NULL && atomic_load_explicit(&e->calls, memory_order_relaxed) > 0) out[n++] = e;
    }
    qsort(out, (size_t)n, sizeof *out, by_order);
    return n;
}

int nf_ledger_freeze(nf_entry *copies, nf_entry **out, int max) {
    int n = nf_ledger_snapshot(out, max);
    for (int i = 0; i < n; i++) {
        uint64_t calls = atomic_load_explicit(&out[i]->calls, memory_order_relaxed);
        memcpy(&copies[i], out[i], sizeof copies[i]);
        atomic_store_explicit(&copies[i].calls, calls, memory_order_relaxed);
        out[i] = &copies[i];
    }
    return n;
}

void nf_ledger_reset(void) {
    for (size_t i = 0; i < NF_LEDGER_CAPACITY; i++) {
        nf_entry *e = atomic_load_explicit(&slots[i], memory_order_acquire);
        if (e != NULL) atomic_store_explicit(&e->calls, 0, memory_order_relaxed);
    }
    atomic_store(&first_ns, 0);
}

uint64_t nf_ledger_first_ns(void) { return atomic_load(&first_ns); }

bool nf_ledger_overflowed(void) { return atomic_load(&overflowed); }

nf_totals nf_totals_of(nf_entry *const *entries, int n) {
    nf_totals t = {0};
    for (int i = 0; i < n; i++) {
        uint64_t calls = atomic_load_explicit(&entries[i]->calls, memory_order_relaxed);
        nf_u128 f = nf_u128_mul_sat(entries[i]->flops_per_call, calls);
        unsigned pass = entries[i]->key.pass < NF_PASS_COUNT ? entries[i]->key.pass : 0;
        t.flops[pass] = nf_u128_add_sat(t.flops[pass], f);
        t.all = nf_u128_add_sat(t.all, f);
        if (nf_problem_is_natten(&entries[i]->key.problem)) {
            t.natten = nf_u128_add_sat(t.natten, f);
            if (pass == NF_PASS_FORWARD || pass == NF_PASS_BACKWARD)
                t.natten_model = nf_u128_add_sat(t.natten_model, f);
        } else {
            t.other = nf_u128_add_sat(t.other, f);
        }
        t.calls += calls;
    }
    return t;
}

nf_totals nf_ledger_totals(void) {
    nf_entry *batch[64];
    nf_totals t = {0};
    int n = 0;
    uint32_t made = atomic_load(&created);
    size_t end = made < NF_LEDGER_CAPACITY ? made : NF_LEDGER_CAPACITY;
    for (size_t i = 0; i <= end; i++) {
        nf_entry *e = i < end ? atomic_load_explicit(&in_order[i], memory_order_acquire) : NULL;
        if (e != NULL) batch[n++] = e;
        if (n == 64 || (i == end && n > 0)) {
            nf_totals part = nf_totals_of(batch, n);
            for (int p = 0; p < NF_PASS_COUNT; p++) t.flops[p] = nf_u128_add_sat(t.flops[p], part.flops[p]);
            t.all = nf_u128_add_sat(t.all, part.all);
            t.natten = nf_u128_add_sat(t.natten, part.natten);
            t.natten_model = nf_u128_add_sat(t.natten_model, part.natten_model);
            t.other = nf_u128_add_sat(t.other, part.other);
            t.calls += part.calls;
            n = 0;
        }
    }
    return t;
}
