#include "nf_step.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nf_ledger.h"
#include "nf_text.h"

/* Everything below is guarded by lock: boundaries are rare (one per optimizer step)
 * and may come from any thread; GPU kernel records come from CUPTI's thread. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static nf_step_mode mode = NF_STEP_OPTIMIZER;
static char boundary[600] = "optimizer";
static uint64_t t0;                    /* the counter's start */
static bool have_prev;                 /* a step has ended */
static uint64_t prev_ns, prev_gpu;     /* where the step in progress began */
static nf_u128 prev_model, prev_hardware, prev_natten;
static nf_step_cause prev_cause;
static uint64_t count, warmup, recompiled, bucket = 1;
static nf_step_record records[NF_STEP_RECORDS], total;
static int n;
static uint64_t cur_gpu_ns, cur_gpu_until; /* kernels of the step in progress */
static bool gpu_seen;
static uint64_t (*gpu_now)(void);
static atomic_bool compiling;          /* torch.compile ran in the step in progress */
static _Thread_local int optimizer_depth;
static _Thread_local nf_u128 begin_hardware; /* the ledger's hardware total at this thread's
                                               outermost Optimizer.step began */

static uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void nf_step_configure(const nf_config *cfg) {
    pthread_mutex_lock(&lock);
    mode = cfg->step;
    switch (mode) {
    case NF_STEP_OPTIMIZER: strcpy(boundary, "optimizer"); break;
    case NF_STEP_BACKWARD: strcpy(boundary, "backward"); break;
    case NF_STEP_OFF: strcpy(boundary, "off"); break;
    case NF_STEP_FUNCTION:
        snprintf(boundary, sizeof boundary, "function %s:%s", cfg->step_module, cfg->step_qualname);
        break;
    }
    if (t0 == 0) t0 = mono_ns();
    pthread_mutex_unlock(&lock);
}

static nf_u128 sub(nf_u128 a, nf_u128 b) { return a > b ? a - b : 0; }

/* Adds b's figures to a (b follows a). */
static void absorb(nf_step_record *a, const nf_step_record *b) {
    a->steps += b->steps;
    a->ns += b->ns;
    a->model = nf_u128_add_sat(a->model, b->model);
    a->hardware = nf_u128_add_sat(a->hardware, b->hardware);
    a->natten = nf_u128_add_sat(a->natten, b->natten);
    a->gpu_ns += b->gpu_ns;
    if (a->gpu_start == 0) a->gpu_start = b->gpu_start;
    if (b->gpu_end > a->gpu_end) a->gpu_end = b->gpu_end;
    if (b->gpu_until > a->gpu_until) a->gpu_until = b->gpu_until;
    a->compiled += b->compiled;
    a->warmup = a->warmup && b->warmup;
}

/* Halves the steady records by merging neighbours; warm-up records stay apart unless
 * there is nothing else to merge. */
static void compact(void) {
    int w = 0;
    while (w < n && records[w].warmup) w++;
    if (w >= n - 1) w = 0;
    int j = w;
    for (int i = w; i < n; i += 2) {
        records[j] = records[i];
        if (i + 1 < n) absorb(&records[j], &records[i + 1]);
        j++;
    }
    n = j;
    bucket *= 2;
}

static void append(const nf_step_record *s) {
    nf_step_record *last = n > 0 ? &records[n - 1] : NULL;
    if (!s->warmup && last != NULL && !last->warmup && last->steps < bucket) {
        absorb(last, s);
        return;
    }
    if (n == NF_STEP_RECORDS) compact();
    records[n++] = *s;
}

/* before: the hardware total when the boundary's optimizer step began (its own work,
 * a Muon's matmuls, runs inside it); for a call, the same as now. */
