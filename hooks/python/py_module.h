/* The nn.Module running on this thread (py_module.c): the module name each count
 * carries, as an interned id (NF_INTERN_NONE: outside any module, or not known). */
#ifndef NF_PY_MODULE_H
#define NF_PY_MODULE_H

#include <stdbool.h>
#include <stdint.h>

#include "py_api.h"

/* From torch, once imported: torch.nn.Module and its _call_impl. Until then, and
 * when this CPython lacks the frame API, every module is NF_INTERN_NONE. */
void nf_py_module_set_torch(PyObject *torch);
bool nf_py_module_ready(void);

/* The innermost module on this thread's Python stack. Call with the GIL held. */
uint16_t nf_py_module_here(void);

/* The module at a dotted path ("levels.0.attn") below the innermost one: where
 * Dynamo traced a NATTEN call inside a compiled frame, the path from the frame's
 * module; that module itself when the path does not lead to a module. */
uint16_t nf_py_module_below(const char *path);

/* The same from a thread that may not hold the GIL (the libtorch observer's kernels
 * run with it released): takes it for the read. NF_INTERN_NONE on a thread that
 * never ran Python, and while the interpreter finalizes. */
uint16_t nf_py_module_of_thread(void);

#endif
