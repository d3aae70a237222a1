/* The nn.Module that runs a counted op: the name every ledger row carries.
 *
 * Read from the Python stack when an op is counted, never with a hook: no global
 * module hook (it would push every nn.Module call off its fast path, and the program
 * can see torch's hook dictionaries), no patched method, nothing Dynamo traces. The
 * innermost frame of torch.nn.Module._call_impl holds the module as `self` (Dynamo's
 * transformed _call_impl frames too, under `model.compile()`); its name comes from a
 * map of module -> name filled by walking the outermost module's tree once.
 *
 * Names are FlopCounterMode's: the outermost module's class, then the path that its
 * named_modules() gives ("HDiT.encoder.levels.1.attn"); a module shared by two parents
 * keeps its first name, as named_modules() does. A module called outside the tree of
 * the module that called it is named from its own class. torch.compile's
 * OptimizedModule wrapper is looked through (its _orig_mod is the module).
 *
 * Everything here runs with the GIL held (the Python wrapper holds it; the observer
 * takes it, nf_py_module_of_thread), so the tables need no lock. Pointers in them are
 * only compared with live objects from the stack, never followed: a module freed and
 * another allocated at its address is told apart by its type and its _modules dict. */
#include "py_module.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/nf_intern.h"
#include "../../src/nf_log.h"
#include "py_state.h"

#define P nf_py

#define NAME_MAX_LEN 1024
#define TREE_MAX (1 << 20) /* modules named per tree walk */
#define STACK_DEPTH 512    /* frames looked at */

static struct {
    bool ready;
    PyObject *module_type;     /* torch.nn.Module */
    PyObject *call_impl;       /* torch.nn.Module._call_impl.__code__ */
    PyObject *call_impl_name;  /* its co_name, co_filename */
    PyObject *call_impl_file;
    PyObject *optimized_type;  /* torch._dynamo's OptimizedModule, once met */
    PyObject *s_self, *s_modules, *s_orig_mod, *s_f_locals, *s_co_name, *s_co_filename;
} M;

static atomic_bool said_full;

/* ------------------------------------------------------------ _call_impl frames */

/* code object -> whether it is _call_impl's (the original, or Dynamo's transform of
 * it: same name, same file). A stale slot (code freed, address reused) costs at most
 * a missed level or one `self` read that is then checked to be a module. */
#define CODES 1024
static struct { PyObject *code; bool yes; } codes[CODES];
static int ncodes;

static bool same_str(PyObject *obj, PyObject *attr, PyObject *want) {
    PyObject *v = P.PyObject_GetAttr(obj, attr);
    bool same = false;
    if (v != NULL) {
        Py_ssize_t a, b;
        const char *x = P.PyUnicode_AsUTF8AndSize(v, &a), *y = P.PyUnicode_AsUTF8AndSize(want, &b);
        same = x != NULL && y != NULL && a == b && memcmp(x, y, (size_t)a) == 0;
        P.Py_DecRef(v);
    }
    P.PyErr_Clear();
    return same;
}

static bool is_call_impl(PyObject *code) {
    if (code == M.call_impl) return true;
    size_t i = ((uintptr_t)code >> 4) % CODES;
    for (int probe = 0; probe < 8; probe++, i = (i + 1) % CODES) {
        if (codes[i].code == code) return codes[i].yes;
        if (codes[i].code == NULL) break;
    }
    bool yes = same_str(code, M.s_co_name, M.call_impl_name) && same_str(code, M.s_co_filename, M.call_impl_file);
    if (ncodes >= CODES / 2) { /* forget rather than grow: codes repeat */
        memset(codes, 0, sizeof codes);
        ncodes = 0;
    }
    i = ((uintptr_t)code >> 4) % CODES;
    while (codes[i].code != NULL) i = (i + 1) % CODES;
    codes[i].code = code, codes[i].yes = yes;
    ncodes++;
    return yes;
}