static void boundary_at(nf_step_cause cause, bool have_before, nf_u128 before) {
    uint64_t now = mono_ns();
    pthread_mutex_lock(&lock);
    uint64_t gnow = gpu_now ? gpu_now() : 0;
    nf_totals t = nf_ledger_totals();
    nf_u128 model = nf_u128_add_sat(t.flops[NF_PASS_FORWARD], t.flops[NF_PASS_BACKWARD]);
    if (!have_prev) {
        /* The first step starts with the program's first counted work. */
        uint64_t first = nf_ledger_first_ns();
        prev_ns = first != 0 && first <= now ? first : (t0 != 0 && t0 <= now ? t0 : now);
        prev_model = prev_hardware = prev_natten = 0;
    }
    bool compiled = atomic_exchange(&compiling, false);
    nf_step_record s = {
        .first = count + 1,
        .steps = 1,
        .start_ns = prev_ns >= t0 ? prev_ns - t0 : 0,
        .ns = now > prev_ns ? now - prev_ns : 0,
        .model = sub(model, prev_model),
        .hardware = sub(t.all, prev_hardware),
        .natten = sub(t.natten_model, prev_natten),
        .gpu_ns = cur_gpu_ns,
        .gpu_start = prev_gpu,
        .gpu_end = gnow,
        .gpu_until = cur_gpu_until,
        .compiled = compiled ? 1 : 0,
    };
    /* Optimizers stepped one after another, with no counted work between the end of
     * one and the start of the next (a model's parameters split over two optimizers:
     * AdamW and Muon, whose own step runs matmuls), end one step together. */
    nf_u128 since = have_before ? sub(before, prev_hardware) : s.hardware;
    if (cause == NF_STEP_CAUSE_OPTIMIZER && have_prev && prev_cause == NF_STEP_CAUSE_OPTIMIZER &&
        n > 0 && since == 0 && !compiled) {
        s.steps = 0;
        s.warmup = records[n - 1].warmup; /* time joins the step, its kind unchanged */
        absorb(&records[n - 1], &s);
        absorb(&total, &s);
    } else {
        s.warmup = count == 0 || (warmup == count && compiled);
        if (s.warmup) warmup++;
        else if (compiled) recompiled++;
        append(&s);
        absorb(&total, &s);
        count++;
    }
    have_prev = true;
    prev_cause = cause;
    prev_ns = now;
    prev_gpu = gnow;
    prev_model = model;
    prev_hardware = t.all;
    prev_natten = t.natten_model;
    cur_gpu_ns = cur_gpu_until = 0;
    pthread_mutex_unlock(&lock);
}

void nf_step_optimizer_begin(void) {
    if (optimizer_depth++ > 0 || mode != NF_STEP_OPTIMIZER) return;
    pthread_mutex_lock(&lock);
    begin_hardware = have_prev ? nf_ledger_totals().all : 0;
    pthread_mutex_unlock(&lock);
}

void nf_step_optimizer_end(void) {
    if (optimizer_depth > 0 && --optimizer_depth > 0) return;
    if (mode == NF_STEP_OPTIMIZER) boundary_at(NF_STEP_CAUSE_OPTIMIZER, true, begin_hardware);
}

void nf_step_call_end(void) {
    if (mode == NF_STEP_FUNCTION || mode == NF_STEP_BACKWARD) boundary_at(NF_STEP_CAUSE_CALL, false, 0);
}

void nf_step_note_compile(void) { atomic_store(&compiling, true); }

static atomic_bool target_found;
void nf_step_target_found(void) { atomic_store(&target_found, true); }
bool nf_step_target_missing(void) { return mode == NF_STEP_FUNCTION && !atomic_load(&target_found); }

void nf_step_set_gpu_clock(uint64_t (*now)(void)) {
    pthread_mutex_lock(&lock);
    gpu_now = now;
    if (now != NULL && prev_gpu == 0) prev_gpu = now();
    pthread_mutex_unlock(&lock);
}

/* Adds [start, end) to a busy time kept as the union of kernels that arrive in order
 * of their start (CUPTI's records of one stream do; overlapping streams are merged
 * where they arrive in order, else counted twice: "busy" never exceeds the step). */
static void add_busy(uint64_t *busy, uint64_t *until, uint64_t start, uint64_t end) {
    if (end <= start) return;
    if (start < *until) start = *until;
    if (end <= start) return;
    *busy += end - start;
    *until = end;
}

void nf_step_gpu_kernel(uint64_t start, uint64_t end) {
    pthread_mutex_lock(&lock);
    gpu_seen = true;
    if (gpu_now == NULL || start >= prev_gpu) {
        add_busy(&cur_gpu_ns, &cur_gpu_until, start, end);
    } else { /* an ended step's: the last record that began at or before it */
        int lo = 0, hi = n - 1, at = -1;
        while (lo <= hi) {
            int mid = (lo + hi) / 2;
            if (records[mid].gpu_start <= start) at = mid, lo = mid + 1;
            else hi = mid - 1;
        }
        if (at >= 0) {
            nf_step_record *r = &records[at];
            uint64_t before = r->gpu_ns;
            add_busy(&r->gpu_ns, &r->gpu_until, start, end < r->gpu_end ? end : r->gpu_end);
            total.gpu_ns += r->gpu_ns - before;
        }
    }
    pthread_mutex_unlock(&lock);
}

