#include "torch_loader.h"

#include <dirent.h>
#include <dlfcn.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../src/nf_core.h"
#include "../../src/nf_flush.h"
#include "../../src/nf_intern.h"
#include "../../src/nf_ledger.h"
#include "../../src/nf_log.h"
#include "../../src/nf_plan.h"
#include "../../src/nf_scope.h"
#include "../../src/nf_step.h"
#include "../python/py_module.h"
#include "../python/py_natten_internal.h" /* nf_py_version */
#include "tensor_meta.h"
#include "torch_observer.h"

static atomic_bool said_full, said_observer;

/* nf_intern scans its table; the observer's strings repeat (an op's name is the same
 * pointer every call), so remember the last id per pointer, checked by content. */
static uint16_t intern_cached(const char *s) {
    static _Thread_local struct { const char *ptr; uint16_t id; } cache[64];
    size_t i = ((uintptr_t)s >> 3) % 64;
    if (cache[i].ptr == s && cache[i].id != NF_INTERN_NONE && strcmp(nf_intern_str(cache[i].id), s) == 0)
        return cache[i].id;
    cache[i].ptr = s;
    cache[i].id = nf_intern(s);
    return cache[i].id;
}

static nf_entry *entry_of(const nf_aten_call *c) {
    nf_key key;
    nf_key_init(&key);
    nf_problem *p = &key.problem;
    p->kind = NF_KIND_ATEN;
    uint8_t *ranks[3] = {&p->q_rank, &p->k_rank, &p->v_rank};
    int64_t *shapes[3] = {p->q_shape, p->k_shape, p->v_shape};
    for (int i = 0; i < c->nshapes && i < 3; i++) {
        int r = c->rank[i] < NF_MAX_RANK ? c->rank[i] : NF_MAX_RANK;
        *ranks[i] = (uint8_t)r;
        memcpy(shapes[i], c->shape[i], sizeof(int64_t) * (size_t)r);
    }
    p->aten_flops = ((nf_u128)c->flops_hi << 64) | c->flops_lo;
    key.op = intern_cached(c->op);
    key.dtype = intern_cached(c->dtype);
    key.device = intern_cached(c->device);
    key.pass = c->recompute ? NF_PASS_RECOMPUTE : c->backward ? NF_PASS_BACKWARD : NF_PASS_FORWARD;
    key.module = c->module;
    return nf_ledger_entry(&key);
}

/* The same call as a remembered one: op and dtype are the same immutable strings
 * (by pointer), the device's name the same (by content: the observer reuses its
 * buffer), the operands and FLOPs the same. */
static bool same_call(const nf_aten_call *a, const nf_aten_call *b, const char *b_device) {
    if (a->op != b->op || a->dtype != b->dtype || a->backward != b->backward || a->module != b->module ||
        a->recompute != b->recompute || a->nshapes != b->nshapes || a->flops_hi != b->flops_hi ||
        a->flops_lo != b->flops_lo || strcmp(a->device, b_device) != 0)
        return false;
    for (int i = 0; i < a->nshapes && i < NF_ATEN_MAX_SHAPES; i++) {
        if (a->rank[i] != b->rank[i]) return false;
        int r = a->rank[i] < NF_ATEN_MAX_RANK ? a->rank[i] : NF_ATEN_MAX_RANK;
        if (memcmp(a->shape[i], b->shape[i], sizeof(int64_t) * (size_t)r) != 0) return false;
    }
    return true;
}

/* Per thread, the ledger entries of recent calls: a model repeats a few signatures,
 * so most calls skip building, interning and hashing a key. Entries live as long as
 * the process (a fork child's ledger keeps them, counts reset). */
#define RECENT 16
static _Thread_local struct recent {
    nf_aten_call call;
    char device[32];
    nf_entry *entry;
} recent[RECENT];

