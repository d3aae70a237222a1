#include "nf_flush.h"

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nf_core.h"
#include "nf_log.h"

/* The writer thread sleeps on a semaphore, not a pipe: no descriptor for a program
 * that closes every fd above 2 to close or reuse (sem_post is async-signal-safe). */
static sem_t wake;
static atomic_bool term_requested, term_done;
static volatile sig_atomic_t writer_pid; /* process whose writer runs; 0: none */
static atomic_bool running, said_failed;
static _Atomic uint64_t ops;
static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sigaction previous_term;

static void *writer_main(void *arg) {
    (void)arg;
    unsigned seconds = nf_core_config()->flush_seconds;
    for (;;) {
        int r;
        if (seconds) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += seconds;
            r = sem_timedwait(&wake, &until);
        } else {
            r = sem_wait(&wake);
        }
        if (atomic_load(&term_requested)) {
            nf_core_finish();
            atomic_store(&term_done, true);
        } else if (r != 0 && errno == ETIMEDOUT) { /* NAFLOPS_FLUSH_SECONDS elapsed */
            nf_core_flush();
        }
    }
    return NULL;
}

/* SIGTERM: have the writer report (the report itself runs in the writer's normal
 * context), wait for it at most 5 s, then die of the signal as before. */
static void on_term(int sig) {
    int saved = errno;
    if (writer_pid != 0 && writer_pid == getpid()) {
        atomic_store(&term_requested, true);
        if (sem_post(&wake) == 0) {
            struct timespec tick = {0, 1000000}; /* 1 ms; nanosleep is async-signal-safe */
            for (int i = 0; i < 5000 && !atomic_load(&term_done); i++) nanosleep(&tick, NULL);
        }
    }
    sigaction(sig, &previous_term, NULL);
    raise(sig); /* delivered once this handler returns: same death, same status */
    errno = saved;
}

static void install_term_handler(void) {
    struct sigaction current;
    if (sigaction(SIGTERM, NULL, &current) != 0) return;
    /* Only where nobody else handles SIGTERM: a program's own handler stays in charge
     * (and when it exits normally, the exit report covers it). */
    if (!(current.sa_flags & SA_SIGINFO) && current.sa_handler == SIG_DFL) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_term;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESTART;
        previous_term = current;
        sigaction(SIGTERM, &sa, NULL);
    }
}

static void start(void) {
    pthread_mutex_lock(&start_lock);
    if (!atomic_load(&running)) {
        atomic_store(&running, true); /* even on failure: try once per process */
        pthread_t t;
        sigset_t all, old;
        sigfillset(&all);
        if (sem_init(&wake, 0, 0) == 0) {
            /* signals go to the program's threads, never to the writer */
            pthread_sigmask(SIG_SETMASK, &all, &old);
            int rc = pthread_create(&t, NULL, writer_main, NULL);
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            if (rc == 0) {
                pthread_detach(t);
                writer_pid = getpid();
                install_term_handler();
            }
        }
        if (writer_pid == 0)
            nf_log_once(&said_failed, "cannot start the dump writer (%s); no report on SIGTERM, "
                        "no periodic flush", strerror(errno));
    }
    pthread_mutex_unlock(&start_lock);
}

void nf_flush_counted(void) {
    if (!atomic_load_explicit(&running, memory_order_relaxed)) start();
    /* Written here, not by the writer: when the call returns the dump holds it, so
     * an os._exit right after loses fewer than NAFLOPS_FLUSH_OPS ops, never more. */
    unsigned every = nf_core_config()->flush_ops;
    if (every != 0 && (atomic_fetch_add_explicit(&ops, 1, memory_order_relaxed) + 1) % every == 0)
        nf_core_flush();
}

void nf_flush_after_fork_child(void) {
    /* The writer thread is not in the child; its semaphore starts afresh. */
    pthread_mutex_init(&start_lock, NULL);
    writer_pid = 0;
    atomic_store(&term_requested, false);
    atomic_store(&term_done, false);
    atomic_store(&ops, 0);
    atomic_store(&running, false);
}
