/* The GPU section of the summary and the dump's "gpu" object, written from copies of
 * nf_gpu's state joined to the ledger rows the report shows. */
#include <stdlib.h>
#include <string.h>

#include "nf_gpu.h"
#include "nf_gpu_peak.h"
#include "nf_intern.h"
#include "nf_text.h"

/* What the report says about one op that launched kernels. */
typedef struct op_row {
    const nf_gpu_op_stat *s;
    uint64_t calls;
    nf_u128 flops;   /* counted: calls x FLOPs per call of the matching ledger rows */
    double tflops;   /* achieved: counted FLOPs over GPU time; 0 when no time */
    double peak;     /* TFLOP/s of the device for the dtype; 0 when not known */
    char chip[16];
} op_row;

static const char *const RATIO_NOTE =
    "a ratio above 1 is real work beyond NATTEN's convention, not an error: tiles padded "
    "to the tensor-core shape (head dim, window and token counts rounded up), neighbours "
    "computed and then masked (causal, borders), and QK^T recomputed by a fused backward; "
    "below 1, part of the op ran off the tensor cores or outside the op's kernels";

static int device_index(const nf_key *k) {
    const char *d = nf_intern_str(k->device);
    if (strncmp(d, "cuda", 4) != 0) return -1;
    return d[4] == ':' ? atoi(d + 5) : 0;
}

static void join(op_row *r, const nf_gpu_op_stat *s, nf_entry *const *entries, int n,
                 const nf_gpu_info *info) {
    memset(r, 0, sizeof *r);
    r->s = s;
    for (int i = 0; i < n; i++) {
        if (!nf_gpu_same_op(&entries[i]->key, &s->op->key)) continue;
        uint64_t c = atomic_load(&((nf_entry *)entries[i])->calls);
        r->calls += c;
        r->flops = nf_u128_add_sat(r->flops, nf_u128_mul_sat(entries[i]->flops_per_call, c));
    }
    if (s->ns > 0) r->tflops = (double)r->flops / (double)s->ns / 1e3;
    int d = device_index(&s->op->key);
    if (d >= 0 && d < NF_GPU_DEVICES_MAX) {
        snprintf(r->chip, sizeof r->chip, "%s", info->chip[d]);
        r->peak = nf_gpu_peak_tflops(r->chip, nf_intern_str(s->op->key.dtype));
    }
}

static const char *shape_text(const nf_key *k, char *buf, size_t len) {
    return nf_text_dims(k->problem.q_shape, k->problem.q_rank, buf, len);
}

/* One consistent-enough copy of nf_gpu's state for a report (ops on the heap: each
 * carries its kernel names). */
typedef struct view {
    nf_gpu_info info;
    nf_gpu_totals t;
    nf_gpu_graph_stat graphs[NF_GPU_GRAPHS_MAX];
    int ng, no;
    nf_gpu_op_stat *ops;
} view;

static view *view_take(void) {
    view *v = calloc(1, sizeof *v);
    if (v == NULL) return NULL;
    nf_gpu_info_now(&v->info);
    v->t = nf_gpu_totals_now();
    v->ng = nf_gpu_graphs(v->graphs, NF_GPU_GRAPHS_MAX);
    v->ops = malloc(sizeof *v->ops * NF_GPU_OPS_MAX);
    v->no = v->ops ? nf_gpu_ops(v->ops, NF_GPU_OPS_MAX) : 0;
    return v;
}

static void view_free(view *v) {
    if (v) free(v->ops);
    free(v);
}

/* ------------------------------------------------------------ table */