static void count(const nf_aten_call *in) {
    const nf_aten_call *c = in;
    nf_aten_call recomputed;
    /* Inside a compiled backward: forward work the compiler put there is recompute,
     * as checkpointing's re-run forward is in eager code (nf_plan.h). */
    if (in->backward && !in->recompute && nf_plan_recomputed(in->op)) {
        recomputed = *in;
        recomputed.backward = false;
        recomputed.recompute = true;
        c = &recomputed;
    }
    if (c->backward && !nf_core_config()->backward) return;
    uintptr_t h = ((uintptr_t)c->op >> 4) ^ (uintptr_t)c->flops_lo ^ ((uintptr_t)c->flops_lo >> 17) ^
                  ((uintptr_t)c->module * 7);
    struct recent *r = &recent[h % RECENT];
    nf_entry *e = r->entry;
    if (e == NULL || !same_call(c, &r->call, r->device)) {
        e = entry_of(c);
        if (e == NULL) {
            nf_log_once(&said_full, "too many distinct op signatures; some aten ops are not counted");
            return;
        }
        if (strlen(c->device) < sizeof r->device) {
            r->call = *c;
            strcpy(r->device, c->device);
            r->entry = e;
        }
    }
    nf_entry_add(e, 1);
    nf_flush_counted();
}

static void say(const char *line) { nf_log_once(&said_observer, "%s", line); }

static bool natten_active(void) { return nf_scope_active(); }

/* NATTEN's dispatcher ops, counted by the observer: a small per-thread stack of the
 * calls running (each with its key, in NATTEN's scope meanwhile). */
#define NATTEN_DEPTH 4
static _Thread_local struct {
    int depth;
    struct natten_frame {
        nf_key key;
        nf_scope saved;
        bool count;
    } f[NATTEN_DEPTH];
} natten_frames;
static atomic_bool said_natten;

/* The key the Python wrapper builds for the same call (py_args.c's nf_args_key, with
 * the backend its marker names). */
static void natten_key(const nf_natten_call *c, nf_key *key) {
    nf_key_init(key);
    nf_problem *p = &key->problem;
    p->kind = c->attention ? NF_KIND_ATTENTION : NF_KIND_FUSED;
    p->layout = NF_HEADS_LAST;
    p->na_dim = (uint8_t)c->na_dim;
    p->causal_mask = c->causal_mask;
    uint8_t *ranks[3] = {&p->q_rank, &p->k_rank, &p->v_rank};
    int64_t *shapes[3] = {p->q_shape, p->k_shape, p->v_shape};
    for (int i = 0; i < 3; i++) {
        int r = c->rank[i] < NF_MAX_RANK ? c->rank[i] : NF_MAX_RANK;
        *ranks[i] = (uint8_t)r;
        memcpy(shapes[i], c->shape[i], sizeof(int64_t) * (size_t)r);
    }
    if (!c->attention) {
        for (int i = 0; i < c->na_dim && i < NF_MAX_NA_DIM; i++) {
            p->kernel[i] = c->kernel[i];
            p->stride[i] = c->stride[i];
            p->dilation[i] = c->dilation[i];
        }
        p->extra_kv = c->extra_kv;
    }
    key->op = intern_cached(c->op);
    key->dtype = intern_cached(c->dtype);
    key->device = intern_cached(c->device);
    key->backend = intern_cached(c->backend);
    key->version = nf_py_version();
    key->pass = c->backward ? NF_PASS_BACKWARD : c->recompute ? NF_PASS_RECOMPUTE : NF_PASS_FORWARD;
    key->module = c->module;
}

static bool natten_begin(const nf_natten_call *c) {
    if (natten_frames.depth >= NATTEN_DEPTH) return false;
    struct natten_frame *f = &natten_frames.f[natten_frames.depth++];
    natten_key(c, &f->key);
    f->count = !c->backward || nf_core_config()->backward;
    f->saved = nf_scope_enter(&f->key);
    return true;
}

static void natten_end(bool ran) {
    if (natten_frames.depth <= 0) return;
    struct natten_frame *f = &natten_frames.f[--natten_frames.depth];
    nf_scope_leave(f->saved);
    if (!ran || !f->count) return;
    nf_entry *e = nf_ledger_entry(&f->key);
    if (e == NULL) {
        nf_core_note_uncounted();
        nf_log_once(&said_natten, "a NATTEN op ran but is not counted: %s",
                    nf_ledger_overflowed() ? "too many distinct op signatures" : "shape outside the rules");
        return;
    }
    nf_entry_add(e, 1);
    nf_flush_counted();
}