/* CPython 3.11 has no PyFrame_GetVar, and f_locals copies every local into a dict
 * (about 0.5 us for _call_impl's eight). Its frame layout is fixed for the 3.11
 * series: PyFrameObject {ob_refcnt, ob_type, f_back, f_frame, ...} and
 * _PyInterpreterFrame {f_func, f_globals, f_builtins, f_locals, f_code, frame_obj,
 * previous, prev_instr, stacktop, is_entry, owner, localsplus[]}: `self`, the first
 * parameter, is localsplus[0] (at byte 72), a cell in _call_impl (its closure uses
 * it). Read there only on 3.11 with the standard object header (ob_type at byte 8:
 * not a Py_TRACE_REFS build), and only when the frame's f_code is the code object
 * that PyFrame_GetCode gave; else the f_locals way. */
static bool layout_311(void) {
    static int known; /* 0 not yet, 1 yes, -1 no */
    if (known == 0)
        known = P.Version != NULL && (*P.Version >> 16) == 0x030B && P.FrameType != NULL &&
                        P.CellType != NULL && P.PyCell_Get != NULL
                    ? 1
                    : -1;
    return known == 1;
}

static PyObject *self_311(PyObject *frame, PyObject *code) {
    if (*(PyObject **)((char *)frame + 8) != P.FrameType) return NULL;
    char *iframe = *(char **)((char *)frame + 24);
    if (iframe == NULL || *(PyObject **)(iframe + 32) != code) return NULL;
    PyObject *v = *(PyObject **)(iframe + 72);
    if (v == NULL) return NULL;
    if (*(PyObject **)((char *)v + 8) == P.CellType) return P.PyCell_Get(v);
    P.Py_IncRef(v);
    return v;
}

/* The frame's `self` (new reference), or NULL: PyFrame_GetVar on 3.12+, the frame
 * itself on 3.11, else its f_locals (3.10). */
static PyObject *self_of(PyObject *frame) {
    PyObject *v = NULL;
    if (layout_311()) {
        PyObject *code = P.PyFrame_GetCode(frame);
        if (code != NULL) {
            v = self_311(frame, code);
            P.Py_DecRef(code);
            if (v != NULL) return v;
        }
        P.PyErr_Clear();
    }
    if (P.PyFrame_GetVar != NULL) {
        v = P.PyFrame_GetVar(frame, M.s_self);
    } else if (P.PyObject_GetItem != NULL) {
        PyObject *locals = P.PyObject_GetAttr(frame, M.s_f_locals);
        if (locals != NULL) {
            v = P.PyObject_GetItem(locals, M.s_self);
            P.Py_DecRef(locals);
        }
    }
    if (v == NULL) P.PyErr_Clear();
    return v;
}

/* Module classes already known not to be torch.compile's OptimizedModule (by
 * address: a stale slot at worst delays finding OptimizedModule by one call). */
static bool checked_type(PyObject *type) {
    static PyObject *seen[64];
    size_t i = ((uintptr_t)type >> 4) % 64;
    if (seen[i] == type) return true;
    seen[i] = type;
    return false;
}

/* The module a _call_impl frame runs (new reference), OptimizedModule looked
 * through; NULL when its `self` is not a module. */
static PyObject *module_of(PyObject *frame) {
    PyObject *self = self_of(frame);
    if (self == NULL) return NULL;
    if (P.PyObject_IsInstance(self, M.module_type) != 1) {
        P.PyErr_Clear();
        P.Py_DecRef(self);
        return NULL;
    }
    PyObject *type = P.PyObject_Type(self);
    if (type != NULL && M.optimized_type == NULL && !checked_type(type)) {
        PyObject *name = P.PyObject_GetAttr(type, nf_py_str.name);
        if (name != NULL && P.PyUnicode_CompareWithASCIIString(name, "OptimizedModule") == 0) {
            P.Py_IncRef(type);
            M.optimized_type = type;
        }
        if (name) P.Py_DecRef(name);
        P.PyErr_Clear();
    }
    if (type != NULL && type == M.optimized_type) {
        PyObject *orig = P.PyObject_GetAttr(self, M.s_orig_mod);
        if (orig != NULL && P.PyObject_IsInstance(orig, M.module_type) == 1) {
            P.Py_DecRef(self);
            self = orig;
        } else if (orig) {
            P.Py_DecRef(orig);
        }
        P.PyErr_Clear();
    }
    if (type) P.Py_DecRef(type);
    return self;
}

