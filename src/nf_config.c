#include "nf_config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void nf_config_defaults(nf_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->backward = true;
    cfg->whole_model = true;
    cfg->modules = true;
    /* Off until the CUPTI side has been verified on a GPU (it has not run on one yet):
     * the user's program comes first. NAFLOPS_GPU=1 or NAFLOPS_CROSSCHECK=1 turn it on. */
    cfg->gpu = false;
    cfg->format = NF_FORMAT_JSON;
    cfg->summary = NF_SUMMARY_AUTO;
    cfg->units = NF_UNITS_SI;
}

static void complain(nf_complain_fn fn, const char *name, const char *value, const char *allowed,
                     const char *fallback) {
    char line[512], shown[201];
    /* one line, whatever the value holds: control characters are shown as '?' */
    size_t i = 0;
    for (; value[i] && i < sizeof shown - 1; i++)
        shown[i] = (unsigned char)value[i] < 0x20 || value[i] == 0x7f ? '?' : value[i];
    shown[i] = '\0';
    snprintf(line, sizeof line, "naflops: %s='%s' is not valid (allowed: %s); using %s", name,
             shown, allowed, fallback);
    if (fn) fn(line);
}

/* One choice among names; value NULL or "" keeps the default. */
static int parse_choice(nf_getenv_fn get, nf_complain_fn fn, const char *name,
                        const char *const *names, int count, int *out) {
    const char *v = get(name);
    if (v == NULL || *v == '\0') return 0;
    for (int i = 0; i < count; i++)
        if (strcasecmp(v, names[i]) == 0) {
            *out = i;
            return 0;
        }
    char allowed[256] = "";
    for (int i = 0; i < count; i++) {
        if (i) strncat(allowed, ", ", sizeof allowed - strlen(allowed) - 1);
        strncat(allowed, names[i], sizeof allowed - strlen(allowed) - 1);
    }
    complain(fn, name, v, allowed, names[*out]);
    return 1;
}

static int parse_bool(nf_getenv_fn get, nf_complain_fn fn, const char *name, bool *out) {
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    const char *v = get(name);
    if (v == NULL || *v == '\0') return 0;
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0) return *out = true, 0;
        if (strcasecmp(v, no[i]) == 0) return *out = false, 0;
    }
    complain(fn, name, v, "1, 0, true, false, yes, no, on, off", *out ? "1" : "0");
    return 1;
}

/* A whole number 0..NF_FLUSH_MAX, digits only. */
static int parse_count(nf_getenv_fn get, nf_complain_fn fn, const char *name, unsigned *out) {
    const char *v = get(name);
    if (v == NULL || *v == '\0') return 0;
    unsigned long long x = 0;
    const char *p = v;
    for (; *p >= '0' && *p <= '9' && x <= NF_FLUSH_MAX; p++) x = x * 10 + (unsigned)(*p - '0');
    if (*p == '\0' && x <= NF_FLUSH_MAX) {
        *out = (unsigned)x;
        return 0;
    }
    char fallback[16];
    snprintf(fallback, sizeof fallback, "%u", *out);
    complain(fn, name, v, "a whole number from 0 (off) to 100000000", fallback);
    return 1;
}

/* Dotted Python identifiers (ASCII): "k_diffusion.sampling", "Sampler.sample". */
static bool dotted_name(const char *s, size_t n) {
    bool start = true;
    if (n == 0) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '.') {
            if (start) return false;
            start = true;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                   (!start && c >= '0' && c <= '9')) {
            start = false;
        } else {
            return false;
        }
    }
    return !start;
}

/* NAFLOPS_STEP: optimizer | backward | off | module:qualname. */
static int parse_step(nf_getenv_fn get, nf_complain_fn fn, nf_config *cfg) {
    const char *v = get("NAFLOPS_STEP");
    if (v == NULL || *v == '\0') return 0;
    if (strcasecmp(v, "optimizer") == 0) return cfg->step = NF_STEP_OPTIMIZER, 0;
    if (strcasecmp(v, "off") == 0 || strcmp(v, "0") == 0) return cfg->step = NF_STEP_OFF, 0;
    if (strcasecmp(v, "backward") == 0) return cfg->step = NF_STEP_BACKWARD, 0;
    const char *colon = strchr(v, ':');
    if (colon != NULL && strcmp(colon + 1, "") != 0 && dotted_name(v, (size_t)(colon - v)) &&
        dotted_name(colon + 1, strlen(colon + 1)) && (size_t)(colon - v) < sizeof cfg->step_module &&
        strlen(colon + 1) < sizeof cfg->step_qualname && strncmp(v, "__main__:", 9) != 0) {
        memcpy(cfg->step_module, v, (size_t)(colon - v));
        cfg->step_module[colon - v] = '\0';
        strcpy(cfg->step_qualname, colon + 1);
        cfg->step = NF_STEP_FUNCTION;
        return 0;
    }
    complain(fn, "NAFLOPS_STEP", v,
             "optimizer, backward, off, or an importable function as module:qualname, e.g. "
             "k_diffusion.sampling:sample_euler (not __main__)",
             "optimizer");
    return 1;
}

