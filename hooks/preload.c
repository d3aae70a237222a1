/* The library's entry: runs when libnaflops.so is preloaded into a process.
 *
 * In a process that is not Python (sh, a compiler, nvidia-smi) it does nothing at
 * all. In Python it adds an audit hook (allowed before Py_Initialize) that hooks
 * NATTEN when the program first imports it, and reports at exit. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>

#include "../src/nf_core.h"
#include "../src/nf_flush.h"
#include "../src/nf_log.h"
#include "cuda/cupti_hooks.h"
#include "python/py_api.h"
#include "python/py_natten.h"

/* One active copy per process: LD_PRELOAD may hold two different builds (an installed
 * one and a build tree's). The exported symbol resolves to the first copy loaded, and
 * points at that copy's own marker; every other copy finds it is not that one and
 * stays dormant, silently. (Comparing the symbol's own address would not do: a
 * copy's references to its exported symbols are themselves interposed.) */
static const char self_marker = 1; /* static: its address is this copy's own */
__attribute__((visibility("default"))) const char *const naflops_active_copy = &self_marker;

__attribute__((constructor)) static void nf_preload_start(void) {
    const char *const *first = dlsym(RTLD_DEFAULT, "naflops_active_copy");
    if (first != NULL && *first != &self_marker) return;
    if (!nf_py_api_load()) return;
    nf_core_init();
    if (nf_core_config()->disabled) return;
    nf_flush_track(); /* what the program does with SIGTERM, from the start */
    if (!nf_py_natten_install()) {
        nf_log("could not add the Python audit hook; NATTEN ops are not counted");
        return;
    }
    pthread_atfork(NULL, NULL, nf_core_after_fork_child);
    pthread_atfork(NULL, NULL, nf_flush_after_fork_child); /* after the core's (registered later, run later) */
    atexit(nf_core_finish);
    nf_cupti_arm(); /* CUPTI loads only once the program initialises CUDA */
}
