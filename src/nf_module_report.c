/* The summary's module block: the heaviest modules, two levels below each outermost
 * module, with FLOPs that include their submodules' and NATTEN's share of them.
 *
 * Each ledger row holds the module that ran it (nf_key.module, a FlopCounterMode-style
 * name: the outermost module's class, then the named_modules() path). The block adds
 * each row to its module and every ancestor down to NF_MODULE_DEPTH; the dump has
 * every row and `naflops report --by module` the whole tree. */
#include "nf_module_report.h"

#include <stdlib.h>
#include <string.h>

#include "nf_intern.h"
#include "nf_text.h"

#define NF_MODULE_DEPTH 2  /* components below the outermost module */
#define NF_MODULE_LINES 16 /* lines in the block; the report has all */

typedef struct bucket {
    char *name;     /* a prefix of module names: "HDiT", "HDiT.encoder" */
    int depth;      /* dots in name */
    nf_u128 flops;  /* every pass, submodules included */
    nf_u128 natten; /* NATTEN's rows among them */
    int parent;     /* index of the bucket one level up, -1 for an outermost module */
    int first;      /* creation order of its first row: ties shown in program order */
} bucket;

typedef struct buckets {
    bucket *v;
    int n, cap;
} buckets;

static int find(const buckets *b, const char *name, size_t len) {
    for (int i = 0; i < b->n; i++)
        if (strncmp(b->v[i].name, name, len) == 0 && b->v[i].name[len] == '\0') return i;
    return -1;
}