/* The next _call_impl frame from frame up (frame included), new reference; frame's
 * reference is taken. NULL when none. */
static PyObject *next_call(PyObject *frame, int *budget) {
    while (frame != NULL && (*budget)-- > 0) {
        PyObject *code = P.PyFrame_GetCode(frame);
        bool hit = code != NULL && is_call_impl(code);
        if (code) P.Py_DecRef(code);
        if (hit) return frame;
        PyObject *back = P.PyFrame_GetBack(frame);
        P.Py_DecRef(frame);
        frame = back;
    }
    if (frame) P.Py_DecRef(frame);
    P.PyErr_Clear();
    return NULL;
}

/* ------------------------------------------------------------ module -> name */

typedef struct named {
    PyObject *module; /* compared, never followed */
    PyObject *type;   /* its type and _modules dict when named: a check that the */
    PyObject *dict;   /* address still holds that module */
    char *name;
    uint16_t id;      /* interned on first count; NF_INTERN_NONE before */
    uint8_t rewalks;  /* times its tree was walked again for a module not in it */
    uint32_t walk;    /* the tree walk that named it */
} named;

static named *names;
static size_t names_cap, names_used;
static uint32_t walks;

static named *slot_of(PyObject *module) {
    if (names_cap == 0) return NULL;
    size_t i = ((uintptr_t)module >> 4) & (names_cap - 1);
    while (names[i].module != NULL && names[i].module != module) i = (i + 1) & (names_cap - 1);
    return &names[i];
}

static bool grow(void) {
    size_t cap = names_cap ? 2 * names_cap : 1024;
    named *fresh = calloc(cap, sizeof *fresh);
    if (fresh == NULL) return false;
    named *old = names;
    size_t old_cap = names_cap;
    names = fresh, names_cap = cap;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].module != NULL) *slot_of(old[i].module) = old[i];
    free(old);
    return true;
}

static PyObject *modules_dict(PyObject *module) {
    PyObject *d = P.PyObject_GetAttr(module, M.s_modules);
    if (d == NULL) P.PyErr_Clear();
    return d;
}

/* The entry naming module, when it is still that module's. */
static named *lookup(PyObject *module) {
    named *e = slot_of(module);
    if (e == NULL || e->module == NULL) return NULL;
    PyObject *type = P.PyObject_Type(module);
    PyObject *dict = modules_dict(module);
    bool same = type == e->type && dict == e->dict;
    if (type) P.Py_DecRef(type);
    if (dict) P.Py_DecRef(dict);
    return same ? e : NULL;
}

static void set_name(PyObject *module, PyObject *dict, const char *name, size_t len) {
    if ((names_used + 1) * 2 > names_cap && !grow()) return;
    named *e = slot_of(module);
    char *copy = malloc(len + 1);
    if (copy == NULL) return;
    memcpy(copy, name, len);
    copy[len] = '\0';
    if (e->module == NULL) names_used++;
    free(e->name);
    PyObject *type = P.PyObject_Type(module);
    uint8_t rewalks = e->module == module ? e->rewalks : 0;
    *e = (named){module, type, dict, copy, NF_INTERN_NONE, rewalks, walks};
    if (type) P.Py_DecRef(type); /* compared only: the module holds its type */
}

/* Names root and every module below it, in named_modules() order (preorder, children
 * in _modules order, a module met twice keeps its first name), prefix first. */
