#include "nf_report.h"

#include <stdlib.h>
#include <string.h>

#include "nf_gpu.h"
#include "nf_intern.h"
#include "nf_text.h"

static bool same_dims(const int64_t *a, int na, const int64_t *b, int nb) {
    return na == nb && memcmp(a, b, sizeof(int64_t) * (size_t)na) == 0;
}

/* The query's shape, then the key's and value's where they differ from it (grouped
 * heads, another value head dim, attention over other tokens): "2x16x4x8 k:2x20x2x8". */
static void shape_text(const nf_problem *p, char *out, size_t len) {
    char q[96], k[96], v[96];
    nf_text_dims(p->q_shape, p->q_rank, q, sizeof q);
    bool show_k = p->k_rank && !same_dims(p->k_shape, p->k_rank, p->q_shape, p->q_rank);
    bool show_v = p->v_rank && !same_dims(p->v_shape, p->v_rank, p->q_shape, p->q_rank) &&
                  !(show_k && same_dims(p->v_shape, p->v_rank, p->k_shape, p->k_rank)) &&
                  p->kind != NF_KIND_AV;
    snprintf(out, len, "%s%s%s%s%s", q, show_k ? " k:" : "",
             show_k ? nf_text_dims(p->k_shape, p->k_rank, k, sizeof k) : "", show_v ? " v:" : "",
             show_v ? nf_text_dims(p->v_shape, p->v_rank, v, sizeof v) : "");
}

/* An aten op's operands, in its formula's order: "40x32, 32x64". */
static void operands_text(const nf_problem *p, char *out, size_t len) {
    char a[96], b[96], c[96];
    snprintf(out, len, "%s%s%s%s%s", nf_text_dims(p->q_shape, p->q_rank, a, sizeof a),
             p->k_rank ? ", " : "", p->k_rank ? nf_text_dims(p->k_shape, p->k_rank, b, sizeof b) : "",
             p->v_rank ? ", " : "", p->v_rank ? nf_text_dims(p->v_shape, p->v_rank, c, sizeof c) : "");
}

static const char *causal_text(const nf_problem *p, char *buf) {
    for (int i = 0; i < p->na_dim; i++) buf[i] = (p->causal_mask >> i) & 1 ? 'T' : 'F';
    buf[p->na_dim] = '\0';
    return buf;
}

static const char *text_or_dash(uint16_t id) {
    const char *s = nf_intern_str(id);
    return *s ? s : "-";
}

const char *nf_report_natten_version(const nf_run_info *run, nf_entry *const *entries, int n) {
    if (run != NULL && run->natten_version != NULL && *run->natten_version) return run->natten_version;
    for (int i = 0; i < n; i++)
        if (entries[i]->key.version != NF_INTERN_NONE) return nf_intern_str(entries[i]->key.version);
    return "";
}

static nf_u128 entry_flops(const nf_entry *e) {
    return nf_u128_mul_sat(e->flops_per_call, atomic_load(&((nf_entry *)e)->calls));
}

/* ------------------------------------------------------------------ table */

#define CELL 256 /* bytes per table cell */
#define NF_TABLE_ATEN_ROWS 20 /* aten rows in the summary; the dump has all */

enum { COL_OP, COL_PASS, COL_KIND, COL_BACKEND, COL_SHAPE, COL_KERNEL, COL_DIL, COL_CAUSAL,
       COL_DTYPE, COL_DEVICE, COL_CALLS, COL_FLOPS, NCOLS };
static const char *const headers[NCOLS] = {"op", "pass", "kind", "backend", "shape", "kernel",
                                           "dilation", "causal", "dtype", "device", "calls",
                                           "FLOPs"};

