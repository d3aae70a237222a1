/* Process lifecycle of the counter: configuration at start, report at exit. The
 * core knows nothing of Python or CUDA; hooks call in here. */
#ifndef NF_CORE_H
#define NF_CORE_H

#include <stdbool.h>

#include "nf_config.h"

/* Parses NAFLOPS_* once. Safe to call again. */
void nf_core_init(void);
const nf_config *nf_core_config(void);

/* Prints the summary and writes the dump, as configured. Idempotent per process
 * state: a second call after nothing new was counted does nothing more. */
void nf_core_finish(void);

/* Forgets the parent's counts in a fork child. */
void nf_core_after_fork_child(void);

#endif
