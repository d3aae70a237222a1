#include "nf_core.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nf_dump.h"
#include "nf_ledger.h"
#include "nf_log.h"
#include "nf_report.h"

static nf_config config;
static bool initialised;

static const char *env(const char *name) { return getenv(name); }

void nf_core_init(void) {
    if (initialised) return;
    nf_config_defaults(&config);
    nf_config_parse(&config, env, nf_log_raw_line);
    initialised = true;
}

const nf_config *nf_core_config(void) {
    if (!initialised) nf_core_init();
    return &config;
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

void nf_core_finish(void) {
    static nf_entry *entries[NF_LEDGER_CAPACITY];
    const nf_config *cfg = nf_core_config();
    if (cfg->disabled) return;
    int n = nf_ledger_snapshot(entries, NF_LEDGER_CAPACITY);

    char host[256] = "unknown";
    if (gethostname(host, sizeof host) != 0) strcpy(host, "unknown");
    host[sizeof host - 1] = '\0';
    nf_run_info run = {
        .pid = (long)getpid(),
        .host = host,
        .rank = getenv("RANK"),
        .local_rank = getenv("LOCAL_RANK"),
        .world_size = getenv("WORLD_SIZE"),
    };

    bool dump_failed = false;
    if (cfg->output[0] != '\0' && (n > 0 || cfg->summary == NF_SUMMARY_ALWAYS)) {
        char path[NF_PATH_MAX];
        dump_args args = {&run, entries, n};
        if (nf_config_expand_path(cfg->output, run.pid, run.rank ? run.rank : "norank", host, path,
                                  sizeof path) != 0) {
            nf_log("NAFLOPS_OUTPUT='%s' expands to a path that is too long; no dump written",
                   cfg->output);
            dump_failed = true;
        } else if (nf_dump_atomic(path, cfg->format == NF_FORMAT_CSV ? write_csv : write_json,
                                  &args) != 0) {
            nf_log("cannot write %s: %s; the summary goes to stderr instead", path,
                   strerror(errno));
            dump_failed = true;
        }
    }
    if (nf_ledger_overflowed())
        nf_log("more than %d distinct op signatures; later ones were not counted",
               NF_LEDGER_CAPACITY);

    bool print = cfg->summary == NF_SUMMARY_ALWAYS ||
                 (n > 0 && (cfg->summary == NF_SUMMARY_AUTO || dump_failed));
    if (print) {
        fflush(stderr);
        nf_report_table(stderr, &run, entries, n, cfg->units);
        fflush(stderr);
    }
}

void nf_core_after_fork_child(void) { nf_ledger_reset(); }