bool nf_step_view_now(nf_step_view *out) {
    /* A dump at SIGTERM is written by the writer thread while the thread the signal
     * interrupted waits in the handler, perhaps holding this lock mid-boundary: give up
     * on the steps (that dump goes without them) rather than wait for it forever. */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += 200000000; /* 0.2 s */
    if (until.tv_nsec >= 1000000000) until.tv_sec++, until.tv_nsec -= 1000000000;
    if (pthread_mutex_timedlock(&lock, &until) != 0) return false;
    bool any = mode != NF_STEP_OFF && count > 0;
    if (any) {
        out->mode = mode;
        out->boundary = boundary;
        out->count = count;
        out->warmup = warmup;
        out->recompiled = recompiled;
        out->bucket = bucket;
        out->total = total;
        out->gpu = gpu_seen;
        out->n = n;
        memcpy(out->records, records, (size_t)n * sizeof records[0]);
    }
    pthread_mutex_unlock(&lock);
    return any;
}

typedef struct weighted {
    double v;
    uint64_t w;
} weighted;

static int by_value(const void *a, const void *b) {
    double x = ((const weighted *)a)->v, y = ((const weighted *)b)->v;
    return (x > y) - (x < y);
}

/* The value below which a fraction q of the weight lies (sorted input). */
static double quantile(const weighted *xs, int k, uint64_t weight, double q) {
    double target = q * (double)weight, seen = 0;
    for (int i = 0; i < k; i++) {
        seen += (double)xs[i].w;
        if (seen >= target) return xs[i].v;
    }
    return k > 0 ? xs[k - 1].v : 0;
}

bool nf_step_steady_of(const nf_step_view *v, nf_step_steady *out) {
    static weighted secs[NF_STEP_RECORDS], rate[NF_STEP_RECORDS], hrate[NF_STEP_RECORDS];
    static pthread_mutex_t scratch = PTHREAD_MUTEX_INITIALIZER;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&scratch);
    int k = 0;
    double model = 0, hardware = 0;
    for (int i = 0; i < v->n; i++) {
        const nf_step_record *r = &v->records[i];
        if (r->warmup || r->compiled > 0 || r->steps == 0) continue;
        double s = (double)r->ns / 1e9;
        secs[k] = (weighted){s / (double)r->steps, r->steps};
        rate[k] = (weighted){s > 0 ? (double)r->model / s : 0, r->steps};
        hrate[k] = (weighted){s > 0 ? (double)r->hardware / s : 0, r->steps};
        model += (double)r->model;
        hardware += (double)r->hardware;
        out->steps += r->steps;
        k++;
    }
    if (k > 0) {
        qsort(secs, (size_t)k, sizeof secs[0], by_value);
        qsort(rate, (size_t)k, sizeof rate[0], by_value);
        qsort(hrate, (size_t)k, sizeof hrate[0], by_value);
        out->seconds_median = quantile(secs, k, out->steps, 0.5);
        out->seconds_p10 = quantile(secs, k, out->steps, 0.1);
        out->seconds_p90 = quantile(secs, k, out->steps, 0.9);
        out->flops_per_s_median = quantile(rate, k, out->steps, 0.5);
        out->hardware_per_s_median = quantile(hrate, k, out->steps, 0.5);
        out->model_per_step = model / (double)out->steps;
        out->hardware_per_step = hardware / (double)out->steps;
    }
    pthread_mutex_unlock(&scratch);
    return k > 0;
}

void nf_step_reset(void) {
    pthread_mutex_init(&lock, NULL); /* a fork child has one thread */
    have_prev = false;
    count = warmup = recompiled = 0;
    bucket = 1;
    n = 0;
    memset(&total, 0, sizeof total);
    cur_gpu_ns = cur_gpu_until = 0;
    gpu_seen = false;
    prev_gpu = gpu_now ? gpu_now() : 0;
    atomic_store(&compiling, false);
    optimizer_depth = 0;
    t0 = mono_ns();
}
