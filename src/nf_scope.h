/* The NATTEN op running on each thread. The Python wrappers enter and leave it
 * around each counted call; other adapters read it to attribute what happens
 * meanwhile (aten ops NATTEN runs internally are not counted again; GPU kernels
 * launched meanwhile belong to the op). Thread-local: no locking. */
#ifndef NF_SCOPE_H
#define NF_SCOPE_H

#include <stdbool.h>

#include "nf_ledger.h"

typedef struct nf_scope {
    int depth;           /* > 0 while a NATTEN op runs on this thread */
    const nf_key *key;   /* its signature (backend not yet known); NULL when its
                            arguments could not be read. Owned by the caller. */
    nf_entry *entry;     /* the ledger entry of key, looked up on first need */
} nf_scope;

/* Makes the op with this key current and returns what was current before, to be
 * handed back to nf_scope_leave. key must stay valid until then. */
nf_scope nf_scope_enter(const nf_key *key);
void nf_scope_leave(nf_scope saved);

/* Called on the thread when its outermost NATTEN call begins and ends (the libtorch
 * observer notes which autograd nodes the call creates). Set once, when the observer
 * is loaded; NULL: nobody listens. */
typedef void (*nf_scope_hook)(void);
void nf_scope_listen(nf_scope_hook on_enter, nf_scope_hook on_leave);

/* Whether a NATTEN op is running on this thread, and which (its ledger entry, created
 * with no calls on the first ask: only what attributes work to ops asks, so a NATTEN
 * call on the CPU does not pay for a second ledger lookup). */
bool nf_scope_active(void);
nf_entry *nf_scope_entry(void);

#endif