static void row_cells(const nf_entry *e, nf_units units, char cells[NCOLS][CELL]) {
    const nf_problem *p = &e->key.problem;
    char tmp[96];
    snprintf(cells[COL_OP], CELL, "%s", text_or_dash(e->key.op));
    snprintf(cells[COL_PASS], CELL, "%s", nf_pass_name((nf_pass)e->key.pass));
    snprintf(cells[COL_KIND], CELL, "%s", nf_kind_name((nf_kind)p->kind));
    snprintf(cells[COL_BACKEND], CELL, "%s", text_or_dash(e->key.backend));
    if (p->kind == NF_KIND_ATEN) operands_text(p, cells[COL_SHAPE], CELL);
    else shape_text(p, cells[COL_SHAPE], CELL);
    if (p->kind == NF_KIND_ATEN) {
        snprintf(cells[COL_KERNEL], CELL, "-");
        snprintf(cells[COL_DIL], CELL, "-");
    } else if (p->kind == NF_KIND_ATTENTION) {
        snprintf(cells[COL_KERNEL], CELL, "kv=%lld", (long long)p->k_shape[1]);
        snprintf(cells[COL_DIL], CELL, "-");
    } else {
        /* "3x3+5": a 3x3 window plus 5 additional key/value tokens */
        snprintf(cells[COL_KERNEL], CELL, "%s", nf_text_dims(p->kernel, p->na_dim, tmp, sizeof tmp));
        if (p->extra_kv > 0)
            snprintf(cells[COL_KERNEL] + strlen(cells[COL_KERNEL]),
                     CELL - strlen(cells[COL_KERNEL]), "+%lld",
                     (long long)p->extra_kv);
        snprintf(cells[COL_DIL], CELL, "%s", nf_text_dims(p->dilation, p->na_dim, tmp, sizeof tmp));
    }
    snprintf(cells[COL_CAUSAL], CELL, "%s", p->kind == NF_KIND_ATEN ? "-" : causal_text(p, tmp));
    snprintf(cells[COL_DTYPE], CELL, "%s", text_or_dash(e->key.dtype));
    snprintf(cells[COL_DEVICE], CELL, "%s", text_or_dash(e->key.device));
    snprintf(cells[COL_CALLS], CELL, "%llu", (unsigned long long)atomic_load(&((nf_entry *)e)->calls));
    if (units == NF_UNITS_EXACT)
        nf_u128_to_dec(entry_flops(e), cells[COL_FLOPS]);
    else
        nf_u128_to_si(entry_flops(e), "FLOP", cells[COL_FLOPS], CELL);
}

/* after: "" or, for a share of the total, "  12.5%" */
static void total_line(FILE *f, const char *label, nf_u128 flops, nf_units units, const char *after) {
    char a[64], b[64];
    if (units == NF_UNITS_EXACT)
        fprintf(f, "naflops: %-9s %s FLOP  %s MAC%s\n", label, nf_u128_to_dec(flops, a),
                nf_u128_to_dec(flops / 2, b), after);
    else
        fprintf(f, "naflops: %-9s %s  (%s)%s\n", label, nf_u128_to_si(flops, "FLOP", a, sizeof a),
                nf_u128_to_si(flops / 2, "MAC", b, sizeof b), after);
}

static int by_flops_desc(const void *a, const void *b) {
    nf_u128 x = entry_flops(*(nf_entry *const *)a), y = entry_flops(*(nf_entry *const *)b);
    return (x < y) - (x > y);
}

/* "  12.5%": part's share of total, or "" */
static const char *share(nf_u128 part, nf_u128 total, char *buf, size_t len) {
    if (total == 0) return "";
    /* per mille, rounded, in integers: u128 avoids float and overflow for any count */
    nf_u128 pm = total / 1000 ? (part + total / 2000) / (total / 1000) : part * 1000 / total;
    if (pm > 1000) pm = 1000;
    snprintf(buf, len, "  %u.%u%%", (unsigned)(pm / 10), (unsigned)(pm % 10));
    return buf;
}

/* The per-op table shows each signature once, whichever modules ran it: rows that
 * differ only in their module are summed into copies (their first's order kept). */
