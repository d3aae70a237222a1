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
    X(PyObject *, PyEval_GetBuiltins, (void), true)

typedef struct nf_py_api {
#define NF_PY_FIELD(ret, name, params, required) ret(*name) params;
    NF_PY_FUNCTIONS(NF_PY_FIELD)
#undef NF_PY_FIELD
    PyObject *None;
    PyObject *True;
    PyObject *False;
    PyObject *TupleType; /* &PyTuple_Type */
} nf_py_api;

extern nf_py_api nf_py;

/* Resolves the table from the running process. False when this is not a Python
 * process (or a CPython too old to have what we need): then nothing else here may
 * be called. */
bool nf_py_api_load(void);

/* Returns a new reference to None. */
PyObject *nf_py_none(void);

#endif
