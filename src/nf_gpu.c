#include "nf_gpu.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "nf_log.h"
#include "nf_step.h"

/* ------------------------------------------------------------ u64 -> pointer map */

/* Open addressing with linear probing and backward-shift deletion (no tombstones, so
 * a table that sees millions of insert/remove pairs never degrades). Key 0 is "empty":
 * CUPTI's correlation and node ids start at 1. Twice as many slots as the cap keeps
 * probes short. */
#define MAP_SLOTS(cap) (2 * (cap))

typedef struct map {
    uint64_t *keys;
    void **vals;
    size_t slots, count, cap;
} map;

static size_t map_home(const map *m, uint64_t key) {
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    return (size_t)(key & (m->slots - 1));
}

static size_t map_find(const map *m, uint64_t key) {
    size_t i = map_home(m, key);
    while (m->keys[i] != 0 && m->keys[i] != key) i = (i + 1) & (m->slots - 1);
    return i;
}

/* false when full (the caller says so once). */
static bool map_put(map *m, uint64_t key, void *val) {
    if (key == 0) return true;
    size_t i = map_find(m, key);
    if (m->keys[i] == 0) {
        if (m->count >= m->cap) return false;
        m->count++;
        m->keys[i] = key;
    }
    m->vals[i] = val;
    return true;
}

static bool map_get(const map *m, uint64_t key, void **val) {
    if (key == 0) return false;
    size_t i = map_find(m, key);
    if (m->keys[i] == 0) return false;
    *val = m->vals[i];
    return true;
}

static bool map_take(map *m, uint64_t key, void **val) {
    if (key == 0) return false;
    size_t mask = m->slots - 1, i = map_find(m, key);
    if (m->keys[i] == 0) return false;
    if (val) *val = m->vals[i];
    /* Backward shift: move later entries of the run into the hole when their home
     * slot does not lie (cyclically) between the hole and them. */
    size_t hole = i;
    for (size_t j = (i + 1) & mask; m->keys[j] != 0; j = (j + 1) & mask) {
        size_t home = map_home(m, m->keys[j]);
        bool movable = hole <= j ? (home <= hole || home > j) : (home <= hole && home > j);
        if (movable) {
            m->keys[hole] = m->keys[j];
            m->vals[hole] = m->vals[j];
            hole = j;
        }
    }
    m->keys[hole] = 0;
    m->vals[hole] = NULL;
    m->count--;
    return true;
}

static void map_clear(map *m) {
    memset(m->keys, 0, m->slots * sizeof *m->keys);
    memset(m->vals, 0, m->slots * sizeof *m->vals);
    m->count = 0;
}

/* ------------------------------------------------------------ state */

typedef struct graph_count {
    nf_entry *entry;
    uint64_t calls;
} graph_count;

typedef struct graph {
    nf_gpu_graph_stat stat;
    graph_count *counts; /* per replay; malloc'd */
} graph;

typedef struct capture {
    uint64_t key;
    graph_count *before; /* ledger calls at capture begin, sorted by entry; malloc'd */
    int n;
} capture;

#define CAPTURES_MAX 16

static uint64_t pending_keys[MAP_SLOTS(NF_GPU_PENDING_MAX)];
static void *pending_vals[MAP_SLOTS(NF_GPU_PENDING_MAX)];
static uint64_t node_keys[MAP_SLOTS(NF_GPU_NODES_MAX)];
static void *node_vals[MAP_SLOTS(NF_GPU_NODES_MAX)];