static int by_signature(const void *x, const void *y) {
    const nf_entry *a = x, *b = y;
    int c = memcmp(&a->key, &b->key, sizeof a->key);
    return c ? c : (a->order > b->order) - (a->order < b->order);
}

static int by_order(const void *x, const void *y) {
    const nf_entry *a = *(nf_entry *const *)x, *b = *(nf_entry *const *)y;
    return (a->order > b->order) - (a->order < b->order);
}

static int across_modules(nf_entry *const *entries, int n, nf_entry *copies, nf_entry **out) {
    for (int i = 0; i < n; i++) {
        copies[i].key = entries[i]->key;
        copies[i].key.module = NF_INTERN_NONE;
        copies[i].flops_per_call = entries[i]->flops_per_call;
        atomic_init(&copies[i].calls, atomic_load(&entries[i]->calls));
        copies[i].order = entries[i]->order;
    }
    qsort(copies, (size_t)n, sizeof *copies, by_signature);
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (m > 0 && memcmp(&copies[m - 1].key, &copies[i].key, sizeof copies[i].key) == 0) {
            atomic_fetch_add(&copies[m - 1].calls, atomic_load(&copies[i].calls));
            continue;
        }
        if (m != i) {
            copies[m].key = copies[i].key;
            copies[m].flops_per_call = copies[i].flops_per_call;
            atomic_init(&copies[m].calls, atomic_load(&copies[i].calls));
            copies[m].order = copies[i].order;
        }
        m++;
    }
    for (int i = 0; i < m; i++) out[i] = &copies[i];
    qsort(out, (size_t)m, sizeof *out, by_order);
    return m;
}

