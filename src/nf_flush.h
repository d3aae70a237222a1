/* Keeping counts through abrupt ends. The dump is rewritten every
 * NAFLOPS_FLUSH_OPS counted ops (by the counting thread, so os._exit or SIGKILL lose
 * fewer than that many ops) and every NAFLOPS_FLUSH_SECONDS (by a writer thread).
 * The writer thread also writes the final report when SIGTERM arrives where it
 * would kill the process, then lets the signal kill it as it would have; where the
 * program blocks, waits for, ignores or handles SIGTERM, the counter has no handler
 * (nf_flush.c says how). */
#ifndef NF_FLUSH_H
#define NF_FLUSH_H

#include <signal.h>
#include <stdbool.h>

/* Call after each counted op. Starts the writer (and the SIGTERM handler) in this
 * process the first time. */
void nf_flush_counted(void);

/* From the preload's constructor, in the process that counts: follow what the
 * program does with SIGTERM from the start (see nf_flush.c). */
void nf_flush_track(void);

/* Whether SIGTERM's disposition is the counter's handler now (tests). */
bool nf_flush_term_handler_installed(void);

/* pthread_sigmask itself, not the interposed one: the counter's own masks. */
int nf_flush_real_sigmask(int how, const sigset_t *set, sigset_t *old);

/* A fork child has no writer thread: forget the parent's. */
void nf_flush_after_fork_child(void);

#endif