static void step_event(nf_step_event what) {
    switch (what) {
    case NF_STEP_EVENT_OPTIMIZER_BEGIN: nf_step_optimizer_begin(); break;
    case NF_STEP_EVENT_OPTIMIZER_END: nf_step_optimizer_end(); break;
    case NF_STEP_EVENT_COMPILE: nf_step_note_compile(); break;
    }
}

/* step_event is dropped (NULL: the observer leaves record_function alone) with
 * NAFLOPS_STEP=off. */
static nf_observer_host host = {NF_OBSERVER_ABI, natten_active, count,      say,
                                natten_begin,    natten_end,    step_event, nf_py_module_of_thread};

static atomic_bool counts_natten;

bool nf_torch_counts_natten_ops(void) { return atomic_load_explicit(&counts_natten, memory_order_relaxed); }

/* The folder libnaflops.so was loaded from, where the observers are installed. */
static bool own_dir(char *out, size_t len) {
    Dl_info info;
    if (dladdr((void *)nf_torch_load, &info) == 0 || info.dli_fname == NULL) return false;
    const char *slash = strrchr(info.dli_fname, '/');
    size_t n = slash ? (size_t)(slash - info.dli_fname) : 1;
    if (n + 1 > len) return false;
    memcpy(out, slash ? info.dli_fname : ".", n);
    out[n] = '\0';
    return true;
}

/* "2.6.0+cpu, 2.8.0+cu128": the torch versions observers were built for, in dir. */
static void built_versions(const char *dir, char *out, size_t len) {
    out[0] = '\0';
    DIR *d = opendir(dir);
    if (d == NULL) return;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        size_t n = strlen(e->d_name);
        if (strncmp(e->d_name, "naflops-torch-", 14) != 0 || n < 18 || strcmp(e->d_name + n - 3, ".so") != 0)
            continue;
        size_t used = strlen(out);
        snprintf(out + used, len - used, "%s%.*s", used ? ", " : "", (int)(n - 17), e->d_name + 14);
    }
    closedir(d);
}

static bool plain_version(const char *v) {
    size_t n = strlen(v);
    if (n == 0 || n > 64) return false;
    for (; *v; v++)
        if (!((*v >= '0' && *v <= '9') || (*v >= 'a' && *v <= 'z') || (*v >= 'A' && *v <= 'Z') ||
              *v == '.' || *v == '+' || *v == '_' || *v == '-'))
            return false;
    return true;
}

/* The observer cache: $XDG_CACHE_HOME/naflops/observers/<version> (default ~/.cache),
 * where `naflops run` builds one for a torch that has none beside the library. */
static bool cache_dir(const char *version, char *out, size_t len) {
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int n;
    if (xdg != NULL && xdg[0] == '/')
        n = snprintf(out, len, "%s/naflops/observers/%s", xdg, version);
    else if (home != NULL && home[0] == '/')
        n = snprintf(out, len, "%s/.cache/naflops/observers/%s", home, version);
    else
        return false;
    return n > 0 && (size_t)n < len;
}

/* sys.executable, for the command that builds an observer (the GIL is held: torch
 * has just finished importing). */
static const char *python_executable(void) {
    typedef void *(*get_fn)(const char *);
    typedef const char *(*utf8_fn)(void *, long *);
    get_fn get;
    utf8_fn utf8;
    *(void **)&get = dlsym(RTLD_DEFAULT, "PySys_GetObject");
    *(void **)&utf8 = dlsym(RTLD_DEFAULT, "PyUnicode_AsUTF8AndSize");
    void *exe = get ? get("executable") : NULL;
    const char *s = exe && utf8 ? utf8(exe, NULL) : NULL;
    return s && s[0] ? s : "python3";
}

/* Says that there is no observer for this torch, and the exact command that builds
 * one into the cache (scripts/build-observer of the checkout this library was built
 * in, when there is one). */