static void name_tree(PyObject *root, const char *prefix) {
    typedef struct { PyObject *module; size_t len; } item; /* len: of its name in buf */
    size_t cap = 256, n = 0, seen = 0;
    item *stack = malloc(cap * sizeof *stack);
    char *buf = malloc(NAME_MAX_LEN);
    char **stems = NULL; /* the name of each pushed item, copied (buf is reused) */
    if (stack == NULL || buf == NULL) goto out;
    stems = malloc(cap * sizeof *stems);
    if (stems == NULL) goto out;
    walks++;
    P.Py_IncRef(root);
    stack[n] = (item){root, strlen(prefix)};
    stems[n++] = strdup(prefix);
    while (n > 0 && seen < TREE_MAX) {
        item it = stack[--n];
        char *stem = stems[n];
        if (it.module == NULL || stem == NULL) {
            free(stem);
            if (it.module) P.Py_DecRef(it.module);
            continue;
        }
        named *e = slot_of(it.module);
        bool done = e != NULL && e->module == it.module && e->walk == walks;
        PyObject *dict = done ? NULL : modules_dict(it.module);
        if (!done) {
            set_name(it.module, dict, stem, it.len);
            seen++;
        }
        if (dict != NULL) {
            /* children, pushed last first so that the first is named first */
            Py_ssize_t pos = 0, count = 0;
            PyObject *k, *v;
            while (P.PyDict_Next(dict, &pos, &k, &v)) count++;
            size_t base = n;
            if (n + (size_t)count > cap) {
                size_t want = 2 * (n + (size_t)count);
                item *s2 = realloc(stack, want * sizeof *s2);
                if (s2 != NULL) stack = s2;
                char **t2 = realloc(stems, want * sizeof *t2);
                if (t2 != NULL) stems = t2;
                if (s2 == NULL || t2 == NULL) count = 0;
                else cap = want;
            }
            n += (size_t)count;
            pos = 0;
            for (Py_ssize_t c = 0; c < count && P.PyDict_Next(dict, &pos, &k, &v);) {
                size_t at = base + (size_t)(count - 1 - c++);
                Py_ssize_t klen = 0;
                const char *key = P.PyUnicode_AsUTF8AndSize(k, &klen);
                bool ok = key != NULL && v != P.None && P.PyObject_IsInstance(v, M.module_type) == 1 &&
                          it.len + 1 + (size_t)klen < NAME_MAX_LEN;
                P.PyErr_Clear();
                stack[at] = (item){ok ? v : NULL, 0};
                stems[at] = NULL;
                if (!ok) continue;
                memcpy(buf, stem, it.len);
                buf[it.len] = '.';
                memcpy(buf + it.len + 1, key, (size_t)klen);
                stack[at].len = it.len + 1 + (size_t)klen;
                buf[stack[at].len] = '\0';
                stems[at] = strdup(buf);
                P.Py_IncRef(v);
            }
            /* dict is only compared in the entries: the module holds it */
            P.Py_DecRef(dict);
        }
        free(stem);
        if (it.module) P.Py_DecRef(it.module);
    }
    while (n > 0) { /* stopped at TREE_MAX: let go of the rest */
        n--;
        free(stems[n]);
        if (stack[n].module) P.Py_DecRef(stack[n].module);
    }
out:
    free(stems);
    free(stack);
    free(buf);
}

/* The class name of module, into buf. */
static bool class_name(PyObject *module, char *buf, size_t len) {
    PyObject *type = P.PyObject_Type(module);
    PyObject *name = type ? P.PyObject_GetAttr(type, nf_py_str.name) : NULL;
    Py_ssize_t n = 0;
    const char *s = name ? P.PyUnicode_AsUTF8AndSize(name, &n) : NULL;
    bool ok = s != NULL && n > 0 && (size_t)n < len;
    if (ok) {
        memcpy(buf, s, (size_t)n);
        buf[n] = '\0';
    }
    if (name) P.Py_DecRef(name);
    if (type) P.Py_DecRef(type);
    P.PyErr_Clear();
    return ok;
}