/* NAFLOPS_PEAK: FLOP/s, a positive number with an optional k, M, G, T, P or E. */
static int parse_peak(nf_getenv_fn get, nf_complain_fn fn, double *out) {
    const char *v = get("NAFLOPS_PEAK");
    if (v == NULL || *v == '\0') return 0;
    char *end = NULL;
    double x = (*v >= '0' && *v <= '9') || *v == '.' ? strtod(v, &end) : NAN;
    if (end != NULL && *end != '\0') {
        static const char suffix[] = "kMGTPE";
        const char *s = strchr(suffix, *end);
        if (s != NULL && *s != '\0' && end[1] == '\0')
            for (const char *k = suffix; k <= s; k++) x *= 1000.0;
        else
            x = NAN;
    }
    if (isfinite(x) && x > 0 && x <= 1e21) {
        *out = x;
        return 0;
    }
    complain(fn, "NAFLOPS_PEAK", v,
             "the device's peak in FLOP/s, a positive number with an optional k, M, G, T, P or E "
             "(989T, 9.89e14)",
             "the GPU table's peak, none on a CPU");
    return 1;
}

bool nf_config_pattern_ok(const char *p) {
    for (; *p; p++) {
        if (*p != '%') continue;
        p++;
        if (*p != 'p' && *p != 'r' && *p != 'h' && *p != '%') return false;
    }
    return true;
}

int nf_config_parse(nf_config *cfg, nf_getenv_fn get, nf_complain_fn fn) {
    static const char *const formats[] = {"json", "csv"};
    static const char *const summaries[] = {"auto", "always", "never"};
    static const char *const units[] = {"si", "exact"};
    int bad = 0, v;

    bad += parse_bool(get, fn, "NAFLOPS_DISABLE", &cfg->disabled);
    if (cfg->disabled) return bad; /* hook nothing, count nothing, say nothing more */
    bad += parse_bool(get, fn, "NAFLOPS_BACKWARD", &cfg->backward);
    bad += parse_bool(get, fn, "NAFLOPS_WHOLE_MODEL", &cfg->whole_model);
    bad += parse_bool(get, fn, "NAFLOPS_MODULES", &cfg->modules);
    bad += parse_bool(get, fn, "NAFLOPS_GPU", &cfg->gpu);
    bad += parse_bool(get, fn, "NAFLOPS_CROSSCHECK", &cfg->crosscheck);
    const char *gpu = get("NAFLOPS_GPU");
    if (cfg->crosscheck && (gpu == NULL || *gpu == '\0')) cfg->gpu = true; /* it needs the GPU side */
    v = (int)cfg->format;
    bad += parse_choice(get, fn, "NAFLOPS_FORMAT", formats, 2, &v);
    cfg->format = (nf_format)v;
    v = (int)cfg->summary;
    bad += parse_choice(get, fn, "NAFLOPS_SUMMARY", summaries, 3, &v);
    cfg->summary = (nf_summary)v;
    v = (int)cfg->units;
    bad += parse_choice(get, fn, "NAFLOPS_UNITS", units, 2, &v);
    cfg->units = (nf_units)v;

    bad += parse_count(get, fn, "NAFLOPS_FLUSH_SECONDS", &cfg->flush_seconds);
    bad += parse_count(get, fn, "NAFLOPS_FLUSH_OPS", &cfg->flush_ops);

    bad += parse_step(get, fn, cfg);
    bad += parse_peak(get, fn, &cfg->peak);

    const char *out = get("NAFLOPS_OUTPUT");
    if (out != NULL && *out != '\0') {
        if (strlen(out) >= sizeof cfg->output) {
            complain(fn, "NAFLOPS_OUTPUT", out, "a path shorter than 4096 bytes", "no dump");
            bad++;
        } else if (out[strlen(out) - 1] == '/') {
            complain(fn, "NAFLOPS_OUTPUT", out,
                     "a file path (a folder needs a file name after it, e.g. dir/naflops-%p.json)",
                     "no dump");
            bad++;
        } else if (!nf_config_pattern_ok(out)) {
            complain(fn, "NAFLOPS_OUTPUT", out, "a path whose only escapes are %p, %r, %h and %%",
                     "no dump");
            bad++;
        } else {
            strcpy(cfg->output, out);
        }
    }
    return bad;
}

int nf_config_expand_path(const char *p, long pid, const char *rank, const char *host, char *out,
                          size_t len) {
    size_t n = 0;
    char num[32];
    for (; *p; p++) {
        const char *piece;
        char one[2] = {*p, '\0'};
        if (*p == '%') {
            p++;
            switch (*p) {
            case 'p': snprintf(num, sizeof num, "%ld", pid); piece = num; break;
            case 'r': piece = rank; break;
            case 'h': piece = host; break;
            case '%': piece = "%"; break;
            default: return -1;
            }
        } else {
            piece = one;
        }
        size_t k = strlen(piece);
        if (n + k >= len) return -1;
        memcpy(out + n, piece, k);
        n += k;
    }
    if (len == 0) return -1;
    out[n] = '\0';
    return 0;
}
