/* Which NATTEN releases the target table knows, and which rows a release has. */
#ifndef NF_NATTEN_RELEASE_H
#define NF_NATTEN_RELEASE_H

#include <stdbool.h>
#include <stddef.h>

#include "natten_targets.h"

typedef enum nf_release {
    NF_RELEASE_KNOWN = 0,   /* 0.NF_NATTEN_OLDEST .. 0.NF_NATTEN_NEWEST */
    NF_RELEASE_NEWER,
    NF_RELEASE_OLDER,
    NF_RELEASE_UNREADABLE,  /* no version, or not "major.minor..." */
} nf_release;

/* Classifies a version string ("0.21.7", "0.22.0.dev1", "1.0"). */
nf_release nf_natten_release(const char *version);

/* The line said at import for a release that is not known (NULL for a known one),
 * written into buf. counted: the entry points wrapped, ", "-separated ("" if none). */
const char *nf_natten_release_line(const char *version, const char *counted, char *buf, size_t size);

#endif
