#include "nf_core.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nf_dump.h"
#include "nf_gpu.h"
#include "nf_gpu_peak.h"
#include "nf_intern.h"
#include "nf_ledger.h"
#include "nf_module_report.h"
#include "nf_log.h"
#include "nf_report.h"
#include "nf_stderr.h"
#include "nf_step.h"

static nf_config config;
static bool initialised;
static char natten_version[64];
static _Atomic uint64_t uncounted;
static atomic_bool program_seen, natten_seen;

void nf_core_set_natten_version(const char *version) {
    snprintf(natten_version, sizeof natten_version, "%s", version ? version : "");
    atomic_store(&natten_seen, true);
}

void nf_core_note_program(void) { atomic_store(&program_seen, true); }

void nf_core_note_uncounted(void) { atomic_fetch_add_explicit(&uncounted, 1, memory_order_relaxed); }

static const char *env(const char *name) { return getenv(name); }

/* A relative NAFLOPS_OUTPUT is taken against the directory the process started in,
 * once: a program that changes directory does not move its dump. */
static void anchor_output(nf_config *cfg) {
    char cwd[NF_PATH_MAX], joined[NF_PATH_MAX];
    if (cfg->output[0] == '\0' || cfg->output[0] == '/' || getcwd(cwd, sizeof cwd) == NULL) return;
    /* a '%' in the directory's name is kept literally in the pattern */
    size_t n = 0;
    for (const char *c = cwd; *c && n + 2 < sizeof joined; c++) {
        if (*c == '%') joined[n++] = '%';
        joined[n++] = *c;
    }
    if (n + 1 + strlen(cfg->output) + 1 > sizeof joined) return;
    joined[n++] = '/';
    strcpy(joined + n, cfg->output);
    strcpy(cfg->output, joined);
}

void nf_core_init(void) {
    if (initialised) return;
    nf_stderr_remember();
    nf_config_defaults(&config);
    nf_config_parse(&config, env, nf_log_raw_line);
    anchor_output(&config);
    nf_step_configure(&config);
    initialised = true;
}

const nf_config *nf_core_config(void) {
    if (!initialised) nf_core_init();
    return &config;
}

/* The pid in a JSON dump's opening lines; -1 when none can be read. */
static long dump_pid(const char *path) {
    char head[256];
    FILE *f = fopen(path, "re");
    if (f == NULL) return -1;
    size_t n = fread(head, 1, sizeof head - 1, f);
    fclose(f);
    head[n] = '\0';
    const char *p = strstr(head, "\"pid\": ");
    return p ? strtol(p + 7, NULL, 10) : -1;
}

/* An image that follows an exec has the pid of the one before it, which wrote its
 * dump at the exec: this image writes beside it, to PATH.exec1 (then .exec2, ...),
 * instead of over it. Returns false when no such name fits. */
static bool after_exec_path(char *path, size_t len) {
    if (dump_pid(path) != (long)getpid()) return true;
    size_t base = strlen(path);
    for (int i = 1; i < 1000; i++) {
        if ((size_t)snprintf(path + base, len - base, ".exec%d", i) >= len - base) return false;
        if (access(path, F_OK) != 0 || dump_pid(path) != (long)getpid()) return true;
        /* that one is an earlier image's too: try the next */
    }
    return false;
}

/* The peak MFU divides by: NAFLOPS_PEAK, else the GPU table's dense peak for the chip
 * and dtype that did most of the model's FLOPs on a CUDA device; 0 when neither. */
