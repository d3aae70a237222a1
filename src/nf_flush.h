/* Keeping counts through abrupt ends. The dump is rewritten every
 * NAFLOPS_FLUSH_OPS counted ops (by the counting thread, so os._exit or SIGKILL lose
 * fewer than that many ops) and every NAFLOPS_FLUSH_SECONDS (by a writer thread).
 * The writer thread also writes the final report when SIGTERM arrives, then lets
 * the signal kill the process as it would have. */
#ifndef NF_FLUSH_H
#define NF_FLUSH_H

/* Call after each counted op. Starts the writer (and the SIGTERM handler) in this
 * process the first time. */
void nf_flush_counted(void);

/* A fork child has no writer thread: forget the parent's. */
void nf_flush_after_fork_child(void);

#endif
