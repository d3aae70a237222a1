/* The NATTEN op running on each thread. The Python wrappers enter and leave it
 * around each counted call; other adapters read it to attribute what happens
 * meanwhile (aten ops NATTEN runs internally are not counted again; GPU kernels
 * launched meanwhile belong to the op). Thread-local: no locking. */
#ifndef NF_SCOPE_H
#define NF_SCOPE_H

#include <stdbool.h>

#include "nf_ledger.h"

typedef struct nf_scope {
    int depth;        /* > 0 while a NATTEN op runs on this thread */
    nf_entry *entry;  /* its ledger entry; NULL when its arguments could not be read */
} nf_scope;

/* Makes entry the current op and returns what was current before, to be handed back
 * to nf_scope_leave. */
nf_scope nf_scope_enter(nf_entry *entry);
void nf_scope_leave(nf_scope saved);

/* Called on the thread when its outermost NATTEN call begins and ends (the libtorch
 * observer notes which autograd nodes the call creates). Set once, when the observer
 * is loaded; NULL: nobody listens. */
typedef void (*nf_scope_hook)(void);
void nf_scope_listen(nf_scope_hook on_enter, nf_scope_hook on_leave);

/* Whether a NATTEN op is running on this thread, and which. */
bool nf_scope_active(void);
nf_entry *nf_scope_entry(void);

#endif