/* Names the tree of root: under its own name when it is already known (a module the
 * program called alone, or a checkpointed block re-run by the backward pass, keeps
 * the name its place in the model gave it), else from its class. */
static void name_from(PyObject *root) {
    named *known = lookup(root);
    /* A module the tree does not hold (made during forward, or added later) would walk
     * it on every count: a few walks, then it is named from its own class. */
    if (known != NULL && known->rewalks >= 4) return;
    if (known != NULL) known->rewalks++;
    char prefix[NAME_MAX_LEN];
    if (known != NULL && strlen(known->name) < sizeof prefix) strcpy(prefix, known->name);
    else if (!class_name(root, prefix, sizeof prefix)) return;
    name_tree(root, prefix);
}

static uint16_t id_of(named *e) {
    if (e->id == NF_INTERN_NONE) {
        e->id = nf_intern(e->name);
        if (e->id == NF_INTERN_NONE)
            nf_log_once(&said_full, "more than %d distinct names; work of further modules is "
                        "counted outside modules", NF_INTERN_MAX);
    }
    return e->id;
}

/* ------------------------------------------------------------ the entry points */

/* The id naming module, whose _call_impl frame (or an inner one) is frame. */
static uint16_t name_for(PyObject *module, PyObject *frame, int *budget) {
    named *e = lookup(module);
    if (e == NULL) {
        /* First count in this module: name the tree of the outermost module on the
         * stack, then, if this one is not in it, its own. */
        PyObject *root = NULL, *f = frame;
        P.Py_IncRef(f);
        while ((f = next_call(f, budget)) != NULL) {
            PyObject *m = module_of(f);
            if (m != NULL) {
                if (root) P.Py_DecRef(root);
                root = m;
            }
            PyObject *back = P.PyFrame_GetBack(f);
            P.Py_DecRef(f);
            f = back;
        }
        if (root != NULL) {
            name_from(root);
            P.Py_DecRef(root);
        }
        if ((e = lookup(module)) == NULL) {
            name_from(module);
            e = lookup(module);
        }
    }
    return e != NULL ? id_of(e) : NF_INTERN_NONE;
}

/* The submodule at a dotted path below module (new reference), or NULL. */
static PyObject *below(PyObject *module, const char *path) {
    P.Py_IncRef(module);
    while (*path) {
        const char *dot = strchr(path, '.');
        size_t len = dot ? (size_t)(dot - path) : strlen(path);
        char part[256];
        PyObject *dict = len < sizeof part ? modules_dict(module) : NULL;
        PyObject *child = NULL;
        if (dict != NULL) {
            memcpy(part, path, len);
            part[len] = '\0';
            child = P.PyDict_GetItemString(dict, part); /* borrowed */
            P.Py_DecRef(dict);
        }
        P.Py_DecRef(module);
        if (child == NULL || P.PyObject_IsInstance(child, M.module_type) != 1) {
            P.PyErr_Clear();
            return NULL;
        }
        P.Py_IncRef(child);
        module = child;
        path += len + (dot != NULL);
    }
    return module;
}

uint16_t nf_py_module_here(void) { return nf_py_module_below(NULL); }

uint16_t nf_py_module_below(const char *path) {
    if (!M.ready) return NF_INTERN_NONE;
    PyObject *top = P.PyEval_GetFrame(); /* borrowed */
    if (top == NULL) return NF_INTERN_NONE;
    P.Py_IncRef(top);
    int budget = STACK_DEPTH;
    PyObject *frame = next_call(top, &budget), *module = NULL;
    while (frame != NULL && (module = module_of(frame)) == NULL) {
        PyObject *back = P.PyFrame_GetBack(frame);
        P.Py_DecRef(frame);
        frame = next_call(back, &budget);
    }
    uint16_t id = NF_INTERN_NONE;
    if (module != NULL) {
        PyObject *inner = path != NULL ? below(module, path) : NULL;
        id = name_for(inner != NULL ? inner : module, frame, &budget);
        if (inner) P.Py_DecRef(inner);
        P.Py_DecRef(module);
    }
    if (frame) P.Py_DecRef(frame);
    P.PyErr_Clear();
    return id;
}

