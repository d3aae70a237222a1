/* Counting one NATTEN call: its ledger entry from the key the arguments gave, the
 * backward hooked on its outputs, and what is said when a call cannot be counted. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/nf_core.h"
#include "../../src/nf_flush.h"
#include "../../src/nf_intern.h"
#include "../../src/nf_ledger.h"
#include "../../src/nf_log.h"
#include "py_args.h"
#include "py_state.h"

#define P nf_py

bool nf_py_count(const nf_wrap *w, nf_key *key, uint16_t backend, PyObject *const *outputs, int n) {
    if (key->device == nf_py_release.meta) return false; /* meta tensors: nothing ran */
    key->backend = backend != NF_INTERN_NONE ? backend : nf_py_default_backend();
    nf_entry *e = nf_ledger_entry(key);
    if (e == NULL) {
        nf_py_uncounted(w, nf_ledger_overflowed() ? "too many distinct op signatures" : "shape outside the rules");
        return false;
    }
    nf_entry_add(e, 1);
    nf_flush_counted();
    if (key->pass == NF_PASS_FORWARD || key->pass == NF_PASS_RECOMPUTE) nf_py_attach_backward(outputs, n, e);
    return true;
}

void nf_py_uncounted(const nf_wrap *w, const char *why) {
    nf_core_note_uncounted();
    nf_log_once(&((nf_wrap *)w)->said, "a %s call ran but is not counted: %s; later such calls are not counted either",
                nf_intern_str(w->op), why);
}

static void say_window(const nf_wrap *w, const nf_key *key) {
    if (atomic_load_explicit(&w->said_window, memory_order_relaxed)) return; /* said: no formatting */
    nf_log_once(&((nf_wrap *)w)->said_window,
                "%s: the kernel size its arguments give does not match the %lld keys per query "
                "its %s; its calls are counted with the tensor's window",
                nf_intern_str(w->op), (long long)key->problem.kernel[0] + (long long)key->problem.extra_kv,
                w->target->kind == NF_KIND_AV ? "attention weights hold" : "output holds");
}

int nf_py_key(const nf_wrap *w, const struct nf_argv *a, nf_key *key) {
    int rc = nf_args_key(w->target, w->op, nf_py_release.version, a, key);
    if (rc == 1) say_window(w, key);
    return rc < 0 ? -1 : 0;
}

void nf_py_check_window(const nf_wrap *w, nf_key *key, int64_t last_dim) {
    if (nf_args_window_check(&key->problem, last_dim)) say_window(w, key);
}

/* Why a call's arguments could not be read, in words. */
const char *nf_py_why_unreadable(const nf_argv *a, const nf_wrap *w) {
    PyObject *first = a->v[w->target->kind == NF_KIND_AV ? NF_ROLE_ATTN : NF_ROLE_QUERY];
    if (first == NULL) return "no query tensor among its arguments";
    return "its arguments could not be read";
}

