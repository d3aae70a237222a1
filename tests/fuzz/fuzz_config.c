/* libFuzzer target for the NAFLOPS_* parser and the output-path expansion.
 *
 * The input is split at NUL bytes: the pieces are, in order, the values of the
 * variables in `names` (a missing piece leaves the variable unset), then the rank and
 * the host for nf_config_expand_path, then bytes whose first two give the size of the
 * output buffer (0..4097, so too-small buffers are tried). getenv is a table lookup.
 *
 * Checked beyond ASan/UBSan: the parsed config holds only allowed values, OUTPUT is
 * kept exactly when it is valid (a file path: no trailing '/'; nothing is kept or said
 * once NAFLOPS_DISABLE is on), every complaint is one bounded line naming its
 * variable, and the expansion equals a plain reference expansion (or fails exactly
 * when that does not fit or the pattern is bad), writing nothing past the buffer.
 *
 *   make fuzz-config FUZZ_TIME=20
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nf_config.h"

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz_config: check failed: %s (line %d)\n", #cond, __LINE__); \
            abort();                                                           \
        }                                                                      \
    } while (0)

static const char *const names[] = {"NAFLOPS_DISABLE", "NAFLOPS_BACKWARD", "NAFLOPS_FORMAT",
                                    "NAFLOPS_SUMMARY", "NAFLOPS_UNITS", "NAFLOPS_FLUSH_SECONDS",
                                    "NAFLOPS_FLUSH_OPS", "NAFLOPS_OUTPUT"};
#define NVARS (int)(sizeof names / sizeof names[0])

static const char *values[NVARS];
static int complaints;

static const char *table_getenv(const char *name) {
    for (int i = 0; i < NVARS; i++)
        if (strcmp(name, names[i]) == 0) return values[i];
    return NULL;
}

static void on_complaint(const char *line) {
    complaints++;
    CHECK(strlen(line) < 512);
    CHECK(strncmp(line, "naflops: NAFLOPS_", 17) == 0);
}

/* The expansion written plainly: -1 when it does not fit in len or has a bad escape. */
static int reference_expand(const char *p, long pid, const char *rank, const char *host,
                            char *out, size_t len) {
    size_t n = 0;
    char num[32];
    snprintf(num, sizeof num, "%ld", pid);
    for (; *p; p++) {
        const char *piece = NULL;
        char one[2] = {*p, 0};
        if (*p == '%') {
            p++;
            if (*p == 'p') piece = num;
            else if (*p == 'r') piece = rank;
            else if (*p == 'h') piece = host;
            else if (*p == '%') piece = "%";
            else return -1;
        } else {
            piece = one;
        }
        for (; *piece; piece++) {
            if (n + 1 >= len) return -1;
            out[n++] = *piece;
        }
    }
    if (len == 0) return -1;
    out[n] = '\0';
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1); /* the pieces, each NUL-terminated */
    if (text == NULL) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    const char *pieces[NVARS + 3] = {0};
    int count = 0;
    for (size_t start = 0; start <= size && count < NVARS + 3;) {
        pieces[count++] = text + start;
        start += strlen(text + start) + 1;
    }
    for (int i = 0; i < NVARS; i++) values[i] = pieces[i];

    nf_config cfg;
    nf_config_defaults(&cfg);
    complaints = 0;
    int bad = nf_config_parse(&cfg, table_getenv, on_complaint);
    CHECK(bad == complaints && bad >= 0 && bad <= NVARS);
    CHECK(cfg.disabled == 0 || cfg.disabled == 1);
    CHECK(cfg.backward == 0 || cfg.backward == 1);
    CHECK(cfg.format == NF_FORMAT_JSON || cfg.format == NF_FORMAT_CSV);
    CHECK(cfg.summary >= NF_SUMMARY_AUTO && cfg.summary <= NF_SUMMARY_NEVER);
    CHECK(cfg.units == NF_UNITS_SI || cfg.units == NF_UNITS_EXACT);
    CHECK(cfg.flush_seconds <= NF_FLUSH_MAX && cfg.flush_ops <= NF_FLUSH_MAX);
    CHECK(memchr(cfg.output, '\0', sizeof cfg.output) != NULL);
    const char *out = values[NVARS - 1];
    if (cfg.disabled) {
        /* NAFLOPS_DISABLE=1: nothing else is read, nothing more is said */
        CHECK(bad <= 1 && cfg.output[0] == '\0');
    } else if (out != NULL && *out && strlen(out) < sizeof cfg.output && nf_config_pattern_ok(out) &&
               out[strlen(out) - 1] != '/') {
        CHECK(strcmp(cfg.output, out) == 0);
    } else {
        CHECK(cfg.output[0] == '\0');
    }

    /* Expand the parsed pattern, or the raw value when it was refused. */
    const char *pattern = cfg.output[0] ? cfg.output : (out ? out : "");
    const char *rank = pieces[NVARS] ? pieces[NVARS] : "norank";
    const char *host = pieces[NVARS + 1] ? pieces[NVARS + 1] : "host";
    const char *tail = pieces[NVARS + 2] ? pieces[NVARS + 2] : "";
    size_t len = tail[0] ? ((size_t)(uint8_t)tail[0] << 8 | (uint8_t)tail[1]) % (NF_PATH_MAX + 2) : NF_PATH_MAX;
    long pid = (long)(size * 7919 % 4194304);
    char *got = malloc(len ? len : 1), *want = malloc(len ? len : 1);
    if (got && want) {
        int rc = nf_config_expand_path(pattern, pid, rank, host, got, len);
        int ref = reference_expand(pattern, pid, rank, host, want, len);
        CHECK(rc == ref);
        if (rc == 0) CHECK(strcmp(got, want) == 0);
        if (rc == 0) CHECK(nf_config_pattern_ok(pattern));
    }
    free(got);
    free(want);
    free(text);
    return 0;
}
