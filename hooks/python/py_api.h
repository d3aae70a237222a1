/* The slice of the CPython C API the hooks use, resolved with dlsym at run time.
 *
 * libnaflops.so never links against libpython: it must load into /bin/true and sh
 * (even with LD_BIND_NOW=1) and work with any CPython 3.10+, shared libpython or a
 * static interpreter that exports its symbols. So no Python.h: its inline macros
 * reference symbols (_Py_Dealloc) and struct layouts; every call goes through the
 * table below, and references are counted with Py_IncRef/Py_DecRef. */
#ifndef NF_PY_API_H
#define NF_PY_API_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct _object PyObject;
typedef ssize_t Py_ssize_t;

/* PyMethodDef's layout is part of the stable ABI. */
typedef struct nf_py_method_def {
    const char *ml_name;
    void *ml_meth;
    int ml_flags;
    const char *ml_doc;
} nf_py_method_def;

/* PyMemAllocatorEx (cpython/pymem.h, unchanged since 3.5). */
typedef struct nf_py_allocator {
    void *ctx;
    void *(*malloc)(void *, size_t);
    void *(*calloc)(void *, size_t, size_t);
    void *(*realloc)(void *, void *, size_t);
    void (*free)(void *, void *);
} nf_py_allocator;
#define NF_PYMEM_DOMAIN_RAW 0

#define NF_METH_VARARGS 0x0001
#define NF_METH_KEYWORDS 0x0002
#define NF_METH_NOARGS 0x0004
#define NF_METH_O 0x0008
#define NF_METH_FASTCALL 0x0080
#define NF_PY_FILE_INPUT 257

/* X(return type, name, parameters, required) */
#define NF_PY_FUNCTIONS(X)                                                                   \
    X(int, Py_IsInitialized, (void), true)                                                   \
    X(int, PySys_AddAuditHook, (int (*)(const char *, PyObject *, void *), void *), true)    \
    X(void, Py_IncRef, (PyObject *), true)                                                   \
    X(void, Py_DecRef, (PyObject *), true)                                                   \
    X(PyObject *, PyErr_Occurred, (void), true)                                              \
    X(void, PyErr_Clear, (void), true)                                                       \
    X(void, PyErr_Fetch, (PyObject **, PyObject **, PyObject **), true)                      \
    X(void, PyErr_Restore, (PyObject *, PyObject *, PyObject *), true)                       \
    X(PyObject *, PyObject_GetAttr, (PyObject *, PyObject *), true)                          \
    X(PyObject *, PyObject_Str, (PyObject *), true)                                          \
    X(PyObject *, PyObject_GetAttrString, (PyObject *, const char *), true)                  \
    X(PyObject *, PyObject_Type, (PyObject *), true)                                         \
    X(PyObject *, PyObject_CallMethodObjArgs, (PyObject *, PyObject *, ...), true)           \
    X(PyObject *, PyObject_CallFunctionObjArgs, (PyObject *, ...), true)                     \
    X(int, PyObject_IsTrue, (PyObject *), true)                                              \
    X(PyObject *, PyObject_Call, (PyObject *, PyObject *, PyObject *), true)                 \
    X(PyObject *, PyObject_CallObject, (PyObject *, PyObject *), true)                       \
    X(PyObject *, PyObject_Vectorcall, (PyObject *, PyObject *const *, size_t, PyObject *),  \
      false)                                                                                 \
    X(PyObject *, PyTuple_New, (Py_ssize_t), true)                                           \
    X(Py_ssize_t, PyTuple_Size, (PyObject *), true)                                          \
    X(PyObject *, PyTuple_GetItem, (PyObject *, Py_ssize_t), true)                           \
    X(int, PyTuple_SetItem, (PyObject *, Py_ssize_t, PyObject *), true)                      \
    X(Py_ssize_t, PySequence_Size, (PyObject *), true)                                       \
    X(PyObject *, PySequence_GetItem, (PyObject *, Py_ssize_t), true)                        \
    X(long long, PyLong_AsLongLong, (PyObject *), true)                                      \
    X(int, PyIndex_Check, (PyObject *), true)                                                \
    X(int, PyObject_IsInstance, (PyObject *, PyObject *), true)                              \
    X(PyObject *, PyLong_FromLong, (long), true)                                             \
    X(const char *, PyUnicode_AsUTF8AndSize, (PyObject *, Py_ssize_t *), true)               \
    X(PyObject *, PyUnicode_FromString, (const char *), true)                                \
    X(PyObject *, PyUnicode_InternFromString, (const char *), true)                          \
    X(int, PyUnicode_CompareWithASCIIString, (PyObject *, const char *), true)               \
    X(PyObject *, PyDict_New, (void), true)                                                  \
    X(int, PyDict_SetItem, (PyObject *, PyObject *, PyObject *), true)                       \
    X(int, PyDict_SetItemString, (PyObject *, const char *, PyObject *), true)               \
    X(PyObject *, PyDict_GetItemString, (PyObject *, const char *), true)                    \
    X(PyObject *, PyDict_GetItem, (PyObject *, PyObject *), true)                            \
    X(PyObject *, PyList_New, (Py_ssize_t), true)                                            \
    X(int, PyList_Append, (PyObject *, PyObject *), true)                                    \
    X(PyObject *, PyCapsule_New, (void *, const char *, void (*)(PyObject *)), true)         \
    X(void *, PyCapsule_GetPointer, (PyObject *, const char *), true)                        \
    X(PyObject *, PyCFunction_NewEx, (nf_py_method_def *, PyObject *, PyObject *), true)     \
    X(PyObject *, Py_CompileString, (const char *, const char *, int), true)                 \
    X(PyObject *, PyEval_EvalCode, (PyObject *, PyObject *, PyObject *), true)               \
    X(PyObject *, PyEval_GetBuiltins, (void), true)                                          \
    X(int, Py_AtExit, (void (*)(void)), false)                                               \
    X(void, PyMem_GetAllocator, (int, nf_py_allocator *), false)                             \
    X(void *, PyMem_RawMalloc, (size_t), false)                                              \
    /* the running module (py_module.c): frames, read with the GIL */                      \
    X(PyObject *, PyEval_GetFrame, (void), false)                                            \
    X(PyObject *, PyFrame_GetBack, (PyObject *), false)                                      \
    X(PyObject *, PyFrame_GetCode, (PyObject *), false)                                      \
    X(PyObject *, PyFrame_GetVar, (PyObject *, PyObject *), false)                           \
    X(PyObject *, PyObject_GetItem, (PyObject *, PyObject *), false)                         \
    X(int, PyDict_Next, (PyObject *, Py_ssize_t *, PyObject **, PyObject **), false)         \
    X(int, PyGILState_Ensure, (void), false)                                                 \
    X(void, PyGILState_Release, (int), false)                                                \
    X(void *, PyGILState_GetThisThreadState, (void), false)                                  \
    X(int, _Py_IsFinalizing, (void), false)                                                  \
    X(int, Py_IsFinalizing, (void), false)                                                   \
    X(PyObject *, PyCell_Get, (PyObject *), false)                                           \
    /* counting with no frame of ours (py_call_hook.c): 3.12+ has the setter */              \
    X(void, PyFunction_SetVectorcall, (PyObject *, void *), false)                           \
    X(PyObject *, PyFunction_NewWithQualName, (PyObject *, PyObject *, PyObject *), false)   \
    X(PyObject *, PyFunction_GetCode, (PyObject *), false)                                   \
    X(PyObject *, PyFunction_GetGlobals, (PyObject *), false)                                \
    X(PyObject *, PyFunction_GetDefaults, (PyObject *), false)                               \
    X(int, PyFunction_SetDefaults, (PyObject *, PyObject *), false)                          \
    X(PyObject *, PyFunction_GetKwDefaults, (PyObject *), false)                             \
    X(int, PyFunction_SetKwDefaults, (PyObject *, PyObject *), false)                        \
    X(PyObject *, PyFunction_GetClosure, (PyObject *), false)                                \
    X(int, PyFunction_SetClosure, (PyObject *, PyObject *), false)                           \
    X(int, PyUnicode_Compare, (PyObject *, PyObject *), false)                               \
    X(PyObject *, PySequence_Tuple, (PyObject *), false)                                     \
    X(int, PyObject_SetAttrString, (PyObject *, const char *, PyObject *), false)            \
    X(PyObject *, PyWeakref_NewRef, (PyObject *, PyObject *), false)                         \
    X(PyObject *, PyWeakref_GetObject, (PyObject *), false)