void nf_report_table(FILE *f, const nf_run_info *run, nf_entry *const *all, int nall,
                     nf_units units) {
    nf_entry *copies = malloc(sizeof *copies * (size_t)(nall > 0 ? nall : 1));
    nf_entry **entries = malloc(sizeof *entries * (size_t)(nall > 0 ? nall : 1));
    if (copies == NULL || entries == NULL) {
        free(copies);
        free(entries);
        return;
    }
    int n = across_modules(all, nall, copies, entries);
    /* NATTEN's rows in the order they first ran, then the other aten ops (whole-model
     * count), largest first, the first NF_TABLE_ATEN_ROWS of them: the dump has all. */
    nf_entry **rows = malloc(sizeof *rows * (size_t)(n > 0 ? n : 1));
    if (rows == NULL) {
        free(entries);
        free(copies);
        return;
    }
    int nrows = 0, naten = 0;
    for (int i = 0; i < n; i++)
        if (nf_problem_is_natten(&entries[i]->key.problem)) rows[nrows++] = entries[i];
    for (int i = 0; i < n; i++)
        if (!nf_problem_is_natten(&entries[i]->key.problem)) rows[nrows + naten++] = entries[i];
    qsort(rows + nrows, (size_t)naten, sizeof *rows, by_flops_desc);
    int shown_aten = naten < NF_TABLE_ATEN_ROWS ? naten : NF_TABLE_ATEN_ROWS;
    nf_u128 hidden = 0;
    for (int i = nrows + shown_aten; i < nrows + naten; i++) hidden = nf_u128_add_sat(hidden, entry_flops(rows[i]));
    int shown = nrows + shown_aten;

    int width[NCOLS];
    char cells[NCOLS][CELL];
    for (int c = 0; c < NCOLS; c++) width[c] = (int)strlen(headers[c]);
    for (int i = 0; i < shown; i++) {
        row_cells(rows[i], units, cells);
        for (int c = 0; c < NCOLS; c++)
            if ((int)strlen(cells[c]) > width[c]) width[c] = (int)strlen(cells[c]);
    }
    const char *version = nf_report_natten_version(run, entries, n);
    fprintf(f, "naflops: %s of pid %ld%s%s (NATTEN %s)\n",
            naten ? "FLOPs (NATTEN and the whole model)" : "NATTEN FLOPs", run->pid,
            run->rank ? ", rank " : "", run->rank ? run->rank : "", *version ? version : "unknown");
    fputs("naflops:", f);
    for (int c = 0; c < NCOLS; c++)
        fprintf(f, c >= COL_CALLS ? " %*s" : " %-*s", width[c], headers[c]);
    fputc('\n', f);
    for (int i = 0; i < shown; i++) {
        row_cells(rows[i], units, cells);
        fputs("naflops:", f);
        for (int c = 0; c < NCOLS; c++)
            fprintf(f, c >= COL_CALLS ? " %*s" : " %-*s", width[c], cells[c]);
        fputc('\n', f);
    }
    if (naten > shown_aten) {
        char amount[64];
        if (units == NF_UNITS_EXACT) nf_u128_to_dec(hidden, amount);
        else nf_u128_to_si(hidden, "FLOP", amount, sizeof amount);
        fprintf(f, "naflops: ... %d more aten rows (%s%s); the dump has every row\n",
                naten - shown_aten, amount, units == NF_UNITS_EXACT ? " FLOP" : "");
    }
    nf_totals t = nf_totals_of(entries, n);
    total_line(f, "forward", t.flops[NF_PASS_FORWARD], units, "");
    total_line(f, "backward", t.flops[NF_PASS_BACKWARD], units, "");
    if (t.flops[NF_PASS_JVP] != 0) total_line(f, "jvp", t.flops[NF_PASS_JVP], units, "  forward-mode AD");
    if (t.flops[NF_PASS_RECOMPUTE] != 0) {
        /* Activation checkpointing: the model's work (MFU) and the hardware's (HFU). */
        total_line(f, "recompute", t.flops[NF_PASS_RECOMPUTE], units, "");
        total_line(f, "model", nf_u128_add_sat(t.flops[NF_PASS_FORWARD], t.flops[NF_PASS_BACKWARD]),
                   units, "  forward + backward");
        total_line(f, "hardware", t.all, units, "  model + recompute");
    } else {
        total_line(f, "total", t.all, units, "");
    }
    if (run->uncounted > 0)
        fprintf(f, "naflops: %llu NATTEN call%s ran but could not be counted (said above why)\n",
                (unsigned long long)run->uncounted, run->uncounted == 1 ? "" : "s");
    if (naten) {
        char pct[24];
        total_line(f, "NATTEN", t.natten, units, share(t.natten, t.all, pct, sizeof pct));
        total_line(f, "other", t.other, units, share(t.other, t.all, pct, sizeof pct));
    }
    free(rows);
    free(entries);
    free(copies);
}

/* ------------------------------------------------------------------- JSON */

static void json_ints(FILE *f, const int64_t *v, int n) {
    fputc('[', f);
    for (int i = 0; i < n; i++) fprintf(f, i ? ", %lld" : "%lld", (long long)v[i]);
    fputc(']', f);
}

static void json_u128(FILE *f, nf_u128 v) {
    char buf[NF_U128_DEC_LEN];
    fputs(nf_u128_to_dec(v, buf), f);
}

static void json_field_string(FILE *f, const char *name, const char *value) {
    fprintf(f, "\"%s\": ", name);
    if (value) nf_text_json_string(f, value, false);
    else fputs("null", f);
}

