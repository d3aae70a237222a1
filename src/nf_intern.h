/* A small process-wide table of strings (op names, dtypes, devices, backends,
 * versions) so that ledger keys hold fixed-size ids instead of text. */
#ifndef NF_INTERN_H
#define NF_INTERN_H

#include <stdint.h>

#define NF_INTERN_MAX 4096 /* module names included: one per module that counted work */
#define NF_INTERN_NONE 0 /* id of the empty string: "not known" */

/* Returns the id of s (adding it if new); NF_INTERN_NONE for NULL, "", or a full table. */
uint16_t nf_intern(const char *s);
/* The string of an id; "" for an unknown id. */
const char *nf_intern_str(uint16_t id);

#endif
