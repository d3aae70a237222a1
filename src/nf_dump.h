/* Writing a dump file safely: a temporary file beside the target, then rename, so a
 * reader never sees half a dump; created with the user's umask; a symbolic link
 * planted at the target is replaced, never followed. */
#ifndef NF_DUMP_H
#define NF_DUMP_H

#include <stdio.h>

/* Calls write(f, arg) on a temporary file and renames it to path. Returns 0, or -1
 * with errno set. */
int nf_dump_atomic(const char *path, void (*write)(FILE *f, void *arg), void *arg);

#endif