static double peak_of(const nf_config *cfg, nf_entry *const *entries, int n, char *src, size_t len) {
    if (cfg->peak > 0) {
        snprintf(src, len, "NAFLOPS_PEAK");
        return cfg->peak;
    }
    static nf_gpu_info info; /* guarded by write_lock */
    nf_gpu_info_now(&info);
    nf_u128 best = 0;
    const char *dtype = NULL;
    int device = -1;
    for (int i = 0; i < n; i++) {
        const nf_entry *e = entries[i];
        const char *dev = nf_intern_str(e->key.device);
        if (e->key.pass > NF_PASS_BACKWARD || strncmp(dev, "cuda", 4) != 0) continue;
        nf_u128 sum = 0; /* this (device, dtype)'s model FLOPs */
        for (int j = 0; j < n; j++)
            if (entries[j]->key.device == e->key.device && entries[j]->key.dtype == e->key.dtype &&
                entries[j]->key.pass <= NF_PASS_BACKWARD)
                sum = nf_u128_add_sat(sum, nf_u128_mul_sat(entries[j]->flops_per_call,
                                                           atomic_load(&entries[j]->calls)));
        if (sum > best) {
            best = sum;
            dtype = nf_intern_str(e->key.dtype);
            device = dev[4] == ':' ? atoi(dev + 5) : 0;
        }
    }
    if (dtype == NULL || device < 0 || device >= NF_GPU_DEVICES_MAX || info.chip[device][0] == '\0')
        return 0;
    double tflops = nf_gpu_peak_tflops(info.chip[device], dtype);
    if (tflops <= 0) return 0;
    snprintf(src, len, "%s %s dense", info.chip[device], dtype);
    return tflops * 1e12;
}

typedef struct dump_args {
    const nf_run_info *run;
    nf_entry **entries;
    int n;
} dump_args;

static void write_json(FILE *f, void *arg) {
    dump_args *a = arg;
    nf_report_json(f, a->run, a->entries, a->n);
}

static void write_csv(FILE *f, void *arg) {
    dump_args *a = arg;
    nf_report_csv(f, a->entries, a->n);
}

/* Dumps, periodic and final, come from one place, one at a time: the writer thread
 * and the exiting thread may both get here. */
static pthread_mutex_t write_lock = PTHREAD_MUTEX_INITIALIZER;
static char target[NF_PATH_MAX]; /* where this image writes, once it has; guarded by write_lock */
static atomic_bool finished, said_flush_failed;

/* Writes the dump (and, when final, the summary). A periodic flush that fails says so
 * once and leaves the summary to the end. */
