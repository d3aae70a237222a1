/* Process lifecycle of the counter: configuration at start, report at exit. The
 * core knows nothing of Python or CUDA; hooks call in here. */
#ifndef NF_CORE_H
#define NF_CORE_H

#include <stdbool.h>

#include "nf_config.h"

/* Parses NAFLOPS_* once. Safe to call again. */
void nf_core_init(void);
const nf_config *nf_core_config(void);

/* Prints the summary and writes the dump, as configured. The first call does it;
 * later calls (Python's atexit, then C's atexit) do nothing. */
void nf_core_finish(void);

/* fn runs first in nf_core_finish, once (the GPU adapter flushes CUPTI's last kernel
 * records there, so that the report has them). At most 4. */
void nf_core_before_finish(void (*fn)(void));

/* Rewrites the dump with the counts so far (NAFLOPS_FLUSH_*); no summary. */
void nf_core_flush(void);

/* Forgets the parent's counts in a fork child. */
void nf_core_after_fork_child(void);

/* The NATTEN version the program imported (reported, and the dump written, even
 * when nothing was counted); the program imported torch (a rank of a job then
 * writes its dump even when it counted nothing). */
void nf_core_set_natten_version(const char *version);
void nf_core_note_program(void);
/* A NATTEN call that ran but could not be counted (the summary says how many). */
void nf_core_note_uncounted(void);

#endif