/* The bucket of name[0..len), created empty; -1 when out of memory. */
static int bucket_of(buckets *b, const char *name, size_t len, int depth, int parent, int first) {
    int i = find(b, name, len);
    if (i >= 0) return i;
    if (b->n == b->cap) {
        int cap = b->cap ? 2 * b->cap : 32;
        bucket *v = realloc(b->v, sizeof *v * (size_t)cap);
        if (v == NULL) return -1;
        b->v = v, b->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (copy == NULL) return -1;
    memcpy(copy, name, len);
    copy[len] = '\0';
    b->v[b->n] = (bucket){copy, depth, 0, 0, parent, first};
    return b->n++;
}

static nf_u128 flops_of(const nf_entry *e) {
    return nf_u128_mul_sat(e->flops_per_call, atomic_load(&((nf_entry *)e)->calls));
}

/* Adds a row to its module's bucket and each ancestor's, to NF_MODULE_DEPTH. */
static void add_row(buckets *b, const nf_entry *e) {
    const char *name = nf_intern_str(e->key.module);
    nf_u128 flops = flops_of(e);
    bool natten = nf_problem_is_natten(&e->key.problem);
    int parent = -1;
    for (int depth = 0; depth <= NF_MODULE_DEPTH; depth++) {
        /* the prefix with depth + 1 components */
        const char *end = name;
        for (int d = 0; d <= depth && end != NULL; d++) {
            end = strchr(d == 0 ? name : end + 1, '.');
            if (end == NULL && d < depth) return; /* the row's module is shallower */
        }
        size_t len = end ? (size_t)(end - name) : strlen(name);
        int i = bucket_of(b, name, len, depth, parent, (int)e->order);
        if (i < 0) return;
        b->v[i].flops = nf_u128_add_sat(b->v[i].flops, flops);
        if (natten) b->v[i].natten = nf_u128_add_sat(b->v[i].natten, flops);
        if (end == NULL) return;
        parent = i;
    }
}

static const buckets *sorting;
/* Heaviest first; equal ones in program order. */
static int by_weight(const void *x, const void *y) {
    const bucket *a = &sorting->v[*(const int *)x], *b = &sorting->v[*(const int *)y];
    if (a->flops != b->flops) return a->flops < b->flops ? 1 : -1;
    return (a->first > b->first) - (a->first < b->first);
}

static void percent(nf_u128 part, nf_u128 total, char *buf, size_t len) {
    if (total == 0) {
        snprintf(buf, len, "-");
        return;
    }
    /* per mille, rounded half up, exact; past 2^117 FLOPs (never, in practice) the
     * operands are scaled down first so that 2000 * part cannot overflow */
    while (part > ((nf_u128)1 << 117) || total > ((nf_u128)1 << 117)) part >>= 1, total >>= 1;
    nf_u128 pm = total ? (2000 * part + total) / (2 * total) : 0;
    if (pm > 1000) pm = 1000;
    snprintf(buf, len, "%u.%u%%", (unsigned)(pm / 10), (unsigned)(pm % 10));
}

static void amount(nf_u128 v, nf_units units, char *buf, size_t len) {
    if (units == NF_UNITS_EXACT) nf_u128_to_dec(v, buf);
    else nf_u128_to_si(v, "FLOP", buf, len);
}

typedef struct line {
    int bucket; /* -1: the outside-modules line */
} line;

/* Depth-first, heaviest child first, until NF_MODULE_LINES lines. */
static void visit(const buckets *b, int parent, line *lines, int *nlines, int *order, int norder) {
    for (int k = 0; k < norder && *nlines < NF_MODULE_LINES; k++) {
        int i = order[k];
        if (b->v[i].parent != parent) continue;
        lines[(*nlines)++] = (line){i};
        visit(b, i, lines, nlines, order, norder);
    }
}

void nf_module_report_table(FILE *f, nf_entry *const *entries, int n, nf_units units) {
    buckets b = {0};
    nf_u128 outside = 0, outside_natten = 0, all = 0;
    bool any = false;
    for (int i = 0; i < n; i++) {
        nf_u128 flops = flops_of(entries[i]);
        all = nf_u128_add_sat(all, flops);
        if (entries[i]->key.module == NF_INTERN_NONE) {
            outside = nf_u128_add_sat(outside, flops);
            if (nf_problem_is_natten(&entries[i]->key.problem)) outside_natten = nf_u128_add_sat(outside_natten, flops);
        } else {
            any = true;
            add_row(&b, entries[i]);
        }
    }
    int *order = b.n ? malloc(sizeof *order * (size_t)b.n) : NULL;
    if (any && order != NULL && all != 0) {
        for (int i = 0; i < b.n; i++) order[i] = i;
        sorting = &b;
        qsort(order, (size_t)b.n, sizeof *order, by_weight);
        line lines[NF_MODULE_LINES + 1];
        int nlines = 0;
        visit(&b, -1, lines, &nlines, order, b.n);
        if (outside != 0) lines[nlines++] = (line){-1};
        int width = (int)strlen("module (submodules included)");
        for (int k = 0; k < nlines; k++) {
            int w = lines[k].bucket < 0 ? (int)strlen("(outside modules)")
                                        : 2 * b.v[lines[k].bucket].depth + (int)strlen(b.v[lines[k].bucket].name);
            if (w > width) width = w;
        }
        if (width > 72) width = 72;
        fprintf(f, "naflops: %-*s %14s %8s %7s\n", width, "module (submodules included)", "FLOPs", "share", "NATTEN");
        for (int k = 0; k < nlines; k++) {
            char a[64], s[16], t[16], label[512];
            const bucket *x = lines[k].bucket < 0 ? NULL : &b.v[lines[k].bucket];
            nf_u128 flops = x ? x->flops : outside, natten = x ? x->natten : outside_natten;
            if (x) snprintf(label, sizeof label, "%*s%s", 2 * x->depth, "", x->name);
            else snprintf(label, sizeof label, "(outside modules)");
            amount(flops, units, a, sizeof a);
            percent(flops, all, s, sizeof s);
            percent(natten, flops, t, sizeof t);
            fprintf(f, "naflops: %-*s %14s %8s %7s\n", width, label, a, s, t);
        }
        int shown = 0;
        for (int i = 0; i < b.n; i++) shown += b.v[i].depth <= NF_MODULE_DEPTH;
        if (shown + (outside != 0) > nlines)
            fprintf(f, "naflops: ... %d more modules: naflops report --by module has the tree\n",
                    shown + (outside != 0) - nlines);
    }
    free(order);
    for (int i = 0; i < b.n; i++) free(b.v[i].name);
    free(b.v);
}