static void write_report(bool final) {
    static nf_entry *entries[NF_LEDGER_CAPACITY];
    static nf_entry frozen[NF_LEDGER_CAPACITY]; /* guarded by write_lock */
    static nf_step_view steps;                  /* guarded by write_lock */
    static char peak_source[96];
    const nf_config *cfg = nf_core_config();
    if (cfg->disabled) return;
    pthread_mutex_lock(&write_lock);
    int n = nf_ledger_freeze(frozen, entries, NF_LEDGER_CAPACITY);

    char host[256] = "unknown";
    if (gethostname(host, sizeof host) != 0) strcpy(host, "unknown");
    host[sizeof host - 1] = '\0';
    nf_run_info run = {
        .pid = (long)getpid(),
        .host = host,
        .rank = getenv("RANK"),
        .local_rank = getenv("LOCAL_RANK"),
        .world_size = getenv("WORLD_SIZE"),
        .natten_version = natten_version,
        .uncounted = atomic_load(&uncounted),
    };
    if (nf_step_view_now(&steps)) {
        run.steps = &steps;
        run.peak = peak_of(cfg, entries, n, peak_source, sizeof peak_source);
        run.peak_source = peak_source;
    }

    bool dump_failed = false;
    /* The final dump is written, counted or not, by a program that imported natten,
     * and by every rank of a job (RANK set) that imported torch: each leaves its file
     * for `naflops merge`. Not by a launcher (torchrun) or a helper without natten. */
    bool seen = atomic_load(&natten_seen) || (atomic_load(&program_seen) && run.rank != NULL);
    if (cfg->output[0] != '\0' && (n > 0 || (final && (seen || cfg->summary == NF_SUMMARY_ALWAYS)))) {
        char path[NF_PATH_MAX];
        dump_args args = {&run, entries, n};
        bool ok = true;
        if (target[0] != '\0') {
            strcpy(path, target);
        } else if (nf_config_expand_path(cfg->output, run.pid, run.rank ? run.rank : "norank", host,
                                         path, sizeof path) != 0 ||
                   !after_exec_path(path, sizeof path)) {
            if (final)
                nf_log("NAFLOPS_OUTPUT='%s' expands to a path that is too long; no dump written",
                       cfg->output);
            ok = false;
        }
        if (!ok) {
            dump_failed = true;
        } else if (n == 0 && target[0] == '\0' && access(path, F_OK) == 0) {
            /* Nothing counted here, and a file is there already: most likely the
             * dump of the process that did count (a compile worker or data loader
             * sharing its path exits after it). Leave it. */
        } else if (nf_dump_atomic(path, cfg->format == NF_FORMAT_CSV ? write_csv : write_json,
                                  &args) != 0) {
            if (final)
                nf_log("cannot write %s: %s; the summary goes to stderr instead", path,
                       strerror(errno));
            else
                nf_log_once(&said_flush_failed, "cannot write %s: %s; periodic flushes are off", path,
                            strerror(errno));
            dump_failed = true;
        } else {
            strcpy(target, path); /* this image's file, for its later flushes */
        }
    }
    if (final) {
        if (nf_step_target_missing() && (n > 0 || cfg->summary == NF_SUMMARY_ALWAYS))
            nf_log("NAFLOPS_STEP=%s:%s: the program never imported %s; no steps were counted",
                   cfg->step_module, cfg->step_qualname, cfg->step_module);
        if (nf_ledger_overflowed())
            nf_log("more than %d distinct op signatures; later ones were not counted",
                   NF_LEDGER_CAPACITY);
        bool print = cfg->summary == NF_SUMMARY_ALWAYS ||
                     ((n > 0 || run.uncounted > 0) && (cfg->summary == NF_SUMMARY_AUTO || dump_failed));
        if (print) { /* rendered first, then one write to the stderr we started with */
            char *text = NULL;
            size_t len = 0;
            FILE *m = open_memstream(&text, &len);
            if (m != NULL) {
                nf_report_table(m, &run, entries, n, cfg->units);
                nf_module_report_table(m, entries, n, cfg->units);
                if (run.steps) nf_step_report_table(m, run.steps, run.peak, run.peak_source, cfg->units);
                nf_gpu_report_table(m, entries, n); /* nothing when no GPU work was seen */
                if (fclose(m) == 0) {
                    fflush(stderr);
                    nf_stderr_write(text, len);
                }
                free(text);
            }
        }
    }
    pthread_mutex_unlock(&write_lock);
}

static void (*_Atomic before_finish[4])(void);

void nf_core_before_finish(void (*fn)(void)) {
    for (int i = 0; i < 4; i++) {
        void (*expected)(void) = NULL;
        if (atomic_compare_exchange_strong(&before_finish[i], &expected, fn)) return;
    }
}

void nf_core_finish(void) {
    if (atomic_exchange(&finished, true)) return;
    for (int i = 0; i < 4; i++) {
        void (*fn)(void) = atomic_load(&before_finish[i]);
        if (fn != NULL) fn();
    }
    write_report(true);
}

void nf_core_flush(void) {
    if (atomic_load(&finished) || atomic_load(&said_flush_failed)) return;
    write_report(false);
}

void nf_core_after_fork_child(void) {
    /* The parent may have held the lock while forking: this process has one thread. */
    pthread_mutex_init(&write_lock, NULL);
    target[0] = '\0'; /* the child writes where its own pid and rank say */
    atomic_store(&finished, false);
    nf_ledger_reset();
    atomic_store(&uncounted, 0);
    nf_gpu_reset();
    nf_step_reset();
}