void nf_gpu_report_table(FILE *f, nf_entry *const *entries, int n) {
    view *v = nf_gpu_has_data() ? view_take() : NULL;
    if (v == NULL) return;
    const nf_gpu_info info = v->info;
    const nf_gpu_totals t = v->t;
    const nf_gpu_graph_stat *graphs = v->graphs;
    int ng = v->ng, no = v->no;
    const nf_gpu_op_stat *ops = v->ops;

    if (info.off_reason[0]) fprintf(f, "naflops: GPU part off: %s\n", info.off_reason);
    const char *dev = info.device_name[0][0] ? info.device_name[0] : "device";
    fprintf(f, "naflops: GPU kernels by NATTEN op (%s%s%s; float32 against the TF32 peak)\n", dev,
            info.chip[0][0] ? ", " : "", info.chip[0]);
    fprintf(f, "naflops: %-30s %-8s %-9s %-7s %-16s %8s %8s %11s %12s %9s %6s\n", "op", "pass",
            "dtype", "device", "shape", "calls", "kernels", "GPU ms", "FLOPs", "TFLOP/s", "util");
    for (int i = 0; i < no; i++) {
        op_row r;
        join(&r, &ops[i], entries, n, &info);
        const nf_key *k = &ops[i].op->key;
        char shape[96], fl[40], util[16] = "-";
        nf_u128_to_si(r.flops, "FLOP", fl, sizeof fl);
        if (r.peak > 0 && r.tflops > 0) snprintf(util, sizeof util, "%.1f%%", 100 * r.tflops / r.peak);
        fprintf(f, "naflops: %-30s %-8s %-9s %-7s %-16s %8llu %8llu %11.3f %12s %9.2f %6s\n",
                nf_intern_str(k->op), nf_pass_name((nf_pass)k->pass), nf_intern_str(k->dtype),
                nf_intern_str(k->device), shape_text(k, shape, sizeof shape),
                (unsigned long long)r.calls, (unsigned long long)ops[i].kernels,
                (double)ops[i].ns / 1e6, fl, r.tflops, util);
        for (int j = 0; j <= ops[i].names; j++) {
            const nf_gpu_name_stat *nm = j < ops[i].names ? &ops[i].name[j] : &ops[i].more;
            if (nm->count == 0) continue;
            fprintf(f, "naflops:   %llu x %.100s grid %ux%ux%u block %ux%ux%u, %.3f ms\n",
                    (unsigned long long)nm->count, nm->name, nm->grid[0], nm->grid[1], nm->grid[2],
                    nm->block[0], nm->block[1], nm->block[2], (double)nm->ns / 1e6);
        }
    }
    fprintf(f, "naflops: other kernels (not in a NATTEN op): %llu, %.3f GPU ms\n",
            (unsigned long long)t.other_kernels, (double)t.other_ns / 1e6);
    for (int i = 0; i < ng; i++)
        fprintf(f, "naflops: CUDA graph %llu: %llu replays, %llu NATTEN calls per replay (%d ops), "
                   "%llu kernels, %.3f GPU ms\n",
                (unsigned long long)graphs[i].graph_id, (unsigned long long)graphs[i].replays,
                (unsigned long long)graphs[i].calls, graphs[i].ops,
                (unsigned long long)graphs[i].kernels, (double)graphs[i].ns / 1e6);
    if (t.unknown_graph_launches)
        fprintf(f, "naflops: %llu launches of CUDA graphs not seen being captured (their NATTEN "
                   "calls are not counted per replay)\n",
                (unsigned long long)t.unknown_graph_launches);

    if (info.crosscheck_ran || info.crosscheck_note[0]) {
        fprintf(f, "naflops: cross-check: tensor-core FLOPs counted by the hardware (CUPTI)%s%s\n",
                info.crosscheck_note[0] ? ": " : "", info.crosscheck_note);
        if (info.crosscheck_ran) {
            fprintf(f, "naflops: %-30s %-8s %-9s %-16s %16s %16s %8s\n", "op", "pass", "dtype",
                    "shape", "counted FLOPs", "measured FLOPs", "ratio");
            nf_u128 counted_total = 0;
            double measured_total = 0;
            for (int i = 0; i < no; i++) {
                if (!ops[i].measured) continue;
                op_row r;
                join(&r, &ops[i], entries, n, &info);
                const nf_key *k = &ops[i].op->key;
                char shape[96], c[40], ratio[16] = "-";
                nf_u128_to_si(r.flops, "FLOP", c, sizeof c);
                if (r.flops) snprintf(ratio, sizeof ratio, "%.3f", ops[i].measured_flops / (double)r.flops);
                fprintf(f, "naflops: %-30s %-8s %-9s %-16s %16s %16.4g %8s\n", nf_intern_str(k->op),
                        nf_pass_name((nf_pass)k->pass), nf_intern_str(k->dtype),
                        shape_text(k, shape, sizeof shape), c, ops[i].measured_flops, ratio);
                counted_total = nf_u128_add_sat(counted_total, r.flops);
                measured_total += ops[i].measured_flops;
            }
            char c[40], ratio[16] = "-";
            nf_u128_to_si(counted_total, "FLOP", c, sizeof c);
            if (counted_total) snprintf(ratio, sizeof ratio, "%.3f", measured_total / (double)counted_total);
            fprintf(f, "naflops: %-66s %16s %16.4g %8s\n", "NATTEN total", c, measured_total, ratio);
            fprintf(f, "naflops: other kernels, measured: %.4g FLOP\n", t.other_measured_flops);
            fprintf(f, "naflops: %s\n", RATIO_NOTE);
        }
    }
    view_free(v);
}

/* ------------------------------------------------------------ JSON */

/* Names from CUPTI and the driver: shown, not trusted to be UTF-8. */
static void json_str(FILE *f, const char *s) { nf_text_json_string(f, s, true); }

static void json_num(FILE *f, double v, bool known) {
    if (known) fprintf(f, "%.6g", v);
    else fputs("null", f);
}

static void json_dim3(FILE *f, const uint32_t v[3]) { fprintf(f, "[%u, %u, %u]", v[0], v[1], v[2]); }

