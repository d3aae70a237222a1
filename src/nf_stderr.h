/* The stderr the process started with: where the counter's lines and summary go.
 *
 * A program may close fd 2 and open a file of its own there, or pipe stderr into a
 * reader that goes away: the counter writes only while fd 2 is still the file it
 * was at start, and never lets a write raise SIGPIPE. */
#ifndef NF_STDERR_H
#define NF_STDERR_H

#include <stdbool.h>
#include <stddef.h>

/* Remembers what fd 2 is (at start; again in a fork child, which shares it). */
void nf_stderr_remember(void);

/* Writes buf to fd 2 if it is still the stderr remembered; false when skipped or
 * the write failed. Async-signal-safe. */
bool nf_stderr_write(const char *buf, size_t n);

#endif
