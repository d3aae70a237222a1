/* NAFLOPS_* configuration, parsed in one place. A bad value gets one line naming
 * the variable, the value and what is allowed, and the default is used. */
#ifndef NF_CONFIG_H
#define NF_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

typedef enum nf_format { NF_FORMAT_JSON = 0, NF_FORMAT_CSV } nf_format;
typedef enum nf_summary { NF_SUMMARY_AUTO = 0, NF_SUMMARY_ALWAYS, NF_SUMMARY_NEVER } nf_summary;
typedef enum nf_units { NF_UNITS_SI = 0, NF_UNITS_EXACT } nf_units;
/* What ends a step (NAFLOPS_STEP). */
typedef enum nf_step_mode {
    NF_STEP_OPTIMIZER = 0, /* each torch.optim step (the default) */
    NF_STEP_OFF,
    NF_STEP_BACKWARD,      /* each outermost torch.autograd.backward (loss.backward()) */
    NF_STEP_FUNCTION       /* each outermost call of step_module:step_qualname */
} nf_step_mode;

#define NF_PATH_MAX 4096

typedef struct nf_config {
    bool disabled;                /* NAFLOPS_DISABLE */
    bool backward;                /* NAFLOPS_BACKWARD */
    bool whole_model;             /* NAFLOPS_WHOLE_MODEL: count the other aten ops too */
    bool modules;                 /* NAFLOPS_MODULES: attribute each count to its nn.Module */
    bool gpu;                     /* NAFLOPS_GPU: attribute and time CUDA kernels (CUPTI) */
    bool crosscheck;              /* NAFLOPS_CROSSCHECK: tensor-core metrics per kernel */
    nf_format format;             /* NAFLOPS_FORMAT */
    nf_summary summary;           /* NAFLOPS_SUMMARY */
    nf_units units;               /* NAFLOPS_UNITS */
    unsigned flush_seconds;       /* NAFLOPS_FLUSH_SECONDS: rewrite the dump this often; 0 off */
    unsigned flush_ops;           /* NAFLOPS_FLUSH_OPS: ... and after this many ops; 0 off */
    char output[NF_PATH_MAX];     /* NAFLOPS_OUTPUT, a pattern; "" for no dump */
    nf_step_mode step;            /* NAFLOPS_STEP */
    char step_module[256];        /* NF_STEP_FUNCTION: "k_diffusion.sampling" */
    char step_qualname[256];      /*   "sample_euler", "Sampler.sample" */
    double peak;                  /* NAFLOPS_PEAK: FLOP/s MFU divides by; 0: the GPU table's */
} nf_config;

/* Largest accepted NAFLOPS_FLUSH_* value. */
#define NF_FLUSH_MAX 100000000u

/* Looks a variable up: getenv in the library, a table in tests. */
typedef const char *(*nf_getenv_fn)(const char *name);
/* Receives each complaint, one line without the trailing newline. */
typedef void (*nf_complain_fn)(const char *line);

void nf_config_defaults(nf_config *cfg);
/* Fills cfg from the variables; returns the number of bad values. */
int nf_config_parse(nf_config *cfg, nf_getenv_fn get, nf_complain_fn complain);

/* Expands an output pattern: %p pid, %r rank (or "norank"), %h host, %% a '%'.
 * Returns 0, or -1 when the result does not fit or the pattern has another '%'
 * escape (the caller then writes no dump). */
int nf_config_expand_path(const char *pattern, long pid, const char *rank, const char *host,
                          char *out, size_t len);
/* Whether a pattern only uses known escapes. */
bool nf_config_pattern_ok(const char *pattern);

#endif