static void json_entry(FILE *f, const nf_entry *e) {
    const nf_problem *p = &e->key.problem;
    uint64_t calls = atomic_load(&((nf_entry *)e)->calls);
    fputs("    {", f);
    json_field_string(f, "op", nf_intern_str(e->key.op));
    fputs(", ", f);
    json_field_string(f, "pass", nf_pass_name((nf_pass)e->key.pass));
    fputs(", ", f);
    json_field_string(f, "module", e->key.module ? nf_intern_str(e->key.module) : NULL);
    fputs(", ", f);
    json_field_string(f, "kind", nf_kind_name((nf_kind)p->kind));
    fputs(", ", f);
    json_field_string(f, "natten_version",
                      p->kind == NF_KIND_ATEN ? NULL : nf_intern_str(e->key.version));
    fputs(", ", f);
    json_field_string(f, "backend", e->key.backend ? nf_intern_str(e->key.backend) : NULL);
    fputs(",\n     \"shape\": ", f);
    json_ints(f, p->q_shape, p->q_rank);
    fputs(", \"key_shape\": ", f);
    if (p->k_rank) json_ints(f, p->k_shape, p->k_rank);
    else fputs("null", f);
    fputs(", \"value_shape\": ", f);
    if (p->v_rank) json_ints(f, p->v_shape, p->v_rank);
    else fputs("null", f);
    bool no_window = p->kind == NF_KIND_ATTENTION || p->kind == NF_KIND_ATEN;
    fputs(",\n     \"kernel_size\": ", f);
    if (no_window) fputs("null", f);
    else json_ints(f, p->kernel, p->na_dim);
    fputs(", \"stride\": ", f);
    if (no_window) fputs("null", f);
    else json_ints(f, p->stride, p->na_dim);
    fputs(", \"dilation\": ", f);
    if (no_window) fputs("null", f);
    else json_ints(f, p->dilation, p->na_dim);
    fputs(", \"is_causal\": [", f);
    for (int i = 0; i < (p->kind == NF_KIND_ATEN ? 0 : p->na_dim); i++)
        fprintf(f, "%s%s", i ? ", " : "", (p->causal_mask >> i) & 1 ? "true" : "false");
    fprintf(f, "], \"additional_kv\": %lld", (long long)p->extra_kv);
    fputs(", \"varlen_pairs\": ", f);
    if (p->varlen_pairs) json_u128(f, p->varlen_pairs);
    else fputs("null", f);
    fputs(",\n     ", f);
    json_field_string(f, "dtype", nf_intern_str(e->key.dtype));
    fputs(", ", f);
    json_field_string(f, "device", nf_intern_str(e->key.device));
    fprintf(f, ", \"calls\": %llu, \"flops_per_call\": ", (unsigned long long)calls);
    json_u128(f, e->flops_per_call);
    fputs(", \"flops\": ", f);
    json_u128(f, entry_flops(e));
    fputs(", \"macs\": ", f);
    json_u128(f, entry_flops(e) / 2);
    fputc('}', f);
}

