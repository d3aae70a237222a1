/* The step lines of the summary and the "steps" object of the JSON dump. */
#include <math.h>
#include <string.h>

#include "nf_step.h"
#include "nf_text.h"

static char *si(double v, const char *unit, char *buf, size_t len) {
    static const char *const prefix[] = {"", "k", "M", "G", "T", "P", "E", "Z"};
    int i = 0;
    while ((v < 0 ? -v : v) >= 999.95 && i < 7) v /= 1000.0, i++;
    snprintf(buf, len, i == 0 && v == (double)(long long)v ? "%.0f %s%s" : "%.2f %s%s", v, prefix[i], unit);
    return buf;
}

static char *seconds(double s, char *buf, size_t len) {
    if (s >= 1.0) snprintf(buf, len, "%.3f s", s);
    else if (s >= 1e-3) snprintf(buf, len, "%.2f ms", s * 1e3);
    else snprintf(buf, len, "%.1f us", s * 1e6);
    return buf;
}

static char *flops_text(double v, nf_units units, char *buf, size_t len) {
    if (units == NF_UNITS_EXACT) snprintf(buf, len, "%.0f FLOP", v);
    else si(v, "FLOP", buf, len);
    return buf;
}

static double share(nf_u128 part, nf_u128 whole) {
    return whole ? 100.0 * (double)part / (double)whole : 0.0;
}

void nf_step_report_table(FILE *f, const nf_step_view *v, double peak, const char *peak_source,
                          nf_units units) {
    nf_step_steady st;
    bool steady = nf_step_steady_of(v, &st);
    char a[64], b[64], c[64], d[64];
    const char *what = v->mode == NF_STEP_OPTIMIZER ? "optimizer steps"
                       : v->mode == NF_STEP_BACKWARD ? "backward calls"
                                                     : "calls";
    fprintf(f, "naflops: steps     %llu %s (boundary: %s); %llu warm-up",
            (unsigned long long)v->count, what, v->boundary, (unsigned long long)v->warmup);
    if (v->recompiled) fprintf(f, ", %llu recompiled", (unsigned long long)v->recompiled);
    fputc('\n', f);
    if (!steady) {
        double per = (double)v->total.model / (double)v->count;
        fprintf(f, "naflops: per step  model %s over all %llu steps (no steady-state step: all warm-up or compiling)\n",
                flops_text(per, units, a, sizeof a), (unsigned long long)v->count);
        return;
    }
    nf_u128 model = 0, natten = 0;
    for (int i = 0; i < v->n; i++) {
        const nf_step_record *r = &v->records[i];
        if (r->warmup || r->compiled) continue;
        model += r->model;
        natten += r->natten;
    }
    fprintf(f, "naflops: per step  model %s  hardware %s  NATTEN %.1f%%  (steady state: %llu step%s)\n",
            flops_text(st.model_per_step, units, a, sizeof a),
            flops_text(st.hardware_per_step, units, b, sizeof b),
            share(natten, model), (unsigned long long)st.steps, st.steps == 1 ? "" : "s");
    fprintf(f, "naflops: step time median %s  (p10 %s, p90 %s)  achieved %s\n",
            seconds(st.seconds_median, a, sizeof a), seconds(st.seconds_p10, b, sizeof b),
            seconds(st.seconds_p90, c, sizeof c), si(st.flops_per_s_median, "FLOP/s", d, sizeof d));
    if (peak > 0)
        fprintf(f, "naflops: MFU       %.2f%%  HFU %.2f%%  (peak %s, %s)\n",
                100.0 * st.flops_per_s_median / peak, 100.0 * st.hardware_per_s_median / peak,
                si(peak, "FLOP/s", a, sizeof a), peak_source);
    else
        fputs("naflops: MFU       unknown (no peak for this device: set NAFLOPS_PEAK to its FLOP/s)\n", f);
    if (v->gpu && v->total.ns > 0)
        fprintf(f, "naflops: GPU busy  %.1f%% of step time over all steps\n",
                100.0 * (double)v->total.gpu_ns / (double)v->total.ns);
}

static void u128(FILE *f, nf_u128 v) {
    char buf[NF_U128_DEC_LEN];
    fputs(nf_u128_to_dec(v, buf), f);
}

static void number(FILE *f, double v) {
    if (isfinite(v)) fprintf(f, "%.17g", v);
    else fputs("null", f);
}

/* sep "name": v, or null when !known. */
static void field(FILE *f, const char *sep, const char *name, double v, bool known) {
    fprintf(f, "%s\"%s\": ", sep, name);
    if (known) number(f, v);
    else fputs("null", f);
}

static void figures(FILE *f, const nf_step_record *r, bool gpu) {
    fprintf(f, "\"seconds\": ");
    number(f, (double)r->ns / 1e9);
    fputs(", \"model_flops\": ", f);
    u128(f, r->model);
    fputs(", \"hardware_flops\": ", f);
    u128(f, r->hardware);
    fputs(", \"natten_flops\": ", f);
    u128(f, r->natten);
    fputs(", \"gpu_busy_seconds\": ", f);
    if (gpu) number(f, (double)r->gpu_ns / 1e9);
    else fputs("null", f);
}

void nf_step_report_json(FILE *f, const nf_step_view *v, double peak, const char *peak_source) {
    nf_step_steady st;
    bool steady = nf_step_steady_of(v, &st);
    fputs("{\"boundary\": ", f);
    nf_text_json_string(f, v->boundary, true);
    fprintf(f, ", \"count\": %llu, \"warmup\": %llu, \"recompiled\": %llu, \"bucket\": %llu,\n    ",
            (unsigned long long)v->count, (unsigned long long)v->warmup,
            (unsigned long long)v->recompiled, (unsigned long long)v->bucket);
    field(f, "", "peak_flops_per_s", peak, peak > 0);
    fputs(", \"peak_source\": ", f);
    if (peak > 0) nf_text_json_string(f, peak_source, true);
    else fputs("null", f);
    fputs(",\n    \"total\": {", f);
    figures(f, &v->total, v->gpu);
    fputs("},\n    \"steady\": ", f);
    if (steady) {
        fprintf(f, "{\"steps\": %llu", (unsigned long long)st.steps);
        field(f, ", ", "seconds_median", st.seconds_median, true);
        field(f, ", ", "seconds_p10", st.seconds_p10, true);
        field(f, ", ", "seconds_p90", st.seconds_p90, true);
        field(f, ", ", "model_flops_per_step", st.model_per_step, true);
        field(f, ", ", "hardware_flops_per_step", st.hardware_per_step, true);
        field(f, ", ", "flops_per_s_median", st.flops_per_s_median, true);
        field(f, ", ", "mfu_median", peak > 0 ? st.flops_per_s_median / peak : 0, peak > 0);
        field(f, ", ", "hfu_median", peak > 0 ? st.hardware_per_s_median / peak : 0, peak > 0);
        fputc('}', f);
    } else {
        fputs("null", f);
    }
    fputs(",\n    \"records\": [", f);
    for (int i = 0; i < v->n; i++) {
        const nf_step_record *r = &v->records[i];
        fprintf(f, "%s\n      {\"step\": %llu, \"steps\": %llu, \"start_s\": ", i ? "," : "",
                (unsigned long long)r->first, (unsigned long long)r->steps);
        number(f, (double)r->start_ns / 1e9);
        fputs(", ", f);
        figures(f, r, v->gpu);
        fprintf(f, ", \"warmup\": %s, \"compiled\": %u}", r->warmup ? "true" : "false", r->compiled);
    }
    fputs("\n    ]}", f);
}
