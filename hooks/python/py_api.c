#include "py_api.h"

#include <dlfcn.h>
#include <link.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
    nf_py.FrameType = dlsym(RTLD_DEFAULT, "PyFrame_Type");
    nf_py.CellType = dlsym(RTLD_DEFAULT, "PyCell_Type");
    nf_py.Version = dlsym(RTLD_DEFAULT, "Py_Version");
    return nf_py.None != NULL && nf_py.True != NULL && nf_py.False != NULL &&
           nf_py.TupleType != NULL;
}

PyObject *nf_py_none(void) {
    nf_py.Py_IncRef(nf_py.None);
    return nf_py.None;
}

/* ------------------------------------------------------------ the audit hook's entry */

bool nf_py_audit_settled;
static void **hook_head;      /* CPython's list head (in _PyRuntime) that points at our entry */
static void **hook_entry;     /* {next, hook, data}, allocated with `added_with` */
static void *retired_entry;   /* the entry replaced by nf_py_audit_settle_slow: kept */
static nf_py_allocator added_with;

static void *fn_address(nf_py_audit_fn f) {
    void *p;
    memcpy(&p, &f, sizeof p);
    return p;
}
static nf_py_audit_fn hook_fn;
static void *hook_data;

/* _PyRuntime and its size, from the dynamic symbol table; NULL when unknown. */
static unsigned char *runtime_state(size_t *size) {
    void *rt = dlsym(RTLD_DEFAULT, "_PyRuntime");
    Dl_info info;
    const ElfW(Sym) *sym = NULL;
    if (rt == NULL || dladdr1(rt, &info, (void **)&sym, RTLD_DL_SYMENT) == 0 || sym == NULL ||
        info.dli_saddr != rt || sym->st_size < sizeof(void *))
        return NULL;
    *size = sym->st_size;
    return rt;
}

bool nf_py_add_audit_hook(nf_py_audit_fn hook, void *data) {
    size_t size = 0;
    unsigned char *rt = nf_py.PyMem_GetAllocator ? runtime_state(&size) : NULL;
    unsigned char *before = rt ? malloc(size) : NULL;
    if (before != NULL) {
        nf_py.PyMem_GetAllocator(NF_PYMEM_DOMAIN_RAW, &added_with);
        memcpy(before, rt, size);
    }
    int rc = nf_py.PySys_AddAuditHook(hook, data);
    if (rc == 0 && before != NULL) {
        /* Where the hook went: the one word of _PyRuntime that changed, from NULL to
         * the entry, when ours is the first hook (the list head). Anything else (a
         * hook added before ours, another word changed): not known, left as is. */
        uintptr_t start = ((uintptr_t)rt + sizeof(void *) - 1) & ~(uintptr_t)(sizeof(void *) - 1);
        void **found = NULL;
        int changed = 0;
        for (uintptr_t a = start; a + sizeof(void *) <= (uintptr_t)rt + size; a += sizeof(void *)) {
            void *now, *was;
            memcpy(&now, (void *)a, sizeof now);
            memcpy(&was, before + (a - (uintptr_t)rt), sizeof was);
            if (now != was) {
                changed++;
                if (was == NULL) found = (void **)a;
            }
        }
        if (changed == 1 && found != NULL) {
            void **entry = *found;
            if (entry[1] == fn_address(hook) && entry[2] == data) {
                hook_head = found;
                hook_entry = entry;
                hook_fn = hook;
                hook_data = data;
            }
        }
    }
    free(before);
    return rc == 0;
}

void nf_py_audit_settle_slow(void) {
    nf_py_audit_settled = true;
    if (hook_head == NULL || nf_py.PyMem_RawMalloc == NULL) return;
    nf_py_allocator now;
    nf_py.PyMem_GetAllocator(NF_PYMEM_DOMAIN_RAW, &now);
    if (memcmp(&now, &added_with, sizeof now) == 0) return; /* the same allocator frees it */
    if (*hook_head != hook_entry || hook_entry[1] != fn_address(hook_fn) || hook_entry[2] != hook_data)
        return;
    void **copy = nf_py.PyMem_RawMalloc(3 * sizeof(void *));
    if (copy == NULL) return;
    copy[0] = hook_entry[0];
    copy[1] = hook_entry[1];
    copy[2] = hook_entry[2];
    *hook_head = copy;
    retired_entry = hook_entry;
    hook_entry = copy;
}
