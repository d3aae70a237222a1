#include "nf_scope.h"

#include <stdatomic.h>

static _Thread_local nf_scope current;
static _Atomic(nf_scope_hook) enter_hook, leave_hook;

void nf_scope_listen(nf_scope_hook on_enter, nf_scope_hook on_leave) {
    atomic_store(&leave_hook, on_leave);
    atomic_store(&enter_hook, on_enter);
}

nf_scope nf_scope_enter(const nf_key *key) {
    nf_scope saved = current;
    if (current.depth == 0) {
        nf_scope_hook h = atomic_load_explicit(&enter_hook, memory_order_relaxed);
        if (h) h();
    }
    current.depth++;
    current.key = key;
    current.entry = NULL;
    return saved;
}

void nf_scope_leave(nf_scope saved) {
    current = saved;
    if (current.depth == 0) {
        nf_scope_hook h = atomic_load_explicit(&leave_hook, memory_order_relaxed);
        if (h) h();
    }
}

bool nf_scope_active(void) { return current.depth > 0; }

nf_entry *nf_scope_entry(void) {
    if (current.entry == NULL && current.key != NULL) current.entry = nf_ledger_entry(current.key);
    return current.entry;
}
