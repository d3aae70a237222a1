/* Report writers: the summary table (stderr), JSON and CSV dumps. */
#ifndef NF_REPORT_H
#define NF_REPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "nf_config.h"
#include "nf_ledger.h"
#include "nf_step.h"

/* Facts about the process that go into every report. */
typedef struct nf_run_info {
    long pid;
    const char *host;
    const char *rank;        /* RANK, or NULL */
    const char *local_rank;  /* LOCAL_RANK, or NULL */
    const char *world_size;  /* WORLD_SIZE, or NULL */
    const char *natten_version; /* of the natten the program imported; "" when none */
    uint64_t uncounted;      /* NATTEN calls that ran but could not be counted */
    const nf_step_view *steps; /* the steps, or NULL when none ended */
    double peak;             /* FLOP/s for MFU; 0 when not known */
    const char *peak_source; /* "NAFLOPS_PEAK", "GH100 bfloat16 dense" */
} nf_run_info;

/* naflops/2: passes "recompute" and "jvp"; totals flops = every pass (the hardware's
 * work), model_flops = forward + backward (the model's). naflops/3: /2 and, when
 * steps ended, "steps" (nf_step_report_json). naflops/4: /3 and each op's "module"
 * (null outside any nn.Module); rows are per signature and module. */
#define NF_SCHEMA "naflops/4"

void nf_report_table(FILE *f, const nf_run_info *run, nf_entry *const *entries, int n,
                     nf_units units);
void nf_report_json(FILE *f, const nf_run_info *run, nf_entry *const *entries, int n);
void nf_report_csv(FILE *f, nf_entry *const *entries, int n);

/* The NATTEN version of the run, else of the entries ("" when none or unknown). */
const char *nf_report_natten_version(const nf_run_info *run, nf_entry *const *entries, int n);

#endif
