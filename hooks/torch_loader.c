#include "torch_loader.h"

#include <dirent.h>
#include <dlfcn.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../src/nf_core.h"
#include "../src/nf_flush.h"
#include "../src/nf_intern.h"
#include "../src/nf_ledger.h"
#include "../src/nf_log.h"
#include "../src/nf_scope.h"
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

static void count(const nf_aten_call *c) {
    if (c->backward && !nf_core_config()->backward) return;
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
    if (!nf_ledger_add(&key, 1)) {
        nf_log_once(&said_full, "too many distinct op signatures; some aten ops are not counted");
        return;
    }
    nf_flush_counted();
}

static void say(const char *line) { nf_log_once(&said_observer, "%s", line); }

static bool natten_active(void) { return nf_scope_active(); }

static const nf_observer_host host = {NF_OBSERVER_ABI, natten_active, count, say};

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

void nf_torch_load(const char *version) {
    static atomic_bool tried;
    if (atomic_exchange(&tried, true) || !nf_core_config()->whole_model) return;
    char dir[PATH_MAX], path[PATH_MAX + 128], built[512];
    if (!plain_version(version)) {
        nf_log("the whole-model count is off: torch reports an unusual version; counting NATTEN ops only");
        return;
    }
    if (!own_dir(dir, sizeof dir)) {
        nf_log("the whole-model count is off: cannot tell where libnaflops.so is; counting NATTEN ops only");
        return;
    }
    snprintf(path, sizeof path, "%s/naflops-torch-%s.so", dir, version);
    if (access(path, R_OK) != 0) {
        built_versions(dir, built, sizeof built);
        nf_log("the whole-model count is off: no observer for torch %s in %s (built for: %s); "
               "run scripts/build-observer with this Python; counting NATTEN ops only",
               version, dir, built[0] ? built : "none");
        return;
    }
    void *so = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (so == NULL) {
        const char *why = dlerror();
        nf_log("the whole-model count is off: cannot load %s (%s); counting NATTEN ops only", path,
               why ? why : "?");
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
    if (start(&host) != 0) nf_scope_listen(NULL, NULL); /* it said why */
}