void nf_gpu_report_json(FILE *f, nf_entry *const *entries, int n) {
    view *v = view_take();
    if (v == NULL) {
        fputs("null", f);
        return;
    }
    const nf_gpu_info info = v->info;
    const nf_gpu_totals t = v->t;
    const nf_gpu_graph_stat *graphs = v->graphs;
    int ng = v->ng, no = v->no;
    const nf_gpu_op_stat *ops = v->ops;
    char dec[NF_U128_DEC_LEN];

    fputs("{\"off_reason\": ", f);
    json_str(f, info.off_reason);
    fputs(", \"devices\": [", f);
    for (int d = 0, first = 1; d < NF_GPU_DEVICES_MAX; d++) {
        if (!info.chip[d][0] && !info.device_name[d][0]) continue;
        fprintf(f, "%s{\"index\": %d, \"chip\": ", first ? "" : ", ", d);
        json_str(f, info.chip[d]);
        fputs(", \"name\": ", f);
        json_str(f, info.device_name[d]);
        fputc('}', f);
        first = 0;
    }
    fputs("], \"ops\": [", f);
    for (int i = 0; i < no; i++) {
        op_row r;
        join(&r, &ops[i], entries, n, &info);
        const nf_key *k = &ops[i].op->key;
        char shape[96];
        fputs(i ? ", {\"op\": " : "{\"op\": ", f);
        json_str(f, nf_intern_str(k->op));
        fputs(", \"pass\": ", f);
        json_str(f, nf_pass_name((nf_pass)k->pass));
        fputs(", \"dtype\": ", f);
        json_str(f, nf_intern_str(k->dtype));
        fputs(", \"device\": ", f);
        json_str(f, nf_intern_str(k->device));
        fputs(", \"shape\": ", f);
        json_str(f, shape_text(k, shape, sizeof shape));
        fprintf(f, ", \"calls\": %llu, \"kernels\": %llu, \"gpu_ns\": %llu, \"flops\": %s",
                (unsigned long long)r.calls, (unsigned long long)ops[i].kernels,
                (unsigned long long)ops[i].ns, nf_u128_to_dec(r.flops, dec));
        fputs(", \"tflops\": ", f);
        json_num(f, r.tflops, ops[i].ns > 0);
        fputs(", \"peak_tflops\": ", f);
        json_num(f, r.peak, r.peak > 0);
        fputs(", \"utilization\": ", f);
        json_num(f, r.peak > 0 ? r.tflops / r.peak : 0, r.peak > 0 && ops[i].ns > 0);
        fputs(", \"measured_flops\": ", f);
        json_num(f, ops[i].measured_flops, ops[i].measured);
        fputs(", \"ratio\": ", f);
        json_num(f, r.flops ? ops[i].measured_flops / (double)r.flops : 0, ops[i].measured && r.flops);
        fputs(", \"kernel_names\": [", f);
        for (int j = 0, first = 1; j <= ops[i].names; j++) {
            const nf_gpu_name_stat *nm = j < ops[i].names ? &ops[i].name[j] : &ops[i].more;
            if (nm->count == 0) continue;
            fputs(first ? "{\"name\": " : ", {\"name\": ", f);
            json_str(f, nm->name);
            fprintf(f, ", \"count\": %llu, \"gpu_ns\": %llu, \"grid\": ", (unsigned long long)nm->count,
                    (unsigned long long)nm->ns);
            json_dim3(f, nm->grid);
            fputs(", \"block\": ", f);
            json_dim3(f, nm->block);
            fputc('}', f);
            first = 0;
        }
        fputs("]}", f);
    }
    fprintf(f, "], \"other\": {\"kernels\": %llu, \"gpu_ns\": %llu, \"measured_flops\": ",
            (unsigned long long)t.other_kernels, (unsigned long long)t.other_ns);
    json_num(f, t.other_measured_flops, info.crosscheck_ran);
    fputs("}, \"graphs\": [", f);
    for (int i = 0; i < ng; i++)
        fprintf(f, "%s{\"graph_id\": %llu, \"replays\": %llu, \"ops\": %d, \"calls_per_replay\": %llu, "
                   "\"kernels\": %llu, \"gpu_ns\": %llu}",
                i ? ", " : "", (unsigned long long)graphs[i].graph_id,
                (unsigned long long)graphs[i].replays, graphs[i].ops,
                (unsigned long long)graphs[i].calls, (unsigned long long)graphs[i].kernels,
                (unsigned long long)graphs[i].ns);
    fprintf(f, "], \"unknown_graph_launches\": %llu, \"crosscheck\": {\"ran\": %s, \"note\": ",
            (unsigned long long)t.unknown_graph_launches, info.crosscheck_ran ? "true" : "false");
    json_str(f, info.crosscheck_note);
    fputs(", \"explanation\": ", f);
    json_str(f, RATIO_NOTE);
    fprintf(f, "}, \"overflows\": {\"pending\": %llu, \"nodes\": %llu, \"ops\": %llu, \"graphs\": %llu}}",
            (unsigned long long)t.pending_overflows, (unsigned long long)t.node_overflows,
            (unsigned long long)t.op_overflows, (unsigned long long)t.graph_overflows);
    view_free(v);
}
