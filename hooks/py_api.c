#include "py_api.h"

#include <dlfcn.h>
#include <stddef.h>

nf_py_api nf_py;

bool nf_py_api_load(void) {
    void *sym;
#define NF_PY_LOAD(ret, name, params, required)                    \
    sym = dlsym(RTLD_DEFAULT, #name);                              \
    if (sym == NULL && (required)) return false;                   \
    *(void **)&nf_py.name = sym;
    NF_PY_FUNCTIONS(NF_PY_LOAD)
#undef NF_PY_LOAD
    nf_py.None = dlsym(RTLD_DEFAULT, "_Py_NoneStruct");
    nf_py.True = dlsym(RTLD_DEFAULT, "_Py_TrueStruct");
    nf_py.False = dlsym(RTLD_DEFAULT, "_Py_FalseStruct");
    nf_py.TupleType = dlsym(RTLD_DEFAULT, "PyTuple_Type");
    return nf_py.None != NULL && nf_py.True != NULL && nf_py.False != NULL &&
           nf_py.TupleType != NULL;
}

PyObject *nf_py_none(void) {
    nf_py.Py_IncRef(nf_py.None);
    return nf_py.None;
}
