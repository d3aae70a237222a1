/* The library's entry: runs when libnaflops.so is preloaded into a process.
 *
 * In a process that is not Python (sh, a compiler, nvidia-smi) it does nothing at
 * all. In Python it adds an audit hook (allowed before Py_Initialize) that hooks
 * NATTEN when the program first imports it, and reports at exit. */
#include <pthread.h>
#include <stdlib.h>

#include "../src/nf_core.h"
#include "../src/nf_log.h"
#include "cupti_hooks.h"
#include "py_api.h"
#include "py_natten.h"

__attribute__((constructor)) static void nf_preload_start(void) {
    if (!nf_py_api_load()) return;
    nf_core_init();
    if (nf_core_config()->disabled) return;
    if (!nf_py_natten_install()) {
        nf_log("could not add the Python audit hook; NATTEN ops are not counted");
        return;
    }
    pthread_atfork(NULL, NULL, nf_core_after_fork_child);
    atexit(nf_core_finish);
    nf_cupti_arm(); /* CUPTI loads only once the program initialises CUDA */
}