static bool finalizing(void) {
    if (P.Py_IsFinalizing != NULL) return P.Py_IsFinalizing() != 0;
    if (P._Py_IsFinalizing != NULL) return P._Py_IsFinalizing() != 0;
    return true; /* cannot tell: do not take the GIL */
}

uint16_t nf_py_module_of_thread(void) {
    /* A thread that never ran Python (an autograd or OpenMP worker) has no module, and
     * is not given a thread state; nor is the GIL taken while the interpreter ends. */
    if (!M.ready || P.PyGILState_GetThisThreadState() == NULL || !P.Py_IsInitialized() || finalizing())
        return NF_INTERN_NONE;
    int g = P.PyGILState_Ensure();
    PyObject *et, *ev, *tb; /* the thread may hold the GIL with an error set */
    P.PyErr_Fetch(&et, &ev, &tb);
    uint16_t id = nf_py_module_here();
    P.PyErr_Restore(et, ev, tb);
    P.PyGILState_Release(g);
    return id;
}

bool nf_py_module_ready(void) { return M.ready; }

void nf_py_module_set_torch(PyObject *torch) {
    if (M.ready || P.PyEval_GetFrame == NULL || P.PyFrame_GetBack == NULL || P.PyFrame_GetCode == NULL ||
        P.PyDict_Next == NULL || P.PyGILState_Ensure == NULL || P.PyGILState_Release == NULL ||
        P.PyGILState_GetThisThreadState == NULL || (P.PyFrame_GetVar == NULL && P.PyObject_GetItem == NULL))
        return;
    PyObject *nn = P.PyObject_GetAttrString(torch, "nn");
    PyObject *type = nn ? P.PyObject_GetAttrString(nn, "Module") : NULL;
    PyObject *fn = type ? P.PyObject_GetAttrString(type, "_call_impl") : NULL;
    /* PyFunction_GetCode: reading __code__ by name is an audit event the program sees */
    PyObject *code = fn && P.PyFunction_GetCode ? P.PyFunction_GetCode(fn) : NULL;
    if (code) P.Py_IncRef(code); /* borrowed: owned like the attribute read was */
    P.PyErr_Clear();
    PyObject *name = code ? P.PyObject_GetAttrString(code, "co_name") : NULL;
    PyObject *file = code ? P.PyObject_GetAttrString(code, "co_filename") : NULL;
    M.s_self = P.PyUnicode_InternFromString("self");
    M.s_modules = P.PyUnicode_InternFromString("_modules");
    M.s_orig_mod = P.PyUnicode_InternFromString("_orig_mod");
    M.s_f_locals = P.PyUnicode_InternFromString("f_locals");
    M.s_co_name = P.PyUnicode_InternFromString("co_name");
    M.s_co_filename = P.PyUnicode_InternFromString("co_filename");
    if (nn) P.Py_DecRef(nn);
    if (fn) P.Py_DecRef(fn);
    P.PyErr_Clear();
    if (type && code && name && file && M.s_self && M.s_modules && M.s_orig_mod && M.s_f_locals &&
        M.s_co_name && M.s_co_filename && nf_py_str.name) {
        M.module_type = type, M.call_impl = code, M.call_impl_name = name, M.call_impl_file = file;
        M.ready = true;
        return;
    }
    if (type) P.Py_DecRef(type);
    if (code) P.Py_DecRef(code);
    if (name) P.Py_DecRef(name);
    if (file) P.Py_DecRef(file);
}