static struct {
    map pending; /* correlation id -> op */
    map nodes;   /* graph node id -> op */
    nf_gpu_op_stat ops[NF_GPU_OPS_MAX];
    int nops;
    graph graphs[NF_GPU_GRAPHS_MAX];
    int ngraphs;
    struct { uint64_t exec_id; int graph; } execs[NF_GPU_EXECS_MAX];
    int nexecs;
    capture captures[CAPTURES_MAX];
    int ncaptures;
    nf_gpu_totals totals;
    struct { char chip[16], name[64]; bool known; } devices[NF_GPU_DEVICES_MAX];
    bool any;
    bool crosscheck_ran;
    char crosscheck_note[256];
    char off_reason[256];
    bool said_pending, said_nodes, said_ops, said_graphs, said_captures, said_execs;
} S = {
    .pending = {pending_keys, pending_vals, MAP_SLOTS(NF_GPU_PENDING_MAX), 0, NF_GPU_PENDING_MAX},
    .nodes = {node_keys, node_vals, MAP_SLOTS(NF_GPU_NODES_MAX), 0, NF_GPU_NODES_MAX},
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void say_log(const char *line) { nf_log("%s", line); }
static _Atomic(nf_gpu_say_fn) say_fn = say_log;

void nf_gpu_set_say(nf_gpu_say_fn fn) { atomic_store(&say_fn, fn ? fn : say_log); }

static void say_once(bool *said, const char *line) {
    if (*said) return;
    *said = true;
    atomic_load(&say_fn)(line);
}

void nf_gpu_reset(void) {
    /* After fork the parent may have held the lock: this process has one thread. */
    pthread_mutex_init(&lock, NULL);
    map_clear(&S.pending);
    map_clear(&S.nodes);
    for (int i = 0; i < S.ngraphs; i++) free(S.graphs[i].counts);
    for (int i = 0; i < S.ncaptures; i++) free(S.captures[i].before);
    map pending = S.pending, nodes = S.nodes;
    memset(&S, 0, sizeof S);
    S.pending = pending;
    S.nodes = nodes;
}

void nf_gpu_device(uint32_t device, const char *chip, const char *name) {
    if (device >= NF_GPU_DEVICES_MAX) return;
    pthread_mutex_lock(&lock);
    snprintf(S.devices[device].chip, sizeof S.devices[device].chip, "%s", chip ? chip : "");
    snprintf(S.devices[device].name, sizeof S.devices[device].name, "%s", name ? name : "");
    S.devices[device].known = true;
    pthread_mutex_unlock(&lock);
}

/* ------------------------------------------------------------ launches, records */

static nf_gpu_op_stat *op_stat(nf_entry *op) {
    for (int i = 0; i < S.nops; i++)
        if (S.ops[i].op == op) return &S.ops[i];
    if (S.nops == NF_GPU_OPS_MAX) {
        S.totals.op_overflows++;
        say_once(&S.said_ops, "more than 256 NATTEN ops launched kernels; the kernels of later "
                              "ones count as \"other\"");
        return NULL;
    }
    nf_gpu_op_stat *s = &S.ops[S.nops++];
    memset(s, 0, sizeof *s);
    s->op = op;
    strcpy(s->more.name, "...");
    return s;
}

void nf_gpu_launch(nf_entry *op, uint64_t correlation) {
    if (op == NULL) return; /* "other": its record needs no join */
    pthread_mutex_lock(&lock);
    S.any = true;
    if (!map_put(&S.pending, correlation, op)) {
        S.totals.pending_overflows++;
        say_once(&S.said_pending, "more than 16384 kernels of NATTEN ops awaited their activity "
                                  "records; later ones count as \"other\"");
    }
    pthread_mutex_unlock(&lock);
}

static void put_node(uint64_t node_id, nf_entry *op) {
    if (op == NULL || node_id == 0) return;
    if (!map_put(&S.nodes, node_id, op)) {
        S.totals.node_overflows++;
        say_once(&S.said_nodes, "more than 16384 CUDA-graph kernel nodes belong to NATTEN ops; "
                                "later ones count as \"other\"");
    }
}

void nf_gpu_launch_captured(uint64_t correlation, uint64_t graph_id, uint64_t node_id) {
    (void)graph_id;
    pthread_mutex_lock(&lock);
    void *op = NULL;
    if (map_take(&S.pending, correlation, &op)) put_node(node_id, op);
    pthread_mutex_unlock(&lock);
}

void nf_gpu_graph_node(uint64_t graph_id, uint64_t node_id, nf_entry *op) {
    (void)graph_id;
    pthread_mutex_lock(&lock);
    put_node(node_id, op);
    pthread_mutex_unlock(&lock);
}

void nf_gpu_graph_node_cloned(uint64_t original_node_id, uint64_t node_id) {
    pthread_mutex_lock(&lock);
    void *op = NULL;
    if (map_get(&S.nodes, original_node_id, &op)) put_node(node_id, op);
    pthread_mutex_unlock(&lock);
}

static graph *graph_by_id(uint64_t id) {
    for (int i = 0; i < S.ngraphs; i++)
        if (S.graphs[i].stat.graph_id == id) return &S.graphs[i];
    for (int i = 0; i < S.nexecs; i++)
        if (S.execs[i].exec_id == id) return &S.graphs[S.execs[i].graph];
    return NULL;
}

static void add_name(nf_gpu_op_stat *s, const nf_gpu_kernel *k, uint64_t ns) {
    const char *name = k->name ? k->name : "?";
    nf_gpu_name_stat *n = NULL;
    for (int i = 0; i < s->names && !n; i++)
        if (strncmp(s->name[i].name, name, NF_GPU_NAME_LEN - 1) == 0) n = &s->name[i];
    if (n == NULL && s->names < NF_GPU_NAMES_MAX) {
        n = &s->name[s->names++];
        snprintf(n->name, sizeof n->name, "%s", name);
    }
    if (n == NULL) n = &s->more;
    if (n->count == 0) {
        memcpy(n->grid, k->grid, sizeof n->grid);
        memcpy(n->block, k->block, sizeof n->block);
    }
    n->count++;
    n->ns += ns;
}

void nf_gpu_kernel_record(const nf_gpu_kernel *k) {
    uint64_t ns = k->end_ns > k->start_ns ? k->end_ns - k->start_ns : 0;
    nf_step_gpu_kernel(k->start_ns, k->end_ns); /* the step it ran in: busy time */
    pthread_mutex_lock(&lock);
    S.any = true;
    void *op = NULL;
    if (k->graph_node_id != 0) {
        map_get(&S.nodes, k->graph_node_id, &op);
        graph *g = graph_by_id(k->graph_id);
        if (g) {
            g->stat.kernels++;
            g->stat.ns += ns;
        }
    } else {
        map_take(&S.pending, k->correlation, &op);
    }
    nf_gpu_op_stat *s = op ? op_stat(op) : NULL;
    if (s) {
        s->kernels++;
        s->ns += ns;
        add_name(s, k, ns);
    } else {
        S.totals.other_kernels++;
        S.totals.other_ns += ns;
    }
    pthread_mutex_unlock(&lock);
}

/* ------------------------------------------------------------ graphs */

static int by_entry(const void *a, const void *b) {
    uintptr_t x = (uintptr_t)((const graph_count *)a)->entry;
    uintptr_t y = (uintptr_t)((const graph_count *)b)->entry;
    return x < y ? -1 : x > y;
}

/* The ledger's calls now, one row per entry that has any, sorted by entry. */
static graph_count *ledger_calls(int *n) {
    static nf_entry *entries[NF_LEDGER_CAPACITY]; /* guarded by lock */
    int k = nf_ledger_snapshot(entries, NF_LEDGER_CAPACITY);
    graph_count *rows = malloc(sizeof *rows * (size_t)(k > 0 ? k : 1));
    if (rows == NULL) return NULL;
    for (int i = 0; i < k; i++) {
        rows[i].entry = entries[i];
        rows[i].calls = atomic_load_explicit(&entries[i]->calls, memory_order_relaxed);
    }
    qsort(rows, (size_t)k, sizeof *rows, by_entry);
    *n = k;
    return rows;
}

void nf_gpu_capture_begin(uint64_t capture_key) {
    pthread_mutex_lock(&lock);
    S.any = true;
    if (S.ncaptures == CAPTURES_MAX) {
        say_once(&S.said_captures, "more than 16 CUDA-graph captures open at once; the ops of "
                                   "later ones count once, not once per replay");
    } else {
        capture *c = &S.captures[S.ncaptures];
        c->key = capture_key;
        c->before = ledger_calls(&c->n);
        if (c->before) S.ncaptures++;
    }
    pthread_mutex_unlock(&lock);
}

void nf_gpu_capture_end(uint64_t capture_key, uint64_t graph_id) {
    pthread_mutex_lock(&lock);
    int ci = -1;
    for (int i = 0; i < S.ncaptures; i++)
        if (S.captures[i].key == capture_key) ci = i;
    if (ci < 0) goto out;
    capture c = S.captures[ci];
    S.captures[ci] = S.captures[--S.ncaptures];
    if (graph_id == 0) { /* the capture failed: what was counted stays counted */
        free(c.before);
        goto out;
    }
    if (S.ngraphs == NF_GPU_GRAPHS_MAX) {
        S.totals.graph_overflows++;
        say_once(&S.said_graphs, "more than 256 CUDA graphs captured; the ops of later ones "
                                 "count once, not once per replay");
        free(c.before);
        goto out;
    }
    int n = 0;
    graph_count *after = ledger_calls(&n);
    graph *g = &S.graphs[S.ngraphs++];
    memset(g, 0, sizeof *g);
    g->stat.graph_id = graph_id;
    g->counts = malloc(sizeof *g->counts * (size_t)(n > 0 ? n : 1));
    for (int i = 0; after && g->counts && i < n; i++) {
        graph_count *was = bsearch(&after[i], c.before, (size_t)c.n, sizeof *c.before, by_entry);
        uint64_t delta = after[i].calls - (was ? was->calls : 0);
        if (was && was->calls >= after[i].calls) continue;
        /* Nothing ran during capture: take the calls back; each replay adds them. */
        atomic_fetch_sub_explicit(&after[i].entry->calls, delta, memory_order_relaxed);
        g->counts[g->stat.ops++] = (graph_count){after[i].entry, delta};
        g->stat.calls += delta;
    }
    free(after);
    free(c.before);
out:
    pthread_mutex_unlock(&lock);
}

void nf_gpu_graph_instantiate(uint64_t graph_id, uint64_t exec_id) {
    pthread_mutex_lock(&lock);
    int gi = -1;
    for (int i = 0; i < S.ngraphs; i++)
        if (S.graphs[i].stat.graph_id == graph_id) gi = i;
    if (gi >= 0) {
        if (S.nexecs < NF_GPU_EXECS_MAX) {
            S.execs[S.nexecs].exec_id = exec_id;
            S.execs[S.nexecs].graph = gi;
            S.nexecs++;
        } else {
            say_once(&S.said_execs, "more than 1024 CUDA graphs instantiated; replays of later "
                                    "ones are not counted");
        }
    }
    pthread_mutex_unlock(&lock);
}

void nf_gpu_graph_launch(uint64_t exec_id, uint64_t correlation) {
    (void)correlation; /* its kernels come back by graph and node ids */
    pthread_mutex_lock(&lock);
    S.any = true;
    graph *g = NULL;
    for (int i = 0; i < S.nexecs && !g; i++)
        if (S.execs[i].exec_id == exec_id) g = &S.graphs[S.execs[i].graph];
    if (g) {
        g->stat.replays++;
        for (int i = 0; i < g->stat.ops; i++) nf_entry_add(g->counts[i].entry, g->counts[i].calls);
    } else {
        S.totals.unknown_graph_launches++;
    }
    pthread_mutex_unlock(&lock);
}

/* ------------------------------------------------------------ cross-check, state */

void nf_gpu_crosscheck_add(nf_entry *op, double measured_flops) {
    pthread_mutex_lock(&lock);
    nf_gpu_op_stat *s = op ? op_stat(op) : NULL;
    if (s) {
        s->measured_flops += measured_flops;
        s->measured = true;
    } else {
        S.totals.other_measured_flops += measured_flops;
    }
    pthread_mutex_unlock(&lock);
}

void nf_gpu_crosscheck_state(bool ran, const char *note) {
    pthread_mutex_lock(&lock);
    S.crosscheck_ran = ran;
    snprintf(S.crosscheck_note, sizeof S.crosscheck_note, "%s", note ? note : "");
    pthread_mutex_unlock(&lock);
}

void nf_gpu_set_off(const char *why) {
    pthread_mutex_lock(&lock);
    snprintf(S.off_reason, sizeof S.off_reason, "%s", why ? why : "");
    pthread_mutex_unlock(&lock);
}

/* ------------------------------------------------------------ reading back */

int nf_gpu_ops(nf_gpu_op_stat *out, int max) {
    pthread_mutex_lock(&lock);
    int n = S.nops < max ? S.nops : max;
    memcpy(out, S.ops, sizeof *out * (size_t)(n > 0 ? n : 0));
    pthread_mutex_unlock(&lock);
    return n;
}

int nf_gpu_graphs(nf_gpu_graph_stat *out, int max) {
    pthread_mutex_lock(&lock);
    int n = 0;
    for (; n < S.ngraphs && n < max; n++) out[n] = S.graphs[n].stat;
    pthread_mutex_unlock(&lock);
    return n;
}

nf_gpu_totals nf_gpu_totals_now(void) {
    pthread_mutex_lock(&lock);
    nf_gpu_totals t = S.totals;
    pthread_mutex_unlock(&lock);
    return t;
}

int nf_gpu_pending(void) {
    pthread_mutex_lock(&lock);
    int n = (int)S.pending.count;
    pthread_mutex_unlock(&lock);
    return n;
}

bool nf_gpu_has_data(void) {
    pthread_mutex_lock(&lock);
    bool any = S.any || S.off_reason[0] != '\0';
    pthread_mutex_unlock(&lock);
    return any;
}

bool nf_gpu_same_op(const nf_key *a, const nf_key *b) {
    nf_key x = *a, y = *b;
    x.backend = y.backend = 0;
    return memcmp(&x, &y, sizeof x) == 0;
}

void nf_gpu_info_now(nf_gpu_info *out) {
    pthread_mutex_lock(&lock);
    memset(out, 0, sizeof *out);
    snprintf(out->off_reason, sizeof out->off_reason, "%s", S.off_reason);
    out->crosscheck_ran = S.crosscheck_ran;
    snprintf(out->crosscheck_note, sizeof out->crosscheck_note, "%s", S.crosscheck_note);
    for (int d = 0; d < NF_GPU_DEVICES_MAX; d++) {
        snprintf(out->chip[d], sizeof out->chip[d], "%s", S.devices[d].chip);
        snprintf(out->device_name[d], sizeof out->device_name[d], "%s", S.devices[d].name);
    }
    pthread_mutex_unlock(&lock);
}