static void say_missing(const char *version, const char *dir, const char *cache) {
    char built[512], script[PATH_MAX + 32], how[2 * PATH_MAX + 256];
    built_versions(dir, built, sizeof built);
    snprintf(script, sizeof script, "%s/../scripts/build-observer", dir);
    char real[PATH_MAX];
    bool here = realpath(script, real) != NULL && access(real, X_OK) == 0;
    snprintf(how, sizeof how, "build one with: %s %s %s%s", here ? real : "scripts/build-observer",
             python_executable(), cache[0] ? cache : "DIR",
             here ? " (naflops run does so itself)" : " in a naflops checkout (naflops run does so itself)");
    nf_log("the whole-model count is off: no observer for torch %s in %s%s%s (built there for: %s); "
           "%s; counting NATTEN ops only",
           version, dir, cache[0] ? " or " : "", cache, built[0] ? built : "none", how);
}

static const nf_tensor_reader *tensor_reader;

const nf_tensor_reader *nf_torch_reader(void) { return tensor_reader; }

/* The observer is loaded whether or not the whole model is counted: the NATTEN
 * wrapper uses its tensor reader (tensor_meta.h). Only the whole-model count says
 * why it is off. */
void nf_torch_load(const char *version) {
    static atomic_bool tried;
    if (atomic_exchange(&tried, true)) return;
    bool whole = nf_core_config()->whole_model;
    char dir[PATH_MAX], path[PATH_MAX + 128], cache[PATH_MAX];
    if (!plain_version(version)) {
        if (whole) nf_log("the whole-model count is off: torch reports an unusual version; counting NATTEN ops only");
        return;
    }
    if (!own_dir(dir, sizeof dir)) {
        if (whole) nf_log("the whole-model count is off: cannot tell where libnaflops.so is; counting NATTEN ops only");
        return;
    }
    if (!cache_dir(version, cache, sizeof cache)) cache[0] = '\0';
    snprintf(path, sizeof path, "%s/naflops-torch-%s.so", dir, version);
    if (access(path, R_OK) != 0 && cache[0] != '\0')
        snprintf(path, sizeof path, "%s/naflops-torch-%s.so", cache, version);
    if (access(path, R_OK) != 0) {
        if (whole) say_missing(version, dir, cache);
        return;
    }
    void *so = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (so == NULL) {
        const char *why = dlerror();
        if (whole)
            nf_log("the whole-model count is off: cannot load %s (%s); counting NATTEN ops only", path,
                   why ? why : "?");
        return;
    }
    const nf_tensor_reader *(*get_reader)(void);
    *(void **)&get_reader = dlsym(so, "naflops_tensor_reader");
    tensor_reader = get_reader != NULL ? get_reader() : NULL;
    if (nf_core_config()->step == NF_STEP_OFF) host.step_event = NULL;
    if (!nf_core_config()->modules) host.module_here = NULL;
    if (!whole) { /* NATTEN only: the observer still finds the optimizer's steps */
        nf_observer_start_fn steps;
        *(void **)&steps = dlsym(so, "naflops_observer_steps");
        if (steps != NULL && host.step_event != NULL) steps(&host);
        return;
    }
    nf_observer_start_fn start;
    nf_observer_scope_fn enter, leave;
    *(void **)&start = dlsym(so, "naflops_observer_start");
    *(void **)&enter = dlsym(so, "naflops_observer_natten_enter");
    *(void **)&leave = dlsym(so, "naflops_observer_natten_leave");
    if (start == NULL || enter == NULL || leave == NULL) {
        nf_log("the whole-model count is off: %s is not a naflops observer; counting NATTEN ops only", path);
        return;
    }
    nf_scope_listen(enter, leave);
    if (start(&host) != 0) {
        nf_scope_listen(NULL, NULL); /* it said why */
        return;
    }
    nf_observer_counts_natten_fn counts;
    *(void **)&counts = dlsym(so, "naflops_observer_counts_natten");
    atomic_store(&counts_natten, counts != NULL && counts() == 1);
}