void nf_report_json(FILE *f, const nf_run_info *run, nf_entry *const *entries, int n) {
    nf_totals t = nf_totals_of(entries, n);
    fprintf(f, "{\n  \"schema\": \"%s\",\n  \"pid\": %ld,\n  ", NF_SCHEMA, run->pid);
    json_field_string(f, "host", run->host);
    fputs(",\n  ", f);
    json_field_string(f, "rank", run->rank);
    fputs(", ", f);
    json_field_string(f, "local_rank", run->local_rank);
    fputs(", ", f);
    json_field_string(f, "world_size", run->world_size);
    fputs(",\n  ", f);
    const char *version = nf_report_natten_version(run, entries, n);
    json_field_string(f, "natten_version", *version ? version : NULL);
    fputs(",\n  \"ops\": [\n", f);
    for (int i = 0; i < n; i++) {
        json_entry(f, entries[i]);
        fputs(i + 1 < n ? ",\n" : "\n", f);
    }
    fputs("  ],\n  \"totals\": {\"flops\": ", f);
    json_u128(f, t.all);
    fputs(", \"macs\": ", f);
    json_u128(f, t.all / 2);
    fputs(", \"forward_flops\": ", f);
    json_u128(f, t.flops[NF_PASS_FORWARD]);
    fputs(", \"backward_flops\": ", f);
    json_u128(f, t.flops[NF_PASS_BACKWARD]);
    fputs(", \"forward_macs\": ", f);
    json_u128(f, t.flops[NF_PASS_FORWARD] / 2);
    fputs(", \"backward_macs\": ", f);
    json_u128(f, t.flops[NF_PASS_BACKWARD] / 2);
    fputs(", \"jvp_flops\": ", f);
    json_u128(f, t.flops[NF_PASS_JVP]);
    fputs(", \"jvp_macs\": ", f);
    json_u128(f, t.flops[NF_PASS_JVP] / 2);
    fputs(", \"recompute_flops\": ", f);
    json_u128(f, t.flops[NF_PASS_RECOMPUTE]);
    fputs(", \"recompute_macs\": ", f);
    json_u128(f, t.flops[NF_PASS_RECOMPUTE] / 2);
    nf_u128 model = nf_u128_add_sat(t.flops[NF_PASS_FORWARD], t.flops[NF_PASS_BACKWARD]);
    fputs(", \"model_flops\": ", f);
    json_u128(f, model);
    fputs(", \"model_macs\": ", f);
    json_u128(f, model / 2);
    fputs(", \"natten_flops\": ", f);
    json_u128(f, t.natten);
    fputs(", \"other_flops\": ", f);
    json_u128(f, t.other);
    fprintf(f, ", \"calls\": %llu, \"uncounted_calls\": %llu}", (unsigned long long)t.calls,
            (unsigned long long)run->uncounted);
    if (run->steps != NULL) {
        fputs(",\n  \"steps\": ", f);
        nf_step_report_json(f, run->steps, run->peak, run->peak_source);
    }
    if (nf_gpu_has_data()) { /* kernels, graphs, cross-check: only where CUDA ran */
        fputs(",\n  \"gpu\": ", f);
        nf_gpu_report_json(f, entries, n);
    }
    fputs("\n}\n", f);
}

/* -------------------------------------------------------------------- CSV */

void nf_report_csv(FILE *f, nf_entry *const *entries, int n) {
    fputs("op,pass,kind,natten_version,backend,shape,key_shape,value_shape,kernel_size,stride,"
          "dilation,is_causal,additional_kv,dtype,device,calls,flops_per_call,flops,macs,module\n",
          f);
    for (int i = 0; i < n; i++) {
        const nf_entry *e = entries[i];
        const nf_problem *p = &e->key.problem;
        char a[96], b[96], c[96], d[96], s[96], g[96], cz[8], x[NF_U128_DEC_LEN],
            y[NF_U128_DEC_LEN], z[NF_U128_DEC_LEN];
        bool attn = p->kind == NF_KIND_ATTENTION || p->kind == NF_KIND_ATEN;
        fprintf(f, "%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%lld,%s,%s,%llu,%s,%s,%s,",
                nf_intern_str(e->key.op), nf_pass_name((nf_pass)e->key.pass),
                nf_kind_name((nf_kind)p->kind), nf_intern_str(e->key.version),
                nf_intern_str(e->key.backend), nf_text_dims(p->q_shape, p->q_rank, a, sizeof a),
                nf_text_dims(p->k_shape, p->k_rank, b, sizeof b),
                nf_text_dims(p->v_shape, p->v_rank, c, sizeof c),
                attn ? "-" : nf_text_dims(p->kernel, p->na_dim, d, sizeof d),
                attn ? "-" : nf_text_dims(p->stride, p->na_dim, s, sizeof s),
                attn ? "-" : nf_text_dims(p->dilation, p->na_dim, g, sizeof g), causal_text(p, cz),
                (long long)p->extra_kv, nf_intern_str(e->key.dtype), nf_intern_str(e->key.device),
                (unsigned long long)atomic_load(&((nf_entry *)e)->calls),
                nf_u128_to_dec(e->flops_per_call, x), nf_u128_to_dec(entry_flops(e), y),
                nf_u128_to_dec(entry_flops(e) / 2, z));
        nf_text_csv_field(f, nf_intern_str(e->key.module)); /* user text: quoted as needed */
        fputc('\n', f);
    }
}