typedef struct nf_py_api {
#define NF_PY_FIELD(ret, name, params, required) ret(*name) params;
    NF_PY_FUNCTIONS(NF_PY_FIELD)
#undef NF_PY_FIELD
    PyObject *None;
    PyObject *True;
    PyObject *False;
    PyObject *TupleType; /* &PyTuple_Type */
    PyObject *FrameType; /* &PyFrame_Type, &PyCell_Type, Py_Version (3.11+): py_module.c */
    PyObject *CellType;
    const unsigned long *Version;
} nf_py_api;

extern nf_py_api nf_py;

/* Resolves the table from the running process. False when this is not a Python
 * process (or a CPython too old to have what we need): then nothing else here may
 * be called. */
bool nf_py_api_load(void);

typedef int (*nf_py_audit_fn)(const char *, PyObject *, void *);

/* PySys_AddAuditHook(hook, data), called before Py_Initialize. CPython keeps the hook
 * in a list entry allocated with the raw allocator of the moment (before the
 * pre-initialization: libc's malloc) and frees it at finalization with the raw
 * allocator of then: the debug hooks of -X dev / PYTHONMALLOC=debug, which abort on a
 * block they did not allocate. So this notes where the entry lives, and
 * nf_py_audit_settle moves it into the final allocator. */
bool nf_py_add_audit_hook(nf_py_audit_fn hook, void *data);

/* Call from the hook's first call (the interpreter is pre-initialized by then, its
 * allocators final, and one thread runs Python): when the raw allocator is no longer
 * the one that allocated the hook's entry, the entry is replaced by a copy from the
 * current one, which is what finalization frees. The old entry is kept, never freed
 * (the hook loop that called us still reads its next field). Once per process. */
extern bool nf_py_audit_settled;
void nf_py_audit_settle_slow(void);
static inline void nf_py_audit_settle(void) {
    if (!nf_py_audit_settled) nf_py_audit_settle_slow();
}

/* Returns a new reference to None. */
PyObject *nf_py_none(void);

/* A vectorcall's positional count: nargsf without PY_VECTORCALL_ARGUMENTS_OFFSET
 * (its top bit). */
static inline Py_ssize_t nf_py_nargs(size_t nargsf) {
    return (Py_ssize_t)(nargsf & ~((size_t)1 << (8 * sizeof(size_t) - 1)));
}

#endif
