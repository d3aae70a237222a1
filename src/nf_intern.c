#include "nf_intern.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Append-only: readers see a slot once count covers it (release/acquire). */
static const char *strings[NF_INTERN_MAX] = {""};
static _Atomic unsigned count = 1;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static uint16_t find(const char *s, unsigned n) {
    for (unsigned i = 1; i < n; i++)
        if (strcmp(strings[i], s) == 0) return (uint16_t)i;
    return NF_INTERN_NONE;
}

uint16_t nf_intern(const char *s) {
    if (s == NULL || *s == '\0') return NF_INTERN_NONE;
    uint16_t id = find(s, atomic_load_explicit(&count, memory_order_acquire));
    if (id != NF_INTERN_NONE) return id;
    pthread_mutex_lock(&lock);
    unsigned n = atomic_load_explicit(&count, memory_order_relaxed);
    id = find(s, n);
    if (id == NF_INTERN_NONE && n < NF_INTERN_MAX) {
        char *copy = strdup(s);
        if (copy != NULL) {
            strings[n] = copy;
            atomic_store_explicit(&count, n + 1, memory_order_release);
            id = (uint16_t)n;
        }
    }
    pthread_mutex_unlock(&lock);
    return id;
}

const char *nf_intern_str(uint16_t id) {
    return id < atomic_load_explicit(&count, memory_order_acquire) ? strings[id] : "";
}
