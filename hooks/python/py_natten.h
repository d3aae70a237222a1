/* The CPython side of the counter: an audit hook that, at the first import of a
 * natten module, installs wrappers around NATTEN's entry points. */
#ifndef NF_PY_NATTEN_H
#define NF_PY_NATTEN_H

#include <stdbool.h>

/* Adds the audit hook. Call after nf_py_api_load() succeeded; safe before
 * Py_Initialize. Returns false if the hook could not be added. */
bool nf_py_natten_install(void);

#endif
