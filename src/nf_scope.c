#include "nf_scope.h"

static _Thread_local nf_scope current;

nf_scope nf_scope_enter(nf_entry *entry) {
    nf_scope saved = current;
    current.depth++;
    current.entry = entry;
    return saved;
}

void nf_scope_leave(nf_scope saved) { current = saved; }

bool nf_scope_active(void) { return current.depth > 0; }

nf_entry *nf_scope_entry(void) { return current.entry; }
