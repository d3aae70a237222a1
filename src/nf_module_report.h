/* The summary's per-module block (nf_module_report.c). */
#ifndef NF_MODULE_REPORT_H
#define NF_MODULE_REPORT_H

#include <stdio.h>

#include "nf_config.h"
#include "nf_ledger.h"

/* The heaviest modules to two levels below each outermost module, with their
 * submodules' FLOPs and NATTEN's share; nothing when no row has a module. */
void nf_module_report_table(FILE *f, nf_entry *const *entries, int n, nf_units units);

#endif
